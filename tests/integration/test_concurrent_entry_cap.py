"""A journey's entry cap is exact: it never takes more people than its cap, whether they
arrive in one batch or several workers split them between them, and a journey that gains
a cap counts the people it took before."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply, set_status
from airspace.store import journeys as journeys_repo
from airspace.store.inbox import partition_of
from airspace.store.tables import EnrollmentRow, JourneyStatRow

from .conftest import Send, run_workers

CAP = 7
PEOPLE = 40


def _journey(cap: int | None, extra: dict[str, str] | None = None) -> list[Any]:
    """`first-few` (with `cap`, if any) and `everyone`, both entered on sign-up, and any
    `extra` definition files."""
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
    docs = documents_from_files(files | (extra or {}), problems)
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


def _while_user_0_is_counted(
    services: Services, send: Send, monkeypatch: pytest.MonkeyPatch, meanwhile: Any
) -> None:
    """Worker A enters user-0 and, about to count (`hold_counters`), waits while
    `meanwhile()` runs; then A finishes."""
    a_counting, done = threading.Event(), threading.Event()
    hold_counters = journeys_repo.hold_counters

    def held(conn: Any, *, restart: bool) -> None:
        if threading.current_thread().name == "A" and not a_counting.is_set():
            a_counting.set()
            assert done.wait(timeout=60), "the test never let worker A go on"
        hold_counters(conn, restart=restart)

    monkeypatch.setattr(journeys_repo, "hold_counters", held)
    send({"type": "track", "userId": "user-0", "event": "Signed Up"})
    a = threading.Thread(target=services.worker(paced=False).run_once, name="A")
    a.start()
    assert a_counting.wait(timeout=60), "worker A never came to count"
    meanwhile()
    done.set()
    a.join(timeout=60)
    assert not a.is_alive()


def _hold_thread_a_at_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event]:
    """Thread "A", about to count its entries (`add_entries`), sets the first event and
    waits for the second."""
    a_counting, b_done = threading.Event(), threading.Event()
    add_entries = journeys_repo.add_entries

    def held(conn: Any, entries: Any) -> dict[str, int]:
        if threading.current_thread().name == "A" and not a_counting.is_set():
            a_counting.set()
            assert b_done.wait(timeout=60), "worker B never finished"
        return add_entries(conn, entries)

    monkeypatch.setattr(journeys_repo, "add_entries", held)
    return a_counting, b_done


def test_several_workers_never_let_a_journey_take_more_than_its_entry_cap(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    apply(services.db, _journey(CAP), clock.now())
    _sign_up(send, range(PEOPLE))
    run_workers(services, clock, batch_at=None)
    assert _entered(services) == {"first-few": CAP, "everyone": PEOPLE}


def test_workers_carrying_out_timers_and_events_at_once_keep_every_cap(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    """A scheduled journey enters everyone through timers while an event enters them into
    another capped journey: batches of both kinds add to both counters at once."""
    launch = clock.now() + timedelta(hours=1)
    extra = {
        "journeys/launch.yaml": (
            f'journey: launch\nentry: {{schedule: {{at: "{launch.isoformat()}"}}}}\n'
            f"entry_cap: {CAP}\nholdout: 0\nsteps:\n  - {{id: pause, wait: 1d}}\n"
        ),
        "journeys/come-back.yaml": (
            f"journey: come-back\nentry: {{event: Came Back}}\nentry_cap: {CAP}\n"
            "holdout: 0\nsteps:\n  - {id: pause, wait: 1d}\n"
        ),
    }
    apply(services.db, _journey(CAP, extra), clock.now())
    _sign_up(send, range(PEOPLE))
    services.worker().drain()
    clock.advance(timedelta(hours=1))
    services.worker().run_timers()  # the schedule fires: an entry timer per person
    send(*({"type": "track", "userId": f"user-{p}", "event": "Came Back"} for p in range(PEOPLE)))
    run_workers(services, clock, batch_at=None)
    assert _entered(services) == {
        "first-few": CAP,
        "everyone": PEOPLE,
        "launch": CAP,
        "come-back": CAP,
    }


def test_one_worker_counts_the_people_before_each_one(services: Services, send: Send) -> None:
    """On SQLite one batch holds everyone; on PostgreSQL they come in a few batches."""
    apply(services.db, _journey(CAP), services.clock.now())
    _sign_up(send, range(PEOPLE))
    services.worker().drain()
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


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_batch_that_loses_the_race_for_the_last_place_runs_again(
    services: Services,
    send: Send,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Worker A has entered P into a journey with one place and is about to count it;
    worker B enters Q (another inbox partition) and commits first. A's count then goes
    over the cap: its batch is rolled back and run again, and P stays out."""
    apply(services.db, _journey(1), services.clock.now())
    other = next(
        f"user-{i}" for i in range(1, 99) if partition_of(f"user-{i}") != partition_of("user-0")
    )
    a_counting, b_done = _hold_thread_a_at_its_count(monkeypatch)
    send({"type": "track", "userId": "user-0", "event": "Signed Up"})
    a = threading.Thread(target=services.worker(paced=False).run_once, name="A")
    with caplog.at_level(logging.INFO, logger="airspace.worker"):
        a.start()
        assert a_counting.wait(timeout=60), "worker A never came to count"
        send({"type": "track", "userId": other, "event": "Signed Up"})
        assert services.worker(paced=False).run_once().applied == 1  # B, while A waits
        b_done.set()
        a.join(timeout=60)
    assert not a.is_alive()
    assert any("batch run again" in r.getMessage() for r in caplog.records)
    with services.db.read() as conn:
        taken = conn.execute(select(EnrollmentRow.profile_id, EnrollmentRow.journey_id)).all()
        counter = conn.execute(select(JourneyStatRow.entered)).scalar_one()
    journeys = sorted(j for _, j in taken)
    assert journeys == ["everyone", "everyone", "first-few"]  # Q took the place, P did not
    assert counter == 1


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_timers_that_lose_the_race_for_the_last_place_run_again(
    services: Services,
    send: Send,
    clock: SimulatedClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same race through timers: a scheduled journey with one place has an entry timer for
    each of two people. Worker A enters one and is about to count it; worker B takes the
    other timer, enters that person and commits first. A's timers are rolled back and
    run again, and A's person stays out."""
    launch = clock.now() + timedelta(hours=1)
    extra = {
        "journeys/launch.yaml": (
            f'journey: launch\nentry: {{schedule: {{at: "{launch.isoformat()}"}}}}\n'
            "entry_cap: 1\nholdout: 0\nsteps:\n  - {id: pause, wait: 1d}\n"
        )
    }
    apply(services.db, _journey(None, extra), clock.now())
    _sign_up(send, range(2))
    services.worker().drain()
    clock.advance(timedelta(hours=1))
    services.worker().run_timers()  # the schedule fires: an entry timer per person
    a_counting, b_done = _hold_thread_a_at_its_count(monkeypatch)
    a = threading.Thread(target=services.worker(paced=False).run_timers, args=(1,), name="A")
    with caplog.at_level(logging.INFO, logger="airspace.worker"):
        a.start()
        assert a_counting.wait(timeout=60), "worker A never came to count"
        assert services.worker(paced=False).run_timers(1).enrollments == 1  # B, while A waits
        b_done.set()
        a.join(timeout=60)
    assert not a.is_alive()
    assert any("timers run again" in r.getMessage() for r in caplog.records)
    with services.db.read() as conn:
        counter = conn.execute(
            select(JourneyStatRow.entered).where(JourneyStatRow.journey_id == "launch")
        ).scalar_one()
    assert _entered(services) == {"first-few": 2, "everyone": 2, "launch": 1}
    assert counter == 1


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_cap_given_while_a_batch_runs_counts_that_batch(
    services: Services, send: Send, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A has entered P into a journey without a cap and is about to count; the
    journey is given a cap of 1 and the definitions commit first. A's batch runs again
    under the cap, so P counts, and the next person finds the journey full."""
    apply(services.db, _journey(None), services.clock.now())
    _while_user_0_is_counted(
        services, send, monkeypatch, lambda: apply(services.db, _journey(1), services.clock.now())
    )
    _sign_up(send, range(1, 3))
    services.worker().drain()
    assert _entered(services) == {"first-few": 1, "everyone": 3}
    with services.db.read() as conn:
        assert conn.execute(select(JourneyStatRow.entered)).scalar_one() == 1


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_journey_archived_while_a_batch_runs_counts_it_when_resumed(
    services: Services, send: Send, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A has entered P into a journey with one place; the journey is archived
    before A counts (so A does not: it is not running), then resumed. It counts its
    enrollments again on resuming, so the next person finds it full."""
    apply(services.db, _journey(1), clock.now())

    def archive() -> None:
        clock.advance(timedelta(seconds=1))
        set_status(services.db, "journey", "first-few", "archived", clock.now())

    _while_user_0_is_counted(services, send, monkeypatch, archive)
    clock.advance(timedelta(seconds=1))
    set_status(services.db, "journey", "first-few", "active", clock.now())
    _sign_up(send, range(1, 3))
    services.worker().drain()
    assert _entered(services) == {"first-few": 1, "everyone": 3}
