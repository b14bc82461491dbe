"""The first-come controller: consent, addresses, caps to the instant, transactional, expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airspace.domain.consent import ConsentRecord, ConsentStatus, Topic
from airspace.domain.controller import (
    Candidate,
    Decision,
    Recipient,
    Sent,
    addresses,
    decision_due,
    first_come,
    rule_caps,
)
from airspace.domain.workspace_settings import Cap, ChannelSettings, WorkspaceSettings

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SETTINGS = WorkspaceSettings(
    caps=(
        Cap("marketing", 3, timedelta(days=7)),
        Cap("channel:sms", 1, DAY),
        Cap("journey:cart", 1, timedelta(days=2)),
    ),
    # The rules one by one: no holdout, and every candidate that fits the caps goes.
    message_holdout=0.0,
    per_decision=10,
)
TOPICS = {
    "promotions": Topic("promotions", "opt_out"),
    "newsletter": Topic("newsletter", "opt_in"),
}
ADDRESSES = {"email": "ann@example.com", "sms": "+33612345678", "push": "token-1"}


def candidate(cid: str = "c1", **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "id": cid,
        "profile_id": "p1",
        "enrollment_id": f"e-{cid}",
        "journey_id": "welcome",
        "step_id": "hello",
        "channels": ("email",),
        "content": "welcome-1",
        "created_at": NOW,
        "expires_at": NOW + 3 * DAY,
    }
    values.update(fields)
    return Candidate(**values)


def recipient(records: dict[str, ConsentRecord] | None = None, **fields: Any) -> Recipient:
    values: dict[str, Any] = {
        "profile_id": "p1",
        "consent": records or {},
        "addresses": ADDRESSES,
        "topics": TOPICS,
    }
    values.update(fields)
    return Recipient(**values)


def sent(ago: timedelta, channel: str = "email", journey: str = "other", **fields: Any) -> Sent:
    return Sent(NOW - ago, channel, journey, **fields)


def decide_one(
    cand: Candidate,
    who: Recipient | None = None,
    history: list[Sent] | None = None,
    settings: WorkspaceSettings = SETTINGS,
    now: datetime = NOW,
) -> Decision:
    [decision] = first_come([cand], who or recipient(), history or [], settings, now)
    return decision


def sends(channel: str, cid: str = "c1", why: str = "first come") -> Decision:
    return Decision(cid, "send", f"{why}, sent on {channel}", channel)


# --- consent and addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "cand", "expected"),
    [
        pytest.param({}, candidate(), sends("email"), id="email-default-in"),
        pytest.param(
            {"channel:email": "opted_out"},
            candidate(),
            Decision("c1", "suppress", "no consent for email"),
            id="email-opted-out",
        ),
        pytest.param(
            {},
            candidate(channels=("sms",)),
            Decision("c1", "suppress", "no consent for sms"),
            id="sms-default-out",
        ),
        pytest.param(
            {"channel:sms": "opted_in"}, candidate(channels=("sms",)), sends("sms"), id="sms-in"
        ),
        pytest.param(
            {"channel:sms": "unknown"},
            candidate(channels=("sms",)),
            Decision("c1", "suppress", "no consent for sms"),
            id="sms-unknown-is-default",
        ),
        pytest.param(
            {},
            candidate(topic="newsletter"),
            Decision("c1", "suppress", "no consent for email / topic newsletter"),
            id="opt-in-topic-unanswered",
        ),
        pytest.param(
            {"topic:newsletter": "opted_in"},
            candidate(topic="newsletter"),
            sends("email"),
            id="opt-in-topic-yes",
        ),
        pytest.param({}, candidate(topic="promotions"), sends("email"), id="opt-out-topic"),
        pytest.param(
            {"topic:promotions": "opted_out"},
            candidate(topic="promotions"),
            Decision("c1", "suppress", "no consent for email / topic promotions"),
            id="opt-out-topic-no",
        ),
        pytest.param({}, candidate(topic="undeclared"), sends("email"), id="unknown-topic"),
        pytest.param(
            {"channel:email": "opted_out"},
            candidate(channels=("email", "push")),
            sends("push"),
            id="next-channel",
        ),
        pytest.param(
            {"channel:email": "opted_out", "channel:push": "opted_out"},
            candidate(channels=("email", "sms", "push")),
            Decision(
                "c1",
                "suppress",
                "no consent for email; no consent for sms; no consent for push",
            ),
            id="every-channel-refused",
        ),
        pytest.param(
            {}, candidate(channels=()), Decision("c1", "suppress", "no channel"), id="no-channel"
        ),
    ],
)
def test_consent(records: dict[str, ConsentStatus], cand: Candidate, expected: Decision) -> None:
    who = recipient({k: ConsentRecord(v, "test", NOW - DAY) for k, v in records.items()})
    assert decide_one(cand, who) == expected


def test_a_channel_default_comes_from_the_settings() -> None:
    settings = replace(
        SETTINGS, channels={**SETTINGS.channels, "email": ChannelSettings(0.0, "opted_out")}
    )
    assert decide_one(candidate(), settings=settings) == Decision(
        "c1", "suppress", "no consent for email"
    )


@pytest.mark.parametrize(
    ("known", "channels", "expected"),
    [
        ({}, ("email",), Decision("c1", "suppress", "no email address")),
        ({"push": "t"}, ("email", "push"), sends("push")),
        ({"email": ""}, ("email",), Decision("c1", "suppress", "no email address")),
        ({"email": "a@b.c"}, ("email", "push"), sends("email")),
    ],
)
def test_an_address_is_needed(
    known: dict[str, str], channels: tuple[str, ...], expected: Decision
) -> None:
    assert decide_one(candidate(channels=channels), recipient(addresses=known)) == expected


# --- caps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "cand", "expected"),
    [
        pytest.param(
            [sent(6 * DAY), sent(2 * DAY)], candidate(), sends("email"), id="two-of-three"
        ),
        pytest.param(
            [sent(6 * DAY), sent(2 * DAY), sent(DAY)],
            candidate(),
            Decision(
                "c1",
                "defer",
                "cap marketing 3 per 7d reached; retry at 2026-11-03T09:00:00+00:00",
                retry_at=NOW + DAY,
            ),
            id="marketing-full",
        ),
        pytest.param(
            [sent(6 * DAY), sent(2 * DAY), sent(DAY)],
            candidate(expires_at=NOW + DAY),
            Decision("c1", "suppress", "cap marketing 3 per 7d reached until after it expires"),
            id="frees-when-it-expires",
        ),
        pytest.param(
            [sent(6 * DAY), sent(2 * DAY), sent(DAY)],
            candidate(expires_at=NOW + DAY + timedelta(seconds=1)),
            Decision(
                "c1",
                "defer",
                "cap marketing 3 per 7d reached; retry at 2026-11-03T09:00:00+00:00",
                retry_at=NOW + DAY,
            ),
            id="frees-just-before-it-expires",
        ),
        pytest.param(
            [sent(7 * DAY), sent(2 * DAY), sent(DAY)],
            candidate(),
            sends("email"),
            id="window-excludes-its-start",
        ),
        pytest.param(
            [sent(6 * DAY, transactional=True), sent(2 * DAY), sent(DAY)],
            candidate(),
            sends("email"),
            id="transactional-history-not-counted",
        ),
        pytest.param(
            [sent(timedelta(hours=5), "sms")],
            candidate(channels=("sms", "email")),
            sends("email"),
            id="sms-cap-falls-back-to-email",
        ),
        pytest.param(
            [sent(timedelta(hours=5), "sms")],
            candidate(channels=("sms",)),
            Decision(
                "c1",
                "defer",
                "cap channel:sms 1 per 1d reached; retry at 2026-11-03T04:00:00+00:00",
                retry_at=NOW + timedelta(hours=19),
            ),
            id="sms-cap",
        ),
        pytest.param(
            [sent(DAY, journey="cart")],
            candidate(journey_id="cart"),
            Decision(
                "c1",
                "defer",
                "cap journey:cart 1 per 2d reached; retry at 2026-11-03T09:00:00+00:00",
                retry_at=NOW + DAY,
            ),
            id="journey-cap",
        ),
        pytest.param(
            [sent(DAY, journey="cart")], candidate(), sends("email"), id="other-journey-free"
        ),
        # Both caps block sms: the reason names both, and it waits for the later to free.
        pytest.param(
            [sent(6 * DAY), sent(2 * DAY), sent(timedelta(hours=5), "sms")],
            candidate(channels=("sms",)),
            Decision(
                "c1",
                "defer",
                "caps marketing 3 per 7d, channel:sms 1 per 1d reached;"
                " retry at 2026-11-03T09:00:00+00:00",
                retry_at=NOW + DAY,
            ),
            id="latest-cap-wins",
        ),
    ],
)
def test_caps(history: list[Sent], cand: Candidate, expected: Decision) -> None:
    who = recipient({"channel:sms": ConsentRecord("opted_in", "test", NOW - DAY)})
    assert decide_one(cand, who, history) == expected


def test_a_topic_cap() -> None:
    settings = replace(SETTINGS, caps=(Cap("topic:promotions", 1, 3 * DAY),))
    history = [sent(DAY, topic="promotions")]
    assert decide_one(candidate(topic="service"), history=history, settings=settings) == (
        sends("email")
    )
    assert decide_one(candidate(topic="promotions"), history=history, settings=settings) == (
        Decision(
            "c1",
            "defer",
            "cap topic:promotions 1 per 3d reached; retry at 2026-11-04T09:00:00+00:00",
            retry_at=NOW + 2 * DAY,
        )
    )


def test_a_cap_of_zero_never_frees() -> None:
    settings = replace(SETTINGS, caps=(Cap("channel:sms", 0, DAY),))
    who = recipient({"channel:sms": ConsentRecord("opted_in", "test", NOW - DAY)})
    assert decide_one(candidate(channels=("sms",)), who, settings=settings) == Decision(
        "c1", "suppress", "cap channel:sms 0 per 1d reached until after it expires"
    )


def test_caps_count_what_this_decision_sends() -> None:
    cands = [candidate(f"c{i}", created_at=NOW - timedelta(minutes=4 - i)) for i in range(4)]
    decisions = first_come(list(reversed(cands)), recipient(), [], SETTINGS, NOW)
    assert decisions == [
        sends("email", "c0"),
        sends("email", "c1"),
        sends("email", "c2"),
        Decision("c3", "suppress", "cap marketing 3 per 7d reached until after it expires"),
    ]


def test_the_fourth_is_deferred_to_when_the_oldest_leaves_the_window() -> None:
    history = [sent(6 * DAY)]
    cands = [candidate(f"c{i}") for i in range(3)]
    decisions = first_come(cands, recipient(), history, SETTINGS, NOW)
    retry = NOW + DAY
    assert decisions == [
        sends("email", "c0"),
        sends("email", "c1"),
        Decision(
            "c2",
            "defer",
            "cap marketing 3 per 7d reached; retry at 2026-11-03T09:00:00+00:00",
            retry_at=retry,
        ),
    ]
    # At retry_at exactly, the oldest has left the window and the cap lets it through.
    then = [*history, Sent(NOW, "email", "welcome"), Sent(NOW, "email", "welcome")]
    assert decide_one(cands[2], history=then, now=retry) == sends("email", "c2")
    assert decide_one(cands[2], history=then, now=retry - timedelta(seconds=1)).outcome == "defer"


def test_same_instant_candidates_go_in_id_order() -> None:
    history = [sent(DAY), sent(DAY)]
    decisions = first_come([candidate("b"), candidate("a")], recipient(), history, SETTINGS, NOW)
    assert [(d.candidate_id, d.outcome) for d in decisions] == [("a", "send"), ("b", "suppress")]


def test_rule_caps_names_the_reason_and_when_it_frees() -> None:
    history = [sent(3 * DAY), sent(2 * DAY), sent(DAY), sent(timedelta(hours=1))]
    assert rule_caps(candidate(), "email", history, SETTINGS.caps, NOW) == (
        "cap marketing 3 per 7d reached",
        NOW + 5 * DAY,
    )
    assert rule_caps(candidate(transactional=True), "email", history, SETTINGS.caps, NOW) is None


# --- transactional, expiry, pause ----------------------------------------------------------


def test_transactional_messages_bypass_consent_and_caps_and_use_none() -> None:
    history = [sent(6 * DAY), sent(2 * DAY), sent(timedelta(hours=1))]
    who = recipient({"channel:email": ConsentRecord("opted_out", "test", NOW - DAY)})
    receipt = candidate("receipt", transactional=True, topic="newsletter")
    assert decide_one(receipt, who, history) == sends("email", "receipt", "transactional")
    # It did not take a place under the cap: a marketing message after it is judged as before.
    decisions = first_come(
        [receipt, candidate("promo", created_at=NOW + timedelta(seconds=1))],
        recipient(),
        [sent(6 * DAY), sent(2 * DAY)],
        SETTINGS,
        NOW + timedelta(seconds=1),
    )
    assert [(d.candidate_id, d.outcome) for d in decisions] == [
        ("receipt", "send"),
        ("promo", "send"),
    ]


def test_transactional_still_needs_an_address() -> None:
    receipt = candidate(transactional=True)
    assert decide_one(receipt, recipient(addresses={})) == Decision(
        "c1", "suppress", "no email address"
    )


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        (NOW, Decision("c1", "suppress", "expired at 2026-11-02T09:00:00+00:00")),
        (NOW - DAY, Decision("c1", "suppress", "expired at 2026-11-01T09:00:00+00:00")),
        (NOW + timedelta(seconds=1), sends("email", why="transactional")),
    ],
)
def test_expiry(expires_at: datetime, expected: Decision) -> None:
    assert decide_one(candidate(expires_at=expires_at, transactional=True)) == expected


def test_a_paused_journey_sends_nothing() -> None:
    who = recipient(paused_journeys=frozenset({"welcome"}))
    assert decide_one(candidate(), who) == Decision("c1", "suppress", "its journey is paused")
    assert decide_one(candidate(journey_id="cart"), who) == sends("email")


# --- addresses and when to decide ----------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "identifiers", "expected"),
    [
        ({}, [], {"webhook": "webhook", "onsite": "onsite"}),
        (
            {"email": " Ann@Example.com ", "phone": "+33612345678"},
            [("email", "other@example.com")],
            {
                "webhook": "webhook",
                "onsite": "onsite",
                "email": "Ann@Example.com",
                "sms": "+33612345678",
            },
        ),
        (
            {"email": "", "phone": 33612345678},
            [("email", "ann@example.com"), ("phone", "+33612345678"), ("push_token", "tok")],
            {
                "webhook": "webhook",
                "onsite": "onsite",
                "email": "ann@example.com",
                "sms": "+33612345678",
                "push": "tok",
            },
        ),
    ],
)
def test_addresses(
    traits: dict[str, Any], identifiers: list[tuple[str, str]], expected: dict[str, str]
) -> None:
    assert addresses(traits, identifiers) == expected


@pytest.mark.parametrize(
    ("cands", "window", "expected"),
    [
        ([], timedelta(minutes=5), NOW),
        ([candidate()], timedelta(0), NOW),
        (
            [candidate(created_at=NOW - timedelta(minutes=2))],
            timedelta(minutes=5),
            NOW + timedelta(minutes=3),
        ),
        (
            [candidate(), candidate("c2", created_at=NOW - timedelta(minutes=1))],
            timedelta(minutes=5),
            NOW + timedelta(minutes=4),
        ),
        ([candidate(), candidate("c2", urgent=True)], timedelta(minutes=5), NOW),
        ([candidate(), candidate("c2", transactional=True)], timedelta(minutes=5), NOW),
    ],
)
def test_decision_due(cands: list[Candidate], window: timedelta, expected: datetime) -> None:
    assert decision_due(cands, window, NOW) == expected


# --- quiet hours ---------------------------------------------------------------------------

QUIET = replace(SETTINGS, quiet_hours=(time(21, 0), time(8, 0)))
PARIS = ZoneInfo("Europe/Paris")
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("now", "zone", "expected_retry"),
    [
        # 09:00 UTC is 10:00 in Paris: allowed.
        (NOW, PARIS, None),
        # 09:00 UTC is 18:00 in Tokyo: allowed.
        (NOW, TOKYO, None),
        # 13:00 UTC is 22:00 in Tokyo: quiet until 08:00 Tokyo = 23:00 UTC.
        (NOW + timedelta(hours=4), TOKYO, datetime(2026, 11, 2, 23, 0, tzinfo=UTC)),
        # 02:30 UTC is 03:30 in Paris: quiet until 08:00 Paris = 07:00 UTC.
        (datetime(2026, 11, 3, 2, 30, tzinfo=UTC), PARIS, datetime(2026, 11, 3, 7, 0, tzinfo=UTC)),
        # 20:00 UTC is 21:00 in Paris: the first quiet minute.
        (datetime(2026, 11, 2, 20, 0, tzinfo=UTC), PARIS, datetime(2026, 11, 3, 7, 0, tzinfo=UTC)),
        # 07:00 UTC is 08:00 in Paris: quiet hours just ended.
        (datetime(2026, 11, 3, 7, 0, tzinfo=UTC), PARIS, None),
    ],
)
def test_quiet_hours_defer_to_the_persons_morning(
    now: datetime, zone: ZoneInfo, expected_retry: datetime | None
) -> None:
    decision = decide_one(
        candidate(expires_at=now + 3 * DAY), recipient(timezone=zone), [], QUIET, now
    )
    if expected_retry is None:
        assert decision.outcome == "send"
    else:
        assert (decision.outcome, decision.retry_at) == ("defer", expected_retry)
        assert decision.reason.startswith(f"quiet hours 21:00-08:00 in {zone.key}")


def test_quiet_hours_never_drop_but_an_expiring_message_is_suppressed() -> None:
    late = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)  # 23:00 in Paris
    decision = decide_one(
        candidate(expires_at=late + timedelta(hours=2)), recipient(timezone=PARIS), [], QUIET, late
    )
    assert decision.outcome == "suppress"
    assert decision.reason.endswith("until after it expires")


def test_transactional_messages_ignore_quiet_hours() -> None:
    late = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)
    decision = decide_one(
        candidate(transactional=True, expires_at=late + DAY),
        recipient(timezone=PARIS),
        [],
        QUIET,
        late,
    )
    assert decision.outcome == "send"


def test_quiet_hours_within_one_day() -> None:
    lunch = replace(SETTINGS, quiet_hours=(time(12, 0), time(14, 0)))
    at_noon = datetime(2026, 11, 2, 12, 30, tzinfo=UTC)
    decision = decide_one(candidate(expires_at=at_noon + DAY), recipient(), [], lunch, at_noon)
    assert (decision.outcome, decision.retry_at) == (
        "defer",
        datetime(2026, 11, 2, 14, 0, tzinfo=UTC),
    )
