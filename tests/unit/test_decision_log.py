"""`decision_log.explain` answers "why did this person get X and not Y, and why nothing on
Tuesday" in plain words, in the person's time zone.

The records are made by the real `controller.decide` and stored as the log stores them
(`record_to_json`), so the reasons are the ones a reader really sees. The person lives in
New York (UTC-5 after 1 November 2026): 14:00 UTC is 09:00 for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airspace.domain.controller import (
    Candidate,
    Estimator,
    Guess,
    Recipient,
    Sent,
    decide,
)
from airspace.domain.decision_log import HeldOut, explain, record_to_json
from airspace.domain.workspace_settings import Cap, WorkspaceSettings

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)  # Tue 03 Nov 2026 09:00 in New York
SETTINGS = WorkspaceSettings(message_holdout=0.0, caps=())
PERSON = Recipient("p", {}, {"email": "rosa@example.com"}, stratum="repeat", timezone=NEW_YORK)
HEAD = "(policy airspace, people like this: repeat)"


def candidate(journey: str, content: str, at: datetime = NOW, minutes: int = 5) -> Candidate:
    """A marketing email proposed `minutes` before `at`, alive for two days."""
    return Candidate(
        id=f"{journey}-{at:%d%H%M}",
        profile_id="p",
        enrollment_id=f"e-{journey}",
        journey_id=journey,
        step_id="message",
        channels=("email",),
        content=content,
        created_at=at - timedelta(minutes=minutes),
        expires_at=at + timedelta(days=2),
    )


def known(uplifts: Mapping[str, float]) -> Estimator:
    """An estimator that knows each journey's uplift exactly (no spread), a goal worth 40."""

    def estimate(
        pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[Guess]:
        return [Guess(uplifts[c.journey_id], uplifts[c.journey_id], 40.0) for c, _ in pairs]

    return estimate


def logged(
    candidates: Sequence[Candidate],
    *,
    at: datetime = NOW,
    uplifts: Mapping[str, float] | None = None,
    settings: WorkspaceSettings = SETTINGS,
    history: Sequence[Sent] = (),
    recipient: Recipient = PERSON,
) -> dict[str, Any]:
    """One decision at `at`, as the log stores it."""
    estimator = known(uplifts or {c.journey_id: 0.01 for c in candidates})
    record = decide(
        candidates, recipient, history, settings, at, policy="airspace", estimator=estimator
    )
    return record_to_json(record)


def today(records: Sequence[Mapping[str, Any]], held_out: Sequence[HeldOut] = ()) -> list[str]:
    """The explanation of a period that is just today in New York (no quiet day in it)."""
    return explain(records, held_out, NEW_YORK, NOW, NOW)


def test_a_day_on_which_no_journey_proposed_anything_is_named_in_the_persons_days() -> None:
    """Decisions on Monday 22:30 in New York (Tuesday 03:30 UTC) and on Thursday: in a
    period from Sunday to Thursday, Sunday, Tuesday and Wednesday were quiet for them."""
    monday_night = datetime(2026, 11, 3, 3, 30, tzinfo=UTC)
    thursday = datetime(2026, 11, 5, 14, 0, tzinfo=UTC)
    records = [
        logged([candidate("cart", "reminder", monday_night)], at=monday_night),
        logged([candidate("birthday", "greeting", thursday)], at=thursday),
    ]
    since = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # Sun 01 Nov 07:00 in New York

    lines = explain(records, [], NEW_YORK, since, thursday)

    assert [line for line in lines if not line.startswith(" ")] == [
        f"Mon 02 Nov 2026 22:30 — sent: cart/reminder on email {HEAD}",
        f"Thu 05 Nov 2026 09:00 — sent: birthday/greeting on email {HEAD}",
        "No journey proposed a message on: Sun 01 Nov, Tue 03 Nov to Wed 04 Nov.",
    ]


def test_the_sent_message_and_the_one_it_beat_are_explained_with_their_scores() -> None:
    """Why birthday and not cart: each candidate, what became of it, and its score."""
    record = logged(
        [candidate("cart", "reminder", minutes=5), candidate("birthday", "greeting", minutes=3)],
        uplifts={"cart": 0.01, "birthday": 0.05},
    )

    assert today([record]) == [
        f"Tue 03 Nov 2026 09:00 — sent: birthday/greeting on email {HEAD}",
        "  deferred cart/reminder: lost to birthday/greeting; retry at Tue 03 Nov 2026 13:00",
        "      email: uplift +1.00% ± 0.00% (drawn +1.00%) x value 40.00 - cost 0.001"
        " - fatigue 0 = +0.3990 (worth sending for 100% of draws)",
        "  sent birthday/greeting: best expected incremental value 1.9990, sent on email",
        "      email: uplift +5.00% ± 0.00% (drawn +5.00%) x value 40.00 - cost 0.001"
        " - fatigue 0 = +1.9990 (worth sending for 100% of draws)",
    ]


def test_a_channel_refused_by_a_rule_is_named_under_its_message() -> None:
    """Why email and not SMS: the person never agreed to SMS (which needs consent by
    default); only the chosen channel's score is shown."""
    both = replace(candidate("cart", "reminder"), channels=("sms", "email"))

    assert today([logged([both])])[1:] == [
        "  sent cart/reminder: best expected incremental value 0.3990, sent on email",
        "      email: uplift +1.00% ± 0.00% (drawn +1.00%) x value 40.00 - cost 0.001"
        " - fatigue 0 = +0.3990 (worth sending for 100% of draws)",
        "      sms: no consent for sms",
    ]


def test_a_period_without_any_decision_names_all_its_days() -> None:
    """Nothing proposed in the last two weeks: the whole period is one quiet run, which
    answers "why nothing" better than a bare "no decisions"."""
    assert explain([], [], NEW_YORK, NOW - timedelta(days=14), NOW) == [
        "No journey proposed a message on: Tue 20 Oct to Tue 03 Nov."
    ]


def test_when_only_the_newest_decisions_are_shown_older_days_are_not_called_quiet() -> None:
    """Two decisions shown of a limit of two, in a two-week period: the days before the
    older one may have had decisions too, so they are not listed as quiet, and the reader
    is told that older decisions are left out."""
    wednesday = datetime(2026, 10, 28, 14, 0, tzinfo=UTC)
    records = [
        logged([candidate("cart", "reminder", wednesday)], at=wednesday),
        logged([candidate("birthday", "greeting")]),
    ]
    held = [HeldOut(wednesday - timedelta(days=3), "cart", "reminder", "journey_holdout")]

    lines = explain(records, held, NEW_YORK, NOW - timedelta(days=14), NOW, limit=2)

    assert [line for line in lines if not line.startswith(" ")] == [
        "Only the newest 2 decisions are shown; older ones are left out"
        " (from Wed 28 Oct 2026 10:00 on).",
        f"Wed 28 Oct 2026 10:00 — sent: cart/reminder on email {HEAD}",
        f"Tue 03 Nov 2026 09:00 — sent: birthday/greeting on email {HEAD}",
        "No journey proposed a message on: Thu 29 Oct to Mon 02 Nov.",
    ]
    # Under the limit, the whole period is explained.
    assert explain(records, held, NEW_YORK, NOW - timedelta(days=14), NOW, limit=3)[-1] == (
        "No journey proposed a message on: Tue 20 Oct to Sat 24 Oct, Mon 26 Oct to Tue 27 Oct,"
        " Thu 29 Oct to Mon 02 Nov."
    )


def test_a_period_that_holds_no_day_has_no_decisions() -> None:
    assert explain([], [], NEW_YORK, NOW, NOW - timedelta(days=1)) == [
        "No decisions in this period."
    ]


def test_candidates_held_out_before_any_decision_are_listed_in_order_with_why() -> None:
    """A journey holdout on Saturday and a global-control holdout on Monday, between
    decisions: in time order, in words, and their days are not quiet."""
    saturday = datetime(2026, 10, 31, 14, 0, tzinfo=UTC)
    sunday = datetime(2026, 11, 1, 15, 0, tzinfo=UTC)
    monday = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    held = [
        HeldOut(monday, "birthday", "greeting", "global_control"),
        HeldOut(saturday, "cart", "reminder", "journey_holdout"),
    ]
    records = [
        logged([candidate("returns", "survey", sunday)], at=sunday),
        logged([candidate("returns", "survey", NOW)]),
    ]

    lines = explain(records, held, NEW_YORK, saturday - timedelta(days=1), NOW)

    assert [line for line in lines if not line.startswith(" ")] == [
        "Sat 31 Oct 2026 10:00 — cart/reminder: held out: the person is in this journey's"
        " holdout group, which it never messages, to measure what the journey adds",
        f"Sun 01 Nov 2026 10:00 — sent: returns/survey on email {HEAD}",
        "Mon 02 Nov 2026 09:00 — birthday/greeting: held out: the person is in the global"
        " control group, which no marketing reaches, to measure what all journeys add together",
        f"Tue 03 Nov 2026 09:00 — sent: returns/survey on email {HEAD}",
        "No journey proposed a message on: Fri 30 Oct.",
    ]


def test_a_person_in_the_global_control_group_is_told_so_at_the_decision() -> None:
    """A candidate that reaches the controller for a person in the global control group
    (the group's share grew after the person entered the journey)."""
    control = replace(PERSON, control=True)

    assert today([logged([candidate("cart", "reminder")], recipient=control)]) == [
        f"Tue 03 Nov 2026 09:00 — nothing sent {HEAD}",
        "  suppressed cart/reminder: in the global control group",
    ]


def test_a_winner_withheld_by_the_message_holdout_and_what_it_held_back() -> None:
    record = logged(
        [candidate("cart", "reminder", minutes=5), candidate("birthday", "greeting", minutes=3)],
        uplifts={"cart": 0.01, "birthday": 0.05},
        settings=replace(SETTINGS, message_holdout=1.0),
    )

    lines = today([record])

    assert [line for line in lines if not line.startswith("      ")] == [
        f"Tue 03 Nov 2026 09:00 — withheld (message holdout): birthday/greeting on email {HEAD}",
        "  deferred cart/reminder: the winner of this decision was withheld (message holdout):"
        " nothing else is sent; retry at Tue 03 Nov 2026 13:00",
        "  withheld birthday/greeting: won (best expected incremental value 1.9990);"
        " withheld by the message holdout",
    ]


def test_a_message_deferred_by_a_cap_says_which_cap_and_when_it_competes_again() -> None:
    """One marketing message a day; one went out 20 hours ago, so the cap frees in 4 hours
    (18:00 UTC, 13:00 in New York)."""
    record = logged(
        [candidate("cart", "reminder")],
        settings=replace(SETTINGS, caps=(Cap("marketing", 1, timedelta(days=1)),)),
        history=[Sent(NOW - timedelta(hours=20), "email", "welcome")],
    )

    assert today([record]) == [
        f"Tue 03 Nov 2026 09:00 — nothing sent {HEAD}",
        "  deferred cart/reminder: cap marketing 1 per 1d reached; retry at Tue 03 Nov 2026 13:00",
    ]


def test_a_message_deferred_by_quiet_hours_says_when_they_end() -> None:
    """Quiet from 21:00 to 08:00 in New York; proposed at 22:30 there, so it competes again
    at 08:00 (13:00 UTC)."""
    monday_night = datetime(2026, 11, 3, 3, 30, tzinfo=UTC)
    record = logged(
        [candidate("cart", "reminder", monday_night)],
        at=monday_night,
        settings=replace(SETTINGS, quiet_hours=(time(21, 0), time(8, 0))),
    )

    assert explain([record], [], NEW_YORK, monday_night, monday_night) == [
        f"Mon 02 Nov 2026 22:30 — nothing sent {HEAD}",
        "  deferred cart/reminder: quiet hours 21:00-08:00 in America/New_York;"
        " retry at Tue 03 Nov 2026 08:00",
    ]


def test_a_message_declined_for_its_score_shows_the_score() -> None:
    """Sending cart would lower the goal rate by a point: it is declined, for good."""
    record = logged([candidate("cart", "reminder")], uplifts={"cart": -0.01})

    assert today([record]) == [
        f"Tue 03 Nov 2026 09:00 — nothing sent {HEAD}",
        "  suppressed cart/reminder: expected incremental value -0.4010 is not above 0",
        "      email: uplift -1.00% ± 0.00% (drawn -1.00%) x value 40.00 - cost 0.001"
        " - fatigue 0 = -0.4010 (worth sending for 0% of draws)",
    ]


def test_the_persons_response_to_the_channel_is_in_the_sum() -> None:
    """Rosa opens email (4 opens, none on push): email's score is multiplied by her
    response to it, (4 + 2) / (2 + 2) = 1.5, and the words show that factor."""
    rosa = replace(
        PERSON, addresses={"email": "rosa@example.com", "push": "token"}, engaged={"email": 4}
    )
    both = replace(candidate("cart", "reminder"), channels=("push", "email"))

    assert today([logged([both], recipient=rosa)])[1:3] == [
        "  sent cart/reminder: best expected incremental value 0.5990, sent on email",
        "      email: uplift +1.00% ± 0.00% (drawn +1.00%) x value 40.00 x response 1.5"
        " - cost 0.001 - fatigue 0 = +0.5990 (worth sending for 100% of draws)",
    ]
