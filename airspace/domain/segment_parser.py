"""Reading segment conditions from YAML, every problem recorded at its path.

The condition model and its evaluation are in `segments.py`; journeys' branch
conditions are read here too (with `trigger.` paths allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from airspace.domain import timing
from airspace.domain.consent import CHANNELS
from airspace.domain.problems import Problems, join, kind_of, shown
from airspace.domain.segments import (
    COMPARISONS,
    COMPUTED_TRAITS,
    DATE_OPERATORS,
    MAX_CONDITION_DEPTH,
    MAX_CONDITION_NODES,
    MAX_EVENT_COUNT,
    All,
    AnyOf,
    Comparison,
    Condition,
    ConsentCondition,
    EventCondition,
    Filter,
    Not,
    ReachableCondition,
    Segment,
    SegmentCondition,
    TraitCondition,
    TriggerCondition,
    in_order,
)

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
    if op == "between" and not in_order(*comparison.value):
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


def parse_where(raw: Any, path: str, problems: Problems) -> tuple[Filter, ...]:
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
    where = parse_where(raw["where"], join(path, "where"), problems) if "where" in raw else ()
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
