"""The controller's batch path: one decision for each of many people at once (a blast).

The same choice as `controller.decide` under the `airspace` policy, for people whose
candidates are all eligible-or-not by channel already (the per-channel rules run before)
and who have room for at most one more marketing message: score every
(person, candidate, channel) with the candidate's sticky Thompson draw — vectorised
with numpy — pick each person's best channel per candidate; decline the candidates not
worth sending (a score not above zero, unless its journey is still learning or it has a
tier), then choose the best of the others by tier and score, and withhold it if the
message holdout drew it. Everything else loses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from airspace.domain.uplift import Evidence, optimism
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
    spread: Floats  # (J, C, S) and its standard deviation
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
                    mean[j, c, s], spread[j, c, s] = e.uplift, e.spread
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
    withheld = go & (batch.sticky[rows, slot, 0] < settings.message_holdout)
    return BatchDecision(
        slot=np.where(go, slot, -1),
        channel=np.where(go, best_channel[rows, slot], -1),
        score=np.where(go, chosen, np.nan),
        withheld=withheld,
        scores=best,
        means=means,
        draws=drawn_all,
    )
