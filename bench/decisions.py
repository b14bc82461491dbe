#!/usr/bin/env python
"""Controller benchmark: the real-time decision per person, against its target.

Target (the issue): decision p99 under 5 ms per person with 20 candidates, including
building the decision log record, excluding the database commit; the end-to-end figure
with the commit is reported beside it.

Every person has 20 open candidates from 10 journeys (2 per journey, created at different
times in the last 20 hours, so a few have expired; channel mixes such as [email],
[push, email], [sms, email]), 0-4 messages sent in the last 7 days, caps of 3 marketing
messages per 7 days and 1 SMS per day, consent and addresses that vary per person, and a
stratum among the 5 lifecycle stages. The uplift `Evidence` is built from tallies of
10 journeys x 3 channels x 5 strata (plus the control arm), thousands of trials each.

1. pure: per person, timed with time.perf_counter_ns: the engine's per-person random
   generator (`airspace.engine.journeys._rng`), `thompson(evidence)`, `decide(...)`
   with policy "airspace", then `record_to_json(record)`. Reported: p50, p95, p99, max
   and decisions/s; the same persons decided with policy "first_come" in the same run
   (interleaved per chunk of 1,000 persons) give the baseline ratio. The orjson encoding
   of the record (done by the database driver on insert) is shown apart.
2. stored: the same decisions against a fresh database (SQLite file; PostgreSQL with
   --postgres-url): the candidate rows, the sent messages and the uplift tallies are
   loaded first; then per person, in its own `db.write()` transaction, as
   `JourneyEngine.decide` does: `open_candidates` + `sent_since` (the reads), `decide`,
   `write_log`, `count_trials`, `write_decisions`, `set_timers` (retries), commit.
   Reported per person: the writes path with the commit (begin + decide + writes +
   commit, reads excluded), the same with the reads, and the commit alone.

Each repeat uses fresh data (same seed) and, for `stored`, a fresh database; the figures
shown are medians over the repeats. Run `python bench/decisions.py --help`;
`--quick` runs 1,000 persons in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402  (fresh_database, machine_info, durability)

from airspace.domain.consent import ConsentRecord, Topic  # noqa: E402
from airspace.domain.controller import (  # noqa: E402
    Candidate,
    Decision,
    DecisionRecord,
    Recipient,
    Sent,
    decide,
    thompson,
    trial,
)
from airspace.domain.decision_log import record_to_json  # noqa: E402
from airspace.domain.uplift import LIFECYCLE, Evidence, Tally, TallyKey  # noqa: E402
from airspace.domain.workspace_settings import Cap, WorkspaceSettings  # noqa: E402
from airspace.engine.journeys import _rng as engine_rng  # noqa: E402
from airspace.store import decisions as log_repo  # noqa: E402
from airspace.store import journeys as repo  # noqa: E402
from airspace.store.database import Database  # noqa: E402
from airspace.store.migrate import migrate  # noqa: E402
from airspace.store.tables import CandidateRow, MessageRow  # noqa: E402

TARGET_P99_MS = 5.0
FULL = {"people": 20_000}
QUICK = {"people": 1_000}
CHUNK = 1_000  # persons generated (untimed) at a time
NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)

SETTINGS = WorkspaceSettings(
    caps=(Cap("marketing", 3, timedelta(days=7)), Cap("channel:sms", 1, timedelta(days=1))),
    fatigue_cost=0.002,
    global_control=0.05,
    message_holdout=0.05,
)
TOPICS = {"promotions": Topic("promotions", "opt_out"), "news": Topic("news", "opt_in")}
ZONES = tuple(
    ZoneInfo(name)
    for name in ("Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo", "UTC")
)
CHANNELS = ("email", "push", "sms")


@dataclass(frozen=True)
class JourneySpec:
    name: str
    channels: tuple[str, ...]
    topic: str | None
    expires: timedelta
    priority: int


JOURNEYS = (
    JourneySpec("cart-rescue", ("email",), None, timedelta(hours=12), 5),
    JourneySpec("browse-abandon", ("push", "email"), "promotions", timedelta(days=1), 2),
    JourneySpec("welcome", ("email",), None, timedelta(days=3), 8),
    JourneySpec("winback", ("sms", "email"), "promotions", timedelta(days=2), 1),
    JourneySpec("replenish", ("email", "push"), None, timedelta(days=2), 3),
    JourneySpec("price-drop", ("push", "email"), "promotions", timedelta(hours=18), 4),
    JourneySpec("back-in-stock", ("sms", "email"), None, timedelta(days=1), 6),
    JourneySpec("loyalty", ("email",), "news", timedelta(days=3), 0),
    JourneySpec("review-request", ("email", "push"), None, timedelta(days=3), 0),
    JourneySpec("cross-sell", ("push", "email", "sms"), "promotions", timedelta(days=1), 2),
)


# --------------------------------------------------------------------------- data


@dataclass
class Person:
    recipient: Recipient
    candidates: list[Candidate]
    history: list[Sent]


def make_tallies(seed: int) -> dict[TallyKey, Tally]:
    """Uplift tallies: 10 journeys x (3 channels treated + control) x 5 strata."""
    rng = random.Random(seed)
    tallies: dict[TallyKey, Tally] = {}
    for journey in JOURNEYS:
        base = rng.uniform(0.02, 0.08)
        lift = rng.uniform(-0.005, 0.03)
        value = rng.uniform(20.0, 120.0)
        for stratum in LIFECYCLE:
            factor = rng.uniform(0.5, 1.5)
            trials = float(rng.randint(300, 3_000))
            conversions = float(round(trials * base * factor))
            tallies[journey.name, "control", "", stratum] = Tally(
                trials, conversions, conversions * value
            )
            for channel in CHANNELS:
                trials = float(rng.randint(1_000, 8_000))
                rate = max(base + lift * rng.uniform(0.2, 1.5), 0.001) * factor
                conversions = float(round(trials * rate))
                tallies[journey.name, "treated", channel, stratum] = Tally(
                    trials, conversions, conversions * value
                )
    return tallies


def profile_id(i: int) -> str:
    return f"prof{i:012d}"


def make_person(i: int, seed: int) -> Person:
    """One person, the same for the same (i, seed)."""
    rng = random.Random(seed * 1_000_003 + i)
    pid = profile_id(i)
    addresses: dict[str, str] = {"webhook": "webhook", "onsite": "onsite"}
    consent: dict[str, ConsentRecord] = {}
    since = NOW - timedelta(days=rng.randint(30, 900))
    if rng.random() < 0.95:
        addresses["email"] = f"{pid}@example.com"
        status = "opted_in" if rng.random() < 0.9 else "opted_out"
        consent["channel:email"] = ConsentRecord(status, "signup", since)  # type: ignore[arg-type]
    if rng.random() < 0.6:
        addresses["sms"] = f"+3361{i:08d}"
        if rng.random() < 0.7:
            consent["channel:sms"] = ConsentRecord("opted_in", "checkout", since)
    if rng.random() < 0.5:
        addresses["push"] = f"push-token-{i:012d}"
    if rng.random() < 0.3:
        consent["topic:news"] = ConsentRecord("opted_in", "preferences", since)
    if rng.random() < 0.1:
        consent["topic:promotions"] = ConsentRecord("opted_out", "preferences", since)
    recipient = Recipient(
        pid,
        consent,
        addresses,
        TOPICS,
        frozenset(),
        rng.choice(ZONES),
        suppressed={"email": "hard bounce"} if rng.random() < 0.02 else {},
        engaged={"email": rng.randint(0, 20), "push": rng.randint(0, 6), "sms": rng.randint(0, 3)},
        stratum=rng.choice(LIFECYCLE),
    )
    history = sorted(
        (
            Sent(
                NOW - timedelta(minutes=rng.randint(10, 7 * 24 * 60 - 1)),
                rng.choices(CHANNELS, weights=(6, 3, 1))[0],
                rng.choice(JOURNEYS).name,
                rng.choice((None, "promotions")),
            )
            for _ in range(rng.randint(0, 4))
        ),
        key=lambda s: s.at,
    )
    candidates = []
    for j, journey in enumerate(JOURNEYS):
        for k in range(2):
            # The first proposal of a journey is recent, the second up to 20 hours old (so
            # that a few of the short-lived ones have expired).
            minutes = rng.randint(1, 6 * 60) if k == 0 else rng.randint(60, 20 * 60)
            created = NOW - timedelta(minutes=minutes, seconds=rng.randint(0, 59))
            candidates.append(
                Candidate(
                    id=f"{pid}-{j:02d}{k}",
                    profile_id=pid,
                    enrollment_id=f"{pid}-e{j:02d}",
                    journey_id=journey.name,
                    step_id=f"step-{k + 1}",
                    channels=journey.channels,
                    content=f"{journey.name}-{k + 1}",
                    created_at=created,
                    expires_at=created + journey.expires,
                    topic=journey.topic,
                    priority=journey.priority,
                    context={"product_id": f"sku-{rng.randrange(5000):05d}", "price": 19.9},
                )
            )
    return Person(recipient, candidates, history)


def people_in_chunks(count: int, seed: int) -> Iterator[list[Person]]:
    for start in range(0, count, CHUNK):
        yield [make_person(i, seed) for i in range(start, min(start + CHUNK, count))]


def decide_like_engine(
    person: Person,
    candidates: Sequence[Candidate],
    history: Sequence[Sent],
    evidence: Evidence,
    policy: str,
) -> DecisionRecord:
    """What `JourneyEngine.decide` does per person before writing."""
    rng = engine_rng(person.recipient.profile_id, NOW)
    return decide(
        candidates,
        person.recipient,
        history,
        SETTINGS,
        NOW,
        policy=policy,  # type: ignore[arg-type]
        estimator=thompson(evidence),
        rng=rng,
    )


# --------------------------------------------------------------------------- helpers


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def summary_ms(ns: Sequence[int]) -> dict[str, float]:
    ms = [v / 1e6 for v in ns]
    return {
        "p50_ms": percentile(ms, 0.5),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms, default=float("nan")),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def maybe_profile(path: str | None) -> Iterator[cProfile.Profile | None]:
    if not path:
        yield None
        return
    profiler = cProfile.Profile()
    yield profiler
    profiler.dump_stats(path)


def top_of_profile(path: str, lines: int = 30) -> str:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def wait_idle(limit: float) -> None:
    if limit:
        share = ingest.wait_until_idle(limit)
        log(f"machine {share:.0f}% busy before the run")


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            summary[key] = value
        else:
            summary[key] = statistics.median(r[key] for r in runs)
    summary["runs"] = runs
    return summary


# --------------------------------------------------------------------------- 1. pure


def run_pure(  # noqa: C901
    count: int, seed: int, profile: cProfile.Profile | None
) -> dict[str, Any]:
    evidence = Evidence(make_tallies(seed), SETTINGS.prior_strength)
    perf = time.perf_counter_ns
    timed: dict[str, list[int]] = {"airspace": [], "first_come": []}
    parts: dict[str, list[int]] = {"decide": [], "record": [], "encode": []}
    scored: list[int] = []  # airspace persons with at least one contender (Thompson draws)
    cpu: list[int] = []  # airspace: this thread's CPU time for the same work
    cpu_clock = time.thread_time_ns
    outcomes: dict[str, int] = {}
    busy0, total0 = ingest._machine_busy()
    for chunk in people_in_chunks(count, seed):
        for policy in ("airspace", "first_come"):
            mine = timed[policy]
            if profile is not None and policy == "airspace":
                profile.enable()
            for person in chunk:
                c0 = cpu_clock()
                t0 = perf()
                record = decide_like_engine(
                    person, person.candidates, person.history, evidence, policy
                )
                t1 = perf()
                document = record_to_json(record)
                t2 = perf()
                c2 = cpu_clock()
                orjson.dumps(document)
                t3 = perf()
                mine.append(t2 - t0)
                if policy == "airspace":
                    cpu.append(c2 - c0)
                    parts["decide"].append(t1 - t0)
                    parts["record"].append(t2 - t1)
                    parts["encode"].append(t3 - t2)
                    if any(a.scores for a in record.assessments):
                        scored.append(t2 - t0)
                    for a in record.assessments:
                        outcomes[a.decision.outcome] = outcomes.get(a.decision.outcome, 0) + 1
            if profile is not None and policy == "airspace":
                profile.disable()
    busy1, total1 = ingest._machine_busy()
    result: dict[str, Any] = {}
    for policy, values in timed.items():
        for key, value in summary_ms(values).items():
            result[f"{policy}_{key}"] = value
        result[f"{policy}_per_s"] = len(values) / (sum(values) / 1e9)
    result["ratio_p99"] = result["airspace_p99_ms"] / result["first_come_p99_ms"]
    result["ratio_mean"] = result["airspace_mean_ms"] / result["first_come_mean_ms"]
    for part, values in parts.items():
        stats = summary_ms(values)
        result[f"{part}_p50_ms"] = stats["p50_ms"]
        result[f"{part}_p99_ms"] = stats["p99_ms"]
    stats = summary_ms(cpu)
    result["cpu_p50_ms"] = stats["p50_ms"]
    result["cpu_p99_ms"] = stats["p99_ms"]
    stats = summary_ms(scored)
    result["scored_share"] = len(scored) / max(count, 1)
    result["scored_p50_ms"] = stats["p50_ms"]
    result["scored_p99_ms"] = stats["p99_ms"]
    decided = max(sum(outcomes.values()), 1)
    for outcome in ("send", "withhold", "defer", "suppress"):
        result[f"share_{outcome}"] = outcomes.get(outcome, 0) / decided
    result["machine_busy_pct"] = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
    return result


# --------------------------------------------------------------------------- 2. stored


def candidate_row(c: Candidate) -> dict[str, Any]:
    """The row `write_people` stores for a pending proposal (see `_candidate_row`)."""
    return {
        "id": c.id,
        "profile_id": c.profile_id,
        "enrollment_id": c.enrollment_id,
        "journey_id": c.journey_id,
        "step_id": c.step_id,
        "spec": {
            "channels": list(c.channels),
            "content": c.content,
            "topic": c.topic,
            "value": c.value,
            "urgent": c.urgent,
            "transactional": c.transactional,
            "priority": c.priority,
            "tier": c.tier,
            "context": dict(c.context),
        },
        "layer": "treated",
        "status": "pending",
        "reason": "",
        "channel": None,
        "created_at": c.created_at,
        "expires_at": c.expires_at,
        "decided_at": None,
    }


def message_row(person: Person, n: int, s: Sent) -> dict[str, Any]:
    pid = person.recipient.profile_id
    return {
        "idempotency_key": f"{pid}-h{n}",
        "profile_id": pid,
        "candidate_id": None,
        "journey_id": s.journey_id,
        "step_id": "step-1",
        "channel": s.channel,
        "address": person.recipient.addresses.get(s.channel, ""),
        "topic": s.topic,
        "content": f"{s.journey_id}-1",
        "body": {"content": f"{s.journey_id}-1", "context": {}},
        "transactional": False,
        "status": "captured",
        "sent_at": s.at,
    }


def load(db: Database, count: int, seed: int) -> None:
    """Tallies, pending candidate rows and the messages already sent, in bulk."""
    with db.write() as conn:
        log_repo.add_tallies(conn, make_tallies(seed))
    for chunk in people_in_chunks(count, seed):
        with db.write() as conn:
            repo.insert_rows(
                conn, CandidateRow, [candidate_row(c) for p in chunk for c in p.candidates]
            )
            repo.insert_rows(
                conn,
                MessageRow,
                [message_row(p, n, s) for p in chunk for n, s in enumerate(p.history)],
            )


def run_stored(url: str, count: int, seed: int) -> dict[str, Any]:
    db = Database(url, sqlite_synchronous=ingest.SYNCHRONOUS)
    try:
        migrate(db)
        started = time.perf_counter()
        load(db, count, seed)
        log(f"  loaded {count:,} persons in {time.perf_counter() - started:.1f} s")
        with db.read() as conn:
            evidence = Evidence(log_repo.tallies(conn), SETTINGS.prior_strength)
        longest = max(c.per for c in SETTINGS.caps)
        perf = time.perf_counter_ns
        writes: list[int] = []  # begin + decide + writes + commit (reads excluded)
        total: list[int] = []  # the same with the reads
        reads: list[int] = []
        commits: list[int] = []
        sent = 0
        wall0 = time.perf_counter()
        busy0, total0 = ingest._machine_busy()
        for chunk in people_in_chunks(count, seed):
            for person in chunk:
                pid = person.recipient.profile_id
                t0 = perf()
                with db.write() as conn:
                    ta = perf()
                    candidates = repo.open_candidates(conn, [pid]).get(pid, [])
                    history = repo.sent_since(conn, [pid], NOW - longest).get(pid, [])
                    t1 = perf()
                    record = decide_like_engine(person, candidates, history, evidence, "airspace")
                    decided: list[tuple[Candidate, Decision, str]] = []
                    trials: list[log_repo.Trial] = []
                    addresses = person.recipient.addresses
                    for a in record.assessments:
                        d = a.decision
                        decided.append((a.candidate, d, addresses.get(d.channel or "", "")))
                        found = trial(a, SETTINGS)
                        if found is not None:
                            arm, channel, weight = found
                            trials.append(
                                (d.candidate_id, a.candidate.journey_id, arm, channel,
                                 person.recipient.stratum, weight, NOW + timedelta(days=7))
                            )  # fmt: skip
                    retry = [d.retry_at for d in record.decisions if d.retry_at is not None]
                    log_repo.write_log(conn, [record])
                    log_repo.count_trials(conn, trials)
                    repo.write_decisions(conn, decided, NOW)
                    repo.set_timers(conn, [(pid, "decide", "", min(retry))] if retry else [])
                    t2 = perf()
                t3 = perf()
                sent += sum(1 for _, d, _ in decided if d.outcome == "send")
                reads.append(t1 - ta)
                commits.append(t3 - t2)
                total.append(t3 - t0)
                writes.append(t3 - t0 - (t1 - ta))
        wall = time.perf_counter() - wall0
        busy1, total1 = ingest._machine_busy()
        result: dict[str, Any] = {}
        for name, values in (
            ("writes", writes),
            ("total", total),
            ("reads", reads),
            ("commit", commits),
        ):
            for key, value in summary_ms(values).items():
                result[f"{name}_{key}"] = value
        result["per_s"] = count / wall
        result["sent"] = sent
        result["machine_busy_pct"] = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
        result["durability"] = (
            f"WAL, synchronous={ingest.SYNCHRONOUS}" if db.is_sqlite else ingest.durability(url)
        )
        return result
    finally:
        db.dispose()


# --------------------------------------------------------------------------- report


def table(
    title: str,
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]],
    cols: dict[str, dict[str, Any]],
) -> None:
    width = 50
    print()
    print(title)
    header = f"{'figure':<{width}}" + "".join(f"{k:>16}" for k in cols)
    print(header)
    print("-" * len(header))
    for label, cell in rows:
        print(f"{label:<{width}}" + "".join(f"{cell(r):>16}" for r in cols.values()))


def ms(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: f"{r[key]:.3f}"


def print_pure(r: dict[str, Any]) -> None:
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("p50, ms", ms("{}_p50_ms")),
        ("p95, ms", ms("{}_p95_ms")),
        ("p99, ms (target < 5)", ms("{}_p99_ms")),
        ("max, ms", ms("{}_max_ms")),
        ("mean, ms", ms("{}_mean_ms")),
        ("decisions/s (one core, timed part only)", lambda r: f"{r['{}_per_s']:,.0f}"),
    ]
    cols = {p: {k.replace(p, "{}", 1): v for k, v in r.items()} for p in ("airspace", "first_come")}
    table("pure: decide + decision log record, per person (20 candidates)", rows, cols)
    print(f"  ratio airspace / first_come: p99 {r['ratio_p99']:.2f}, mean {r['ratio_mean']:.2f}")
    print(
        f"  airspace parts, p50 / p99 ms: decide (rng + thompson + decide) "
        f"{r['decide_p50_ms']:.3f} / {r['decide_p99_ms']:.3f}; record_to_json "
        f"{r['record_p50_ms']:.3f} / {r['record_p99_ms']:.3f}; orjson encode (not in the "
        f"figure, done on insert) {r['encode_p50_ms']:.3f} / {r['encode_p99_ms']:.3f}"
    )
    print(
        f"  airspace on CPU time (thread_time, blind to other processes): "
        f"p50 {r['cpu_p50_ms']:.3f} ms, p99 {r['cpu_p99_ms']:.3f} ms"
    )
    print(
        f"  persons with scored contenders (Thompson draws): {r['scored_share']:.0%}, "
        f"p50 {r['scored_p50_ms']:.3f} ms, p99 {r['scored_p99_ms']:.3f} ms"
    )
    print(
        f"  candidate outcomes: send {r['share_send']:.1%}, withhold {r['share_withhold']:.1%}, "
        f"defer {r['share_defer']:.1%}, suppress {r['share_suppress']:.1%}; "
        f"machine {r['machine_busy_pct']:.0f}% busy (all cores)"
    )


def print_stored(results: dict[str, dict[str, Any]]) -> None:
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = []
    for name, label in (
        ("writes", "decide + writes + commit (no reads)"),
        ("total", "reads + decide + writes + commit"),
    ):
        for stat in ("p50", "p95", "p99", "max"):
            rows.append((f"{label} {stat}, ms", ms(f"{name}_{stat}_ms")))
    rows += [
        ("reads (open_candidates + sent_since) p50, ms", ms("reads_p50_ms")),
        ("reads p99, ms", ms("reads_p99_ms")),
        ("commit p50, ms", ms("commit_p50_ms")),
        ("commit p99, ms", ms("commit_p99_ms")),
        ("persons/s (one transaction each)", lambda r: f"{r['per_s']:,.0f}"),
        ("messages sent", lambda r: f"{r['sent']:,.0f}"),
        ("machine busy (all cores), %", lambda r: f"{r['machine_busy_pct']:.0f}"),
    ]
    table("stored: one transaction per person, with the commit", rows, results)
    for kind, r in results.items():
        print(f"  {kind}: {r['durability']}")


def main(argv: list[str] | None = None) -> int:  # noqa: C901
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("pure", "stored", "all"), default="all")
    parser.add_argument(
        "--people",
        type=int,
        default=None,
        help=f"persons decided (full {FULL['people']:,}; --quick {QUICK['people']:,})",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=20,
        choices=(20,),
        help="open candidates per person (10 journeys x 2; only 20 is built)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; medians shown")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AIRSPACE_TEST_POSTGRES_URL"),
        help="PostgreSQL URL of a user who may create databases "
        "(default: $AIRSPACE_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the machine to be idle",
    )
    parser.add_argument(
        "--cprofile", metavar="PATH", help="cProfile the airspace policy of the pure scenario"
    )
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if args.scenario != "pure" and "postgres" in kinds and not args.postgres_url:
        parser.error("PostgreSQL needs --postgres-url or AIRSPACE_TEST_POSTGRES_URL")
    count = args.people or (QUICK if args.quick else FULL)["people"]
    repeat = max(args.repeat, 1)
    info = ingest.machine_info()
    pure: dict[str, Any] | None = None
    stored: dict[str, dict[str, Any]] = {}
    if args.scenario in ("pure", "all"):
        runs = []
        with maybe_profile(args.cprofile) as profiler:
            for run in range(repeat):
                wait_idle(args.wait_idle)
                log(f"pure, run {run + 1} ...")
                runs.append(run_pure(count, args.seed, profiler if run == 0 else None))
                log(
                    f"  airspace p99 {runs[-1]['airspace_p99_ms']:.3f} ms, "
                    f"first_come p99 {runs[-1]['first_come_p99_ms']:.3f} ms"
                )
        pure = median_of(runs)
    if args.scenario in ("stored", "all"):
        workdir = Path(tempfile.mkdtemp(prefix="airspace-decisions-"))
        try:
            for kind in kinds:
                runs = []
                for run in range(repeat):
                    wait_idle(args.wait_idle)
                    log(f"stored on {kind}, run {run + 1} ...")
                    with ingest.fresh_database(
                        kind, args.postgres_url, workdir, f"decisions{run}"
                    ) as url:
                        runs.append(run_stored(url, count, args.seed))
                    log(
                        f"  writes+commit p99 {runs[-1]['writes_p99_ms']:.3f} ms, "
                        f"with reads p99 {runs[-1]['total_p99_ms']:.3f} ms"
                    )
                stored[kind] = median_of(runs)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"Decisions: {'quick' if args.quick else 'full'} size, {count:,} persons x "
        f"{args.candidates} candidates, median of {repeat} run(s); "
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"Python {info['python']}; {info['date']}; code {info['code_sha256']}"
    )
    if args.cprofile:
        print("  (--cprofile: the airspace figures of the first pure run include cProfile's cost)")
    if pure is not None:
        print_pure(pure)
    if stored:
        print_stored(stored)
    print()
    print("Summary (medians over the repeats)")
    met = None
    if pure is not None:
        met = pure["airspace_p99_ms"] < TARGET_P99_MS
        print(
            f"  pure airspace: p50 {pure['airspace_p50_ms']:.3f} ms, "
            f"p99 {pure['airspace_p99_ms']:.3f} ms, max {pure['airspace_max_ms']:.3f} ms, "
            f"{pure['airspace_per_s']:,.0f} decisions/s; on CPU time p99 "
            f"{pure['cpu_p99_ms']:.3f} ms"
        )
        print(
            f"  pure first_come: p50 {pure['first_come_p50_ms']:.3f} ms, "
            f"p99 {pure['first_come_p99_ms']:.3f} ms; airspace / first_come p99 "
            f"{pure['ratio_p99']:.2f}x"
        )
    for kind, r in stored.items():
        print(
            f"  stored {kind}, with commit: p50 {r['writes_p50_ms']:.3f} ms, "
            f"p99 {r['writes_p99_ms']:.3f} ms (with reads: p50 {r['total_p50_ms']:.3f}, "
            f"p99 {r['total_p99_ms']:.3f}; commit p99 {r['commit_p99_ms']:.3f})"
        )
    if met is not None:
        print(f"  target < 5 ms p99 (pure, decide + log record): {'MET' if met else 'MISSED'}")
    if args.cprofile:
        log(top_of_profile(args.cprofile))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
