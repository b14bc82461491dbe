"""A journey's entry cap is exact: it never takes more people than its cap, whether they
arrive in one batch or several workers split them between them, and a journey that gains
a cap counts the people it took before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply
from airspace.store.tables import EnrollmentRow

from .conftest import Send, run_workers

CAP = 7
PEOPLE = 40


def _journey(cap: int | None) -> list[Any]:
    """`first-few` (with `cap`, if any) and `everyone`, both entered on sign-up."""
    entry_cap = f"entry_cap: {cap}\n" if cap is not None else ""
    files = {
        "journeys/first-few.yaml": (
            f"journey: first-few\nentry: {{event: Signed Up}}\n{entry_cap}"
            "holdout: 0\nsteps:\n  - {id: pause, wait: 1d}\n"
        ),
        "journeys/everyone.yaml": (
            "journey: everyone\nentry: {event: Signed Up}\nholdout: 0\n"
            "steps:\n  - {id: pause, wait: 1d}\n"
        ),
    }
    problems = Problems()
    docs = documents_from_files(files, problems)
    assert not problems.items, problems.items
    return docs


def _sign_up(send: Send, people: range) -> None:
    send(*({"type": "track", "userId": f"user-{p}", "event": "Signed Up"} for p in people))


def _entered(services: Services) -> dict[str, int]:
    with services.db.read() as conn:
        rows = conn.execute(
            select(EnrollmentRow.journey_id, func.count()).group_by(EnrollmentRow.journey_id)
        ).all()
    return {journey: n for journey, n in rows}


def test_several_workers_never_let_a_journey_take_more_than_its_entry_cap(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    apply(services.db, _journey(CAP), clock.now())
    _sign_up(send, range(PEOPLE))
    run_workers(services, clock, batch_at=None)
    assert _entered(services) == {"first-few": CAP, "everyone": PEOPLE}


def test_one_batch_counts_the_people_before_each_one(services: Services, send: Send) -> None:
    apply(services.db, _journey(CAP), services.clock.now())
    _sign_up(send, range(PEOPLE))
    services.worker().drain()  # one batch holds everyone
    assert _entered(services) == {"first-few": CAP, "everyone": PEOPLE}


def test_a_journey_that_gains_a_cap_counts_the_people_it_took_before(
    services: Services, send: Send
) -> None:
    apply(services.db, _journey(None), services.clock.now())
    _sign_up(send, range(5))
    services.worker().drain()
    apply(services.db, _journey(CAP), services.clock.now())
    _sign_up(send, range(5, 10))
    services.worker().drain()
    assert _entered(services) == {"first-few": CAP, "everyone": 10}  # 5 before, 2 after
    # Without the cap it takes everyone again (10 in all); with a cap of 11 it counts them
    # all and takes 1 of the next 7.
    apply(services.db, _journey(None), services.clock.now())
    _sign_up(send, range(10, 13))
    services.worker().drain()
    apply(services.db, _journey(CAP + 4), services.clock.now())
    _sign_up(send, range(13, 20))
    services.worker().drain()
    assert _entered(services) == {"first-few": CAP + 4, "everyone": 20}
