"""Worlds other than the standard one, through the real engine: the misaligned world under
`simulate`, and the example world of docs/simulator.md under `airspace sim --world
module:Class`, as a person would write it and run it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from airspace.sim.driver import SimPolicy, SimResult, simulate
from airspace.sim.world import Delivery
from airspace.sim.worlds import MisalignedWorld
from tests.test_cli_definitions import airspace

CUSTOMERS, DAYS, SEED = 300, 5, 3
# Journeys whose true uplift is at most 0 for a full-price shopper of every type (the
# tables of docs/simulator.md, "The misaligned world"): a message of theirs to one of them
# is never worth its cost, and only the hidden attribute tells who is one.
NOT_FOR_FULL_PRICE = ("abandoned-cart", "win-back", "newsletter")
DOCS = Path(__file__).parents[2] / "docs" / "simulator.md"


@dataclass(frozen=True, slots=True)
class Run:
    """A run of the misaligned world, with every message it got and who is a deal seeker."""

    result: SimResult
    deliveries: list[Delivery]
    deal_seekers: frozenset[str]

    def sent_to_full_price(self, journeys: tuple[str, ...]) -> int:
        return sum(
            d.journey_id in journeys and d.user_id not in self.deal_seekers for d in self.deliveries
        )


def misaligned(policy: SimPolicy, seed: int = SEED) -> Run:
    """`simulate` the misaligned world, recording what it is handed."""
    worlds: list[MisalignedWorld] = []
    deliveries: list[Delivery] = []
    deliver = MisalignedWorld.deliver

    def recording(world: MisalignedWorld, delivery: Delivery) -> object:
        worlds.append(world)
        deliveries.append(delivery)
        return deliver(world, delivery)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MisalignedWorld, "deliver", recording)
        result = simulate("misaligned", policy, days=DAYS, customers=CUSTOMERS, seed=seed)
    assert worlds, f"{policy}: the world was never handed a message"
    world = worlds[0]
    seekers = frozenset(world.user_id(int(i)) for i in np.flatnonzero(world.deal_seeker))
    return Run(result, deliveries, seekers)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    policies: tuple[SimPolicy, ...] = ("oracle", "first_come")
    return {p: misaligned(p) for p in policies}


def test_the_misaligned_world_runs_through_the_engine(runs: dict[str, Run]) -> None:
    for policy, run in runs.items():
        result = run.result
        assert (result.world, result.policy, result.seed) == ("misaligned", policy, SEED)
        assert (result.customers, result.days) == (CUSTOMERS, DAYS)
        assert result.cap_violations == 0, policy
        assert result.decisions > 0, policy
        assert result.sent > 0, policy
        # Every message the engine sent reached the world, which counted it.
        assert result.truth.messages == result.sent == len(run.deliveries), policy
        assert result.truth.purchases > 0, policy


def test_the_oracle_sees_the_hidden_attribute(runs: dict[str, Run]) -> None:
    """The oracle knows each customer's true uplift, so it sends the journeys that harm
    full-price shoppers only to deal seekers; first-come sends them to anyone."""
    world = MisalignedWorld(customers=CUSTOMERS, seed=SEED)
    at = world.start() + timedelta(hours=10)
    seekers = runs["oracle"].deal_seekers
    assert 0 < len(seekers) < CUSTOMERS
    for customer in world.customers():  # the premise, as the world says it
        if customer.user_id not in seekers:
            for journey in NOT_FOR_FULL_PRICE:
                for channel in ("email", "push", "sms"):
                    assert world.uplift(customer.user_id, journey, channel, at)[0] <= 0

    oracle, first_come = runs["oracle"], runs["first_come"]
    assert first_come.sent_to_full_price(NOT_FOR_FULL_PRICE) > 0
    assert oracle.sent_to_full_price(NOT_FOR_FULL_PRICE) == 0
    assert any(d.journey_id in NOT_FOR_FULL_PRICE for d in oracle.deliveries)  # to deal seekers
    assert oracle.result.sent < first_come.result.sent
    assert oracle.result.net_value > first_come.result.net_value


def test_the_same_seed_repeats_the_misaligned_run_exactly(runs: dict[str, Run]) -> None:
    again = misaligned("oracle")
    assert again.deliveries == runs["oracle"].deliveries
    assert again.result.truth == runs["oracle"].result.truth
    assert (again.result.sent, again.result.decisions) == (
        runs["oracle"].result.sent,
        runs["oracle"].result.decisions,
    )


# --- the example world of docs/simulator.md ("Writing your own world")

# The folder the example's `definitions` names, which the docs leave to the reader: a
# journey on "Order Completed", and an email that costs what the world's `cost` says.
EXAMPLE_DEFINITIONS = {
    "settings.yaml": "timezone: UTC\nchannels:\n  email: {cost: 0.001}\n",
    "journeys/thank-you.yaml": """\
journey: thank-you
name: Thank you for your order
entry:
  event: Order Completed
re_entry: always
goal: {event: Order Completed, within: 1d, value: properties.revenue}
steps:
  - id: thanks
    message: {channels: [email], content: thank-you}
""",
}


def documented_world() -> tuple[str, str]:
    """The python block of "Writing your own world" in docs/simulator.md, and its class."""
    section = DOCS.read_text().split("## Writing your own world", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    [name] = re.findall(r"^class (\w+)", code, flags=re.MULTILINE)
    return code, name


def table_rows(output: str) -> dict[str, list[str]]:
    """The comparison table's rows: policy -> its other cells."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and re.fullmatch(r"[a-z_]+", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


def shows(cell: str, value: float, decimals: int) -> bool:
    """Whether a table cell is `value` rounded to `decimals` (sums of floats may fall
    either side of a half)."""
    return abs(float(cell.replace(",", "")) - value) <= 0.5 * 10.0**-decimals + 1e-9


def test_the_documented_example_world_runs_through_the_sim_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, name = documented_world()
    (tmp_path / "coin_world.py").write_text(code)
    for path, text in EXAMPLE_DEFINITIONS.items():
        (tmp_path / "my-definitions" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "my-definitions" / path).write_text(text)
    monkeypatch.chdir(tmp_path)  # the world's module and its definitions folder are here
    world = f"coin_world:{name}"
    policies = ["--policy", "airspace", "--policy", "first_come", "--policy", "oracle"]
    done = airspace(
        "sim", "--world", world, *policies, "--days", "4", "--customers", "500", installed=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The table is titled by the world's own name, not the module:Class it was loaded from.
    titled = re.search(r'^\s+name = "(\w+)"$', code, re.MULTILINE)
    assert titled is not None, "the documented world names itself"
    assert f"{titled[1]}: 500 customers, 4 days, seed 0" in done.stdout
    assert "share of the oracle's value captured by airspace: " in done.stdout
    rows = table_rows(done.stdout)
    assert set(rows) == {"airspace", "first_come", "oracle"}, done.stdout
    for policy, (sent, conversions, revenue, cost, net, unsubscribes, caps, _) in rows.items():
        messages = int(sent.replace(",", ""))
        assert messages >= 10, policy
        # The world counted every message the engine sent: each is worth 0.01 orders of
        # 50 and costs 0.001.
        assert shows(conversions, 0.01 * messages, 1), (policy, messages, conversions)
        assert shows(revenue, 0.5 * messages, 0), (policy, messages, revenue)
        assert shows(cost, 0.001 * messages, 1), (policy, messages, cost)
        assert shows(net, 0.499 * messages, 0), (policy, messages, net)
        assert (unsubscribes, caps) == ("0", "0"), policy
