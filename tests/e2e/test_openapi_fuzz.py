"""Fuzzing over real HTTP: schemathesis drives every operation of our OpenAPI, and
hypothesis throws arbitrary JSON and bytes at the tracking endpoints. Whatever comes in, the
answer is never a server error, every 4xx is a JSON `{code, message}`, and the worker can
apply whatever was accepted. SQLite only: these look for bugs in our code, not the database's.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.conftest import LiveServer

# uvicorn's default `ws="auto"` imports the deprecated websockets API when the server starts;
# tests/conftest.py's live_server should pass ws="none" (Airspace serves no websockets).
pytestmark = [
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:websockets.server.WebSocketServerProtocol:DeprecationWarning"
    ),
]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only, in this module."""
    return f"sqlite:///{tmp_path / 'airspace.db'}"


def credentials_for(path: str, server: LiveServer) -> dict[str, str]:
    """The key an operation needs: admin keys for /admin, write keys for tracking."""
    if path.startswith("/admin/"):
        return {"Authorization": f"Bearer {server.admin_key}"}
    if path.startswith("/v1/"):
        return {"Authorization": f"Bearer {server.write_key}"}
    return {}


def check_answer(response: Any) -> None:
    """Never a server error; a client error always says what and why, as JSON."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("code"), str), body
        assert isinstance(body.get("message"), str), body
        assert body["message"], body


@pytest.fixture
def api_schema(live_server: LiveServer) -> Any:
    """Our OpenAPI, read from the live server, with some people already known."""
    events = [
        {
            "type": "identify",
            "userId": "fuzz-1",
            "anonymousId": "a-1",
            "traits": {"email": "f@x.io"},
        },
        {"type": "track", "userId": "fuzz-1", "event": "Order Completed"},
        {"type": "page", "anonymousId": "a-2", "name": "Home"},
        {"type": "alias", "userId": "fuzz-1", "previousId": "a-2"},
        {"type": "track", "userId": "fuzz-1"},  # quarantined
    ]
    response = httpx.post(
        f"{live_server.url}/v1/batch", json={"batch": events}, auth=(live_server.write_key, "")
    )
    assert response.json()["accepted"] == 4
    assert live_server.services.worker().drain() == 4
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow  # about 15 s: 29 operations, 25 generated cases each
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[Phase.generate, Phase.target, Phase.shrink],
)
@schema.parametrize()
def test_every_operation_answers_without_server_error(
    case: schemathesis.Case, live_server: LiveServer
) -> None:
    response = case.call(headers=credentials_for(case.path, live_server))
    case.validate_response(response, checks=[not_a_server_error])
    check_answer(response)
    # What the tracking API accepted, the worker can apply.
    live_server.services.worker().drain()


# --- arbitrary input at the tracking endpoints ------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = {"a": value} if levels % 2 else [value]
    return value


# Deeper than the JSON encoder (254) and PostgreSQL accept; a parser takes 1,024.
deep = st.integers(min_value=1, max_value=300).map(nested)
zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
times = st.datetimes(timezones=zones).map(datetime.isoformat) | st.text(max_size=30) | json_values
identifiers = st.text(max_size=20) | st.integers() | json_values
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "x"])
    | json_values,
    "userId": identifiers,
    "anonymousId": identifiers,
    "previousId": identifiers,
    "groupId": identifiers,
    "messageId": st.sampled_from(["m-1", "m-2"]) | identifiers,
    "event": st.sampled_from(["Consent Updated", "Order Completed"]) | json_values,
    "name": json_values,
    "properties": objects
    | json_values
    | deep
    | st.fixed_dictionaries(
        {},
        optional={
            "channel": json_values,
            "status": json_values,
            "topic": json_values,
            "channels": objects | json_values,
            "topics": objects | json_values,
            "source": json_values,
        },
    ),
    "traits": objects | json_values | st.fixed_dictionaries({}, optional={"email": json_values}),
    "context": objects
    | json_values
    | deep
    | st.fixed_dictionaries(
        {},
        optional={
            "traits": objects | json_values,
            "device": objects | json_values,
            "externalIds": st.lists(objects) | json_values,
            "consent": st.fixed_dictionaries({"categoryPreferences": objects}) | json_values,
            "timezone": json_values,
            "locale": json_values,
        },
    ),
    "timestamp": times,
    "originalTimestamp": times,
    "sentAt": times,
    "integrations": json_values,
}
messages = st.fixed_dictionaries({}, optional=FIELDS) | json_values
batches = st.fixed_dictionaries(
    {"batch": st.lists(messages, max_size=4) | json_values},
    optional={"sentAt": times, "context": objects | json_values},
)
TRACKING_PATHS = ["/v1/batch", "/v1/track", "/v1/b", "/v1/t", "/v1/identify", "/v1/alias"]


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A client that sends the write key as the Basic user."""
    with httpx.Client(base_url=live_server.url, auth=(live_server.write_key, "")) as client:
        yield client


def test_arbitrary_json_never_breaks_the_tracking_api(
    live_server: LiveServer, http: httpx.Client
) -> None:
    worker = live_server.services.worker()

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        path=st.sampled_from(TRACKING_PATHS),
        body=st.one_of(messages, batches, json_values),
    )
    def post(path: str, body: Any) -> None:
        response = http.post(path, content=json.dumps(body))
        check_answer(response)
        if response.status_code == 200:
            assert response.json()["success"] is True
        worker.drain()

    post()


def test_arbitrary_bytes_never_break_the_tracking_api(
    live_server: LiveServer, http: httpx.Client
) -> None:
    worker = live_server.services.worker()

    @settings(max_examples=150, deadline=None, database=None)
    @given(
        path=st.sampled_from(TRACKING_PATHS),
        body=st.binary(max_size=2000) | messages.map(lambda m: json.dumps(m).encode()),
        encoding=st.sampled_from([None, "gzip", "deflate", "identity", "br"]),
        compress=st.booleans(),
        cut=st.integers(min_value=0, max_value=20),
    )
    def post(path: str, body: bytes, encoding: str | None, compress: bool, cut: int) -> None:
        if compress and encoding == "gzip":
            body = gzip.compress(body)
        elif compress and encoding == "deflate":
            body = zlib.compress(body)
        body = body[: len(body) - cut]
        headers = {"Content-Encoding": encoding} if encoding else {}
        response = http.post(path, content=body, headers=headers)
        check_answer(response)
        worker.drain()

    post()
