"""Crash test on PostgreSQL: every accepted event is applied exactly once.

100,000 events (people browsing anonymously on several devices, identify calls that
link and merge their profiles, aliases, shared devices; see crash_events.py) are
queued through the store, in /v1/batch-sized commits, while 3 real `airspace worker`
processes apply them. One worker is killed with SIGKILL twice, each time while its
batch transaction is open and has taken a transaction id (it holds its claim and
locks, and has usually written), and is started again. Afterwards the event log
holds each messageId once, the events refused at apply (conflicting aliases) are in
the quarantine instead, nothing is lost, every profile's computed counts equal its
rows in the event log, and identifiers, merges and profile aliases agree.

Run: AIRSPACE_TEST_POSTGRES_URL=... pytest tests/integration/test_crash_postgres.py -s
(-s prints the kills and the measured rates).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from airspace.domain.events import Event, parse_message
from airspace.store.database import Database
from airspace.store.inbox import accept, inbox_depth
from airspace.store.keys import create_key
from airspace.store.migrate import migrate
from tests.conftest import postgres_database
from tests.integration.crash_events import Workload, build_workload

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOTAL_EVENTS = 100_000
SEED = 20261102
WORKERS = 3
KILLS = 2
BATCH_SIZE = 200
CHUNK = 2500  # events per accept, as in one /v1/batch request
KILL_AFTER = 15_000  # events applied (by all workers) since the victim last started
SPREAD = 0.02  # a person's events span 2% of the stream: their devices' partitions are
# in concurrent batches of several workers, which then contend for the same person
DEADLINE_SECONDS = 240.0  # the whole test, ingest included
POLL_SECONDS = 0.05
EVENT_TIMES_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards)."""
    yield from postgres_database()


@dataclass
class WorkerProcess:
    """One `airspace worker` process; its output goes to files under tmp_path."""

    slot: int
    generation: int
    process: subprocess.Popen[bytes]
    log: Path

    @staticmethod
    def name_of(slot: int, generation: int) -> str:
        return f"crash-worker-{slot}-{generation}"

    @property
    def name(self) -> str:
        return self.name_of(self.slot, self.generation)


@dataclass
class Fleet:
    """The worker processes of the test, and every log they ever wrote."""

    url: str
    directory: Path
    workers: dict[int, WorkerProcess] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)
    generations: Counter[int] = field(default_factory=Counter)

    def start(self, slot: int) -> WorkerProcess:
        generation = self.generations[slot]
        self.generations[slot] += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRSPACE_", "PG"))}
        name = WorkerProcess.name_of(slot, generation)
        env.update(
            AIRSPACE_DATABASE_URL=self.url,
            AIRSPACE_SECRET="crash-test-secret",
            AIRSPACE_WORKER_BATCH_SIZE=str(BATCH_SIZE),
            PGAPPNAME=name,  # libpq: lets the test find this worker's backend
        )
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "airspace.cli", "worker"],
                env=env,
                cwd=self.directory,  # no stray .env file is read
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(slot, generation, process, log)
        self.workers[slot] = worker
        self.logs.append(log)
        return worker

    def check_alive(self) -> None:
        for worker in self.workers.values():
            code = worker.process.poll()
            if code is not None:
                pytest.fail(f"{worker.name} exited by itself with code {code}\n{self.tails()}")

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every worker, wait for them; return their exit codes."""
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for worker in self.workers.values():
            try:
                codes[worker.name] = worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                codes[worker.name] = None
        return codes

    def tails(self, lines: int = 25) -> str:
        parts = []
        for log in self.logs:
            content = log.read_text(errors="replace").splitlines() if log.exists() else []
            parts.append(f"--- {log.name} (last {lines} lines) ---")
            parts.extend(content[-lines:])
        return "\n".join(parts)

    def count_in_logs(self, needle: str) -> int:
        return sum(log.read_text(errors="replace").count(needle) for log in self.logs)


class Ingest(threading.Thread):
    """Queues the workload through the store in /v1/batch-sized chunks while workers run."""

    def __init__(self, db: Database, write_key_id: int, workload: Workload) -> None:
        super().__init__(name="crash-ingest", daemon=True)
        self.db = db
        self.write_key_id = write_key_id
        self.messages = workload.messages
        self.accepted = 0
        self.seconds = 0.0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        try:
            for start in range(0, len(self.messages), CHUNK):
                if self.stop.is_set():
                    return
                now = datetime.now(UTC)
                events: list[Event] = [
                    parse_message(m, received_at=now, new_message_id="unused")
                    for m in self.messages[start : start + CHUNK]
                ]
                result = accept(self.db, self.write_key_id, events, [], now)
                if (result.duplicates, result.quarantined) != (0, 0):
                    raise AssertionError(f"chunk at {start} was not queued whole: {result}")
                self.accepted += result.queued
        except BaseException as error:  # handed to the test thread by `check`
            self.error = error
        self.seconds = time.monotonic() - started

    @property
    def done(self) -> bool:
        return not self.is_alive() and self.accepted == len(self.messages)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"ingest failed: {self.error!r}") from self.error
        if not self.is_alive() and self.accepted != len(self.messages):
            raise AssertionError(f"ingest stopped after {self.accepted} events")


def _backend_in_write_transaction(db: Database, name: str) -> dict[str, Any] | None:
    """The worker's backend when it is inside a transaction that has taken a transaction id."""
    with db.read() as conn:
        row = conn.execute(
            text(
                "SELECT pid, state, left(query, 90) AS query, backend_xid::text AS xid, "
                "extract(epoch FROM clock_timestamp() - xact_start) AS age "
                "FROM pg_stat_activity "
                "WHERE application_name = :name AND backend_xid IS NOT NULL "
                "AND xact_start IS NOT NULL"
            ),
            {"name": name},
        ).first()
    return dict(row._mapping) if row is not None else None


class Deadline:
    """The test's deadline, and the failure message when it passes."""

    def __init__(self, fleet: Fleet, ingest: Ingest, seconds: float) -> None:
        self.fleet = fleet
        self.ingest = ingest
        self.deadline = time.monotonic() + seconds

    def tick(self, waiting_for: str, db: Database) -> None:
        self.fleet.check_alive()
        self.ingest.check()
        if time.monotonic() > self.deadline:
            pytest.fail(
                f"deadline of {DEADLINE_SECONDS:.0f} s passed while waiting for {waiting_for}; "
                f"{self.ingest.accepted} events queued, {inbox_depth(db)} still in the inbox\n"
                f"worker backends (slow, or stuck on a lock?):\n{_activity(db)}\n"
                f"{self.fleet.tails()}"
            )
        time.sleep(POLL_SECONDS)


def _activity(db: Database) -> str:
    """What each worker's database session is doing, for a failure message."""
    with db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT application_name, pid, state, wait_event_type, wait_event, "
                "round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1) AS age, "
                "left(query, 80) AS query FROM pg_stat_activity "
                "WHERE application_name LIKE 'crash-worker-%' ORDER BY application_name"
            )
        ).all()
    return "\n".join(" | ".join(str(v) for v in row) for row in rows) or "(none)"


def _applied(db: Database, ingest: Ingest) -> int:
    """Events applied so far (never more than the truth: accepted is read first)."""
    accepted = ingest.accepted
    return accepted - inbox_depth(db)


def _kill_mid_batch(db: Database, fleet: Fleet, deadline: Deadline, ingest: Ingest) -> None:
    """Wait until the victim has made progress, then SIGKILL it inside a batch transaction."""
    victim = fleet.workers[0]
    baseline = _applied(db, ingest)
    while _applied(db, ingest) < baseline + KILL_AFTER:
        deadline.tick(f"{KILL_AFTER} events applied before killing {victim.name}", db)
    while (backend := _backend_in_write_transaction(db, victim.name)) is None:
        deadline.tick(f"{victim.name} to be inside a batch transaction", db)
    victim.process.send_signal(signal.SIGKILL)
    code = victim.process.wait(timeout=10)
    assert code == -signal.SIGKILL
    depth = inbox_depth(db)
    print(
        f"  SIGKILL {victim.name} (pid {victim.process.pid}) with inbox depth {depth}: "
        f"its backend {backend['pid']} was {backend['state']} in transaction "
        f"{backend['xid']} (open {backend['age']:.2f} s), running {backend['query']!r}"
    )
    fleet.start(0)


def _all(conn: Any, sql: str) -> list[Any]:
    return list(conn.execute(text(sql)).all())


def test_three_workers_apply_every_event_exactly_once_through_two_sigkills(
    postgres_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    db = Database(postgres_url)
    try:
        migrate(db)
        key, _secret = create_key(db, "write", "crash", datetime.now(UTC))
        workload = build_workload(TOTAL_EVENTS, SEED, EVENT_TIMES_START, SPREAD)
        print(f"\n  workload: people {workload.kinds()}; event types {workload.types()}")
        fleet = Fleet(postgres_url, tmp_path)
        ingest = Ingest(db, key.id, workload)
        deadline = Deadline(fleet, ingest, DEADLINE_SECONDS - (time.monotonic() - started))
        _run(db, fleet, ingest, deadline, key.id, workload)
        _check_exactly_once(db, workload)
    finally:
        db.dispose()
    print(f"  whole test {time.monotonic() - started:.1f} s")


def _run(
    db: Database,
    fleet: Fleet,
    ingest: Ingest,
    deadline: Deadline,
    write_key_id: int,
    workload: Workload,
) -> None:
    """Queue events while 3 workers apply them, kill one twice, wait for the inbox to drain."""
    apply_started = time.monotonic()
    ingest.start()
    try:
        for slot in range(WORKERS):
            fleet.start(slot)
        for kill in range(KILLS):
            _kill_mid_batch(db, fleet, deadline, ingest)
            if kill == 0:
                _check_duplicates_refused_at_the_door(db, write_key_id, workload)
        while not ingest.done:
            deadline.tick("the ingest to finish", db)
        ingest_done, depth_then = time.monotonic(), inbox_depth(db)
        while (depth := inbox_depth(db)) > 0:
            deadline.tick(f"the inbox to drain ({depth} left)", db)
        drained = time.monotonic()
    finally:
        ingest.stop.set()
        ingest.join(timeout=30)
        codes = fleet.stop()
    assert all(code == 0 for code in codes.values()), f"exit codes {codes}\n{fleet.tails()}"
    assert fleet.count_in_logs("Traceback") == 0, f"worker tracebacks\n{fleet.tails()}"
    print(
        f"  queued {ingest.accepted} events in {ingest.seconds:.1f} s "
        f"({ingest.accepted / ingest.seconds:.0f} events/s) while the workers ran\n"
        f"  drained in {drained - apply_started:.1f} s with {WORKERS} workers and {KILLS} "
        f"kills: {TOTAL_EVENTS / (drained - apply_started):.0f} events/s overall, "
        f"{depth_then / max(drained - ingest_done, 1e-9):.0f} events/s after the ingest "
        f"ended ({depth_then} left then); "
        f"rolled-back batches retried: {fleet.count_in_logs('batch rolled back')}"
    )


def _check_duplicates_refused_at_the_door(
    db: Database, write_key_id: int, workload: Workload
) -> None:
    """A client retrying events already accepted (some applied by now) queues nothing."""
    now = datetime.now(UTC)
    retried = [
        parse_message(m, received_at=now, new_message_id="unused") for m in workload.messages[:1000]
    ]
    result = accept(db, write_key_id, retried, [], now)
    assert (result.queued, result.duplicates) == (0, 1000)


def _check_exactly_once(db: Database, workload: Workload) -> None:
    expected = {m["messageId"] for m in workload.messages}
    with db.read() as conn:
        assert inbox_depth(db) == 0
        duplicates = _all(
            conn,
            "SELECT message_id, count(*) AS n FROM events GROUP BY message_id "
            "HAVING count(*) > 1 ORDER BY message_id LIMIT 20",
        )
        event_profile = dict(_all(conn, "SELECT message_id, profile_id FROM events"))
        quarantine = _all(conn, "SELECT stage, reason, payload FROM quarantine")
        profiles = dict(_all(conn, "SELECT id, computed FROM profiles"))
        by_type = _all(conn, "SELECT profile_id, type, count(*) FROM events GROUP BY 1, 2")
        by_name = _all(
            conn,
            "SELECT profile_id, name, count(*) FROM events WHERE type = 'track' GROUP BY 1, 2",
        )
        identifiers = _all(conn, "SELECT key, type, profile_id FROM identifiers")
        aliases = dict(_all(conn, "SELECT old_id, profile_id FROM profile_aliases"))
        merges = _all(conn, "SELECT survivor_id, merged_id, message_id FROM merges")
        misplaced_users = _all(
            conn,
            "SELECT e.message_id, e.profile_id, i.profile_id FROM events e "
            "LEFT JOIN identifiers i ON i.key = 'user_id:' || (e.payload ->> 'userId') "
            "WHERE e.payload ? 'userId' AND i.profile_id IS DISTINCT FROM e.profile_id "
            "LIMIT 20",
        )

    # The event log has each messageId once; the refused aliases are in the quarantine.
    assert duplicates == [], f"events applied more than once: {duplicates}"
    assert [q for q in quarantine if q.stage != "apply"] == []
    refused = Counter(orjson.loads(q.payload)["messageId"] for q in quarantine)
    assert [m for m, n in refused.items() if n > 1] == [], "an event was quarantined twice"
    assert all(q.reason.startswith("alias would join") for q in quarantine), quarantine[:3]
    alias_conflicts = {
        m["messageId"]
        for p in workload.people
        if p.kind == "alias_conflict"
        for m in p.messages
        if m["type"] == "alias"
    }
    assert set(refused) <= alias_conflicts
    assert set(event_profile) & set(refused) == set(), "applied and quarantined"
    lost = expected - set(event_profile) - set(refused)
    assert lost == set(), f"{len(lost)} events lost, e.g. {sorted(lost)[:10]}"
    assert len(event_profile) == len(expected) - len(refused)
    assert refused, "no alias conflict was exercised"

    # Every profile's computed counts equal its rows in the event log.
    counted: dict[str, Counter[str]] = defaultdict(Counter)
    for profile_id, kind, n in by_type:
        counted[profile_id][kind] = n
    named: dict[str, Counter[str]] = defaultdict(Counter)
    for profile_id, name, n in by_name:
        named[profile_id][name] = n
    orphans = set(counted) - set(profiles)
    assert orphans == set(), f"events on {len(orphans)} missing profiles: {sorted(orphans)[:5]}"
    wrong = [
        (pid, computed["event_count"], computed["counts_by_type"], dict(counted[pid]))
        for pid, computed in profiles.items()
        if computed["event_count"] != sum(counted[pid].values())
        or computed["counts_by_type"] != dict(counted[pid])
        or sum(computed["counts_by_type"].values()) != computed["event_count"]
        or computed["counts_by_event"] != dict(named[pid])
    ]
    assert wrong == [], f"{len(wrong)} profiles with wrong counts, e.g. {wrong[:5]}"
    assert sum(p["event_count"] for p in profiles.values()) == len(event_profile)

    # Identity: no dangling identifier, one userId per profile, events on their user's profile.
    dangling = [i for i in identifiers if i.profile_id not in profiles]
    assert dangling == [], f"identifiers on missing profiles: {dangling[:5]}"
    users = Counter(i.profile_id for i in identifiers if i.type == "user_id")
    assert [p for p, n in users.items() if n > 1] == [], "a profile holds two userIds"
    assert misplaced_users == [], f"events not on their userId's profile: {misplaced_users}"
    split = {
        p.user_id: {event_profile[m] for m in p.message_ids if m in event_profile}
        for p in workload.people
        if p.converges
    }
    split = {user: found for user, found in split.items() if len(found) != 1}
    assert split == {}, f"{len(split)} people spread over several profiles: {list(split)[:5]}"

    # Merges and profile aliases agree.
    merged_ids = Counter(m.merged_id for m in merges)
    assert [p for p, n in merged_ids.items() if n > 1] == [], "a profile was merged away twice"
    assert set(merged_ids) & set(profiles) == set(), "a merged profile still exists"
    assert set(aliases) <= set(merged_ids), "a profile alias without its merge"
    assert set(aliases.values()) <= set(profiles), "a profile alias points to a missing profile"
    assert {m.survivor_id for m in merges} <= set(profiles) | set(aliases)
    assert {m.message_id for m in merges} <= set(event_profile), "a merge by an unapplied event"
    assert merges, "no merge was exercised"
    assert aliases, "no stored profile was merged"
    print(
        f"  checked: {len(event_profile)} events on {len(profiles)} profiles, "
        f"{len(identifiers)} identifiers, {len(merges)} merges ({len(aliases)} of stored "
        f"profiles), {len(refused)} conflicting aliases quarantined"
    )
