"""Many people decided at once: the batch form writes what the per-person controller writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select

from airspace.bootstrap import Services
from airspace.domain import controller
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.domain.uplift import Tally
from airspace.engine.definitions import apply
from airspace.store import decisions as log_repo
from airspace.store.tables import CandidateRow, DecisionRow, MessageRow, TimerRow

from .conftest import Send

SETTINGS = """
timezone: Europe/Paris
controller:
  decision_window: 30m
  global_control: 10%
  message_holdout: 20%
  fatigue: {cost: 0.001, per: 7d}
  quiet_hours: {from: "17:00", to: "20:00"}
  caps:
    - {scope: "channel:webhook", max: 0, per: 1d}
"""
JOURNEYS = {
    # Known well (see the tallies below): some draws are worth sending, some are not.
    "news": ("Signed Up", "[email]"),
    "tips": ("Signed Up", "[email]"),
    # New, so still learning: on one channel it fits the batch form, on several it does not.
    "promo": ("Browsed", "[sms, email]"),
    "offer": ("Browsed", "[webhook, email]"),  # the webhook's cap is reached
}


def _definitions() -> dict[str, str]:
    files = {"settings.yaml": SETTINGS}
    for name, (event, channels) in JOURNEYS.items():
        files[f"journeys/{name}.yaml"] = (
            f"journey: {name}\nentry: {{event: {event}}}\nholdout: 0\n"
            "goal: {event: Order Completed, within: 7d, value: 40}\n"
            f"steps:\n  - message: {{channels: {channels}, content: {name}, expires: 1d}}\n"
        )
    return files


def _people(n: int) -> list[dict[str, Any]]:
    """Everyone signs up, a third browse too; some have no email, a phone, SMS consent, or
    live in Tokyo (in quiet hours now)."""
    messages: list[dict[str, Any]] = []
    for i in range(n):
        traits: dict[str, Any] = {"orders_count": i % 3}
        if i % 10:
            traits["email"] = f"u{i}@example.com"
        if i % 2:
            traits["phone"] = f"+3361234{i:04d}"
        if i % 7 == 0:
            traits["timezone"] = "Asia/Tokyo"
        messages.append({"type": "identify", "userId": f"u{i}", "traits": traits})
        if i % 4 == 1:
            consent = {"channel": "sms", "status": "opted_in"}
            messages.append(
                {
                    "type": "track",
                    "userId": f"u{i}",
                    "event": "Consent Updated",
                    "properties": consent,
                }
            )
        messages.append({"type": "track", "userId": f"u{i}", "event": "Signed Up"})
        if i % 3 == 0:
            messages.append({"type": "track", "userId": f"u{i}", "event": "Browsed"})
    return messages


def _written(conn: Connection) -> dict[str, Any]:
    """Everything a decision writes, in a stable order."""
    candidates = conn.execute(
        select(
            CandidateRow.id,
            CandidateRow.status,
            CandidateRow.reason,
            CandidateRow.channel,
            CandidateRow.decided_at,
            CandidateRow.arm,
            CandidateRow.stratum,
            CandidateRow.weight,
            CandidateRow.matures_at,
        ).order_by(CandidateRow.id)
    ).all()
    log = conn.execute(
        select(
            DecisionRow.profile_id,
            DecisionRow.at,
            DecisionRow.policy,
            DecisionRow.stratum,
            DecisionRow.summary,
            DecisionRow.record,
        ).order_by(DecisionRow.profile_id)
    ).all()
    messages = conn.execute(
        select(MessageRow.candidate_id, MessageRow.channel, MessageRow.address).order_by(
            MessageRow.candidate_id
        )
    ).all()
    timers = conn.execute(
        select(TimerRow.profile_id, TimerRow.kind, TimerRow.due_at)
        .where(TimerRow.kind == "decide")
        .order_by(TimerRow.profile_id)
    ).all()
    # Every trial's goal window closed: each joins its cell.
    log_repo.mature_trials(conn, datetime(2100, 1, 1, tzinfo=UTC))
    return {
        "candidates": candidates,
        "log": log,
        "messages": messages,
        "timers": timers,
        "tallies": log_repo.tallies(conn),
    }


class _Undo(Exception):
    pass


def _decide_and_undo(services: Services, batch_at: int) -> tuple[int, dict[str, Any]]:
    """Decide for everyone with open candidates, read what was written, and roll it back."""
    runtime = services.worker().journeys
    runtime.batch_at = batch_at
    found: tuple[int, dict[str, Any]] = (0, {})
    try:
        with services.db.write() as conn:
            query = select(CandidateRow.profile_id).where(CandidateRow.status == "pending")
            pids = sorted(set(conn.execute(query).scalars()))
            sent = runtime.decide(conn, pids, services.clock.now())
            found = (sent, _written(conn))
            raise _Undo
    except _Undo:
        pass
    return found


def test_the_batch_form_decides_as_the_per_person_controller(
    services: Services, send: Send, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same people decided one by one and then together (those who fit the batch form
    in it, the others one by one): the same candidates' outcomes, log, messages, retry
    timers and uplift trials."""
    problems = Problems()
    apply(services.db, documents_from_files(_definitions(), problems), clock.now())
    assert not problems.items
    with services.db.write() as conn:
        log_repo.add_tallies(
            conn,
            {
                (journey, arm, channel, stratum): Tally(400.0, won, won * 40)
                for journey, treated in (("news", 40.0), ("tips", 32.0))
                for arm, channel, won in (("treated", "email", treated), ("control", "", 36.0))
                for stratum in ("prospect", "lapsed")
            },
        )
    send(*_people(200))
    services.worker().drain()
    clock.advance(timedelta(minutes=30))  # the decision window has passed

    one_by_one = _decide_and_undo(services, batch_at=10**9)
    alone: list[str] = []
    decide = controller.decide

    def counted(*args: Any, **kwargs: Any) -> controller.DecisionRecord:
        alone.append(args[1].profile_id)
        return decide(*args, **kwargs)

    monkeypatch.setattr(controller, "decide", counted)
    together = _decide_and_undo(services, batch_at=64)

    assert together == one_by_one
    sent, written = together
    assert 0 < len(alone) < len(written["log"]) / 2  # most fit the batch form, not all
    assert sent > 0
    statuses = {c.status for c in written["candidates"]}
    assert {"sent", "withheld", "deferred", "suppressed"} <= statuses
    reasons = " ".join(c.reason for c in written["candidates"]) + json.dumps(
        [r.record for r in written["log"]]
    )
    for why in ("lost to", "not above 0", "quiet hours", "cap channel:webhook", "no email address"):
        assert why in reasons
