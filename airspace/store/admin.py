"""Read models for the admin API, and the export and erasure of a person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, or_, select, update

from airspace.domain import consent as consent_rules
from airspace.domain.consent import ConsentRecord
from airspace.domain.errors import InvalidInput, NotFound
from airspace.domain.identity import (
    Identifier,
    IdentityRules,
    erasure_hash,
    identifiers_in_raw,
    normalize_email,
    normalize_phone,
)
from airspace.store import identity as repo
from airspace.store import journeys as journeys_repo
from airspace.store.bulk import driver_time, insert_many, placeholders
from airspace.store.database import Database
from airspace.store.identity import computed_to_json, consent_to_json
from airspace.store.tables import (
    EventRow,
    IdentifierRow,
    InboxRow,
    MergeRow,
    ProfileAliasRow,
    ProfileRow,
    QuarantineRow,
    core,
)


def normalize_identifier(text: str, phone_region: str | None = None) -> Identifier:
    """Read `type:value` from the API and normalise it as ingestion does."""
    if "\x00" in text:
        raise InvalidInput("identifier contains a NUL character")
    try:
        identifier = Identifier.parse(text)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    if identifier.type == "email":
        email = normalize_email(identifier.value)
        if email is None:
            raise InvalidInput(f"{identifier.value!r} is not an email address")
        return Identifier("email", email)
    if identifier.type == "phone":
        phone = normalize_phone(identifier.value, phone_region)
        if phone is None:
            raise InvalidInput(f"{identifier.value!r} is not a phone number (use +country...)")
        return Identifier("phone", phone)
    return identifier


def current_profile_id(conn: Connection, profile_id: str) -> str | None:
    """The live id for a profile id (a merged profile's id leads to its survivor)."""
    if conn.execute(select(ProfileRow.id).where(ProfileRow.id == profile_id)).first():
        return profile_id
    return conn.execute(
        select(ProfileAliasRow.profile_id).where(ProfileAliasRow.old_id == profile_id)
    ).scalar()


def find_profile_id(db: Database, identifier: Identifier) -> str | None:
    """The profile that owns an identifier."""
    with db.read() as conn:
        return conn.execute(
            select(IdentifierRow.profile_id).where(IdentifierRow.key == identifier.key)
        ).scalar()


def _event_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "profile_id": row.profile_id,
        "message_id": row.message_id,
        "type": row.type,
        "name": row.name,
        "timestamp": row.timestamp.isoformat(),
        "received_at": row.received_at.isoformat(),
        "payload": row.payload,
    }


def _merge_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "survivor_id": row.survivor_id,
        "merged_id": row.merged_id,
        "message_id": row.message_id,
        "cause": row.cause,
        "at": row.at.isoformat(),
    }


def profile_view(db: Database, profile_id: str, recent_events: int = 20) -> dict[str, Any]:
    """Everything the console shows about one profile."""
    with db.read() as conn:
        live_id = current_profile_id(conn, profile_id)
        if live_id is None:
            raise NotFound(f"no profile {profile_id!r}")
        profile = repo.load_profiles(conn, db, [live_id])[live_id]
        identifiers = sorted(repo.identifiers_of(conn, [live_id]).get(live_id, set()))
        merged_from = conn.execute(
            select(ProfileAliasRow.old_id).where(ProfileAliasRow.profile_id == live_id)
        ).scalars()
        merges = conn.execute(
            select(MergeRow).where(MergeRow.survivor_id == live_id).order_by(MergeRow.id)
        ).all()
        events = conn.execute(
            select(EventRow)
            .where(EventRow.profile_id == live_id)
            .order_by(EventRow.id.desc())
            .limit(recent_events)
        ).all()
    return {
        "id": live_id,
        "requested_id": profile_id,
        "created_at": profile.created_at.isoformat(),
        "traits": profile.traits,
        "computed": computed_to_json(profile.computed),
        "consent": consent_to_json(profile.consent),
        "identifiers": [{"type": i.type, "value": i.value} for i in identifiers],
        "merged_from": sorted(merged_from),
        "merges": [_merge_json(m) for m in merges],
        "recent_events": [_event_json(e) for e in events],
    }


def list_events(
    db: Database, *, profile_id: str | None, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """Events in the log, oldest first, optionally of one profile."""
    query = select(EventRow).where(EventRow.id > after_id).order_by(EventRow.id).limit(limit)
    with db.read() as conn:
        if profile_id is not None:
            live_id = current_profile_id(conn, profile_id) or profile_id
            query = query.where(EventRow.profile_id == live_id)
        return [_event_json(r) for r in conn.execute(query)]


def list_quarantine(db: Database, *, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Refused events with their reasons, oldest first."""
    query = (
        select(QuarantineRow).where(QuarantineRow.id > after_id).order_by(QuarantineRow.id)
    ).limit(limit)
    with db.read() as conn:
        return [
            {
                "id": r.id,
                "write_key_id": r.write_key_id,
                "stage": r.stage,
                "reason": r.reason,
                "payload": r.payload,
                "received_at": r.received_at.isoformat(),
            }
            for r in conn.execute(query)
        ]


def list_merges(db: Database, *, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Merges, oldest first."""
    query = select(MergeRow).where(MergeRow.id > after_id).order_by(MergeRow.id).limit(limit)
    with db.read() as conn:
        return [_merge_json(r) for r in conn.execute(query)]


def counts(db: Database) -> dict[str, int]:
    """Row counts of the main tables (for the console and tests)."""
    with db.read() as conn:
        return {
            table.__tablename__: int(
                conn.execute(select(func.count()).select_from(table)).scalar_one()
            )
            for table in (ProfileRow, IdentifierRow, EventRow, InboxRow, QuarantineRow, MergeRow)
        }


def _lock_person(conn: Connection, db: Database, profile_id: str) -> set[Identifier]:
    """Hold a person as the worker does: identifiers first, then the profile row."""
    owned = repo.identifiers_of(conn, [profile_id]).get(profile_id, set())
    repo.lock_identifiers(conn, db, (i.key for i in owned))
    if not repo.load_profiles(conn, db, [profile_id], lock=True):
        raise NotFound(f"no profile {profile_id!r}")
    return repo.identifiers_of(conn, [profile_id]).get(profile_id, set())


def set_consent(
    db: Database, profile_id: str, key: str, record: ConsentRecord, now: datetime
) -> dict[str, Any]:
    """Record a consent change made through the admin API; return the profile's consent."""
    with db.write() as conn:
        live_id = current_profile_id(conn, profile_id)
        if live_id is None:
            raise NotFound(f"no profile {profile_id!r}")
        _lock_person(conn, db, live_id)
        profile = repo.load_profiles(conn, db, [live_id])[live_id]
        consent = consent_rules.apply_changes(profile.consent, [(key, record)])
        conn.execute(
            update(core(ProfileRow))
            .where(ProfileRow.id == live_id)
            .values(consent=consent_to_json(consent), updated_at=now)
        )
    return consent_to_json(consent)


def _raw_mentions(
    conn: Connection, owned: set[Identifier], traits: dict[str, Any], rules: IdentityRules
) -> tuple[list[Any], list[Any]]:
    """Quarantined and queued items that carry one of the person's identifiers.

    A text search finds candidates (identifier values, and the email and phone
    exactly as they were sent); each is then parsed and kept only if one of its
    identifier fields really is the person's, so nobody else's data is touched.
    """
    patterns = {i.value for i in owned}
    patterns |= {traits[k] for k in ("email", "phone") if isinstance(traits.get(k), str)}
    patterns = {p for p in patterns if p}
    if not patterns:
        return [], []
    escaped = [
        orjson.dumps(p).decode()[1:-1].replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        for p in sorted(patterns)
    ]

    def candidates(column: Any) -> Any:
        return or_(*(func.lower(column).like(f"%{e.lower()}%", escape="\\") for e in escaped))

    def theirs(payload: str) -> bool:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        return bool(identifiers_in_raw(message, rules) & owned)

    quarantined = conn.execute(select(QuarantineRow).where(candidates(QuarantineRow.payload))).all()
    queued = conn.execute(select(InboxRow).where(candidates(InboxRow.payload))).all()
    return [q for q in quarantined if theirs(q.payload)], [q for q in queued if theirs(q.payload)]


def export_person(db: Database, profile_id: str, rules: IdentityRules) -> dict[str, Any]:
    """Everything stored about a person, as JSON (GDPR access and portability)."""
    view = profile_view(db, profile_id, recent_events=0)
    live_id = view["id"]
    with db.read() as conn:
        profile = repo.load_profiles(conn, db, [live_id])[live_id]
        owned = repo.identifiers_of(conn, [live_id]).get(live_id, set())
        events = conn.execute(
            select(EventRow).where(EventRow.profile_id == live_id).order_by(EventRow.id)
        ).all()
        quarantined, queued = _raw_mentions(conn, owned, profile.traits, rules)
    view.pop("recent_events")
    view["trait_times"] = {k: v.isoformat() for k, v in profile.trait_times.items()}
    view["events"] = [_event_json(e) for e in events]
    view["quarantine"] = [
        {"id": q.id, "reason": q.reason, "payload": q.payload} for q in quarantined
    ]
    view["pending_events"] = [{"id": q.id, "payload": q.payload} for q in queued]
    with db.read() as conn:
        view["journeys"] = journeys_repo.export_journeys(conn, live_id)
    return view


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed."""

    profile_id: str
    identifiers: int
    events: int
    merges: int
    quarantined: int
    pending: int


def erase_person(
    db: Database, profile_id: str, secret: bytes, now: datetime, rules: IdentityRules
) -> Erasure:
    """Erase a person and everything derived; remember identifiers only as keyed hashes."""
    with db.write() as conn:
        live_id = current_profile_id(conn, profile_id)
        if live_id is None:
            raise NotFound(f"no profile {profile_id!r}")
        owned = _lock_person(conn, db, live_id)
        profile = repo.load_profiles(conn, db, [live_id])[live_id]
        sqlite = conn.dialect.name == "sqlite"
        insert_many(
            conn,
            "INSERT INTO erased_identifiers (hash, erased_at)",
            placeholders(sqlite, 2, 0),
            [(erasure_hash(i, secret), driver_time(sqlite, now)) for i in sorted(owned)],
            "ON CONFLICT DO NOTHING",
        )
        old_ids = list(
            conn.execute(
                select(ProfileAliasRow.old_id).where(ProfileAliasRow.profile_id == live_id)
            ).scalars()
        )
        quarantined, queued = _raw_mentions(conn, owned, profile.traits, rules)
        everyone = [live_id, *old_ids]
        events = conn.execute(delete(core(EventRow)).where(EventRow.profile_id == live_id)).rowcount
        merges = conn.execute(
            delete(core(MergeRow)).where(
                or_(MergeRow.survivor_id.in_(everyone), MergeRow.merged_id.in_(everyone))
            )
        ).rowcount
        conn.execute(delete(core(ProfileAliasRow)).where(ProfileAliasRow.profile_id == live_id))
        conn.execute(delete(core(IdentifierRow)).where(IdentifierRow.profile_id == live_id))
        conn.execute(delete(core(ProfileRow)).where(ProfileRow.id == live_id))
        journeys_repo.erase_journeys(conn, live_id)
        if quarantined:
            conn.execute(
                delete(core(QuarantineRow)).where(QuarantineRow.id.in_([q.id for q in quarantined]))
            )
        if queued:
            conn.execute(delete(core(InboxRow)).where(InboxRow.id.in_([q.id for q in queued])))
    return Erasure(live_id, len(owned), events, merges, len(quarantined), len(queued))
