"""TokenBucket: a sustained rate per write key with room for bursts, on plain times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airspace.domain.ratelimit import TokenBucket

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def bucket(rate: float = 10.0, burst: float = 100.0, tokens: float | None = None) -> TokenBucket:
    """A bucket last updated at T0, full unless told otherwise."""
    return TokenBucket(
        rate=rate, burst=burst, tokens=burst if tokens is None else tokens, updated=T0
    )


def later(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def test_a_full_bucket_allows_the_burst_then_refuses_with_the_wait() -> None:
    b = bucket(rate=10, burst=100)
    assert b.take(60, T0) is None
    assert b.take(40, T0) is None
    assert b.tokens == 0
    assert b.take(5, T0) == pytest.approx(0.5)
    assert b.tokens == 0  # a refused request spends nothing


@pytest.mark.parametrize(
    ("tokens", "elapsed", "count", "expected_wait", "tokens_after"),
    [
        pytest.param(0, 1.0, 10, None, 0, id="refilled-at-the-rate"),
        pytest.param(0, 0.5, 10, 0.5, 5, id="half-refilled"),
        pytest.param(0, 3600, 100, None, 0, id="refill-capped-at-burst"),
        pytest.param(50, 3600, 99, None, 1, id="never-above-burst"),
        pytest.param(50, 1, 101, 4.0, 60, id="oversized-waits-for-a-full-bucket"),
        pytest.param(99.9999, 0, 100, 0.001, 99.9999, id="wait-at-least-a-millisecond"),
        pytest.param(20, 0, 0, None, 20, id="nothing-to-take"),
    ],
)
def test_take(
    tokens: float, elapsed: float, count: int, expected_wait: float | None, tokens_after: float
) -> None:
    b = bucket(rate=10, burst=100, tokens=tokens)
    wait = b.take(count, later(elapsed))
    if expected_wait is None:
        assert wait is None
    else:
        assert wait == pytest.approx(expected_wait)
    assert b.tokens == pytest.approx(tokens_after)
    assert b.updated == later(elapsed)


def test_a_reading_from_the_past_neither_refills_nor_moves_the_bucket_back() -> None:
    b = bucket(rate=10, burst=100, tokens=0)
    b.updated = later(10)
    assert b.take(1, later(5)) == pytest.approx(0.1)
    assert b.updated == later(10)
    # Five seconds of refill were already counted up to t=10; they must not count twice.
    assert b.take(50, later(10)) == pytest.approx(5.0)
    assert b.take(50, later(15)) is None


def test_a_request_larger_than_the_burst_waits_for_a_full_bucket_then_goes_into_debt() -> None:
    b = bucket(rate=10, burst=100, tokens=40)
    wait = b.take(250, T0)
    assert wait == pytest.approx(6.0)  # until the bucket is full, not forever
    assert b.take(250, later(6)) is None
    assert b.tokens == pytest.approx(-150)
    # The debt is paid at the sustained rate: 15 s before one more event fits.
    assert b.take(1, later(6)) == pytest.approx(15.1)
    assert b.take(1, later(21.1)) is None


@settings(max_examples=50, deadline=None, database=None)
@given(
    rate=st.floats(0.1, 10_000),
    burst=st.floats(1, 10_000),
    requests=st.lists(st.tuples(st.floats(0, 100), st.integers(1, 20_000)), max_size=15),
)
def test_the_wait_is_honest_and_the_rate_holds(
    rate: float, burst: float, requests: list[tuple[float, int]]
) -> None:
    b = bucket(rate=rate, burst=burst)
    now, allowed = T0, 0
    for gap, count in requests:
        now += timedelta(seconds=gap)
        wait = b.take(count, now)
        if wait is not None:
            assert wait > 0
            # Retrying after the advertised wait (and a microsecond of rounding) succeeds.
            now += timedelta(seconds=wait, microseconds=1)
            assert b.take(count, now) is None
        allowed += count
        assert b.tokens <= burst
    elapsed = (now - T0).total_seconds()
    # Never more than the burst plus the rate, bar the one oversized request in debt.
    biggest = max((count for _, count in requests), default=0)
    assert allowed <= burst + rate * elapsed + max(biggest - burst, 0) + 1e-6 * allowed
