"""Transactional messages through the worker: past a full marketing cap and past the
competition, and not counted in the caps afterwards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply
from airspace.store.tables import CandidateRow, MessageRow

from .conftest import Send

DEFINITIONS = {
    "settings.yaml": """
controller:
  decision_window: 0s
  global_control: 0%
  message_holdout: 0%
  caps:
    - {scope: marketing, max: 1, per: 7d}
""",
    "journeys/promo.yaml": """
journey: promo
entry: {event: Offer Viewed}
re_entry: always
max_concurrent: 10
holdout: 0
steps:
  - message: {channels: [email], content: promo, expires: 10d}
""",
    "journeys/password-reset.yaml": """
journey: password-reset
transactional: true
entry: {event: Password Reset Requested}
re_entry: always
max_concurrent: 10
steps:
  - message: {channels: [email], content: password-reset, expires: 1h}
""",
}


@pytest.fixture
def workspace(services: Services) -> None:
    problems = Problems()
    docs = documents_from_files(DEFINITIONS, problems)
    assert not problems.items, problems.items
    apply(services.db, docs, services.clock.now())


def _messages(services: Services) -> list[tuple[str, bool, Any]]:
    """(content, transactional, sent at) of every message sent, in order."""
    with services.db.read() as conn:
        rows = conn.execute(
            select(MessageRow.content, MessageRow.transactional, MessageRow.sent_at).order_by(
                MessageRow.sent_at, MessageRow.content
            )
        ).all()
    return [(r.content, r.transactional, r.sent_at) for r in rows]


def _candidates(services: Services) -> list[tuple[str, str, str, Any]]:
    """(journey, status, reason, decided at) of every candidate, oldest first."""
    with services.db.read() as conn:
        rows = conn.execute(
            select(
                CandidateRow.journey_id,
                CandidateRow.status,
                CandidateRow.reason,
                CandidateRow.decided_at,
            ).order_by(CandidateRow.created_at, CandidateRow.journey_id)
        ).all()
    return [(r.journey_id, r.status, r.reason, r.decided_at) for r in rows]


def _ann(event: str) -> dict[str, Any]:
    return {"type": "track", "userId": "ann", "event": event}


def test_a_transactional_message_goes_past_a_full_marketing_cap_and_does_not_count(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    start = clock.now()
    send({"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}})
    send(_ann("Offer Viewed"))
    worker.drain()
    assert _messages(services) == [("promo", False, start)]  # the cap is now full

    # An hour later one batch brings both: a marketing and a transactional candidate,
    # decided together.
    clock.advance(timedelta(hours=1))
    later = clock.now()
    send(_ann("Offer Viewed"), _ann("Password Reset Requested"))
    worker.drain()
    assert _messages(services) == [
        ("promo", False, start),
        ("password-reset", True, later),
    ]
    [_, reset, promo] = _candidates(services)
    assert reset[:2] == ("password-reset", "sent")
    assert promo[:2] == ("promo", "deferred")
    assert promo[2].startswith("cap marketing 1 per 7d reached"), promo[2]
    assert reset[3] == promo[3] == later

    # The cap frees 7 days after the first promo: the password reset, sent within those
    # 7 days, is not counted, so the waiting promo goes then.
    clock.advance(timedelta(days=7) - timedelta(hours=1) + timedelta(minutes=1))
    worker.drain()
    assert _messages(services) == [
        ("promo", False, start),
        ("password-reset", True, later),
        ("promo", False, clock.now()),
    ]


def test_a_transactional_message_does_not_compete_with_marketing(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    """One marketing message per decision at most (`per_decision: 1`): a transactional
    candidate in the same decision takes no part in it and goes as well."""
    send(
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        _ann("Offer Viewed"),
        _ann("Password Reset Requested"),
    )
    services.worker().drain()
    assert _messages(services) == [
        ("password-reset", True, clock.now()),
        ("promo", False, clock.now()),
    ]
    assert [c[:2] for c in _candidates(services)] == [
        ("password-reset", "sent"),
        ("promo", "sent"),
    ]
