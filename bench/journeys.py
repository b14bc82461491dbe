#!/usr/bin/env python
"""Journey benchmark: segments, journeys, timers and the controller against their targets.

Per database (SQLite, PostgreSQL), each scenario on a fresh database:

1. latency: a real worker loop (`Worker.run_forever` in a thread, SystemClock) applies
   events that a producer thread queues at a fixed rate through
   `airspace.store.inbox.accept` (as the API does), over many people; some of them
   abandon a cart, which enters them into a segment
   (`Cart Abandoned` at least 1 within 1d) and so into a journey whose first step is a
   message. Per triggering event: time from the commit of its inbox row (accept
   returned) to the commit of the candidate row (the worker's transaction; commit times
   are recorded by wrapping the worker's `db.write`, keyed by the clock reading the
   engine wrote as `candidates.created_at`).
   Target: p99 < 100 ms while applying 1,000 events/s.
2. schedule: N profiles (bulk-inserted), a journey `entry: {schedule: {at: now+1min}}`
   whose first step is an email (`--schedule-journeys J`: J such journeys at the same
   time; with no decision window each person's J candidates are decided as they come,
   so J messages each); a SimulatedClock is set past the time and `worker.run_timers()`
   runs until no timer is due. Every enrollment and message is counted.
   Target: 1,000,000 in < 180 s.
3. bulk: N profiles and M events over 90 days (bulk-inserted); time
   `engine.definitions.apply` of `{event: Product Viewed, at_least: 3, within: 30d}`
   (which runs `engine.segments.compute_segment`). Baseline in the same run: the bare
   `GROUP BY` through the driver. Target: 1M profiles / 10M events in < 30 s.
4. timers: N active enrollments waiting at a `wait` step (enrollment + timer rows);
   R of them fall due per second during a window of W seconds, the rest later. A
   worker process (`Worker.run_forever`, SystemClock) runs through the window;
   lateness = commit of the transaction that moved the enrollment on - due time.
   Its RSS is read from /proc at start and end, for N and for N/10 waiting people.
   Target: p99 < 1 s, memory not proportional to N.

Run `python bench/journeys.py --help`. `--quick` runs every scenario small, in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402  (fresh_database, machine_info, durability)
import journeys_data as data  # noqa: E402

from airspace.bootstrap import Services, build_services  # noqa: E402
from airspace.domain.clock import SimulatedClock, SystemClock  # noqa: E402
from airspace.domain.definitions import Document, documents_from_files  # noqa: E402
from airspace.domain.events import parse_message  # noqa: E402
from airspace.domain.problems import Problems  # noqa: E402
from airspace.engine.definitions import apply  # noqa: E402
from airspace.settings import Settings  # noqa: E402
from airspace.store.database import Database  # noqa: E402
from airspace.store.inbox import accept, inbox_depth  # noqa: E402
from airspace.store.keys import create_key  # noqa: E402
from airspace.store.migrate import migrate  # noqa: E402
from airspace.store.tables import (  # noqa: E402
    CandidateRow,
    EnrollmentRow,
    MessageRow,
    TimerRow,
)

TARGETS = {
    "latency_p99_ms": 100.0,
    "latency_rate": 1000.0,
    "schedule_seconds": 180.0,
    "bulk_seconds": 30.0,
    "timers_p99_s": 1.0,
}

FULL = {
    "latency_rate": 1000,
    "latency_seconds": 30.0,
    "schedule_profiles": 1_000_000,
    "bulk_profiles": 1_000_000,
    "bulk_events": 10_000_000,
    "timers_waiting": 1_000_000,
    "timers_rate": 500,
    "timers_seconds": 60.0,
}
QUICK = {
    "latency_rate": 200,
    "latency_seconds": 5.0,
    "schedule_profiles": 20_000,
    "bulk_profiles": 20_000,
    "bulk_events": 200_000,
    "timers_waiting": 20_000,
    "timers_rate": 200,
    "timers_seconds": 8.0,
}

SETTINGS = """
timezone: Europe/Paris
controller:
  decision_window: 0s
  global_control: 0%
  message_holdout: 0%
  caps:
    - {scope: marketing, max: 1000, per: 7d}
"""


# --------------------------------------------------------------------------- helpers


def documents(**files: str) -> list[Document]:
    """Definitions from YAML texts (path → text), as `airspace apply` reads a folder."""
    problems = Problems()
    docs = documents_from_files({"settings.yaml": SETTINGS, **files}, problems)
    if problems.items:
        raise RuntimeError("; ".join(str(p) for p in problems.items))
    return docs


def services_for(url: str, clock: Any) -> Services:
    settings = Settings(
        database_url=url, secret="bench-secret", sqlite_synchronous=ingest.SYNCHRONOUS
    )  # type: ignore[call-arg]
    return build_services(settings, clock=clock)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def count(db: Database, table: Any, *where: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def vm_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _own_cpu() -> float:
    """CPU seconds of this process and its finished children (the timer worker)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class RecordingClock(SystemClock):
    """The real clock, remembering its last reading (the `now` of the batch in progress)."""

    def __init__(self) -> None:
        self.last: datetime | None = None

    def now(self) -> datetime:
        moment = datetime.now(UTC)
        self.last = moment
        return moment


def record_commits(db: Database, clock: RecordingClock, commits: dict[datetime, float]) -> None:
    """Wrap `db.write` so that every commit made by the clock's reader is timed: the wall
    time (time.time()) right after the commit, keyed by the clock's last reading — the `now`
    the engine wrote into that transaction's rows (candidates.created_at)."""
    original = db.write
    owner = threading.get_ident

    @contextlib.contextmanager
    def write() -> Iterator[Any]:
        me = owner()
        with original() as conn:
            yield conn
        if me == record_commits.worker_thread and clock.last is not None:  # type: ignore[attr-defined]
            commits[clock.last] = time.time()

    db.write = write  # type: ignore[method-assign]


record_commits.worker_thread = None  # type: ignore[attr-defined]


@contextlib.contextmanager
def maybe_profile(path: str | None) -> Iterator[cProfile.Profile | None]:
    if not path:
        yield None
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield profiler
    finally:
        profiler.disable()
        profiler.dump_stats(path)


def top_of_profile(path: str, lines: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


# --------------------------------------------------------------------------- 1. latency

LATENCY_SEGMENT = """
segment: cart-abandoners
description: Abandoned a cart in the last day.
event: Cart Abandoned
at_least: 1
within: 1d
"""
LATENCY_JOURNEY = """
journey: cart-rescue
name: Cart rescue
entry: {segment: cart-abandoners}
re_entry: {after: 7d}
holdout: 0
steps:
  - id: nudge
    message: {channels: [email], content: cart-nudge, expires: 12h}
"""


def latency_stream(rate: int, seconds: float, seed: int) -> list[list[dict[str, Any]]]:
    """Messages per tick (10 ms): 10% of the events are `Cart Abandoned` by a new person
    (identified with an email half a second earlier: another 10%), 80% are browsing
    (`Product Viewed`, pages) by a pool of 20,000 people."""
    rng = random.Random(seed)
    ticks = int(seconds * 100)
    total = int(rate * seconds)
    stream: list[list[dict[str, Any]]] = [[] for _ in range(ticks)]
    triggers = total // 10
    for n in range(triggers):
        at = rng.randrange(0, max(ticks - 60, 1))
        user = f"cart-{n:07d}"
        stream[at].append(
            {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}}
        )
        stream[at + 50].append(
            {
                "type": "track",
                "userId": user,
                "event": "Cart Abandoned",
                "properties": {"cart_id": f"c-{n}", "value": 42.0},
            }
        )
    for _ in range(total - 2 * triggers):
        user = f"browser-{rng.randrange(20_000):05d}"
        if rng.random() < 0.6:
            message = {
                "type": "track",
                "userId": user,
                "event": "Product Viewed",
                "properties": {"product_id": f"sku-{rng.randrange(5000):05d}", "price": 19.9},
            }
        else:
            message = {"type": "page", "userId": user, "name": "Product", "properties": {}}
        stream[rng.randrange(ticks)].append(message)
    return stream


def run_latency(  # noqa: C901
    url: str, args: argparse.Namespace, size: dict[str, Any]
) -> dict[str, Any]:
    rate, seconds = size["latency_rate"], size["latency_seconds"]
    clock = RecordingClock()
    services = services_for(url, clock)
    db = services.db
    migrate(db)
    key, _ = create_key(db, "write", "bench", datetime.now(UTC))
    apply(
        db,
        documents(**{"segments/c.yaml": LATENCY_SEGMENT, "journeys/j.yaml": LATENCY_JOURNEY}),
        datetime.now(UTC),
    )
    stream = latency_stream(rate, seconds, args.seed)
    commits: dict[datetime, float] = {}
    record_commits(db, clock, commits)
    worker = services.worker()
    applied: list[tuple[float, int]] = []
    original_run_once = worker.run_once

    def run_once(limit: int | None = None) -> Any:
        result = original_run_once(limit)
        if result.applied:
            applied.append((time.time(), result.applied))
        return result

    worker.run_once = run_once  # type: ignore[method-assign]
    stop = threading.Event()
    profiler = cProfile.Profile() if args.cprofile else None

    def work() -> None:
        record_commits.worker_thread = threading.get_ident()  # type: ignore[attr-defined]
        if profiler:
            profiler.enable()
        worker.run_forever(stop)
        if profiler:
            profiler.disable()

    thread = threading.Thread(target=work, name="worker")
    accepted_at: dict[str, float] = {}
    counter = iter(range(10**9))
    depths: list[int] = []
    late_ticks = 0
    thread.start()
    time.sleep(0.5)
    cpu0 = time.process_time()
    t0 = time.time()
    for tick, messages in enumerate(stream):
        due = t0 + tick / 100
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        elif pause < -0.05:
            late_ticks += 1
        if not messages:
            continue
        now = datetime.now(UTC)
        events = [
            parse_message(m, received_at=now, new_message_id=f"bench-{next(counter)}")
            for m in messages
        ]
        accept(db, key.id, events, [], now)
        done = time.time()
        for m in messages:
            if m.get("event") == "Cart Abandoned":
                accepted_at[m["userId"]] = done
        if tick % 100 == 0:
            depths.append(inbox_depth(db))
    produced = time.time() - t0
    deadline = time.time() + 60
    while inbox_depth(db) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    thread.join()
    cpu = time.process_time() - cpu0
    wall = time.time() - t0
    if profiler and args.cprofile:
        path = f"{args.cprofile}.latency.{'sqlite' if db.is_sqlite else 'postgres'}"
        profiler.dump_stats(path)
        log(top_of_profile(path))
    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT i.value, c.created_at FROM candidates c JOIN identifiers i "
                "ON i.profile_id = c.profile_id AND i.type = 'user_id'"
            )
        ).all()
    commit_ms: list[float] = []
    start_ms: list[float] = []
    for user, created in rows:
        created_at = created if isinstance(created, datetime) else datetime.fromisoformat(created)
        created_at = created_at.replace(tzinfo=UTC) if created_at.tzinfo is None else created_at
        if user not in accepted_at:
            continue
        commit_ms.append(1000 * (commits[created_at] - accepted_at[user]))
        start_ms.append(1000 * (created_at.timestamp() - accepted_at[user]))
    events_total = sum(len(m) for m in stream)
    applied_in_window = sum(n for at, n in applied if at <= t0 + produced)
    last_apply = max((at for at, _ in applied), default=t0 + produced)
    sent = count(db, MessageRow)
    result = {
        "events": events_total,
        "triggers": len(accepted_at),
        "candidates": len(commit_ms),
        "messages": sent,
        "offered_rate": events_total / produced,
        "apply_rate": applied_in_window / produced,
        "apply_rate_overall": sum(n for _, n in applied) / (last_apply - t0),
        "drain_after_s": max(last_apply - (t0 + produced), 0.0),
        "inbox_depth_max": max(depths, default=0),
        "p50_ms": percentile(commit_ms, 0.5),
        "p90_ms": percentile(commit_ms, 0.9),
        "p99_ms": percentile(commit_ms, 0.99),
        "max_ms": max(commit_ms, default=float("nan")),
        "start_p50_ms": percentile(start_ms, 0.5),
        "start_p99_ms": percentile(start_ms, 0.99),
        "cpu_pct": 100 * cpu / wall,
        "late_ticks": late_ticks,
    }
    db.dispose()
    return result


# --------------------------------------------------------------------------- 2. schedule

SCHEDULE_SEGMENT = """
segment: newsletter
description: Everyone reachable by email.
reachable: [email]
"""
SCHEDULE_JOURNEY = """
journey: spring-sale{n}
name: Spring sale{n}
entry:
  schedule: {{at: "{at}"}}{segment}
holdout: 0
steps:
  - id: announce
    message: {{channels: [email], content: spring-sale, expires: 1d}}
"""


def run_schedule(url: str, args: argparse.Namespace, size: dict[str, Any]) -> dict[str, Any]:
    people = size["schedule_profiles"]
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    clock = SimulatedClock(start)
    services = services_for(url, clock)
    db = services.db
    migrate(db)
    # Definitions first (the segment is computed over no one), then the people, and the
    # segment's members written directly, as a computation would have left them.
    at = (start + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    files = {}
    segment = ""
    if args.schedule_audience == "segment":
        files["segments/n.yaml"] = SCHEDULE_SEGMENT
        segment = "\n  segment: newsletter"
    journeys = args.schedule_journeys
    for n in range(journeys):
        suffix = f"-{n}" if journeys > 1 else ""
        files[f"journeys/s{n}.yaml"] = SCHEDULE_JOURNEY.format(at=at, segment=segment, n=suffix)
    apply(db, documents(**files), start)
    ids, load_s = data.load_profiles(db, people, start - timedelta(days=1))
    if args.schedule_audience == "segment":
        stamp = data.driver_time(db.is_sqlite, start - timedelta(hours=1))
        data.load(
            db,
            "segment_members",
            ("segment_id", "profile_id", "entered_at"),
            (("newsletter", pid, stamp) for pid in ids),
        )
    del ids
    log(f"  loaded {people:,} profiles (+ {2 * people:,} identifiers) in {load_s:.1f} s")
    clock.set(start + timedelta(minutes=2))
    worker = services.worker()
    limit = args.timer_batch or None
    batches = 0
    path = (
        f"{args.cprofile}.schedule.{'sqlite' if db.is_sqlite else 'postgres'}"
        if args.cprofile
        else None
    )
    started = time.perf_counter()
    cpu0 = time.process_time()
    fan_out = 0.0
    with maybe_profile(path):
        last_report = started
        while True:
            stats = worker.run_timers(limit)
            batches += 1
            if batches == 1:
                fan_out = time.perf_counter() - started
            if stats.timers == 0:
                break
            if time.perf_counter() - last_report > 15:
                last_report = time.perf_counter()
                log(f"  {batches:,} batches, {last_report - started:.0f} s")
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    if path:
        log(top_of_profile(path))
    enrollments = count(db, EnrollmentRow)
    messages = count(db, MessageRow)
    left = count(db, TimerRow, TimerRow.kind == "enroll")
    result = {
        "profiles": people,
        "journeys": journeys,
        "seconds": elapsed,
        "fan_out_s": fan_out,
        "enrollments": enrollments,
        "messages": messages,
        "timers_left": left,
        "per_second": messages / elapsed,
        "batches": batches,
        "cpu_pct": 100 * cpu / elapsed,
        "ok": enrollments == messages == people * journeys,
    }
    db.dispose()
    return result


# --------------------------------------------------------------------------- 3. bulk

BULK_SEGMENT = """
segment: engaged-viewers
description: Viewed at least three products in the last 30 days.
event: Product Viewed
at_least: 3
within: 30d
"""


def run_bulk(url: str, args: argparse.Namespace, size: dict[str, Any]) -> dict[str, Any]:
    people, events = size["bulk_profiles"], size["bulk_events"]
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    services = services_for(url, SimulatedClock(now))
    db = services.db
    migrate(db)
    ids, load_s = data.load_profiles(db, people, now - timedelta(days=90), identifiers=False)
    log(f"  loaded {people:,} profiles in {load_s:.1f} s")
    events_s = data.load_events(db, ids, events, now, 90, args.seed)
    del ids
    log(f"  loaded {events:,} events in {events_s:.1f} s")
    # Baseline: the bare aggregate the computation rests on, through the driver.
    start = data.driver_time(db.is_sqlite, now - timedelta(days=30))
    end = data.driver_time(db.is_sqlite, now)
    mark = "?" if db.is_sqlite else "%s"
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        t = time.perf_counter()
        cur.execute(
            "SELECT profile_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM events "
            f"WHERE name = {mark} AND timestamp > {mark} AND timestamp <= {mark} "
            "GROUP BY profile_id",
            ("Product Viewed", start, end),
        )
        grouped = cur.fetchall()
        baseline = time.perf_counter() - t
        raw.rollback()
    finally:
        raw.close()
    expected = sum(1 for row in grouped if row[1] >= 3)
    del grouped
    path = (
        f"{args.cprofile}.bulk.{'sqlite' if db.is_sqlite else 'postgres'}"
        if args.cprofile
        else None
    )
    stages: dict[str, float] = {}
    t_stage = [time.perf_counter(), ""]

    def progress(stage: str, done: int, total: int) -> None:
        if stage != t_stage[1]:
            moment = time.perf_counter()
            if t_stage[1]:
                stages[str(t_stage[1])] = stages.get(str(t_stage[1]), 0.0) + moment - t_stage[0]  # type: ignore[operator]
            t_stage[0], t_stage[1] = moment, stage

    docs = documents(**{"segments/b.yaml": BULK_SEGMENT})
    started = time.perf_counter()
    t_stage[0] = started
    with maybe_profile(path):
        applied = apply(db, docs, now, progress=progress)
    elapsed = time.perf_counter() - started
    if t_stage[1]:
        stages[str(t_stage[1])] = (
            stages.get(str(t_stage[1]), 0.0) + time.perf_counter() - t_stage[0]
        )  # type: ignore[operator]
    if path:
        log(top_of_profile(path))
    [computed] = applied.computed
    result = {
        "profiles": people,
        "events": events,
        "seconds": elapsed,
        "baseline_s": baseline,
        "ratio": elapsed / baseline,
        "members": computed.members,
        "expected_members": expected,
        "rechecks": computed.rechecks,
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "load_s": load_s + events_s,
        "ok": computed.members == expected,
    }
    db.dispose()
    return result


# --------------------------------------------------------------------------- 4. timers

TIMERS_JOURNEY = """
journey: onboarding
name: Onboarding
entry: {event: Signed Up}
holdout: 0
steps:
  - id: pause
    wait: 1h
  - id: tips
    message: {channels: [email], content: onboarding-tips, expires: 1d}
"""


def _timer_worker(url: str, stop_at: float, out: str, cprofile: str | None) -> None:
    """A worker process: `run_forever` until `stop_at`; commits, RSS and CPU to `out`."""
    clock = RecordingClock()
    services = services_for(url, clock)
    commits: dict[datetime, float] = {}
    record_commits.worker_thread = threading.get_ident()  # type: ignore[attr-defined]
    record_commits(services.db, clock, commits)
    worker = services.worker()
    rss: list[tuple[float, int]] = [(time.time(), vm_kib())]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            rss.append((time.time(), vm_kib()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threading.Timer(max(stop_at - time.time(), 0), stop.set).start()
    cpu0 = time.process_time()
    wall0 = time.time()
    with maybe_profile(cprofile):
        worker.run_forever(stop)
    rss.append((time.time(), vm_kib()))
    Path(out).write_bytes(
        orjson.dumps(
            {
                "commits": [[k.isoformat(), v] for k, v in commits.items()],
                "rss": rss,
                "hwm_kib": vm_kib("VmHWM"),
                "cpu": time.process_time() - cpu0,
                "wall": time.time() - wall0,
                "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )
    services.db.dispose()


def run_timers_once(
    url: str, args: argparse.Namespace, waiting: int, rate: int, seconds: float, tag: str
) -> dict[str, Any]:
    now = datetime.now(UTC)
    services = services_for(url, SystemClock())
    db = services.db
    migrate(db)
    apply(db, documents(**{"journeys/o.yaml": TIMERS_JOURNEY}), now)
    ids, load_s = data.load_profiles(db, waiting, now - timedelta(days=2))
    window = int(rate * seconds)
    later = waiting - window
    if later < 0:
        raise SystemExit(f"--timers-waiting {waiting} < rate x seconds = {window}")
    rng = random.Random(args.seed)
    order = list(range(waiting))
    rng.shuffle(order)
    entered = now - timedelta(minutes=30)
    # Waiting long after the window: due over the next 1 to 30 days.
    far = [
        (f"e{n:07d}", ids[n], now + timedelta(days=1, seconds=rng.randrange(29 * 86400)))
        for n in order[:later]
    ]
    t = data.load_waiting(db, far, "onboarding", "pause", entered)
    del far
    log(f"  [{tag}] loaded {waiting:,} profiles and {later:,} far waits in {load_s + t:.1f} s")
    lead = 5.0  # the worker process starts meanwhile
    t0 = datetime.now(UTC) + timedelta(seconds=lead)
    soon = [
        (f"e{n:07d}", ids[n], t0 + timedelta(seconds=k / rate)) for k, n in enumerate(order[later:])
    ]
    due_of = {eid: due for eid, _, due in soon}
    data.load_waiting(db, soon, "onboarding", "pause", entered, drop_indexes=False)
    if db.is_sqlite:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    del soon, ids
    db.dispose()
    stop_at = t0.timestamp() + seconds + args.timers_drain
    out = tempfile.mktemp(prefix="airspace-timers-", suffix=".json")
    cprofile = f"{args.cprofile}.timers.{tag}" if args.cprofile else None
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_timer_worker, args=(url, stop_at, out, cprofile))
    child.start()
    child.join()
    if child.exitcode:
        raise RuntimeError(f"timer worker exited with {child.exitcode}")
    report = orjson.loads(Path(out).read_bytes())
    os.unlink(out)
    if cprofile:
        log(top_of_profile(cprofile))
    commits = {datetime.fromisoformat(k): v for k, v in report["commits"]}
    db = Database(url)
    with db.read() as conn:
        rows = conn.execute(select(CandidateRow.enrollment_id, CandidateRow.created_at)).all()
        left = conn.execute(
            select(func.count())
            .select_from(TimerRow)
            .where(
                TimerRow.due_at <= t0 + timedelta(seconds=seconds), TimerRow.kind == "enrollment"
            )
        ).scalar_one()
    waiting_after = count(db, EnrollmentRow, EnrollmentRow.status == "active")
    db.dispose()
    lateness = [
        commits[created] - due_of[eid].timestamp() for eid, created in rows if eid in due_of
    ]
    # Timers of the window not carried out at all: late by at least (stop - due).
    done = {eid for eid, _ in rows}
    missing = [stop_at - due.timestamp() for eid, due in due_of.items() if eid not in done]
    all_late = lateness + missing
    by_second: dict[int, float] = {}
    for eid, created in rows:
        if eid in due_of:
            second = int(due_of[eid].timestamp() - t0.timestamp())
            late = commits[created] - due_of[eid].timestamp()
            by_second[second] = max(by_second.get(second, 0.0), late)
    log(
        f"  [{tag}] worst lateness per second of the window: "
        + " ".join(f"{by_second[k]:.1f}" for k in sorted(by_second))
    )
    rss = report["rss"]
    result = {
        "waiting": waiting,
        "rate": rate,
        "window_s": seconds,
        "due_in_window": window,
        "moved_on": len(lateness),
        "not_done": int(left),
        "still_waiting": waiting_after,
        "p50_s": percentile(all_late, 0.5),
        "p90_s": percentile(all_late, 0.9),
        "p99_s": percentile(all_late, 0.99),
        "max_s": max(all_late, default=float("nan")),
        "rss_start_mib": rss[0][1] / 1024,
        "rss_end_mib": rss[-1][1] / 1024,
        "rss_peak_mib": report["hwm_kib"] / 1024,
        "worker_cpu_pct": 100 * report["cpu"] / report["wall"],
    }
    return result


def run_timers(
    url_factory: Callable[[str], Any], args: argparse.Namespace, size: dict[str, Any]
) -> dict[str, Any]:
    results = {}
    small = max(size["timers_waiting"] // 10, int(size["timers_rate"] * size["timers_seconds"]))
    for tag, waiting in (("full", size["timers_waiting"]), ("tenth", small)):
        with url_factory(f"timers{tag}") as url:
            results[tag] = run_timers_once(
                url, args, waiting, size["timers_rate"], size["timers_seconds"], tag
            )
            log(f"  [{tag}] {results[tag]}")
    full, tenth = results["full"], results["tenth"]
    return {
        **full,
        "tenth_waiting": tenth["waiting"],
        "tenth_p99_s": tenth["p99_s"],
        "tenth_rss_start_mib": tenth["rss_start_mib"],
        "tenth_rss_end_mib": tenth["rss_end_mib"],
        "tenth_rss_peak_mib": tenth["rss_peak_mib"],
    }


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    label: str
    key: str
    form: str
    target: str = ""


ROWS: dict[str, list[Row]] = {
    "latency": [
        Row("offered rate, events/s", "offered_rate", "{:,.0f}", "1,000"),
        Row("applied rate in the window, events/s", "apply_rate", "{:,.0f}", "≥ offered"),
        Row("applied rate incl. drain, events/s", "apply_rate_overall", "{:,.0f}"),
        Row("inbox depth, max (1 s samples)", "inbox_depth_max", "{:,.0f}"),
        Row("drain after the producer stopped, s", "drain_after_s", "{:.2f}"),
        Row("triggers / candidates / messages", "triggers", "{:,.0f}"),
        Row("", "candidates", "{:,.0f}"),
        Row("", "messages", "{:,.0f}"),
        Row("accept → candidate commit p50, ms", "p50_ms", "{:.1f}"),
        Row("accept → candidate commit p90, ms", "p90_ms", "{:.1f}"),
        Row("accept → candidate commit p99, ms", "p99_ms", "{:.1f}", "< 100"),
        Row("accept → candidate commit max, ms", "max_ms", "{:.1f}"),
        Row("accept → batch start (created_at) p50, ms", "start_p50_ms", "{:.1f}"),
        Row("accept → batch start (created_at) p99, ms", "start_p99_ms", "{:.1f}"),
        Row("process CPU (worker + producer), %", "cpu_pct", "{:.0f}"),
    ],
    "schedule": [
        Row("profiles in the audience", "profiles", "{:,.0f}"),
        Row("scheduled journeys at the same time", "journeys", "{:,.0f}"),
        Row("schedule fired → all sent, s", "seconds", "{:.1f}", "< 180"),
        Row("  of which fan-out (enroll timers), s", "fan_out_s", "{:.1f}"),
        Row("enrollments", "enrollments", "{:,.0f}"),
        Row("messages captured", "messages", "{:,.0f}"),
        Row("enroll timers left", "timers_left", "{:,.0f}"),
        Row("messages/s", "per_second", "{:,.0f}", "≥ 5,556"),
        Row("run_timers batches", "batches", "{:,.0f}"),
        Row("process CPU, %", "cpu_pct", "{:.0f}"),
    ],
    "bulk": [
        Row("profiles", "profiles", "{:,.0f}"),
        Row("events", "events", "{:,.0f}"),
        Row("apply (compute_segment), s", "seconds", "{:.1f}", "< 30"),
        Row("baseline: bare GROUP BY via driver, s", "baseline_s", "{:.1f}"),
        Row("ratio apply / baseline", "ratio", "{:.1f}"),
        Row("members", "members", "{:,.0f}"),
        Row("members by the baseline query", "expected_members", "{:,.0f}"),
        Row("re-check timers written", "rechecks", "{:,.0f}"),
    ],
    "timers": [
        Row("waiting enrollments", "waiting", "{:,.0f}"),
        Row("due per second during the window", "rate", "{:,.0f}"),
        Row("due in the window", "due_in_window", "{:,.0f}"),
        Row("moved on / not done", "moved_on", "{:,.0f}"),
        Row("", "not_done", "{:,.0f}"),
        Row("lateness p50, s", "p50_s", "{:.3f}"),
        Row("lateness p90, s", "p90_s", "{:.3f}"),
        Row("lateness p99, s", "p99_s", "{:.3f}", "< 1"),
        Row("lateness max, s", "max_s", "{:.3f}"),
        Row("worker RSS start / end, MiB", "rss_start_mib", "{:.0f}"),
        Row("", "rss_end_mib", "{:.0f}"),
        Row("worker RSS peak (VmHWM), MiB", "rss_peak_mib", "{:.0f}"),
        Row("worker CPU, %", "worker_cpu_pct", "{:.0f}"),
        Row("N/10 run: waiting", "tenth_waiting", "{:,.0f}"),
        Row("N/10 run: lateness p99, s", "tenth_p99_s", "{:.3f}"),
        Row("N/10 run: RSS start / end, MiB", "tenth_rss_start_mib", "{:.0f}"),
        Row("", "tenth_rss_end_mib", "{:.0f}"),
        Row("N/10 run: RSS peak, MiB", "tenth_rss_peak_mib", "{:.0f}", "≈ full run"),
    ],
}

TITLES = {
    "latency": "event → segment entry → journey candidate, while applying events",
    "schedule": "scheduled journey: enroll everyone and capture the first message",
    "bulk": "bulk computation of an event-count-in-window segment",
    "timers": "waiting enrollments: timer wake-up lateness and worker memory",
}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            summary[key] = value if len(runs) == 1 else [r[key] for r in runs]
        else:
            summary[key] = statistics.median(r[key] for r in runs)
    summary["runs"] = runs
    return summary


def print_scenario(name: str, results: dict[str, dict[str, Any]]) -> None:
    kinds = list(results)
    width = 44
    print()
    print(f"{name}: {TITLES[name]}")
    header = f"{'figure':<{width}}" + "".join(f"{k:>14}" for k in kinds) + f"{'target':>12}"
    print(header)
    print("-" * len(header))
    rows = ROWS[name]
    i = 0
    while i < len(rows):
        group = [rows[i]]
        while i + len(group) < len(rows) and rows[i + len(group)].label == "":
            group.append(rows[i + len(group)])
        cells = ""
        for kind in kinds:
            values = [r.form.format(results[kind].get(r.key, float("nan"))) for r in group]
            cells += f"{' / '.join(values):>14}"
        print(f"{group[0].label:<{width}}{cells}{group[-1].target or group[0].target:>12}")
        i += len(group)
    for kind in kinds:
        extra = {k: v for k, v in results[kind].items() if k in ("stages", "ok")}
        r = results[kind]
        print(
            f"  {kind}: whole scenario (set-up included): machine {r['machine_busy_pct']:.0f}% "
            f"busy (all cores); other processes {r['others_cpu_pct']:.0f}% of one core"
        )
        if extra:
            print(f"  {kind}: {extra}")


def main(argv: list[str] | None = None) -> int:  # noqa: C901
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        choices=("latency", "schedule", "bulk", "timers", "all"),
        default="all",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AIRSPACE_TEST_POSTGRES_URL"),
        help="PostgreSQL URL of a user who may create databases "
        "(default: $AIRSPACE_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds per scenario")
    for key, value in FULL.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=type(value),
            default=None,
            help=f"full size {value:,}; --quick {QUICK[key]:,}",
        )
    parser.add_argument(
        "--timer-batch", type=int, default=0, help="schedule: run_timers(limit) (0: the setting)"
    )
    parser.add_argument(
        "--schedule-journeys",
        type=int,
        default=1,
        help="schedule: this many journeys at the same time (one message each per person)",
    )
    parser.add_argument(
        "--schedule-audience",
        choices=("segment", "everyone"),
        default="segment",
        help="schedule: a segment holding everyone (default), or no segment (all profiles; "
        "fails on SQLite: INSERT ... SELECT ... ON CONFLICT needs a WHERE there)",
    )
    parser.add_argument(
        "--timers-drain",
        type=float,
        default=3.0,
        help="timers: seconds the worker keeps running after the window",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; medians shown")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the machine to be idle",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cprofile", metavar="PREFIX", help="cProfile the measured part into PREFIX.<scenario>.*"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if "postgres" in kinds and not args.postgres_url:
        parser.error("PostgreSQL needs --postgres-url or AIRSPACE_TEST_POSTGRES_URL")
    size = dict(QUICK if args.quick else FULL)
    for key in FULL:
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    scenarios = (
        ["latency", "schedule", "bulk", "timers"] if args.scenario == "all" else [args.scenario]
    )
    info = ingest.machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="airspace-journeys-"))
    everything: dict[str, dict[str, Any]] = {}
    try:
        for scenario in scenarios:
            everything[scenario] = {}
            for kind in kinds:
                runs = []
                for run in range(args.repeat):
                    if args.wait_idle:
                        share = ingest.wait_until_idle(args.wait_idle)
                        log(f"machine {share:.0f}% busy before {scenario} on {kind}")
                    log(f"{scenario} on {kind}, run {run + 1} ...")

                    def factory(tag: str, kind: str = kind, run: int = run) -> Any:
                        return ingest.fresh_database(
                            kind, args.postgres_url, workdir, f"{tag}{run}"
                        )

                    started = time.perf_counter()
                    busy0, total0 = ingest._machine_busy()
                    own0 = _own_cpu()
                    if scenario == "timers":
                        result = run_timers(factory, args, size)
                    else:
                        runner = {
                            "latency": run_latency,
                            "schedule": run_schedule,
                            "bulk": run_bulk,
                        }[scenario]
                        with factory(scenario) as url:
                            result = runner(url, args, size)
                    busy1, total1 = ingest._machine_busy()
                    wall = time.perf_counter() - started
                    result["machine_busy_pct"] = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
                    result["others_cpu_pct"] = (
                        100 * max(busy1 - busy0 - (_own_cpu() - own0), 0) / wall
                    )
                    log(f"  done in {wall:.0f} s: {result}")
                    runs.append(result)
                everything[scenario][kind] = median_of(runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"Journeys: {'quick' if args.quick else 'full'} sizes, median of {args.repeat} run(s); "
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}; {info['date']}; code {info['code_sha256']}"
    )
    durabilities = {}
    for kind in kinds:
        if kind == "sqlite":
            durabilities[kind] = f"WAL, synchronous={ingest.SYNCHRONOUS}"
        else:
            durabilities[kind] = "PostgreSQL (server settings as configured)"
        print(f"  {kind}: {durabilities[kind]}")
    print(f"  sizes: {size}")
    for scenario in scenarios:
        print_scenario(scenario, everything[scenario])
    print()
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps(
                {"machine": info, "sizes": size, "targets": TARGETS, "results": everything},
                option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
