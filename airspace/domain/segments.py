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
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from airspace.domain import timing
from airspace.domain.consent import CHANNELS
from airspace.domain.problems import Problems, join, kind_of, shown
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
            return _order(low, actual) and _order(actual, high)
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


def _order(low: Any, high: Any) -> bool:
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


# --- parsing -----------------------------------------------------------------------------

_EVENT_FIELDS = {
    "event",
    "where",
    "at_least",
    "at_most",
    "within",
    "between",
    "first_within",
    "last_older_than",
}
_TRAIT_FIELDS = {"trait", "computed", *COMPARISONS, *DATE_OPERATORS}


@dataclass
class _Reading:
    """Reading one condition tree: where it may look, and how much of it is left to read.

    YAML aliases can make a short file a huge tree, or a tree that contains itself;
    both are refused instead of read for hours or until the stack runs out.
    """

    problems: Problems
    allow_trigger: bool
    left: int = MAX_CONDITION_NODES
    parents: set[int] = field(default_factory=set)  # ids of the mappings being read


def parse_condition(
    raw: Any, path: str, problems: Problems, *, allow_trigger: bool = False
) -> Condition:
    """A condition tree from YAML, with every problem recorded at its path."""
    return _condition(raw, path, _Reading(problems, allow_trigger), 0)


def _condition(raw: Any, path: str, reading: _Reading, depth: int) -> Condition:
    problems = reading.problems
    if not isinstance(raw, dict) or not raw:
        problems.error(path, f"expected a condition (a mapping), got {kind_of(raw)}")
        return All(())
    if id(raw) in reading.parents:
        problems.error(path, "a condition that contains itself (through a YAML alias)")
        return All(())
    if depth >= MAX_CONDITION_DEPTH:
        problems.error(path, f"conditions nested more than {MAX_CONDITION_DEPTH} levels deep")
        return All(())
    reading.left -= 1
    if reading.left < 0:
        if reading.left == -1:
            problems.error(path, f"a condition tree may hold at most {MAX_CONDITION_NODES} nodes")
        return All(())
    reading.parents.add(id(raw))
    try:
        return _node(raw, path, reading, depth)
    finally:
        reading.parents.discard(id(raw))


def _node(raw: dict[str, Any], path: str, reading: _Reading, depth: int) -> Condition:
    problems = reading.problems
    if "all" in raw or "any" in raw:
        word = "all" if "all" in raw else "any"
        problems.mapping(path, raw, {word})
        items = raw[word]
        if not isinstance(items, list) or not items:
            problems.error(join(path, word), "expected a non-empty list of conditions")
            return All(())
        children = tuple(
            _condition(item, join(join(path, word), i), reading, depth + 1)
            for i, item in enumerate(items)
        )
        return All(children) if word == "all" else AnyOf(children)
    if "not" in raw:
        problems.mapping(path, raw, {"not"})
        return Not(_condition(raw["not"], join(path, "not"), reading, depth + 1))
    if "event" in raw:
        return _parse_event(raw, path, problems)
    if "trait" in raw or "computed" in raw:
        return _parse_trait(raw, path, problems)
    if "segment" in raw:
        problems.mapping(path, raw, {"segment"})
        return SegmentCondition(_name(raw["segment"], join(path, "segment"), problems))
    if "reachable" in raw:
        problems.mapping(path, raw, {"reachable"})
        return ReachableCondition(_channels(raw["reachable"], join(path, "reachable"), problems))
    if "consent" in raw:
        problems.mapping(path, raw, {"consent", "topic"})
        channel = _channels(raw["consent"], join(path, "consent"), problems)
        topic = raw.get("topic")
        if topic is not None and not isinstance(topic, str):
            problems.error(join(path, "topic"), "expected a topic name")
            topic = None
        return ConsentCondition(channel[0] if channel else "email", topic)
    return _parse_trigger(raw, path, problems, allow_trigger=reading.allow_trigger)


def _parse_trigger(
    raw: dict[str, Any], path: str, problems: Problems, *, allow_trigger: bool
) -> Condition:
    """A trigger condition (in a branch), or the report of an unknown condition."""
    if "trigger" in raw and allow_trigger:
        problems.mapping(path, raw, {"trigger", *COMPARISONS})
        comparison = _parse_comparison(raw, path, problems) or Comparison("exists", True)
        # `trigger: properties.total` and `trigger: trigger.properties.total` say the same.
        name = _name(raw["trigger"], join(path, "trigger"), problems).removeprefix("trigger.")
        return TriggerCondition(name, comparison)
    if "trigger" in raw:
        problems.error(join(path, "trigger"), "only a journey's branch can look at its trigger")
        return All(())
    kinds = "all, any, not, event, trait, computed, segment, reachable, consent"
    if allow_trigger:
        kinds += ", trigger"
    problems.error(path, f"unknown condition; start it with one of: {kinds}")
    return All(())


def _name(value: Any, path: str, problems: Problems) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.error(path, f"expected a name, got {kind_of(value)}")
        return ""
    return value.strip()


def _channels(value: Any, path: str, problems: Problems) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    result: list[str] = []
    for i, item in enumerate(items):
        where = join(path, i) if isinstance(value, list) else path
        if item not in CHANNELS:
            problems.error(
                where, f"unknown channel {shown(item)}; expected one of {', '.join(CHANNELS)}"
            )
        else:
            result.append(item)
    if not items:
        problems.error(path, "expected at least one channel")
    return tuple(result)


_SCALARS = (str, int, float, bool, date, type(None))


def _plain(value: Any) -> Any:
    """A YAML scalar as trait values are compared: unquoted dates become ISO text."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _parse_comparison(raw: dict[str, Any], path: str, problems: Problems) -> Comparison | None:
    ops = [op for op in COMPARISONS if op in raw]
    if len(ops) > 1:
        problems.error(path, f"one comparison per condition, got {', '.join(ops)}")
    if not ops:
        return None
    op = ops[0]
    value = raw[op]
    where = join(path, op)
    if op in ("in", "not_in") and not (isinstance(value, list) and value):
        problems.error(where, "expected a non-empty list of values")
        return None
    if op == "between" and not (isinstance(value, list) and len(value) == 2):
        problems.error(where, "expected two values: [low, high]")
        return None
    if op == "exists" and not isinstance(value, bool):
        problems.error(where, "expected true or false")
        return None
    if isinstance(value, dict):
        problems.error(where, "expected a value or a list of values, not a mapping")
        return None
    if isinstance(value, list) and op not in ("in", "not_in", "between"):
        problems.error(where, "expected one value, not a list (use in for several)")
        return None
    if isinstance(value, list):
        if not all(isinstance(item, _SCALARS) for item in value):
            problems.error(where, "expected a list of plain values (text, numbers, dates)")
            return None
        comparison = Comparison(op, tuple(_plain(item) for item in value))
    else:
        comparison = Comparison(op, _plain(value))
    if op == "between" and not _order(*comparison.value):
        problems.error(where, "expected [low, high]: two numbers or two texts, low first")
        return None
    return comparison


def _parse_trait(raw: dict[str, Any], path: str, problems: Problems) -> TraitCondition:
    problems.mapping(path, raw, _TRAIT_FIELDS)
    source: Literal["traits", "computed"] = "computed" if "computed" in raw else "traits"
    word = "computed" if source == "computed" else "trait"
    key = _name(raw.get(word), join(path, word), problems)
    if source == "computed" and key not in COMPUTED_TRAITS and not key.startswith("count."):
        problems.error(
            join(path, "computed"),
            f"unknown computed trait {key!r}; expected one of {', '.join(COMPUTED_TRAITS)} "
            "or count.<event name>",
        )
    date_ops = [op for op in DATE_OPERATORS if op in raw]
    comparison = _parse_comparison(raw, path, problems)
    if date_ops:
        if comparison is not None or len(date_ops) > 1:
            problems.error(path, "one comparison per condition")
        span = problems.convert(join(path, date_ops[0]), raw[date_ops[0]], timing.parse_duration)
        return TraitCondition(source, key, None, date_ops[0], span or timedelta(0))
    if comparison is None:
        comparison = Comparison("exists", True)
    return TraitCondition(source, key, comparison)


def _parse_where(raw: Any, path: str, problems: Problems) -> tuple[Filter, ...]:
    if not isinstance(raw, dict):
        problems.error(path, f"expected a mapping of property filters, got {kind_of(raw)}")
        return ()
    filters: list[Filter] = []
    for key, value in raw.items():
        where = join(path, str(key))
        if not isinstance(key, str) or not key:
            problems.error(where, "expected a property path such as properties.cart_id")
            continue
        if isinstance(value, dict):
            problems.mapping(where, value, set(COMPARISONS))
            if not any(op in value for op in COMPARISONS):
                problems.error(where, f"expected one of {', '.join(COMPARISONS)}")
                continue
            comparison = _parse_comparison(value, where, problems)
            if comparison is None:
                continue
        elif isinstance(value, list):
            problems.error(where, "expected one value, or {in: [...]} for several")
            continue
        else:
            comparison = Comparison("eq", _plain(value))
        filters.append(Filter(key, comparison))
    return tuple(filters)


def _count(raw: dict[str, Any], key: str, path: str, problems: Problems) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EVENT_COUNT:
        problems.error(join(path, key), f"expected a whole number from 0 to {MAX_EVENT_COUNT}")
        return None
    return int(value)


def _instant(value: Any, *, end: bool = False) -> datetime:
    """A date or time of `between`; a bare date as the end means the whole of that day (UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    day = value if isinstance(value, date) else None
    if isinstance(value, str) and len(value.strip()) == 10:
        day = timing.as_date(value.strip())
    if day is not None:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
    moment = timing.as_instant(value)
    if moment is None:
        raise ValueError(f"expected a date or time such as 2026-11-01, got {shown(value)}")
    return moment


def _end_instant(value: Any) -> datetime:
    return _instant(value, end=True)


def _parse_event(raw: dict[str, Any], path: str, problems: Problems) -> EventCondition:
    problems.mapping(path, raw, _EVENT_FIELDS)
    name = _name(raw.get("event"), join(path, "event"), problems)
    where = _parse_where(raw["where"], join(path, "where"), problems) if "where" in raw else ()
    at_most = _count(raw, "at_most", path, problems)
    at_least = _count(raw, "at_least", path, problems)
    if at_least is None:
        at_least = 0 if at_most is not None else 1
    if at_most is not None and at_most < at_least:
        problems.error(join(path, "at_most"), f"is below at_least ({at_least})")
    spans: dict[str, timedelta | None] = {}
    for key in ("within", "first_within", "last_older_than"):
        spans[key] = (
            problems.convert(join(path, key), raw[key], timing.parse_duration)
            if key in raw
            else None
        )
    since = until = None
    if "between" in raw:
        value = raw["between"]
        if isinstance(value, list) and len(value) == 2:
            since = problems.convert(join(join(path, "between"), 0), value[0], _instant)
            until = problems.convert(join(join(path, "between"), 1), value[1], _end_instant)
            if since and until and since > until:
                problems.error(join(path, "between"), "the first date is after the second")
        else:
            problems.error(join(path, "between"), "expected two dates: [from, to]")
    if sum(1 for v in spans.values() if v is not None) > 1:
        problems.error(path, "use one of within, first_within, last_older_than")
    return EventCondition(
        name,
        where,
        at_least,
        at_most,
        spans["within"],
        since,
        until,
        spans["first_within"],
        spans["last_older_than"],
    )


def parse_segment(raw: Any, problems: Problems, path: str = "") -> Segment | None:
    """A segment from its YAML document (`segment: id` plus one condition)."""
    if not isinstance(raw, dict):
        problems.error(path or "(file)", f"expected a mapping, got {kind_of(raw)}")
        return None
    segment_id = _name(raw.get("segment"), join(path, "segment"), problems)
    rest = {k: v for k, v in raw.items() if k not in ("segment", "name", "description")}
    # The condition sits beside `segment:`, so its paths start at the document (`all[1].not`).
    condition = parse_condition(rest, path, problems) if rest else _missing(path, problems)
    name = problems.text(join(path, "name"), raw.get("name"), segment_id)
    description = problems.text(join(path, "description"), raw.get("description"), "")
    if not segment_id:
        return None
    return Segment(segment_id, condition, name, description)


def _missing(path: str, problems: Problems) -> Condition:
    problems.error(path, "a segment needs a condition: all, any, not, event, trait, …")
    return All(())
