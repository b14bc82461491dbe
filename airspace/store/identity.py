"""What the worker reads and writes: inbox batches, identifiers, profiles, merges, events.

Rows become domain objects here and nowhere else (`profile_from_row`,
`_write_profiles`). On PostgreSQL, `lock_identifiers` and
`load_profiles(lock=True)` keep two workers off the same person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    bindparam,
    delete,
    exists,
    insert,
    select,
    text,
    update,
)

from airspace.domain.consent import ConsentRecord
from airspace.domain.identity import Identifier
from airspace.domain.profiles import Computed, Profile
from airspace.store.bulk import ROWS_PER_STATEMENT, driver_time, insert_many, placeholders
from airspace.store.database import Database
from airspace.store.tables import (
    ErasedIdentifierRow,
    EventRow,
    IdentifierRow,
    InboxPartitionRow,
    InboxRow,
    MergeRow,
    ProfileAliasRow,
    ProfileRow,
    core,
)


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One queued event as the worker reads it."""

    id: int
    write_key_id: int
    payload: dict[str, Any]
    raw: str


PARTITIONS_PER_BATCH = 4

# The statements the worker runs for every batch are built once (see `store.journeys`).
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_OLDEST = (
    select(InboxRow.id, InboxRow.write_key_id, InboxRow.payload)
    .order_by(InboxRow.id)
    .limit(bindparam("limit", type_=Integer))
)
_OLDEST_OF_PARTITIONS = _OLDEST.where(InboxRow.partition.in_(_IDS))
_FREE_PARTITIONS = (
    select(InboxPartitionRow.id)
    .where(exists().where(InboxRow.partition == InboxPartitionRow.id))
    .order_by(InboxPartitionRow.last_run_at.asc().nulls_first())
    .limit(PARTITIONS_PER_BATCH)
    .with_for_update(skip_locked=True)
)


def claim_batch(conn: Connection, db: Database, limit: int) -> tuple[list[int], list[InboxItem]]:
    """Take the oldest events of a few partitions that no other worker holds.

    On PostgreSQL the partition rows stay locked (`FOR UPDATE SKIP LOCKED`) until
    this transaction ends, so a killed worker's claim lapses at once. Several
    partitions per batch keep batches full when events spread thinly over all of
    them; a partition's events are still taken oldest first, in their order.
    """
    partitions: list[int] = []
    if db.is_postgres:
        partitions = list(conn.execute(_FREE_PARTITIONS).scalars())
        if not partitions:
            return [], []
        rows = conn.execute(_OLDEST_OF_PARTITIONS, {"ids": partitions, "limit": limit}).all()
    else:
        rows = conn.execute(_OLDEST, {"limit": limit}).all()
    return partitions, [
        InboxItem(r.id, r.write_key_id, orjson.loads(r.payload), r.payload) for r in rows
    ]


def finish_batch(
    conn: Connection, partitions: Sequence[int], inbox_ids: Sequence[int], now: datetime
) -> None:
    """Remove applied events from the inbox, in the same transaction as their effects."""
    if inbox_ids:
        conn.execute(_DELETE_APPLIED, {"ids": inbox_ids})
    if partitions:
        conn.execute(_PARTITIONS_RAN, {"ids": partitions, "now": now})


_DELETE_APPLIED = delete(core(InboxRow)).where(InboxRow.id.in_(_IDS))
_PARTITIONS_RAN = (
    update(core(InboxPartitionRow))
    .where(InboxPartitionRow.id.in_(_IDS))
    .values(last_run_at=bindparam("now"))
)


def lock_key(key: str) -> int:
    """A signed 64-bit number for a PostgreSQL advisory lock on an identifier."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def lock_identifiers(conn: Connection, db: Database, keys: Iterable[str]) -> None:
    """Hold every identifier until commit, in sorted order so workers never deadlock on them."""
    if not db.is_postgres:
        return
    numbers = sorted({lock_key(k) for k in keys})
    if numbers:
        conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                "(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS s"
            ),
            {"keys": numbers},
        )


def erased_among(conn: Connection, hashes: Iterable[str]) -> set[str]:
    """Which of these keyed hashes belong to erased people."""
    wanted = list(set(hashes))
    found: set[str] = set()
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        found |= set(conn.execute(_ERASED_AMONG, {"ids": chunk}).scalars())
    return found


_ERASED_AMONG = select(ErasedIdentifierRow.hash).where(ErasedIdentifierRow.hash.in_(_IDS))


def owners_of(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    """identifier key → profile id, for the identifiers that exist."""
    wanted = list(set(keys))
    owners: dict[str, str] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        for key, profile_id in conn.execute(_OWNERS_OF, {"ids": chunk}):
            owners[key] = profile_id
    return owners


_OWNERS_OF = select(IdentifierRow.key, IdentifierRow.profile_id).where(IdentifierRow.key.in_(_IDS))


def identifiers_of(conn: Connection, profile_ids: Iterable[str]) -> dict[str, set[Identifier]]:
    """profile id → all of its identifiers."""
    result: dict[str, set[Identifier]] = {}
    wanted = list(set(profile_ids))
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        for kind, value, profile_id in conn.execute(_IDENTIFIERS_OF, {"ids": chunk}):
            result.setdefault(profile_id, set()).add(Identifier(kind, value))
    return result


_IDENTIFIERS_OF = select(IdentifierRow.type, IdentifierRow.value, IdentifierRow.profile_id).where(
    IdentifierRow.profile_id.in_(_IDS)
)


def load_profiles(
    conn: Connection, db: Database, profile_ids: Iterable[str], *, lock: bool = False
) -> dict[str, Profile]:
    """Profiles by id; with `lock`, hold them (PostgreSQL) until commit, in id order."""
    wanted = sorted(set(profile_ids))
    profiles: dict[str, Profile] = {}
    query = _PROFILES_LOCKED if lock and db.is_postgres else _PROFILES
    for start in range(0, len(wanted), 5000):
        for row in conn.execute(query, {"ids": wanted[start : start + 5000]}):
            profiles[row.id] = profile_from_row(row._mapping)
    return profiles


_PROFILES = select(ProfileRow).where(ProfileRow.id.in_(_IDS)).order_by(ProfileRow.id)
_PROFILES_LOCKED = _PROFILES.with_for_update()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def profile_from_row(row: Any) -> Profile:
    """A stored profile row as a domain `Profile`."""
    computed = row["computed"]
    return Profile(
        profile_id=row["id"],
        created_at=row["created_at"],
        traits=row["traits"],
        trait_times={k: datetime.fromisoformat(v) for k, v in row["trait_times"].items()},
        computed=Computed(
            first_seen=_time(computed.get("first_seen")),
            last_seen=_time(computed.get("last_seen")),
            event_count=computed.get("event_count", 0),
            counts_by_type=computed.get("counts_by_type", {}),
            counts_by_event=computed.get("counts_by_event", {}),
            timezone=computed.get("timezone"),
            timezone_at=_time(computed.get("timezone_at")),
            locale=computed.get("locale"),
            groups=tuple(computed.get("groups", ())),
            last_by_event={
                k: datetime.fromisoformat(v) for k, v in computed.get("last_by_event", {}).items()
            },
            engaged=computed.get("engaged", {}),
            suppressed=computed.get("suppressed", {}),
        ),
        consent={
            key: ConsentRecord(c["status"], c["source"], datetime.fromisoformat(c["at"]))
            for key, c in row["consent"].items()
        },
    )


def computed_to_json(computed: Computed) -> dict[str, Any]:
    """Computed traits as stored and shown."""
    return {
        "first_seen": _iso(computed.first_seen),
        "last_seen": _iso(computed.last_seen),
        "event_count": computed.event_count,
        "counts_by_type": computed.counts_by_type,
        "counts_by_event": computed.counts_by_event,
        "timezone": computed.timezone,
        "timezone_at": _iso(computed.timezone_at),
        "locale": computed.locale,
        "groups": list(computed.groups),
        "last_by_event": {k: v.isoformat() for k, v in computed.last_by_event.items()},
        "engaged": computed.engaged,
        "suppressed": computed.suppressed,
    }


def consent_to_json(consent: dict[str, ConsentRecord]) -> dict[str, Any]:
    """Consent as stored and shown."""
    return {
        key: {"status": c.status, "source": c.source, "at": c.at.isoformat()}
        for key, c in consent.items()
    }


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """One merge to record: `merged_id` now lives on in `survivor_id`."""

    survivor_id: str
    merged_id: str
    message_id: str
    cause: str
    existed: bool


@dataclass
class BatchWrite:
    """Everything one batch changes, written in one go by `write_batch`."""

    new_profiles: list[Profile]
    updated_profiles: list[Profile]
    merges: list[MergeRecord]
    new_identifiers: list[tuple[Identifier, str]]
    events: list[dict[str, Any]]


def write_batch(conn: Connection, batch: BatchWrite, now: datetime) -> None:
    """Write a batch's effects; merges first, in the order they happened."""
    for merge in batch.merges:
        if not merge.existed:
            continue
        conn.execute(
            update(core(ProfileAliasRow))
            .where(ProfileAliasRow.profile_id == merge.merged_id)
            .values(profile_id=merge.survivor_id)
        )
        conn.execute(
            update(core(IdentifierRow))
            .where(IdentifierRow.profile_id == merge.merged_id)
            .values(profile_id=merge.survivor_id)
        )
        conn.execute(
            update(core(EventRow))
            .where(EventRow.profile_id == merge.merged_id)
            .values(profile_id=merge.survivor_id)
        )
        conn.execute(delete(core(ProfileRow)).where(ProfileRow.id == merge.merged_id))
    aliases = [
        {"old_id": m.merged_id, "profile_id": m.survivor_id, "merged_at": now}
        for m in batch.merges
        if m.existed
    ]
    if aliases:
        conn.execute(insert(core(ProfileAliasRow)), aliases)
    if batch.merges:
        conn.execute(
            insert(core(MergeRow)),
            [
                {
                    "survivor_id": m.survivor_id,
                    "merged_id": m.merged_id,
                    "message_id": m.message_id,
                    "cause": m.cause,
                    "at": now,
                }
                for m in batch.merges
            ],
        )
    if batch.new_profiles:
        _write_profiles(conn, batch.new_profiles, now, insert_new=True)
    if batch.updated_profiles:
        _write_profiles(conn, batch.updated_profiles, now, insert_new=False)
    if batch.new_identifiers:
        conn.execute(
            insert(core(IdentifierRow)),
            [
                {
                    "key": i.key,
                    "type": i.type,
                    "value": i.value,
                    "profile_id": profile_id,
                    "created_at": now,
                }
                for i, profile_id in batch.new_identifiers
            ],
        )
    if batch.events:
        _insert_events(conn, batch.events)


def save_profiles(conn: Connection, profiles: list[Profile], now: datetime) -> None:
    """Write changed profiles (journeys updating traits)."""
    _write_profiles(conn, profiles, now, insert_new=False)


# The statements below run for every applied event: see `bulk.py` for why they go
# straight to the driver.


def _insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    sqlite = conn.dialect.name == "sqlite"
    insert_many(
        conn,
        "INSERT INTO events (profile_id, write_key_id, message_id, type, name, timestamp, "
        "received_at, payload)",
        placeholders(sqlite, 7, 1),
        [
            (
                r["profile_id"],
                r["write_key_id"],
                r["message_id"],
                r["type"],
                r["name"],
                driver_time(sqlite, r["timestamp"]),
                driver_time(sqlite, r["received_at"]),
                r["payload"],
            )
            for r in rows
        ],
    )


def _write_profiles(
    conn: Connection, profiles: list[Profile], now: datetime, *, insert_new: bool
) -> None:
    sqlite = conn.dialect.name == "sqlite"
    stamp = driver_time(sqlite, now)
    values = [
        (
            p.profile_id,
            stamp,
            orjson.dumps(p.traits).decode(),
            orjson.dumps({k: v.isoformat() for k, v in p.trait_times.items()}).decode(),
            orjson.dumps(computed_to_json(p.computed)).decode(),
            orjson.dumps(consent_to_json(p.consent)).decode(),
        )
        for p in profiles
    ]
    columns = "id, updated_at, traits, trait_times, computed, consent"
    if insert_new:
        insert_many(
            conn,
            f"INSERT INTO profiles ({columns}, created_at)",
            placeholders(sqlite, 2, 4) + placeholders(sqlite, 1, 0),
            [
                (*row, driver_time(sqlite, p.created_at))
                for row, p in zip(values, profiles, strict=True)
            ],
        )
    elif sqlite:
        conn.exec_driver_sql(
            "UPDATE profiles SET updated_at = ?, traits = ?, trait_times = ?, computed = ?, "
            "consent = ? WHERE id = ?",
            [(*row[1:], row[0]) for row in values],
        )
    else:
        one_row = (
            "(%s, %s, CAST(%s AS jsonb), CAST(%s AS jsonb), CAST(%s AS jsonb), CAST(%s AS jsonb))"
        )
        for start in range(0, len(values), ROWS_PER_STATEMENT):
            chunk = values[start : start + ROWS_PER_STATEMENT]
            conn.exec_driver_sql(
                "UPDATE profiles AS p SET updated_at = v.updated_at, traits = v.traits, "
                "trait_times = v.trait_times, computed = v.computed, consent = v.consent "
                f"FROM (VALUES {', '.join([one_row] * len(chunk))}) "
                f"AS v({columns}) WHERE p.id = v.id",
                tuple(value for row in chunk for value in row),
            )
