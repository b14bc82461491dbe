"""The speed benchmarks of the controller run end to end in their quick mode (their
figures are not judged here: a shared machine is too noisy for that)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _figure(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return float(found.group(1).replace(",", ""))


@pytest.mark.slow
def test_the_real_time_decision_benchmark_reports_its_percentiles() -> None:
    out = _run("decisions.py", "--quick", "--repeat", "1")
    assert _figure(r"pure airspace: p50 ([\d.]+) ms", out) > 0
    assert _figure(r"stored sqlite, with commit: p50 [\d.]+ ms, p99 ([\d.]+) ms", out) > 0
    assert re.search(r"target < 5 ms p99 \(pure, decide \+ log record\): (MET|MISSED)", out)


@pytest.mark.slow
def test_the_blast_benchmark_reports_its_rates() -> None:
    out = _run("blast.py", "--quick", "--repeat", "1")
    assert _figure(r"10 candidates: ([\d,]+) decisions/s", out) > 0
    assert _figure(r"stored \(SQLite, messages \+ decision log\): ([\d,]+) decisions/s", out) > 0
    assert re.search(r"target >= 50,000 decisions/s on one core: (MET|MISSED)", out)
