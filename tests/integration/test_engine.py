"""The worker applies events to profiles: identity, merges, traits, consent, exactly once.
Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.identity import Identifier
from airspace.store import admin
from airspace.store.tables import EventRow, MergeRow, QuarantineRow
from tests.integration.conftest import Send


def profile_of(services: Services, identifier: str) -> dict:
    profile_id = admin.find_profile_id(services.db, Identifier.parse(identifier))
    assert profile_id is not None, f"no profile for {identifier}"
    return admin.profile_view(services.db, profile_id)


def ids(view: dict) -> set[str]:
    return {f"{i['type']}:{i['value']}" for i in view["identifiers"]}


def test_anonymous_history_becomes_the_users_on_identify(services: Services, send: Send) -> None:
    send(
        {"type": "page", "anonymousId": "anon-1", "name": "Home"},
        {"type": "track", "anonymousId": "anon-1", "event": "Product Viewed"},
        {
            "type": "identify",
            "anonymousId": "anon-1",
            "userId": "u-1",
            "traits": {"email": " Ana@Example.COM ", "plan": "pro"},
        },
    )
    assert services.worker().drain() == 3
    view = profile_of(services, "user_id:u-1")
    assert ids(view) == {"anonymous_id:anon-1", "user_id:u-1", "email:ana@example.com"}
    assert view["computed"]["event_count"] == 3
    assert view["computed"]["counts_by_type"] == {"page": 1, "track": 1, "identify": 1}
    assert view["traits"] == {"email": " Ana@Example.COM ", "plan": "pro"}


def test_two_devices_merge_when_the_second_identifies(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    send(
        {"type": "track", "anonymousId": "laptop", "event": "A"},
        {"type": "identify", "anonymousId": "laptop", "userId": "u-2"},
    )
    services.worker().drain()
    clock.advance(timedelta(minutes=1))
    send({"type": "track", "anonymousId": "phone", "event": "B"})
    services.worker().drain()
    phone_profile = profile_of(services, "anonymous_id:phone")["id"]
    clock.advance(timedelta(minutes=1))
    send({"type": "identify", "anonymousId": "phone", "userId": "u-2"})
    services.worker().drain()
    view = profile_of(services, "user_id:u-2")
    assert ids(view) == {"anonymous_id:laptop", "anonymous_id:phone", "user_id:u-2"}
    assert view["computed"]["event_count"] == 4
    assert view["merged_from"] == [phone_profile]
    assert len(view["merges"]) == 1
    assert "identify carried" in view["merges"][0]["cause"]
    # The merged id stays resolvable.
    assert admin.profile_view(services.db, phone_profile)["id"] == view["id"]
    with services.db.read() as conn:
        on_profile = conn.execute(
            select(func.count()).select_from(EventRow).where(EventRow.profile_id == view["id"])
        ).scalar_one()
    assert on_profile == 4


def test_shared_device_sends_events_to_the_named_user_and_merges_nothing(
    services: Services, send: Send
) -> None:
    send(
        {"type": "identify", "anonymousId": "family-ipad", "userId": "mum"},
        {
            "type": "identify",
            "anonymousId": "family-ipad",
            "userId": "dad",
            "traits": {"name": "Dad"},
        },
    )
    services.worker().drain()
    mum, dad = profile_of(services, "user_id:mum"), profile_of(services, "user_id:dad")
    assert mum["id"] != dad["id"]
    assert ids(mum) == {"user_id:mum", "anonymous_id:family-ipad"}
    assert ids(dad) == {"user_id:dad"}
    assert dad["traits"] == {"name": "Dad"}
    assert admin.list_merges(services.db, after_id=0, limit=10) == []


def test_alias_joining_two_user_ids_is_quarantined(services: Services, send: Send) -> None:
    send(
        {"type": "identify", "userId": "a"},
        {"type": "identify", "userId": "b"},
        {"type": "alias", "previousId": "a", "userId": "b"},
    )
    assert services.worker().drain() == 2
    with services.db.read() as conn:
        reasons = conn.execute(select(QuarantineRow.stage, QuarantineRow.reason)).all()
        merges = conn.execute(select(func.count()).select_from(MergeRow)).scalar_one()
    assert merges == 0
    assert len(reasons) == 1
    stage, reason = reasons[0]
    assert stage == "apply"
    assert "2 user_id identifiers (limit 1)" in reason


def test_alias_links_an_anonymous_visitor(services: Services, send: Send) -> None:
    send(
        {"type": "track", "anonymousId": "cookie-9", "event": "Viewed"},
        {"type": "identify", "userId": "u-9"},
        {"type": "alias", "previousId": "cookie-9", "userId": "u-9"},
    )
    services.worker().drain()
    view = profile_of(services, "user_id:u-9")
    assert ids(view) == {"anonymous_id:cookie-9", "user_id:u-9"}
    assert view["computed"]["event_count"] == 3


def test_trait_last_write_by_event_time_wins(services: Services, send: Send) -> None:
    send(
        {
            "type": "identify",
            "userId": "t",
            "traits": {"plan": "new"},
            "timestamp": "2026-11-02T08:00:00Z",
        },
        {
            "type": "identify",
            "userId": "t",
            "traits": {"plan": "old"},
            "timestamp": "2026-11-01T08:00:00Z",
        },
    )
    services.worker().drain()
    assert profile_of(services, "user_id:t")["traits"]["plan"] == "new"


def test_consent_from_events_and_merge_conflict_is_not_granted(
    services: Services, send: Send
) -> None:
    send(
        {
            "type": "track",
            "anonymousId": "x1",
            "event": "Consent Updated",
            "properties": {"channel": "email", "status": "opted_in"},
        },
        {
            "type": "track",
            "anonymousId": "x2",
            "event": "Consent Updated",
            "properties": {"channels": {"email": False}},
        },
    )
    services.worker().drain()
    send({"type": "identify", "userId": "c", "anonymousId": "x1"})
    services.worker().drain()
    send({"type": "alias", "previousId": "x2", "userId": "c"})
    services.worker().drain()
    consent = profile_of(services, "user_id:c")["consent"]
    assert consent["channel:email"]["status"] == "opted_out"
    assert consent["channel:email"]["source"] == "merge-conflict"


def test_same_message_id_is_applied_once(services: Services, send: Send) -> None:
    message = {"type": "track", "userId": "d", "event": "Paid", "messageId": "m-1"}
    send(message, message)
    send(message)
    assert services.worker().drain() == 1
    assert profile_of(services, "user_id:d")["computed"]["event_count"] == 1


def test_merges_inside_one_batch_chain_to_the_oldest(services: Services, send: Send) -> None:
    send({"type": "track", "anonymousId": "p1", "event": "e"})
    services.worker().drain()
    send(
        {"type": "track", "anonymousId": "p2", "event": "e"},
        {"type": "identify", "anonymousId": "p2", "userId": "chain"},
        {"type": "identify", "anonymousId": "p1", "userId": "chain"},
    )
    services.worker().drain()
    view = profile_of(services, "user_id:chain")
    assert ids(view) == {"anonymous_id:p1", "anonymous_id:p2", "user_id:chain"}
    assert view["computed"]["event_count"] == 4
    events = admin.list_events(services.db, profile_id=view["id"], after_id=0, limit=100)
    assert len(events) == 4
