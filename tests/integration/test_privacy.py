"""Export and erasure of a person (GDPR). Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from airspace.bootstrap import Services
from airspace.domain.errors import NotFound
from airspace.domain.events import parse_message
from airspace.domain.identity import Identifier
from airspace.store import admin
from airspace.store.inbox import Refused, accept, quarantine
from airspace.store.tables import Base
from tests.integration.conftest import Send

ANA = [
    {
        "type": "page",
        "anonymousId": "ana-cookie",
        "name": "Home",
        "context": {"ip": "198.51.100.7"},
    },
    {
        "type": "identify",
        "anonymousId": "ana-cookie",
        "userId": "ana-42",
        "traits": {
            "email": "ana.lima@example.com",
            "phone": "+1 202 555 0147",
            "first_name": "Anastasia",
            "city": "Porto Alegre",
        },
    },
    {
        "type": "track",
        "userId": "ana-42",
        "event": "Order Completed",
        "properties": {"revenue": 42.5},
        "context": {"device": {"id": "ana-device-77", "token": "ana-push-token-1"}},
    },
    {
        "type": "track",
        "anonymousId": "ana-other-cookie",
        "event": "Viewed",
        "context": {"traits": {"email": "ana.lima@example.com"}},
    },
]
BEN = [{"type": "identify", "userId": "ben-7", "traits": {"email": "ben@example.com"}}]
ANA_STRINGS = [
    "ana-cookie",
    "ana-42",
    "ana.lima@example.com",
    "+12025550147",
    "+1 202 555 0147",
    "Anastasia",
    "Porto Alegre",
    "ana-device-77",
    "ana-push-token-1",
    "ana-other-cookie",
]


def every_row_as_text(services: Services) -> str:
    """Every value of every row of every table, as one lower-cased string."""
    parts: list[str] = []
    with services.db.read() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                parts.append(orjson.dumps(list(row), default=str).decode())
    return "\n".join(parts).lower()


def test_export_holds_everything_about_the_person(services: Services, send: Send) -> None:
    send(*ANA, *BEN)
    services.worker().drain()
    profile_id = admin.find_profile_id(services.db, Identifier("user_id", "ana-42"))
    assert profile_id is not None
    export = admin.export_person(services.db, profile_id, services.rules)
    assert {f"{i['type']}:{i['value']}" for i in export["identifiers"]} == {
        "anonymous_id:ana-cookie",
        "anonymous_id:ana-other-cookie",
        "user_id:ana-42",
        "email:ana.lima@example.com",
        "phone:+12025550147",
        "device_id:ana-device-77",
        "push_token:ana-push-token-1",
    }
    assert len(export["events"]) == 4
    assert export["traits"]["first_name"] == "Anastasia"
    assert "ben" not in orjson.dumps(export).decode()


def test_erasure_leaves_no_trace_and_blocks_later_events(services: Services, send: Send) -> None:
    send(*ANA, *BEN)
    services.worker().drain()
    text = every_row_as_text(services)
    assert all(s.lower() in text for s in ["ana-42", "anastasia", "ana-device-77"])
    profile_id = admin.find_profile_id(services.db, Identifier("email", "ana.lima@example.com"))
    assert profile_id is not None
    erasure = admin.erase_person(
        services.db, profile_id, services.secret, services.clock.now(), services.rules
    )
    assert (erasure.events, erasure.identifiers) == (4, 7)

    text = every_row_as_text(services)
    leftovers = [s for s in ANA_STRINGS if s.lower() in text]
    assert leftovers == []
    assert "ben@example.com" in text  # only Ana went

    # Later events carrying any of Ana's identifiers are dropped, not stored.
    send(
        {"type": "track", "userId": "ana-42", "event": "Came back"},
        {
            "type": "track",
            "anonymousId": "new-cookie",
            "event": "Hi",
            "context": {"traits": {"email": "ANA.LIMA@example.com"}},
        },
    )
    assert services.worker().drain() == 0
    text = every_row_as_text(services)
    assert [s for s in ANA_STRINGS if s.lower() in text] == []
    assert "new-cookie" not in text
    with pytest.raises(NotFound):
        admin.profile_view(services.db, profile_id)


def test_erasure_removes_quarantined_and_pending_items(services: Services, send: Send) -> None:
    send(*ANA)
    services.worker().drain()
    with services.db.write() as conn:
        quarantine(
            conn,
            None,
            "ingest",
            [
                Refused('{"userId": "ana-42", "event": 5}', "event must be a string"),
                Refused('{"userId": "ana-420", "event": 5}', "event must be a string"),
            ],
            services.clock.now(),
        )
    # A pending event for Ana that the worker has not applied yet.
    pending = parse_message(
        {"type": "track", "userId": "ana-42", "event": "Later"},
        received_at=services.clock.now(),
        new_message_id="pending-1",
    )
    accept(services.db, 1, [pending], [], services.clock.now())
    profile_id = admin.find_profile_id(services.db, Identifier("user_id", "ana-42"))
    assert profile_id is not None
    erasure = admin.erase_person(
        services.db, profile_id, services.secret, services.clock.now(), services.rules
    )
    assert (erasure.quarantined, erasure.pending) == (1, 1)
    text = every_row_as_text(services)
    assert 'ana-42\\"' not in text  # the value ends in a (JSON-escaped) quote
    assert "ana-420" in text  # someone else's item that merely looks alike stays


def test_journey_data_joins_export_and_erasure(services: Services, send: Send) -> None:
    """Segments, enrollments, timers, candidates and messages are the person's data too."""
    from airspace.engine.definitions import apply
    from tests.integration.test_journeys import SETTINGS_NOW, example_documents

    documents = example_documents(holdouts=False, **{"settings.yaml": SETTINGS_NOW})
    apply(services.db, documents, services.clock.now())
    send(*ANA, {"type": "track", "userId": "ana-42", "event": "Signed Up"}, *BEN)
    services.worker().drain()
    profile_id = admin.find_profile_id(services.db, Identifier("user_id", "ana-42"))
    assert profile_id is not None
    exported = admin.export_person(services.db, profile_id, services.rules)["journeys"]
    assert {table for table, rows in exported.items() if rows} == {
        "segment_members",
        "segment_transitions",
        "enrollments",
        "timers",
        "candidates",
        "messages",
        "decisions",
    }
    assert exported["messages"][0]["address"] == "ana.lima@example.com"
    admin.erase_person(
        services.db, profile_id, services.secret, services.clock.now(), services.rules
    )
    text = every_row_as_text(services)
    assert [s for s in ANA_STRINGS if s.lower() in text] == []
    assert profile_id.lower() not in text
