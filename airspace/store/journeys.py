"""What journeys read and write: memberships, enrollments, event facts, timers,
candidates and messages. Rows become domain objects here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    BindParameter,
    Connection,
    Integer,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    text,
    update,
)

from airspace.domain.controller import Candidate, Decision, Sent
from airspace.domain.journeys import CallWebhook, Enrollment, Propose, Withdraw
from airspace.domain.segments import EventCondition
from airspace.store.bulk import driver_time, upsert_many
from airspace.store.database import Database
from airspace.store.identity import lock_key
from airspace.store.tables import (
    CandidateRow,
    DecisionRow,
    EnrollmentRow,
    EventRow,
    JourneyStatRow,
    MessageRow,
    SegmentMemberRow,
    SegmentTransitionRow,
    TimerRow,
    UtcTime,
    core,
)

CHUNK = 2000

# The statements the engine runs for every person are built once, here: a statement
# built anew for each call costs more to construct and to look up in SQLAlchemy's
# compiled cache than the database takes to run it. Lists go in as expanding
# parameters (`ids`), so one statement serves every length.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _kind(column: Any) -> str:
    if isinstance(column.type, UtcTime):
        return "time"
    if isinstance(column.type, JSON):  # JSON, and JSONB through its variant
        return "json"
    return "plain"


def upsert(
    conn: Connection,
    table: Any,
    rows: list[dict[str, Any]],
    keys: list[str],
    *,
    update: bool = True,
) -> None:
    """Insert rows; where the key exists, overwrite the other columns (or, without
    `update`, keep what is there). Bulk, straight to the driver (see `bulk.py`)."""
    if not rows:
        return
    columns = {name: _kind(core(table).c[name]) for name in rows[0]}
    upsert_many(conn, table.__tablename__, columns, rows, keys, update=update)


def insert_rows(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Plain bulk insert."""
    if not rows:
        return
    columns = {name: _kind(core(table).c[name]) for name in rows[0]}
    upsert_many(conn, table.__tablename__, columns, rows, [], update=False)


# --- reading a person's state -----------------------------------------------------------


_MEMBERSHIPS = select(SegmentMemberRow).where(SegmentMemberRow.profile_id.in_(_IDS))


def memberships(conn: Connection, profile_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
    """profile id → segment id → entered at."""
    found: dict[str, dict[str, datetime]] = {}
    for chunk in chunks(profile_ids):
        for row in conn.execute(_MEMBERSHIPS, {"ids": chunk}):
            found.setdefault(row.profile_id, {})[row.segment_id] = row.entered_at
    return found


def enrollment_from_row(row: Any) -> Enrollment:
    return Enrollment(
        id=row.id,
        journey_id=row.journey_id,
        version=row.version,
        profile_id=row.profile_id,
        step_id=row.step_id,
        entered_at=row.entered_at,
        layer=row.layer,
        key=row.key,
        status=row.status,
        wake_at=row.wake_at,
        context=row.context,
        ended_at=row.ended_at,
        exit_reason=row.exit_reason,
        converted_at=row.converted_at,
        conversion_value=row.conversion_value,
    )


_ENROLLMENTS = select(EnrollmentRow).where(EnrollmentRow.profile_id.in_(_IDS))


def enrollments_of(conn: Connection, profile_ids: Sequence[str]) -> dict[str, list[Enrollment]]:
    """profile id → every enrollment of theirs (active and past, for re-entry and goals)."""
    found: dict[str, list[Enrollment]] = {}
    for chunk in chunks(profile_ids):
        for row in conn.execute(_ENROLLMENTS, {"ids": chunk}):
            found.setdefault(row.profile_id, []).append(enrollment_from_row(row))
    return found


def _event_facts(payload: bool, since: bool) -> Any:
    columns: list[Any] = [EventRow.profile_id, EventRow.name, EventRow.timestamp]
    if payload:
        columns.append(EventRow.payload)
    query = select(*columns).where(
        EventRow.profile_id.in_(_IDS), EventRow.name.in_(bindparam("names", expanding=True))
    )
    return query.where(EventRow.timestamp >= bindparam("since")) if since else query


# (with the payload, since a time) → statement
_EVENT_FACTS = {(p, s): _event_facts(p, s) for p in (False, True) for s in (False, True)}


def event_facts(
    conn: Connection,
    profile_ids: Sequence[str],
    conditions: Sequence[EventCondition],
    now: datetime,
) -> dict[str, dict[str, list[datetime]]]:
    """profile id → condition fingerprint → sorted times of the events that match it."""
    facts: dict[str, dict[str, list[datetime]]] = {}
    if not conditions or not profile_ids:
        return facts
    names = sorted({c.name for c in conditions})
    horizons = [c.horizon for c in conditions]
    since = None if any(h is None for h in horizons) else now - max(h for h in horizons if h)
    need_payload = any(c.where for c in conditions)
    query = _EVENT_FACTS[need_payload, since is not None]
    for chunk in chunks(profile_ids, 500):
        for row in conn.execute(query, {"ids": chunk, "names": names, "since": since}):
            payload = _payload(row.payload) if need_payload else {}
            mine = facts.setdefault(row.profile_id, {})
            for condition in conditions:
                if condition.matches(row.name, row.timestamp, payload):
                    mine.setdefault(condition.fingerprint, []).append(row.timestamp)
    for mine in facts.values():
        for stamps in mine.values():
            stamps.sort()
    return facts


def _payload(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = orjson.loads(value)
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def entered_totals(conn: Connection, capped: Iterable[str]) -> dict[str, int]:
    """How many people the journeys with an entry cap have taken (a journey with no
    counter has taken nobody yet). Read without a lock: `add_entries` checks at the end."""
    wanted = list(capped)
    if not wanted:
        return {}
    return {r.journey_id: r.entered for r in conn.execute(_ENTERED_TOTALS, {"ids": wanted})}


_ENTERED_TOTALS = select(JourneyStatRow.journey_id, JourneyStatRow.entered).where(
    JourneyStatRow.journey_id.in_(_IDS)
)
_ADD_ENTRIES = text(
    "INSERT INTO journey_stats (journey_id, entered) VALUES (:journey, :n)"
    " ON CONFLICT (journey_id) DO UPDATE SET entered = journey_stats.entered + excluded.entered"
    " RETURNING entered"
)
_RESTART_COUNTER = text(
    "INSERT INTO journey_stats (journey_id, entered)"
    " SELECT CAST(:journey AS VARCHAR(100)), count(*) FROM enrollments"
    " WHERE journey_id = CAST(:journey AS VARCHAR(100))"
    " ON CONFLICT (journey_id) DO UPDATE SET entered = excluded.entered"
)


_COUNTERS = "journey entry counters"  # the advisory lock between workers and `apply`


def hold_counters(conn: Connection, *, restart: bool) -> None:
    """PostgreSQL: workers adding to the counters hold this lock together (`restart`
    False); `apply` restarting the counters of journeys that gain a cap holds it alone.
    So a restart counts the enrollments of every batch that added its entries before it,
    and a batch that adds after it sees the new cap. Both take it as their last step."""
    if conn.dialect.name != "postgresql":
        return
    take = "pg_advisory_xact_lock" if restart else "pg_advisory_xact_lock_shared"
    conn.execute(text(f"SELECT {take}(:key)"), {"key": lock_key(_COUNTERS)})


def add_entries(conn: Connection, entries: Mapping[str, int]) -> dict[str, int]:
    """Add the people capped journeys took to their counters, in sorted order; their new
    totals. Each counter stays locked until commit: a transaction adds its entries last,
    so that nothing it waits for afterwards can wait for it."""
    return {
        jid: conn.execute(_ADD_ENTRIES, {"journey": jid, "n": n}).scalar_one()
        for jid, n in sorted(entries.items())
        if n
    }


def restart_counters(conn: Connection, journey_ids: Iterable[str]) -> None:
    """Journeys that have just gained an entry cap count the enrollments they already
    have (their counters were not kept without a cap)."""
    for jid in sorted(journey_ids):
        conn.execute(_RESTART_COUNTER, {"journey": jid})


# --- writing ----------------------------------------------------------------------------


def enrollment_row(e: Enrollment) -> dict[str, Any]:
    return {
        "id": e.id,
        "journey_id": e.journey_id,
        "version": e.version,
        "profile_id": e.profile_id,
        "key": e.key,
        "step_id": e.step_id,
        "status": e.status,
        "layer": e.layer,
        "entered_at": e.entered_at,
        "wake_at": e.wake_at,
        "context": dict(e.context),
        "ended_at": e.ended_at,
        "exit_reason": e.exit_reason,
        "converted_at": e.converted_at,
        "conversion_value": e.conversion_value,
    }


@dataclass
class PersonWrite:
    """One person's changes, as `write_people` takes them."""

    profile_id: str
    entered: list[tuple[str, datetime]]
    exited: list[tuple[str, datetime]]
    enrollments: list[Enrollment]
    proposals: list[tuple[str, Propose, str]]  # candidate id, proposal, status
    withdrawals: list[Withdraw]
    timers: dict[tuple[str, str], datetime | None]  # (kind, ref) → due (None: remove)


_LEAVE_SEGMENT = delete(core(SegmentMemberRow)).where(
    SegmentMemberRow.segment_id == bindparam("segment"), SegmentMemberRow.profile_id.in_(_IDS)
)
_WITHDRAW = (
    update(core(CandidateRow))
    .where(
        CandidateRow.enrollment_id == bindparam("b_enrollment"),
        # Not IN (...): an expanding parameter cannot go with executemany.
        or_(CandidateRow.status == "pending", CandidateRow.status == "deferred"),
    )
    .values(status="withdrawn", reason=bindparam("b_reason"), decided_at=bindparam("b_now"))
)


def write_people(conn: Connection, people: Sequence[PersonWrite], now: datetime) -> None:
    """Write memberships, transitions, enrollments, candidates and timers of many people."""
    members = [
        {"segment_id": sid, "profile_id": p.profile_id, "entered_at": at}
        for p in people
        for sid, at in p.entered
    ]
    # A bulk computation may have put someone in at the same moment: keep that row.
    upsert(conn, SegmentMemberRow, members, ["segment_id", "profile_id"], update=False)
    gone: dict[str, list[str]] = {}
    for p in people:
        for sid, _ in p.exited:
            gone.setdefault(sid, []).append(p.profile_id)
    for sid, pids in gone.items():
        for chunk in chunks(pids):
            conn.execute(_LEAVE_SEGMENT, {"segment": sid, "ids": chunk})
    transitions = [
        {"segment_id": sid, "profile_id": p.profile_id, "entered": flag, "at": at}
        for p in people
        for flag, moves in ((True, p.entered), (False, p.exited))
        for sid, at in moves
    ]
    insert_rows(conn, SegmentTransitionRow, transitions)
    upsert(conn, EnrollmentRow, [enrollment_row(e) for p in people for e in p.enrollments], ["id"])
    candidates = [
        _candidate_row(cid, p.profile_id, proposal, status, now)
        for p in people
        for cid, proposal, status in p.proposals
    ]
    insert_rows(conn, CandidateRow, candidates)
    withdrawals = [
        {"b_enrollment": w.enrollment_id, "b_reason": w.reason, "b_now": now}
        for p in people
        for w in p.withdrawals
    ]
    if withdrawals:
        conn.execute(_WITHDRAW, withdrawals)
    set_timers(
        conn,
        [(p.profile_id, kind, ref, due) for p in people for (kind, ref), due in p.timers.items()],
    )


def set_timers(
    conn: Connection,
    timers: Sequence[tuple[str, str, str, datetime | None]],
    payloads: Mapping[tuple[str, str, str], dict[str, Any]] | None = None,
) -> None:
    """Create, move or remove timers: (profile id, kind, ref, due or None)."""
    keep = [
        {
            "profile_id": pid,
            "kind": kind,
            "ref": ref,
            "due_at": due,
            "payload": (payloads or {}).get((pid, kind, ref), {}),
        }
        for pid, kind, ref, due in timers
        if due is not None
    ]
    upsert(conn, TimerRow, keep, ["profile_id", "kind", "ref"])
    drop: dict[tuple[str, str], list[str]] = {}
    for pid, kind, ref, due in timers:
        if due is None:
            drop.setdefault((kind, ref), []).append(pid)
    for (kind, ref), pids in drop.items():
        for chunk in chunks(pids):
            conn.execute(_DROP_TIMERS, {"kind": kind, "ref": ref, "ids": chunk})


_DROP_TIMERS = delete(core(TimerRow)).where(
    TimerRow.kind == bindparam("kind"),
    TimerRow.ref == bindparam("ref"),
    TimerRow.profile_id.in_(_IDS),
)


# --- timers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A claimed timer."""

    id: int
    profile_id: str
    kind: str
    ref: str
    due_at: datetime
    payload: dict[str, Any]


_CLAIM_DUE = (
    select(TimerRow)
    .where(TimerRow.due_at <= bindparam("now"))
    .order_by(TimerRow.due_at)
    .limit(bindparam("limit", type_=Integer))
)
_CLAIM_DUE_SKIP_LOCKED = _CLAIM_DUE.with_for_update(skip_locked=True)


def claim_due(conn: Connection, db: Database, now: datetime, limit: int) -> list[DueTimer]:
    """The earliest due timers no other worker holds; they are deleted with this
    transaction's commit (work that re-schedules writes a new row)."""
    query = _CLAIM_DUE_SKIP_LOCKED if db.is_postgres else _CLAIM_DUE
    rows = conn.execute(query, {"now": now, "limit": limit}).all()
    return [DueTimer(r.id, r.profile_id, r.kind, r.ref, r.due_at, r.payload or {}) for r in rows]


def delete_timers(conn: Connection, ids: Sequence[int]) -> None:
    for chunk in chunks(list(ids)):
        conn.execute(_DELETE_TIMERS, {"ids": chunk})


_DELETE_TIMERS = delete(core(TimerRow)).where(TimerRow.id.in_(_IDS))


def enroll_audience(
    conn: Connection, journey_id: str, segment: str | None, due: datetime, payload: dict[str, Any]
) -> None:
    """One `enroll` timer per person in a segment (or everyone), in one statement."""
    sqlite = conn.dialect.name == "sqlite"
    # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT.
    audience = "segment_members WHERE segment_id = :segment" if segment else "profiles WHERE true"
    column = "profile_id" if segment else "id"
    json_value = ":payload" if sqlite else "CAST(:payload AS jsonb)"
    conn.execute(
        text(
            "INSERT INTO timers (profile_id, kind, ref, due_at, payload) "
            f"SELECT {column}, 'enroll', :ref, :due, {json_value} FROM {audience} "
            "ON CONFLICT (profile_id, kind, ref) DO NOTHING"
        ),
        {
            "segment": segment,
            "ref": journey_id,
            "due": driver_time(sqlite, due),
            "payload": orjson.dumps(payload).decode(),
        },
    )


def audience_ids(conn: Connection, segment: str | None) -> list[str]:
    """Everyone in a segment, or everyone."""
    if segment:
        query = select(SegmentMemberRow.profile_id).where(SegmentMemberRow.segment_id == segment)
        return list(conn.execute(query).scalars())
    return list(conn.execute(text("SELECT id FROM profiles")).scalars())


def planned_schedules(conn: Connection) -> set[str]:
    """The journeys that have a next scheduled run."""
    return set(conn.execute(_PLANNED_SCHEDULES).scalars())


_PLANNED_SCHEDULES = select(TimerRow.ref).where(
    TimerRow.profile_id == "", TimerRow.kind == "schedule"
)


def decision_times(conn: Connection, profile_ids: Sequence[str]) -> dict[str, datetime]:
    """profile id → when their pending candidates are to be decided."""
    return {r.profile_id: r.due_at for r in conn.execute(_DECISION_TIMES, {"ids": profile_ids})}


_DECISION_TIMES = select(TimerRow.profile_id, TimerRow.due_at).where(
    TimerRow.kind == "decide", TimerRow.profile_id.in_(_IDS)
)


def postpone_earliest(conn: Connection, now: datetime, delay: timedelta) -> int | None:
    """Move the earliest due timer `delay` later; return its id."""
    timer_id = conn.execute(
        select(TimerRow.id).where(TimerRow.due_at <= now).order_by(TimerRow.due_at).limit(1)
    ).scalar()
    if timer_id is not None:
        conn.execute(
            update(core(TimerRow)).where(TimerRow.id == timer_id).values(due_at=now + delay)
        )
    return timer_id


def next_due(conn: Connection) -> datetime | None:
    """When the earliest timer is due."""
    return conn.execute(_NEXT_DUE).scalar()


_NEXT_DUE = select(TimerRow.due_at).order_by(TimerRow.due_at).limit(1)


def lock_profiles_skip_locked(
    conn: Connection, db: Database, profile_ids: Iterable[str]
) -> set[str]:
    """Lock what can be locked now (PostgreSQL); a person another worker holds waits for
    the next round instead of blocking this worker."""
    wanted = sorted(set(profile_ids))
    if not db.is_postgres:
        return set(wanted)
    got: set[str] = set()
    for chunk in chunks(wanted):
        got |= set(
            conn.execute(
                text(
                    "SELECT id FROM profiles WHERE id = ANY(:ids) "
                    "ORDER BY id FOR UPDATE SKIP LOCKED"
                ),
                {"ids": list(chunk)},
            ).scalars()
        )
    return got


# --- candidates and messages ------------------------------------------------------------


def _candidate_row(
    cid: str, profile_id: str, p: Propose, status: str, now: datetime
) -> dict[str, Any]:
    m = p.message
    return {
        "id": cid,
        "profile_id": profile_id,
        "enrollment_id": p.enrollment_id,
        "journey_id": p.journey_id,
        "step_id": p.step_id,
        "spec": {
            "channels": list(m.channels),
            "content": m.content,
            "topic": m.topic,
            "value": m.value,
            "urgent": m.urgent,
            "transactional": m.transactional,
            "priority": m.priority,
            "tier": m.tier,
            "context": dict(p.context),
        },
        "layer": p.layer,
        "status": status,
        "reason": "" if status == "pending" else f"held out ({p.layer})",
        "channel": None,
        "created_at": now,
        "expires_at": p.expires_at,
        "decided_at": None if status == "pending" else now,
    }


def candidate_from_row(row: Any) -> Candidate:
    spec = row.spec
    return Candidate(
        id=row.id,
        profile_id=row.profile_id,
        enrollment_id=row.enrollment_id,
        journey_id=row.journey_id,
        step_id=row.step_id,
        channels=tuple(spec.get("channels", ())),
        content=spec.get("content", ""),
        created_at=row.created_at,
        expires_at=row.expires_at,
        topic=spec.get("topic"),
        value=spec.get("value"),
        urgent=bool(spec.get("urgent")),
        transactional=bool(spec.get("transactional")),
        priority=int(spec.get("priority") or 0),
        tier=int(spec.get("tier") or 0),
        context=spec.get("context") or {},
    )


def open_candidates(conn: Connection, profile_ids: Sequence[str]) -> dict[str, list[Candidate]]:
    """profile id → candidates waiting for a decision (pending or deferred)."""
    found: dict[str, list[Candidate]] = {}
    for chunk in chunks(profile_ids):
        for row in conn.execute(_OPEN_CANDIDATES, {"ids": chunk}):
            found.setdefault(row.profile_id, []).append(candidate_from_row(row))
    return found


_OPEN_CANDIDATES = select(CandidateRow).where(
    CandidateRow.profile_id.in_(_IDS), CandidateRow.status.in_(("pending", "deferred"))
)


def sent_since(
    conn: Connection, profile_ids: Sequence[str], since: datetime
) -> dict[str, list[Sent]]:
    """profile id → messages sent since `since` (for caps)."""
    found: dict[str, list[Sent]] = {}
    for chunk in chunks(profile_ids):
        for row in conn.execute(_SENT_SINCE, {"ids": chunk, "since": since}):
            found.setdefault(row.profile_id, []).append(
                Sent(row.sent_at, row.channel, row.journey_id, row.topic, row.transactional)
            )
    return found


_SENT_SINCE = select(
    MessageRow.profile_id,
    MessageRow.sent_at,
    MessageRow.channel,
    MessageRow.journey_id,
    MessageRow.topic,
    MessageRow.transactional,
).where(MessageRow.profile_id.in_(_IDS), MessageRow.sent_at >= bindparam("since"))


_RECORD_OUTCOME = (
    update(core(CandidateRow))
    .where(CandidateRow.id == bindparam("b_cid"))
    .values(
        status=bindparam("b_status"),
        reason=bindparam("b_reason"),
        channel=bindparam("b_channel"),
        decided_at=bindparam("b_now"),
    )
)


def write_decisions(
    conn: Connection,
    decided: Sequence[tuple[Candidate, Decision, str]],  # candidate, decision, address
    now: datetime,
) -> None:
    """Record the controller's decisions; what is sent goes to the capture channel."""
    messages = []
    outcomes = [
        {
            "b_cid": candidate.id,
            "b_status": {
                "send": "sent",
                "withhold": "withheld",
                "defer": "deferred",
                "suppress": "suppressed",
            }[d.outcome],
            "b_reason": d.reason[:500],
            "b_channel": d.channel,
            "b_now": now,
        }
        for candidate, d, _ in decided
    ]
    if outcomes:
        conn.execute(_RECORD_OUTCOME, outcomes)
    for candidate, decision, address in decided:
        if decision.outcome == "send" and decision.channel is not None:
            messages.append(
                {
                    "idempotency_key": candidate.id,
                    "profile_id": candidate.profile_id,
                    "candidate_id": candidate.id,
                    "journey_id": candidate.journey_id,
                    "step_id": candidate.step_id,
                    "channel": decision.channel,
                    "address": address,
                    "topic": candidate.topic,
                    "content": candidate.content,
                    "body": {"content": candidate.content, "context": dict(candidate.context)},
                    "transactional": candidate.transactional,
                    "status": "captured",
                    "sent_at": now,
                }
            )
    upsert(conn, MessageRow, messages, ["idempotency_key"], update=False)


def queue_webhooks(
    conn: Connection, calls: Sequence[tuple[str, str, Enrollment, CallWebhook]], now: datetime
) -> None:
    """Webhook calls to make after commit: (profile id, call id, enrollment, call). A
    held-out person's call is recorded, not made: it may well send them something."""
    if not calls:
        return
    conn.execute(
        insert(core(MessageRow)),
        [
            {
                "idempotency_key": call_id,
                "profile_id": pid,
                "candidate_id": None,
                "journey_id": journey_id,
                "step_id": call.step_id,
                "channel": "webhook",
                "address": call.url,
                "topic": None,
                "content": call.step_id,
                "body": {
                    "method": call.method,
                    "json": {
                        "profile_id": pid,
                        "journey_id": journey_id,
                        "enrollment_id": call.enrollment_id,
                        "step_id": call.step_id,
                        "data": dict(call.body),
                    },
                },
                "transactional": True,
                "status": "pending" if enrollment.layer == "treated" else "held_out",
                "sent_at": now,
            }
            for pid, call_id, enrollment, call in calls
            for journey_id in [enrollment.journey_id]
        ],
    )


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message a channel adapter must deliver after commit."""

    id: int
    idempotency_key: str
    channel: str
    address: str
    body: dict[str, Any]


def claim_outgoing(
    conn: Connection, db: Database, now: datetime, limit: int, stale: datetime
) -> list[Outgoing]:
    """Pending deliveries (and ones whose sender died before recording the result)."""
    query = (
        select(
            MessageRow.id,
            MessageRow.idempotency_key,
            MessageRow.channel,
            MessageRow.address,
            MessageRow.body,
        )
        .where(
            or_(
                MessageRow.status == "pending",
                and_(MessageRow.status == "sending", MessageRow.sent_at < stale),
            )
        )
        .order_by(MessageRow.id)
        .limit(limit)
    )
    if db.is_postgres:
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if rows:
        conn.execute(
            update(core(MessageRow))
            .where(MessageRow.id.in_([r.id for r in rows]))
            .values(status="sending", sent_at=now)
        )
    return [Outgoing(r.id, r.idempotency_key, r.channel, r.address, r.body) for r in rows]


MAX_ATTEMPTS = 10


def record_delivery(
    conn: Connection, message_id: int, status: str, detail: str, now: datetime
) -> None:
    """The channel's answer for one message; a retry after the last attempt is a failure."""
    body = conn.execute(select(MessageRow.body).where(MessageRow.id == message_id)).scalar() or {}
    attempts = int(body.get("attempts", 0)) + 1
    if status == "pending" and attempts >= MAX_ATTEMPTS:
        status, detail = "failed", f"{detail} (gave up after {attempts} attempts)"
    conn.execute(
        update(core(MessageRow))
        .where(MessageRow.id == message_id)
        .values(status=status, sent_at=now, body={**body, "result": detail, "attempts": attempts})
    )


# --- merges and erasure -----------------------------------------------------------------

MOVED_WITH_PERSON = (EnrollmentRow, CandidateRow, MessageRow, SegmentTransitionRow, DecisionRow)


def follow_merge(conn: Connection, merged_id: str, survivor_id: str) -> None:
    """Move what journeys know of a merged profile to its survivor; its memberships and
    re-checks go (the survivor is evaluated afresh)."""
    for table in MOVED_WITH_PERSON:
        conn.execute(
            update(core(table)).where(table.profile_id == merged_id).values(profile_id=survivor_id)
        )
    conn.execute(delete(core(SegmentMemberRow)).where(SegmentMemberRow.profile_id == merged_id))
    taken = {
        (r.kind, r.ref)
        for r in conn.execute(
            select(TimerRow.kind, TimerRow.ref).where(TimerRow.profile_id == survivor_id)
        )
    }
    for row in conn.execute(select(TimerRow).where(TimerRow.profile_id == merged_id)).all():
        if row.kind in ("segment", "anniversary") or (row.kind, row.ref) in taken:
            conn.execute(delete(core(TimerRow)).where(TimerRow.id == row.id))
        else:
            conn.execute(
                update(core(TimerRow)).where(TimerRow.id == row.id).values(profile_id=survivor_id)
            )


JOURNEY_PERSONAL = (
    SegmentMemberRow,
    SegmentTransitionRow,
    EnrollmentRow,
    TimerRow,
    CandidateRow,
    MessageRow,
    DecisionRow,
)


def export_journeys(conn: Connection, profile_id: str) -> dict[str, list[dict[str, Any]]]:
    """Everything journeys hold about a person, table by table."""
    result: dict[str, list[dict[str, Any]]] = {}
    for table in JOURNEY_PERSONAL:
        rows = conn.execute(select(table).where(table.profile_id == profile_id)).all()
        result[table.__tablename__] = [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r._mapping.items()}
            for r in rows
        ]
    return result


def erase_journeys(conn: Connection, profile_id: str) -> int:
    """Delete everything journeys hold about a person; return the number of rows."""
    return sum(
        conn.execute(delete(core(table)).where(table.profile_id == profile_id)).rowcount
        for table in JOURNEY_PERSONAL
    )
