"""Applying definitions: validate, store new versions, and bring state in line.

After new versions are stored, new or changed segments are computed for
everyone (in dependency order), enrollments of older journey versions move
to the new one where it names a migration, anniversary journeys get a timer
per person with the date trait, and scheduled journeys get their next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select

from airspace.domain import journeys as flow
from airspace.domain import timing
from airspace.domain.definitions import (
    Change,
    Document,
    Workspace,
    documents_from_files,
    load_documents,
)
from airspace.domain.errors import InvalidInput
from airspace.domain.problems import Problem, Problems
from airspace.domain.segments import lookup
from airspace.engine.journeys import sync_schedules
from airspace.engine.segments import (
    Computed,
    Progress,
    compute_segment,
    no_progress,
    profile_chunks,
)
from airspace.store import definitions as repo
from airspace.store import identity as identity_repo
from airspace.store import journeys as journeys_repo
from airspace.store.database import Database
from airspace.store.tables import EnrollmentRow


@dataclass
class Applied:
    """What `apply` did."""

    changes: list[Change]
    warnings: list[Problem]
    computed: list[Computed] = field(default_factory=list)
    migrated: int = 0


def read_folder(folder: Path) -> tuple[list[Document], list[Problem]]:
    """Every YAML document under a folder, with the problems of reading it."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder of YAML definitions")
    problems = Problems()
    files: dict[str, str] = {}
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        name = path.relative_to(folder).as_posix()
        try:
            files[name] = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as error:
            problems.error(name, f"cannot be read as UTF-8 text: {error}")
    if not files and not problems.items:
        problems.error(str(folder), "no .yaml files found")
    documents = documents_from_files(files, problems)
    return documents, problems.items


def validate(documents: list[Document], read_problems: list[Problem]) -> list[Problem]:
    """Every problem of a set of documents (errors and warnings), reading included."""
    _, problems = load_documents(documents)
    return [*read_problems, *problems]


def check(documents: list[Document]) -> tuple[Workspace, list[Problem]]:
    """The workspace these documents define, and every problem; raises on errors."""
    workspace, problems = load_documents(documents)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        listed = "; ".join(str(p) for p in errors)
        raise InvalidInput(f"{len(errors)} problem(s): {listed}")
    return workspace, [p for p in problems if p.level == "warning"]


def merged_documents(conn: Connection, documents: list[Document]) -> list[Document]:
    """The live documents with these replacing or adding to them."""
    given = {(d.kind, d.id) for d in documents}
    kept = [d for d in repo.documents(repo.live(conn)) if (d.kind, d.id) not in given]
    return kept + documents


def apply(
    db: Database,
    documents: list[Document],
    now: datetime,
    *,
    prune: bool = False,
    complete: bool = True,
    progress: Progress = no_progress,
) -> Applied:
    """Validate and apply documents in one transaction.

    `complete`: the documents are the whole workspace (a folder); otherwise they
    are merged into what is stored (one definition through the admin API).
    """
    with db.write() as conn:
        repo.lock_changes(conn)
        everything = documents if complete else merged_documents(conn, documents)
        check(everything)
        before = repo.current_workspace(conn)
        changes = repo.save(conn, documents, now, prune=prune and complete)
        workspace = repo.current_workspace(conn)
        _, problems = load_documents(repo.documents(repo.live(conn)))
        applied = Applied(changes, [p for p in problems if p.level == "warning"])
        touched: set[tuple[str, str]] = {
            (c.kind, c.id) for c in changes if c.action in ("create", "update")
        }
        for sid in workspace.segment_order():
            if ("segment", sid) in touched or _refers_to_touched(workspace, sid, touched):
                applied.computed.append(compute_segment(conn, db, workspace, sid, now, progress))
                touched.add(("segment", sid))  # what refers to it is recomputed after it
        for jid, journey in workspace.journeys.items():
            if ("journey", jid) not in touched:
                continue
            applied.migrated += _migrate(conn, journey)
            if journey.entry.kind == "anniversary":
                _schedule_anniversaries(conn, workspace, journey, now)
        sync_schedules(
            conn, workspace, now, replan=[jid for kind, jid in touched if kind == "journey"]
        )
        _restart_counters(conn, before, workspace)
    return applied


def _restart_counters(conn: Connection, before: Workspace, after: Workspace) -> None:
    """Only capped journeys keep a counter of their entries, and only while they run: one
    that gains a cap, or comes back with one, counts the enrollments it has. The last
    step of the transaction, as the workers' counting is (`hold_counters`)."""
    gained = [
        jid
        for jid, journey in after.journeys.items()
        if journey.entry_cap is not None
        and (jid not in before.journeys or before.journeys[jid].entry_cap is None)
    ]
    if gained:
        journeys_repo.hold_counters(conn, restart=True)
        journeys_repo.restart_counters(conn, gained)


def _refers_to_touched(workspace: Workspace, sid: str, touched: set[tuple[str, str]]) -> bool:
    deps = workspace.segments[sid].dependencies.segments
    return any(("segment", d) in touched for d in deps)


def _migrate(conn: Connection, journey: flow.Journey) -> int:
    """Move active enrollments of older versions whose step the new version maps."""
    if not journey.migrate:
        return 0
    rows = conn.execute(
        select(EnrollmentRow).where(
            EnrollmentRow.journey_id == journey.id,
            EnrollmentRow.status == "active",
            EnrollmentRow.version < journey.version,
        )
    ).all()
    moved = [m for r in rows if (m := flow.migrate(journey, journeys_repo.enrollment_from_row(r)))]
    journeys_repo.upsert(
        conn, EnrollmentRow, [journeys_repo.enrollment_row(e) for e in moved], ["id"]
    )
    return len(moved)


def _schedule_anniversaries(
    conn: Connection, workspace: Workspace, journey: flow.Journey, now: datetime
) -> None:
    """One timer per person with the date trait, at their next anniversary, local time."""
    entry = journey.entry
    if not entry.trait or entry.local_time is None:
        return
    for chunk in profile_chunks(conn):
        timers = []
        for row in chunk:
            profile = identity_repo.profile_from_row(row._mapping)
            born = timing.as_date(lookup(profile.traits, entry.trait))
            if born is None:
                continue
            tz = timing.timezone_of(profile, workspace.settings.timezone)
            due = timing.next_anniversary(born, now, entry.local_time, tz)
            timers.append((profile.profile_id, "anniversary", journey.id, due))
        journeys_repo.set_timers(conn, timers)


def set_status(
    db: Database, kind: str, ref: str, status: str, now: datetime
) -> repo.StoredDefinition:
    """Pause, resume or archive a definition."""
    with db.write() as conn:
        repo.lock_changes(conn)
        before = repo.current_workspace(conn)
        stored = repo.set_status(conn, kind, ref, status, now)
        after = repo.current_workspace(conn)
        sync_schedules(conn, after, now)
        _restart_counters(conn, before, after)  # an archived journey resumed
    return stored
