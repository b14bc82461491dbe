"""Helpers for store and engine tests: put messages in the inbox as the API would."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from airspace.bootstrap import Services
from airspace.domain.events import parse_message
from airspace.store.inbox import accept
from airspace.store.keys import create_key

Send = Callable[..., None]


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
