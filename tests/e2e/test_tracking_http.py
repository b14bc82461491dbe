"""The tracking API over real HTTP, as Segment's SDKs and analytics.js speak it.

The official `segment-analytics-python` client and raw analytics.js-shaped
requests go to a live server; the worker applies them (`drain()`); the admin
API must then show exactly the profiles, merges and events they imply.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from airspace.domain.clock import SimulatedClock
from airspace.store.keys import create_key
from tests.conftest import START, LiveServer

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)

# uvicorn's default `ws="auto"` imports the deprecated websockets API when the server starts;
# tests/conftest.py's live_server should pass ws="none" (Airspace serves no websockets).
pytestmark = [
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:websockets.server.WebSocketServerProtocol:DeprecationWarning"
    ),
]


def iso(moment: datetime) -> str:
    """A time as the admin API shows it."""
    return moment.astimezone(UTC).isoformat()


class Admin:
    """The admin API of a live server, read with an admin key."""

    def __init__(self, server: LiveServer) -> None:
        self.http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"/admin/v1{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def profile(self, identifier: str) -> dict[str, Any]:
        """The profile that owns `identifier` (type:value)."""
        profile: dict[str, Any] = self.get("/profiles", identifier=identifier)
        return profile

    def all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a paged list (events, merges, quarantine)."""
        items: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.get(path, after_id=after, limit=1000)
            items += page["items"]
            if page["next_after_id"] is None:
                return items
            after = page["next_after_id"]


@pytest.fixture
def admin(live_server: LiveServer) -> Iterator[Admin]:
    """The admin API of the live server."""
    api = Admin(live_server)
    yield api
    api.http.close()


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A plain HTTP client for the live server, with no credentials."""
    with httpx.Client(base_url=live_server.url) as client:
        yield client


def drain(server: LiveServer) -> int:
    """Apply everything accepted so far."""
    return server.services.worker().drain()


def identifiers(profile: dict[str, Any]) -> set[str]:
    return {f"{i['type']}:{i['value']}" for i in profile["identifiers"]}


# --- the official Python SDK ---------------------------------------------------------------


@pytest.mark.parametrize("use_gzip", [False, True], ids=["plain", "gzip"])
def test_segment_python_client_builds_profiles_merges_and_events(
    live_server: LiveServer, admin: Admin, use_gzip: bool
) -> None:
    clock = live_server.services.clock
    assert isinstance(clock, SimulatedClock)
    segment = Client(live_server.write_key, host=live_server.url, gzip=use_gzip, sync_mode=True)
    sent: dict[str, tuple[str, datetime]] = {}  # messageId -> (type, timestamp)

    def at(minutes: int, kind: str) -> dict[str, Any]:
        message_id = f"{kind}-{uuid.uuid4()}"
        sent[message_id] = (kind, T0 + timedelta(minutes=minutes))
        return {"timestamp": T0 + timedelta(minutes=minutes), "message_id": message_id}

    # An anonymous visitor browses; nothing ties them to a person yet.
    segment.page(anonymous_id="anon-1", name="Home", properties={"path": "/"}, **at(0, "page"))
    segment.page(anonymous_id="anon-1", name="Pricing", **at(1, "page"))
    segment.track(
        anonymous_id="anon-1", event="Viewed Product", properties={"sku": "A1"}, **at(2, "track")
    )
    assert drain(live_server) == 3
    anonymous = admin.profile("anonymous_id:anon-1")
    assert anonymous["computed"]["event_count"] == 3
    assert identifiers(anonymous) == {"anonymous_id:anon-1"}

    # They sign up: the anonymous history now belongs to the user.
    segment.identify(
        user_id="user-1",
        anonymous_id="anon-1",
        traits={"email": "Ana@Example.com", "plan": "pro"},
        **at(3, "identify"),
    )
    assert drain(live_server) == 1
    user = admin.profile("user_id:user-1")
    assert user["id"] == anonymous["id"]
    assert admin.profile("email:ana@example.com")["id"] == user["id"]
    assert user["computed"]["event_count"] == 4

    # Later, on another device, still anonymous.
    clock.advance(timedelta(minutes=5))
    segment.screen(anonymous_id="anon-2", name="Home", **at(10, "screen"))
    segment.track(anonymous_id="anon-2", event="Added to Cart", **at(11, "track"))
    assert drain(live_server) == 2
    second = admin.profile("anonymous_id:anon-2")
    assert second["id"] != user["id"]
    assert admin.all("/merges") == []

    # The app aliases the device's anonymous id to the user: the second profile merges in.
    alias = at(12, "alias")
    segment.alias(previous_id="anon-2", user_id="user-1", **alias)
    segment.group(user_id="user-1", group_id="acme", traits={"name": "Acme"}, **at(13, "group"))
    segment.track(
        user_id="user-1", event="Order Completed", properties={"revenue": 42.5}, **at(14, "track")
    )
    assert drain(live_server) == 3

    merges = admin.all("/merges")
    assert [(m["survivor_id"], m["merged_id"], m["message_id"], m["cause"]) for m in merges] == [
        (
            user["id"],
            second["id"],
            alias["message_id"],
            "alias carried user_id:user-1, anonymous_id:anon-2",
        )
    ]
    profile = admin.profile("anonymous_id:anon-2")
    assert profile["id"] == user["id"]
    assert profile["merged_from"] == [second["id"]]
    assert admin.get(f"/profiles/{second['id']}")["id"] == user["id"]
    assert identifiers(profile) == {
        "user_id:user-1",
        "anonymous_id:anon-1",
        "anonymous_id:anon-2",
        "email:ana@example.com",
    }
    # A group call's traits describe the group, not the person.
    assert profile["traits"] == {"email": "Ana@Example.com", "plan": "pro"}
    computed = profile["computed"]
    assert computed["event_count"] == 9
    assert computed["counts_by_type"] == {
        "page": 2,
        "track": 3,
        "identify": 1,
        "screen": 1,
        "alias": 1,
        "group": 1,
    }
    assert computed["counts_by_event"] == {
        "Viewed Product": 1,
        "Added to Cart": 1,
        "Order Completed": 1,
    }
    assert computed["groups"] == ["acme"]
    assert computed["first_seen"] == iso(T0)
    assert computed["last_seen"] == iso(T0 + timedelta(minutes=14))

    # Every event once, on the surviving profile, with its type and the time the SDK gave.
    events = admin.all("/events")
    assert {e["message_id"]: (e["type"], e["timestamp"]) for e in events} == {
        message_id: (kind, iso(moment)) for message_id, (kind, moment) in sent.items()
    }
    assert len(events) == len(sent) == 9
    assert {e["profile_id"] for e in events} == {user["id"]}
    profile_events = admin.get(f"/profiles/{second['id']}/events", limit=100)["items"]
    assert [e["id"] for e in profile_events] == [e["id"] for e in events]
    assert {e["payload"]["context"]["library"]["name"] for e in events} == {"analytics-python"}
    assert admin.all("/quarantine") == []


def test_segment_python_client_error_is_readable(live_server: LiveServer) -> None:
    """A refused call surfaces in the SDK as an APIError with our code and message."""
    segment = Client("wk_not-a-key", host=live_server.url, sync_mode=True)
    with pytest.raises(APIError) as caught:
        segment.track(user_id="u", event="E")
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert "unknown or revoked key" in caught.value.message

    # Even a wrong URL answers {code, message}, which the SDK reads (it fails on anything else).
    lost = Client(live_server.write_key, host=f"{live_server.url}/segment", sync_mode=True)
    with pytest.raises(APIError) as caught:
        lost.track(user_id="u", event="E")
    assert (caught.value.status, caught.value.code) == (404, "not_found")


# --- analytics.js over raw HTTP --------------------------------------------------------------


def ajs_message(kind: str, write_key: str, **fields: Any) -> dict[str, Any]:
    """A message shaped as analytics.js (analytics-next) sends it."""
    message: dict[str, Any] = {
        "type": kind,
        "messageId": f"ajs-next-{uuid.uuid4().hex}",
        "anonymousId": "ajs-anon-1",
        "userId": None,
        "timestamp": "2026-11-01T10:00:00.000Z",
        "sentAt": "2026-11-01T10:00:00.250Z",
        "context": {
            "page": {"path": "/shop", "url": "https://shop.example/shop", "title": "Shop"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            "locale": "de-DE",
            "library": {"name": "analytics.js", "version": "next-1.81.0"},
        },
        "integrations": {},
        "writeKey": write_key,
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
    }
    message.update(fields)
    return message


def post_text(
    http: httpx.Client, path: str, body: Any, *, compress: bool = False
) -> httpx.Response:
    """Post JSON the way analytics.js does: `text/plain`, no Authorization header."""
    data = orjson.dumps(body)
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"}
    if compress:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return http.post(path, content=data, headers=headers)


def test_analytics_js_short_paths_text_plain_and_body_write_key(
    live_server: LiveServer, admin: Admin, http: httpx.Client
) -> None:
    key = live_server.write_key
    calls = [
        ("/v1/p", ajs_message("page", key, name="Shop", properties={"path": "/shop"})),
        ("/v1/t", ajs_message("track", key, event="Product Viewed", properties={"sku": "B7"})),
        (
            "/v1/i",
            ajs_message("identify", key, userId="ajs-user", traits={"email": "bo@example.com"}),
        ),
        ("/v1/s", ajs_message("screen", key, userId="ajs-user", name="Cart")),
        ("/v1/g", ajs_message("group", key, userId="ajs-user", groupId="g-1", traits={})),
        (
            "/v1/a",
            ajs_message("alias", key, userId="ajs-user", previousId="ajs-anon-2", anonymousId=None),
        ),
    ]
    for path, message in calls:
        response = post_text(http, path, message)
        assert (response.status_code, response.json()) == (200, {"success": True}), path
        assert response.headers["access-control-allow-origin"] == "*"
        assert drain(live_server) == 1, path

    batch = {
        "batch": [
            ajs_message("track", key, event="Checkout Started", userId=None),
            ajs_message("page", key, name="Checkout", userId="ajs-user", anonymousId=None),
        ],
        "writeKey": key,
        "sentAt": "2026-11-01T10:00:01Z",
    }
    response = post_text(http, "/v1/b", batch, compress=True)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 2, "duplicates": 0, "errors": []}
    assert drain(live_server) == 2

    profile = admin.profile("user_id:ajs-user")
    assert identifiers(profile) == {
        "user_id:ajs-user",
        "anonymous_id:ajs-anon-1",
        "anonymous_id:ajs-anon-2",
        "email:bo@example.com",
    }
    assert profile["computed"]["counts_by_type"] == {
        "page": 2,
        "track": 2,
        "identify": 1,
        "screen": 1,
        "group": 1,
        "alias": 1,
    }
    assert profile["computed"]["locale"] == "de-DE"
    events = admin.all("/events")
    sent = [m for _, m in calls] + batch["batch"]
    assert [(e["message_id"], e["type"]) for e in events] == [
        (m["messageId"], m["type"]) for m in sent
    ]
    assert {e["profile_id"] for e in events} == {profile["id"]}
    # Explicit timestamps are kept; the analytics.js bookkeeping is not an identifier.
    assert {e["timestamp"] for e in events} == {"2026-11-01T10:00:00+00:00"}
    assert admin.all("/merges") == []
    assert admin.all("/quarantine") == []


def test_long_paths_with_basic_auth_and_gzip(
    live_server: LiveServer, admin: Admin, http: httpx.Client
) -> None:
    auth = (live_server.write_key, "")
    for path, message in [
        ("/v1/track", {"userId": "u-9", "event": "Signed Up", "anonymousId": None}),
        ("/v1/identify", {"userId": "u-9", "traits": {"plan": "free"}}),
        ("/v1/page", {"userId": "u-9", "name": "Home"}),
        ("/v1/screen", {"userId": "u-9", "name": "Home"}),
        ("/v1/group", {"userId": "u-9", "groupId": "g-9"}),
        ("/v1/alias", {"userId": "u-9", "previousId": "anon-9"}),
    ]:
        body = gzip.compress(orjson.dumps(message))
        response = http.post(path, content=body, auth=auth, headers={"Content-Encoding": "gzip"})
        assert (response.status_code, response.json()) == (200, {"success": True}), path
    assert drain(live_server) == 6
    profile = admin.profile("anonymous_id:anon-9")
    assert profile["computed"]["event_count"] == 6
    assert profile["traits"] == {"plan": "free"}
    assert identifiers(profile) == {"user_id:u-9", "anonymous_id:anon-9"}


def test_settings_for_analytics_js(live_server: LiveServer, http: httpx.Client) -> None:
    key = live_server.write_key
    response = http.get(f"/v1/projects/{key}/settings", headers={"Origin": "https://shop.example"})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    settings = response.json()
    assert settings["integrations"]["Segment.io"] == {
        "apiKey": key,
        "apiHost": f"{live_server.host_port}/v1",
        "protocol": "http",
        "unbundledIntegrations": [],
        "addBundledMetadata": True,
        "maybeBundledConfigIds": {},
    }
    assert settings["plan"]["track"]["__default"]["enabled"] is True

    # A configured public URL wins over the address this request came in on.
    live_server.services.settings.public_url = "https://track.example.com/"
    segment_io = http.get(f"/v1/projects/{key}/settings").json()["integrations"]["Segment.io"]
    assert (segment_io["apiHost"], segment_io["protocol"]) == ("track.example.com/v1", "https")

    unknown = http.get("/v1/projects/wk_unknown/settings")
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "unauthorized"
    admin_key = http.get(f"/v1/projects/{live_server.admin_key}/settings")
    assert admin_key.status_code == 403


@pytest.mark.parametrize("path", ["/v1/t", "/v1/batch", "/v1/projects/wk_any/settings"])
def test_cors_preflight(http: httpx.Client, path: str) -> None:
    method = "GET" if path.endswith("settings") else "POST"
    response = http.options(
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert method in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed
    assert "authorization" in allowed
    assert "access-control-allow-credentials" not in response.headers


# --- deduplication and time ------------------------------------------------------------------


def test_message_id_deduplication(
    live_server: LiveServer, admin: Admin, http: httpx.Client
) -> None:
    services = live_server.services
    auth = (live_server.write_key, "")
    track = {"type": "track", "userId": "dedupe-user", "event": "Paid", "messageId": "dup-1"}

    first = http.post("/v1/batch", json={"batch": [track, track]}, auth=auth)
    assert first.json() == {"success": True, "accepted": 1, "duplicates": 1, "errors": []}
    again = http.post("/v1/track", json=track, auth=auth)
    assert (again.status_code, again.json()) == (200, {"success": True})
    assert drain(live_server) == 1
    # Still a duplicate after it was applied, by any path.
    later = http.post("/v1/b", json={"batch": [track]}, auth=auth)
    assert later.json() == {"success": True, "accepted": 0, "duplicates": 1, "errors": []}
    assert http.post("/v1/t", json=track, auth=auth).status_code == 200
    assert drain(live_server) == 0

    # Another write key (another source) with the same messageId is another event.
    _, other_key = create_key(services.db, "write", "second source", services.clock.now())
    other = http.post(
        "/v1/batch",
        json={"batch": [{**track, "properties": {"source": "second"}}]},
        auth=(other_key, ""),
    )
    assert other.json() == {"success": True, "accepted": 1, "duplicates": 0, "errors": []}
    assert drain(live_server) == 1

    events = admin.all("/events")
    assert [e["message_id"] for e in events] == ["dup-1", "dup-1"]
    assert [e["payload"].get("properties") for e in events] == [None, {"source": "second"}]
    assert admin.profile("user_id:dedupe-user")["computed"]["counts_by_event"] == {"Paid": 2}


def test_time_resolution(live_server: LiveServer, admin: Admin, http: httpx.Client) -> None:
    clock = live_server.services.clock
    assert isinstance(clock, SimulatedClock)
    now = clock.advance(timedelta(hours=3, minutes=17, seconds=5))
    assert now == START + timedelta(hours=3, minutes=17, seconds=5)
    auth = (live_server.write_key, "")

    def track(message_id: str, **times: str) -> dict[str, Any]:
        return {
            "type": "track",
            "userId": "clock-user",
            "event": "E",
            "messageId": message_id,
            **times,
        }

    batch = [
        # An explicit timestamp is kept as sent, whatever else is there.
        track("explicit", timestamp="2026-10-30T08:00:00+02:00"),
        track(
            "explicit-wins",
            timestamp="2026-10-30T06:00:00Z",
            originalTimestamp="2026-01-01T00:00:00Z",
            sentAt="2026-01-01T00:00:09Z",
        ),
        # The device clock is 5 s into sending: the event happened 5 s before we received it.
        track(
            "own-sent-at", originalTimestamp="2020-01-01T00:00:00Z", sentAt="2020-01-01T00:00:05Z"
        ),
        # No sentAt of its own: the batch's is used.
        track("batch-sent-at", originalTimestamp="2030-05-05T12:00:00Z"),
        # Neither: the time it was received.
        track("received"),
    ]
    response = http.post(
        "/v1/batch", json={"batch": batch, "sentAt": "2030-05-05T12:01:00Z"}, auth=auth
    )
    assert response.json() == {"success": True, "accepted": 5, "duplicates": 0, "errors": []}
    # A single call without any sentAt keeps its originalTimestamp.
    single = track("original-only", originalTimestamp="2026-10-31T23:00:00-01:00")
    assert http.post("/v1/track", json=single, auth=auth).status_code == 200
    assert drain(live_server) == 6

    events = {e["message_id"]: e for e in admin.all("/events")}
    expected = {
        "explicit": datetime(2026, 10, 30, 6, 0, tzinfo=UTC),
        "explicit-wins": datetime(2026, 10, 30, 6, 0, tzinfo=UTC),
        "own-sent-at": now - timedelta(seconds=5),
        "batch-sent-at": now - timedelta(minutes=1),
        "received": now,
        "original-only": datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
    }
    assert {m: e["timestamp"] for m, e in events.items()} == {
        m: iso(t) for m, t in expected.items()
    }
    assert {e["received_at"] for e in events.values()} == {iso(now)}
    assert events["received"]["payload"]["timestamp"] == "2026-11-02T12:17:05Z"
