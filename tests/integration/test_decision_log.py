"""The decision log forgets decisions older than its retention, oldest first; uplift
trials join their cells once, when they mature."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from airspace.bootstrap import Services
from airspace.domain.identity import Identifier
from airspace.domain.uplift import Tally
from airspace.store.admin import find_profile_id
from airspace.store.decisions import mature_trials, prune_log, tallies
from airspace.store.journey_admin import person_decisions
from airspace.store.tables import CandidateRow, DecisionRow, EnrollmentRow, core
from tests.integration.conftest import Send


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


def test_the_explanation_reads_whole_days_of_the_person(services: Services, send: Send) -> None:
    """Asked for the last two days at 09:00, the explanation starts at midnight of the
    first day: a decision at 07:00 that day is shown, so the day is not called quiet."""
    send({"type": "identify", "userId": "ana-42", "traits": {"email": "ana@example.com"}})
    services.worker().drain()
    profile_id = find_profile_id(services.db, Identifier("user_id", "ana-42"))
    assert profile_id is not None
    now = services.clock.now()  # Mon 02 Nov 2026 09:00 UTC, the workspace's time zone
    early = datetime(2026, 10, 31, 7, 0, tzinfo=UTC)  # Saturday, before now - 2 days
    summary = "sent: cart/reminder on email"
    record = {"at": early.isoformat(), "policy": "airspace", "stratum": "new"}
    row = record | {"profile_id": profile_id, "at": early, "summary": summary}
    with services.db.write() as conn:
        conn.execute(
            insert(core(DecisionRow)),
            [row | {"record": record | {"summary": summary, "candidates": []}}],
        )

    found = person_decisions(services.db, profile_id, now - timedelta(days=2), now, 200)

    assert [d["at"] for d in found["decisions"]] == [early.isoformat()]
    assert found["explanation"] == [
        "Sat 31 Oct 2026 07:00 — sent: cart/reminder on email"
        " (policy airspace, people like this: new)",
        "No journey proposed a message on: Sun 01 Nov to Mon 02 Nov.",
    ]
