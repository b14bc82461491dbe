"""The admin API over real HTTP: lookups, lists, consent, topics, export, erasure."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture
def client(live_server: LiveServer) -> httpx.Client:
    with httpx.Client(
        base_url=live_server.url,
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        timeout=30,
    ) as admin_client:
        yield admin_client


def track(live_server: LiveServer, *messages: dict) -> None:
    response = httpx.post(
        f"{live_server.url}/v1/batch",
        json={"batch": list(messages)},
        auth=(live_server.write_key, ""),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["errors"] == []
    live_server.services.worker().drain()


def test_lookup_by_any_identifier_and_by_merged_id(
    live_server: LiveServer, client: httpx.Client
) -> None:
    track(
        live_server,
        {"type": "track", "anonymousId": "tab-1", "event": "Viewed"},
        {
            "type": "identify",
            "userId": "42",
            "traits": {"email": "Ana@Example.com", "phone": "+44 20 7946 0958"},
        },
    )
    anonymous = client.get("/admin/v1/profiles", params={"identifier": "anonymous_id:tab-1"})
    assert anonymous.status_code == 200
    old_id = anonymous.json()["id"]
    track(live_server, {"type": "alias", "previousId": "tab-1", "userId": "42"})
    by_email = client.get("/admin/v1/profiles", params={"identifier": "email:ANA@example.com"})
    by_phone = client.get("/admin/v1/profiles", params={"identifier": "phone:+442079460958"})
    assert by_email.status_code == by_phone.status_code == 200
    profile = by_email.json()
    assert profile["id"] == by_phone.json()["id"]
    assert profile["computed"]["event_count"] == 3
    merged_id = old_id if old_id != profile["id"] else None
    if merged_id is not None:
        followed = client.get(f"/admin/v1/profiles/{merged_id}")
        assert followed.json()["id"] == profile["id"]
        assert merged_id in profile["merged_from"]
    merges = client.get("/admin/v1/merges").json()["items"]
    assert len(merges) == 1
    assert merges[0]["survivor_id"] == profile["id"]
    missing = client.get("/admin/v1/profiles", params={"identifier": "email:nobody@example.com"})
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    bad = client.get("/admin/v1/profiles", params={"identifier": "no-colon"})
    assert bad.status_code == 400
    assert "type:value" in bad.json()["message"]


def test_events_are_paged(live_server: LiveServer, client: httpx.Client) -> None:
    track(live_server, *({"type": "track", "userId": "p", "event": f"E{n}"} for n in range(5)))
    first = client.get("/admin/v1/events", params={"limit": 2}).json()
    assert [e["name"] for e in first["items"]] == ["E0", "E1"]
    second = client.get(
        "/admin/v1/events", params={"limit": 2, "after_id": first["next_after_id"]}
    ).json()
    assert [e["name"] for e in second["items"]] == ["E2", "E3"]
    profile_id = first["items"][0]["profile_id"]
    own = client.get(f"/admin/v1/profiles/{profile_id}/events", params={"limit": 10}).json()
    assert len(own["items"]) == 5
    assert own["next_after_id"] is None


def test_consent_and_topics(live_server: LiveServer, client: httpx.Client) -> None:
    track(live_server, {"type": "identify", "userId": "c-1"})
    profile_id = client.get("/admin/v1/profiles", params={"identifier": "user_id:c-1"}).json()["id"]
    topic = client.put("/admin/v1/topics/newsletter", json={"kind": "opt_out"})
    assert topic.status_code == 200
    assert topic.json()["version"] == 1
    [listed] = client.get("/admin/v1/topics").json()
    assert listed["definition"] == {"topic": "newsletter", "kind": "opt_out"}
    changed = client.post(
        f"/admin/v1/profiles/{profile_id}/consent",
        json={"channel": "sms", "status": "opted_out", "source": "support-ticket-17"},
    )
    assert changed.status_code == 200
    assert changed.json()["channel:sms"]["source"] == "support-ticket-17"
    changed = client.post(
        f"/admin/v1/profiles/{profile_id}/consent",
        json={"topic": "newsletter", "status": "opted_in"},
    )
    assert changed.json()["topic:newsletter"]["status"] == "opted_in"
    both = client.post(
        f"/admin/v1/profiles/{profile_id}/consent",
        json={"channel": "sms", "topic": "x", "status": "opted_in"},
    )
    assert both.status_code == 400
    wrong = client.post(
        f"/admin/v1/profiles/{profile_id}/consent", json={"channel": "fax", "status": "opted_in"}
    )
    assert wrong.status_code == 422
    profile = client.get(f"/admin/v1/profiles/{profile_id}").json()
    assert profile["consent"]["channel:sms"]["status"] == "opted_out"


def test_export_then_erase(live_server: LiveServer, client: httpx.Client) -> None:
    track(
        live_server,
        {
            "type": "identify",
            "userId": "gone",
            "traits": {"email": "gone@example.com", "name": "Gwendolyn"},
        },
        {"type": "track", "userId": "gone", "event": "Bought"},
    )
    profile_id = client.get("/admin/v1/profiles", params={"identifier": "user_id:gone"}).json()[
        "id"
    ]
    export = client.get(f"/admin/v1/profiles/{profile_id}/export")
    assert export.status_code == 200
    assert len(export.json()["events"]) == 2
    assert export.json()["traits"]["name"] == "Gwendolyn"
    erased = client.delete(f"/admin/v1/profiles/{profile_id}")
    assert erased.status_code == 200
    assert erased.json()["events"] == 2
    assert client.get(f"/admin/v1/profiles/{profile_id}").status_code == 404
    assert client.delete(f"/admin/v1/profiles/{profile_id}").status_code == 404
    stats = client.get("/admin/v1/stats").json()["counts"]
    assert stats["events"] == 0


def test_operations_endpoints(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}
    metrics = httpx.get(f"{live_server.url}/metrics").text
    assert "airspace_events_accepted_total" in metrics
    assert httpx.get(f"{live_server.url}/docs").status_code == 200
    paths = httpx.get(f"{live_server.url}/openapi.json").json()["paths"]
    assert "/v1/batch" in paths
    assert "/admin/v1/profiles/{profile_id}" in paths
    assert httpx.get(f"{live_server.url}/admin/v1/events").status_code == 401
