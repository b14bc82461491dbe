"""Consent: what events set, which record wins, how merges combine, what may be sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airspace.domain.consent import (
    CONSENT_EVENT,
    ConsentRecord,
    ConsentStatus,
    Topic,
    apply_changes,
    changes_from_event,
    is_granted,
    merge,
    parse_status,
)
from airspace.domain.errors import InvalidInput

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
WORDS = (
    "a JSON boolean (true or false, without quotes) or one of opted_in, opt_in, subscribed, "
    "granted, opted_out, opt_out, unsubscribed, denied, unknown"
)
CHANNEL_LIST = "email, sms, push, webhook, onsite"


def rec(status: ConsentStatus, source: str = "event", at: datetime = T0) -> ConsentRecord:
    """A consent record with defaults."""
    return ConsentRecord(status, source, at)


# --- what events set --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "properties", "context", "expected"),
    [
        pytest.param(
            CONSENT_EVENT,
            {"channel": "email", "status": "unsubscribed", "source": "footer-link"},
            {},
            [("channel:email", rec("opted_out", "footer-link"))],
            id="single-channel-shape",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "SMS", "status": True},
            {},
            [("channel:sms", rec("opted_in"))],
            id="channel-any-case-boolean-status",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"topic": " Newsletter ", "status": " Subscribed "},
            {},
            [("topic:newsletter", rec("opted_in"))],
            id="single-topic-shape",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"topic": "offers", "channel": "email", "status": "opt_out"},
            {},
            [("topic:offers", rec("opted_out"))],
            id="topic-wins-over-channel",
        ),
        pytest.param(
            CONSENT_EVENT,
            {
                "channels": {"email": True, "PUSH": "denied"},
                "topics": {"Offers": "opt_out"},
                "source": "preference-center",
            },
            {},
            [
                ("channel:email", rec("opted_in", "preference-center")),
                ("channel:push", rec("opted_out", "preference-center")),
                ("topic:offers", rec("opted_out", "preference-center")),
            ],
            id="maps-shape",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "email", "status": "granted", "channels": {"sms": False}},
            {},
            [("channel:email", rec("opted_in")), ("channel:sms", rec("opted_out"))],
            id="both-shapes-at-once",
        ),
        pytest.param(
            None,
            {},
            {"consent": {"categoryPreferences": {"Email": True, "Advertising": False}}},
            [
                ("channel:email", rec("opted_in", "context.consent")),
                ("topic:advertising", rec("opted_out", "context.consent")),
            ],
            id="context-category-preferences-on-any-event",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "sms", "status": "unknown"},
            {"consent": {"categoryPreferences": {"onsite": "opted_out"}}},
            [
                ("channel:sms", rec("unknown")),
                ("channel:onsite", rec("opted_out", "context.consent")),
            ],
            id="event-and-context-together",
        ),
        pytest.param(
            "Order Completed",
            {"channel": "email", "status": "nonsense"},
            {},
            [],
            id="other-events-properties-are-not-consent",
        ),
        pytest.param(
            None,
            {},
            {"consent": {"domain": "example.com"}},
            [],
            id="context-consent-without-preferences",
        ),
    ],
)
def test_changes_from_event(
    name: str | None,
    properties: dict[str, Any],
    context: dict[str, Any],
    expected: list[tuple[str, ConsentRecord]],
) -> None:
    assert changes_from_event(name, properties, context, T0) == expected


@pytest.mark.parametrize(
    ("name", "properties", "context", "error"),
    [
        pytest.param(
            CONSENT_EVENT,
            {},
            {},
            "Consent Updated needs properties {channel|topic, status} or {channels: {...}} "
            "or {topics: {...}}",
            id="no-consent-properties",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "email", "status": "maybe"},
            {},
            f"properties.status is 'maybe'; expected {WORDS}",
            id="unknown-status-word",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "email", "status": "true"},
            {},
            f"properties.status is 'true'; expected {WORDS}",
            id="quoted-boolean",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "email", "status": 1},
            {},
            f"properties.status is 1; expected {WORDS}",
            id="number-status",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "fax", "status": True},
            {},
            f"properties.channel is 'fax'; expected one of {CHANNEL_LIST}",
            id="unknown-channel",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"status": True},
            {},
            f"properties.channel is None; expected one of {CHANNEL_LIST}",
            id="status-without-channel-or-topic",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"topic": "  ", "status": True},
            {},
            "properties.topic must be a topic name of 1 to 100 characters, got '  '",
            id="blank-topic",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"topic": "t" * 101, "status": True},
            {},
            f"properties.topic must be a topic name of 1 to 100 characters, got '{'t' * 101}'",
            id="long-topic",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channels": ["email"]},
            {},
            "properties.channels of Consent Updated must be an object",
            id="channels-not-an-object",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channels": {"fax": True}},
            {},
            f"properties.channels.fax is 'fax'; expected one of {CHANNEL_LIST}",
            id="unknown-channel-in-map",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"topics": {"news": None}},
            {},
            f"properties.topics.news is None; expected {WORDS}",
            id="null-status-in-map",
        ),
        pytest.param(
            CONSENT_EVENT,
            {"channel": "email", "status": True, "source": 7},
            {},
            "properties.source of Consent Updated must be a string",
            id="source-not-a-string",
        ),
        pytest.param(
            None,
            {},
            {"consent": "granted"},
            "context.consent must be an object",
            id="context-consent-not-an-object",
        ),
        pytest.param(
            None,
            {},
            {"consent": {"categoryPreferences": ["email"]}},
            "context.consent.categoryPreferences must be an object",
            id="preferences-not-an-object",
        ),
        pytest.param(
            None,
            {},
            {"consent": {"categoryPreferences": {"email": "sure"}}},
            f"context.consent.categoryPreferences.email is 'sure'; expected {WORDS}",
            id="bad-preference-value",
        ),
        pytest.param(
            None,
            {},
            {"consent": {"categoryPreferences": {" ": True}}},
            "context.consent.categoryPreferences.  must be a topic name of 1 to 100 characters, "
            "got ' '",
            id="blank-category",
        ),
    ],
)
def test_invalid_consent_is_refused_naming_the_field(
    name: str | None, properties: dict[str, Any], context: dict[str, Any], error: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        changes_from_event(name, properties, context, T0)
    assert caught.value.message == error


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (True, "opted_in"),
        (False, "opted_out"),
        ("opted_in", "opted_in"),
        ("OPT_IN", "opted_in"),
        (" subscribed ", "opted_in"),
        ("granted", "opted_in"),
        ("opted_out", "opted_out"),
        ("opt_out", "opted_out"),
        ("Unsubscribed", "opted_out"),
        ("denied", "opted_out"),
        ("unknown", "unknown"),
    ],
    ids=repr,
)
def test_parse_status_words(value: Any, status: ConsentStatus) -> None:
    assert parse_status(value, "x") == status


# --- which record wins ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "changes", "expected"),
    [
        pytest.param(None, [rec("opted_in")], rec("opted_in"), id="first-record"),
        pytest.param(
            rec("opted_in", at=T0),
            [rec("opted_out", at=T1)],
            rec("opted_out", at=T1),
            id="later-wins",
        ),
        pytest.param(
            rec("opted_out", at=T1),
            [rec("opted_in", at=T0)],
            rec("opted_out", at=T1),
            id="earlier-arriving-late-loses",
        ),
        pytest.param(
            rec("opted_in", "a"),
            [rec("opted_out", "b")],
            rec("opted_out", "b"),
            id="tie-opt-out-replaces-opt-in",
        ),
        pytest.param(
            rec("opted_out", "a"),
            [rec("opted_in", "b")],
            rec("opted_out", "a"),
            id="tie-opt-in-does-not-replace-opt-out",
        ),
        pytest.param(
            rec("opted_out", at=T0),
            [rec("unknown", at=T1)],
            rec("unknown", at=T1),
            id="a-later-unknown-resets",
        ),
        pytest.param(
            None,
            [rec("opted_in", at=T2), rec("opted_out", at=T0), rec("opted_out", at=T1)],
            rec("opted_in", at=T2),
            id="several-latest-wins",
        ),
    ],
)
def test_apply_changes_latest_by_event_time_wins(
    current: ConsentRecord | None, changes: list[ConsentRecord], expected: ConsentRecord
) -> None:
    start = {"channel:email": current} if current else {}
    result = apply_changes(start, [("channel:email", c) for c in changes])
    assert result == {"channel:email": expected}
    assert start == ({"channel:email": current} if current else {})  # the input is not changed


def test_apply_changes_keeps_other_keys() -> None:
    start = {"channel:sms": rec("opted_in")}
    result = apply_changes(start, [("topic:news", rec("opted_out"))])
    assert result == {"channel:sms": rec("opted_in"), "topic:news": rec("opted_out")}


@settings(max_examples=50, deadline=None, database=None)
@given(
    changes=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["opted_in", "opted_out"])),
        min_size=1,
        max_size=8,
    ),
    data=st.data(),
)
def test_apply_changes_any_order_same_answer(
    changes: list[tuple[int, ConsentStatus]], data: st.DataObject
) -> None:
    records = [
        rec(status, f"s{n}", T0 + timedelta(minutes=m)) for n, (m, status) in enumerate(changes)
    ]
    order = data.draw(st.permutations(records))
    one = apply_changes({}, [("channel:email", r) for r in records])["channel:email"]
    two = apply_changes({}, [("channel:email", r) for r in order])["channel:email"]
    assert (one.status, one.at) == (two.status, two.at)
    latest = max(r.at for r in records)
    tied = {r.status for r in records if r.at == latest}
    assert one.at == latest
    assert one.status == ("opted_out" if "opted_out" in tied else "opted_in")


# --- merges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("survivor", "loser", "expected"),
    [
        pytest.param({}, {"channel:email": rec("opted_in")}, rec("opted_in"), id="only-loser"),
        pytest.param({"channel:email": rec("opted_out")}, {}, rec("opted_out"), id="only-survivor"),
        pytest.param(
            {"channel:email": rec("opted_in", "a", T0)},
            {"channel:email": rec("opted_in", "b", T1)},
            rec("opted_in", "b", T1),
            id="agree-later-record-kept",
        ),
        pytest.param(
            {"channel:email": rec("opted_in", "a", T1)},
            {"channel:email": rec("opted_in", "b", T0)},
            rec("opted_in", "a", T1),
            id="agree-earlier-loser-ignored",
        ),
        pytest.param(
            {"channel:email": rec("opted_in", "a", T2)},
            {"channel:email": rec("opted_out", "b", T0)},
            rec("opted_out", "merge-conflict", T2),
            id="disagree-not-granted",
        ),
        pytest.param(
            {"channel:email": rec("opted_out", "a", T0)},
            {"channel:email": rec("opted_in", "b", T1)},
            rec("opted_out", "merge-conflict", T1),
            id="disagree-reversed-not-granted",
        ),
        pytest.param(
            {"channel:email": rec("unknown", "a", T2)},
            {"channel:email": rec("opted_in", "b", T0)},
            rec("opted_in", "b", T0),
            id="known-beats-unknown-survivor",
        ),
        pytest.param(
            {"channel:email": rec("opted_out", "a", T0)},
            {"channel:email": rec("unknown", "b", T2)},
            rec("opted_out", "a", T0),
            id="known-beats-unknown-loser",
        ),
    ],
)
def test_merge(
    survivor: dict[str, ConsentRecord], loser: dict[str, ConsentRecord], expected: ConsentRecord
) -> None:
    assert merge(survivor, loser) == {"channel:email": expected}


def test_merge_conflict_is_symmetric_in_status() -> None:
    a = {"topic:news": rec("opted_in", at=T0), "channel:sms": rec("opted_in")}
    b = {"topic:news": rec("opted_out", at=T1), "channel:push": rec("opted_out")}
    assert merge(a, b) == merge(b, a)
    assert merge(a, b)["topic:news"] == rec("opted_out", "merge-conflict", T1)
    assert set(merge(a, b)) == {"topic:news", "channel:sms", "channel:push"}


# --- what may be sent -------------------------------------------------------------------

NEWS = Topic("news", "opt_in")
UPDATES = Topic("updates", "opt_out")


@pytest.mark.parametrize(
    ("consent", "channel", "topic", "default", "granted"),
    [
        pytest.param({}, "email", None, "opted_in", True, id="no-record-channel-default-in"),
        pytest.param({}, "email", None, "opted_out", False, id="no-record-channel-default-out"),
        pytest.param({}, "sms", None, "unknown", False, id="no-record-default-unknown"),
        pytest.param(
            {"channel:email": rec("opted_out")}, "email", None, "opted_in", False, id="opted-out"
        ),
        pytest.param(
            {"channel:sms": rec("opted_in")}, "sms", None, "opted_out", True, id="opted-in"
        ),
        pytest.param(
            {"channel:sms": rec("unknown")}, "sms", None, "opted_out", False, id="unknown-default"
        ),
        pytest.param(
            {"channel:sms": rec("opted_out")}, "email", None, "opted_in", True, id="other-channel"
        ),
        pytest.param({}, "email", NEWS, "opted_in", False, id="opt-in-topic-needs-a-yes"),
        pytest.param(
            {"topic:news": rec("opted_in")}, "email", NEWS, "opted_in", True, id="opt-in-topic-yes"
        ),
        pytest.param(
            {"topic:news": rec("unknown")}, "email", NEWS, "opted_in", False, id="opt-in-unknown"
        ),
        pytest.param({}, "email", UPDATES, "opted_in", True, id="opt-out-topic-on-until-no"),
        pytest.param(
            {"topic:updates": rec("opted_out")},
            "email",
            UPDATES,
            "opted_in",
            False,
            id="opt-out-topic-no",
        ),
        pytest.param(
            {"topic:updates": rec("unknown")},
            "push",
            UPDATES,
            "opted_in",
            True,
            id="opt-out-topic-unknown",
        ),
        pytest.param(
            {"channel:email": rec("opted_out"), "topic:news": rec("opted_in")},
            "email",
            NEWS,
            "opted_in",
            False,
            id="channel-no-beats-topic-yes",
        ),
        pytest.param(
            {"channel:email": rec("opted_out", "merge-conflict")},
            "email",
            UPDATES,
            "opted_in",
            False,
            id="merge-conflict-not-granted",
        ),
    ],
)
def test_is_granted(
    consent: dict[str, ConsentRecord],
    channel: str,
    topic: Topic | None,
    default: ConsentStatus,
    granted: bool,
) -> None:
    assert is_granted(consent, channel, topic, channel_default=default) is granted


def test_an_event_opt_out_then_is_granted_end_to_end() -> None:
    changes = changes_from_event(
        CONSENT_EVENT, {"topics": {"News": "unsubscribed"}, "channels": {"email": True}}, {}, T0
    )
    consent = apply_changes({}, changes)
    assert not is_granted(consent, "email", NEWS)
    assert is_granted(consent, "email", UPDATES)
    assert is_granted(consent, "email")
