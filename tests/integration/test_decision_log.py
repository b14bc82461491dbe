"""The decision log forgets decisions older than its retention, oldest first; uplift
trials join their cells once, when they mature."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import insert, select

from airspace.bootstrap import Services
from airspace.domain.uplift import Tally
from airspace.store.decisions import mature_trials, prune_log, tallies
from airspace.store.tables import CandidateRow, DecisionRow, EnrollmentRow, core


def _log(services: Services, *days_ago: int) -> None:
    now = services.clock.now()
    rows = [
        {
            "profile_id": f"p{i}",
            "at": now - timedelta(days=d),
            "policy": "airspace",
            "stratum": "repeat",
            "summary": "sent cart/reminder",
            "record": {},
        }
        for i, d in enumerate(days_ago)
    ]
    with services.db.write() as conn:
        conn.execute(insert(core(DecisionRow)), rows)


def _left(services: Services) -> list[str]:
    with services.db.read() as conn:
        return sorted(conn.execute(select(DecisionRow.profile_id)).scalars())


def test_the_worker_forgets_decisions_older_than_the_retention(services: Services) -> None:
    _log(services, 500, 400, 366, 364, 10, 0)
    services.worker().maintain()  # the default retention: 365 days
    assert _left(services) == ["p3", "p4", "p5"]


def test_pruning_goes_batch_by_batch_and_stops_at_the_first_recent_decision(
    services: Services,
) -> None:
    _log(services, 90, 80, 70, 60, 5, 3, 100)  # the last one was logged late, out of order
    with services.db.write() as conn:
        removed = prune_log(conn, services.clock.now() - timedelta(days=30), batch=2)
    assert removed == 4
    # Ids grow with time: an old decision behind a recent one waits for the next day.
    assert _left(services) == ["p4", "p5", "p6"]


def _trials(services: Services, count: int) -> None:
    """`count` control trials of one cell, matured an hour ago; every other one converted
    (worth 10) after it was proposed, and one converted before it (which does not count)."""
    now = services.clock.now()
    created = now - timedelta(days=7, hours=1)
    enrollments = [
        {
            "id": f"e{i}",
            "journey_id": "cart",
            "version": 1,
            "profile_id": f"p{i}",
            "step_id": "message",
            "status": "done",
            "layer": "none",
            "entered_at": created,
            "context": {},
            "converted_at": None if i % 2 else created + timedelta(days=1 if i else -1),
            "conversion_value": None if i % 2 else 10.0,
        }
        for i in range(count)
    ]
    candidates = [
        {
            "id": f"c{i}",
            "profile_id": f"p{i}",
            "enrollment_id": f"e{i}",
            "journey_id": "cart",
            "step_id": "message",
            "spec": {},
            "layer": "none",
            "status": "suppressed",
            "created_at": created,
            "expires_at": created + timedelta(days=1),
            "arm": "control",
            "stratum": "repeat",
            "weight": 2.0,
            "matures_at": now - timedelta(hours=1),
        }
        for i in range(count)
    ]
    with services.db.write() as conn:
        conn.execute(insert(core(EnrollmentRow)), enrollments)
        conn.execute(insert(core(CandidateRow)), candidates)


def test_matured_trials_join_their_cells_once_whatever_the_workers(services: Services) -> None:
    """Two workers fold the matured trials in at the same moment: each trial is counted
    once, with its conversion when the goal was reached after it was proposed."""
    _trials(services, 400)
    barrier = threading.Barrier(2)
    counted: list[int] = []

    def fold() -> None:
        barrier.wait(timeout=30)
        with services.db.write() as conn:
            counted.append(mature_trials(conn, services.clock.now(), limit=300))

    workers = [threading.Thread(target=fold) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert len(counted) == 2
    assert sum(counted) <= 400  # the oldest 300 at most each; the rest wait
    with services.db.write() as conn:
        counted.append(mature_trials(conn, services.clock.now()))
    assert sum(counted) == 400
    with services.db.read() as conn:
        found = tallies(conn)
        left = conn.execute(select(CandidateRow.id).where(CandidateRow.matures_at.is_not(None)))
        assert list(left) == []
    # 400 trials of weight 2 (worth 400 plain ones), 199 converted: the first, too early.
    assert found == {("cart", "control", "", "repeat"): Tally(400.0, 199.0, 1990.0)}
