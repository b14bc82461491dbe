"""Bad input at the tracking API over real HTTP: limits, malformed bodies, keys, wrong types,
partly invalid batches and the rate limit. Each refusal says what was wrong; nothing valid is
ever lost (every test ends by counting the event log after the worker drained the inbox)."""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from airspace.bootstrap import Services, build_services
from airspace.domain.clock import SimulatedClock
from airspace.settings import Settings
from airspace.store.keys import create_key, revoke_key
from airspace.store.migrate import migrate
from tests.conftest import LiveServer

# uvicorn's default `ws="auto"` imports the deprecated websockets API when the server starts;
# tests/conftest.py's live_server should pass ws="none" (Airspace serves no websockets).
pytestmark = [
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:websockets.server.WebSocketServerProtocol:DeprecationWarning"
    ),
]

EVENT_LIMIT = 32 * 1024
REQUEST_LIMIT = 500 * 1024
BATCH_LIMIT = 2500


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Settings a test changes; parametrize this fixture to change them."""
    return {}


@pytest.fixture
def services(
    database_url: str, clock: SimulatedClock, settings_overrides: dict[str, Any]
) -> Iterator[Services]:
    """The shared `services` fixture, with this test's setting overrides."""
    settings = Settings(database_url=database_url, secret="test-secret", **settings_overrides)  # type: ignore[call-arg]
    built = build_services(settings, clock=clock)
    migrate(built.db)
    yield built
    built.db.dispose()


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client for the live server that sends the write key as the Basic user."""
    with httpx.Client(base_url=live_server.url, auth=(live_server.write_key, "")) as client:
        yield client


def admin_items(server: LiveServer, path: str) -> list[dict[str, Any]]:
    """Every item of an admin list (events, quarantine), oldest first."""
    response = httpx.get(
        f"{server.url}/admin/v1{path}",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    )
    assert response.status_code == 200, response.text
    page = response.json()
    items: list[dict[str, Any]] = page["items"]
    after = page["next_after_id"]
    while after is not None:
        page = httpx.get(
            f"{server.url}/admin/v1{path}",
            params={"limit": 1000, "after_id": after},
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ).json()
        items += page["items"]
        after = page["next_after_id"]
    return items


def logged_message_ids(server: LiveServer) -> list[str]:
    """Drain the inbox, then the messageIds in the event log."""
    server.services.worker().drain()
    return [e["message_id"] for e in admin_items(server, "/events")]


def refused(response: httpx.Response, status: int, code: str) -> str:
    """Check an error answer; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def track(message_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u-1", "event": "Clicked", "messageId": message_id, **fields}


# --- size limits ---------------------------------------------------------------------------


def test_event_over_32_kb(live_server: LiveServer, http: httpx.Client) -> None:
    big = track("big", properties={"blob": "x" * EVENT_LIMIT})
    size = len(orjson.dumps(big))
    message = refused(http.post("/v1/track", json=big), 400, "event_too_large")
    assert message == (
        f"event is {size} bytes; the limit is {EVENT_LIMIT} bytes ({size - EVENT_LIMIT} over)"
    )

    # Exactly at the limit is fine.
    filler = "x" * (EVENT_LIMIT - len(orjson.dumps(track("edge", properties={"blob": ""}))))
    edge = track("edge", properties={"blob": filler})
    assert len(orjson.dumps(edge)) == EVENT_LIMIT
    assert http.post("/v1/track", json=edge).status_code == 200

    # In a batch only the big one is refused, with its index.
    answer = http.post("/v1/batch", json={"batch": [track("a"), big, track("b")]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "success": True,
        "accepted": 2,
        "duplicates": 0,
        "errors": [{"index": 1, "code": "event_too_large", "message": message}],
    }
    quarantined = admin_items(live_server, "/quarantine")
    assert [q["reason"] for q in quarantined] == [message, message]
    assert orjson.loads(quarantined[1]["payload"]) == big
    assert logged_message_ids(live_server) == ["edge", "a", "b"]


def test_request_over_500_kb(live_server: LiveServer, http: httpx.Client) -> None:
    batch = {"batch": [track(f"m{i}", properties={"blob": "y" * 30_000}) for i in range(18)]}
    body = orjson.dumps(batch)
    assert len(body) > REQUEST_LIMIT
    message = refused(http.post("/v1/batch", content=body), 400, "request_too_large")
    assert message == (
        f"request is {len(body)} bytes; the limit is {REQUEST_LIMIT} bytes "
        f"({len(body) - REQUEST_LIMIT} over)"
    )
    # The limit holds after decompression too.
    packed = gzip.compress(body)
    assert len(packed) < REQUEST_LIMIT
    response = http.post("/v1/batch", content=packed, headers={"Content-Encoding": "gzip"})
    assert refused(response, 400, "request_too_large") == (
        f"request decompresses to {len(body)} bytes; the limit is {REQUEST_LIMIT} bytes "
        f"({len(body) - REQUEST_LIMIT} over)"
    )
    # Refused as a whole: nothing of it is kept or applied.
    assert admin_items(live_server, "/quarantine") == []
    # Fifteen of those events fit in a request; a small gzipped batch passes too.
    fits = {"batch": batch["batch"][:15]}
    assert http.post("/v1/batch", json=fits).json()["accepted"] == 15
    response = http.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps({"batch": [track("z")]})),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.json()["accepted"] == 1
    assert logged_message_ids(live_server) == [f"m{i}" for i in range(15)] + ["z"]


def test_gzip_bomb_is_refused(live_server: LiveServer, http: httpx.Client) -> None:
    # 16 MB of JSON whitespace in 16 KB: a client sending it must not make the server
    # inflate it in memory.
    bomb = gzip.compress(b'{"batch": [' + b" " * (16 * 1024 * 1024) + b"]}", compresslevel=9)
    assert len(bomb) < 20 * 1024
    response = http.post("/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"})
    message = refused(response, 400, "request_too_large")
    assert re.fullmatch(
        rf"request decompresses to more than \d+ bytes; the limit is {REQUEST_LIMIT} bytes "
        r"\(at least \d+ over\)",
        message,
    ), message
    assert logged_message_ids(live_server) == []


BAD_ENCODINGS = [
    (
        gzip.compress(orjson.dumps(track("cut")))[:-6],
        "gzip",
        "the gzip body is truncated (its end is missing)",
    ),
    (
        orjson.dumps(track("plain")),
        "gzip",
        "the body is not valid gzip: Error -3 while decompressing data: incorrect header check",
    ),
    (orjson.dumps(track("br")), "br", "Content-Encoding 'br' is not supported; use gzip"),
]


def test_bad_content_encoding(live_server: LiveServer, http: httpx.Client) -> None:
    for body, encoding, expected in BAD_ENCODINGS:
        response = http.post("/v1/track", content=body, headers={"Content-Encoding": encoding})
        assert refused(response, 400, "invalid_input") == expected
    assert logged_message_ids(live_server) == []


def test_gzip_with_several_members(live_server: LiveServer, http: httpx.Client) -> None:
    """RFC 1952: a gzip body may be several members one after another; all of them count."""
    body = orjson.dumps({"batch": [track("first"), track("second")]})
    half = len(body) // 2
    packed = gzip.compress(body[:half]) + gzip.compress(body[half:])
    response = http.post("/v1/batch", content=packed, headers={"Content-Encoding": "gzip"})
    assert response.json()["accepted"] == 2, response.text
    assert logged_message_ids(live_server) == ["first", "second"]


def test_batch_of_more_than_2500_events(live_server: LiveServer, http: httpx.Client) -> None:
    over = {"batch": [track(f"n{i}") for i in range(BATCH_LIMIT + 1)]}
    message = refused(http.post("/v1/batch", json=over), 400, "batch_too_large")
    assert message == f"batch has {BATCH_LIMIT + 1} events; the limit is {BATCH_LIMIT} (1 over)"
    assert admin_items(live_server, "/quarantine") == []

    exact = {"batch": over["batch"][:BATCH_LIMIT]}
    answer = http.post("/v1/b", json=exact)
    assert answer.json() == {
        "success": True,
        "accepted": BATCH_LIMIT,
        "duplicates": 0,
        "errors": [],
    }
    assert logged_message_ids(live_server) == [f"n{i}" for i in range(BATCH_LIMIT)]


# --- malformed bodies ----------------------------------------------------------------------


MALFORMED = [
    (b'{"userId": "u", "event": }', "JSON: unexpected character at line 1 column 26 (position 25)"),
    (
        b'{"userId": "u",\n "event": "E",\n}',
        "JSON: trailing comma is not allowed at line 2 column 14 (position 29)",
    ),
    (b'{"userId": "u"', "at line 1 column 15 (position 14)"),
    (b"", "JSON: Input is a zero-length, empty document at line 1 column 1 (position 0)"),
    (b'{"userId": "u",\n "event": "\xff"}', "UTF-8: byte 0xff at line 2 column 12 (position 27)"),
]


def test_malformed_json_says_where(live_server: LiveServer, http: httpx.Client) -> None:
    for body, expected in MALFORMED:
        for path in ("/v1/track", "/v1/batch"):
            message = refused(http.post(path, content=body), 400, "malformed_json")
            assert message.startswith("body is not valid "), message
            assert message.endswith(expected), (body, message)
    assert logged_message_ids(live_server) == []


def test_body_must_be_an_object(live_server: LiveServer, http: httpx.Client) -> None:
    for body in ("[]", '"track"', "null", "42"):
        message = refused(http.post("/v1/track", content=body), 400, "invalid_input")
        assert message == "the body must be a JSON object"
    for batch in ({"a": 1}, "x", None):
        answer = http.post("/v1/batch", json={"batch": batch})
        assert (
            refused(answer, 400, "invalid_input") == 'a batch body must be {"batch": [ ...events ]}'
        )
    assert logged_message_ids(live_server) == []


def test_unknown_paths_and_methods_answer_code_and_message(http: httpx.Client) -> None:
    assert refused(http.post("/v1/trak", json=track("t")), 404, "not_found") == "Not Found"
    wrong_method = http.get("/v1/track")
    assert refused(wrong_method, 405, "method_not_allowed") == "Method Not Allowed"
    assert wrong_method.headers["allow"] == "POST"


# --- keys ----------------------------------------------------------------------------------


def test_keys(live_server: LiveServer) -> None:
    services = live_server.services
    url = live_server.url
    event = track("keyed")
    key, revoked = create_key(services.db, "write", "old", services.clock.now())
    assert revoke_key(services.db, key.id, services.clock.now())

    missing = httpx.post(f"{url}/v1/track", json=event)
    assert "no key" in refused(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == 'Basic realm="airspace"'
    for secret in ("wk_wrong", revoked):
        for answer in (
            httpx.post(f"{url}/v1/track", json=event, auth=(secret, "")),
            httpx.post(f"{url}/v1/track", json={**event, "writeKey": secret}),
        ):
            assert refused(answer, 401, "unauthorized") == "unknown or revoked key"
    garbled = httpx.post(f"{url}/v1/track", json=event, headers={"Authorization": "Basic %%%"})
    assert refused(garbled, 401, "unauthorized") == "the Basic credentials are not valid base64"
    other = httpx.post(f"{url}/v1/track", json=event, headers={"Authorization": "Token abc"})
    assert "unsupported authorization scheme 'token'" in refused(other, 401, "unauthorized")

    # An admin key cannot send events, in any form...
    for answer in (
        httpx.post(f"{url}/v1/track", json=event, auth=(live_server.admin_key, "")),
        httpx.post(
            f"{url}/v1/batch",
            json={"batch": [event]},
            headers={"Authorization": f"Bearer {live_server.admin_key}"},
        ),
        httpx.post(f"{url}/v1/t", json={**event, "writeKey": live_server.admin_key}),
    ):
        assert refused(answer, 403, "forbidden") == "an admin key cannot do this; use a write key"
    # ... and a write key cannot read.
    for headers in (
        {"Authorization": f"Bearer {live_server.write_key}"},
        {
            "Authorization": "Basic "
            + base64.b64encode(f"{live_server.write_key}:".encode()).decode()
        },
    ):
        answer = httpx.get(f"{url}/admin/v1/events", headers=headers)
        assert "use an admin (secret) key" in refused(answer, 403, "forbidden")
    assert refused(httpx.get(f"{url}/admin/v1/events"), 401, "unauthorized").startswith("no key")
    assert logged_message_ids(live_server) == []

    # The right key still works, as the Basic user or in the body.
    assert httpx.post(f"{url}/v1/track", json=event, auth=(live_server.write_key, "")).is_success
    assert httpx.post(
        f"{url}/v1/t", json={**track("body-key"), "writeKey": live_server.write_key}
    ).is_success
    assert logged_message_ids(live_server) == ["keyed", "body-key"]


# --- wrong types ---------------------------------------------------------------------------

WRONG = [
    ("/v1/identify", {"userId": {"id": 1}}, "userId must be a string or null, got dict"),
    ("/v1/track", {"userId": True, "event": "E"}, "userId must be a string or null, got bool"),
    (
        "/v1/track",
        {"userId": "u", "event": "E", "properties": [1, 2]},
        "properties must be an object",
    ),
    ("/v1/track", {"userId": "u", "event": "E", "traits": "vip"}, "traits must be an object"),
    ("/v1/track", {"userId": "u", "event": "E", "context": [1]}, "context must be an object"),
    (
        "/v1/track",
        {"userId": "u", "event": "E", "timestamp": "yesterday"},
        "timestamp 'yesterday' is not an ISO-8601 time (e.g. 2026-11-22T10:00:00Z)",
    ),
    (
        "/v1/track",
        {"userId": "u", "event": "E", "originalTimestamp": 1700000000},
        "originalTimestamp must be an ISO-8601 string, got int",
    ),
    ("/v1/track", {"userId": "u"}, "event is required for this event type"),
    ("/v1/track", {"userId": "u", "event": " "}, "event must not be empty"),
    ("/v1/track", {"userId": "u", "event": 7}, "event must be a string, got int"),
    (
        "/v1/track",
        {"userId": "u", "event": "x" * 201},
        "event is 201 characters long; the limit is 200",
    ),
    (
        "/v1/page",
        {"userId": None, "anonymousId": None},
        "userId or anonymousId is required (both were missing or null)",
    ),
    (
        "/v1/track",
        {"anonymousId": "a" * 513, "event": "E"},
        "anonymousId is 513 characters long; the limit is 512",
    ),
    ("/v1/alias", {"userId": "u"}, "alias needs both previousId and userId"),
    ("/v1/alias", {"previousId": "anon"}, "userId or anonymousId is required"),
    ("/v1/group", {"userId": "u"}, "groupId is required for a group call"),
    (
        "/v1/track",
        {
            "userId": "u",
            "event": "Consent Updated",
            "properties": {"channel": "fax", "status": "yes"},
        },
        "properties.status is 'yes'",
    ),
    (
        "/v1/track",
        {"userId": "u", "event": "E", "messageId": "m\u0000"},
        "messageId contains the NUL character (\\u0000), which cannot be stored",
    ),
    (
        "/v1/identify",
        {"userId": "u", "traits": {"notes": ["ok", "bad\u0000"]}},
        "traits.notes[1] contains the NUL character (\\u0000), which cannot be stored",
    ),
    (
        "/v1/track",
        {"userId": "u", "event": "E", "properties": {"a\u0000": 1}},
        "a key of properties contains the NUL character (\\u0000), which cannot be stored",
    ),
]


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = {"a": value}
    return value


WRONG.append(
    (
        "/v1/track",
        {"userId": "u", "event": "E", "properties": nested(300)},
        "is nested more than 64 objects or arrays deep (the limit is 64)",
    )
)


def test_wrong_types_are_refused(live_server: LiveServer, http: httpx.Client) -> None:
    messages = []
    for path, body, expected in WRONG:
        message = refused(http.post(path, json=body), 400, "invalid_input")
        assert expected in message, (path, body)
        messages.append(message)
    # Also kept in the quarantine with their reasons, for someone to look at.
    kept = admin_items(live_server, "/quarantine")
    assert [(q["stage"], q["reason"]) for q in kept] == [("ingest", m) for m in messages]
    assert logged_message_ids(live_server) == []


def test_deep_nesting_limit_is_exact(live_server: LiveServer, http: httpx.Client) -> None:
    # The event object is level 1, so its properties may nest 63 levels.
    ok = {"userId": "u", "event": "E", "messageId": "deep-ok", "properties": nested(63)}
    assert http.post("/v1/track", json=ok).status_code == 200
    too_deep = {**ok, "messageId": "deep-no", "properties": nested(64)}
    message = refused(http.post("/v1/track", json=too_deep), 400, "invalid_input")
    assert message.startswith("properties.a.a.a.")
    assert logged_message_ids(live_server) == ["deep-ok"]


# --- partly invalid batches -----------------------------------------------------------------


def test_batch_keeps_the_valid_and_quarantines_the_invalid(
    live_server: LiveServer, http: httpx.Client
) -> None:
    items: list[Any] = [
        track("ok-1"),
        track("bad-user", userId={"id": 7}),
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}, "messageId": "ok-2"},
        {"type": "track", "userId": "u-1", "messageId": "bad-event"},
        "not an event",
        {"type": "launch", "userId": "u-1", "messageId": "bad-type"},
        {"userId": "u-1", "messageId": "no-type"},
        track("bad-context", context="web"),
        {"type": "page", "anonymousId": "a-1", "userId": None, "messageId": "ok-3"},
    ]
    answer = http.post("/v1/batch", json={"batch": items, "context": {"ip": "10.0.0.1"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["success"], body["accepted"], body["duplicates"]) == (True, 3, 0)
    assert [(e["index"], e["code"], e["message"]) for e in body["errors"]] == [
        (1, "invalid_input", "userId must be a string or null, got dict"),
        (3, "invalid_input", "event is required for this event type"),
        (4, "invalid_input", "an event must be a JSON object, got a string"),
        (
            5,
            "invalid_input",
            "type 'launch' is not one of alias, group, identify, page, screen, track",
        ),
        (6, "invalid_input", "type is required for each item of a batch"),
        (7, "invalid_input", "context must be an object, got str"),
    ]
    quarantined = admin_items(live_server, "/quarantine")
    assert [(q["stage"], q["reason"], orjson.loads(q["payload"])) for q in quarantined] == [
        ("ingest", e["message"], items[e["index"]]) for e in body["errors"]
    ]
    # (Events of different people may be applied in any order.)
    assert sorted(logged_message_ids(live_server)) == ["ok-1", "ok-2", "ok-3"]
    # The batch's context reached the valid events.
    events = admin_items(live_server, "/events")
    assert {e["payload"]["context"]["ip"] for e in events} == {"10.0.0.1"}


def test_batch_with_a_bad_sent_at_is_refused_whole(
    live_server: LiveServer, http: httpx.Client
) -> None:
    answer = http.post("/v1/batch", json={"batch": [track("t")], "sentAt": "soon"})
    assert "sentAt 'soon' is not an ISO-8601 time" in refused(answer, 400, "invalid_input")
    assert logged_message_ids(live_server) == []


# --- rate limit ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_overrides", [{"rate_limit_per_second": 2.0, "rate_limit_burst": 5.0}]
)
def test_rate_limit_per_write_key(live_server: LiveServer, http: httpx.Client) -> None:
    services = live_server.services
    clock = services.clock
    assert isinstance(clock, SimulatedClock)
    accepted: list[str] = []

    def send(*ids: str) -> httpx.Response:
        response = http.post("/v1/batch", json={"batch": [track(i) for i in ids]})
        if response.status_code == 200:
            assert response.json()["accepted"] == len(ids)
            accepted.extend(ids)
        return response

    assert send("r1", "r2", "r3").status_code == 200
    assert send("r4", "r5").status_code == 200  # the burst of 5 is spent
    limited = send("r6")
    message = refused(limited, 429, "rate_limited")
    assert message == "write key sends more than 2 events/s; retry after 0.5 s"
    assert limited.headers["retry-after"] == "1"
    # Refused requests cost nothing and keep nothing.
    assert refused(http.post("/v1/track", json=track("r6")), 429, "rate_limited") == message

    # Another write key has its own bucket.
    _, other = create_key(services.db, "write", "other", clock.now())
    assert httpx.post(
        f"{live_server.url}/v1/track", json=track("other-1"), auth=(other, "")
    ).is_success
    accepted.append("other-1")

    clock.advance(timedelta(seconds=1))  # two tokens back
    four = send("r6", "r7", "r8", "r9")
    assert refused(four, 429, "rate_limited").endswith("retry after 1.0 s")
    assert four.headers["retry-after"] == "1"
    assert send("r6", "r7").status_code == 200
    clock.advance(timedelta(seconds=10))  # full again, never above the burst
    assert send("r8", "r9", "r10", "r11", "r12").status_code == 200
    assert send("r13").status_code == 429

    # A batch larger than the burst goes through once the bucket is full, and is paid back.
    clock.advance(timedelta(seconds=10))
    assert send(*(f"r{i}" for i in range(13, 21))).status_code == 200
    owed = send("r21")
    assert refused(owed, 429, "rate_limited").endswith("retry after 2.0 s")
    assert owed.headers["retry-after"] == "2"
    clock.advance(timedelta(seconds=2))
    assert send("r21").status_code == 200

    assert sorted(logged_message_ids(live_server)) == sorted(accepted)
    assert len(accepted) == 22
