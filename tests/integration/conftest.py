"""Helpers for store and engine tests: put messages in the inbox as the API would, and run
several workers at once."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airspace.bootstrap import Services, build_services
from airspace.domain.clock import SimulatedClock
from airspace.domain.events import parse_message
from airspace.settings import Settings
from airspace.store import journeys as journeys_repo
from airspace.store.inbox import accept, inbox_depth
from airspace.store.keys import create_key

Send = Callable[..., None]
WORKERS = 3
BATCH_SIZE = 3
DEADLINE_SECONDS = 120.0


@pytest.fixture
def send(services: Services) -> Send:
    """`send(message, ...)`: validate and queue messages under one write key."""
    key, _ = create_key(services.db, "write", "test", services.clock.now())
    counter = itertools.count()

    def _send(*messages: dict[str, Any]) -> None:
        now = services.clock.now()
        events = [
            parse_message(m, received_at=now, new_message_id=f"generated-{next(counter)}")
            for m in messages
        ]
        accept(services.db, key.id, events, [], now)

    return _send


def idle(services: Services) -> bool:
    """Every event applied and no timer due: the workers have nothing left to do now."""
    if inbox_depth(services.db) > 0:
        return False
    with services.db.read() as conn:
        due = journeys_repo.next_due(conn)
    return due is None or due > services.clock.now()


def run_workers(services: Services, clock: SimulatedClock, batch_at: int | None) -> None:
    """Run WORKERS workers at once, as `airspace worker` runs them (`run_forever`, each
    with its own engine and connections), until nothing is left to do. Each takes
    BATCH_SIZE events or timers per transaction, so that two often hold work for the
    same person or journey. `batch_at`: from how many people a decision takes the
    controller's batch form (None: as configured)."""
    fleet = [
        build_services(
            Settings(  # type: ignore[call-arg]
                database_url=services.settings.database_url,
                secret=services.settings.secret,
                worker_batch_size=BATCH_SIZE,
            ),
            clock=clock,
        )
        for _ in range(WORKERS)
    ]
    workers = [s.worker(paced=False) for s in fleet]
    for worker in workers:
        worker.journeys.batch_at = batch_at or worker.journeys.batch_at
    stop = threading.Event()
    threads = [
        threading.Thread(target=w.run_forever, args=(stop,), name=f"w{i}")
        for i, w in enumerate(workers)
    ]
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        for thread in threads:
            thread.start()
        while not idle(services):
            if time.monotonic() > deadline:
                pytest.fail(f"workers still busy after {DEADLINE_SECONDS:.0f} s")
            if not all(t.is_alive() for t in threads):
                pytest.fail("a worker thread died")
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for s in fleet:
            s.db.dispose()
    assert not any(t.is_alive() for t in threads), "a worker did not stop"
