"""The controller learns: in a world where the best journey for a stratum is neither the first
to trigger nor the top static priority, it comes to pick that journey.

Each round one person of stratum "repeat" has three colliding candidates: `cart` triggers
first, `returns` has the top static priority, `birthday` has the largest true uplift. The
real `decide` with Thompson draws from the real `Evidence` chooses. The three journeys share
one goal (a purchase, as the example journeys do), so the person converts at the base rate
plus the true uplift of what was sent, and every trial of the decision reads that outcome.
The trials are the engine's: `controller.trial` says which candidates are trials, in which
arm and with which weight (a sent winner is treated; a winner withheld by the message
holdout or a candidate declined for its draw is control; a loser, or a candidate held out
by its journey's holdout before any decision, is no trial), and the cells are read as the
store reads them (`Tally.effective`), with the workspace's prior strength and exploration.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from airspace.domain.controller import Candidate, DecisionRecord, Recipient, decide, thompson, trial
from airspace.domain.uplift import Evidence, Tally, TallyKey, cell_of
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


def evidence_of(cells: dict[TallyKey, Tally]) -> Evidence:
    """What the engine learns from: each cell's weighted trials as the equally weighted ones
    they are worth (`store.decisions.tallies`), with the workspace's knobs."""
    return Evidence(
        {key: tally.effective() for key, tally in cells.items()},
        SETTINGS.prior_strength,
        SETTINGS.exploration,
    )


def count(cells: dict[TallyKey, Tally], record: DecisionRecord, converted: bool) -> None:
    """Add a decision's trials to their cells with the functions the engine uses
    (`controller.trial`, then `uplift.cell_of` and `Tally.of_trial`, as
    `store.decisions.mature_trials` does)."""
    for assessment in record.assessments:
        found = trial(assessment, SETTINGS)
        if found is None:
            continue
        arm, channel, weight = found
        key = cell_of(assessment.candidate.journey_id, arm, channel, record.stratum)
        cells[key] = cells.get(key, Tally()) + Tally.of_trial(weight, VALUE if converted else None)


def learn(seed: int, rounds: int, measured: int) -> float:
    """Run the loop; the share of the last `measured` decisions whose winner (sent, or
    withheld by the message holdout) is `birthday`."""
    rng = np.random.default_rng(seed)
    cells: dict[TallyKey, Tally] = {}
    evidence = evidence_of(cells)
    winners: list[str | None] = []
    for round_ in range(rounds):
        if round_ % 50 == 0:  # the engine reads the tallies again now and then
            evidence = evidence_of(cells)
        who = Recipient(f"p{round_}", {}, {"email": "x@example.com"}, stratum="repeat")
        record = decide(
            candidates(round_),
            who,
            [],
            SETTINGS,
            NOW,
            policy="airspace",
            estimator=thompson(evidence),
        )
        outcomes = {a.candidate.journey_id: a.decision.outcome for a in record.assessments}
        won = [j for j, outcome in outcomes.items() if outcome in ("send", "withhold")]
        winners.append(won[0] if won else None)
        uplift = sum(TRUE_UPLIFT[j] for j, outcome in outcomes.items() if outcome == "send")
        count(cells, record, bool(rng.random() < BASE + uplift))
    last = winners[-measured:]
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
