"""Segments and journeys through the engine: events in, enrollments, timers, messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply
from airspace.store.tables import (
    CandidateRow,
    EnrollmentRow,
    MessageRow,
    SegmentMemberRow,
    TimerRow,
)

from .conftest import Send

EXAMPLES = Path(__file__).parents[2] / "examples"


def example_documents(**overrides: str) -> list:
    files = {str(p.relative_to(EXAMPLES)): p.read_text() for p in EXAMPLES.rglob("*.yaml")}
    files.update(overrides)
    problems = Problems()
    docs = documents_from_files(files, problems)
    assert not problems.items
    return docs


SETTINGS_NOW = """
timezone: Europe/Paris
controller:
  decision_window: 0s
  global_control: 0%
  caps:
    - {scope: marketing, max: 3, per: 7d}
"""


@pytest.fixture
def workspace(services: Services) -> None:
    docs = example_documents(**{"settings.yaml": SETTINGS_NOW})
    # No holdout in these tests: everyone is treated.
    for doc in docs:
        if doc.kind == "journey":
            doc.body["holdout"] = 0  # type: ignore[index]
    apply(services.db, docs, services.clock.now())


def rows(services: Services, table, **where):
    with services.db.read() as conn:
        query = select(table)
        for key, value in where.items():
            query = query.where(getattr(table, key) == value)
        return conn.execute(query).all()


def test_abandoned_cart_reminds_after_an_hour_then_stops_on_purchase(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {
            "type": "track",
            "userId": "ann",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "c1"},
        },
    )
    worker.drain()
    [enrollment] = rows(services, EnrollmentRow, journey_id="abandoned-cart")
    assert enrollment.step_id == "wait-for-purchase"
    assert enrollment.wake_at == clock.now() + timedelta(hours=1)
    assert rows(services, MessageRow) == []

    clock.advance(timedelta(minutes=59))
    worker.drain()
    assert rows(services, MessageRow) == []
    clock.advance(timedelta(minutes=1))
    worker.drain()
    [message] = rows(services, MessageRow)
    assert (message.channel, message.content, message.address) == (
        "email",
        "cart-reminder",
        "ann@example.com",
    )
    [enrollment] = rows(services, EnrollmentRow, journey_id="abandoned-cart")
    assert enrollment.step_id == "wait-a-day"

    clock.advance(timedelta(hours=3))
    send(
        {
            "type": "track",
            "userId": "ann",
            "event": "Order Completed",
            "properties": {"cart_id": "c1", "revenue": 42.5},
        }
    )
    worker.drain()
    [enrollment] = rows(services, EnrollmentRow, journey_id="abandoned-cart")
    assert enrollment.status == "exited"
    assert enrollment.exit_reason == "exit event Order Completed"
    assert enrollment.converted_at is not None and enrollment.conversion_value == 42.5
    assert rows(services, TimerRow, kind="enrollment") == []
    clock.advance(timedelta(days=2))
    worker.drain()
    assert len(rows(services, MessageRow)) == 1
    assert {m.segment_id for m in rows(services, SegmentMemberRow)} == {"customers"}


def test_purchase_of_another_cart_does_not_stop_the_reminder(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {"type": "identify", "userId": "bob", "traits": {"email": "bob@example.com"}},
        {
            "type": "track",
            "userId": "bob",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "c1"},
        },
    )
    worker.drain()
    clock.advance(timedelta(minutes=10))
    send(
        {
            "type": "track",
            "userId": "bob",
            "event": "Order Completed",
            "properties": {"cart_id": "other"},
        }
    )
    worker.drain()
    clock.advance(timedelta(hours=1))
    worker.drain()
    assert [m.content for m in rows(services, MessageRow)] == ["cart-reminder"]


def test_win_back_enters_when_ninety_days_pass_and_exits_on_order(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {"type": "identify", "userId": "cy", "traits": {"email": "cy@example.com"}},
        {
            "type": "track",
            "userId": "cy",
            "event": "Order Completed",
            "properties": {"revenue": 10},
        },
    )
    worker.drain()
    assert {m.segment_id for m in rows(services, SegmentMemberRow)} == {"customers"}
    [timer] = rows(services, TimerRow, kind="segment", ref="lapsed-customers")
    assert timer.due_at == clock.now() + timedelta(days=90)
    clock.advance(timedelta(days=90))
    worker.drain()
    assert {m.segment_id for m in rows(services, SegmentMemberRow)} == {
        "customers",
        "lapsed-customers",
    }
    [enrollment] = rows(services, EnrollmentRow, journey_id="win-back")
    assert [m.content for m in rows(services, MessageRow)] == ["win-back-1"]
    clock.advance(timedelta(days=2))
    send(
        {"type": "track", "userId": "cy", "event": "Order Completed", "properties": {"revenue": 30}}
    )
    worker.drain()
    [enrollment] = rows(services, EnrollmentRow, journey_id="win-back")
    assert (
        enrollment.status == "exited" and enrollment.exit_reason == "left segment lapsed-customers"
    )
    assert enrollment.conversion_value == 30
    clock.advance(timedelta(days=7))
    worker.drain()
    assert [m.content for m in rows(services, MessageRow)] == ["win-back-1"]
    assert rows(services, CandidateRow, status="pending") == []
