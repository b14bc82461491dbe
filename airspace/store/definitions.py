"""Definitions as stored: every version of every segment, journey, topic, store, region
and the settings, with the status of the latest (active, paused, archived)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, func, insert, select, update

from airspace.domain.definitions import Change, Document, Kind, Workspace, diff, load_documents
from airspace.domain.errors import InvalidInput, NotFound
from airspace.domain.journey_parser import parse_journey
from airspace.domain.journeys import Journey
from airspace.domain.problems import Problems
from airspace.store.tables import DefinitionRow, WorkspaceRevisionRow, core

LIVE = ("active", "paused")


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """One version as stored."""

    kind: str
    ref: str
    version: int
    status: str
    body: dict[str, Any]
    source: str
    created_at: datetime
    changed_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.ref,
            "version": self.version,
            "status": self.status,
            "definition": self.body,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "changed_at": self.changed_at.isoformat(),
        }


def _stored(row: Any) -> StoredDefinition:
    return StoredDefinition(
        row.kind,
        row.ref,
        row.version,
        row.status,
        row.body,
        row.source,
        row.created_at,
        row.changed_at,
    )


def revision(conn: Connection) -> int:
    """Changes whenever any definition or status changes (for caches)."""
    return int(conn.execute(_REVISION).scalar_one())


_REVISION = select(WorkspaceRevisionRow.revision).where(WorkspaceRevisionRow.id == 1)


def lock_changes(conn: Connection) -> None:
    """The first statement of every transaction that changes definitions: holds the
    revision row until commit, so such transactions queue (on PostgreSQL) instead of
    locking definitions in different orders, and each sees what the one before wrote."""
    conn.execute(_REVISION.with_for_update())


def _changed(conn: Connection) -> None:
    conn.execute(
        update(core(WorkspaceRevisionRow))
        .where(WorkspaceRevisionRow.id == 1)
        .values(revision=WorkspaceRevisionRow.revision + 1)
    )


def live(conn: Connection, kind: str | None = None) -> list[StoredDefinition]:
    """The current version of every definition that is not archived."""
    query = select(DefinitionRow).where(DefinitionRow.status.in_(LIVE))
    if kind is not None:
        query = query.where(DefinitionRow.kind == kind)
    return [_stored(r) for r in conn.execute(query.order_by(DefinitionRow.kind, DefinitionRow.ref))]


def documents(stored: Iterable[StoredDefinition]) -> list[Document]:
    return [Document(cast(Kind, d.kind), d.ref, d.body, d.source) for d in stored]


def current_workspace(conn: Connection) -> Workspace:
    """The workspace the engine runs: every live definition, with the paused journeys."""
    stored = live(conn)
    paused = frozenset(d.ref for d in stored if d.status == "paused" and d.kind == "journey")
    workspace, _ = load_documents(documents(stored), paused=paused)
    versions = {d.ref: d.version for d in stored if d.kind == "journey"}
    journeys = {
        jid: _with_version(journey, versions.get(jid, 1))
        for jid, journey in workspace.journeys.items()
    }
    return replace(workspace, journeys=journeys)


def _with_version(journey: Journey, version: int) -> Journey:
    return replace(journey, version=version)


def journey_version(conn: Connection, journey_id: str, version: int) -> Journey | None:
    """One (possibly old) version of a journey."""
    row = conn.execute(
        select(DefinitionRow.body).where(
            DefinitionRow.kind == "journey",
            DefinitionRow.ref == journey_id,
            DefinitionRow.version == version,
        )
    ).first()
    if row is None:
        return None
    journey = parse_journey(row.body, Problems())
    return _with_version(journey, version) if journey is not None else None


def plan(conn: Connection, wanted: list[Document]) -> list[Change]:
    """What applying these documents would change."""
    return diff(documents(live(conn)), wanted)


def save(
    conn: Connection, wanted: list[Document], now: datetime, *, prune: bool = False
) -> list[Change]:
    """Store a new version of every created or changed document; with `prune`, archive
    the live definitions the documents do not mention."""
    current = {(d.kind, d.ref): d for d in live(conn)}
    changes = diff(documents(current.values()), wanted)
    by_key = {(d.kind, d.id): d for d in wanted}
    for change in changes:
        key = (change.kind, change.id)
        if change.action in ("create", "update"):
            doc = by_key[key]
            _insert_version(conn, doc, current.get(key), now)
        elif change.action == "absent" and prune:
            set_status(conn, change.kind, change.id, "archived", now)
    return changes


def _insert_version(
    conn: Connection, doc: Document, previous: StoredDefinition | None, now: datetime
) -> None:
    last = conn.execute(
        select(func.max(DefinitionRow.version)).where(
            DefinitionRow.kind == doc.kind, DefinitionRow.ref == doc.id
        )
    ).scalar()
    status = "active"
    if previous is not None:
        status = previous.status
        conn.execute(
            update(core(DefinitionRow))
            .where(
                DefinitionRow.kind == doc.kind,
                DefinitionRow.ref == doc.id,
                DefinitionRow.version == previous.version,
            )
            .values(status="replaced", changed_at=now)
        )
    conn.execute(
        insert(core(DefinitionRow)).values(
            kind=doc.kind,
            ref=doc.id,
            version=(last or 0) + 1,
            status=status,
            body=dict(doc.body),
            source=doc.source[:300],
            created_at=now,
            changed_at=now,
        )
    )
    _changed(conn)


def set_status(
    conn: Connection, kind: str, ref: str, status: str, now: datetime
) -> StoredDefinition:
    """Pause, resume (active) or archive the current version."""
    if status not in ("active", "paused", "archived"):
        raise InvalidInput(f"status must be active, paused or archived, not {status!r}")
    if status == "paused" and kind != "journey":
        raise InvalidInput("only journeys can be paused")
    row = conn.execute(
        select(DefinitionRow)
        .where(DefinitionRow.kind == kind, DefinitionRow.ref == ref)
        .where(DefinitionRow.status.in_((*LIVE, "archived")))
        .order_by(DefinitionRow.version.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(f"no {kind} {ref!r}")
    conn.execute(
        update(core(DefinitionRow))
        .where(DefinitionRow.id == row.id)
        .values(status=status, changed_at=now)
    )
    _changed(conn)
    return StoredDefinition(
        row.kind, row.ref, row.version, status, row.body, row.source, row.created_at, now
    )


def history(conn: Connection, kind: str, ref: str) -> list[StoredDefinition]:
    """Every version of a definition, newest first."""
    rows = conn.execute(
        select(DefinitionRow)
        .where(DefinitionRow.kind == kind, DefinitionRow.ref == ref)
        .order_by(DefinitionRow.version.desc())
    ).all()
    if not rows:
        raise NotFound(f"no {kind} {ref!r}")
    return [_stored(r) for r in rows]
