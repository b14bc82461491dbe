"""The demo's second act: the example journeys, a week of them in seconds.

After the purchase history is in, the example definitions (`examples/`) are
applied: segments are computed for every customer at once. Then three new
customers arrive over the tracking API and collide — one returns an order, one
abandons a cart, one has a birthday tomorrow and signs up — and the simulated
clock runs a week forward, hour by hour, while the worker wakes journeys, re-checks
segments and sends (to the capture channel) what the controller lets through.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.identity import Identifier
from airspace.engine.definitions import apply, read_folder
from airspace.engine.worker import Worker
from airspace.store.admin import find_profile_id
from airspace.store.tables import CandidateRow, MessageRow, SegmentMemberRow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def story(today: str, tomorrow_birthday: str) -> list[dict[str, Any]]:
    """Three customers whose journeys collide in the same week."""
    return [
        {
            "type": "identify",
            "userId": "demo-rosa",
            "traits": {
                "email": "rosa@example.com",
                "first_name": "Rosa",
                "timezone": "Europe/Paris",
            },
        },
        {
            "type": "track",
            "userId": "demo-rosa",
            "event": "Order Completed",
            "properties": {"order_id": "R-1", "revenue": 89.0},
        },
        {
            "type": "track",
            "userId": "demo-rosa",
            "event": "Product Returned",
            "properties": {"order_id": "R-1", "reason": "too small"},
        },
        {
            "type": "identify",
            "userId": "demo-kai",
            "traits": {
                "email": "kai@example.com",
                "first_name": "Kai",
                "timezone": "America/New_York",
            },
        },
        {
            "type": "track",
            "userId": "demo-kai",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "K-7", "value": 54.0},
        },
        {
            "type": "identify",
            "userId": "demo-mia",
            "traits": {
                "email": "mia@example.com",
                "first_name": "Mia",
                "timezone": "Asia/Tokyo",
                "birthday": tomorrow_birthday,
            },
        },
        {"type": "track", "userId": "demo-mia", "event": "Signed Up"},
        {
            "type": "track",
            "userId": "demo-mia",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "M-3", "value": 20.0},
        },
    ]


def apply_examples(services: Services, console: Console, folder: Path = EXAMPLES) -> bool:
    """Apply the example definitions; False (with a note) when the folder is absent."""
    if not folder.is_dir():
        console.print(f"[yellow]no example definitions at {folder}; skipping journeys[/yellow]")
        return False
    documents, problems = read_folder(folder)
    applied = apply(services.db, documents, services.clock.now())
    sizes = ", ".join(f"{c.segment_id} {c.members:,}" for c in applied.computed)
    console.print(
        f"applied {len(documents)} definitions from {folder.name}/: "
        f"{sum(1 for d in documents if d.kind == 'journey')} journeys; segments computed "
        f"for everyone: {sizes}"
    )
    return not problems


def run_week(
    services: Services,
    clock: SimulatedClock,
    worker: Worker,
    console: Console,
    base_url: str,
    write_key: str,
    *,
    days: int = 7,
) -> None:
    """Send the story, then move the clock forward hour by hour and report."""
    start = clock.now()
    tomorrow = (start + timedelta(days=1)).date()
    birthday = tomorrow.replace(year=1992).isoformat()
    response = httpx.post(
        f"{base_url}/v1/batch",
        json={"batch": story(start.date().isoformat(), birthday)},
        auth=(write_key, ""),
        timeout=30,
    )
    response.raise_for_status()
    worker.drain()
    for _ in range(days * 24):
        clock.advance(timedelta(hours=1))
        worker.drain()
    _report(services, console, start, days)


def _report(services: Services, console: Console, start: Any, days: int) -> None:
    with services.db.read() as conn:
        messages = conn.execute(
            select(MessageRow).order_by(MessageRow.sent_at, MessageRow.id)
        ).all()
        held = conn.execute(
            select(CandidateRow.journey_id, CandidateRow.status, CandidateRow.reason)
        ).all()
        members = Counter(conn.execute(select(SegmentMemberRow.segment_id)).scalars())
    console.print(
        f"\n[bold]A week of journeys[/bold] ({days} days on the simulated clock, from "
        f"{start:%Y-%m-%d %H:%M} UTC): {len(messages):,} messages captured; "
        f"segments now: " + ", ".join(f"{k} {v:,}" for k, v in sorted(members.items()))
    )
    by_journey = Counter(m.journey_id for m in messages)
    outcomes = Counter((c.journey_id, c.status) for c in held)
    table = Table("journey", "sent", "held out", "deferred / suppressed by the controller")
    for journey in sorted({j for j, _ in outcomes}):
        blocked = outcomes[journey, "deferred"] + outcomes[journey, "suppressed"]
        table.add_row(
            journey,
            f"{by_journey[journey]:,}",
            f"{outcomes[journey, 'held_out']:,}",
            f"{blocked:,}",
        )
    console.print(table)
    for user in ("demo-rosa", "demo-kai", "demo-mia"):
        pid = find_profile_id(services.db, Identifier("user_id", user))
        mine = [m for m in messages if m.profile_id == pid]
        console.print(f"[bold]{user}[/bold]:")
        for m in mine:
            offset = m.sent_at - start
            console.print(
                f"  +{offset.days}d {offset.seconds // 3600:02d}h{offset.seconds // 60 % 60:02d}  "
                f"{m.journey_id:<15} {m.content:<22} {m.channel} → {m.address}"
            )
        with services.db.read() as conn:
            refused = conn.execute(
                select(
                    CandidateRow.journey_id,
                    CandidateRow.step_id,
                    CandidateRow.status,
                    CandidateRow.reason,
                ).where(
                    CandidateRow.profile_id == pid,
                    CandidateRow.status.in_(("suppressed", "deferred", "held_out", "withdrawn")),
                )
            ).all()
        for r in refused:
            console.print(f"  [dim]{r.status:<10} {r.journey_id}/{r.step_id}: {r.reason}[/dim]")
