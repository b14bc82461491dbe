"""Crash test of journeys on PostgreSQL: no enrollment advances twice, no timer is lost.

2,000 people join at once; each enters the `drip` journey (message, wait 3 s,
message, wait 3 s, message) and a segment (`Joined` within 60 s) whose exit, found
by a re-check timer, starts a second journey. Three real `airspace worker` processes
run it on the real clock; one is killed with SIGKILL twice while inside a transaction
that writes journey state, and started again. Afterwards every enrollment has
completed, each of its three message steps was sent exactly once (no step ran twice,
none was skipped), every segment re-check happened, and no timer is left behind.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from airspace.domain.definitions import documents_from_files
from airspace.domain.events import parse_message
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply
from airspace.store.database import Database
from airspace.store.inbox import accept
from airspace.store.keys import create_key
from airspace.store.migrate import migrate
from tests.conftest import postgres_database
from tests.integration.test_crash_postgres import Fleet, _activity, _backend_in_write_transaction

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PEOPLE = 2000
WORKERS = 3
KILLS = 2
DEADLINE_SECONDS = 150.0
DEFINITIONS = {
    "settings.yaml": """
controller:
  decision_window: 0s
  global_control: 0%
  message_holdout: 0%
  caps: [{scope: marketing, max: 100, per: 1d}]
""",
    "drip.yaml": """
journey: drip
entry: {event: Joined}
holdout: 0
steps:
  - {id: first, message: {channels: [email], content: drip-1}}
  - {id: pause-1, wait: 3s}
  - {id: second, message: {channels: [email], content: drip-2}}
  - {id: pause-2, wait: 3s}
  - {id: third, message: {channels: [email], content: drip-3}}
""",
    "fresh.yaml": """
segment: fresh
event: Joined
within: 60s
""",
    "fresh-exit.yaml": """
journey: fresh-exit
entry: {segment: fresh, on: exit}
holdout: 0
steps:
  - {id: note, update: {traits: {seasoned: true}}}
""",
}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_database()


def _counts(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return {
            name: conn.execute(text(sql)).scalar() or 0
            for name, sql in {
                "active": "SELECT count(*) FROM enrollments WHERE journey_id = 'drip' "
                "AND status = 'active'",
                "timers": "SELECT count(*) FROM timers WHERE kind <> 'schedule'",
                "seasoned": "SELECT count(*) FROM enrollments WHERE journey_id = 'fresh-exit' "
                "AND status = 'completed'",
                "inbox": "SELECT count(*) FROM inbox",
            }.items()
        }


def _in_journey_work(backend: dict[str, Any] | None) -> bool:
    """Inside a transaction that is writing journey state (not just claiming work)."""
    words = ("enrollments", "timers", "candidates", "segment_members", "messages")
    return (
        backend is not None
        and any(word in backend["query"] for word in words)
        and "segment_sizes" not in backend["query"]
    )


def _diagnosis(db: Database) -> str:
    with db.read() as conn:
        return str(
            [
                conn.execute(text(sql)).all()
                for sql in (
                    "SELECT entered, count(*) FROM segment_transitions GROUP BY entered",
                    "SELECT journey_id, status, count(*) FROM enrollments GROUP BY 1, 2",
                    "SELECT kind, count(*) FROM timers GROUP BY kind",
                    "SELECT count(*) FROM segment_members",
                    "SELECT min(entered_at), max(entered_at) FROM enrollments "
                    "WHERE journey_id = 'drip'",
                    "SELECT min(timestamp), max(timestamp) FROM events WHERE name = 'Joined'",
                )
            ]
        )


def test_journeys_survive_sigkills_without_double_steps_or_lost_timers(
    postgres_url: str, tmp_path: Path
) -> None:
    db = Database(postgres_url)
    fleet = Fleet(postgres_url, tmp_path)
    started = time.monotonic()
    try:
        migrate(db)
        problems = Problems()
        apply(db, documents_from_files(DEFINITIONS, problems), datetime.now(UTC))
        assert not problems.items
        key, _ = create_key(db, "write", "crash", datetime.now(UTC))
        now = datetime.now(UTC)
        events = [
            parse_message(
                {"type": "identify", "userId": f"p{n}", "traits": {"email": f"p{n}@example.com"}},
                received_at=now,
                new_message_id=f"id-{n}",
            )
            for n in range(PEOPLE)
        ] + [
            parse_message(
                {"type": "track", "userId": f"p{n}", "event": "Joined"},
                received_at=now,
                new_message_id=f"joined-{n}",
            )
            for n in range(PEOPLE)
        ]
        accept(db, key.id, events, [], now)
        for slot in range(WORKERS):
            fleet.start(slot)
        for _ in range(KILLS):
            victim = fleet.workers[0]
            while not _in_journey_work(backend := _backend_in_write_transaction(db, victim.name)):
                fleet.check_alive()
                if time.monotonic() - started > DEADLINE_SECONDS:
                    pytest.fail(f"no write transaction of {victim.name}\n{fleet.tails()}")
                time.sleep(0.01)
            victim.process.send_signal(signal.SIGKILL)
            assert victim.process.wait(timeout=10) == -signal.SIGKILL
            print(
                f"\n  SIGKILL {victim.name} in transaction {backend['xid']}: {backend['query']!r}"
            )
            time.sleep(1.0)
            fleet.start(0)
        while (counts := _counts(db)) != {
            "active": 0,
            "timers": 0,
            "seasoned": PEOPLE,
            "inbox": 0,
        }:
            fleet.check_alive()
            if time.monotonic() - started > DEADLINE_SECONDS:
                pytest.fail(
                    f"not done: {counts} {_diagnosis(db)}\n{_activity(db)}\n{fleet.tails()}"
                )
            time.sleep(0.2)
    except BaseException:
        db.dispose()
        raise
    finally:
        codes = fleet.stop()
    assert all(code == 0 for code in codes.values()), f"exit codes {codes}\n{fleet.tails()}"
    assert fleet.count_in_logs("Traceback") == 0, fleet.tails()
    with db.read() as conn:
        per_step = conn.execute(
            text(
                "SELECT e.id, m.step_id, count(m.id) FROM enrollments e "
                "LEFT JOIN messages m "
                "ON m.journey_id = e.journey_id AND m.profile_id = e.profile_id "
                "WHERE e.journey_id = 'drip' GROUP BY e.id, m.step_id"
            )
        ).all()
        enrollments = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT profile_id) FROM enrollments "
                "WHERE journey_id = 'drip' AND status = 'completed'"
            )
        ).one()
        seasoned = conn.execute(
            text("SELECT count(*) FROM profiles WHERE traits->>'seasoned' = 'true'")
        ).scalar()
    db.dispose()
    assert tuple(enrollments) == (PEOPLE, PEOPLE)
    steps: dict[str, dict[str, int]] = {}
    for enrollment_id, step_id, count in per_step:
        steps.setdefault(enrollment_id, {})[step_id] = count
    assert all(s == {"first": 1, "second": 1, "third": 1} for s in steps.values()), [
        s for s in steps.values() if s != {"first": 1, "second": 1, "third": 1}
    ][:5]
    assert seasoned == PEOPLE
    print(f"  whole test {time.monotonic() - started:.1f} s")
