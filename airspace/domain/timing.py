"""Durations, local times and anniversaries: the calendar arithmetic of journeys and segments.

A person's local time uses their time zone (`timezone_of`): the `timezone`
trait, else the latest `context.timezone` of their events, else the
workspace default. Local times that fall into a daylight-saving gap move
forward to the first valid instant (the end of the gap); in a repeated hour
the first one counts.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airspace.domain.problems import shown
from airspace.domain.profiles import Profile

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_duration(value: Any) -> timedelta:
    """`30m`, `1h`, `7d`, `2w`, `45s` (or a number of seconds) as a timedelta."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a duration such as 30m, 1h, 7d or 2w; got {shown(value)}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0 or seconds > 3650 * 86400:
        raise ValueError(f"duration must be between 0 and 10 years; got {shown(value)}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """A duration in the largest unit, up to days, that spells it exactly (`7d`, `90m`):
    caps and windows are written in days, so a week reads as `7d`, not `1w`."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def parse_time_of_day(value: Any) -> time:
    """`09:00` or `21:30` as a time."""
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(part) for part in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    hint = ""
    if isinstance(value, int) and not isinstance(value, bool) and 60 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 10:00 as the base-60 number 600.
        hint = f" (YAML reads an unquoted {value // 60}:{value % 60:02d} as {value}; quote it)"
    raise ValueError(f'expected a time of day such as "09:00"; got {shown(value)}{hint}')


def zone(name: str | None, default: str) -> ZoneInfo:
    """The named time zone, or the default when the name is empty or unknown."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def timezone_of(profile: Profile, default: str) -> ZoneInfo:
    """A person's time zone: trait, else their events' context, else the workspace default."""
    trait = profile.traits.get("timezone")
    return zone(trait if isinstance(trait, str) else profile.computed.timezone, default)


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time.

    A time repeated when clocks go back is its first occurrence; a time skipped
    when clocks go forward becomes the first instant after the gap (02:30 on a
    night when 02:00 jumps to 03:00 is 03:00).
    """
    naive = datetime.combine(day, at)
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        # A skipped time does not survive the round trip through UTC.
        if _wall(candidate, tz) == naive:
            return candidate
    # In the gap, fold=1 reads the wall time with the offset after the jump (an
    # instant before the gap) and fold=0 with the one before it (after the gap);
    # the transition lies between: find it to the second.
    before = int(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    after = int(naive.replace(tzinfo=tz, fold=0).astimezone(UTC).timestamp()) + 1
    while after - before > 1:
        middle = (before + after) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) >= naive:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def next_local_time(
    now: datetime, at: time, tz: ZoneInfo, weekdays: tuple[int, ...] = ()
) -> datetime:
    """The first instant after `now` when the local clock shows `at` (on one of `weekdays`)."""
    today = now.astimezone(tz).date()
    for offset in range(0, 9):
        day = today + timedelta(days=offset)
        if weekdays and day.weekday() not in weekdays:
            continue
        candidate = local_instant(day, at, tz)
        if candidate > now:
            return candidate
    raise ValueError("no matching local time within a week")  # unreachable with valid weekdays


def as_date(value: Any) -> date | None:
    """A trait value as a calendar date: ISO date or datetime strings; else None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def as_instant(value: Any) -> datetime | None:
    """A trait value as an instant (naive values are UTC); else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def anniversary_on_or_after(born: date, day: date) -> date:
    """The first anniversary of `born` on or after `day` (29 February → 28 February)."""
    for year in (day.year, day.year + 1):
        try:
            candidate = born.replace(year=year)
        except ValueError:
            candidate = date(year, 2, 28)
        if candidate >= day:
            return candidate
    raise ValueError("unreachable")


def next_anniversary(born: date, now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The next instant after `now` at local time `at` on an anniversary of `born`."""
    day = anniversary_on_or_after(born, now.astimezone(tz).date())
    moment = local_instant(day, at, tz)
    if moment <= now:
        day = anniversary_on_or_after(born, day + timedelta(days=1))
        moment = local_instant(day, at, tz)
    return moment
