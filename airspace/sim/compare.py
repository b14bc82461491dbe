"""Policies side by side on one world and seed, as a table (for `airspace sim` and the demo)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from airspace.sim.driver import SimPolicy, SimResult, share_of_oracle, simulate

COLUMNS = (
    "policy",
    "sent",
    "incr. conversions",
    "incr. revenue",
    "cost",
    "net value",
    "unsubscribes",
    "cap violations",
    "seconds",
)


def compare(
    console: Console,
    world: str,
    policies: Sequence[SimPolicy],
    *,
    days: int,
    customers: int,
    seed: int,
    breakdown: bool = False,
) -> list[SimResult]:
    """Run the world under each policy and print the comparison (raises `InvalidInput` for a
    world that cannot be loaded)."""
    table = Table()
    for column in COLUMNS:
        if column == "policy":  # the one column that must never be cut on a narrow terminal
            table.add_column(column, no_wrap=True, min_width=10)
        else:
            table.add_column(column, justify="right")
    results: list[SimResult] = []
    for name in policies:
        with console.status(f"{name}: simulating {days} days"):
            result = simulate(world, name, days=days, customers=customers, seed=seed)
        results.append(result)
        t = result.truth
        table.add_row(
            name,
            f"{result.sent:,}",
            f"{t.incremental_conversions:,.1f}",
            f"{t.incremental_revenue:,.0f}",
            f"{t.message_cost:,.1f}",
            f"{result.net_value:,.0f}",
            f"{t.unsubscribes:,}",
            str(result.cap_violations),
            f"{result.seconds:.0f}",
        )
    if results:  # titled by the world's own name, not the `module:Class` it came from
        table.title = f"{results[0].world}: {customers:,} customers, {days} days, seed {seed}"
    console.print(table)
    if breakdown:
        console.print(by_journey(results))
    values = {r.policy: r.net_value for r in results}
    if {"airspace", "oracle", "first_come"} <= set(values):
        share = share_of_oracle(values)
        console.print(
            "share of the oracle's value captured by airspace: "
            + ("n/a (the oracle does not beat first-come)" if share is None else f"{share:.0%}")
        )
    return results


def by_journey(results: Sequence[SimResult]) -> Table:
    """Messages and net value by journey and customer type, a column per policy: where
    each policy's value went (empty when the world does not break its truth down)."""
    table = Table(title="net value (messages) by journey and customer type")
    table.add_column("journey", no_wrap=True)
    table.add_column("type", no_wrap=True)
    for result in results:
        table.add_column(result.policy, justify="right")
    keys = sorted({key for r in results for key in r.truth.by_journey})
    for journey in sorted({j for j, _ in keys}):
        kinds = [kind for j, kind in keys if j == journey]
        for kind in kinds:
            table.add_row(journey, kind, *(_cell(r, journey, [kind]) for r in results))
        table.add_row(
            journey, "all", *(_cell(r, journey, kinds) for r in results), end_section=True
        )
    return table


def _cell(result: SimResult, journey: str, kinds: Sequence[str]) -> str:
    found = [result.truth.by_journey.get((journey, kind), (0, 0.0)) for kind in kinds]
    return f"{sum(v for _, v in found):,.0f} ({sum(m for m, _ in found):,})"
