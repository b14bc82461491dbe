"""Profiles: declared traits (last write by event time wins), computed traits, merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airspace.domain.consent import ConsentRecord
from airspace.domain.events import Event, EventType
from airspace.domain.profiles import (
    Computed,
    Profile,
    apply_event,
    declared_traits,
    merge_profiles,
)
from tests.unit.identity_model import make_event

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PROFILE_SETTINGS = settings(max_examples=50, deadline=None, database=None)


def at(minutes: int) -> datetime:
    """T0 plus some minutes."""
    return T0 + timedelta(minutes=minutes)


def fresh(profile_id: str = "p1") -> Profile:
    """An empty profile created at T0."""
    return Profile(profile_id=profile_id, created_at=T0)


def fold(events: list[Event], profile: Profile | None = None) -> Profile:
    """Apply events in the given (arrival) order."""
    return reduce(apply_event, events, profile or fresh())


def identify(minutes: int, **traits: Any) -> Event:
    """An identify call at T0 + minutes."""
    return make_event("identify", user_id="u-1", traits=traits, at=at(minutes))


# --- declared traits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "traits", "context", "expected"),
    [
        pytest.param(
            "identify",
            {"plan": "pro"},
            {"traits": {"plan": "free", "city": "Porto"}},
            {"plan": "pro", "city": "Porto"},
            id="identify-traits-over-context-traits",
        ),
        pytest.param(
            "track",
            {"plan": "pro"},
            {"traits": {"city": "Porto"}},
            {"city": "Porto"},
            id="track-only-context-traits",
        ),
        pytest.param(
            "group",
            {"name": "Acme", "employees": 50},
            {"traits": {"city": "Porto"}},
            {"city": "Porto"},
            id="group-traits-are-the-group's",
        ),
        pytest.param("page", {}, {"traits": "odd"}, {}, id="context-traits-not-an-object"),
    ],
)
def test_declared_traits(
    kind: EventType, traits: dict[str, Any], context: dict[str, Any], expected: dict[str, Any]
) -> None:
    event = make_event(kind, user_id="u-1", traits=traits, context=context)
    assert declared_traits(event) == expected


@pytest.mark.parametrize(
    ("events", "expected_traits", "expected_times"),
    [
        pytest.param(
            [identify(0, plan="free"), identify(5, plan="pro")],
            {"plan": "pro"},
            {"plan": at(5)},
            id="later-write-wins",
        ),
        pytest.param(
            [identify(5, plan="pro"), identify(0, plan="free")],
            {"plan": "pro"},
            {"plan": at(5)},
            id="older-write-arriving-late-loses",
        ),
        pytest.param(
            [identify(5, plan="pro", city="Porto"), identify(0, plan="free", vip=True)],
            {"plan": "pro", "city": "Porto", "vip": True},
            {"plan": at(5), "city": at(5), "vip": at(0)},
            id="per-trait-not-per-event",
        ),
        pytest.param(
            [identify(0, plan="free"), identify(0, plan="pro")],
            {"plan": "pro"},
            {"plan": at(0)},
            id="same-instant-later-arrival-wins",
        ),
        pytest.param(
            [identify(0, plan="pro"), identify(5, plan=None)],
            {"plan": None},
            {"plan": at(5)},
            id="null-is-a-write",
        ),
        pytest.param(
            [
                identify(0, plan="free"),
                make_event("group", user_id="u-1", traits={"plan": "enterprise"}, at=at(9)),
            ],
            {"plan": "free"},
            {"plan": at(0)},
            id="group-traits-do-not-become-person-traits",
        ),
        pytest.param(
            [
                identify(0, plan="free"),
                make_event("track", user_id="u-1", context={"traits": {"plan": "pro"}}, at=at(3)),
            ],
            {"plan": "pro"},
            {"plan": at(3)},
            id="context-traits-of-a-track-count",
        ),
    ],
)
def test_traits_last_write_by_event_time_wins(
    events: list[Event], expected_traits: dict[str, Any], expected_times: dict[str, datetime]
) -> None:
    profile = fold(events)
    assert profile.traits == expected_traits
    assert profile.trait_times == expected_times


def test_apply_event_does_not_change_its_input() -> None:
    before = fold([identify(0, plan="free")])
    after = apply_event(before, identify(5, plan="pro"))
    assert before.traits == {"plan": "free"}
    assert before.computed.event_count == 1
    assert after.traits == {"plan": "pro"}


# --- computed traits --------------------------------------------------------------------


def test_computed_traits_count_and_span_whatever_the_arrival_order() -> None:
    events = [
        make_event("track", user_id="u-1", name="Order Completed", at=at(30)),
        make_event("page", user_id="u-1", name="Home", at=at(-10)),
        make_event("track", user_id="u-1", name="Order Completed", at=at(5)),
        make_event("track", user_id="u-1", name="Cart Viewed", at=at(60)),
        make_event("identify", user_id="u-1", at=at(0)),
    ]
    computed = fold(events).computed
    assert computed.first_seen == at(-10)
    assert computed.last_seen == at(60)
    assert computed.event_count == 5
    assert computed.counts_by_type == {"track": 3, "page": 1, "identify": 1}
    assert computed.counts_by_event == {"Order Completed": 2, "Cart Viewed": 1}


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        pytest.param(
            [(0, "Europe/Lisbon"), (5, "America/New_York")], "America/New_York", id="later-wins"
        ),
        pytest.param(
            [(5, "America/New_York"), (0, "Europe/Lisbon")], "America/New_York", id="late-arrival"
        ),
        pytest.param([(0, "Europe/Lisbon"), (5, "")], "Europe/Lisbon", id="empty-ignored"),
        pytest.param([(0, "Europe/Lisbon"), (5, 3)], "Europe/Lisbon", id="non-string-ignored"),
    ],
)
def test_time_zone_is_the_latest_by_event_time(zones: list[tuple[int, Any]], expected: str) -> None:
    events = [
        make_event("track", user_id="u-1", context={"timezone": tz}, at=at(m)) for m, tz in zones
    ]
    assert fold(events).computed.timezone == expected


def test_locale_and_groups_are_recorded() -> None:
    events = [
        make_event("track", user_id="u-1", context={"locale": "pt-PT"}, at=at(0)),
        make_event("track", user_id="u-1", context={"locale": ""}, at=at(1)),
        make_event("group", user_id="u-1", at=at(2)),
    ]
    group_event = Event(**{**_fields(events[2]), "group_id": "acme"})
    profile = fold([*events[:2], group_event, group_event])
    assert profile.computed.locale == "pt-PT"
    assert profile.computed.groups == ("acme",)


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in Event.__slots__}


def test_consent_comes_from_a_track_called_consent_updated_only() -> None:
    properties = {"channel": "email", "status": "unsubscribed"}
    consent_track = Event(
        **{**_fields(make_event("track", user_id="u-1", at=at(1))), "name": "Consent Updated"}
        | {"properties": properties}
    )
    consent_page = Event(
        **{**_fields(make_event("page", user_id="u-1", at=at(2))), "name": "Consent Updated"}
        | {"properties": properties}
    )
    assert fold([consent_page]).consent == {}
    assert fold([consent_track]).consent == {
        "channel:email": ConsentRecord("opted_out", "event", at(1))
    }


# --- merges -----------------------------------------------------------------------------


def test_merge_profiles_adds_counts_and_keeps_the_later_trait_writes() -> None:
    survivor = fold(
        [
            make_event(
                "identify", user_id="u-1", traits={"plan": "free", "city": "Porto"}, at=at(0)
            ),
            make_event(
                "track",
                user_id="u-1",
                name="Order Completed",
                context={"timezone": "Europe/Lisbon", "locale": "pt-PT"},
                at=at(10),
            ),
        ],
        fresh("p1"),
    )
    loser = fold(
        [
            make_event(
                "identify", anonymous_id="a-1", traits={"plan": "pro", "city": "Braga"}, at=at(-5)
            ),
            make_event("identify", anonymous_id="a-1", traits={"plan": "pro"}, at=at(20)),
            make_event(
                "track",
                anonymous_id="a-1",
                name="Order Completed",
                context={"timezone": "Europe/Madrid", "locale": "es-ES"},
                at=at(15),
            ),
            make_event("page", anonymous_id="a-1", at=at(-30)),
        ],
        Profile(profile_id="p2", created_at=at(1)),
    )
    merged = merge_profiles(survivor, loser)
    assert (merged.profile_id, merged.created_at) == ("p1", T0)
    assert merged.traits == {"plan": "pro", "city": "Porto"}
    assert merged.trait_times == {"plan": at(20), "city": at(0)}
    assert merged.computed == Computed(
        first_seen=at(-30),
        last_seen=at(20),
        event_count=6,
        counts_by_type={"identify": 3, "track": 2, "page": 1},
        counts_by_event={"Order Completed": 2},
        timezone="Europe/Madrid",
        timezone_at=at(15),
        locale="pt-PT",
        groups=(),
        last_by_event={"Order Completed": at(15)},
    )


def test_engagement_and_suppression_are_computed_from_message_events() -> None:
    events = [
        make_event("identify", user_id="u-1", traits={"email": "a@example.com"}, at=at(0)),
        make_event(
            "track", user_id="u-1", name="Message Opened", properties={"channel": "push"}, at=at(1)
        ),
        make_event(
            "track", user_id="u-1", name="Message Clicked", properties={"channel": "push"}, at=at(2)
        ),
        make_event(
            "track", user_id="u-1", name="Message Opened", properties={"channel": "fax"}, at=at(3)
        ),
        make_event(
            "track",
            user_id="u-1",
            name="Message Bounced",
            properties={"channel": "email", "type": "soft"},
            at=at(4),
        ),
    ]
    person = fold(events, fresh("p1"))
    assert person.computed.engaged == {"push": 2}
    assert person.computed.suppressed == {}
    bounced = fold(
        [
            make_event(
                "track",
                user_id="u-1",
                name="Message Bounced",
                properties={"channel": "email"},
                at=at(5),
            )
        ],
        person,
    )
    assert bounced.computed.suppressed == {"email": f"hard bounce at {at(5).isoformat()}"}
    complained = fold(
        [
            make_event(
                "track",
                user_id="u-1",
                name="Spam Reported",
                properties={"channel": "sms"},
                at=at(6),
            )
        ],
        bounced,
    )
    assert set(complained.computed.suppressed) == {"email", "sms"}
    # The same address again keeps it suppressed; a new address lifts it.
    same = fold(
        [make_event("identify", user_id="u-1", traits={"email": "a@example.com"}, at=at(7))],
        complained,
    )
    assert set(same.computed.suppressed) == {"email", "sms"}
    moved = fold(
        [make_event("identify", user_id="u-1", traits={"email": "b@example.com"}, at=at(8))], same
    )
    assert set(moved.computed.suppressed) == {"sms"}


def test_merge_profiles_of_empty_profiles_is_empty() -> None:
    merged = merge_profiles(fresh("p1"), fresh("p2"))
    assert merged == fresh("p1")


def test_merge_profiles_combines_consent_to_not_granted_on_conflict() -> None:
    yes = ConsentRecord("opted_in", "event", at(0))
    no = ConsentRecord("opted_out", "event", at(5))
    survivor = Profile("p1", T0, consent={"channel:email": yes})
    loser = Profile("p2", T0, consent={"channel:email": no, "channel:sms": yes})
    merged = merge_profiles(survivor, loser)
    assert merged.consent == {
        "channel:email": ConsentRecord("opted_out", "merge-conflict", at(5)),
        "channel:sms": yes,
    }


# --- properties -------------------------------------------------------------------------

TRAIT_NAMES = ("plan", "city", "vip", "score")
TRAIT_VALUES = st.none() | st.booleans() | st.integers(0, 3) | st.sampled_from(["a", "b", "c"])


@st.composite
def timed_events(draw: st.DrawFn) -> list[Event]:
    """Events at distinct times that write random traits (identify, or context.traits)."""
    minutes = draw(st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=10, unique=True))
    events = []
    for n, minute in enumerate(minutes):
        kind = draw(st.sampled_from(["identify", "track", "page", "group"]))
        traits = draw(st.dictionaries(st.sampled_from(TRAIT_NAMES), TRAIT_VALUES, max_size=3))
        context = {"traits": traits} if kind != "identify" else {}
        if draw(st.booleans()):
            context["timezone"] = draw(st.sampled_from(["Europe/Lisbon", "Asia/Tokyo"]))
        events.append(
            make_event(
                kind,  # type: ignore[arg-type]
                user_id="u-1",
                traits=traits if kind in ("identify", "group") else {},
                context=context,
                name=f"E{n % 2}" if kind == "track" else None,
                at=at(minute),
                message_id=f"m-{n}",
            )
        )
    return events


def _expected_traits(events: list[Event]) -> dict[str, Any]:
    latest: dict[str, tuple[datetime, Any]] = {}
    for event in events:
        for key, value in declared_traits(event).items():
            if key not in latest or event.timestamp > latest[key][0]:
                latest[key] = (event.timestamp, value)
    return {key: value for key, (_, value) in latest.items()}


def _order_free(profile: Profile) -> tuple[Any, ...]:
    c = profile.computed
    return (
        profile.traits,
        profile.trait_times,
        c.first_seen,
        c.last_seen,
        c.event_count,
        c.counts_by_type,
        c.counts_by_event,
        c.timezone,
        c.timezone_at,
    )


@PROFILE_SETTINGS
@given(events=timed_events(), data=st.data())
def test_any_arrival_order_gives_the_same_profile(events: list[Event], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(events), label="arrival order")
    in_order, other_order = fold(events), fold(shuffled)
    assert _order_free(other_order) == _order_free(in_order)
    assert in_order.traits == _expected_traits(events)
    assert in_order.computed.first_seen == min(e.timestamp for e in events)
    assert in_order.computed.last_seen == max(e.timestamp for e in events)
    assert in_order.computed.event_count == len(events)


@PROFILE_SETTINGS
@given(events=timed_events(), data=st.data())
def test_merging_two_halves_equals_one_profile_that_saw_everything(
    events: list[Event], data: st.DataObject
) -> None:
    to_loser = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    survivor = fold([e for e, lost in zip(events, to_loser, strict=True) if not lost])
    loser = fold([e for e, lost in zip(events, to_loser, strict=True) if lost], fresh("p2"))
    assert _order_free(merge_profiles(survivor, loser)) == _order_free(fold(events))
