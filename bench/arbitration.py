#!/usr/bin/env python
"""Arbitration benchmark: each policy on the same worlds and seeds, against the oracle.

For each world (standard, misaligned), seed and policy (airspace, oracle,
stratum_oracle, measured_oracle, first_come, priority, random) it runs
`airspace.sim.driver.simulate`: the world drives the real engine (tracking calls in,
the worker on a simulated clock, messages out of the capture channel, purchases and
unsubscribes back in) on a fresh SQLite database. It prints per world and policy,
over the seeds, the mean and the worst of: true incremental conversions,
incremental revenue net of message cost, messages sent, unsubscribes, cap
violations, and the share of the
oracle's value captured, (V(policy) - V(first-come)) / (V(oracle) - V(first-come)).
It also prints V(oracle) / V(first-come), which must be at least 1.5 for the share
to mean something, and whether the targets are met (airspace: share >= 80% on
average and >= 70% in every seed; more net value than first-come with fewer
messages and fewer unsubscribes; no cap violation by any policy).

Runs go in parallel (`--jobs`); every finished run is appended to `--results`
(JSON lines), so a long benchmark can be resumed (`--resume`) and its figures
re-printed (`--report`). Each run records the fingerprint of the code it ran
(`code`); `--resume` skips only runs of the code checked out, so a benchmark too
long for one sitting is completed over several on the same code
(`bench/results/` keeps the committed ones).

    python bench/arbitration.py --quick                  # a small world, in minutes
    python bench/arbitration.py --customers 50000 --days 60 --seeds 5 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

import ingest

from airspace.sim.driver import POLICIES, simulate

WORLDS = ("standard", "misaligned")


def run_one(job: tuple[str, str, int, int, int]) -> dict[str, Any]:
    world, policy, seed, customers, days = job
    began = time.perf_counter()
    result = simulate(world, policy, days=days, customers=customers, seed=seed)  # type: ignore[arg-type]
    return {
        "world": world,
        "policy": policy,
        "seed": seed,
        "customers": customers,
        "days": days,
        "truth": {
            **asdict(result.truth),
            "by_journey": {f"{j}/{kind}": v for (j, kind), v in result.truth.by_journey.items()},
        },
        "net_value": result.net_value,
        "sent": result.sent,
        "decisions": result.decisions,
        "cap_violations": result.cap_violations,
        "seconds": time.perf_counter() - began,
        "code": ingest.code_fingerprint(),
    }


def _done(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(by: dict[tuple[str, int], dict[str, Any]], seeds: list[int], top: int = 6) -> None:
    """Print where the learner's value falls short of the oracle's, per journey and type.

    Means over `seeds` of each cell's true value (the world's customer types, which no
    policy but the oracle sees), and the value of the cells where the learner did harm.
    """
    cells: dict[str, list[tuple[float, float, float]]] = {}
    harm = []
    for s in seeds:
        mine = by["airspace", s]["truth"]["by_journey"]
        theirs = by["oracle", s]["truth"]["by_journey"]
        harm.append(sum(v for _, v in mine.values() if v < 0))
        for cell in mine.keys() | theirs.keys():
            sent, value = mine.get(cell, (0, 0.0))
            their_value = theirs.get(cell, (0, 0.0))[1]
            cells.setdefault(cell, []).append(
                (value - their_value, sent, theirs.get(cell, (0, 0))[0])
            )
    rows = sorted(
        (
            statistics.mean(d for d, _, _ in v),
            statistics.mean(n for _, n, _ in v),
            statistics.mean(n for _, _, n in v),
            cell,
        )
        for cell, v in cells.items()
    )
    gap = statistics.mean(
        by["oracle", s]["net_value"] - by["airspace", s]["net_value"] for s in seeds
    )
    print(
        f"learner vs oracle: {gap:,.0f} less net value; cells where the learner did harm:"
        f" {statistics.mean(harm):,.0f}. Largest shortfalls (journey/type: value, messages vs"
        " the oracle's):"
    )
    for diff, sent, theirs, cell in rows[:top]:
        print(f"  {cell:<40} {diff:>10,.0f} {sent:>9,.0f} vs {theirs:>9,.0f}")


def report(results: Iterable[dict[str, Any]]) -> bool:
    """Print the comparison; return whether every target is met."""
    rows = list(results)
    met = True
    caps_ok = True
    for world in sorted({r["world"] for r in rows}):
        mine = [r for r in rows if r["world"] == world]
        seeds = sorted({r["seed"] for r in mine})
        by = {(r["policy"], r["seed"]): r for r in mine}
        sizes = sorted({(r["customers"], r["days"]) for r in mine})
        codes = sorted({r.get("code", "unrecorded") for r in mine})
        complete = [
            s for s in seeds if all((p, s) in by for p in ("airspace", "oracle", "first_come"))
        ]
        # Means over the same seeds for every policy: a seed still missing one of the three
        # is left out of the table while any seed has all three.
        shown = complete or seeds
        print(f"\n== {world}: {sizes}, seeds {shown}, code {', '.join(codes)}")
        left = sum(1 for r in mine if r["seed"] not in shown)
        if left:
            print(f"({left} run(s) of seeds without airspace, oracle and first-come left out)")
        header = (
            f"{'policy':<14} {'incr.conv':>10} {'(worst)':>9} {'net value':>11} {'(worst)':>10}"
            f" {'sent':>8} {'(most)':>8} {'unsubs':>7} {'(most)':>7} {'cap viol.':>9}"
            f" {'share':>7} {'(worst)':>8}"
            f" {'min/run':>8} {'seeds':>5}"
        )
        print(header)
        shares: dict[str, list[float]] = {}
        for policy in POLICIES:
            runs = [by[policy, s] for s in shown if (policy, s) in by]
            if not runs:
                continue
            share = []
            for s in complete:
                if (policy, s) not in by:
                    continue
                v0, v1 = by["first_come", s]["net_value"], by["oracle", s]["net_value"]
                if v1 > v0:
                    share.append((by[policy, s]["net_value"] - v0) / (v1 - v0))
            shares[policy] = share
            conv = [r["truth"]["incremental_conversions"] for r in runs]
            net = [r["net_value"] for r in runs]
            sent = [r["sent"] for r in runs]
            unsubs = [r["truth"]["unsubscribes"] for r in runs]
            print(
                f"{policy:<14} {statistics.mean(conv):>10.1f} {min(conv):>9.1f}"
                f" {statistics.mean(net):>11,.0f} {min(net):>10,.0f}"
                f" {statistics.mean(sent):>8,.0f} {max(sent):>8,}"
                f" {statistics.mean(unsubs):>7,.0f} {max(unsubs):>7,}"
                f" {sum(r['cap_violations'] for r in runs):>9}"
                + (
                    f" {statistics.mean(share):>7.0%} {min(share):>8.0%}"
                    if share
                    else f" {'':>7} {'':>8}"
                )
                + f" {statistics.mean(r['seconds'] for r in runs) / 60:>8.1f}"
                + f" {len(runs):>5}"  # a policy not yet run on every seed shows fewer
            )
            caps_ok &= sum(r["cap_violations"] for r in runs) == 0
        if complete:
            ratio = [
                by["oracle", s]["net_value"] / by["first_come", s]["net_value"]
                for s in complete
                if by["first_come", s]["net_value"] > 0
            ]
            air = [by["airspace", s] for s in complete]
            first = [by["first_come", s] for s in complete]
            share = shares.get("airspace", [])
            checks = {
                "airspace share >= 80% (mean)": bool(share) and statistics.mean(share) >= 0.8,
                "airspace share >= 70% (every seed)": bool(share) and min(share) >= 0.7,
                "airspace net value > first-come": statistics.mean(r["net_value"] for r in air)
                > statistics.mean(r["net_value"] for r in first),
                "airspace sends fewer messages": statistics.mean(r["sent"] for r in air)
                < statistics.mean(r["sent"] for r in first),
                "airspace has fewer unsubscribes": statistics.mean(
                    r["truth"]["unsubscribes"] for r in air
                )
                < statistics.mean(r["truth"]["unsubscribes"] for r in first),
            }
            # Asked of the standard world, so that the share means something there.
            if world == "standard":
                checks["oracle / first-come >= 1.5"] = bool(ratio) and statistics.mean(ratio) >= 1.5
            if ratio:
                print(f"oracle / first-come net value: {statistics.mean(ratio):.2f}")
            for name, ok in checks.items():
                print(f"  {'MET   ' if ok else 'MISSED'} {name}")
                met &= ok
            losses(by, complete)
    print(f"\n{'MET   ' if caps_ok else 'MISSED'} no policy ever violated a cap")
    return met and caps_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--results", type=Path, default=Path("arbitration-results.jsonl"))
    parser.add_argument("--resume", action="store_true", help="skip runs already in --results")
    parser.add_argument("--report", action="store_true", help="only print --results")
    parser.add_argument("--quick", action="store_true", help="1,000 customers, 21 days, 2 seeds")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.days, args.seeds = 1_000, 21, 2
    print(json.dumps(ingest.machine_info()))
    if args.report:
        report(_done(args.results))
        return
    done = _done(args.results) if args.resume else []
    if not args.resume:
        args.results.write_text("")
    code = ingest.code_fingerprint()
    done = [r for r in done if r.get("code") == code]
    finished = {(r["world"], r["policy"], r["seed"], r["customers"], r["days"]) for r in done}
    jobs = [
        (world, policy, seed, args.customers, args.days)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
        for world in args.worlds
        for policy in args.policies
        if (world, policy, seed, args.customers, args.days) not in finished
    ]
    print(f"{len(jobs)} run(s), {args.jobs} at a time", flush=True)
    results = list(done)
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for result in pool.imap_unordered(run_one, jobs):
            results.append(result)
            with args.results.open("a") as out:
                out.write(json.dumps(result) + "\n")
            print(
                f"  {result['world']:<10} {result['policy']:<10} seed {result['seed']}:"
                f" net value {result['net_value']:,.0f}, sent {result['sent']:,},"
                f" {result['seconds'] / 60:.1f} min",
                flush=True,
            )
    report(results)


if __name__ == "__main__":
    main()
