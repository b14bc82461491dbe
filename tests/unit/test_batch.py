"""The batch path chooses as the per-person controller does, given the same draws."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from airspace.domain.batch import Batch, Person, Tables, decide_batch, decide_people
from airspace.domain.consent import ConsentRecord, channel_key
from airspace.domain.controller import Candidate, Guess, Recipient, Sent, decide, thompson
from airspace.domain.uplift import Evidence, Tally, candidate_uniforms
from airspace.domain.workspace_settings import Cap, ChannelSettings, WorkspaceSettings

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
JOURNEYS = [f"j{i}" for i in range(6)]
CHANNELS = ["email", "push", "sms"]
STRATA = ["new", "repeat"]
SETTINGS = WorkspaceSettings(
    message_holdout=0.1,
    unsure_holdout=0.5,
    fatigue_cost=0.05,
    channels={
        "email": ChannelSettings(0.002),
        "push": ChannelSettings(0.001),
        "sms": ChannelSettings(0.05),
    },
)


def evidence(rng: np.random.Generator) -> Evidence:
    tallies = {}
    for j in JOURNEYS:
        for s in STRATA:
            tallies[j, "control", "", s] = Tally(500, float(rng.integers(10, 40)), 0)
            for c in CHANNELS:
                conversions = float(rng.integers(5, 60))
                tallies[j, "treated", c, s] = Tally(500, conversions, 40 * conversions)
    return Evidence(tallies)


@pytest.mark.parametrize("seed", range(5))
def test_the_batch_path_picks_what_decide_picks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 200, 4
    ev = evidence(rng)
    tables = Tables.of(ev, JOURNEYS, CHANNELS, STRATA)
    journey = rng.integers(-1, len(JOURNEYS), size=(n, k))
    offered = rng.random((n, k, len(CHANNELS))) < 0.6
    reachable = rng.random((n, len(CHANNELS))) < 0.8
    eligible = offered & reachable[:, None, :]
    tier = (rng.random((n, k)) < 0.05).astype(int)
    stratum = rng.integers(0, len(STRATA), size=n)
    recent = rng.integers(0, 3, size=n)
    room = recent < 3
    draws = rng.normal(0.01, 0.03, size=(n, k, len(CHANNELS)))
    ids = [[f"c{p}-{slot}" for slot in range(k)] for p in range(n)]
    sticky = np.array([[candidate_uniforms(cid) for cid in row] for row in ids])
    batch = Batch(
        JOURNEYS, STRATA, CHANNELS, journey, eligible, tier, stratum, recent, room, sticky
    )
    chosen = decide_batch(batch, tables, SETTINGS, draws=draws)

    for p in range(n):
        cands = []
        for slot in range(k):
            if journey[p, slot] < 0:
                continue
            channels = tuple(CHANNELS[c] for c in range(len(CHANNELS)) if offered[p, slot, c])
            cands.append(
                Candidate(
                    ids[p][slot],
                    f"p{p}",
                    f"e{p}-{slot}",
                    JOURNEYS[journey[p, slot]],
                    "m",
                    channels,
                    "x",
                    NOW - timedelta(minutes=k - slot),
                    NOW + timedelta(days=1),
                    tier=int(tier[p, slot]),
                )
            )
        addresses = {CHANNELS[c]: "a" for c in range(len(CHANNELS)) if reachable[p, c]}
        consent = {}
        who = Recipient(f"p{p}", consent, addresses, stratum=STRATA[stratum[p]])
        history = [Sent(NOW - timedelta(hours=h + 1), "email", "other") for h in range(recent[p])]

        def estimator(
            pairs: Sequence[tuple[Candidate, str]], r: Recipient, now: datetime, p: int = p
        ) -> list[Guess]:
            out = []
            for cand, ch in pairs:
                slot = next(s for s in range(k) if ids[p][s] == cand.id)
                c = CHANNELS.index(ch)
                cell = (journey[p, slot], c, stratum[p])
                out.append(
                    Guess(
                        float(tables.mean[cell]),
                        float(draws[p, slot, c]),
                        float(tables.value[journey[p, slot]]),
                        spread=float(tables.spread[cell]),
                    )
                )
            return out

        record = decide(cands, who, history, SETTINGS, NOW, policy="airspace", estimator=estimator)
        sent = [
            (a.candidate.id, a.decision.channel, a.decision.outcome)
            for a in record.assessments
            if a.decision.outcome in ("send", "withhold")
        ]
        if chosen.slot[p] < 0:
            assert sent == [], p
        else:
            slot = int(chosen.slot[p])
            outcome = "withhold" if chosen.withheld[p] else "send"
            assert sent == [(ids[p][slot], CHANNELS[int(chosen.channel[p])], outcome)], (
                p,
                chosen.scores[p],
                [(a.candidate.id, a.score) for a in record.assessments],
            )


def test_the_batch_draws_are_the_candidates_own() -> None:
    """Without given draws, the batch reads each candidate's sticky quantile, as `thompson`
    does: the same winners as `decide` with the real estimator."""
    rng = np.random.default_rng(9)
    ev = evidence(rng)
    tables = Tables.of(ev, JOURNEYS, CHANNELS, STRATA)
    n, k = 100, 3
    journey = rng.integers(0, len(JOURNEYS), size=(n, k))
    eligible = np.zeros((n, k, len(CHANNELS)), dtype=bool)
    eligible[:, :, 0] = True  # email only, for everyone
    ids = [[f"d{p}-{slot}" for slot in range(k)] for p in range(n)]
    sticky = np.array([[candidate_uniforms(cid) for cid in row] for row in ids])
    stratum = rng.integers(0, len(STRATA), size=n)
    zeros = np.zeros(n, dtype=int)
    batch = Batch(
        JOURNEYS,
        STRATA,
        CHANNELS,
        journey,
        eligible,
        np.zeros((n, k), dtype=int),
        stratum,
        zeros,
        np.ones(n, dtype=bool),
        sticky,
    )
    chosen = decide_batch(batch, tables, SETTINGS)
    for p in range(n):
        cands = [
            Candidate(
                ids[p][s],
                f"p{p}",
                f"e{p}-{s}",
                JOURNEYS[journey[p, s]],
                "m",
                ("email",),
                "x",
                NOW - timedelta(minutes=k - s),
                NOW + timedelta(days=1),
            )
            for s in range(k)
        ]
        who = Recipient(f"p{p}", {}, {"email": "a"}, stratum=STRATA[stratum[p]])
        record = decide(cands, who, [], SETTINGS, NOW, policy="airspace", estimator=thompson(ev))
        sent = [
            a.candidate.id for a in record.assessments if a.decision.outcome in ("send", "withhold")
        ]
        expected = [ids[p][int(chosen.slot[p])]] if chosen.slot[p] >= 0 else []
        assert sent == expected, p


def people(rng: np.random.Generator, n: int) -> list[Person]:
    """A mixed crowd: many fit the batch form; some have a cap reached on a channel or on
    everything, quiet hours, a transactional message, a candidate with its own value, a
    tier, engagement, no consent or no address, a journey paused."""
    zones = [ZoneInfo("UTC"), ZoneInfo("Asia/Tokyo")]
    crowd = []
    for p in range(n):
        cands = []
        for slot in range(int(rng.integers(1, 5))):
            chosen = [c for c in CHANNELS if rng.random() < 0.5] or ["email"]
            cands.append(
                Candidate(
                    f"c{p}-{slot}",
                    f"p{p}",
                    f"e{p}-{slot}",
                    str(rng.choice([*JOURNEYS, "new"])),
                    "m",
                    tuple(chosen),
                    f"x{slot}",
                    NOW - timedelta(minutes=int(rng.integers(0, 3))),
                    NOW + timedelta(hours=int(rng.choice([2, 48]))),
                    topic="news" if rng.random() < 0.2 else None,
                    value=25.0 if rng.random() < 0.03 else None,
                    transactional=bool(rng.random() < 0.02),
                    tier=int(rng.random() < 0.05),
                )
            )
        addresses = {c: "a" for c in CHANNELS if rng.random() < 0.85}
        consent = (
            {channel_key("sms"): ConsentRecord("opted_out", "test", NOW)}
            if rng.random() < 0.2
            else {}
        )
        engaged = {"email": int(rng.integers(0, 5))} if rng.random() < 0.3 else {}
        who = Recipient(
            f"p{p}",
            consent,
            addresses,
            paused_journeys=frozenset({"j5"}),
            timezone=zones[int(rng.random() < 0.1)],
            engaged=engaged,
            stratum=STRATA[int(rng.integers(0, 2))],
        )
        history = [
            Sent(NOW - timedelta(hours=int(rng.integers(1, 30))), str(rng.choice(CHANNELS)), "jx")
            for _ in range(int(rng.integers(0, 4)))
        ]
        crowd.append(Person(cands, who, history))
    return crowd


@pytest.mark.parametrize("per_decision", [1, 2])
def test_deciding_people_together_writes_what_deciding_each_writes(per_decision: int) -> None:
    rng = np.random.default_rng(per_decision)
    ev = evidence(rng)  # journey "new" has no trials: it is still learning
    settings = replace(
        SETTINGS,
        per_decision=per_decision,
        quiet_hours=(time(17, 0), time(20, 0)),  # 18:00 in Tokyo
        caps=(Cap("marketing", 3, timedelta(days=1)), Cap("channel:sms", 1, timedelta(days=1))),
    )
    crowd = people(rng, 400)
    together = decide_people(crowd, settings, NOW, ev)
    alone = [
        decide(
            p.candidates,
            p.recipient,
            p.history,
            settings,
            NOW,
            policy="airspace",
            estimator=thompson(ev),
        )
        for p in crowd
    ]
    assert together == alone
    outcomes = {a.decision.outcome for r in together for a in r.assessments}
    assert outcomes == {"send", "withhold", "defer", "suppress"}
