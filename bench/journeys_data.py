"""Bulk data for bench/journeys.py: profiles, identifiers, events, enrollments and timers
written straight into a migrated database (executemany on SQLite, COPY on PostgreSQL),
with the table's secondary indexes dropped during the load and rebuilt after it.

Rows have the shape the engine writes (see airspace/store/identity.py `_write_profiles`,
`_insert_events` and airspace/store/journeys.py `enrollment_row`), so the engine reads
them as its own.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from airspace.domain.profiles import Computed
from airspace.store.bulk import driver_time
from airspace.store.database import Database
from airspace.store.identity import computed_to_json

SQLITE_ROWS_PER_TRANSACTION = 200_000


def profile_id(n: int) -> str:
    """A 28-character id like the worker's (millisecond time, sequence, random part)."""
    return f"{0x19A4B3C2D10 + n // 1000:012x}{n % 1_000_000:06x}{(n * 2654435761) % 2**40:010x}"


# --------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _secondary_indexes_dropped(db: Database, table: str) -> Iterator[None]:
    """Drop the table's secondary indexes for a bulk load; rebuild them (same DDL) after."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.is_sqlite:
            cur.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (table,),
            )
        else:
            cur.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                "WHERE t.relname = %s AND NOT x.indisprimary "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
                (table,),
            )
        indexes = list(cur.fetchall())
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        raw.commit()
    finally:
        raw.close()
    try:
        yield
    finally:
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            for _, ddl in indexes:
                cur.execute(ddl)
            if db.is_postgres:
                cur.execute(f'ANALYZE "{table}"')
            raw.commit()
            if db.is_sqlite:
                # Leave no write-ahead log behind: the measured part must not pay for
                # checkpointing the bulk load into the database file.
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def load(
    db: Database,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    *,
    drop_indexes: bool = True,
) -> int:
    """Insert rows (driver values: `driver_time` times, JSON as text) fast; return the count."""
    count = 0
    dropped = _secondary_indexes_dropped(db, table) if drop_indexes else contextlib.nullcontext()
    with dropped:
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            names = ", ".join(columns)
            if db.is_sqlite:
                sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"
                chunk: list[tuple[Any, ...]] = []
                for row in rows:
                    chunk.append(row)
                    if len(chunk) >= SQLITE_ROWS_PER_TRANSACTION:
                        cur.execute("BEGIN")
                        cur.executemany(sql, chunk)
                        cur.execute("COMMIT")
                        count += len(chunk)
                        chunk = []
                if chunk:
                    cur.execute("BEGIN")
                    cur.executemany(sql, chunk)
                    cur.execute("COMMIT")
                    count += len(chunk)
            else:
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        count += 1
                raw.commit()
        finally:
            raw.close()
    return count


# --------------------------------------------------------------------------- rows


def load_profiles(
    db: Database, count: int, now: datetime, *, identifiers: bool = True
) -> tuple[list[str], float]:
    """`count` profiles with an email trait (and user_id + email identifiers); (ids, seconds)."""
    started = time.perf_counter()
    sqlite = db.is_sqlite
    stamp = driver_time(sqlite, now)
    seen = (now - timedelta(days=30)).isoformat()
    computed = orjson.dumps(
        computed_to_json(
            Computed(
                first_seen=now - timedelta(days=30),
                last_seen=now - timedelta(days=1),
                event_count=10,
                counts_by_type={"track": 8, "identify": 2},
                counts_by_event={"Product Viewed": 5},
                timezone="Europe/Paris",
                locale="fr-FR",
            )
        )
    ).decode()
    times = orjson.dumps({"email": seen, "firstName": seen}).decode()
    ids = [profile_id(n) for n in range(count)]

    def profiles() -> Iterator[tuple[Any, ...]]:
        for n, pid in enumerate(ids):
            traits = f'{{"email":"person{n}@example.com","firstName":"P{n}"}}'
            yield (pid, stamp, stamp, traits, times, computed, "{}")

    load(
        db,
        "profiles",
        ("id", "created_at", "updated_at", "traits", "trait_times", "computed", "consent"),
        profiles(),
    )
    if identifiers:

        def links() -> Iterator[tuple[Any, ...]]:
            for n, pid in enumerate(ids):
                yield (f"user_id:user-{n}", "user_id", f"user-{n}", pid, stamp)
                email = f"person{n}@example.com"
                yield (f"email:{email}", "email", email, pid, stamp)

        load(db, "identifiers", ("key", "type", "value", "profile_id", "created_at"), links())
    return ids, time.perf_counter() - started


EVENT_NAMES = (
    ("Product Viewed", 50),
    ("Product Added", 20),
    ("Checkout Started", 10),
    ("Cart Abandoned", 10),
    ("Order Completed", 10),
)


def load_events(
    db: Database, ids: Sequence[str], count: int, now: datetime, days: int, seed: int
) -> float:
    """`count` track events over the last `days` days, in time order; return the seconds."""
    started = time.perf_counter()
    sqlite = db.is_sqlite
    rng = random.Random(seed)
    pool_size = 100_000
    start = now - timedelta(days=days)
    step = timedelta(days=days) / pool_size
    stamps = [driver_time(sqlite, start + step * i) for i in range(1, pool_size + 1)]
    received = [
        driver_time(sqlite, start + step * i + timedelta(seconds=1))
        for i in range(1, pool_size + 1)
    ]
    names = [name for name, weight in EVENT_NAMES for _ in range(weight)]
    payloads = [
        orjson.dumps(
            {
                "type": "track",
                "event": name,
                "properties": {"product_id": f"sku-{k:05d}", "price": 10 + k, "currency": "EUR"},
                "context": {"library": {"name": "analytics.js", "version": "5.2.1"}},
            }
        ).decode()
        for name, _ in EVENT_NAMES
        for k in range(20)
    ]
    by_name = {name: [p for p in payloads if f'"event":"{name}"' in p] for name, _ in EVENT_NAMES}
    people = len(ids)

    def rows() -> Iterator[tuple[Any, ...]]:
        rand = rng.random
        for n in range(count):
            at = n * pool_size // count
            name = names[int(rand() * 100)]
            yield (
                ids[int(rand() * people)],
                1,
                f"m-{n}",
                "track",
                name,
                stamps[at],
                received[at],
                by_name[name][n % 20],
            )

    load(
        db,
        "events",
        (
            "profile_id",
            "write_key_id",
            "message_id",
            "type",
            "name",
            "timestamp",
            "received_at",
            "payload",
        ),
        rows(),
    )
    return time.perf_counter() - started


def load_waiting(
    db: Database,
    rows: Sequence[tuple[str, str, datetime]],  # enrollment id, profile id, due
    journey_id: str,
    step_id: str,
    entered_at: datetime,
    *,
    drop_indexes: bool = True,
) -> float:
    """Active enrollments waiting at `step_id` until their due time, with their timers."""
    started = time.perf_counter()
    sqlite = db.is_sqlite
    entered = driver_time(sqlite, entered_at)
    context = orjson.dumps({"event": "Signed Up", "properties": {"plan": "plus"}}).decode()

    def enrollments() -> Iterator[tuple[Any, ...]]:
        for eid, pid, due in rows:
            wake = driver_time(sqlite, due)
            yield (
                eid,
                journey_id,
                1,
                pid,
                "",
                step_id,
                "active",
                "treated",
                entered,
                wake,
                context,
            )

    load(
        db,
        "enrollments",
        (
            "id",
            "journey_id",
            "version",
            "profile_id",
            "key",
            "step_id",
            "status",
            "layer",
            "entered_at",
            "wake_at",
            "context",
        ),
        enrollments(),
        drop_indexes=drop_indexes,
    )

    def timers() -> Iterator[tuple[Any, ...]]:
        for eid, pid, due in rows:
            yield (driver_time(sqlite, due), pid, "enrollment", eid, "{}")

    load(
        db,
        "timers",
        ("due_at", "profile_id", "kind", "ref", "payload"),
        timers(),
        drop_indexes=drop_indexes,
    )
    return time.perf_counter() - started


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
