"""Segments: declarative conditions over a person, and when their answer can change.

A condition is a tree: `all` / `any` / `not` over leaves — a trait or
computed trait comparison, an event condition (did / did not perform an
event, with property filters, at least / at most N times, within a window or
between two dates, first / last time), membership of another segment, and
reachability or consent on a channel. `evaluate` answers for one person from
`Facts` the engine loads; `next_change` says when time alone may change the
answer, so the engine can re-check the person at exactly that moment;
`Dependencies` tell which events can affect a segment at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from airspace.domain import timing
from airspace.domain.profiles import Computed, Profile

Operator = Literal[
    "eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "contains", "exists"
]
COMPARISONS: tuple[str, ...] = (
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "between",
    "in",
    "not_in",
    "contains",
    "exists",
)
DATE_OPERATORS: tuple[str, ...] = ("within_last", "older_than", "anniversary_within")
COMPUTED_TRAITS: tuple[str, ...] = (
    "first_seen",
    "last_seen",
    "event_count",
    "timezone",
    "locale",
)
MAX_EVENT_COUNT = 10_000
MAX_CONDITION_NODES = 1_000
MAX_CONDITION_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Comparison:
    """`op value`, applied to a value found at some path."""

    op: str
    value: Any = None

    def holds(self, actual: Any) -> bool:
        """Does `actual` satisfy the comparison?

        Values of mismatched types (the number 3 and the text "3", true and 1) are
        never equal nor ordered, so only `ne` and `not_in` hold for them; a missing
        value likewise satisfies only `ne`, `not_in` and `exists: false`.
        """
        if self.op == "exists":
            return (actual is not None) == bool(self.value)
        if actual is None:
            return self.op in ("ne", "not_in")
        if self.op == "eq":
            return bool(_same(actual, self.value))
        if self.op == "ne":
            return not _same(actual, self.value)
        if self.op == "in":
            return any(_same(actual, v) for v in self.value)
        if self.op == "not_in":
            return not any(_same(actual, v) for v in self.value)
        if self.op == "contains":
            if isinstance(actual, str) and isinstance(self.value, str):
                return self.value.lower() in actual.lower()
            return isinstance(actual, list) and any(_same(a, self.value) for a in actual)
        if self.op == "between":
            low, high = self.value
            return in_order(low, actual) and in_order(actual, high)
        return _compare(self.op, actual, self.value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _comparable(a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    return numbers or (isinstance(a, str) and isinstance(b, str))


def in_order(low: Any, high: Any) -> bool:
    return _comparable(low, high) and low <= high


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if not _comparable(actual, expected):
        return False
    if op == "lt":
        return bool(actual < expected)
    if op == "lte":
        return bool(actual <= expected)
    if op == "gt":
        return bool(actual > expected)
    return bool(actual >= expected)


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (`properties.cart_id`), or None."""
    current: Any = data
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


@dataclass(frozen=True, slots=True)
class Filter:
    """A property filter of an event condition: `properties.on_sale: true`."""

    path: str
    comparison: Comparison

    def holds(self, payload: Mapping[str, Any]) -> bool:
        return self.comparison.holds(lookup(payload, self.path))


# --- the condition tree ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    """Every child holds (an empty `all` holds)."""

    children: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one child holds."""

    children: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The child does not hold."""

    child: Condition


@dataclass(frozen=True, slots=True)
class TraitCondition:
    """A declared trait (`traits.plan`) or computed trait (`computed.event_count`)."""

    source: Literal["traits", "computed"]
    key: str
    comparison: Comparison | None = None
    # relative dates: within_last / older_than a duration, anniversary_within the next D
    date_op: str | None = None
    span: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class EventCondition:
    """Did the person perform an event (matching filters) enough times, in a window?"""

    name: str
    where: tuple[Filter, ...] = ()
    at_least: int = 1
    at_most: int | None = None
    within: timedelta | None = None
    since: datetime | None = None
    until: datetime | None = None
    first_within: timedelta | None = None
    last_older_than: timedelta | None = None

    @property
    def fingerprint(self) -> str:
        """Events matching the same name, filters and dates share one fact list."""
        filters = [[f.path, f.comparison.op, f.comparison.value] for f in self.where]
        dates = [d.isoformat() if d else None for d in (self.since, self.until)]
        return orjson.dumps([self.name, filters, dates], default=str).decode()

    @property
    def horizon(self) -> timedelta | None:
        """How far back events matter (None: forever)."""
        if self.first_within or self.last_older_than or self.within is None:
            return None
        return self.within

    def matches(self, name: str | None, timestamp: datetime, payload: Mapping[str, Any]) -> bool:
        """Does one event count for this condition?"""
        if name != self.name:
            return False
        if self.since is not None and timestamp < self.since:
            return False
        if self.until is not None and timestamp > self.until:
            return False
        return all(f.holds(payload) for f in self.where)


@dataclass(frozen=True, slots=True)
class SegmentCondition:
    """Membership of another segment."""

    segment: str


@dataclass(frozen=True, slots=True)
class ReachableCondition:
    """An address and consent on at least one of these channels."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConsentCondition:
    """Consent granted on a channel, and to a topic if named."""

    channel: str
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class TriggerCondition:
    """A value of the event that started the journey (branches only)."""

    path: str
    comparison: Comparison


Condition = (
    All
    | AnyOf
    | Not
    | TraitCondition
    | EventCondition
    | SegmentCondition
    | ReachableCondition
    | ConsentCondition
    | TriggerCondition
)


@dataclass(frozen=True, slots=True)
class Segment:
    """A named condition; people enter and leave it as its answer changes."""

    id: str
    condition: Condition
    name: str = ""
    description: str = ""
    dependencies: Dependencies = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Asked for every event of every person: worked out once.
        object.__setattr__(self, "dependencies", dependencies(self.condition))


# --- facts and evaluation ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What evaluating a condition for one person may look at."""

    profile: Profile
    now: datetime
    tz: ZoneInfo
    events: Mapping[str, Sequence[datetime]] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    reachable: frozenset[str] = frozenset()
    granted: frozenset[str] = frozenset()  # "email", "email:promotions"
    trigger: Mapping[str, Any] = field(default_factory=dict)


def _computed_value(computed: Computed, key: str) -> Any:
    value = getattr(computed, key, None)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _trait_value(condition: TraitCondition, profile: Profile) -> Any:
    if condition.source == "computed":
        if condition.key.startswith("count."):
            return profile.computed.counts_by_event.get(condition.key[6:], 0)
        return _computed_value(profile.computed, condition.key)
    return lookup(profile.traits, condition.key)


def _date_holds(condition: TraitCondition, value: Any, facts: Facts) -> bool:
    if condition.date_op == "anniversary_within":
        born = timing.as_date(value)
        if born is None:
            return False
        today = facts.now.astimezone(facts.tz).date()
        upcoming = timing.anniversary_on_or_after(born, today)
        return (upcoming - today).days < max(condition.span.days, 1)
    moment = timing.as_instant(value)
    if moment is None:
        return False
    # Like an event window, `within_last` excludes its start: both answers flip at
    # exactly moment + span, the instant `next_change` names.
    if condition.date_op == "within_last":
        return facts.now - condition.span < moment <= facts.now
    return moment <= facts.now - condition.span


def _events_hold(condition: EventCondition, stamps: Sequence[datetime], now: datetime) -> bool:
    if condition.first_within is not None:
        return bool(stamps) and stamps[0] > now - condition.first_within
    if condition.last_older_than is not None:
        return bool(stamps) and stamps[-1] <= now - condition.last_older_than
    count = len(stamps)
    if condition.within is not None:
        start = now - condition.within
        count = sum(1 for s in stamps if start < s <= now)
    if count < condition.at_least:
        return False
    return condition.at_most is None or count <= condition.at_most


def evaluate(condition: Condition, facts: Facts) -> bool:
    """Does the condition hold for the person these facts describe?"""
    match condition:
        case All(children):
            return all(evaluate(c, facts) for c in children)
        case AnyOf(children):
            return any(evaluate(c, facts) for c in children)
        case Not(child):
            return not evaluate(child, facts)
        case TraitCondition():
            value = _trait_value(condition, facts.profile)
            if condition.date_op is not None:
                return _date_holds(condition, value, facts)
            return condition.comparison is not None and condition.comparison.holds(value)
        case EventCondition():
            stamps = facts.events.get(condition.fingerprint, ())
            return _events_hold(condition, stamps, facts.now)
        case SegmentCondition(segment):
            return segment in facts.segments
        case ReachableCondition(channels):
            return any(c in facts.reachable for c in channels)
        case ConsentCondition(channel, topic):
            return (f"{channel}:{topic}" if topic else channel) in facts.granted
        case TriggerCondition(path, comparison):
            return comparison.holds(lookup(facts.trigger, path))
    raise TypeError(f"not a condition: {condition!r}")


def next_change(condition: Condition, facts: Facts) -> datetime | None:
    """The earliest future instant at which time alone may change the answer.

    Conservative: the answer may still be the same then (the engine simply
    asks again), but it never changes earlier without a new event.
    """
    times = [t for t in _change_times(condition, facts) if t > facts.now]
    return min(times) if times else None


def _change_times(condition: Condition, facts: Facts) -> Iterator[datetime]:
    match condition:
        case All(children) | AnyOf(children):
            for child in children:
                yield from _change_times(child, facts)
        case Not(child):
            yield from _change_times(child, facts)
        case TraitCondition(date_op=str()):
            yield from _trait_change_times(condition, facts)
        case EventCondition():
            yield from _event_change_times(condition, facts)


def _event_change_times(condition: EventCondition, facts: Facts) -> Iterator[datetime]:
    stamps = facts.events.get(condition.fingerprint, ())
    if condition.first_within is not None and stamps:
        yield stamps[0] + condition.first_within
    elif condition.last_older_than is not None and stamps:
        yield stamps[-1] + condition.last_older_than
    elif condition.within is not None:
        start = facts.now - condition.within
        in_window = [s for s in stamps if s > start]
        if in_window:
            # The count in the window drops when its oldest event leaves it.
            yield min(in_window) + condition.within
        future = [s for s in stamps if s > facts.now]
        if future:
            yield min(future)


def _trait_change_times(condition: TraitCondition, facts: Facts) -> Iterator[datetime]:
    value = _trait_value(condition, facts.profile)
    if condition.date_op == "anniversary_within":
        born = timing.as_date(value)
        if born is None:
            return
        today = facts.now.astimezone(facts.tz).date()
        upcoming = timing.anniversary_on_or_after(born, today)
        days = max(condition.span.days, 1)
        enters = upcoming - timedelta(days=days - 1)
        leaves = upcoming + timedelta(days=1)
        for day in (enters, leaves):
            if day > today:
                yield timing.local_instant(day, time(0, 0), facts.tz)
        # After the anniversary passes, the next year's window opens.
        nxt = timing.anniversary_on_or_after(born, leaves)
        yield timing.local_instant(nxt - timedelta(days=days - 1), time(0, 0), facts.tz)
        return
    moment = timing.as_instant(value)
    if moment is None:
        return
    yield moment + condition.span
    if moment > facts.now:
        yield moment


# --- dependencies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What can change a condition's answer besides time."""

    events: frozenset[str] = frozenset()
    traits: bool = False
    computed: bool = False
    consent: bool = False
    segments: frozenset[str] = frozenset()
    event_conditions: tuple[EventCondition, ...] = ()
    addresses: bool = False  # a new email, phone or push token can make a channel reachable


def leaves(condition: Condition) -> Iterator[Condition]:
    """Every leaf of a condition tree."""
    match condition:
        case All(children) | AnyOf(children):
            for child in children:
                yield from leaves(child)
        case Not(child):
            yield from leaves(child)
        case _:
            yield condition


def dependencies(condition: Condition) -> Dependencies:
    """What a condition depends on, so only events that can affect it re-evaluate it."""
    found = list(leaves(condition))
    events = tuple(c for c in found if isinstance(c, EventCondition))
    return Dependencies(
        events=frozenset(e.name for e in events),
        traits=any(isinstance(c, TraitCondition) and c.source == "traits" for c in found),
        computed=any(isinstance(c, TraitCondition) and c.source == "computed" for c in found),
        consent=any(isinstance(c, ReachableCondition | ConsentCondition) for c in found),
        segments=frozenset(c.segment for c in found if isinstance(c, SegmentCondition)),
        event_conditions=events,
        addresses=any(isinstance(c, ReachableCondition) for c in found),
    )
