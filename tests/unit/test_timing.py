"""Durations, local times and anniversaries, daylight-saving changes included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airspace.domain import timing
from airspace.domain.profiles import Computed, Profile

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
AUCKLAND = ZoneInfo("Pacific/Auckland")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # half-hour daylight saving
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (" 7d ", timedelta(days=7)),
        ("7 d", timedelta(days=7)),
        ("1.5h", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        ("3650d", timedelta(days=3650)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        (0, timedelta(0)),
    ],
)
def test_parse_duration(raw: Any, expected: timedelta) -> None:
    assert timing.parse_duration(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("7", "expected a duration such as 30m, 1h, 7d or 2w; got '7'"),
        ("7 days", "expected a duration such as 30m, 1h, 7d or 2w; got '7 days'"),
        ("1y", "expected a duration such as 30m, 1h, 7d or 2w; got '1y'"),
        ("7D", "expected a duration such as 30m, 1h, 7d or 2w; got '7D'"),
        ("-1d", "expected a duration such as 30m, 1h, 7d or 2w; got '-1d'"),
        ("", "expected a duration such as 30m, 1h, 7d or 2w; got ''"),
        (True, "expected a duration such as 30m, 1h, 7d or 2w; got True"),
        (None, "expected a duration such as 30m, 1h, 7d or 2w; got None"),
        (["7d"], "expected a duration such as 30m, 1h, 7d or 2w; got a list"),
        ("9" * 80, f"expected a duration such as 30m, 1h, 7d or 2w; got '{'9' * 60}…'"),
        ("3651d", "duration must be between 0 and 10 years; got '3651d'"),
        (-5, "duration must be between 0 and 10 years; got -5"),
    ],
)
def test_parse_duration_refuses_with_what_it_got(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"expected|must be") as raised:
        timing.parse_duration(raw)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        (timedelta(days=7), "7d"),
        (timedelta(days=14), "14d"),
        (timedelta(days=3), "3d"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=36), "36h"),
        (timedelta(seconds=45), "45s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_uses_the_largest_exact_unit_up_to_days(
    value: timedelta, spelled: str
) -> None:
    assert timing.format_duration(value) == spelled
    assert timing.parse_duration(spelled) == value


# --- times of day and zones -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("09:00", time(9, 0)), ("9:05", time(9, 5)), (" 21:30 ", time(21, 30)), ("0:00", time(0))],
)
def test_parse_time_of_day(raw: str, expected: time) -> None:
    assert timing.parse_time_of_day(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("24:00", "expected a time of day such as \"09:00\"; got '24:00'"),
        ("12:60", "expected a time of day such as \"09:00\"; got '12:60'"),
        ("09:00:00", "expected a time of day such as \"09:00\"; got '09:00:00'"),
        ("9", "expected a time of day such as \"09:00\"; got '9'"),
        (None, 'expected a time of day such as "09:00"; got None'),
        (
            600,
            'expected a time of day such as "09:00"; got 600 '
            "(YAML reads an unquoted 10:00 as 600; quote it)",
        ),
        (5000, 'expected a time of day such as "09:00"; got 5000'),
        (8, 'expected a time of day such as "09:00"; got 8'),
        (
            60,
            'expected a time of day such as "09:00"; got 60 '
            "(YAML reads an unquoted 1:00 as 60; quote it)",
        ),
    ],
)
def test_parse_time_of_day_refuses(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match="expected a time of day") as raised:
        timing.parse_time_of_day(raw)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "default", "expected"),
    [
        ("Asia/Tokyo", "Europe/Paris", "Asia/Tokyo"),
        (None, "Europe/Paris", "Europe/Paris"),
        ("", "Europe/Paris", "Europe/Paris"),
        ("Mars/Olympus", "Europe/Paris", "Europe/Paris"),
        ("../../etc/passwd", "Europe/Paris", "Europe/Paris"),
        ("Mars/Olympus", "Nowhere/Else", "UTC"),
    ],
)
def test_zone_falls_back_to_the_default_then_utc(
    name: str | None, default: str, expected: str
) -> None:
    assert timing.zone(name, default).key == expected


@pytest.mark.parametrize(
    ("traits", "computed_tz", "expected"),
    [
        ({"timezone": "Asia/Tokyo"}, "America/New_York", "Asia/Tokyo"),
        ({}, "America/New_York", "America/New_York"),
        ({"timezone": 9}, "America/New_York", "America/New_York"),
        ({}, None, "Europe/Paris"),
        ({"timezone": "Not/AZone"}, "America/New_York", "Europe/Paris"),
    ],
)
def test_timezone_of_a_person(
    traits: dict[str, Any], computed_tz: str | None, expected: str
) -> None:
    profile = Profile("p", utc(2026, 1, 1), traits=traits, computed=Computed(timezone=computed_tz))
    assert timing.timezone_of(profile, "Europe/Paris").key == expected


# --- local instants, daylight saving --------------------------------------------------


@pytest.mark.parametrize(
    ("day", "at", "tz", "expected"),
    [
        pytest.param(date(2026, 1, 15), time(9), PARIS, utc(2026, 1, 15, 8), id="paris-winter"),
        pytest.param(date(2026, 7, 15), time(9), PARIS, utc(2026, 7, 15, 7), id="paris-summer"),
        # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        pytest.param(
            date(2026, 3, 29), time(1, 59), PARIS, utc(2026, 3, 29, 0, 59), id="before-gap"
        ),
        pytest.param(date(2026, 3, 29), time(2, 0), PARIS, utc(2026, 3, 29, 1), id="gap-start"),
        pytest.param(date(2026, 3, 29), time(2, 30), PARIS, utc(2026, 3, 29, 1), id="in-gap"),
        pytest.param(date(2026, 3, 29), time(3, 0), PARIS, utc(2026, 3, 29, 1), id="gap-end"),
        pytest.param(
            date(2026, 3, 29), time(3, 30), PARIS, utc(2026, 3, 29, 1, 30), id="after-gap"
        ),
        pytest.param(
            date(2026, 3, 29), time(9), PARIS, utc(2026, 3, 29, 7), id="spring-forward-morning"
        ),
        # 2026-10-25 in Paris: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        pytest.param(
            date(2026, 10, 25), time(2, 30), PARIS, utc(2026, 10, 25, 0, 30), id="repeated-first"
        ),
        pytest.param(date(2026, 10, 25), time(3), PARIS, utc(2026, 10, 25, 2), id="after-repeat"),
        pytest.param(
            date(2026, 10, 25), time(9), PARIS, utc(2026, 10, 25, 8), id="fall-back-morning"
        ),
        pytest.param(
            date(2026, 3, 8), time(2, 30), NEW_YORK, utc(2026, 3, 8, 7), id="new-york-gap"
        ),
        pytest.param(
            date(2026, 10, 4), time(2, 15), LORD_HOWE, utc(2026, 10, 3, 15, 30), id="half-hour-gap"
        ),
        pytest.param(date(2026, 5, 17), time(9), TOKYO, utc(2026, 5, 17, 0), id="tokyo"),
    ],
)
def test_local_instant(day: date, at: time, tz: ZoneInfo, expected: datetime) -> None:
    assert timing.local_instant(day, at, tz) == expected


@settings(max_examples=100, deadline=None)
@given(
    day=st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)),
    minutes=st.integers(min_value=0, max_value=24 * 60 - 1),
    tz=st.sampled_from([PARIS, NEW_YORK, LORD_HOWE, AUCKLAND]),
)
def test_local_instant_is_the_first_instant_showing_that_time_or_later(
    day: date, minutes: int, tz: ZoneInfo
) -> None:
    naive = datetime.combine(day, time(minutes // 60, minutes % 60))
    found = timing.local_instant(day, naive.time(), tz)

    def wall(moment: datetime) -> datetime:
        return moment.astimezone(tz).replace(tzinfo=None)

    assert found.tzinfo is UTC
    assert wall(found) >= naive
    assert wall(found - timedelta(seconds=1)) < naive
    if wall(found) != naive:  # only a time skipped by daylight saving moves
        assert (
            found.astimezone(tz).utcoffset()
            != (found - timedelta(seconds=1)).astimezone(tz).utcoffset()
        )


@pytest.mark.parametrize(
    ("now", "at", "tz", "weekdays", "expected"),
    [
        pytest.param(utc(2026, 1, 15, 7), time(9), PARIS, (), utc(2026, 1, 15, 8), id="today"),
        pytest.param(
            utc(2026, 1, 15, 8), time(9), PARIS, (), utc(2026, 1, 16, 8), id="exactly-now"
        ),
        pytest.param(utc(2026, 1, 15, 9), time(9), PARIS, (), utc(2026, 1, 16, 8), id="tomorrow"),
        # Friday 2026-11-06 18:00 Paris: the next weekday morning is Monday the 9th.
        pytest.param(
            utc(2026, 11, 6, 17),
            time(10),
            PARIS,
            (MON, TUE, WED, THU, FRI),
            utc(2026, 11, 9, 9),
            id="weekend-skipped",
        ),
        pytest.param(
            utc(2026, 11, 2, 8, 59),
            time(10),
            PARIS,
            (MON,),
            utc(2026, 11, 2, 9),
            id="same-monday",
        ),
        pytest.param(
            utc(2026, 11, 2, 9),
            time(10),
            PARIS,
            (MON,),
            utc(2026, 11, 9, 9),
            id="next-monday",
        ),
        # Sunday 23:30 UTC is already Monday 08:30 in Tokyo.
        pytest.param(
            utc(2026, 11, 1, 23, 30),
            time(9),
            TOKYO,
            (MON,),
            utc(2026, 11, 2, 0),
            id="local-weekday",
        ),
        pytest.param(
            utc(2026, 3, 28, 10), time(9), PARIS, (), utc(2026, 3, 29, 7), id="across-spring"
        ),
        pytest.param(
            utc(2026, 3, 28, 23), time(2, 30), PARIS, (), utc(2026, 3, 29, 1), id="into-the-gap"
        ),
        pytest.param(
            utc(2026, 10, 24, 12), time(9), PARIS, (), utc(2026, 10, 25, 8), id="across-fall"
        ),
        pytest.param(
            utc(2026, 10, 24, 12),
            time(2, 30),
            PARIS,
            (),
            utc(2026, 10, 25, 0, 30),
            id="first-of-repeated",
        ),
        # Between the two 02:30s of 2026-10-25 the repeat does not count again.
        pytest.param(
            utc(2026, 10, 25, 1),
            time(2, 30),
            PARIS,
            (),
            utc(2026, 10, 26, 1, 30),
            id="no-second-go",
        ),
    ],
)
def test_next_local_time(
    now: datetime, at: time, tz: ZoneInfo, weekdays: tuple[int, ...], expected: datetime
) -> None:
    assert timing.next_local_time(now, at, tz, weekdays) == expected


# --- dates and anniversaries ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1990-05-17", date(1990, 5, 17)),
        ("1990-05-17T10:00:00Z", date(1990, 5, 17)),
        (date(1990, 5, 17), date(1990, 5, 17)),
        (datetime(1990, 5, 17, 23, tzinfo=UTC), date(1990, 5, 17)),
        ("17/05/1990", None),
        ("1990-13-01", None),
        ("1990", None),
        (19900517, None),
        (None, None),
    ],
)
def test_as_date(value: Any, expected: date | None) -> None:
    assert timing.as_date(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-02T09:00:00Z", utc(2026, 11, 2, 9)),
        ("2026-11-02T10:00:00+01:00", utc(2026, 11, 2, 9)),
        ("2026-11-02T09:00:00", utc(2026, 11, 2, 9)),
        ("2026-11-02", utc(2026, 11, 2)),
        (datetime(2026, 11, 2, 9), utc(2026, 11, 2, 9)),
        (utc(2026, 11, 2, 9), utc(2026, 11, 2, 9)),
        ("yesterday", None),
        (1767344400, None),
        (None, None),
    ],
)
def test_as_instant(value: Any, expected: datetime | None) -> None:
    assert timing.as_instant(value) == expected


@pytest.mark.parametrize(
    ("born", "day", "expected"),
    [
        (date(1990, 5, 17), date(2026, 5, 1), date(2026, 5, 17)),
        (date(1990, 5, 17), date(2026, 5, 17), date(2026, 5, 17)),
        (date(1990, 5, 17), date(2026, 5, 18), date(2027, 5, 17)),
        (date(1990, 1, 2), date(2026, 12, 30), date(2027, 1, 2)),
        (date(2000, 2, 29), date(2027, 2, 1), date(2027, 2, 28)),
        (date(2000, 2, 29), date(2027, 3, 1), date(2028, 2, 29)),
        (date(2000, 2, 29), date(2028, 2, 28), date(2028, 2, 29)),
        (date(2000, 2, 29), date(2028, 3, 1), date(2029, 2, 28)),
    ],
)
def test_anniversary_on_or_after(born: date, day: date, expected: date) -> None:
    assert timing.anniversary_on_or_after(born, day) == expected


@pytest.mark.parametrize(
    ("born", "now", "tz", "expected"),
    [
        pytest.param(
            date(1990, 5, 17), utc(2026, 5, 1), PARIS, utc(2026, 5, 17, 7), id="paris-summer"
        ),
        pytest.param(
            date(1990, 12, 3), utc(2026, 5, 1), PARIS, utc(2026, 12, 3, 8), id="paris-winter"
        ),
        pytest.param(date(1990, 5, 17), utc(2026, 5, 1), TOKYO, utc(2026, 5, 17), id="tokyo"),
        pytest.param(
            date(1990, 5, 17), utc(2026, 5, 1), NEW_YORK, utc(2026, 5, 17, 13), id="new-york"
        ),
        pytest.param(
            date(1990, 5, 17), utc(2026, 5, 1), AUCKLAND, utc(2026, 5, 16, 21), id="auckland"
        ),
        # 22:00 UTC on the 16th is already 10:00 on the 17th in Auckland: next year.
        pytest.param(
            date(1990, 5, 17),
            utc(2026, 5, 16, 22),
            AUCKLAND,
            utc(2027, 5, 16, 21),
            id="auckland-passed",
        ),
        pytest.param(
            date(1990, 5, 17), utc(2026, 5, 17, 6, 59), PARIS, utc(2026, 5, 17, 7), id="just-before"
        ),
        pytest.param(
            date(1990, 5, 17), utc(2026, 5, 17, 7), PARIS, utc(2027, 5, 17, 7), id="exactly-then"
        ),
        pytest.param(
            date(2000, 2, 29), utc(2027, 1, 10), PARIS, utc(2027, 2, 28, 8), id="leap-day"
        ),
        pytest.param(
            date(2000, 2, 29), utc(2028, 1, 10), PARIS, utc(2028, 2, 29, 8), id="leap-year"
        ),
        pytest.param(
            date(1990, 1, 1), utc(2026, 12, 31, 12), PARIS, utc(2027, 1, 1, 8), id="year-wrap"
        ),
        pytest.param(
            date(1990, 3, 29), utc(2026, 3, 1), PARIS, utc(2026, 3, 29, 7), id="spring-forward-day"
        ),
    ],
)
def test_next_anniversary_at_nine_local(
    born: date, now: datetime, tz: ZoneInfo, expected: datetime
) -> None:
    assert timing.next_anniversary(born, now, time(9), tz) == expected
