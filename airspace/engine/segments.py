"""Computing a new or changed segment for everyone at once, and recording sizes.

The condition tree is evaluated on *sets* of profile ids: an event condition
is one `GROUP BY` over the event log (its time index), other leaves stream
the profiles once; `all` / `any` / `not` are intersections, unions and
complements. Each member's next re-check (when time alone may change the
answer) comes out of the same queries. Membership is then diffed against
what is stored and written in bulk; from then on the worker keeps it up to
date event by event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, insert, select, text

from airspace.domain import controller, segments, timing
from airspace.domain.definitions import Workspace
from airspace.domain.reactor import channel_access
from airspace.domain.segments import All, AnyOf, Condition, EventCondition, Not, SegmentCondition
from airspace.store import identity as identity_repo
from airspace.store.bulk import driver_time, insert_many, placeholders
from airspace.store.database import Database
from airspace.store.tables import ProfileRow, SegmentMemberRow, SegmentSizeRow, TimerRow, core

Progress = Callable[[str, int, int], None]
PROFILE_CHUNK = 5000


def no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


@dataclass
class _Bulk:
    """The sets being combined, and the earliest re-check per profile."""

    conn: Connection
    db: Database
    ws: Workspace
    now: datetime
    progress: Progress
    universe: set[str] | None = None
    recheck: dict[str, datetime] = field(default_factory=dict)
    _profile_leaves: dict[int, set[str]] = field(default_factory=dict)

    def soonest(self, pid: str, moment: datetime) -> None:
        if moment > self.now and (pid not in self.recheck or moment < self.recheck[pid]):
            self.recheck[pid] = moment

    def evaluate(self, condition: Condition) -> set[str]:
        match condition:
            case All(children):
                if not children:
                    return set(self.everyone())
                result = self.evaluate(children[0])
                for child in children[1:]:
                    result &= self.evaluate(child)
                return result
            case AnyOf(children):
                found: set[str] = set()
                for child in children:
                    found |= self.evaluate(child)
                return found
            case Not(child):
                return self.everyone() - self.evaluate(child)
            case EventCondition():
                return self.events(condition)
            case SegmentCondition(segment):
                query = select(SegmentMemberRow.profile_id).where(
                    SegmentMemberRow.segment_id == segment
                )
                return set(self.conn.execute(query).scalars())
        return self._profile_leaves[id(condition)]

    def everyone(self) -> set[str]:
        """Every profile id (read once, ids only, when a `not` or `at_most` needs it)."""
        if self.universe is None:
            self.universe = set(self.conn.execute(select(ProfileRow.id)).scalars())
        return self.universe

    def events(self, condition: EventCondition) -> set[str]:
        """Members by one pass over the matching events (grouped in SQL when no filter)."""
        stats = self._event_stats(condition)
        members: set[str] = set()
        # As time passes a window only loses events: with `at_least` alone, only a
        # member can leave; with `at_most` alone, only a non-member can join.
        can_leave = condition.at_least > 0 or condition.at_most is None
        can_join = condition.at_most is not None
        for pid, (count, first, last) in stats.items():
            holds = _holds(condition, count, first, last, self.now)
            if holds:
                members.add(pid)
            if condition.within is not None:
                if (holds and can_leave) or (not holds and can_join):
                    self.soonest(pid, first + condition.within)
            elif condition.first_within is not None:
                self.soonest(pid, first + condition.first_within)
            elif condition.last_older_than is not None:
                self.soonest(pid, last + condition.last_older_than)
        if (
            condition.at_least == 0
            and condition.first_within is None
            and condition.last_older_than is None
        ):
            members |= self.everyone() - set(stats)
        return members

    def _event_stats(self, condition: EventCondition) -> dict[str, tuple[int, datetime, datetime]]:
        start = self.now - condition.within if condition.within is not None else condition.since
        end = self.now if condition.within is not None else condition.until
        if condition.since is not None and start is not None:
            start = max(start, condition.since)
        sqlite = self.db.is_sqlite
        where = ["name = :name"]
        params: dict[str, Any] = {"name": condition.name}
        if start is not None:
            where.append(
                "timestamp > :start" if condition.within is not None else "timestamp >= :start"
            )
            params["start"] = driver_time(sqlite, start)
        if end is not None:
            where.append("timestamp <= :end")
            params["end"] = driver_time(sqlite, end)
        clause = " AND ".join(where)
        stats: dict[str, tuple[int, datetime, datetime]] = {}
        if not condition.where:
            rows = self.conn.execute(
                text(
                    "SELECT profile_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM events "
                    f"WHERE {clause} GROUP BY profile_id"
                ),
                params,
            )
            for pid, count, first, last in rows:
                stats[pid] = (count, _time(first), _time(last))
            return stats
        rows = self.conn.execute(
            text(f"SELECT profile_id, timestamp, payload FROM events WHERE {clause}"), params
        )
        for pid, stamp, payload in rows:
            moment = _time(stamp)
            data = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
            if not condition.matches(condition.name, moment, data):
                continue
            count, first, last = stats.get(pid, (0, moment, moment))
            stats[pid] = (count + 1, min(first, moment), max(last, moment))
        return stats

    def profile_leaves(self, condition: Condition) -> None:
        """Evaluate every leaf that looks at the profile itself, in one pass over profiles."""
        wanted = [
            leaf
            for leaf in segments.leaves(condition)
            if not isinstance(leaf, EventCondition | SegmentCondition)
        ]
        for leaf in wanted:
            self._profile_leaves[id(leaf)] = set()
        if not wanted:
            return
        universe: set[str] = set()
        for chunk in profile_chunks(self.conn):
            universe.update(row.id for row in chunk)
            self._leaves_for(chunk, wanted)
            self.progress("profiles", len(universe), len(universe))
        self.universe = universe

    def _leaves_for(self, chunk: list[Any], wanted: Sequence[Condition]) -> None:
        owned = identity_repo.identifiers_of(self.conn, [r.id for r in chunk])
        for row in chunk:
            profile = identity_repo.profile_from_row(row._mapping)
            addresses = controller.addresses(
                profile.traits, ((i.type, i.value) for i in owned.get(row.id, ()))
            )
            granted, reachable = channel_access(profile, addresses, self.ws)
            facts = segments.Facts(
                profile=profile,
                now=self.now,
                tz=timing.timezone_of(profile, self.ws.settings.timezone),
                reachable=reachable,
                granted=granted,
            )
            for leaf in wanted:
                if segments.evaluate(leaf, facts):
                    self._profile_leaves[id(leaf)].add(row.id)
                moment = segments.next_change(leaf, facts)
                if moment is not None:
                    self.soonest(row.id, moment)


def profile_chunks(conn: Connection) -> Iterator[list[Any]]:
    last = ""
    while True:
        rows = conn.execute(
            select(ProfileRow)
            .where(ProfileRow.id > last)
            .order_by(ProfileRow.id)
            .limit(PROFILE_CHUNK)
        ).all()
        if not rows:
            return
        yield list(rows)
        last = rows[-1].id


def _time(value: Any) -> datetime:
    """A time as the driver returns it (SQLite: text in UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _holds(
    condition: EventCondition,
    count: int,
    first: datetime,
    last: datetime,
    now: datetime,
) -> bool:
    if condition.first_within is not None:
        return first > now - condition.first_within
    if condition.last_older_than is not None:
        return last <= now - condition.last_older_than
    if count < condition.at_least:
        return False
    return condition.at_most is None or count <= condition.at_most


@dataclass(frozen=True, slots=True)
class Computed:
    """What a bulk computation did."""

    segment_id: str
    members: int
    entered: int
    exited: int
    rechecks: int


def compute_segment(
    conn: Connection,
    db: Database,
    ws: Workspace,
    segment_id: str,
    now: datetime,
    progress: Progress = no_progress,
) -> Computed:
    """Compute one segment for every profile; store entries, exits and re-checks."""
    segment = ws.segments[segment_id]
    bulk = _Bulk(conn, db, ws, now, progress)
    bulk.profile_leaves(segment.condition)
    progress("events", 0, 1)
    members = bulk.evaluate(segment.condition)
    progress("events", 1, 1)
    current = set(
        conn.execute(
            select(SegmentMemberRow.profile_id).where(SegmentMemberRow.segment_id == segment_id)
        ).scalars()
    )
    entered = sorted(members - current)
    exited = sorted(current - members)
    _write(conn, segment_id, entered, exited, bulk.recheck, now, progress)
    return Computed(segment_id, len(members), len(entered), len(exited), len(bulk.recheck))


def _write(
    conn: Connection,
    segment_id: str,
    entered: list[str],
    exited: list[str],
    recheck: dict[str, datetime],
    now: datetime,
    progress: Progress,
) -> None:
    sqlite = conn.dialect.name == "sqlite"
    stamp = driver_time(sqlite, now)
    total = len(entered) * 2 + len(exited) + len(recheck)
    done = 0
    insert_many(
        conn,
        "INSERT INTO segment_members (segment_id, profile_id, entered_at)",
        placeholders(sqlite, 3, 0),
        [(segment_id, pid, stamp) for pid in entered],
        "ON CONFLICT (segment_id, profile_id) DO NOTHING",  # a worker got there first
    )
    done += len(entered)
    progress("writing", done, total)
    for start in range(0, len(exited), 5000):
        chunk = exited[start : start + 5000]
        conn.execute(
            delete(core(SegmentMemberRow)).where(
                SegmentMemberRow.segment_id == segment_id, SegmentMemberRow.profile_id.in_(chunk)
            )
        )
    insert_many(
        conn,
        "INSERT INTO segment_transitions (segment_id, profile_id, entered, at)",
        placeholders(sqlite, 4, 0),
        [(segment_id, pid, True, stamp) for pid in entered]
        + [(segment_id, pid, False, stamp) for pid in exited],
    )
    done += len(entered) + len(exited)
    progress("writing", done, total)
    conn.execute(
        delete(core(TimerRow)).where(TimerRow.kind == "segment", TimerRow.ref == segment_id)
    )
    insert_many(
        conn,
        "INSERT INTO timers (profile_id, kind, ref, due_at, payload)",
        placeholders(sqlite, 4, 1),
        [
            (pid, "segment", segment_id, driver_time(sqlite, due), "{}")
            for pid, due in recheck.items()
        ],
    )
    progress("writing", total, total)


SIZE_EVERY = timedelta(minutes=5)


def record_sizes(conn: Connection, now: datetime, segment_ids: Sequence[str]) -> None:
    """Note the size of these segments now, empty ones too (sizes over time); with
    several workers, the first to get here in a 5-minute span writes them."""
    last = conn.execute(_LAST_SIZES).scalar()
    if last is not None and now - last < SIZE_EVERY and not _new(conn, segment_ids):
        return
    sizes = dict.fromkeys(segment_ids, 0)
    for sid, size in conn.execute(_SIZES):
        if sid in sizes:
            sizes[sid] = size
    if sizes:
        conn.execute(
            _INSERT_SIZE,
            [{"segment_id": sid, "at": now, "size": size} for sid, size in sizes.items()],
        )


# Built once: `record_sizes` runs every few minutes of every worker.
_LAST_SIZES = select(func.max(SegmentSizeRow.at))
_SIZES = select(SegmentMemberRow.segment_id, func.count()).group_by(SegmentMemberRow.segment_id)
_INSERT_SIZE = insert(core(SegmentSizeRow))
_SIZED = select(SegmentSizeRow.segment_id).distinct()


def _new(conn: Connection, segment_ids: Sequence[str]) -> bool:
    """Has any of these segments no size recorded yet?"""
    known = set(conn.execute(_SIZED).scalars())
    return bool(set(segment_ids) - known)
