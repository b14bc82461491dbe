"""One person's reaction: events enroll, segments move, timers fire, journeys hand over."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airspace.domain.consent import ConsentRecord
from airspace.domain.definitions import Workspace, documents_from_files, load_documents
from airspace.domain.journeys import END, Enrollment, Happening, Withdraw
from airspace.domain.problems import Problems
from airspace.domain.profiles import Profile
from airspace.domain.reactor import (
    EventInput,
    PersonState,
    Reaction,
    Stimulus,
    TimerInput,
    affected_segments,
    channel_access,
    conditions_needing_events,
    react,
    stimulus_of,
)

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ORDER = "Order Completed"

FILES = {
    "settings.yaml": "timezone: Europe/Paris\ncontroller: {global_control: 0%}\n",
    "topics.yaml": "topic: promotions\nkind: opt_out\n---\ntopic: news\nkind: opt_in\n",
    "segments/customers.yaml": f"segment: customers\nevent: {ORDER}\n",
    "segments/lapsed.yaml": (
        "segment: lapsed\nall:\n  - segment: customers\n"
        f"  - not: {{event: {ORDER}, within: 90d}}\n  - reachable: [email]\n"
    ),
    "segments/vip.yaml": "segment: vip\ntrait: tier\neq: vip\n",
    "segments/reachable.yaml": "segment: reachable\nreachable: [email, push]\n",
    "journeys/cart.yaml": f"""
journey: cart
entry: {{event: Cart Abandoned, key: properties.cart_id}}
max_concurrent: 3
holdout: 0%
exit_when:
  - event: {ORDER}
    match: {{properties.cart_id: trigger.properties.cart_id}}
goal: {{event: {ORDER}, within: 7d, value: properties.revenue}}
steps:
  - id: wait-for-purchase
    wait_for:
      event: {ORDER}
      match: {{properties.cart_id: trigger.properties.cart_id}}
      timeout: 1h
    on_timeout: reminder
  - id: reminder
    message: {{channels: [email], content: cart-reminder}}
""",
    "journeys/win-back.yaml": """
journey: win-back
entry: {segment: lapsed}
re_entry: always
holdout: 0%
exit_when: [{segment: lapsed}]
steps:
  - id: we-miss-you
    message: {channels: [email], content: win-back-1}
  - id: wait-a-week
    wait: 7d
  - id: last-chance
    message: {channels: [email], content: win-back-2}
""",
    "journeys/vip.yaml": """
journey: vip-welcome
entry: {segment: vip}
holdout: 0%
steps:
  - id: hello
    message: {channels: [email], content: vip-hello}
  - id: hand-over
    start_journey: survey
""",
    "journeys/survey.yaml": """
journey: survey
entry: {event: Never Happens}
holdout: 0%
steps:
  - id: ask
    message: {channels: [email], content: survey}
""",
    "journeys/birthday.yaml": """
journey: birthday
entry: {anniversary: traits.birthday, at: "09:00"}
re_entry: {after: 300d}
holdout: 0%
steps:
  - id: greeting
    message: {channels: [email], content: birthday}
""",
    "journeys/tagger.yaml": """
journey: tagger
entry: {event: Tag Me}
holdout: 0%
steps:
  - update: {traits: {tier: vip}}
""",
}


def workspace(**changes: Any) -> Workspace:
    problems = Problems()
    docs = documents_from_files(FILES, problems)
    loaded, found = load_documents(docs)
    assert [str(p) for p in [*problems.errors, *found] if p.level == "error"] == []
    return replace(loaded, **changes)


WS = workspace()


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"id-{next(counter)}"


def person(traits: dict[str, Any] | None = None, **fields: Any) -> PersonState:
    values: dict[str, Any] = {
        "profile": Profile("p1", NOW - 100 * DAY, traits=traits or {}),
        "addresses": {"email": "ann@example.com"},
    }
    values.update(fields)
    return PersonState(**values)


def track(name: str, at: datetime = NOW, **properties: Any) -> EventInput:
    return EventInput(Happening(name, at, {"event": name, "properties": properties}))


def identify(at: datetime = NOW, **traits: Any) -> EventInput:
    return EventInput(Happening(None, at, {"type": "identify", "traits": traits}), "identify")


def run(
    inputs: list[Any], state: PersonState | None = None, ws: Workspace = WS, now: datetime = NOW
) -> Reaction:
    return react(ws, state or person(), inputs, now, ids())


def facts_for(ws: Workspace, *times: datetime) -> dict[str, list[datetime]]:
    """The order facts of every segment that needs them (they share one fingerprint)."""
    conditions = conditions_needing_events(ws, ws.segments)
    return {c.fingerprint: sorted(times) for c in conditions if c.name == ORDER}


# --- events enroll -------------------------------------------------------------------------


def test_an_event_enrolls_the_person() -> None:
    reaction = run([track("Cart Abandoned", cart_id="c1")])
    assert list(reaction.enrollments.values()) == [
        Enrollment(
            id="id-1",
            journey_id="cart",
            version=1,
            profile_id="p1",
            step_id="wait-for-purchase",
            entered_at=NOW,
            key="c1",
            wake_at=NOW + timedelta(hours=1),
            context={"event": "Cart Abandoned", "properties": {"cart_id": "c1"}},
        )
    ]
    assert reaction.entries == {"cart": 1}
    assert (reaction.proposals, reaction.refusals, reaction.entered) == ([], [], [])


def test_two_carts_in_one_call_two_enrollments_and_a_repeat_is_refused() -> None:
    reaction = run(
        [
            track("Cart Abandoned", cart_id="c1"),
            track("Cart Abandoned", cart_id="c2"),
            track("Cart Abandoned", cart_id="c1"),
        ]
    )
    assert sorted(e.key for e in reaction.enrollments.values()) == ["c1", "c2"]
    assert reaction.entries == {"cart": 2}
    assert reaction.refusals == [("cart", "already in it for this key")]


def test_an_event_reaches_enrollments_before_it_enrolls() -> None:
    waiting = run([track("Cart Abandoned", cart_id="c1")]).enrollments["id-1"]
    later = NOW + timedelta(minutes=10)
    reaction = run(
        [track(ORDER, later, cart_id="c1", revenue=42)],
        person(enrollments=[waiting]),
        now=later,
    )
    assert reaction.enrollments == {
        "id-1": replace(
            waiting,
            status="exited",
            step_id=END,
            wake_at=None,
            ended_at=later,
            exit_reason=f"exit event {ORDER}",
            converted_at=later,
            conversion_value=42.0,
        )
    }
    assert reaction.withdrawals == [Withdraw("id-1", f"exit event {ORDER}")]


def test_a_paused_journey_takes_nobody() -> None:
    reaction = run([track("Cart Abandoned", cart_id="c1")], ws=workspace(paused={"cart"}))
    assert reaction.enrollments == {}
    assert reaction.refusals == [("cart", "the journey is paused")]


def test_the_entry_cap_counts_this_call_too() -> None:
    capped = replace(WS.journeys["cart"], entry_cap=3)
    ws = replace(WS, journeys={**WS.journeys, "cart": capped})
    state = person(entered_totals={"cart": 2})
    reaction = run(
        [track("Cart Abandoned", cart_id="c1"), track("Cart Abandoned", cart_id="c2")], state, ws
    )
    assert [e.key for e in reaction.enrollments.values()] == ["c1"]
    assert reaction.refusals == [("cart", "the journey's entry cap of 3 is reached")]


# --- segments ------------------------------------------------------------------------------


def test_an_event_enters_a_segment_which_starts_a_journey_which_hands_over() -> None:
    state = person({"tier": "vip"}, segments={"reachable": NOW - DAY})
    reaction = run([identify(tier="vip")], state)
    assert reaction.entered == [("vip", NOW)]
    assert reaction.segments == {"reachable": NOW - DAY, "vip": NOW}
    assert reaction.segment_timers == {"vip": None, "reachable": None, "lapsed": None}
    assert [(p.journey_id, p.step_id) for p in reaction.proposals] == [
        ("vip-welcome", "hello"),
        ("survey", "ask"),
    ]
    survey = [e for e in reaction.enrollments.values() if e.journey_id == "survey"]
    assert [(e.id, e.status, e.context) for e in survey] == [
        ("id-2", "completed", {"event": "Segment Entered", "segment": "vip"})
    ]
    assert reaction.entries == {"vip-welcome": 1, "survey": 1}


def test_a_hand_over_to_a_paused_journey_is_refused() -> None:
    reaction = run([identify(tier="vip")], person({"tier": "vip"}), workspace(paused={"survey"}))
    assert reaction.entries == {"vip-welcome": 1}
    assert reaction.refusals == [("survey", "the journey is paused")]


def test_leaving_a_segment_ends_journeys_that_exit_on_it() -> None:
    bought = NOW - 100 * DAY
    state = person(events=facts_for(WS, bought), segments={"customers": bought})
    entered = run([TimerInput("segment", "lapsed", NOW)], state)
    assert entered.entered == [("lapsed", NOW)]
    [enrollment] = entered.enrollments.values()
    assert (enrollment.journey_id, enrollment.wake_at) == ("win-back", NOW + 7 * DAY)
    later = NOW + DAY
    back = person(
        events=facts_for(WS, bought, later),
        segments={"customers": bought, "lapsed": NOW},
        enrollments=[enrollment],
    )
    reaction = run([track(ORDER, later)], back, now=later)
    assert reaction.exited == [("lapsed", later)]
    assert reaction.enrollments["id-1"].exit_reason == "left segment lapsed"
    assert reaction.withdrawals == [Withdraw("id-1", "left segment lapsed")]
    # The next lapse is due exactly 90 days after this order.
    assert reaction.segment_timers["lapsed"] == later + 90 * DAY


def test_a_segment_timer_re_checks_at_the_exact_instant() -> None:
    bought = NOW - 30 * DAY
    state = person(events=facts_for(WS, bought), segments={"customers": bought})
    reaction = run([track(ORDER, bought)], state, now=NOW)
    assert reaction.segment_timers == {"customers": None, "lapsed": bought + 90 * DAY}
    assert reaction.entered == []
    due = bought + 90 * DAY
    fired = run([TimerInput("segment", "lapsed", due)], state, now=due)
    assert fired.entered == [("lapsed", due)]


def test_a_new_address_re_evaluates_reachability() -> None:
    state = person(addresses={"email": "ann@example.com"})
    reaction = run([identify(email="ann@example.com")], state)
    assert reaction.entered == [("reachable", NOW)]
    # A push token arrives with the device of any call.
    device = EventInput(
        Happening("Opened App", NOW, {"context": {"device": {"token": "tok"}}, "properties": {}})
    )
    pushed = run([device], person(addresses={"push": "tok"}))
    assert pushed.entered == [("reachable", NOW)]


def test_traits_set_by_a_journey_re_check_trait_segments_at_once() -> None:
    reaction = run([track("Tag Me")])
    assert reaction.traits == {"tier": "vip"}
    assert reaction.segment_timers == {"vip": NOW}
    assert reaction.entered == []


# --- timers --------------------------------------------------------------------------------


def test_a_due_timer_advances_its_enrollment_and_a_stale_one_does_nothing() -> None:
    waiting = run([track("Cart Abandoned", cart_id="c1")]).enrollments["id-1"]
    due = NOW + timedelta(hours=1)
    state = person(enrollments=[waiting])
    stale = run([TimerInput("enrollment", "id-1", NOW + timedelta(minutes=5))], state, now=due)
    assert (stale.enrollments, stale.proposals) == ({}, [])
    reaction = run([TimerInput("enrollment", "id-1", due)], state, now=due)
    assert [(p.step_id, p.expires_at) for p in reaction.proposals] == [("reminder", due + DAY)]
    assert reaction.enrollments["id-1"].status == "completed"
    unknown = run([TimerInput("enrollment", "nobody", due)], state, now=due)
    assert unknown.enrollments == {}


def test_an_old_version_runs_from_its_own_definition() -> None:
    waiting = run([track("Cart Abandoned", cart_id="c1")]).enrollments["id-1"]
    v2 = replace(WS.journeys["cart"], version=2, steps=())
    ws = replace(WS, journeys={**WS.journeys, "cart": v2})
    due = NOW + timedelta(hours=1)
    state = person(enrollments=[waiting], versions={("cart", 1): WS.journeys["cart"]})
    reaction = run([TimerInput("enrollment", "id-1", due)], state, ws, due)
    assert [p.step_id for p in reaction.proposals] == ["reminder"]
    orphan = run([TimerInput("enrollment", "id-1", due)], person(enrollments=[waiting]), ws, due)
    assert orphan.enrollments == {}


def test_birthday_timers_follow_the_trait_and_the_time_zone() -> None:
    reaction = run(
        [identify(birthday="1990-11-05")],
        person({"birthday": "1990-11-05", "timezone": "Asia/Tokyo"}),
    )
    assert reaction.anniversary_timers == {"birthday": datetime(2026, 11, 5, 0, 0, tzinfo=UTC)}
    paris = run([identify(birthday="1990-11-05")], person({"birthday": "1990-11-05"}))
    assert paris.anniversary_timers == {"birthday": datetime(2026, 11, 5, 8, 0, tzinfo=UTC)}
    removed = run([identify(birthday=None)], person({"birthday": None}))
    assert removed.anniversary_timers == {"birthday": None}
    quiet = run([track("Page Viewed")], person({"birthday": "1990-11-05"}))
    assert quiet.anniversary_timers == {}


def test_an_anniversary_enrolls_and_schedules_the_next_one() -> None:
    due = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
    state = person({"birthday": "1990-11-05"})
    reaction = run([TimerInput("anniversary", "birthday", due)], state, now=due)
    assert [(p.journey_id, p.context) for p in reaction.proposals] == [
        ("birthday", {"event": "journey anniversary"})
    ]
    assert reaction.anniversary_timers == {"birthday": datetime(2027, 11, 5, 8, 0, tzinfo=UTC)}


def test_a_scheduled_enrollment_carries_its_payload() -> None:
    reaction = run([TimerInput("enroll", "survey", NOW, {"schedule": "2026-11-02T09:00:00+00:00"})])
    [enrollment] = reaction.enrollments.values()
    assert enrollment.context == {
        "event": "journey enroll",
        "schedule": "2026-11-02T09:00:00+00:00",
    }


# --- what the engine asks before reacting --------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ([], Stimulus()),
        (
            [track(ORDER)],
            Stimulus(names=frozenset({ORDER}), any_event=True),
        ),
        (
            [identify(tier="vip")],
            Stimulus(traits=True, any_event=True, addresses=True),
        ),
        (
            [
                EventInput(
                    Happening(
                        "Page Viewed",
                        NOW,
                        {"context": {"traits": {"a": 1}, "consent": {"categoryPreferences": {}}}},
                    ),
                    "page",
                )
            ],
            Stimulus(
                names=frozenset({"Page Viewed"}),
                traits=True,
                consent=True,
                any_event=True,
                addresses=True,
            ),
        ),
        (
            [track("Consent Updated", channel="email", status=False)],
            Stimulus(names=frozenset({"Consent Updated"}), consent=True, any_event=True),
        ),
        (
            [TimerInput("segment", "lapsed", NOW), TimerInput("enrollment", "e1", NOW)],
            Stimulus(fired=frozenset({"lapsed"})),
        ),
    ],
)
def test_stimulus_of(inputs: list[Any], expected: Stimulus) -> None:
    assert stimulus_of(inputs) == expected


@pytest.mark.parametrize(
    ("stimulus", "expected"),
    [
        (Stimulus(), []),
        (Stimulus(names=frozenset({ORDER})), ["customers", "lapsed"]),
        (Stimulus(names=frozenset({"Cart Abandoned"})), []),
        (Stimulus(traits=True), ["vip"]),
        (Stimulus(consent=True), ["lapsed", "reachable"]),
        (Stimulus(addresses=True), ["lapsed", "reachable"]),
        (Stimulus(fired=frozenset({"customers", "gone"})), ["customers", "lapsed"]),
    ],
)
def test_affected_segments_in_dependency_order(stimulus: Stimulus, expected: list[str]) -> None:
    assert affected_segments(WS, stimulus) == expected


def test_conditions_needing_events_are_shared_by_fingerprint() -> None:
    found = conditions_needing_events(WS, ["customers", "lapsed"])
    assert [c.name for c in found] == [ORDER]
    assert conditions_needing_events(WS, ["vip"]) == []


def test_channel_access() -> None:
    profile = Profile(
        "p1",
        NOW,
        consent={
            "channel:push": ConsentRecord("opted_out", "test", NOW),
            "topic:news": ConsentRecord("opted_in", "test", NOW),
        },
    )
    granted, reachable = channel_access(profile, {"email": "a@b.c", "push": "tok"}, WS)
    assert granted == frozenset(
        {
            "email",
            "email:promotions",
            "email:news",
            "webhook",
            "webhook:promotions",
            "webhook:news",
            "onsite",
            "onsite:promotions",
            "onsite:news",
        }
    )
    assert reachable == frozenset({"email"})
