"""One event that cannot be applied is quarantined; its neighbours are applied."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import insert, select

from airspace.bootstrap import Services
from airspace.domain.identity import Identifier
from airspace.engine.worker import Worker
from airspace.store import admin
from airspace.store.inbox import inbox_depth, partition_of
from airspace.store.tables import InboxRow, QuarantineRow, SegmentMemberRow
from tests.integration.conftest import Send


def test_a_poison_event_is_quarantined_and_the_rest_applied(services: Services, send: Send) -> None:
    send({"type": "track", "userId": "p", "event": "Before"})
    with services.db.write() as conn:
        conn.execute(
            insert(InboxRow).values(
                partition=partition_of("p"),
                write_key_id=1,
                message_id="poison",
                payload='{"type": "track", "messageId": "poison", "userId": "p", '
                '"event": "Bad", "timestamp": "not a time", "receivedAt": "also not"}',
                received_at=services.clock.now(),
            )
        )
    send({"type": "track", "userId": "p", "event": "After"})
    worker = services.worker()
    worker = Worker(worker.db, worker.clock, replace(worker.config, idle_seconds=0.001))
    with pytest.raises(ValueError, match="not a time"):
        worker.run_once()
    worker.isolate(threading.Event())
    assert inbox_depth(services.db) == 0
    with services.db.read() as conn:
        reasons = list(conn.execute(select(QuarantineRow.reason)).scalars())
    assert len(reasons) == 1
    assert reasons[0].startswith("could not be applied: ValueError")
    assert worker.drain() == 0
    profile_id = admin.find_profile_id(services.db, Identifier("user_id", "p"))
    assert profile_id is not None
    view = admin.profile_view(services.db, profile_id)
    assert view["computed"]["counts_by_event"] == {"Before": 1, "After": 1}


def test_a_timer_that_keeps_failing_is_postponed_and_the_rest_carried_out(
    services: Services, send: Send
) -> None:
    from datetime import timedelta

    from airspace.engine.definitions import apply
    from airspace.store.tables import TimerRow
    from tests.integration.test_journeys import SETTINGS_NOW, example_documents

    apply(services.db, example_documents(**{"settings.yaml": SETTINGS_NOW}), services.clock.now())
    send(
        {"type": "identify", "userId": "p", "traits": {"email": "p@example.com"}},
        {"type": "track", "userId": "p", "event": "Order Completed"},
    )
    worker = services.worker()
    worker = Worker(worker.db, worker.clock, replace(worker.config, idle_seconds=0.001))
    worker.drain()
    profile_id = admin.find_profile_id(services.db, Identifier("user_id", "p"))
    now = services.clock.now()
    with services.db.write() as conn:
        conn.execute(  # a scheduled enrollment whose payload is not a mapping
            insert(TimerRow).values(
                profile_id=profile_id, kind="enroll", ref="welcome", due_at=now, payload=[1, 2]
            )
        )
    services.clock.advance(timedelta(days=90))  # the lapsed-customers re-check is due too
    with pytest.raises(TypeError):
        worker.run_timers()
    worker.isolate_timers(threading.Event())
    with services.db.read() as conn:
        timers = {(t.kind, t.ref): t.due_at for t in conn.execute(select(TimerRow))}
        members = set(conn.execute(select(SegmentMemberRow.segment_id)).scalars())
    assert timers[("enroll", "welcome")] == services.clock.now() + timedelta(hours=1)
    assert "lapsed-customers" in members
