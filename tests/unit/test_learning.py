"""The controller learns: in a world where the best journey for a stratum is neither the first
to trigger nor the top static priority, it comes to pick that journey.

Each round one person of stratum "repeat" has three colliding candidates: `cart` triggers
first, `returns` has the top static priority, `birthday` has the largest true uplift. The
real `decide` with Thompson draws from the real `Evidence` chooses; the outcome of what it
sent (or withheld, by the message holdout) is drawn from the true goal rates, and a
journey holdout adds control trials of every journey, as the engine counts them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from airspace.domain.controller import Candidate, Recipient, decide, thompson
from airspace.domain.uplift import ANY, Evidence, Tally, TallyKey
from airspace.domain.workspace_settings import WorkspaceSettings

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BASE = 0.05  # the goal rate without any message
TRUE_UPLIFT = {"cart": 0.01, "returns": 0.005, "birthday": 0.06}
VALUE = 40.0
SETTINGS = WorkspaceSettings(message_holdout=0.05, caps=())


def candidates(round_: int) -> list[Candidate]:
    def one(journey: str, minutes: int, priority: int) -> Candidate:
        return Candidate(
            id=f"{journey}-{round_}",
            profile_id=f"p{round_}",
            enrollment_id=f"e-{journey}-{round_}",
            journey_id=journey,
            step_id="message",
            channels=("email",),
            content=journey,
            created_at=NOW - timedelta(minutes=minutes),
            expires_at=NOW + timedelta(days=1),
            priority=priority,
        )

    return [one("cart", 4, 1), one("returns", 2, 9), one("birthday", 1, 0)]


def learn(seed: int, rounds: int, measured: int) -> float:
    """Run the loop; the share of the last `measured` decisions that sent `birthday`."""
    rng = np.random.default_rng(seed)
    tallies: dict[TallyKey, Tally] = {}

    def count(journey: str, arm: str, converted: bool) -> None:
        key: TallyKey = (
            journey,
            "treated" if arm == "treated" else "control",
            "email" if arm == "treated" else ANY,
            "repeat",
        )
        tallies[key] = tallies.get(key, Tally()) + Tally(1.0, float(converted), VALUE * converted)

    picked = []
    evidence = Evidence({})
    for round_ in range(rounds):
        if round_ % 50 == 0:  # the engine reads the tallies again now and then
            evidence = Evidence(dict(tallies))
        who = Recipient(f"p{round_}", {}, {"email": "x@example.com"}, stratum="repeat")
        record = decide(
            candidates(round_),
            who,
            [],
            SETTINGS,
            NOW,
            policy="airspace",
            estimator=thompson(evidence),
            rng=rng,
        )
        for a in record.assessments:
            journey = a.candidate.journey_id
            if a.decision.outcome == "send":
                count(journey, "treated", rng.random() < BASE + TRUE_UPLIFT[journey])
                picked.append(journey)
            elif a.decision.outcome == "withhold":
                count(journey, "control", rng.random() < BASE)
        for journey in TRUE_UPLIFT:  # the journey holdout: 10% of entrants, never sent
            if rng.random() < 0.10:
                count(journey, "control", rng.random() < BASE)
    last = picked[-measured:]
    return sum(j == "birthday" for j in last) / len(last)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_after_learning_it_picks_the_best_journey_not_the_first_or_the_top_priority(
    seed: int,
) -> None:
    assert learn(seed, rounds=6000, measured=1000) >= 0.90


def test_the_baselines_do_not() -> None:
    who = Recipient("p", {}, {"email": "x@example.com"}, stratum="repeat")
    first = decide(candidates(0), who, [], replace(SETTINGS, message_holdout=0), NOW)
    top = decide(
        candidates(0), who, [], replace(SETTINGS, message_holdout=0), NOW, policy="priority"
    )
    assert [a.candidate.journey_id for a in first.assessments if a.decision.outcome == "send"] == [
        "cart"
    ]
    assert [a.candidate.journey_id for a in top.assessments if a.decision.outcome == "send"] == [
        "returns"
    ]
