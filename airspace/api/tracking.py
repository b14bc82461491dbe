"""The tracking API, wire-compatible with Segment's HTTP API and analytics.js.

Paths: /v1/{track,identify,page,screen,group,alias,batch} and the short forms
analytics.js uses (/v1/t, /i, /p, /s, /g, /a, /b). Bodies may be JSON sent as
`text/plain` and may be gzipped. The write key comes as the HTTP Basic user
or as `writeKey` in the body. 2xx is answered only after the commit.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import ORJSONResponse
from starlette.concurrency import run_in_threadpool

from airspace import metrics
from airspace.api.auth import credentials, require_kind
from airspace.bootstrap import Services
from airspace.domain.errors import InvalidInput, LimitExceeded, MalformedJson, RateLimited
from airspace.domain.events import (
    MAX_BATCH_EVENTS,
    MAX_NESTING,
    MAX_REQUEST_BYTES,
    Event,
    check_nesting,
    check_no_nul,
    check_storable,
    parse_message,
    parse_time,
    pruned,
)
from airspace.domain.ratelimit import TokenBucket
from airspace.store.inbox import Refused, accept
from airspace.store.keys import ApiKey

# Decompressed output is measured up to this size to report by how much a body is over.
_MEASURE_BYTES = 4 * MAX_REQUEST_BYTES
_GZIP_MAGIC = b"\x1f\x8b"

SHORT_PATHS = {
    "track": "t",
    "identify": "i",
    "page": "p",
    "screen": "s",
    "group": "g",
    "alias": "a",
}

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Segment-spec message (see docs/http-api.md)",
    "properties": {
        "type": {"type": "string"},
        "userId": {"type": ["string", "null"]},
        "anonymousId": {"type": ["string", "null"]},
        "messageId": {"type": ["string", "null"]},
        "event": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "previousId": {"type": "string"},
        "groupId": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"},
        "originalTimestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {"type": "string"},
    },
}
_BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": _EVENT_SCHEMA, "maxItems": MAX_BATCH_EVENTS},
        "sentAt": {"type": "string", "format": "date-time"},
        "context": {"type": "object"},
        "writeKey": {"type": "string"},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body, a limit passed, or malformed JSON: {code, message}"},
    401: {"description": "No key or an unknown key"},
    403: {"description": "Not a write key"},
    429: {"description": "Rate limit of the write key; see Retry-After"},
}


def _body_spec(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    }


async def read_body(request: Request) -> bytes:
    """The raw body; only the first `MAX_REQUEST_BYTES` are ever held in memory.

    A larger body is read to its end (so that the client gets the answer, not a
    reset connection) and counted, to say by how much it is over.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_REQUEST_BYTES:
            chunks.append(chunk)
    if size > MAX_REQUEST_BYTES:
        raise _too_large(f"request is {size} bytes", size)
    return b"".join(chunks)


def _too_large(what: str, size: int, *, at_least: bool = False) -> LimitExceeded:
    over = size - MAX_REQUEST_BYTES
    return LimitExceeded(
        "request_too_large",
        f"{what}; the limit is {MAX_REQUEST_BYTES} bytes ({'at least ' if at_least else ''}"
        f"{over} over)",
    )


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo `Content-Encoding: gzip` (every member) or `deflate`, within the request limit.

    The request limit applies after decompression; output is measured up to
    `_MEASURE_BYTES` to say by how much a body is over, and never further (gzip bombs).
    """
    if not encoding or encoding.strip().lower() == "identity":
        return body
    name = encoding.strip().lower()
    if name not in ("gzip", "x-gzip", "deflate"):
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; use gzip")
    wbits = 16 + zlib.MAX_WBITS if "gzip" in name else zlib.MAX_WBITS
    data = bytearray()
    rest = body
    while True:
        decoder = zlib.decompressobj(wbits)
        try:
            data += decoder.decompress(rest, _MEASURE_BYTES + 1 - len(data))
        except zlib.error as error:
            raise InvalidInput(f"the body is not valid {name}: {error}") from None
        if len(data) > _MEASURE_BYTES:
            raise _too_large(
                f"request decompresses to more than {_MEASURE_BYTES} bytes",
                len(data),
                at_least=True,
            )
        if not decoder.eof:
            raise InvalidInput(f"the {name} body is truncated (its end is missing)")
        rest = decoder.unused_data
        # A gzip body may hold several members, one after the other (RFC 1952).
        if "gzip" not in name or not rest.startswith(_GZIP_MAGIC):
            break
    if len(data) > MAX_REQUEST_BYTES:
        raise _too_large(f"request decompresses to {len(data)} bytes", len(data))
    return bytes(data)


def parse_json(body: bytes) -> Any:
    """Parse a body, saying where it breaks if it is not JSON."""
    if len(body) > MAX_REQUEST_BYTES:
        raise _too_large(f"request is {len(body)} bytes", len(body))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        _check_utf8(body)
        raise MalformedJson(
            f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno} "
            f"(position {error.pos})"
        ) from None


def _check_utf8(body: bytes) -> None:
    """Say where a body stops being UTF-8 (orjson reports such errors at position 0)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        start = error.start
        line = body.count(b"\n", 0, start) + 1
        column = start - (body.rfind(b"\n", 0, start) + 1) + 1
        raise MalformedJson(
            f"body is not valid UTF-8: byte 0x{body[start]:02x} at line {line} column {column} "
            f"(position {start})"
        ) from None


class RateLimiter:
    """One token bucket per write key, in this process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._buckets: dict[int, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: int, count: int) -> None:
        """Spend tokens for `count` events or raise `RateLimited`."""
        settings = self.services.settings
        now = self.services.clock.now()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = TokenBucket(
                    settings.rate_limit_per_second,
                    settings.rate_limit_burst,
                    settings.rate_limit_burst,
                    now,
                )
                self._buckets[key_id] = bucket
            wait = bucket.take(count, now)
        if wait is not None:
            metrics.REQUESTS_RATE_LIMITED.inc()
            raise RateLimited(
                f"write key sends more than {settings.rate_limit_per_second:g} events/s; "
                f"retry after {wait:.1f} s",
                wait,
            )


def _validate(
    items: list[Any],
    *,
    default_type: str | None,
    services: Services,
    sent_at: Any,
    shared_context: Any,
) -> tuple[list[Event], list[Refused], list[tuple[int, InvalidInput]]]:
    """Parse each item; return the events, the refused items and each item's problem."""
    now = services.clock.now()
    batch_sent_at = parse_time(sent_at, "sentAt") if sent_at is not None else None
    events: list[Event] = []
    refused: list[Refused] = []
    problems: list[tuple[int, InvalidInput]] = []
    request_id = uuid.uuid4().hex
    if shared_context is not None:
        check_storable(shared_context)
    for index, item in enumerate(items):
        try:
            # Checked before anything encodes it: orjson 3.11's dumps overflows its heap buffer
            # on some items nested 130+ levels deep (below its own limit of 254), which
            # aborted the server under fuzzing.
            check_nesting(item)
            encoded = orjson.dumps(item)
            check_no_nul(item, encoded)
            events.append(
                parse_message(
                    _with_shared_context(item, shared_context),
                    received_at=now,
                    new_message_id=f"airspace-{request_id}-{index}",
                    default_type=default_type,
                    batch_sent_at=batch_sent_at,
                    encoded_size=len(encoded),
                )
            )
        except InvalidInput as error:
            refused.append(Refused(_quarantined(item), error.message))
            problems.append((index, error))
    return events, refused, problems


def _with_shared_context(item: Any, shared_context: Any) -> Any:
    """A batch item with the batch's `context` under its own (the item's keys win)."""
    if not isinstance(item, dict) or not isinstance(shared_context, dict):
        return item
    own = item.get("context")
    if not isinstance(own, dict | None):
        return item  # a non-object context of the item is refused by parse_message
    return {**item, "context": {**shared_context, **(own or {})}}


def _quarantined(item: Any) -> str:
    """A refused item as JSON for the quarantine; levels deeper than allowed are cut."""
    return orjson.dumps(pruned(item, MAX_NESTING)).decode()


def build_router(services: Services) -> APIRouter:
    """The tracking routes, bound to `services`."""
    router = APIRouter(tags=["tracking"])
    keys = services.keys
    rate_limiter = RateLimiter(services)

    async def receive(request: Request, kind: str | None) -> ORJSONResponse:
        body = decompress(await read_body(request), request.headers.get("content-encoding"))
        document = parse_json(body)
        if not isinstance(document, dict):
            raise InvalidInput("the body must be a JSON object")
        secret = credentials(request) or _body_key(document)
        key: ApiKey = await run_in_threadpool(require_kind, keys, secret, "write")
        items = _items_of(document, kind)
        rate_limiter.take(key.id, max(len(items), 1))
        events, refused, problems = _validate(
            items,
            default_type=kind,
            services=services,
            sent_at=document.get("sentAt") if kind is None else None,
            shared_context=document.get("context") if kind is None else None,
        )
        outcome = await run_in_threadpool(
            accept, services.db, key.id, events, refused, services.clock.now()
        )
        metrics.EVENTS_ACCEPTED.inc(outcome.queued)
        metrics.EVENTS_DUPLICATE.inc(outcome.duplicates)
        if refused:
            metrics.EVENTS_QUARANTINED.labels("ingest").inc(len(refused))
        if kind is not None and problems:
            raise problems[0][1]  # one call, one answer: its problem, with its code
        answer: dict[str, Any] = {"success": True}
        if kind is None:
            errors = [
                {"index": index, "code": error.code, "message": error.message}
                for index, error in problems
            ]
            answer.update(accepted=outcome.queued, duplicates=outcome.duplicates, errors=errors)
        return ORJSONResponse(answer)

    def add(path: str, kind: str | None, summary: str, schema: dict[str, Any]) -> None:
        async def endpoint(request: Request) -> ORJSONResponse:
            return await receive(request, kind)

        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            summary=summary,
            openapi_extra=_body_spec(schema),
            responses=_RESPONSES,
            operation_id=f"post_{path.strip('/').replace('/', '_')}",
            include_in_schema=True,
        )

    for kind, short in SHORT_PATHS.items():
        add(f"/v1/{kind}", kind, f"Record a {kind} call", _EVENT_SCHEMA)
        add(f"/v1/{short}", kind, f"Record a {kind} call (analytics.js path)", _EVENT_SCHEMA)
    add("/v1/batch", None, "Record up to 2,500 calls at once", _BATCH_SCHEMA)
    add("/v1/b", None, "Record a batch (analytics.js path)", _BATCH_SCHEMA)

    @router.get("/v1/projects/{write_key}/settings", summary="Settings for analytics.js")
    async def project_settings(request: Request, write_key: str) -> ORJSONResponse:
        await run_in_threadpool(require_kind, keys, write_key, "write")
        # Without a configured public URL, the browser reaches us where it reached this page
        # (the listen address may be 0.0.0.0 or sit behind a port mapping).
        base = services.settings.public_url or str(request.base_url)
        scheme, _, host = base.partition("://")
        return ORJSONResponse(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": f"{host.rstrip('/')}/v1",
                        "protocol": scheme,
                        "unbundledIntegrations": [],
                        "addBundledMetadata": True,
                        "maybeBundledConfigIds": {},
                    }
                },
                "plan": {
                    "track": {"__default": {"enabled": True, "integrations": {}}},
                    "identify": {"__default": {"enabled": True}},
                    "group": {"__default": {"enabled": True}},
                },
                "edgeFunction": {},
                "analyticsNextEnabled": True,
                "middlewareSettings": {},
                "enabledMiddleware": {},
                "metrics": {"sampleRate": 0},
                "legacyVideoPluginsEnabled": False,
                "remotePlugins": [],
            }
        )

    return router


def _items_of(document: dict[str, Any], kind: str | None) -> list[Any]:
    if kind is not None:
        return [document]
    items = document.get("batch")
    if not isinstance(items, list):
        raise InvalidInput('a batch body must be {"batch": [ ...events ]}')
    if len(items) > MAX_BATCH_EVENTS:
        raise LimitExceeded(
            "batch_too_large",
            f"batch has {len(items)} events; the limit is {MAX_BATCH_EVENTS} "
            f"({len(items) - MAX_BATCH_EVENTS} over)",
        )
    return items


def _body_key(document: dict[str, Any]) -> str | None:
    key = document.get("writeKey")
    return key if isinstance(key, str) and key else None
