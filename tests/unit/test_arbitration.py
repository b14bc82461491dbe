"""Arbitration: the learned score, the baselines, the message holdout, overrides, the log."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from airspace.domain.consent import ConsentRecord
from airspace.domain.controller import (
    LOGISTIC_SCALE,
    Candidate,
    Guess,
    Recipient,
    Sent,
    decide,
    holdout_share,
    thompson,
    trial,
)
from airspace.domain.uplift import Evidence, Tally, candidate_uniforms, raw_uplift
from airspace.domain.workspace_settings import Cap, ChannelSettings, Exclusion, WorkspaceSettings

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SETTINGS = WorkspaceSettings(
    caps=(Cap("marketing", 3, 7 * DAY), Cap("channel:sms", 1, DAY)),
    message_holdout=0.0,
    unsure_holdout=0.0,
    channels={
        "email": ChannelSettings(0.002),
        "push": ChannelSettings(0.001),
        "sms": ChannelSettings(0.05),
    },
)
ADDRESSES = {"email": "ann@example.com", "sms": "+33612345678", "push": "token-1"}
SMS_IN = {"channel:sms": ConsentRecord("opted_in", "test", NOW - DAY)}


def cand(journey: str, minutes_ago: int = 0, **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "id": f"c-{journey}",
        "profile_id": "p1",
        "enrollment_id": f"e-{journey}",
        "journey_id": journey,
        "step_id": "message",
        "channels": ("email",),
        "content": journey,
        "created_at": NOW - timedelta(minutes=minutes_ago),
        "expires_at": NOW + 2 * DAY,
        "topic": "promotions",
    }
    values.update(fields)
    return Candidate(**values)


def person(**fields: Any) -> Recipient:
    values: dict[str, Any] = {
        "profile_id": "p1",
        "consent": SMS_IN,
        "addresses": ADDRESSES,
        "stratum": "repeat",
    }
    values.update(fields)
    return Recipient(**values)


def truth(uplift: dict[tuple[str, str], float], value: float = 50.0) -> Any:
    """An oracle estimator: the true uplift per (journey, channel), no noise."""

    def estimate(
        pairs: Sequence[tuple[Candidate, str]], who: Recipient, now: datetime
    ) -> list[Guess]:
        return [
            Guess(uplift.get((c.journey_id, ch), 0.0), uplift.get((c.journey_id, ch), 0.0), value)
            for c, ch in pairs
        ]

    return estimate


# The collision: a return, an abandoned cart and a birthday in one decision window.
RETURNS, CART, BIRTHDAY = cand("returns", 4), cand("cart", 2), cand("birthday", 1)
COLLISION = [RETURNS, CART, BIRTHDAY]


def test_the_collision_sends_exactly_one_and_logs_all_three_with_scores_and_reasons() -> None:
    oracle = truth(
        {("returns", "email"): 0.01, ("cart", "email"): 0.06, ("birthday", "email"): 0.03}
    )
    record = decide(COLLISION, person(), [], SETTINGS, NOW, policy="oracle", estimator=oracle)
    outcomes = {a.candidate.journey_id: a.decision for a in record.assessments}
    assert [j for j, d in outcomes.items() if d.outcome == "send"] == ["cart"]
    assert outcomes["cart"].reason == "best expected incremental value 2.9980, sent on email"
    for loser in ("returns", "birthday"):
        assert outcomes[loser].outcome == "defer"
        assert outcomes[loser].reason.startswith("lost to cart/cart; retry at ")
        assert outcomes[loser].retry_at == NOW + SETTINGS.retry_after
    assert len(record.assessments) == 3
    assert all(a.score is not None for a in record.assessments)
    assert record.summary == "sent: cart/cart on email"


def test_first_come_sends_the_first_and_priority_the_highest() -> None:
    first = decide(COLLISION, person(), [], SETTINGS, NOW, policy="first_come")
    assert [d.outcome for d in first.decisions] == ["send", "defer", "defer"]
    ranked = [RETURNS, replace(CART, priority=1), replace(BIRTHDAY, priority=5)]
    by_priority = decide(ranked, person(), [], SETTINGS, NOW, policy="priority")
    assert [d.outcome for d in by_priority.decisions] == ["defer", "defer", "send"]
    assert by_priority.decisions[2].reason == "priority 5, sent on email"


def test_random_draws_among_the_eligible() -> None:
    winners = {
        next(
            a.candidate.journey_id
            for a in decide(
                COLLISION,
                person(),
                [],
                SETTINGS,
                NOW,
                policy="random",
                rng=np.random.default_rng(s),
            ).assessments
            if a.decision.outcome == "send"
        )
        for s in range(30)
    }
    assert winners == {"returns", "cart", "birthday"}


def test_a_message_worth_less_than_its_cost_is_not_sent() -> None:
    oracle = truth({("cart", "email"): -0.02})
    record = decide([CART], person(), [], SETTINGS, NOW, policy="oracle", estimator=oracle)
    [decision] = record.decisions
    # Declined for good (its draw is sticky): a control trial, not a retry.
    assert (decision.outcome, decision.declined) == ("suppress", True)
    assert decision.reason.startswith("expected incremental value -1.0020 is not above 0")
    assert decision.retry_at is None
    assert record.summary == "nothing sent"


def test_fatigue_lowers_the_score_with_each_recent_message() -> None:
    settings = replace(SETTINGS, fatigue_cost=0.5)
    oracle = truth({("cart", "email"): 0.02})  # worth 1.0
    history = [Sent(NOW - timedelta(hours=h), "email", "other") for h in (1, 2)]
    fresh = decide([CART], person(), [], settings, NOW, policy="oracle", estimator=oracle)
    tired = decide([CART], person(), history, settings, NOW, policy="oracle", estimator=oracle)
    assert fresh.decisions[0].outcome == "send"
    assert tired.decisions[0].outcome == "suppress"
    score = tired.assessments[0].score
    assert score is not None
    assert score.fatigue == 1.0


def test_the_channel_is_chosen_by_value_net_of_cost() -> None:
    multi = replace(CART, channels=("sms", "email", "push"))
    same = truth({("cart", "sms"): 0.02, ("cart", "email"): 0.02, ("cart", "push"): 0.02})
    record = decide([multi], person(), [], SETTINGS, NOW, policy="oracle", estimator=same)
    assert record.decisions[0].channel == "push"  # cheapest at equal uplift
    sms_works = truth({("cart", "sms"): 0.05, ("cart", "email"): 0.01, ("cart", "push"): 0.01})
    record = decide([multi], person(), [], SETTINGS, NOW, policy="oracle", estimator=sms_works)
    assert record.decisions[0].channel == "sms"
    # Without SMS consent it goes where it may.
    record = decide(
        [multi],
        person(consent={"channel:sms": ConsentRecord("opted_out", "test", NOW - DAY)}),
        [],
        SETTINGS,
        NOW,
        policy="oracle",
        estimator=sms_works,
    )
    assert record.decisions[0].channel in ("email", "push")


def test_a_person_who_opens_push_gets_push() -> None:
    multi = replace(CART, channels=("email", "push"))
    same = truth({("cart", "email"): 0.02, ("cart", "push"): 0.02})
    fan = person(engaged={"push": 8})
    assert (
        decide([multi], fan, [], SETTINGS, NOW, policy="oracle", estimator=same)
        .decisions[0]
        .channel
        == "push"
    )
    reader = person(engaged={"email": 8})
    assert (
        decide([multi], reader, [], SETTINGS, NOW, policy="oracle", estimator=same)
        .decisions[0]
        .channel
        == "email"
    )


def test_a_higher_tier_always_wins_under_the_learned_policy() -> None:
    oracle = truth({("cart", "email"): 0.06, ("returns", "email"): -0.01})
    pinned = replace(RETURNS, tier=1)
    record = decide([pinned, CART], person(), [], SETTINGS, NOW, policy="oracle", estimator=oracle)
    outcomes = {a.candidate.journey_id: a.decision for a in record.assessments}
    assert outcomes["returns"].outcome == "send"
    assert outcomes["returns"].reason == "tier 1, sent on email"
    assert outcomes["cart"].outcome == "defer"


def test_the_message_holdout_withholds_the_winner_and_sends_nothing_else() -> None:
    settings = replace(SETTINGS, message_holdout=1.0)
    oracle = truth({("cart", "email"): 0.06, ("birthday", "email"): 0.03})
    record = decide(COLLISION, person(), [], settings, NOW, policy="oracle", estimator=oracle)
    outcomes = {a.candidate.journey_id: a.decision for a in record.assessments}
    assert outcomes["cart"].outcome == "withhold"
    assert outcomes["cart"].channel == "email"
    assert outcomes["birthday"].outcome == "defer"
    assert "withheld (message holdout)" in outcomes["birthday"].reason
    assert record.summary == "withheld (message holdout): cart/cart on email"


def test_the_message_holdout_is_sticky_per_candidate_and_takes_its_share() -> None:
    settings = replace(SETTINGS, message_holdout=0.2)
    withheld = 0
    for i in range(2000):
        c = replace(CART, id=f"c{i}")
        [d] = decide([c], person(), [], settings, NOW, policy="first_come").decisions
        assert (d.outcome == "withhold") == (candidate_uniforms(c.id)[0] < 0.2)
        withheld += d.outcome == "withhold"
    assert 340 < withheld < 460


def test_per_decision_sends_more_when_asked_and_caps_still_hold() -> None:
    settings = replace(SETTINGS, per_decision=5)
    history = [Sent(NOW - DAY, "email", "other")]
    record = decide(COLLISION, person(), history, settings, NOW, policy="first_come")
    assert [d.outcome for d in record.decisions] == ["send", "send", "suppress"]
    assert record.decisions[2].reason == "cap marketing 3 per 7d reached until after it expires"


def test_mutual_exclusion_defers_until_the_other_journeys_message_leaves_the_window() -> None:
    settings = replace(
        SETTINGS, exclusions=(Exclusion("offers", frozenset({"cart", "win-back"}), 3 * DAY),)
    )
    history = [Sent(NOW - DAY, "email", "win-back")]
    [decision] = decide(
        [replace(CART, expires_at=NOW + 5 * DAY)], person(), history, settings, NOW
    ).decisions
    assert decision.outcome == "defer"
    assert decision.reason.startswith("excluded by win-back (group offers)")
    assert decision.retry_at == NOW + 2 * DAY
    # The same journey again is not excluded by itself, and other journeys are not touched.
    assert (
        decide([CART], person(), [Sent(NOW - DAY, "email", "cart")], settings, NOW)
        .decisions[0]
        .outcome
        == "send"
    )
    assert decide([BIRTHDAY], person(), history, settings, NOW).decisions[0].outcome == "send"


def test_suppressed_channels_and_the_global_control_group() -> None:
    bounced = person(suppressed={"email": "hard bounce at 2026-11-01T00:00:00+00:00"})
    [decision] = decide([CART], bounced, [], SETTINGS, NOW).decisions
    assert decision.outcome == "suppress"
    assert decision.reason == "email suppressed (hard bounce at 2026-11-01T00:00:00+00:00)"
    [decision] = decide([CART], person(control=True), [], SETTINGS, NOW).decisions
    assert decision.reason == "in the global control group"
    receipt = replace(CART, transactional=True)
    [decision] = decide([receipt], person(control=True), [], SETTINGS, NOW).decisions
    assert decision.outcome == "send"


def test_transactional_messages_go_outside_the_competition() -> None:
    receipt = cand("receipt", 3, transactional=True)
    oracle = truth({("cart", "email"): 0.06, ("birthday", "email"): 0.03})
    record = decide(
        [receipt, CART, BIRTHDAY], person(), [], SETTINGS, NOW, policy="oracle", estimator=oracle
    )
    assert [d.outcome for d in record.decisions] == ["send", "send", "defer"]


def test_the_learned_policy_picks_the_journey_its_evidence_favours() -> None:
    """Thompson sampling with good evidence: the best journey wins almost every draw."""
    tallies = {
        ("returns", "treated", "email", "repeat"): Tally(3000, 150, 7500),
        ("returns", "control", "", "repeat"): Tally(3000, 150, 7500),
        ("cart", "treated", "email", "repeat"): Tally(3000, 150, 7500),
        ("cart", "control", "", "repeat"): Tally(3000, 140, 7000),
        ("birthday", "treated", "email", "repeat"): Tally(3000, 450, 22500),
        ("birthday", "control", "", "repeat"): Tally(3000, 150, 7500),
    }
    evidence = Evidence(tallies)
    wins = 0
    for i in range(200):
        record = decide(
            [replace(c, id=f"{c.id}-{i}") for c in COLLISION],
            person(),
            [],
            SETTINGS,
            NOW,
            policy="airspace",
            estimator=thompson(evidence),
        )
        wins += record.assessments[2].decision.outcome == "send"
    assert wins >= 190


@pytest.mark.parametrize("policy", ["airspace", "oracle", "first_come", "priority", "random"])
def test_no_policy_exceeds_a_cap(policy: Any) -> None:
    rng = np.random.default_rng(1)
    oracle = truth({(j, "sms"): 0.05 for j in ("returns", "cart", "birthday")})
    history = [Sent(NOW - timedelta(hours=5), "sms", "other")]
    many = [replace(c, channels=("sms",)) for c in COLLISION]
    settings = replace(SETTINGS, per_decision=3)
    record = decide(
        many, person(), history, settings, NOW, policy=policy, estimator=oracle, rng=rng
    )
    assert not [d for d in record.decisions if d.outcome == "send"]


def test_a_new_journey_is_sent_to_learn_even_when_its_draw_is_low() -> None:
    sent, low = 0, 0
    for i in range(50):
        record = decide(
            [replace(CART, id=f"cart-{i}")],
            person(),
            [],
            SETTINGS,
            NOW,
            policy="airspace",
            estimator=thompson(Evidence({})),
        )
        score = record.assessments[0].score
        assert score is not None
        assert score.learning
        sent += record.decisions[0].outcome == "send"
        low += score.total <= 0
    assert sent == 50
    assert low > 5  # drawn below zero, and sent all the same


def test_a_candidate_keeps_its_draw_when_it_competes_again() -> None:
    """Losing and coming back is not a new lottery ticket: the same candidate, decided
    again with the same evidence, draws the same; another candidate draws anew."""
    evidence = Evidence({("cart", "treated", "email", "repeat"): Tally(50, 5, 250)})
    first = decide(
        [CART], person(), [], SETTINGS, NOW, policy="airspace", estimator=thompson(evidence)
    )
    later = NOW + timedelta(hours=4)
    again = decide(
        [CART], person(), [], SETTINGS, later, policy="airspace", estimator=thompson(evidence)
    )
    other = decide(
        [replace(CART, id="c-cart-2")],
        person(),
        [],
        SETTINGS,
        NOW,
        policy="airspace",
        estimator=thompson(evidence),
    )
    draw = first.assessments[0].score
    assert draw is not None
    assert again.assessments[0].score == draw
    assert other.assessments[0].score != draw


# --- trials: who learns what, with which weight ------------------------------------------


def drawn(draw: float, mean: float = 0.00004, spread: float = 0.01) -> Any:
    """An estimator that gives every candidate the draw `draw` from a posterior of this
    mean and spread."""

    def estimate(
        pairs: Sequence[tuple[Candidate, str]], who: Recipient, now: datetime
    ) -> list[Guess]:
        return [Guess(mean, draw, 50.0, False, spread) for _ in pairs]

    return estimate


def test_the_propensity_is_the_chance_the_draw_is_worth_sending() -> None:
    def worth(mean: float, spread: float) -> float:
        estimator = drawn(mean, mean, spread)
        record = decide([CART], person(), [], SETTINGS, NOW, policy="airspace", estimator=estimator)
        [assessment] = record.assessments
        assert assessment.score is not None
        return assessment.score.propensity

    # The cost (0.002 per email, over a value of 50) moves the threshold only a little.
    assert worth(0.0, 0.01) == pytest.approx(0.5, abs=0.01)
    assert worth(0.03, 0.01) > 0.99
    assert worth(-0.03, 0.01) < 0.01
    assert (worth(0.01, 0.0), worth(-0.01, 0.0)) == (1.0, 0.0)


def test_a_candidates_trial_weighs_one_over_the_chance_of_its_arm() -> None:
    """At a propensity of 0.5 (uplift 0 +- spread, cost aside) and a 20% holdout, a
    candidate is sent with a chance of 0.4 and held back (withheld or declined) with 0.6."""
    settings = replace(SETTINGS, message_holdout=0.2)
    found = {}
    for draw in (0.02, -0.02):
        for c in (replace(CART, id=f"c{i}") for i in range(40)):
            estimator = drawn(draw)
            [a] = decide(
                [c], person(), [], settings, NOW, policy="airspace", estimator=estimator
            ).assessments
            found.setdefault((a.decision.outcome, a.decision.declined), trial(a, settings))
    assert found[("send", False)] == ("treated", "email", pytest.approx(1 / 0.4, rel=0.01))
    assert found[("withhold", False)] == ("control", "email", pytest.approx(1 / 0.6, rel=0.01))
    assert found[("suppress", True)] == ("control", "email", pytest.approx(1 / 0.6, rel=0.01))


def test_a_winner_of_unsure_sign_is_withheld_more_and_weighed_for_it() -> None:
    """A winner whose posterior leaves the sign of its uplift unsure is withheld with the
    chance it has the other sign (here about 27%: mean 0.006, spread 0.01), not just the
    message holdout's 5%; a sure one (mean 0.05) with the 5%. Trials weigh accordingly."""
    settings = replace(SETTINGS, message_holdout=0.05, unsure_holdout=0.5)

    def withheld(mean: float) -> tuple[float, tuple[str, str, float] | None]:
        outcomes, weight = [], None
        for c in (replace(CART, id=f"{i:032x}") for i in range(2000)):
            [a] = decide(
                [c], person(), [], settings, NOW, policy="airspace", estimator=drawn(0.03, mean)
            ).assessments
            outcomes.append(a.decision.outcome == "withhold")
            if a.decision.outcome == "withhold":
                weight = trial(a, settings)
        return float(np.mean(outcomes)), weight

    share, control = withheld(0.006)
    expected = 1 / (1 + math.exp(0.6 * LOGISTIC_SCALE))
    assert share == pytest.approx(expected, abs=0.03)
    assert control is not None
    assert control[0] == "control"
    assert share > 0.2
    sure, _ = withheld(0.05)
    assert sure == pytest.approx(0.05, abs=0.015)
    assert holdout_share(None, settings) == 0.05
    assert holdout_share(None, replace(settings, unsure_holdout=0.0)) == 0.05


def test_baseline_policies_weigh_every_winner_alike_and_losers_are_no_trials() -> None:
    settings = replace(SETTINGS, message_holdout=0.1)
    record = decide(COLLISION, person(), [], settings, NOW, policy="first_come")
    trials = [trial(a, settings) for a in record.assessments]
    assert trials[1:] == [None, None]  # deferred: not a trial (yet)
    assert trials[0] in (
        ("treated", "email", pytest.approx(1 / 0.9)),
        ("control", "email", pytest.approx(1 / 0.1)),
    )


def test_weighting_removes_the_bias_of_chances_that_moved_with_the_base_rate() -> None:
    """Early on people buy more and the controller sends most; later they buy less and it
    sends few. Unweighted, treated trials come mostly from the good weeks and the uplift
    looks huge; weighted, it is the true +5 points."""
    treated, control = Tally(), Tally()
    plain_t, plain_c = Tally(), Tally()
    for people, base, sent in ((10_000, 0.30, 0.9), (10_000, 0.10, 0.1)):
        n_t, n_c = people * sent, people * (1 - sent)
        w_t, w_c = 1 / sent, 1 / (1 - sent)
        treated += Tally(n_t * w_t, n_t * (base + 0.05) * w_t, 0.0, n_t * w_t * w_t)
        control += Tally(n_c * w_c, n_c * base * w_c, 0.0, n_c * w_c * w_c)
        plain_t += Tally(n_t, n_t * (base + 0.05))
        plain_c += Tally(n_c, n_c * base)
    naive, _ = raw_uplift(plain_t, plain_c)
    weighted, variance = raw_uplift(treated.effective(), control.effective())
    assert naive > 0.2
    assert weighted == pytest.approx(0.05, abs=0.002)
    # Unequal weights are worth fewer trials: the variance is honest about it.
    _, plain_variance = raw_uplift(plain_t, plain_c)
    assert variance > plain_variance
