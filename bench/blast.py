#!/usr/bin/env python
"""Batch decisions: a scheduled blast to N people (default 1,000,000) with 10 competing
journeys, decided by `airspace.domain.batch.decide_batch` on one core.

1. decide: the evidence as arrays (`Tables.of`, 10 journeys x 3 channels x 5 strata,
   thousands of trials each), then `decide_batch` in chunks of `--chunk` people, each
   with 10 candidates (one per journey; channel mixes [email], [push, email],
   [sms, email]; 80% reachable per channel), each candidate's sticky numbers computed
   from its key (`uniforms_of_keys`) inside the timing. Figure:
   decisions/s (median of `--repeat`). Baseline in the same run: the per-person
   `controller.decide` on the first `--baseline` people, and the ratio.
2. stored: the same decisions written to a fresh SQLite database — a message row for
   each winner (the capture channel) and a decision-log row for everyone (the chosen
   candidate, channel and score; JSON) — one transaction per chunk. Figure: decisions/s
   end to end.

    python bench/blast.py --quick
    python bench/blast.py --people 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

import ingest
from sqlalchemy import create_engine, insert

from airspace.domain.batch import Batch, Tables, decide_batch
from airspace.domain.controller import Candidate, Recipient, decide, thompson
from airspace.domain.uplift import Evidence, Tally, uniforms_of_keys
from airspace.domain.workspace_settings import WorkspaceSettings
from airspace.store.tables import Base, DecisionRow, MessageRow

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
JOURNEYS = [f"journey-{i}" for i in range(10)]
CHANNELS = ["email", "push", "sms"]
STRATA = ["prospect", "new", "repeat", "lapsing", "lapsed"]
MIXES = [(True, False, False), (True, True, False), (True, False, True)]
SETTINGS = WorkspaceSettings(fatigue_cost=0.05)


def evidence(rng: np.random.Generator) -> Evidence:
    tallies: dict = {}
    for j in JOURNEYS:
        for s in STRATA:
            tallies[j, "control", "", s] = Tally(2000, float(rng.integers(60, 140)), 0)
            for c in CHANNELS:
                won = float(rng.integers(60, 200))
                tallies[j, "treated", c, s] = Tally(4000, won, won * 45)
    return Evidence(tallies)


def batch(rng: np.random.Generator, n: int) -> Batch:
    k = len(JOURNEYS)
    offered = np.array(MIXES, dtype=bool)[rng.integers(0, len(MIXES), size=(n, k))]
    reachable = rng.random((n, len(CHANNELS))) < 0.8
    recent = rng.integers(0, 4, size=n)
    return Batch(
        journeys=JOURNEYS,
        strata=STRATA,
        channels=CHANNELS,
        journey=np.broadcast_to(np.arange(k), (n, k)).copy(),
        eligible=offered & reachable[:, None, :],
        tier=np.zeros((n, k), dtype=int),
        stratum=rng.integers(0, len(STRATA), size=n),
        recent=recent,
        room=recent < 3,
        sticky=np.zeros((n, k, 2)),  # filled in the timed loop (see `with_sticky`)
    )


def with_sticky(b: Batch, offset: int) -> Batch:
    """The candidates' sticky numbers from their keys (the random bits of the ids the engine
    gives them), as the engine would compute them: vectorised."""
    n, k = b.journey.shape
    keys = np.random.default_rng(offset).integers(0, 2**63, size=(n, k), dtype=np.uint64)
    return replace(b, sticky=uniforms_of_keys(keys))


def run_decide(people: int, chunk: int, seed: int) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    tables = Tables.of(evidence(rng), JOURNEYS, CHANNELS, STRATA)
    chunks = [batch(rng, min(chunk, people - start)) for start in range(0, people, chunk)]
    began = time.perf_counter()
    sent = 0
    for i, b in enumerate(chunks):
        sent += int((decide_batch(with_sticky(b, i * chunk), tables, SETTINGS).slot >= 0).sum())
    return people / (time.perf_counter() - began), sent


def run_baseline(people: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    ev = evidence(rng)
    b = batch(rng, people)
    began = time.perf_counter()
    for p in range(people):
        cands = [
            Candidate(
                f"c{p}-{slot}",
                f"p{p}",
                f"e{p}-{slot}",
                JOURNEYS[slot],
                "m",
                tuple(CHANNELS[c] for c in range(3) if MIXES[0][c] or b.eligible[p, slot, c]),
                "x",
                NOW - timedelta(minutes=10 - slot),
                NOW + timedelta(days=1),
            )
            for slot in range(len(JOURNEYS))
        ]
        addresses = {CHANNELS[c]: "a" for c in range(3) if b.eligible[p, :, c].any()}
        who = Recipient(f"p{p}", {}, addresses, stratum=STRATA[int(b.stratum[p])])
        decide(cands, who, [], SETTINGS, NOW, policy="airspace", estimator=thompson(ev))
    return people / (time.perf_counter() - began)


def run_stored(people: int, chunk: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    tables = Tables.of(evidence(rng), JOURNEYS, CHANNELS, STRATA)
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{folder}/blast.db")
        Base.metadata.create_all(engine, tables=[MessageRow.__table__, DecisionRow.__table__])
        chunks = [batch(rng, min(chunk, people - start)) for start in range(0, people, chunk)]
        began = time.perf_counter()
        offset = 0
        for b in chunks:
            b = with_sticky(b, offset)
            d = decide_batch(b, tables, SETTINGS)
            messages, log = [], []
            for i in range(len(d.slot)):
                slot, channel = int(d.slot[i]), int(d.channel[i])
                pid = f"p{offset + i}"
                if slot >= 0 and not d.withheld[i]:
                    messages.append(
                        {
                            "idempotency_key": f"{pid}-{slot}",
                            "profile_id": pid,
                            "candidate_id": f"{pid}-{slot}",
                            "journey_id": JOURNEYS[slot],
                            "step_id": "m",
                            "channel": CHANNELS[channel],
                            "address": "a",
                            "topic": None,
                            "content": "x",
                            "body": {},
                            "transactional": False,
                            "status": "captured",
                            "sent_at": NOW,
                        }
                    )
                log.append(
                    {
                        "profile_id": pid,
                        "at": NOW,
                        "policy": "airspace",
                        "stratum": STRATA[int(b.stratum[i])],
                        "summary": "sent" if slot >= 0 else "nothing sent",
                        "record": {
                            "slot": slot,
                            "channel": channel,
                            "scores": [round(float(x), 4) for x in d.scores[i]],
                        },
                    }
                )
            offset += len(d.slot)
            with engine.begin() as conn:
                if messages:
                    conn.execute(insert(MessageRow.__table__), messages)
                conn.execute(insert(DecisionRow.__table__), log)
        rate = people / (time.perf_counter() - began)
        engine.dispose()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=int, default=5_000)
    parser.add_argument("--stored-people", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.people, args.repeat, args.baseline, args.stored_people = 50_000, 1, 500, 20_000
    print(ingest.machine_info())
    rates = [run_decide(args.people, args.chunk, seed) for seed in range(args.repeat)]
    sent = rates[0][1]
    median = statistics.median(r for r, _ in rates)
    baseline = run_baseline(args.baseline, 0)
    stored = statistics.median(
        run_stored(args.stored_people, args.chunk // 5, seed) for seed in range(args.repeat)
    )
    print(f"decide: {args.people:,} people x {len(JOURNEYS)} candidates: {median:,.0f} decisions/s")
    print(f"  ({sent:,} sent; repeats {[f'{r:,.0f}' for r, _ in rates]})")
    print(
        f"baseline per-person decide: {baseline:,.0f} decisions/s"
        f" (batch is x{median / baseline:.0f})"
    )
    print(f"stored (SQLite, messages + decision log): {stored:,.0f} decisions/s")
    print(f"target >= 50,000 decisions/s on one core: {'MET' if median >= 50_000 else 'MISSED'}")


if __name__ == "__main__":
    main()
