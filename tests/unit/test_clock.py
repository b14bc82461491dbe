"""Clocks: the simulated one moves only when told, forward only, always in UTC."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from airspace.domain.clock import Clock, SimulatedClock, SystemClock

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
LISBON_SUMMER = timezone(timedelta(hours=1))


def test_simulated_clock_stands_still_until_told() -> None:
    clock = SimulatedClock(START)
    assert clock.now() == START
    assert clock.now() == START


def test_simulated_clock_keeps_utc_whatever_zone_it_starts_in() -> None:
    clock = SimulatedClock(datetime(2026, 7, 1, 11, 0, tzinfo=LISBON_SUMMER))
    assert clock.now() == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_simulated_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware start"):
        SimulatedClock(datetime(2026, 11, 22, 10, 0))


@pytest.mark.parametrize(
    "delta",
    [timedelta(0), timedelta(microseconds=1), timedelta(days=30, hours=3)],
    ids=["zero", "a-microsecond", "a-month"],
)
def test_advance_moves_forward_and_returns_the_new_time(delta: timedelta) -> None:
    clock = SimulatedClock(START)
    assert clock.advance(delta) == START + delta
    assert clock.now() == START + delta


def test_advance_refuses_to_go_back() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="time only moves forward; got -1 day"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == START


def test_set_jumps_forward_in_any_zone() -> None:
    clock = SimulatedClock(START)
    clock.set(datetime(2026, 11, 22, 12, 0, tzinfo=LISBON_SUMMER))
    assert clock.now() == datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    clock.set(clock.now())  # the same instant is not the past
    assert clock.now() == datetime(2026, 11, 22, 11, 0, tzinfo=UTC)


def test_set_refuses_the_past() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="time only moves forward"):
        clock.set(START - timedelta(microseconds=1))
    assert clock.now() == START


def test_set_refuses_a_naive_time() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="timezone-aware time"):
        clock.set(datetime(2026, 11, 23, 10, 0))
    assert clock.now() == START


def test_concurrent_advances_are_all_counted() -> None:
    clock = SimulatedClock(START)

    def tick() -> None:
        for _ in range(200):
            clock.advance(timedelta(seconds=1))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == START + timedelta(seconds=800)


def test_both_clocks_satisfy_the_protocol_and_answer_in_utc() -> None:
    clocks: list[Clock] = [SimulatedClock(START), SystemClock()]
    for clock in clocks:
        # Only the zone of the real clock is checked, never its value.
        assert clock.now().utcoffset() == timedelta(0)
        assert clock.now().tzinfo is UTC
