"""The simulator's quick mode: a small world through the real engine under every policy."""

from __future__ import annotations

import pytest

from airspace.sim.driver import POLICIES, SimResult, share_of_oracle, simulate
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


def test_a_run_is_repeatable(results: dict[str, SimResult]) -> None:
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
    wrong = airspace("sim", "--policy", "loudest", "--days", "1")
    assert wrong.returncode == 2
    assert "unknown policy 'loudest'" in wrong.stdout
    nowhere = airspace("sim", "--world", "no.such:World", "--days", "1", "--customers", "5")
    assert nowhere.returncode == 2
    assert "cannot load world 'no.such:World'" in nowhere.stdout
