"""The inbox: accepted events, deduplicated by (write key, messageId), and the quarantine.

`accept` commits before the API answers 2xx, so an acknowledged event survives
the process being killed at any instant.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Connection, bindparam, delete, func, insert, select

from airspace.domain.events import Event
from airspace.store.bulk import driver_time, insert_many, placeholders
from airspace.store.database import Database
from airspace.store.tables import (
    INBOX_PARTITIONS,
    InboxRow,
    MessageIdRow,
    QuarantineRow,
    core,
)


@dataclass(frozen=True, slots=True)
class Refused:
    """An item that failed validation, kept in the quarantine with its reason."""

    payload: str
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `accept` did: events queued, duplicates skipped, items quarantined."""

    queued: int
    duplicates: int
    quarantined: int


def partition_of(routing_key: str) -> int:
    """The inbox partition of a routing identifier: stable across processes."""
    return zlib.crc32(routing_key.encode()) % INBOX_PARTITIONS


def _new_message_ids(
    conn: Connection, write_key_id: int, message_ids: list[str], now: datetime
) -> set[str]:
    """Record the messageIds; return those not seen before (race-free across processes)."""
    sqlite = conn.dialect.name == "sqlite"
    seen_at = driver_time(sqlite, now)
    rows = insert_many(
        conn,
        "INSERT INTO message_ids (write_key_id, message_id, seen_at)",
        placeholders(sqlite, 3, 0),
        [(write_key_id, m, seen_at) for m in message_ids],
        "ON CONFLICT DO NOTHING RETURNING message_id",
    )
    return {row[0] for row in rows}


def quarantine(
    conn: Connection, write_key_id: int | None, stage: str, items: Sequence[Refused], now: datetime
) -> None:
    """Keep refused items with their reasons."""
    if items:
        conn.execute(
            insert(core(QuarantineRow)),
            [
                {
                    "write_key_id": write_key_id,
                    "stage": stage,
                    "reason": item.reason,
                    "payload": item.payload,
                    "received_at": now,
                }
                for item in items
            ],
        )


def accept(
    db: Database,
    write_key_id: int,
    events: Sequence[Event],
    refused: Sequence[Refused],
    now: datetime,
) -> Accepted:
    """Queue valid events (once per messageId) and quarantine refused ones, in one commit."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.message_id, event)
    with db.write() as conn:
        sqlite = conn.dialect.name == "sqlite"
        fresh = _new_message_ids(conn, write_key_id, list(unique), now)
        rows = [
            (
                partition_of(event.routing_key),
                write_key_id,
                message_id,
                orjson.dumps(event.to_stored()).decode(),
                driver_time(sqlite, event.received_at),
            )
            for message_id, event in unique.items()
            if message_id in fresh
        ]
        insert_many(
            conn,
            "INSERT INTO inbox (partition, write_key_id, message_id, payload, received_at)",
            placeholders(sqlite, 5, 0),
            rows,
        )
        quarantine(conn, write_key_id, "ingest", refused, now)
    return Accepted(len(rows), len(events) - len(rows), len(refused))


def inbox_depth(db: Database) -> int:
    """Events accepted and not yet applied."""
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(InboxRow)).scalar_one())


def prune_message_ids(db: Database, now: datetime, retention: timedelta) -> int:
    """Forget messageIds older than the retention window."""
    with db.write() as conn:
        result = conn.execute(_FORGET_MESSAGE_IDS, {"before": now - retention})
    return int(result.rowcount or 0)


_FORGET_MESSAGE_IDS = delete(core(MessageIdRow)).where(MessageIdRow.seen_at < bindparam("before"))
