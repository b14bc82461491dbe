"""`airspace demo`, run as a person runs it (without serving afterwards): it replays the
CDNOW sample and ends with the policies compared on a small simulated shop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.sim.test_worlds_through_the_engine import table_rows
from tests.test_cli_definitions import airspace

# The policies the demo compares (the share of the oracle's value needs the first three).
POLICIES = {"airspace", "first_come", "oracle", "priority", "random"}


@pytest.mark.slow  # about 15 s: the replay of 22,590 events over HTTP has no smaller mode
def test_the_demo_ends_with_the_policies_compared(tmp_path: Path) -> None:
    done = airspace(
        "demo",
        "--no-serve",
        "--days", "0",
        "--sim-days", "1",
        "--sim-customers", "60",
        "--port", str(free_port()),
        "--database", tmp_path / "demo.db",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "done: 2,357 profiles, 22,590 events" in out  # the replay came first
    assert "Air-traffic control" in out
    assert "standard: 60 customers, 1 days, seed 1" in out
    header = next(line for line in out.splitlines() if "net value" in line)
    assert header.split("┃")[1:-1][5].strip() == "net value"
    rows = table_rows(out)
    assert set(rows) == POLICIES, out
    for policy, cells in rows.items():
        sent, net, caps = int(cells[0].replace(",", "")), cells[4], cells[6]
        assert sent > 0, policy
        assert re.fullmatch(r"-?[\d,]+", net), (policy, net)
        assert caps == "0", policy
    share = re.search(r"share of the oracle's value captured by airspace: (\S+)", out)
    assert share is not None, out
    assert re.fullmatch(r"-?\d+%|n/a", share[1]), share[1]
