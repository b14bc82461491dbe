"""The controller's batch path: one decision for each of many people at once (a blast).

The same choice as `controller.decide` under the `airspace` policy, for people whose
candidates are all eligible-or-not by channel already (the per-channel rules run before)
and who have room for at most one more marketing message: score every
(person, candidate, channel) with the candidate's sticky Thompson draw — vectorised
with numpy — pick each person's best channel per candidate; decline the candidates not
worth sending (a score not above zero, unless its journey is still learning or it has a
tier), then choose the best of the others by tier and score, and withhold it if the
message holdout drew it. Everything else loses.

`decide_people` is the controller's form for many people: each person's rules run
(`controller.assess`); those whose decision the batch form can express are decided
together, the others by `controller.decide`, and everyone gets the same decision-log
record as `controller.decide` would write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from airspace.domain import controller
from airspace.domain.controller import (
    Assessment,
    Candidate,
    Contender,
    DecisionRecord,
    Recipient,
    Score,
    Sent,
)
from airspace.domain.uplift import Evidence, candidate_uniforms, channel_response, optimism
from airspace.domain.workspace_settings import WorkspaceSettings

Floats = np.ndarray
Ints = np.ndarray
Bools = np.ndarray


@dataclass(frozen=True)
class Batch:
    """N people with K candidate slots each, over C channels.

    Slots are in order of arrival (ties go to the earlier slot).
    `journey[n, k]` indexes `journeys` (-1: an empty slot); `eligible[n, k, c]` says that
    the candidate may go on channel c now (its channels, consent, address, suppression
    and the channel's caps); `room[n]` that a marketing message fits the person's caps;
    `holdout[n, k]` is the candidate's sticky draw in [0, 1) for the message holdout.
    """

    journeys: Sequence[str]
    strata: Sequence[str]
    channels: Sequence[str]
    journey: Ints  # (N, K)
    eligible: Bools  # (N, K, C)
    tier: Ints  # (N, K)
    stratum: Ints  # (N,)
    recent: Ints  # (N,) marketing messages in the fatigue window
    room: Bools  # (N,)
    sticky: Floats  # (N, K, 2)
    response: Floats | None = None  # (N, K, C) the person's response to the channel (1: none)


@dataclass(frozen=True)
class BatchDecision:
    """Per person: the chosen slot (-1: none), its channel index, its score, and whether
    it was withheld; per candidate: its best score (-inf if not eligible)."""

    slot: Ints
    channel: Ints
    score: Floats
    withheld: Bools
    scores: Floats  # (N, K)
    means: Floats  # (N, K, C) posterior means of the uplift
    draws: Floats  # (N, K, C) the Thompson draws scored with


@dataclass(frozen=True)
class Tables:
    """The evidence as arrays indexed by journey, channel and stratum."""

    mean: Floats  # (J, C, S) the uplift's posterior mean
    spread: Floats  # (J, C, S) the standard deviation its Thompson draws read
    value: Floats  # (J,)
    learning: Bools  # (J,)

    @classmethod
    def of(
        cls,
        evidence: Evidence,
        journeys: Sequence[str],
        channels: Sequence[str],
        strata: Sequence[str],
    ) -> Tables:
        shape = (len(journeys), len(channels), len(strata))
        mean, spread = np.empty(shape), np.empty(shape)
        value = np.empty(len(journeys))
        for j, journey in enumerate(journeys):
            for c, channel in enumerate(channels):
                for s, stratum in enumerate(strata):
                    e = evidence.estimate(journey, channel, stratum)
                    mean[j, c, s], spread[j, c, s] = e.uplift, e.reach
                    value[j] = e.value
        learning = np.array([evidence.learning(j) for j in journeys], dtype=bool)
        return cls(mean, spread, value, learning)


def decide_batch(
    batch: Batch, tables: Tables, settings: WorkspaceSettings, draws: Floats | None = None
) -> BatchDecision:
    """Choose for everyone in the batch at once (see the module). `draws[n, k, c]`, when
    given, replaces the Thompson draws (for tests)."""
    n = batch.journey.shape[0]
    present = batch.journey >= 0
    j = np.where(present, batch.journey, 0)[:, :, None]  # (N, K, 1)
    c = np.arange(len(batch.channels))[None, None, :]  # (1, 1, C)
    s = batch.stratum[:, None, None]  # (N, 1, 1)
    usable = batch.eligible & present[:, :, None]
    # Only the usable (person, candidate, channel) triples are looked up and drawn.
    where = np.nonzero(usable)
    jj, cc, ss = j[where[0], where[1], 0], c[0, 0, where[2]], s[where[0], 0, 0]
    mean = tables.mean[jj, cc, ss]
    means = np.full(usable.shape, np.nan)
    means[where] = mean
    if draws is not None:
        drawn = draws[where]
    else:
        u = batch.sticky[where[0], where[1], 1]
        drawn = mean + optimism(u) * tables.spread[jj, cc, ss]
    drawn_all = np.full(usable.shape, np.nan)
    drawn_all[where] = drawn
    scale = drawn * tables.value[jj]
    if batch.response is not None:
        scale = scale * batch.response[where]
    costs = np.array(
        [settings.channels[ch].cost if ch in settings.channels else 0.0 for ch in batch.channels]
    )
    score = np.full(usable.shape, -np.inf)
    score[where] = scale - costs[cc] - settings.fatigue_cost * batch.recent[where[0]]
    best_channel = score.argmax(axis=2)  # (N, K)
    best = np.take_along_axis(score, best_channel[:, :, None], axis=2)[:, :, 0]
    learning = tables.learning[np.where(present, batch.journey, 0)] & present
    # Candidates not worth sending are declined, whatever their rank; of the others the
    # highest tier wins, then the best score (ties: the earlier slot).
    worth = np.isfinite(best) & ((best > 0) | learning | (batch.tier > 0))
    tier = np.where(worth, batch.tier, np.iinfo(np.int64).min)
    top = worth & (tier == tier.max(axis=1, keepdims=True))
    slot = np.where(top, best, -np.inf).argmax(axis=1)
    rows = np.arange(n)
    chosen = best[rows, slot]
    go = top[rows, slot] & batch.room
    picked = best_channel[rows, slot]
    reach = np.full(usable.shape, np.nan)
    reach[where] = tables.spread[jj, cc, ss]
    share = _holdout_shares(
        means[rows, slot, picked], reach[rows, slot, picked], learning[rows, slot], settings
    )
    withheld = go & (batch.sticky[rows, slot, 0] < share)
    return BatchDecision(
        slot=np.where(go, slot, -1),
        channel=np.where(go, best_channel[rows, slot], -1),
        score=np.where(go, chosen, np.nan),
        withheld=withheld,
        scores=best,
        means=means,
        draws=drawn_all,
    )


# --- people: the batch form for whoever fits it, the per-person controller for the rest ---


@dataclass(frozen=True, slots=True)
class Person:
    """One person to decide for: their open candidates, what the controller knows about
    them, and the messages sent to them lately."""

    candidates: Sequence[Candidate]
    recipient: Recipient
    history: Sequence[Sent]


@dataclass(frozen=True, slots=True)
class _Fit:
    """A person in the batch form: their final assessments and their contenders."""

    index: int
    person: Person
    done: list[Assessment]
    contenders: list[Contender]


def decide_people(
    people: Sequence[Person], settings: WorkspaceSettings, now: datetime, evidence: Evidence
) -> list[DecisionRecord]:
    """`controller.decide` for each person under the `airspace` policy with Thompson draws
    from `evidence`: those who fit the batch form (see `_fit`) all at once with
    `decide_batch`, the others one by one; the same records either way."""
    records: list[DecisionRecord | None] = [None] * len(people)
    fitting: list[_Fit] = []
    for i, person in enumerate(people):
        fit = _fit(i, person, settings, now, evidence)
        if fit is None:
            records[i] = controller.decide(
                person.candidates,
                person.recipient,
                person.history,
                settings,
                now,
                policy="airspace",
                estimator=controller.thompson(evidence),
            )
        else:
            fitting.append(fit)
    if fitting:
        decided = _decide_fitting(fitting, settings, now, evidence)
        for fit, record in zip(fitting, decided, strict=True):
            records[fit.index] = record
    return [r for r in records if r is not None]


def _holdout_shares(
    mean: Floats, spread: Floats, learning: Bools, settings: WorkspaceSettings
) -> Floats:
    """`controller.holdout_share` of many winners at once."""
    unsure = np.isfinite(mean) & np.isfinite(spread) & (spread > 0) & ~learning
    z = (
        np.abs(np.where(unsure, mean, 0.0))
        / np.where(unsure, spread, 1.0)
        * controller.LOGISTIC_SCALE
    )
    wrong = 1.0 / (1.0 + np.exp(np.minimum(z, 700.0)))
    base = settings.message_holdout
    shares: Floats = np.where(
        unsure, np.maximum(base, np.minimum(settings.unsure_holdout, wrong)), base
    )
    return shares


def _fit(
    index: int, person: Person, settings: WorkspaceSettings, now: datetime, evidence: Evidence
) -> _Fit | None:
    """Run the person's rules; None if the batch form cannot express their decision: a
    candidate deferred (quiet hours, a cap or exclusion on every channel) or a
    transactional one sent, more than one marketing message of room (`per_decision`), a
    candidate with its own value, or a still-learning one with several channels (which
    share one draw)."""
    done: list[Assessment] = []
    contenders: list[Contender] = []
    for candidate in sorted(person.candidates, key=lambda c: (c.created_at, c.id)):
        assessed = controller.assess(candidate, person.recipient, person.history, settings, now)
        if isinstance(assessed, Contender):
            contenders.append(assessed)
        elif assessed.decision.outcome == "suppress":
            done.append(assessed)
        else:
            return None
    if settings.per_decision > 1 and len(contenders) > 1:
        return None
    for c in contenders:
        learning = evidence.learning(c.candidate.journey_id) and len(c.channels) > 1
        if c.candidate.value is not None or learning:
            return None
    return _Fit(index, person, done, contenders)


def _decide_fitting(
    fitting: Sequence[_Fit], settings: WorkspaceSettings, now: datetime, evidence: Evidence
) -> list[DecisionRecord]:
    """The people's contenders as one `Batch`, decided at once; a record per person."""
    journeys = sorted({c.candidate.journey_id for f in fitting for c in f.contenders})
    channels = sorted({ch for f in fitting for c in f.contenders for ch in c.channels})
    strata = sorted({f.person.recipient.stratum for f in fitting})
    tables = Tables.of(evidence, journeys, channels, strata)
    shape = (len(fitting), max([len(f.contenders) for f in fitting] + [1]))
    journey, tier = np.full(shape, -1), np.zeros(shape, dtype=int)
    eligible = np.zeros((*shape, len(channels)), dtype=bool)
    response = np.ones((*shape, len(channels)))
    sticky = np.full((*shape, 2), 0.5)
    recent = np.array(
        [controller.recent_marketing(f.person.history, settings, now) for f in fitting]
    )
    j_of, c_of = {j: i for i, j in enumerate(journeys)}, {c: i for i, c in enumerate(channels)}
    s_of = {s: i for i, s in enumerate(strata)}
    stratum = np.array([s_of[f.person.recipient.stratum] for f in fitting])
    for n, f in enumerate(fitting):
        for k, c in enumerate(f.contenders):
            journey[n, k], tier[n, k] = j_of[c.candidate.journey_id], c.candidate.tier
            sticky[n, k] = candidate_uniforms(c.candidate.id)
            engaged = f.person.recipient.engaged
            for ch in c.channels:
                eligible[n, k, c_of[ch]] = True
                response[n, k, c_of[ch]] = channel_response(engaged, ch, c.channels)
    batch = Batch(
        journeys,
        strata,
        channels,
        journey,
        eligible,
        tier,
        stratum,
        recent,
        np.ones(len(fitting), dtype=bool),  # the rules checked every channel's caps
        sticky,
        response,
    )
    chosen = decide_batch(batch, tables, settings)
    return [
        _record(f, n, chosen, batch, tables, c_of, settings, now) for n, f in enumerate(fitting)
    ]


def _record(
    fit: _Fit,
    n: int,
    chosen: BatchDecision,
    batch: Batch,
    tables: Tables,
    c_of: Mapping[str, int],
    settings: WorkspaceSettings,
    now: datetime,
) -> DecisionRecord:
    """The person's decision-log record, as `controller.decide` writes it."""
    fatigue = settings.fatigue_cost * int(batch.recent[n])
    s = int(batch.stratum[n])
    best: dict[str, Score] = {}
    for k, contender in enumerate(fit.contenders):
        j = int(batch.journey[n, k])
        value, learning = float(tables.value[j]), bool(tables.learning[j])
        for ch in contender.channels:
            c = c_of[ch]
            mean, spread = float(chosen.means[n, k, c]), float(tables.spread[j, c, s])
            response = float(batch.response[n, k, c]) if batch.response is not None else 1.0
            draw = float(chosen.draws[n, k, c])
            contender.scores.append(
                controller.score_of(
                    contender,
                    ch,
                    mean,
                    draw,
                    value,
                    response,
                    learning,
                    spread,
                    settings,
                    fatigue,
                )
            )
        # The channel as the controller picks it: among equal scores, the message's first.
        best[contender.candidate.id] = max(contender.scores, key=lambda x: x.total)
    slot = int(chosen.slot[n])
    winner = fit.contenders[slot] if slot >= 0 else None
    withheld = bool(chosen.withheld[n])
    ranked = sorted(fit.contenders, key=lambda c: (-c.candidate.tier, -best[c.candidate.id].total))
    done = {a.candidate.id: a for a in fit.done}
    after = False
    for contender in ranked:
        candidate = contender.candidate
        score = contender.best = best[candidate.id]
        if contender is winner:
            decision = controller.win(contender, score.channel, "airspace", withheld=withheld)
            after = True
        elif after and winner is not None:
            why = controller.NOTHING_ELSE if withheld else controller.lost_to(winner.candidate)
            decision = controller.retry(candidate, why, score.channel, settings, now)
        else:  # ranked above the winner, or no winner: not worth sending
            decision = controller.decline(candidate, controller.not_worth(score), score.channel)
        done[candidate.id] = Assessment(
            candidate, decision, tuple(contender.refusals), tuple(contender.scores)
        )
    person = fit.person
    order = sorted(person.candidates, key=lambda c: (c.created_at, c.id))
    recipient = person.recipient
    return DecisionRecord(
        recipient.profile_id,
        now,
        "airspace",
        recipient.stratum,
        tuple(done[c.id] for c in order),
    )
