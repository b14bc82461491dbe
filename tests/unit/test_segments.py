"""Segments: comparisons, relative dates, event conditions, when answers change, parsing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from airspace.domain.problems import Problems
from airspace.domain.profiles import Computed, Profile
from airspace.domain.segment_parser import parse_condition, parse_segment
from airspace.domain.segments import (
    All,
    AnyOf,
    Comparison,
    Condition,
    ConsentCondition,
    Dependencies,
    EventCondition,
    Facts,
    Filter,
    Not,
    ReachableCondition,
    SegmentCondition,
    TraitCondition,
    TriggerCondition,
    dependencies,
    evaluate,
    leaves,
    lookup,
    next_change,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
PARIS = ZoneInfo("Europe/Paris")
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
ORDER = "Order Completed"


def condition(raw: Any) -> Condition:
    """A condition parsed from YAML-like data; the test fails on any problem."""
    problems = Problems()
    parsed = parse_condition(raw, "", problems)
    assert [str(p) for p in problems.items] == []
    return parsed


def facts(
    now: datetime = T0,
    *,
    traits: Mapping[str, Any] | None = None,
    computed: Computed | None = None,
    events: Mapping[str, list[datetime]] | None = None,
    segments: frozenset[str] = frozenset(),
    reachable: frozenset[str] = frozenset(),
    granted: frozenset[str] = frozenset(),
    tz: ZoneInfo = PARIS,
) -> Facts:
    profile = Profile(
        "p1", T0 - timedelta(days=400), traits=dict(traits or {}), computed=computed or Computed()
    )
    return Facts(
        profile=profile,
        now=now,
        tz=tz,
        events=events or {},
        segments=segments,
        reachable=reachable,
        granted=granted,
    )


def stamps(event_condition: Condition, *times: datetime) -> dict[str, list[datetime]]:
    """Event facts for one event condition, as the engine loads them (sorted)."""
    assert isinstance(event_condition, EventCondition)
    return {event_condition.fingerprint: sorted(times)}


def answer(cond: Condition, now: datetime, **kwargs: Any) -> bool:
    return evaluate(cond, facts(now, **kwargs))


# --- comparisons ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", "pro", "pro", True),
        ("eq", "pro", "PRO", True),
        ("eq", "pro", "free", False),
        ("eq", 3, 3.0, True),
        ("eq", 3, "3", False),
        ("eq", True, True, True),
        ("eq", True, 1, False),
        ("eq", 1, True, False),
        ("eq", "x", None, False),
        ("eq", "x", ["x"], False),
        ("ne", "pro", "free", True),
        ("ne", "pro", "Pro", False),
        ("ne", "pro", None, True),
        ("ne", 3, "3", True),
        ("lt", 10, 9, True),
        ("lt", 10, 10, False),
        ("lt", 10, 9.99, True),
        ("lt", 10, "9", False),
        ("lt", 10, True, False),
        ("lt", 10, None, False),
        ("lt", "b", "a", True),
        ("lt", "2026-01-01", "2025-12-31", True),
        ("lte", 10, 10, True),
        ("lte", 10, 10.5, False),
        ("lte", 10, [1], False),
        ("gt", 10, 11, True),
        ("gt", 10, 10, False),
        ("gt", 10, "11", False),
        ("gt", 0, False, False),
        ("gte", 10, 10, True),
        ("gte", 10, 9, False),
        ("gte", "m", "z", True),
        ("between", (1, 10), 1, True),
        ("between", (1, 10), 10, True),
        ("between", (1, 10), 5.5, True),
        ("between", (1, 10), 0, False),
        ("between", (1, 10), 11, False),
        ("between", (1, 10), "5", False),
        ("between", (1, 10), None, False),
        ("between", ("a", "m"), "k", True),
        ("in", ("pro", "team"), "TEAM", True),
        ("in", ("pro",), "free", False),
        ("in", (1, 2), "1", False),
        ("in", (1, 2), 2.0, True),
        ("in", (1, 2), None, False),
        ("not_in", ("pro",), "free", True),
        ("not_in", ("pro",), "Pro", False),
        ("not_in", ("pro",), None, True),
        ("contains", "vip", "Gold VIP member", True),
        ("contains", "vip", "gold", False),
        ("contains", "vip", ["VIP", "x"], True),
        ("contains", "vip", ["x"], False),
        ("contains", 3, [1, 2, 3], True),
        ("contains", "1", [1], False),
        ("contains", "vip", None, False),
        ("contains", "vip", 42, False),
        ("exists", True, "x", True),
        ("exists", True, "", True),
        ("exists", True, None, False),
        ("exists", False, None, True),
        ("exists", False, 0, False),
    ],
)
def test_comparison(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert Comparison(op, value).holds(actual) is expected


@pytest.mark.parametrize(
    ("raw", "traits", "expected"),
    [
        ({"trait": "plan", "eq": "pro"}, {"plan": "Pro"}, True),
        ({"trait": "plan"}, {"plan": "pro"}, True),
        ({"trait": "plan"}, {}, False),
        ({"trait": "address.city", "in": ["Paris", "Lyon"]}, {"address": {"city": "lyon"}}, True),
        ({"trait": "address.city", "eq": "Paris"}, {"address": "Paris"}, False),
        ({"trait": "age", "between": [18, 30]}, {"age": 30}, True),
        ({"trait": "age", "gte": 18}, {"age": "21"}, False),
        # An unquoted YAML date is compared as the ISO text traits hold.
        ({"trait": "signed_up", "gte": date(2026, 1, 1)}, {"signed_up": "2026-03-01"}, True),
        ({"trait": "signed_up", "lt": date(2026, 1, 1)}, {"signed_up": "2026-03-01"}, False),
        ({"trait": "tags", "contains": "vip"}, {"tags": ["new", "VIP"]}, True),
    ],
)
def test_trait_conditions(raw: dict[str, Any], traits: dict[str, Any], expected: bool) -> None:
    assert answer(condition(raw), T0, traits=traits) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"computed": "event_count", "gte": 10}, True),
        ({"computed": "event_count", "gt": 12}, False),
        ({"computed": "count.Order Completed", "gte": 2}, True),
        ({"computed": "count.Signed Up", "eq": 0}, True),
        ({"computed": "locale", "eq": "fr-FR"}, True),
        ({"computed": "timezone", "exists": False}, True),
        ({"computed": "first_seen", "gte": date(2026, 3, 1)}, True),
        ({"computed": "first_seen", "lt": datetime(2026, 3, 1, 10, tzinfo=UTC)}, True),
        ({"computed": "last_seen", "older_than": "30d"}, True),
        ({"computed": "last_seen", "within_last": "30d"}, False),
    ],
)
def test_computed_traits(raw: dict[str, Any], expected: bool) -> None:
    computed = Computed(
        first_seen=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        last_seen=T0 - timedelta(days=45),
        event_count=12,
        counts_by_event={ORDER: 2},
        locale="fr-FR",
    )
    assert answer(condition(raw), T0, computed=computed) is expected


@pytest.mark.parametrize(
    ("data", "path", "expected"),
    [
        ({"properties": {"cart_id": "c1"}}, "properties.cart_id", "c1"),
        ({"properties": {"cart_id": "c1"}}, "properties", {"cart_id": "c1"}),
        ({"properties": {"cart_id": "c1"}}, "properties.missing", None),
        ({"properties": "flat"}, "properties.cart_id", None),
        ({}, "a.b.c", None),
    ],
)
def test_lookup(data: dict[str, Any], path: str, expected: Any) -> None:
    assert lookup(data, path) == expected


# --- relative dates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "moment", "expected"),
    [
        ("within_last", T0 - timedelta(days=30), False),  # the window excludes its start
        ("within_last", T0 - timedelta(days=30) + SECOND, True),
        ("within_last", T0, True),
        ("within_last", T0 + SECOND, False),  # not yet
        ("older_than", T0 - timedelta(days=30), True),
        ("older_than", T0 - timedelta(days=30) + SECOND, False),
        ("older_than", T0 - timedelta(days=400), True),
        ("older_than", T0 + DAY, False),
    ],
)
def test_within_last_and_older_than(op: str, moment: datetime, expected: bool) -> None:
    cond = condition({"trait": "last_order", op: "30d"})
    assert answer(cond, T0, traits={"last_order": moment.isoformat()}) is expected


@pytest.mark.parametrize("value", [None, "soon", 17, ["2026-01-01"]])
def test_relative_dates_of_something_not_a_date_never_hold(value: Any) -> None:
    for op in ("within_last", "older_than", "anniversary_within"):
        cond = condition({"trait": "when", op: "30d"})
        assert answer(cond, T0, traits={"when": value}) is False
        assert next_change(cond, facts(T0, traits={"when": value})) is None


@pytest.mark.parametrize("op", ["within_last", "older_than"])
def test_a_relative_date_flips_at_exactly_the_instant_next_change_names(op: str) -> None:
    cond = condition({"trait": "last_order", op: "30d"})
    traits = {"last_order": (T0 - timedelta(days=10)).isoformat()}
    flip = T0 + timedelta(days=20)
    assert next_change(cond, facts(T0, traits=traits)) == flip
    before = answer(cond, flip - SECOND, traits=traits)
    assert answer(cond, flip, traits=traits) is not before
    assert next_change(cond, facts(flip, traits=traits)) is None


def test_a_future_date_enters_within_last_when_it_arrives() -> None:
    cond = condition({"trait": "appointment", "within_last": "1d"})
    traits = {"appointment": (T0 + timedelta(hours=5)).isoformat()}
    assert next_change(cond, facts(T0, traits=traits)) == T0 + timedelta(hours=5)
    assert answer(cond, T0 + timedelta(hours=5) - SECOND, traits=traits) is False
    assert answer(cond, T0 + timedelta(hours=5), traits=traits) is True


@pytest.mark.parametrize(
    ("birthday", "now", "span", "tz", "expected"),
    [
        pytest.param("1990-11-05", T0, "7d", PARIS, True, id="in-three-days"),
        pytest.param("1990-11-08", T0, "7d", PARIS, True, id="in-six-days"),
        pytest.param("1990-11-09", T0, "7d", PARIS, False, id="in-seven-days"),
        pytest.param("1990-11-02", T0, "7d", PARIS, True, id="today"),
        pytest.param("1990-11-01", T0, "7d", PARIS, False, id="yesterday"),
        pytest.param("1990-11-02T23:00:00Z", T0, "1d", PARIS, True, id="datetime-trait"),
        pytest.param("1990-11-03", T0, "1d", PARIS, False, id="one-day-is-today-only"),
        pytest.param("1990-11-03", T0, "12h", PARIS, False, id="under-a-day-is-today"),
        # 23:30 UTC on 1 November is already 2 November in Paris.
        pytest.param("1990-11-02", T0 - timedelta(hours=9, minutes=30), "1d", PARIS, True),
        pytest.param("1990-11-02", T0 - timedelta(hours=9, minutes=30), "1d", UTC, False),
        pytest.param("1990-01-02", datetime(2026, 12, 30, 12, tzinfo=UTC), "7d", PARIS, True),
        pytest.param("2000-02-29", datetime(2027, 2, 27, 12, tzinfo=UTC), "2d", PARIS, True),
        pytest.param("2000-02-29", datetime(2027, 2, 28, 12, tzinfo=UTC), "1d", PARIS, True),
        pytest.param("2000-02-29", datetime(2028, 2, 27, 12, tzinfo=UTC), "2d", PARIS, False),
        pytest.param("2000-02-29", datetime(2028, 2, 27, 12, tzinfo=UTC), "3d", PARIS, True),
        pytest.param("2000-02-29", datetime(2028, 2, 28, 12, tzinfo=UTC), "1d", PARIS, False),
    ],
)
def test_anniversary_within(
    birthday: str, now: datetime, span: str, tz: Any, expected: bool
) -> None:
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo("UTC")
    cond = condition({"trait": "birthday", "anniversary_within": span})
    assert answer(cond, now, traits={"birthday": birthday}, tz=zone) is expected


def test_anniversary_window_opens_and_closes_at_local_midnight() -> None:
    cond = condition({"trait": "birthday", "anniversary_within": "7d"})
    traits = {"birthday": "1990-11-09"}
    opens = datetime(2026, 11, 2, 23, tzinfo=UTC)  # 3 November 00:00 in Paris
    assert next_change(cond, facts(T0, traits=traits)) == opens
    assert answer(cond, opens - SECOND, traits=traits) is False
    assert answer(cond, opens, traits=traits) is True
    closes = datetime(2026, 11, 9, 23, tzinfo=UTC)  # 10 November 00:00 in Paris
    assert next_change(cond, facts(opens, traits=traits)) == closes
    assert answer(cond, closes - SECOND, traits=traits) is True
    assert answer(cond, closes, traits=traits) is False
    # After it closes, next year's window opens on 3 November 2027 (CET, UTC+1).
    assert next_change(cond, facts(closes, traits=traits)) == datetime(2027, 11, 2, 23, tzinfo=UTC)


def test_anniversary_window_across_the_new_year() -> None:
    cond = condition({"trait": "birthday", "anniversary_within": "3d"})
    traits = {"birthday": "1990-01-01"}
    now = datetime(2026, 12, 28, 12, tzinfo=UTC)
    opens = datetime(2026, 12, 29, 23, tzinfo=UTC)  # 30 December, Paris midnight
    assert next_change(cond, facts(now, traits=traits)) == opens
    assert answer(cond, opens, traits=traits) is True
    assert next_change(cond, facts(opens, traits=traits)) == datetime(2027, 1, 1, 23, tzinfo=UTC)


# --- event conditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ago_days", "expected"),
    [
        ({"event": ORDER}, [], False),
        ({"event": ORDER}, [500], True),
        ({"event": ORDER, "at_least": 3, "within": "365d"}, [1, 100, 364], True),
        ({"event": ORDER, "at_least": 3, "within": "365d"}, [1, 100, 365], False),
        ({"event": ORDER, "at_least": 3, "within": "365d"}, [1, 100, 366], False),
        ({"event": ORDER, "at_most": 2}, [], True),
        ({"event": ORDER, "at_most": 2}, [1, 2], True),
        ({"event": ORDER, "at_most": 2}, [1, 2, 3], False),
        ({"event": ORDER, "at_most": 1, "within": "7d"}, [1, 8, 9], True),
        ({"event": ORDER, "at_least": 2, "at_most": 3}, [1], False),
        ({"event": ORDER, "at_least": 0}, [], True),
        ({"event": ORDER, "first_within": "30d"}, [29, 10], True),
        ({"event": ORDER, "first_within": "30d"}, [30, 10], False),
        ({"event": ORDER, "first_within": "30d"}, [], False),
        ({"event": ORDER, "last_older_than": "30d"}, [90, 30], True),
        ({"event": ORDER, "last_older_than": "30d"}, [90, 29], False),
        ({"event": ORDER, "last_older_than": "30d"}, [], False),
    ],
)
def test_event_counts_and_windows(raw: dict[str, Any], ago_days: list[int], expected: bool) -> None:
    cond = condition(raw)
    times = [T0 - timedelta(days=d) for d in ago_days]
    assert answer(cond, T0, events=stamps(cond, *times)) is expected


def test_the_window_excludes_its_start_and_includes_now() -> None:
    cond = condition({"event": ORDER, "within": "90d"})
    bought = T0
    events = stamps(cond, bought)
    assert answer(cond, bought, events=events) is True
    assert answer(cond, bought + timedelta(days=90) - SECOND, events=events) is True
    assert answer(cond, bought + timedelta(days=90), events=events) is False


def test_not_within_flips_at_exactly_ninety_days_after_the_purchase() -> None:
    lapsed = condition({"not": {"event": ORDER, "within": "90d"}})
    assert isinstance(lapsed, Not)
    events = stamps(lapsed.child, T0)
    flip = T0 + timedelta(days=90)
    assert answer(lapsed, T0 + DAY, events=events) is False
    assert next_change(lapsed, facts(T0 + DAY, events=events)) == flip
    assert answer(lapsed, flip - SECOND, events=events) is False
    assert answer(lapsed, flip, events=events) is True
    assert next_change(lapsed, facts(flip, events=events)) is None


def test_a_count_drops_when_its_oldest_event_leaves_the_window() -> None:
    cond = condition({"event": ORDER, "at_least": 3, "within": "365d"})
    times = [T0 - timedelta(days=d) for d in (300, 200, 10, 2000)]
    events = stamps(cond, *times)
    flip = T0 + timedelta(days=65)  # the one of 300 days ago turns 365 days old
    assert answer(cond, T0, events=events) is True
    assert next_change(cond, facts(T0, events=events)) == flip
    assert answer(cond, flip - SECOND, events=events) is True
    assert answer(cond, flip, events=events) is False


def test_an_event_stamped_in_the_future_counts_when_its_time_comes() -> None:
    cond = condition({"event": ORDER, "within": "7d"})
    later = T0 + timedelta(hours=2)
    events = stamps(cond, later)
    assert answer(cond, T0, events=events) is False
    assert next_change(cond, facts(T0, events=events)) == later
    assert answer(cond, later, events=events) is True


@pytest.mark.parametrize(
    ("raw", "ago_days", "flip_days"),
    [
        ({"event": ORDER, "first_within": "30d"}, [10, 5], 20),
        ({"event": ORDER, "last_older_than": "30d"}, [50, 10], 20),
        ({"event": ORDER, "at_most": 1, "within": "7d"}, [3, 1], 4),
    ],
)
def test_first_and_last_flip_at_next_change(
    raw: dict[str, Any], ago_days: list[int], flip_days: int
) -> None:
    cond = condition(raw)
    events = stamps(cond, *[T0 - timedelta(days=d) for d in ago_days])
    flip = T0 + timedelta(days=flip_days)
    assert next_change(cond, facts(T0, events=events)) == flip
    assert answer(cond, flip - SECOND, events=events) is answer(cond, T0, events=events)
    assert answer(cond, flip, events=events) is not answer(cond, T0, events=events)


@pytest.mark.parametrize(
    "raw",
    [
        {"event": ORDER},
        {"event": ORDER, "at_least": 2},
        {"event": ORDER, "between": ["2026-01-01", "2026-06-30"]},
        {"trait": "plan", "eq": "pro"},
        {"segment": "customers"},
        {"reachable": "email"},
        {"consent": "email"},
    ],
)
def test_time_alone_does_not_change_these(raw: dict[str, Any]) -> None:
    cond = condition(raw)
    events = stamps(cond, T0 - DAY) if isinstance(cond, EventCondition) else {}
    assert next_change(cond, facts(T0, events=events, traits={"plan": "pro"})) is None


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), False),
        (datetime(2026, 11, 1, 0, 0, tzinfo=UTC), True),
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), True),  # the last day counts whole
        (datetime(2026, 12, 1, 0, 0, tzinfo=UTC), False),
    ],
)
def test_between_two_dates_includes_both_days(when: datetime, expected: bool) -> None:
    cond = condition(yaml.safe_load(f"{{event: {ORDER}, between: [2026-11-01, 2026-11-30]}}"))
    assert isinstance(cond, EventCondition)
    assert cond.since == datetime(2026, 11, 1, tzinfo=UTC)
    assert cond.matches(ORDER, when, {}) is expected


def test_between_two_instants_is_exact() -> None:
    cond = condition(
        {"event": ORDER, "between": ["2026-11-01T10:00:00Z", "2026-11-01T12:00:00+01:00"]}
    )
    assert isinstance(cond, EventCondition)
    assert (cond.since, cond.until) == (
        datetime(2026, 11, 1, 10, tzinfo=UTC),
        datetime(2026, 11, 1, 11, tzinfo=UTC),
    )
    assert cond.matches(ORDER, datetime(2026, 11, 1, 11, tzinfo=UTC), {}) is True
    assert cond.matches(ORDER, datetime(2026, 11, 1, 11, 0, 1, tzinfo=UTC), {}) is False


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"total": 150, "category": "Shoes", "on_sale": True}, True),
        ({"total": 100, "category": "shoes", "on_sale": True}, False),
        ({"total": 150, "category": "hats", "on_sale": True}, False),
        ({"total": 150, "category": "shoes", "on_sale": "true"}, False),
        ({"total": "150", "category": "shoes", "on_sale": True}, False),
        ({"category": "shoes", "on_sale": True}, False),
    ],
)
def test_where_filters(properties: dict[str, Any], expected: bool) -> None:
    cond = condition(
        {
            "event": ORDER,
            "where": {
                "properties.total": {"gt": 100},
                "properties.category": "shoes",
                "properties.on_sale": True,
            },
        }
    )
    assert isinstance(cond, EventCondition)
    assert cond.where == (
        Filter("properties.total", Comparison("gt", 100)),
        Filter("properties.category", Comparison("eq", "shoes")),
        Filter("properties.on_sale", Comparison("eq", True)),
    )
    assert cond.matches(ORDER, T0, {"properties": properties}) is expected
    assert cond.matches("Order Refunded", T0, {"properties": properties}) is False


def test_fingerprint_and_horizon() -> None:
    plain = condition({"event": ORDER, "within": "7d"})
    longer = condition({"event": ORDER, "within": "30d", "at_least": 2})
    filtered = condition({"event": ORDER, "where": {"properties.total": {"gt": 100}}})
    first = condition({"event": ORDER, "first_within": "7d"})
    assert isinstance(plain, EventCondition)
    assert isinstance(longer, EventCondition)
    assert isinstance(filtered, EventCondition)
    assert isinstance(first, EventCondition)
    # Same name, filters and dates: one list of facts serves both windows.
    assert plain.fingerprint == longer.fingerprint
    assert plain.fingerprint != filtered.fingerprint
    assert (plain.horizon, longer.horizon, filtered.horizon, first.horizon) == (
        timedelta(days=7),
        timedelta(days=30),
        None,
        None,
    )


# --- trees, memberships, reachability, consent ----------------------------------------------


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (All(()), True),
        (AnyOf(()), False),
        (All((SegmentCondition("a"), SegmentCondition("b"))), True),
        (All((SegmentCondition("a"), SegmentCondition("c"))), False),
        (AnyOf((SegmentCondition("c"), SegmentCondition("b"))), True),
        (AnyOf((SegmentCondition("c"), SegmentCondition("d"))), False),
        (Not(SegmentCondition("c")), True),
        (Not(Not(SegmentCondition("a"))), True),
        (ReachableCondition(("email", "push")), True),
        (ReachableCondition(("sms",)), False),
        (ConsentCondition("email"), True),
        (ConsentCondition("email", "newsletter"), True),
        (ConsentCondition("email", "promotions"), False),
        (ConsentCondition("sms"), False),
        (TriggerCondition("properties.total", Comparison("gt", 1)), False),
    ],
)
def test_trees_memberships_reachability_and_consent(cond: Condition, expected: bool) -> None:
    known = facts(
        segments=frozenset({"a", "b"}),
        reachable=frozenset({"push"}),
        granted=frozenset({"email", "email:newsletter", "push"}),
    )
    assert evaluate(cond, known) is expected


def test_the_earliest_change_of_a_tree_is_the_earliest_of_its_leaves() -> None:
    recent = condition({"event": ORDER, "within": "30d"})
    cond = All(
        (
            SegmentCondition("customers"),
            AnyOf((recent, condition({"trait": "vip_since", "older_than": "10d"}))),
        )
    )
    events = stamps(recent, T0 - timedelta(days=25))
    traits = {"vip_since": (T0 - timedelta(days=8)).isoformat()}
    assert next_change(cond, facts(T0, events=events, traits=traits)) == T0 + timedelta(days=2)
    assert next_change(cond, facts(T0 + timedelta(days=3), events=events, traits=traits)) == (
        T0 + timedelta(days=5)
    )


def test_dependencies() -> None:
    cond = condition(
        {
            "all": [
                {"segment": "customers"},
                {"not": {"event": ORDER, "within": "90d"}},
                {"any": [{"trait": "plan", "eq": "pro"}, {"event": "Signed Up"}]},
                {"reachable": ["email", "push"]},
            ]
        }
    )
    found = dependencies(cond)
    events = tuple(leaf for leaf in leaves(cond) if isinstance(leaf, EventCondition))
    assert found == Dependencies(
        events=frozenset({ORDER, "Signed Up"}),
        traits=True,
        computed=False,
        consent=True,
        segments=frozenset({"customers"}),
        event_conditions=events,
        addresses=True,
    )
    assert [e.name for e in events] == [ORDER, "Signed Up"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"computed": "last_seen", "older_than": "30d"}, Dependencies(computed=True)),
        ({"consent": "email", "topic": "news"}, Dependencies(consent=True)),
        ({"trait": "plan"}, Dependencies(traits=True)),
        ({"segment": "x"}, Dependencies(segments=frozenset({"x"}))),
    ],
)
def test_dependencies_of_single_leaves(raw: dict[str, Any], expected: Dependencies) -> None:
    assert dependencies(condition(raw)) == expected


# --- parsing -------------------------------------------------------------------------------


def problems_of(raw: Any, *, allow_trigger: bool = False) -> list[str]:
    problems = Problems()
    parse_condition(raw, "", problems, allow_trigger=allow_trigger)
    return [str(p) for p in problems.items]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            all:
              - trait: plan
                eq: pro
              - not:
                  event: Order Completed
                  within: 90z
            """,
            ["all[1].not.within: expected a duration such as 30m, 1h, 7d or 2w; got '90z'"],
            id="nested-path",
        ),
        pytest.param(
            """
            any:
              - {trait: plan, lt: [1, 2]}
              - {event: "", at_least: -1}
              - {reachable: [email, fax]}
              - {consent: email, topic: 3}
              - {segment: ""}
              - {computed: shoe_size}
              - {wat: 1}
            """,
            [
                "any[0].lt: expected one value, not a list (use in for several)",
                "any[1].event: expected a name, got text ('')",
                "any[1].at_least: expected a whole number from 0 to 10000",
                "any[2].reachable[1]: unknown channel 'fax'; "
                "expected one of email, sms, push, webhook, onsite",
                "any[3].topic: expected a topic name",
                "any[4].segment: expected a name, got text ('')",
                "any[5].computed: unknown computed trait 'shoe_size'; expected one of "
                "first_seen, last_seen, event_count, timezone, locale or count.<event name>",
                "any[6]: unknown condition; start it with one of: "
                "all, any, not, event, trait, computed, segment, reachable, consent",
            ],
            id="every-problem-at-once",
        ),
        pytest.param(
            "{event: X, within: 7d, first_within: 7d}",
            ["use one of within, first_within, last_older_than"],
            id="two-windows",
        ),
        pytest.param(
            "{event: X, at_least: 3, at_most: 2}",
            ["at_most: is below at_least (3)"],
            id="at-most-below-at-least",
        ),
        pytest.param(
            "{event: X, at_least: true}",
            ["at_least: expected a whole number from 0 to 10000"],
            id="count-not-a-number",
        ),
        pytest.param(
            "{event: X, between: [2026-12-01, 2026-11-01]}",
            ["between: the first date is after the second"],
            id="between-backwards",
        ),
        pytest.param(
            "{event: X, between: [2026-12-01, soon]}",
            ["between[1]: expected a date or time such as 2026-11-01, got 'soon'"],
            id="between-not-a-date",
        ),
        pytest.param(
            "{event: X, between: 2026-12-01}",
            ["between: expected two dates: [from, to]"],
            id="between-one-date",
        ),
        pytest.param(
            "{event: X, where: {properties.size: {in: []}}}",
            ["where.properties.size.in: expected a non-empty list of values"],
            id="where-reported-once",
        ),
        pytest.param(
            "{event: X, where: {properties.size: {big: 1}}}",
            [
                "where.properties.size.big: unknown field; expected one of between, contains, "
                "eq, exists, gt, gte, in, lt, lte, ne, not_in",
                "where.properties.size: expected one of eq, ne, lt, lte, gt, gte, between, in, "
                "not_in, contains, exists",
            ],
            id="where-unknown-operator",
        ),
        pytest.param(
            "{event: X, where: {properties.size: [1, 2]}}",
            ["where.properties.size: expected one value, or {in: [...]} for several"],
            id="where-list",
        ),
        pytest.param(
            "{event: X, where: [properties.size]}",
            ["where: expected a mapping of property filters, got a list"],
            id="where-not-a-mapping",
        ),
        pytest.param(
            "{event: X, count: 3}",
            [
                "count: unknown field; expected one of at_least, at_most, between, event, "
                "first_within, last_older_than, where, within"
            ],
            id="unknown-event-field",
        ),
        pytest.param(
            "{trait: age, between: [30, 18]}",
            ["between: expected [low, high]: two numbers or two texts, low first"],
            id="between-values-backwards",
        ),
        pytest.param(
            "{trait: age, between: [1, two]}",
            ["between: expected [low, high]: two numbers or two texts, low first"],
            id="between-mixed-types",
        ),
        pytest.param(
            "{trait: age, in: []}", ["in: expected a non-empty list of values"], id="empty-in"
        ),
        pytest.param(
            "{trait: age, exists: yes please}", ["exists: expected true or false"], id="exists"
        ),
        pytest.param(
            "{trait: age, eq: {a: 1}}",
            ["eq: expected a value or a list of values, not a mapping"],
            id="eq-mapping",
        ),
        pytest.param(
            "{trait: age, eq: 1, gt: 0}", ["one comparison per condition, got eq, gt"], id="two-ops"
        ),
        pytest.param(
            "{trait: birthday, anniversary_within: 7d, eq: x}",
            ["one comparison per condition"],
            id="date-and-comparison",
        ),
        pytest.param(
            "{trait: birthday, anniversary_within: a week}",
            ["anniversary_within: expected a duration such as 30m, 1h, 7d or 2w; got 'a week'"],
            id="date-span",
        ),
        pytest.param("{trait: ''}", ["trait: expected a name, got text ('')"], id="trait-name"),
        pytest.param("{all: []}", ["all: expected a non-empty list of conditions"], id="empty-all"),
        pytest.param(
            "{any: {segment: a}}", ["any: expected a non-empty list of conditions"], id="any-map"
        ),
        pytest.param(
            "{not: 5}", ["not: expected a condition (a mapping), got a number (5)"], id="not-5"
        ),
        pytest.param(
            "{all: [{segment: a}], segment: b}",
            ["segment: unknown field; expected one of all"],
            id="extra-key",
        ),
        pytest.param(
            "{reachable: []}", ["reachable: expected at least one channel"], id="reachable-empty"
        ),
        pytest.param(
            "{trigger: properties.total, gt: 1}",
            ["trigger: only a journey's branch can look at its trigger"],
            id="trigger-outside-branch",
        ),
        pytest.param("[a]", ["expected a condition (a mapping), got a list"], id="not-a-mapping"),
    ],
)
def test_parse_problems_have_exact_paths(text: str, expected: list[str]) -> None:
    assert problems_of(yaml.safe_load(text)) == expected


def test_trigger_conditions_in_branches() -> None:
    problems = Problems()
    parsed = parse_condition(
        {"trigger": "trigger.properties.total", "gt": 100}, "if", problems, allow_trigger=True
    )
    assert problems.items == []
    assert parsed == TriggerCondition("properties.total", Comparison("gt", 100))
    bare = parse_condition({"trigger": "properties.coupon"}, "if", problems, allow_trigger=True)
    assert bare == TriggerCondition("properties.coupon", Comparison("exists", True))
    assert problems_of({"wat": 1}, allow_trigger=True) == [
        "unknown condition; start it with one of: "
        "all, any, not, event, trait, computed, segment, reachable, consent, trigger"
    ]


def test_parse_a_whole_tree() -> None:
    parsed = condition(
        yaml.safe_load(
            """
            all:
              - segment: customers
              - not: {event: Order Completed, within: 90d}
              - any:
                  - {trait: tier, eq: vip}
                  - {computed: count.Order Completed, gte: 3}
              - reachable: [email, push]
              - consent: email
                topic: newsletter
            """
        )
    )
    assert parsed == All(
        (
            SegmentCondition("customers"),
            Not(EventCondition(ORDER, within=timedelta(days=90))),
            AnyOf(
                (
                    TraitCondition("traits", "tier", Comparison("eq", "vip")),
                    TraitCondition("computed", "count.Order Completed", Comparison("gte", 3)),
                )
            ),
            ReachableCondition(("email", "push")),
            ConsentCondition("email", "newsletter"),
        )
    )


def test_parse_segment() -> None:
    problems = Problems()
    segment = parse_segment(
        {"segment": "vip", "description": "Declared VIPs.", "trait": "tier", "eq": "vip"}, problems
    )
    assert problems.items == []
    assert segment is not None
    assert (segment.id, segment.name, segment.description) == ("vip", "vip", "Declared VIPs.")
    assert segment.condition == TraitCondition("traits", "tier", Comparison("eq", "vip"))
    assert segment.dependencies == Dependencies(traits=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"segment": "x"}, ["a segment needs a condition: all, any, not, event, trait, …"]),
        ({"segment": "", "trait": "a"}, ["segment: expected a name, got text ('')"]),
        (
            {"segment": "x", "wat": 1},
            [
                "unknown condition; start it with one of: "
                "all, any, not, event, trait, computed, segment, reachable, consent"
            ],
        ),
        ("x", ["(file): expected a mapping, got text ('x')"]),
    ],
)
def test_parse_segment_problems(raw: Any, expected: list[str]) -> None:
    problems = Problems()
    parse_segment(raw, problems)
    assert [str(p) for p in problems.items] == expected


def test_a_condition_tree_has_a_size_and_depth_limit() -> None:
    wide = {"any": [{"segment": f"s{i}"} for i in range(1200)]}
    assert problems_of(wide) == ["any[999]: a condition tree may hold at most 1000 nodes"]
    deep: dict[str, Any] = {"segment": "x"}
    for _ in range(40):
        deep = {"not": deep}
    assert problems_of(deep) == [
        "not" + ".not" * 31 + ": conditions nested more than 32 levels deep"
    ]
    shared = {"trait": "tier", "eq": "vip"}
    reused = {"all": [shared, shared, {"not": shared}]}  # an alias used twice is fine
    assert problems_of(reused) == []
