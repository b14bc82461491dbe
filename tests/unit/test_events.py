"""Segment messages: every validation rule, time resolution, and the stored form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airspace.domain.errors import InvalidInput, LimitExceeded
from airspace.domain.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    Event,
    parse_message,
    parse_time,
)

RECEIVED = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TYPES = "alias, group, identify, page, screen, track"


def parse(message: Any, **options: Any) -> Event:
    """parse_message with a fixed receive time and fallback messageId."""
    options.setdefault("received_at", RECEIVED)
    options.setdefault("new_message_id", "airspace-new")
    return parse_message(message, **options)


def track(**fields: Any) -> dict[str, Any]:
    """A valid track message, changed by `fields` (a value None removes the field)."""
    message: dict[str, Any] = {"type": "track", "userId": "u-1", "event": "Order Completed"}
    message.update(fields)
    return {k: v for k, v in message.items() if v is not None}


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "default_type", "error"),
    [
        pytest.param([], None, "an event must be a JSON object, got an array", id="array"),
        pytest.param("hi", None, "an event must be a JSON object, got a string", id="string"),
        pytest.param(None, None, "an event must be a JSON object, got null", id="null"),
        pytest.param(3, None, "an event must be a JSON object, got a number", id="number"),
        pytest.param(True, None, "an event must be a JSON object, got a boolean", id="bool"),
        pytest.param(
            track(type="trak"), None, f"type 'trak' is not one of {TYPES}", id="unknown-type"
        ),
        pytest.param(
            track(type=["track"]), None, f"type ['track'] is not one of {TYPES}", id="list-type"
        ),
        pytest.param(
            track(type={"name": "track"}),
            None,
            f"type {{'name': 'track'}} is not one of {TYPES}",
            id="object-type",
        ),
        pytest.param(
            {"userId": "u-1", "event": "A"},
            None,
            "type is required for each item of a batch",
            id="batch-item-without-type",
        ),
        pytest.param(
            track(userId=True), None, "userId must be a string or null, got bool", id="bool-userId"
        ),
        pytest.param(
            track(userId=None, anonymousId={"id": 1}),
            None,
            "anonymousId must be a string or null, got dict",
            id="object-anonymousId",
        ),
        pytest.param(
            track(userId="u" * 513),
            None,
            "userId is 513 characters long; the limit is 512",
            id="long-userId",
        ),
        pytest.param(
            track(messageId=["m"]),
            None,
            "messageId must be a string or null, got list",
            id="list-messageId",
        ),
        pytest.param(
            track(userId=None),
            None,
            "userId or anonymousId is required (both were missing or null)",
            id="no-ids",
        ),
        pytest.param(
            {"type": "alias", "userId": "u-1"},
            None,
            "alias needs both previousId and userId",
            id="alias-without-previousId",
        ),
        pytest.param(
            {"type": "alias", "anonymousId": "a-1", "previousId": "a-0"},
            None,
            "alias needs both previousId and userId",
            id="alias-without-userId",
        ),
        pytest.param(
            {"userId": "u-1", "traits": {"name": "Acme"}},
            "group",
            "groupId is required for a group call",
            id="group-without-groupId",
        ),
        pytest.param(
            track(event=None), None, "event is required for this event type", id="track-no-event"
        ),
        pytest.param(track(event="  "), None, "event must not be empty", id="track-blank-event"),
        pytest.param(
            track(event=7), None, "event must be a string, got int", id="track-number-event"
        ),
        pytest.param(
            track(event="e" * 201),
            None,
            "event is 201 characters long; the limit is 200",
            id="track-long-event",
        ),
        pytest.param(
            {"type": "page", "userId": "u-1", "name": ["Home"]},
            None,
            "name must be a string, got list",
            id="page-list-name",
        ),
        pytest.param(
            {"userId": "u-1", "name": "n" * 201},
            "screen",
            "name is 201 characters long; the limit is 200",
            id="screen-long-name",
        ),
        pytest.param(
            track(properties=[1]), None, "properties must be an object, got list", id="properties"
        ),
        pytest.param(
            {"type": "identify", "userId": "u-1", "traits": "vip"},
            None,
            "traits must be an object, got str",
            id="traits",
        ),
        pytest.param(track(context=1), None, "context must be an object, got int", id="context"),
        pytest.param(
            track(integrations=[]), None, "integrations must be an object, got list", id="integ"
        ),
        pytest.param(
            track(timestamp=1700000000),
            None,
            "timestamp must be an ISO-8601 string, got int",
            id="epoch-timestamp",
        ),
        pytest.param(
            track(timestamp="yesterday"),
            None,
            "timestamp 'yesterday' is not an ISO-8601 time (e.g. 2026-11-22T10:00:00Z)",
            id="words-timestamp",
        ),
        pytest.param(
            track(originalTimestamp="2026-13-01T00:00:00Z"),
            None,
            "originalTimestamp '2026-13-01T00:00:00Z' is not an ISO-8601 time "
            "(e.g. 2026-11-22T10:00:00Z)",
            id="bad-originalTimestamp",
        ),
        pytest.param(
            track(sentAt=""),
            None,
            "sentAt '' is not an ISO-8601 time (e.g. 2026-11-22T10:00:00Z)",
            id="empty-sentAt",
        ),
        pytest.param(
            track(timestamp="0001-01-01T00:00:00+01:00"),
            None,
            "timestamp '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 "
            "once converted to UTC",
            id="timestamp-before-year-1-in-utc",
        ),
        pytest.param(
            track(originalTimestamp="0001-01-01T00:00:00Z", sentAt="9999-12-31T00:00:00Z"),
            None,
            "originalTimestamp 0001-01-01T00:00:00Z and sentAt 9999-12-31T00:00:00Z are too far "
            "apart to correct the device clock; send timestamp instead",
            id="device-clock-beyond-the-calendar",
        ),
        pytest.param(
            track(event="Consent Updated"),
            None,
            "Consent Updated needs properties {channel|topic, status} or {channels: {...}} "
            "or {topics: {...}}",
            id="consent-event-without-properties",
        ),
        pytest.param(
            {
                "type": "page",
                "anonymousId": "a-1",
                "context": {"consent": {"categoryPreferences": {"email": "maybe"}}},
            },
            None,
            "context.consent.categoryPreferences.email is 'maybe'; expected a JSON boolean "
            "(true or false, without quotes) or one of opted_in, opt_in, subscribed, granted, "
            "opted_out, opt_out, unsubscribed, denied, unknown",
            id="bad-consent-in-context",
        ),
    ],
)
def test_parse_message_refuses_with_an_actionable_reason(
    message: Any, default_type: str | None, error: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(message, default_type=default_type)
    assert caught.value.message == error
    assert str(caught.value) == error
    assert caught.value.code == "invalid_input"


def test_an_event_above_the_size_limit_says_by_how_much() -> None:
    with pytest.raises(LimitExceeded) as caught:
        parse(track(), encoded_size=MAX_EVENT_BYTES + 10)
    assert caught.value.code == "event_too_large"
    assert caught.value.message == (
        f"event is {MAX_EVENT_BYTES + 10} bytes; the limit is {MAX_EVENT_BYTES} bytes (10 over)"
    )
    assert parse(track(), encoded_size=MAX_EVENT_BYTES).name == "Order Completed"


@pytest.mark.parametrize(
    ("message", "default_type", "expected"),
    [
        pytest.param(
            track(anonymousId="a-1", properties={"total": 12.5}, context={"locale": "pt-PT"}),
            None,
            {
                "type": "track",
                "user_id": "u-1",
                "anonymous_id": "a-1",
                "name": "Order Completed",
                "properties": {"total": 12.5},
                "context": {"locale": "pt-PT"},
            },
            id="track",
        ),
        pytest.param(
            {"userId": 42, "traits": {"plan": "pro"}},
            "identify",
            {"type": "identify", "user_id": "42", "traits": {"plan": "pro"}, "name": None},
            id="endpoint-type-and-numeric-userId",
        ),
        pytest.param(
            {"type": "track", "userId": "u-1"},
            "identify",
            {"type": "identify", "name": None},
            id="endpoint-type-wins",
        ),
        pytest.param(
            {"type": "page", "anonymousId": "a-1"},
            None,
            {"type": "page", "name": None, "user_id": None},
            id="page-name-optional",
        ),
        pytest.param(
            {"type": "screen", "anonymousId": "a-1", "name": "Cart"},
            None,
            {"type": "screen", "name": "Cart"},
            id="screen-name",
        ),
        pytest.param(
            {"type": "page", "anonymousId": "a-1", "name": "Consent Updated"},
            None,
            {"type": "page", "name": "Consent Updated"},
            id="page-may-be-called-consent-updated",
        ),
        pytest.param(
            {"type": "alias", "userId": "u-1", "previousId": "a-1"},
            None,
            {"type": "alias", "previous_id": "a-1", "anonymous_id": None},
            id="alias",
        ),
        pytest.param(
            {"type": "group", "userId": "u-1", "groupId": 7, "traits": {"name": "Acme"}},
            None,
            {"type": "group", "group_id": "7", "traits": {"name": "Acme"}},
            id="group",
        ),
        pytest.param(track(messageId="m-1"), None, {"message_id": "m-1"}, id="messageId-kept"),
        pytest.param(track(), None, {"message_id": "airspace-new"}, id="messageId-missing"),
        pytest.param(
            track(messageId=""), None, {"message_id": "airspace-new"}, id="messageId-empty"
        ),
        pytest.param(
            track(userId="", anonymousId="a-1"),
            None,
            {"user_id": "", "anonymous_id": "a-1"},
            id="empty-userId-beside-a-usable-anonymousId",
        ),
        pytest.param(
            track(integrations={"All": False}, properties=None),
            None,
            {"properties": {}},
            id="integrations-accepted-not-kept",
        ),
    ],
)
def test_parse_message_accepts_and_normalises(
    message: dict[str, Any], default_type: str | None, expected: dict[str, Any]
) -> None:
    event = parse(message, default_type=default_type)
    assert {field: getattr(event, field) for field in expected} == expected
    assert event.received_at == RECEIVED


def test_every_event_type_is_accepted_with_its_required_fields() -> None:
    needs = {"track": {"event": "A"}, "alias": {"previousId": "a-0"}, "group": {"groupId": "g"}}
    for kind in sorted(EVENT_TYPES):
        assert parse({"type": kind, "userId": "u-1", **needs.get(kind, {})}).type == kind


# --- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "batch_sent_at", "expected"),
    [
        pytest.param(
            {"timestamp": "2026-11-20T08:00:00Z"},
            None,
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            id="explicit-timestamp-kept",
        ),
        pytest.param(
            {
                "timestamp": "2026-11-20T08:00:00Z",
                "originalTimestamp": "2026-11-22T11:00:00Z",
                "sentAt": "2026-11-22T11:05:00Z",
            },
            None,
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            id="explicit-timestamp-wins-over-device-times",
        ),
        pytest.param(
            {"timestamp": "2026-11-20T09:30:00+01:30"},
            None,
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            id="offset-converted-to-utc",
        ),
        pytest.param(
            {"timestamp": "2026-11-20T08:00:00z"},
            None,
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            id="lower-case-z",
        ),
        pytest.param(
            {"timestamp": "2026-11-20T08:00:00"},
            None,
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            id="no-zone-means-utc",
        ),
        pytest.param(
            # The device clock is an hour fast: the event happened 5 minutes before sending.
            {"originalTimestamp": "2026-11-22T11:00:00Z", "sentAt": "2026-11-22T11:05:00Z"},
            None,
            RECEIVED - timedelta(minutes=5),
            id="device-clock-corrected",
        ),
        pytest.param(
            {"originalTimestamp": "2026-11-22T08:00:00Z"},
            datetime(2026, 11, 22, 8, 2, tzinfo=UTC),
            RECEIVED - timedelta(minutes=2),
            id="batch-sentAt-corrects",
        ),
        pytest.param(
            {"originalTimestamp": "2026-11-22T08:00:00Z", "sentAt": "2026-11-22T08:10:00Z"},
            datetime(2026, 11, 22, 8, 2, tzinfo=UTC),
            RECEIVED - timedelta(minutes=10),
            id="item-sentAt-wins-over-batch",
        ),
        pytest.param(
            {"originalTimestamp": "2026-11-22T08:00:00Z"},
            None,
            datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
            id="originalTimestamp-without-sentAt",
        ),
        pytest.param(
            {"sentAt": "2026-11-22T08:00:00Z"},
            datetime(2026, 11, 22, 7, 0, tzinfo=UTC),
            RECEIVED,
            id="sentAt-alone-means-received",
        ),
        pytest.param({}, None, RECEIVED, id="no-time-means-received"),
    ],
)
def test_time_resolution(
    fields: dict[str, Any], batch_sent_at: datetime | None, expected: datetime
) -> None:
    event = parse(track(**fields), batch_sent_at=batch_sent_at)
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == timedelta(0)


@settings(max_examples=60, deadline=None, database=None)
@given(
    delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    skew=st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400)),
)
def test_device_clock_skew_never_changes_the_corrected_time(
    delay: timedelta, skew: timedelta
) -> None:
    """Whatever the device clock says, the event happened `delay` before it was received."""
    happened = RECEIVED - delay
    message = track(
        originalTimestamp=(happened + skew).isoformat(),
        sentAt=(RECEIVED + skew).isoformat(),
    )
    assert parse(message).timestamp == happened


def test_parse_time_of_nothing_is_nothing() -> None:
    assert parse_time(None, "timestamp") is None


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        pytest.param({"anonymous_id": "a", "user_id": "u", "previous_id": "p"}, "u", id="user"),
        pytest.param({"anonymous_id": "a", "previous_id": "p"}, "a", id="anonymous"),
        pytest.param({"previous_id": "p"}, "m", id="message"),
        pytest.param({}, "m", id="nothing-else"),
    ],
)
def test_routing_key_puts_a_known_person_on_one_partition(fields: dict[str, Any], key: str) -> None:
    base = {"user_id": None, "anonymous_id": None, "previous_id": None}
    event = Event(
        type="track",
        message_id="m",
        name="A",
        properties={},
        traits={},
        context={},
        timestamp=RECEIVED,
        received_at=RECEIVED,
        **{**base, **fields},
    )
    assert event.routing_key == key


# --- stored form ------------------------------------------------------------------------

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3)
IDS = st.none() | st.text(min_size=1, max_size=12)


@st.composite
def events(draw: st.DrawFn) -> Event:
    """Any event `parse_message` could produce, in any time zone."""
    kind = draw(st.sampled_from(sorted(EVENT_TYPES)))
    name = draw(st.text(min_size=1, max_size=20) if kind == "track" else IDS)
    return Event(
        type=kind,  # type: ignore[arg-type]
        message_id=draw(st.text(min_size=1, max_size=12)),
        user_id=draw(IDS),
        anonymous_id=draw(IDS),
        name=name,
        properties=draw(JSON_OBJECTS),
        traits=draw(JSON_OBJECTS),
        context=draw(JSON_OBJECTS),
        timestamp=draw(MOMENTS),
        received_at=draw(MOMENTS),
        previous_id=draw(IDS),
        group_id=draw(IDS),
    )


@settings(max_examples=50, deadline=None, database=None)
@given(event=events())
def test_stored_form_round_trips_through_json(event: Event) -> None:
    stored = json.loads(json.dumps(event.to_stored()))
    assert Event.from_stored(stored) == event
    assert stored["timestamp"].endswith("Z")
    assert stored["receivedAt"].endswith("Z")
    assert ("event" in stored) == (event.type == "track" and event.name is not None)


def test_stored_form_is_compact_and_spec_shaped() -> None:
    event = parse(
        {"type": "page", "anonymousId": "a-1", "name": "Home", "timestamp": "2026-11-20T08:00Z"}
    )
    assert event.to_stored() == {
        "type": "page",
        "messageId": "airspace-new",
        "anonymousId": "a-1",
        "name": "Home",
        "timestamp": "2026-11-20T08:00:00Z",
        "receivedAt": "2026-11-22T10:00:00Z",
    }


def test_parsed_stored_and_read_back_is_the_same_event() -> None:
    message = track(
        anonymousId="a-1",
        messageId="m-1",
        properties={"items": [{"sku": "A1", "qty": 2}]},
        context={"device": {"id": "d-1"}, "traits": {"email": "ana@example.com"}},
        originalTimestamp="2026-11-22T11:00:00.123456Z",
        sentAt="2026-11-22T11:00:01Z",
    )
    event = parse(message)
    assert Event.from_stored(json.loads(json.dumps(event.to_stored()))) == event
    assert event.timestamp == RECEIVED - timedelta(seconds=0.876544)


@pytest.mark.parametrize(
    ("user_id", "anonymous_id"),
    [("", None), ("anonymous", "null"), (None, "undefined"), ("0", "[object Object]")],
)
def test_only_placeholder_identifiers_are_refused_at_the_door(
    user_id: str | None, anonymous_id: str | None
) -> None:
    with pytest.raises(InvalidInput, match="no usable identifier"):
        parse_message(
            {"type": "track", "event": "E", "userId": user_id, "anonymousId": anonymous_id},
            received_at=datetime(2026, 11, 2, tzinfo=UTC),
            new_message_id="m",
        )
