#!/usr/bin/env python
"""Calibration: the learning controller's uplift estimates beside the world's truth.

Runs the `airspace` policy on a simulated world and, every `--every` days, prints for
each (journey, stratum) the learner has scored often enough: the world's true uplift
averaged over the candidates scored there (`World.uplift`, as the stratum oracle sees
it), the learner's posterior mean and standard deviation (`Evidence.stratum_uplift`),
how many standard deviations apart they are, and the cell's effective control and
treated trials. Last, per journey and overall, the mean error and the mean absolute
error weighted by candidates. A learner whose errors are noise shows |z| mostly below
2 and a bias near 0; a bias that keeps its sign across strata and days is a fault of
the estimator, not of the data.

The controller decides exactly as in `airspace sim` (the same net value, to the unit):
the estimator is the controller's own Thompson estimator, wrapped to record the truth.

    python bench/calibration.py --customers 5000 --seed 1             # about 6 minutes
    python bench/calibration.py --world misaligned --every 10 --days 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from airspace.domain import controller
from airspace.domain.controller import Candidate, Guess, Recipient
from airspace.domain.uplift import Evidence
from airspace.sim.driver import Simulation, load_world
from airspace.store import decisions as log_repo
from airspace.store.definitions import current_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", default="standard")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=int, default=20, help="report every N days")
    parser.add_argument("--least", type=int, default=100, help="candidates a cell needs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airspace-calibration-") as folder:
        run(args, f"sqlite:///{Path(folder) / 'sim.db'}")


def run(args: argparse.Namespace, database_url: str) -> None:
    world = load_world(args.world, args.customers, args.seed)
    sim = Simulation(world, "airspace", database_url=database_url)
    journeys = sim.worker.journeys
    # (journey, stratum) -> sum of the true uplift, candidates
    truth: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])

    def recording(
        pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[Guess]:
        assert journeys._evidence is not None  # read before every round of decisions
        guesses = controller.thompson(journeys._evidence)(pairs, recipient, now)
        seen: set[str] = set()
        for (candidate, _), (uplift, _) in zip(
            pairs, sim._truth(pairs, recipient, now), strict=True
        ):
            if candidate.id not in seen:  # its first channel's truth
                seen.add(candidate.id)
                cell = truth[candidate.journey_id, recipient.stratum]
                cell[0] += uplift
                cell[1] += 1.0
        return guesses

    journeys.estimator = recording

    def report(day: int, days: int) -> None:
        if day % args.every and day != days:
            return
        with sim.services.db.read() as conn:
            settings = current_workspace(conn).settings
            tallies = log_repo.tallies(conn)
        evidence = Evidence(tallies, settings.prior_strength)
        trials: dict[tuple[str, str, str], float] = defaultdict(float)  # journey, arm, stratum
        for (journey, arm, _, stratum), tally in tallies.items():
            trials[journey, arm, stratum] += tally.trials
        print(f"\nday {day}")
        print(
            f"{'journey':20} {'stratum':28} {'scored':>7} {'truth':>8} {'estimate':>8}"
            f" {'sd':>7} {'z':>6} {'control':>8} {'treated':>8}"
        )
        errors: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for (journey, stratum), (total, count) in sorted(truth.items()):
            if count < args.least:
                continue
            mean, variance = evidence.stratum_uplift(journey, stratum)
            sd = variance**0.5
            true = total / count
            control = trials[journey, "control", stratum]
            treated = trials[journey, "treated", stratum]
            print(
                f"{journey:20} {stratum:28} {int(count):7d} {true:8.4f} {mean:8.4f}"
                f" {sd:7.4f} {(mean - true) / sd:6.2f} {control:8.0f} {treated:8.0f}"
            )
            for key in (journey, "all"):
                errors[key][0] += (mean - true) * count
                errors[key][1] += abs(mean - true) * count
                errors[key][2] += count
        print(f"{'':20} {'bias':>8} {'mean abs':>8}")
        for key, (bias, absolute, count) in errors.items():
            print(f"{key:20} {bias / count:8.4f} {absolute / count:8.4f}")
        sys.stdout.flush()

    try:
        result = sim.run(args.days, progress=report)
    finally:
        sim.close()
    print(f"\nnet value {result.net_value:,.0f}, {result.sent:,} messages sent")


if __name__ == "__main__":
    main()
