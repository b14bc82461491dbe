#!/usr/bin/env python
"""Experiment: ghost holdouts — a withheld message counts against caps as if sent.

Not in the product yet (see docs/benchmarks.md, "what would close the gap"). The
controller reads the person's recent messages for caps and fatigue through
`airspace.store.journeys.sent_since`; this script adds to them the winners the
message holdout withheld (candidates in status `withheld`), so that a held-out
person gets the same later messages as a treated one and the two arms differ by
the message alone. It then runs one simulation per policy and prints the net
value of each and the learning controller's share of the oracle's value. The
simulator's own audit and message count still read what was really sent.

    python bench/ghost_holdouts.py --seed 5                  # 5,000 customers, 60 days
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from sqlalchemy import Connection, select

import airspace.store.journeys as journeys_repo
from airspace.domain.eligibility import Sent
from airspace.sim.driver import share_of_oracle, simulate
from airspace.store.tables import CandidateRow

_sent_since = journeys_repo.sent_since


def with_ghosts(conn: Connection, profile_ids: Any, since: datetime) -> dict[str, list[Sent]]:
    """What was sent, plus what the message holdout withheld, since `since`."""
    found = _sent_since(conn, profile_ids, since)
    for chunk in journeys_repo.chunks(profile_ids):
        for row in conn.execute(
            select(
                CandidateRow.profile_id,
                CandidateRow.decided_at,
                CandidateRow.channel,
                CandidateRow.journey_id,
                CandidateRow.spec,
            ).where(
                CandidateRow.profile_id.in_(chunk),
                CandidateRow.status == "withheld",
                CandidateRow.decided_at >= since,
            )
        ):
            found.setdefault(row.profile_id, []).append(
                Sent(
                    row.decided_at,
                    row.channel or "",
                    row.journey_id,
                    (row.spec or {}).get("topic"),
                    False,
                )
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="standard")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    journeys_repo.sent_since = with_ghosts  # type: ignore[assignment]
    net: dict[str, float] = {}
    for policy in ("airspace", "first_come", "oracle"):
        began = time.perf_counter()
        result = simulate(
            args.world, policy, days=args.days, customers=args.customers, seed=args.seed
        )
        net[policy] = result.net_value
        print(
            json.dumps(
                {
                    "policy": policy,
                    "net_value": round(result.net_value, 1),
                    "sent": result.sent,
                    "unsubscribes": result.truth.unsubscribes,
                    "cap_violations": result.cap_violations,
                    "minutes": round((time.perf_counter() - began) / 60, 1),
                }
            ),
            flush=True,
        )
    share = share_of_oracle(net)
    print(f"share of the oracle's value: {share:.0%}" if share is not None else "no share")


if __name__ == "__main__":
    main()
