"""The decision log forgets decisions older than its retention, oldest first."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from airspace.bootstrap import Services
from airspace.store.decisions import prune_log
from airspace.store.tables import DecisionRow, core


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
