"""The journey state machine: steps, waits, timers, events, exits, goals, entry rules, holdouts."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from airspace.domain import journeys as flow
from airspace.domain.journey_parser import parse_journey
from airspace.domain.journeys import (
    END,
    CallWebhook,
    Enrollment,
    EventMatch,
    Happening,
    Journey,
    Message,
    Outcome,
    Propose,
    StartJourney,
    Step,
    UpdateTraits,
    Withdraw,
)
from airspace.domain.problems import Problems
from airspace.domain.profiles import Profile
from airspace.domain.segments import Comparison, Facts, Filter

T0 = datetime(2026, 11, 6, 17, 0, tzinfo=UTC)  # Friday, 18:00 in Paris
PARIS = ZoneInfo("Europe/Paris")
CART = {"event": "Cart Abandoned", "properties": {"cart_id": "c1", "total": 120}}


def journey(text: str, **overrides: Any) -> Journey:
    """A journey from YAML; the test fails on any error."""
    problems = Problems()
    parsed = parse_journey(yaml.safe_load(text), problems)
    assert [str(p) for p in problems.errors] == []
    assert parsed is not None
    return replace(parsed, **overrides)


def facts(
    now: datetime = T0,
    traits: dict[str, Any] | None = None,
    segments: frozenset[str] = frozenset(),
) -> Facts:
    profile = Profile("p1", T0 - timedelta(days=30), traits=traits or {})
    return Facts(profile=profile, now=now, tz=PARIS, segments=segments)


def enroll(j: Journey, trigger: dict[str, Any] | None = None, **kwargs: Any) -> Outcome:
    return flow.enroll(
        j, "e1", "p1", CART if trigger is None else trigger, "treated", facts(**kwargs)
    )


def happening(name: str, at: datetime, **properties: Any) -> Happening:
    return Happening(name, at, {"event": name, "properties": properties})


# --- steps ---------------------------------------------------------------------------------

EVERY_STEP = """
journey: every-step
entry: {event: Cart Abandoned}
steps:
  - id: remind
    message: {channels: [push, email], content: cart-reminder, expires: 12h, value: 5}
  - id: tag
    update: {traits: {reminded: true}}
  - id: notify
    webhook: {url: "https://crm.example.com/hook", body: {kind: cart}}
  - id: hand-over
    start_journey: welcome
  - id: pause
    wait: 1d
  - id: stop
    exit: true
  - id: never
    message: {channels: [email], content: unreachable}
"""


def test_steps_run_until_a_wait_and_each_yields_its_effect() -> None:
    j = journey(EVERY_STEP, topic="promotions")
    outcome = enroll(j)
    message = j.step("remind").message
    assert message is not None
    assert outcome.effects == (
        Propose("e1", "every-step", "remind", message, "treated", T0 + timedelta(hours=12), CART),
        UpdateTraits({"reminded": True}),
        CallWebhook("e1", "notify", "https://crm.example.com/hook", "POST", {"kind": "cart"}),
        StartJourney("welcome", CART),
    )
    assert outcome.enrollment == Enrollment(
        id="e1",
        journey_id="every-step",
        version=1,
        profile_id="p1",
        step_id="pause",
        entered_at=T0,
        wake_at=T0 + timedelta(days=1),
        context=CART,
    )


def test_an_exit_step_ends_the_enrollment() -> None:
    j = journey(EVERY_STEP)
    waiting = enroll(j).enrollment
    outcome = flow.on_timer(j, waiting, T0 + timedelta(days=1), facts(T0 + timedelta(days=1)))
    assert outcome is not None
    assert outcome.effects == ()
    assert outcome.enrollment == replace(
        waiting,
        status="exited",
        step_id=END,
        wake_at=None,
        ended_at=T0 + timedelta(days=1),
        exit_reason="exit step",
    )


def test_the_last_step_completes_the_enrollment() -> None:
    j = journey(
        """
        journey: short
        entry: {event: Cart Abandoned}
        steps:
          - message: {channels: [email], content: hello}
        """
    )
    outcome = enroll(j)
    assert [type(e) for e in outcome.effects] == [Propose]
    assert (outcome.enrollment.status, outcome.enrollment.step_id) == ("completed", END)
    assert (outcome.enrollment.ended_at, outcome.enrollment.exit_reason) == (T0, None)


def test_a_journey_without_steps_completes_at_once() -> None:
    j = Journey("empty", (), flow.Entry("event"))
    assert enroll(j).enrollment.status == "completed"


def test_held_out_people_still_propose_in_their_layer() -> None:
    j = journey(EVERY_STEP)
    outcome = flow.enroll(j, "e9", "p9", CART, "journey_holdout", facts())
    proposal = outcome.effects[0]
    assert isinstance(proposal, Propose)
    assert (proposal.layer, outcome.enrollment.layer) == ("journey_holdout", "journey_holdout")


def test_a_loop_it_could_not_see_is_stopped() -> None:
    j = Journey(
        "loop",
        (
            Step("a", "update", next="b", traits={"x": 1}),
            Step("b", "update", next="a", traits={"x": 2}),
        ),
        flow.Entry("event"),
    )
    outcome = enroll(j)
    assert len(outcome.effects) == flow.MAX_STEPS_PER_ADVANCE
    assert outcome.enrollment.status == "exited"
    assert outcome.enrollment.exit_reason == "stopped after 500 steps without a wait"


# --- waits and timers ----------------------------------------------------------------------

WAITS = """
journey: waits
entry: {event: Cart Abandoned}
steps:
  - id: first
    message: {channels: [email], content: one}
  - id: two-days
    wait: 2d
  - id: morning
    wait: {until: "10:00", weekdays: [mon, tue, wed, thu, fri]}
  - id: second
    message: {channels: [email], content: two}
"""


def test_wait_then_wait_until_a_weekday_morning() -> None:
    j = journey(WAITS)
    outcome = enroll(j)
    assert [p.step_id for p in outcome.effects if isinstance(p, Propose)] == ["first"]
    assert (outcome.enrollment.step_id, outcome.enrollment.wake_at) == (
        "two-days",
        T0 + timedelta(days=2),
    )
    # Sunday 18:00 Paris: the next weekday 10:00 is Monday 9 November, 09:00 UTC.
    sunday = T0 + timedelta(days=2)
    woke = flow.on_timer(j, outcome.enrollment, sunday, facts(sunday))
    assert woke is not None
    assert woke.effects == ()
    monday = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
    assert (woke.enrollment.step_id, woke.enrollment.wake_at) == ("morning", monday)
    done = flow.on_timer(j, woke.enrollment, monday, facts(monday))
    assert done is not None
    assert [p.step_id for p in done.effects if isinstance(p, Propose)] == ["second"]
    assert done.enrollment.status == "completed"


def test_wait_until_across_the_spring_forward_night() -> None:
    j = journey(
        """
        journey: night
        entry: {event: Cart Abandoned}
        steps:
          - wait: {until: "02:30"}
          - message: {channels: [email], content: x}
        """
    )
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    waiting = enroll(j, now=now).enrollment
    # 02:30 does not exist in Paris on 29 March 2026: the first instant after the gap.
    assert waiting.wake_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("due", "status"),
    [
        pytest.param(T0 + timedelta(days=2), "active", id="due"),
        pytest.param(T0 + timedelta(days=1), None, id="stale-earlier"),
        pytest.param(T0 + timedelta(days=3), None, id="stale-later"),
    ],
)
def test_on_timer_ignores_stale_timers(due: datetime, status: str | None) -> None:
    j = journey(WAITS)
    waiting = enroll(j).enrollment
    outcome = flow.on_timer(j, waiting, due, facts(due))
    assert (outcome.enrollment.status if outcome else None) == status


def test_a_timer_delivered_twice_advances_once() -> None:
    j = journey(WAITS)
    waiting = enroll(j).enrollment
    due = T0 + timedelta(days=2)
    once = flow.on_timer(j, waiting, due, facts(due))
    assert once is not None
    assert flow.on_timer(j, once.enrollment, due, facts(due)) is None


def test_on_timer_of_an_ended_enrollment_is_ignored() -> None:
    j = journey(WAITS)
    waiting = enroll(j).enrollment
    exited = flow.exit_now(waiting, "test", T0).enrollment
    assert flow.on_timer(j, replace(exited, wake_at=waiting.wake_at), T0, facts()) is None


# --- wait_for ------------------------------------------------------------------------------

WAIT_FOR = """
journey: cart
entry: {event: Cart Abandoned, key: properties.cart_id}
steps:
  - id: wait-for-purchase
    wait_for:
      event: Order Completed
      match: {properties.cart_id: trigger.properties.cart_id}
      timeout: 1h
    on_timeout: reminder
    next: thanks
  - id: reminder
    message: {channels: [email], content: cart-reminder}
    next: end
  - id: thanks
    message: {channels: [email], content: thanks}
"""


def test_wait_for_an_event_of_the_same_cart() -> None:
    j = journey(WAIT_FOR)
    waiting = enroll(j).enrollment
    assert (waiting.step_id, waiting.wake_at) == ("wait-for-purchase", T0 + timedelta(hours=1))
    later = T0 + timedelta(minutes=20)
    other = flow.on_event(j, waiting, happening("Order Completed", later, cart_id="c2"), facts())
    assert other is None
    outcome = flow.on_event(
        j, waiting, happening("Order Completed", later, cart_id="c1"), facts(later)
    )
    assert outcome is not None
    assert [p.step_id for p in outcome.effects if isinstance(p, Propose)] == ["thanks"]
    assert outcome.enrollment.status == "completed"


def test_wait_for_times_out_to_on_timeout() -> None:
    j = journey(WAIT_FOR)
    waiting = enroll(j).enrollment
    due = T0 + timedelta(hours=1)
    outcome = flow.on_timer(j, waiting, due, facts(due))
    assert outcome is not None
    assert [p.step_id for p in outcome.effects if isinstance(p, Propose)] == ["reminder"]
    # After the timeout the purchase no longer moves it (it has ended).
    assert (
        flow.on_event(
            j, outcome.enrollment, happening("Order Completed", due, cart_id="c1"), facts(due)
        )
        is None
    )


@pytest.mark.parametrize(
    ("match", "properties", "expected"),
    [
        ((("properties.cart_id", "trigger.properties.cart_id"),), {"cart_id": "C1"}, True),
        ((("properties.cart_id", "trigger.properties.cart_id"),), {"cart_id": "c2"}, False),
        ((("properties.cart_id", "trigger.properties.cart_id"),), {}, False),
        ((("properties.cart_id", "trigger.properties.missing"),), {"cart_id": "c1"}, False),
        ((("properties.items", 3),), {"items": 3}, True),
        ((("properties.items", 3),), {"items": "3"}, False),
        ((("properties.channel", "web"),), {"channel": "web"}, True),
        ((("properties.total", "trigger.properties.total"),), {"total": 120.0}, True),
    ],
)
def test_event_match_against_the_trigger(
    match: tuple[tuple[str, Any], ...], properties: dict[str, Any], expected: bool
) -> None:
    rule = EventMatch("Order Completed", (), match)
    assert rule.matches("Order Completed", {"properties": properties}, CART) is expected
    assert rule.matches("Order Refunded", {"properties": properties}, CART) is False


def test_event_match_where_filters() -> None:
    rule = EventMatch("Order Completed", (Filter("properties.total", Comparison("gte", 50)),))
    assert rule.matches("Order Completed", {"properties": {"total": 50}}, {}) is True
    assert rule.matches("Order Completed", {"properties": {"total": 49}}, {}) is False


# --- branches and splits -------------------------------------------------------------------

BRANCH = """
journey: branchy
entry: {event: Cart Abandoned}
steps:
  - id: choose
    branch:
      - if: {segment: high-value}
        next: vip
      - if: {all: [{trait: plan, eq: pro}, {trigger: properties.total, gt: 100}]}
        next: big-cart
      - if: {trigger: trigger.properties.coupon}
        next: coupon
      - else: default
  - id: vip
    message: {channels: [email], content: vip}
    next: end
  - id: big-cart
    message: {channels: [email], content: big-cart}
    next: end
  - id: coupon
    message: {channels: [email], content: coupon}
    next: end
  - id: default
    message: {channels: [email], content: default}
"""


@pytest.mark.parametrize(
    ("segments", "traits", "properties", "chosen"),
    [
        ({"high-value"}, {"plan": "pro"}, {"total": 500}, "vip"),
        (set(), {"plan": "pro"}, {"total": 500}, "big-cart"),
        (set(), {"plan": "pro"}, {"total": 100}, "default"),
        (set(), {"plan": "free"}, {"total": 500}, "default"),
        (set(), {"plan": "free"}, {"total": 5, "coupon": "X1"}, "coupon"),
        (set(), {}, {}, "default"),
    ],
)
def test_branch_on_segments_traits_and_the_trigger(
    segments: set[str], traits: dict[str, Any], properties: dict[str, Any], chosen: str
) -> None:
    j = journey(BRANCH)
    trigger = {"event": "Cart Abandoned", "properties": properties}
    outcome = flow.enroll(j, "e1", "p1", trigger, "treated", facts(T0, traits, frozenset(segments)))
    assert [p.step_id for p in outcome.effects if isinstance(p, Propose)] == [chosen]


SPLIT = """
journey: ab
entry: {event: Cart Abandoned}
steps:
  - id: split
    split:
      - {weight: 25, next: a}
      - {weight: 75, next: b}
  - id: a
    message: {channels: [email], content: a}
    next: end
  - id: b
    message: {channels: [email], content: b}
"""


def chosen_path(j: Journey, profile_id: str) -> str:
    outcome = flow.enroll(j, f"e-{profile_id}", profile_id, CART, "treated", facts())
    [proposal] = [p for p in outcome.effects if isinstance(p, Propose)]
    return proposal.step_id


def test_a_split_is_sticky_and_follows_its_weights() -> None:
    j = journey(SPLIT)
    paths = Counter(chosen_path(j, f"person-{i}") for i in range(2000))
    assert abs(paths["a"] / 2000 - 0.25) < 0.03
    assert paths["a"] + paths["b"] == 2000
    for i in range(50):
        assert chosen_path(j, f"person-{i}") == chosen_path(j, f"person-{i}")


# --- exits ---------------------------------------------------------------------------------

EXITS = """
journey: cart
entry: {event: Cart Abandoned, key: properties.cart_id}
exit_when:
  - event: Order Completed
    match: {properties.cart_id: trigger.properties.cart_id}
  - segment: reachable-people
steps:
  - id: remind
    message: {channels: [email], content: cart-reminder}
  - id: wait-a-day
    wait: 1d
  - message: {channels: [email], content: cart-reminder-2}
"""


def test_an_exit_event_mid_wait_ends_it_at_once_and_withdraws() -> None:
    j = journey(EXITS)
    waiting = enroll(j).enrollment
    at = T0 + timedelta(hours=3)
    outcome = flow.on_event(j, waiting, happening("Order Completed", at, cart_id="c1"), facts(at))
    assert outcome == Outcome(
        replace(
            waiting,
            status="exited",
            step_id=END,
            wake_at=None,
            ended_at=at,
            exit_reason="exit event Order Completed",
        ),
        (Withdraw("e1", "exit event Order Completed"),),
    )
    # The old timer then finds nothing to do.
    assert flow.on_timer(j, outcome.enrollment, T0 + timedelta(days=1), facts()) is None


def test_an_exit_event_of_another_cart_does_nothing() -> None:
    j = journey(EXITS)
    waiting = enroll(j).enrollment
    event = happening("Order Completed", T0, cart_id="c2")
    assert flow.on_event(j, waiting, event, facts()) is None


def test_leaving_a_segment_named_in_exit_when() -> None:
    j = journey(EXITS)
    waiting = enroll(j).enrollment
    assert flow.on_segment_exit(j, waiting, "other-segment", T0) is None
    outcome = flow.on_segment_exit(j, waiting, "reachable-people", T0)
    assert outcome is not None
    assert outcome.enrollment.exit_reason == "left segment reachable-people"
    assert outcome.effects == (Withdraw("e1", "left segment reachable-people"),)
    assert flow.on_segment_exit(j, outcome.enrollment, "reachable-people", T0) is None


# --- goals ---------------------------------------------------------------------------------

GOAL = """
journey: goal
entry: {event: Cart Abandoned}
goal:
  event: Order Completed
  within: 7d
  value: properties.revenue
steps:
  - wait: 30d
"""


@pytest.mark.parametrize(
    ("after", "properties", "converted", "value"),
    [
        pytest.param(timedelta(days=1), {"revenue": 80.5}, True, 80.5, id="number"),
        pytest.param(timedelta(days=1), {"revenue": "19.90"}, True, 19.9, id="numeric-text"),
        pytest.param(timedelta(days=1), {"revenue": "free"}, True, 0.0, id="not-a-number"),
        pytest.param(timedelta(days=1), {"revenue": True}, True, 0.0, id="boolean"),
        pytest.param(timedelta(days=1), {}, True, 0.0, id="missing"),
        pytest.param(timedelta(days=7), {"revenue": 10}, True, 10.0, id="last-instant"),
        pytest.param(timedelta(days=7, seconds=1), {"revenue": 10}, False, None, id="too-late"),
        pytest.param(-timedelta(seconds=1), {"revenue": 10}, False, None, id="before-entry"),
    ],
)
def test_goal_conversion_within_the_window(
    after: timedelta, properties: dict[str, Any], converted: bool, value: float | None
) -> None:
    j = journey(GOAL)
    waiting = enroll(j).enrollment
    event = Happening("Order Completed", T0 + after, {"properties": properties})
    outcome = flow.on_event(j, waiting, event, facts(T0 + after))
    if not converted:
        assert outcome is None
        return
    assert outcome is not None
    assert outcome.effects == ()
    assert outcome.enrollment == replace(waiting, converted_at=T0 + after, conversion_value=value)


def test_a_goal_converts_once_even_after_the_journey_ended() -> None:
    j = journey(GOAL)
    ended = flow.exit_now(enroll(j).enrollment, "test", T0).enrollment
    first = flow.on_event(
        j, ended, Happening("Order Completed", T0 + timedelta(days=2), {}), facts()
    )
    assert first is not None
    assert (first.enrollment.status, first.enrollment.converted_at) == (
        "exited",
        T0 + timedelta(days=2),
    )
    again = Happening("Order Completed", T0 + timedelta(days=3), {"properties": {"revenue": 9}})
    assert flow.on_event(j, first.enrollment, again, facts()) is None


def test_a_goal_with_a_fixed_value_and_an_exit_on_the_same_event() -> None:
    j = journey(
        """
        journey: both
        entry: {event: Signed Up}
        goal: {event: Order Completed, within: 14d, value: 25}
        exit_when:
          - event: Order Completed
        steps:
          - wait: 2d
        """
    )
    waiting = enroll(j).enrollment
    outcome = flow.on_event(j, waiting, Happening("Order Completed", T0, {}), facts())
    assert outcome is not None
    assert (outcome.enrollment.status, outcome.enrollment.converted_at) == ("exited", T0)
    assert outcome.enrollment.conversion_value == 25.0


# --- entry rules ---------------------------------------------------------------------------


def past(
    key: str = "", entered: datetime = T0 - timedelta(days=10), active: bool = False
) -> Enrollment:
    return Enrollment(
        id=f"old-{key}-{entered.isoformat()}",
        journey_id="j",
        version=1,
        profile_id="p1",
        step_id="w" if active else END,
        entered_at=entered,
        key=key,
        status="active" if active else "completed",
    )


RULES = Journey("j", (), flow.Entry("event"))


@pytest.mark.parametrize(
    ("rules", "previous", "key", "total", "reason"),
    [
        pytest.param({}, [], "", 0, None, id="first-time"),
        pytest.param({}, [past()], "", 0, "re-entry is never allowed", id="never"),
        pytest.param({"re_entry": "always"}, [past()], "", 0, None, id="always"),
        pytest.param(
            {"re_entry": "always"},
            [past(active=True)],
            "",
            0,
            "already in it 1 time(s) at once",
            id="always-but-active",
        ),
        pytest.param(
            {"re_entry": "after", "cooldown": timedelta(days=7)},
            [past(entered=T0 - timedelta(days=6))],
            "",
            0,
            "re-entry is allowed from 2026-11-07T17:00:00+00:00",
            id="cooling-down",
        ),
        pytest.param(
            {"re_entry": "after", "cooldown": timedelta(days=7)},
            [past(entered=T0 - timedelta(days=7))],
            "",
            0,
            None,
            id="cooled-down-exactly",
        ),
        pytest.param(
            {"re_entry": "after", "cooldown": timedelta(days=7)},
            [past(entered=T0 - timedelta(days=30)), past(entered=T0 - timedelta(days=1))],
            "",
            0,
            "re-entry is allowed from 2026-11-12T17:00:00+00:00",
            id="from-the-latest-entry",
        ),
        pytest.param({}, [past("c1")], "c2", 0, None, id="another-cart"),
        pytest.param({}, [past("c1")], "c1", 0, "re-entry is never allowed", id="same-cart"),
        pytest.param(
            {"max_concurrent": 3},
            [past("c1", active=True)],
            "c1",
            0,
            "already in it for this key",
            id="same-cart-active",
        ),
        pytest.param(
            {"max_concurrent": 3}, [past("c1", active=True)], "c2", 0, None, id="two-carts"
        ),
        pytest.param(
            {"max_concurrent": 2},
            [past("c1", active=True), past("c2", active=True)],
            "c3",
            0,
            "already in it 2 time(s) at once",
            id="max-concurrent",
        ),
        pytest.param(
            {"entry_cap": 100}, [], "", 100, "the journey's entry cap of 100 is reached", id="cap"
        ),
        pytest.param({"entry_cap": 100}, [], "", 99, None, id="under-cap"),
    ],
)
def test_refusal(
    rules: dict[str, Any], previous: list[Enrollment], key: str, total: int, reason: str | None
) -> None:
    assert flow.refusal(replace(RULES, **rules), previous, key, T0, total) == reason


@pytest.mark.parametrize(
    ("key", "trigger", "expected"),
    [
        (None, CART, ""),
        ("properties.cart_id", CART, "c1"),
        ("properties.total", CART, "120"),
        ("properties.missing", CART, ""),
        ("properties.cart_id", {"properties": {"cart_id": "x" * 300}}, "x" * 200),
    ],
)
def test_entry_key(key: str | None, trigger: dict[str, Any], expected: str) -> None:
    j = replace(RULES, entry=flow.Entry("event", key=key))
    assert flow.entry_key(j, trigger) == expected


def test_an_enrollment_remembers_its_key_and_trigger() -> None:
    j = journey(WAIT_FOR)
    waiting = enroll(j).enrollment
    assert (waiting.key, waiting.context) == ("c1", CART)


# --- holdouts ------------------------------------------------------------------------------


def test_holdout_layers_are_sticky_and_close_to_their_shares() -> None:
    j = replace(RULES, holdout=0.10)
    people = [f"profile-{i}" for i in range(20_000)]
    layers = [flow.assign_layer(p, j, 0.05) for p in people]
    counts = Counter(layers)
    assert abs(counts["global_control"] / 20_000 - 0.05) < 0.006
    # The journey holdout is a share of those not in the global control group.
    assert abs(counts["journey_holdout"] / (20_000 - counts["global_control"]) - 0.10) < 0.008
    assert [flow.assign_layer(p, j, 0.05) for p in people[:200]] == layers[:200]
    # The global control group is the same people in every journey.
    other = replace(RULES, id="other", holdout=0.5)
    assert {p for p, layer in zip(people, layers, strict=True) if layer == "global_control"} == {
        p for p in people if flow.assign_layer(p, other, 0.05) == "global_control"
    }


@pytest.mark.parametrize(
    ("holdout", "global_control", "transactional", "expected"),
    [
        (0.0, 0.0, False, {"treated"}),
        (1.0, 0.0, False, {"journey_holdout"}),
        (0.0, 1.0, False, {"global_control"}),
        (1.0, 1.0, True, {"treated"}),
    ],
)
def test_holdout_extremes(
    holdout: float, global_control: float, transactional: bool, expected: set[str]
) -> None:
    j = replace(RULES, holdout=holdout, transactional=transactional)
    assert {flow.assign_layer(f"p{i}", j, global_control) for i in range(100)} == expected


def test_the_salt_changes_who_is_held_out() -> None:
    j = replace(RULES, holdout=0.5)
    people = [f"p{i}" for i in range(200)]
    first = [flow.assign_layer(p, j, 0.0) for p in people]
    salted = [flow.assign_layer(p, j, 0.0, salt="other") for p in people]
    assert first != salted


def test_bucket_is_in_zero_one_and_deterministic() -> None:
    values = [flow.bucket("p", str(i)) for i in range(1000)]
    assert all(0 <= v < 1 for v in values)
    assert flow.bucket("p", "1") == values[1]
    assert flow.bucket("p1", "x") != flow.bucket("p", "1x")


# --- versions ------------------------------------------------------------------------------

V2 = """
journey: waits
entry: {event: Cart Abandoned}
migrate: {two-days: two-days-v2, morning: end, first: second}
steps:
  - id: two-days-v2
    wait: 3d
  - id: second
    message: {channels: [email], content: two}
"""


def test_migrate_moves_a_waiting_enrollment_onto_the_new_version() -> None:
    v1, v2 = journey(WAITS), journey(V2, version=2)
    waiting = enroll(v1).enrollment
    moved = flow.migrate(v2, waiting)
    assert moved == replace(waiting, version=2, step_id="two-days-v2")
    # It keeps its wake-up; then goes on in the new version.
    due = T0 + timedelta(days=2)
    outcome = flow.on_timer(v2, moved, due, facts(due))
    assert outcome is not None
    assert [p.step_id for p in outcome.effects if isinstance(p, Propose)] == ["second"]


def test_migrate_onto_a_step_that_does_not_wait_runs_it_at_the_wake_up() -> None:
    v1 = journey(WAITS)
    v2 = journey(V2, version=2, migrate={"two-days": "second"})
    moved = flow.migrate(v2, enroll(v1).enrollment)
    assert moved is not None
    due = T0 + timedelta(days=2)
    outcome = flow.on_timer(v2, moved, due, facts(due))
    assert outcome is not None
    assert [p.step_id for p in outcome.effects if isinstance(p, Propose)] == ["second"]
    assert outcome.enrollment.status == "completed"


def test_migrate_onto_end_completes_at_the_wake_up() -> None:
    v1, v2 = journey(WAITS), journey(V2, version=2)
    due = T0 + timedelta(days=2)
    at_morning = flow.on_timer(v1, enroll(v1).enrollment, due, facts(due))
    assert at_morning is not None
    moved = flow.migrate(v2, at_morning.enrollment)
    assert moved is not None
    assert moved.step_id == END
    wake = moved.wake_at
    assert wake is not None
    outcome = flow.on_timer(v2, moved, wake, facts(wake))
    assert outcome is not None
    assert (outcome.enrollment.status, outcome.effects) == ("completed", ())


@pytest.mark.parametrize(
    ("change", "version"),
    [
        pytest.param({"status": "exited"}, 2, id="ended"),
        pytest.param({}, 1, id="same-version"),
        pytest.param({"step_id": "unmapped"}, 2, id="unmapped-step"),
        pytest.param({"journey_id": "another"}, 2, id="another-journey"),
        pytest.param({"version": 3}, 2, id="newer"),
    ],
)
def test_migrate_leaves_alone(change: dict[str, Any], version: int) -> None:
    waiting = replace(enroll(journey(WAITS)).enrollment, **change)
    assert flow.migrate(journey(V2, version=version), waiting) is None


def test_step_targets() -> None:
    assert Step("x", "exit").targets == ()
    assert Step("x", "wait_for", next="a", on_timeout="b").targets == ("a", "b")
    assert Step("x", "split", weights=((1.0, "a"), (2.0, "b"))).targets == ("a", "b")
    assert Step("x", "message", next="a", message=Message(("email",), "c")).targets == ("a",)
    with pytest.raises(KeyError):
        RULES.step("missing")
