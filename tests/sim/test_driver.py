"""The simulator's quick mode: a small world through the real engine under every policy."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airspace.domain.controller import Candidate, Recipient
from airspace.domain.errors import InvalidInput
from airspace.engine import worker
from airspace.sim.driver import (
    POLICIES,
    SimResult,
    Simulation,
    load_world,
    share_of_oracle,
    simulate,
)
from tests.test_cli_definitions import airspace

CUSTOMERS, DAYS = 300, 5


@pytest.fixture(scope="module")
def results() -> dict[str, SimResult]:
    return {p: simulate("standard", p, days=DAYS, customers=CUSTOMERS, seed=3) for p in POLICIES}


def test_every_policy_runs_the_engine_and_keeps_every_cap(results: dict[str, SimResult]) -> None:
    for policy, result in results.items():
        assert result.cap_violations == 0, policy
        assert result.decisions > 0, policy
        assert result.sent > 0, policy
        assert result.truth.messages == result.sent, policy  # every message reached the world
        assert result.truth.purchases > 0, policy
        assert (result.customers, result.days, result.policy) == (CUSTOMERS, DAYS, policy)


def test_the_truth_says_where_the_value_went(results: dict[str, SimResult]) -> None:
    for policy, result in results.items():
        found = result.truth.by_journey
        assert sum(m for m, _ in found.values()) == result.truth.messages, policy
        assert sum(v for _, v in found.values()) == pytest.approx(result.net_value), policy
        assert {kind for _, kind in found} <= {
            "bargain-hunter",
            "loyal-high-spender",
            "occasional",
            "lapsing",
            "new",
        }, policy


def test_a_run_is_repeatable_however_slow_the_machine(
    results: dict[str, SimResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A machine where every batch seems to take a minute: a paced worker would shrink its
    # batches, which changes what is decided together. The simulator's does not.
    ticks = iter(range(0, 10**9, 60))
    monkeypatch.setattr(worker.time, "perf_counter", lambda: float(next(ticks)))
    again = simulate("standard", "airspace", days=DAYS, customers=CUSTOMERS, seed=3)
    assert again.truth == results["airspace"].truth
    assert again.sent == results["airspace"].sent


def test_the_share_of_the_oracle() -> None:
    assert share_of_oracle({"first_come": 10.0, "oracle": 30.0, "airspace": 25.0}) == 0.75
    assert share_of_oracle({"first_come": 10.0, "oracle": 8.0, "airspace": 25.0}) is None


def test_the_sim_command() -> None:
    done = airspace("sim", "--policy", "first_come", "--days", "1", "--customers", "50")
    assert done.returncode == 0, done.stderr
    assert "first_come" in done.stdout
    assert "cap violations" in done.stdout
    assert "by journey" not in done.stdout
    broken_down = airspace(
        "sim", "--policy", "first_come", "--days", "2", "--customers", "50", "--breakdown"
    )
    assert broken_down.returncode == 0, broken_down.stderr
    assert "net value (messages) by journey and customer type" in broken_down.stdout
    assert "newsletter" in broken_down.stdout
    wrong = airspace("sim", "--policy", "loudest", "--days", "1")
    assert wrong.returncode == 2
    assert "unknown policy 'loudest'" in wrong.stdout
    nowhere = airspace("sim", "--world", "no.such:World", "--days", "1", "--customers", "5")
    assert nowhere.returncode == 2
    assert "cannot load world 'no.such:World'" in nowhere.stdout


REFUSED = "^(cannot load world|.* is not a class|cannot make world|.* does not implement the World)"


@pytest.mark.parametrize(
    "module", ["builtins", "json", "os", "airspace.sim.world", "airspace.sim.driver"]
)
def test_any_name_that_is_not_a_world_is_refused_with_a_reason(module: str) -> None:
    """Every name of these modules (functions, classes that take other arguments, the
    World protocol itself, constants) is refused as `InvalidInput`, never a crash."""
    for name in dir(importlib.import_module(module)):
        with pytest.raises(InvalidInput, match=REFUSED):
            load_world(f"{module}:{name}", customers=5, seed=1)
    with pytest.raises(InvalidInput, match="an absolute module path"):
        load_world(f".{module}:World", customers=5, seed=1)


def test_the_stratum_oracle_knows_each_cells_average_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """It scores with the true uplift averaged over the candidates of the same journey,
    channel and stratum seen so far: what unlimited data could teach the controller."""
    simulation = Simulation(load_world("standard", 10, 1), "stratum_oracle")
    try:
        truths = iter([(0.04, 50.0), (0.00, 100.0), (0.02, 80.0), (0.10, 60.0)])
        monkeypatch.setattr(simulation.world, "uplift", lambda *_: next(truths))
        simulation._users.update({"p1": "u000001", "p2": "u000002"})
        now = simulation.clock.now()
        cart = Candidate("c1", "p1", "e1", "cart", "s", ("email",), "cart", now, now)
        guess = simulation._stratum_oracle
        loyal = Recipient("p1", {}, {}, stratum="vip")
        other = Recipient("p2", {}, {}, stratum="new")
        assert guess([(cart, "email")], loyal, now)[0].mean == pytest.approx(0.04)
        assert guess([(cart, "email")], loyal, now)[0].mean == pytest.approx(0.02)
        third = guess([(cart, "email")], loyal, now)[0]
        assert third.mean == pytest.approx(0.02)
        # The value is what the cell's uplift is worth on average: (2 + 0 + 1.6) / 0.06.
        assert third.value == pytest.approx(3.6 / 0.06)
        assert guess([(cart, "email")], other, now)[0].mean == pytest.approx(0.10)  # its own cell
    finally:
        simulation.close()


def test_the_measured_oracle_knows_what_the_runs_data_could_tell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each cell's true mean plus the noise of a perfect experiment over the candidates
    seen so far, shrunk towards the journey's true mean: little data says little."""
    simulation = Simulation(load_world("standard", 10, 1), "measured_oracle")
    try:
        truth = {"vip": (0.04, 100.0), "new": (0.0, 50.0)}
        recipients = {s: Recipient(f"p-{s}", {}, {}, stratum=s) for s in truth}
        now = simulation.clock.now()
        cart = Candidate("c1", "p1", "e1", "cart", "s", ("email", "push"), "cart", now, now)
        pairs = [(cart, "email"), (cart, "push")]

        def estimates(stratum: str) -> list[float]:
            monkeypatch.setattr(simulation.world, "uplift", lambda *_: truth[stratum])
            return [g.mean for g in simulation._measured_oracle(pairs, recipients[stratum], now)]

        monkeypatch.setattr(simulation.world, "baseline", lambda *_: 0.2)
        # The first cells of a journey are all its mean; one outcome in `new` reads close
        # to the journey's mean, far from its truth.
        assert estimates("vip") == [pytest.approx(0.04), pytest.approx(0.04)]
        assert all(e > 0.015 for e in estimates("new"))
        for _ in range(20_000):
            vip, new = estimates("vip")[0], estimates("new")[0]
        assert vip == pytest.approx(0.04, abs=0.012)  # noise: 0.4 / sqrt(20,000) = 0.003
        assert new == pytest.approx(0.0, abs=0.012)
        # A conversion certain or impossible without a message measures without noise: one
        # outcome in `vip`, after one in `new`, reads its own truth, not the journey's mean.
        monkeypatch.setattr(simulation.world, "baseline", lambda *_: 0.0)
        exact = Simulation(load_world("standard", 10, 1), "measured_oracle")
        try:
            exact.world = simulation.world
            monkeypatch.setattr(simulation.world, "uplift", lambda *_: truth["new"])
            exact._measured_oracle(pairs, recipients["new"], now)
            monkeypatch.setattr(simulation.world, "uplift", lambda *_: truth["vip"])
            found = exact._measured_oracle(pairs, recipients["vip"], now)[0]
            assert found.mean == pytest.approx(0.04)
            assert found.value == pytest.approx(100.0)
        finally:
            exact.close()
    finally:
        simulation.close()


def test_the_measured_oracle_needs_a_worlds_baseline() -> None:
    class Opaque:
        """A world that does not say its customers' baseline."""

        def __init__(self) -> None:
            self._world = load_world("standard", 10, 1)
            self.name, self.definitions = "opaque", self._world.definitions

        def customers(self) -> Any:
            return self._world.customers()

        def start(self) -> Any:
            return self._world.start()

        def day(self, start: Any) -> Any:
            return self._world.day(start)

        def deliver(self, delivery: Any) -> Any:
            return self._world.deliver(delivery)

        def uplift(self, *args: Any) -> Any:
            return self._world.uplift(*args)

        def truth(self) -> Any:
            return self._world.truth()

        def cost(self, channel: str) -> float:
            return self._world.cost(channel)

    with pytest.raises(InvalidInput, match="the world 'opaque' has no baseline"):
        Simulation(Opaque(), "measured_oracle")
    Simulation(Opaque(), "stratum_oracle").close()  # the other policies do not need it


def test_the_calibration_report_decides_as_the_simulator(
    results: dict[str, SimResult],
) -> None:
    """`bench/calibration.py` wraps the controller's estimator to record the truth: the
    run must stay the one `airspace sim` makes, and print every scored cell."""
    script = Path(__file__).parents[2] / "bench" / "calibration.py"
    options = ["--customers", str(CUSTOMERS), "--days", str(DAYS), "--seed", "3"]
    found = subprocess.run(
        [sys.executable, str(script), *options, "--every", str(DAYS), "--least", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    mine = results["airspace"]
    assert f"net value {mine.net_value:,.0f}, {mine.sent:,} messages sent" in found
    assert "newsletter" in found
    assert found.count(f"day {DAYS}") == 1


def test_the_arbitration_benchmark_keeps_each_run_with_its_code(
    results: dict[str, SimResult], tmp_path: Path
) -> None:
    """`bench/arbitration.py` appends every run to its results, with the fingerprint of
    the code, and `--resume` runs only what is missing there."""
    script = Path(__file__).parents[2] / "bench" / "arbitration.py"
    kept = tmp_path / "runs.jsonl"
    options = ["--customers", str(CUSTOMERS), "--days", str(DAYS), "--seeds", "1"]
    options += ["--first-seed", "3", "--worlds", "standard", "--results", str(kept)]

    def bench(*more: str) -> str:
        return subprocess.run(
            [sys.executable, str(script), *options, *more],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout

    bench("--policies", "first_come")
    [run] = [json.loads(line) for line in kept.read_text().splitlines()]
    assert run["net_value"] == pytest.approx(results["first_come"].net_value)
    assert len(run["code"]) == 12
    assert run["truth"]["by_journey"]  # "journey/kind" keys
    again = bench("--policies", "first_come", "random", "--resume")
    assert "1 run(s)" in again  # first-come is already there
    assert [json.loads(line)["policy"] for line in kept.read_text().splitlines()] == [
        "first_come",
        "random",
    ]


def test_the_arbitration_report_compares_policies_on_the_same_seeds(tmp_path: Path) -> None:
    """A seed that still lacks one of airspace, oracle and first-come stays out of the
    means while another seed has all three: policies are compared on the same seeds, and
    a policy run on fewer of them says so."""

    def run(
        policy: str, seed: int, net: float, sent: int = 100, **cells: list[float]
    ) -> dict[str, Any]:
        truth = {
            "incremental_conversions": net / 10,
            "unsubscribes": sent // 10,
            "by_journey": cells,
        }
        return {
            "world": "standard", "policy": policy, "seed": seed, "customers": 10, "days": 1,
            "truth": truth, "net_value": net, "sent": sent, "cap_violations": 0,
            "seconds": 60, "code": "c",
        }  # fmt: skip

    kept = tmp_path / "runs.jsonl"
    rows = [
        row
        for seed in (1, 3)
        for row in (
            run("first_come", seed, 100.0),
            run("oracle", seed, 200.0, **{"cross-sell/loyal": [10, 50.0]}),
            run(
                "airspace",
                seed,
                190.0,
                sent=100 + 20 * (seed == 3),
                **{"cross-sell/loyal": [8, 42.0], "newsletter/loyal": [5, -2.0]},
            ),
        )
    ]
    rows.append(run("first_come", 2, 40.0))  # seed 2 has only just begun
    rows.append(run("priority", 1, 150.0))  # priority has run on one of the seeds so far
    kept.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = Path(__file__).parents[2] / "bench" / "arbitration.py"
    found = subprocess.run(
        [sys.executable, str(script), "--results", str(kept), "--report"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "seeds [1, 3]," in found
    assert "(1 run(s) of seeds without airspace, oracle and first-come left out)" in found
    first_come = next(line for line in found.splitlines() if line.startswith("first_come"))
    assert " 100 " in first_come  # seed 1's net value, not the mean of both seeds (70)
    assert " 70 " not in first_come
    airspace = next(line for line in found.splitlines() if line.startswith("airspace"))
    assert "90%" in airspace
    # Messages and unsubscribes: the mean and the most of any seed.
    assert airspace.split()[5:9] == ["110", "120", "11", "12"]
    # The last column says over how many seeds each policy's means are.
    assert airspace.split()[-1] == "2"
    priority = next(line for line in found.splitlines() if line.startswith("priority"))
    assert priority.split()[-1] == "1"
    assert "50%" in priority
    # Where the learner's value falls short of the oracle's, cell by cell.
    assert "10 less net value; cells where the learner did harm: -2." in found
    shortfall = next(line for line in found.splitlines() if "cross-sell/loyal" in line)
    assert shortfall.split() == ["cross-sell/loyal", "-8", "8", "vs", "10"]
