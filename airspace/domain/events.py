"""Segment-spec messages: validation, time resolution, and the `Event` the engine applies.

A message arrives as JSON (one per `/v1/track`-style call, up to 2,500 per
`/v1/batch`). `parse_message` checks it against the spec and returns an
`Event` or raises `InvalidInput` with a reason a person can act on. The
ingest keeps the normalised form (`Event.to_stored`) in the inbox; the worker
reads it back with `Event.from_stored`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from airspace.domain import consent as consent_rules
from airspace.domain.errors import InvalidInput, LimitExceeded

EventType = Literal["track", "identify", "page", "screen", "group", "alias"]
EVENT_TYPES: frozenset[str] = frozenset(("track", "identify", "page", "screen", "group", "alias"))

MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 512

_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
# Deeper items are refused: the parser accepts 1,024 levels, the encoder breaks on far fewer.
MAX_NESTING = 64

JUNK_VALUES: frozenset[str] = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "anonymous",
        "anon",
        "unknown",
        "n/a",
        "na",
        "0",
        "-1",
        "1",
        "[object object]",
        "{}",
        "[]",
        "nan",
        "false",
        "true",
        "00000000-0000-0000-0000-000000000000",
        "test@test.com",
        "email@example.com",
        "noreply@example.com",
    }
)


def is_junk(value: str) -> bool:
    """A placeholder that many profiles share by accident: never an identifier."""
    return value.strip().lower() in JUNK_VALUES


@dataclass(frozen=True, slots=True)
class Event:
    """One validated message, with its time resolved."""

    type: EventType
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    name: str | None
    properties: dict[str, Any]
    traits: dict[str, Any]
    context: dict[str, Any]
    timestamp: datetime
    received_at: datetime
    previous_id: str | None = None
    group_id: str | None = None

    @property
    def routing_key(self) -> str:
        """The identifier that decides the inbox partition (and so the order of apply).

        The userId first: once a person is known, their browser, app and server
        events all carry it, so they share one partition and one order.
        """
        return self.user_id or self.anonymous_id or self.message_id

    def to_stored(self) -> dict[str, Any]:
        """The normalised JSON form kept in the inbox and the event log."""
        stored: dict[str, Any] = {
            "type": self.type,
            "messageId": self.message_id,
            "timestamp": _iso(self.timestamp),
            "receivedAt": _iso(self.received_at),
        }
        for key, value in (
            ("userId", self.user_id),
            ("anonymousId", self.anonymous_id),
            ("event" if self.type == "track" else "name", self.name),
            ("previousId", self.previous_id),
            ("groupId", self.group_id),
        ):
            if value is not None:
                stored[key] = value
        for key, obj in (
            ("properties", self.properties),
            ("traits", self.traits),
            ("context", self.context),
        ):
            if obj:
                stored[key] = obj
        return stored

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Event:
        """Read back what `to_stored` wrote (trusted: it was validated on the way in)."""
        kind = cast(EventType, stored["type"])
        return cls(
            type=kind,
            message_id=stored["messageId"],
            user_id=stored.get("userId"),
            anonymous_id=stored.get("anonymousId"),
            name=stored.get("event") if kind == "track" else stored.get("name"),
            properties=stored.get("properties") or {},
            traits=stored.get("traits") or {},
            context=stored.get("context") or {},
            timestamp=datetime.fromisoformat(stored["timestamp"]),
            received_at=datetime.fromisoformat(stored["receivedAt"]),
            previous_id=stored.get("previousId"),
            group_id=stored.get("groupId"),
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any, field: str) -> datetime | None:
    """Parse an ISO-8601 time; a time without a zone is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an ISO-8601 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field} {value[:64]!r} is not an ISO-8601 time (e.g. 2026-11-22T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+01:00 is a valid ISO time whose UTC form is before year 1.
        raise InvalidInput(
            f"{field} {value[:64]!r} is outside the years 1 to 9999 once converted to UTC"
        ) from None


def resolve_timestamp(
    *,
    timestamp: datetime | None,
    original_timestamp: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> datetime:
    """When the event happened: as sent; else corrected for the device clock; else received."""
    if timestamp is not None:
        return timestamp
    if original_timestamp is not None:
        if sent_at is not None:
            try:
                return received_at - (sent_at - original_timestamp)
            except OverflowError:
                raise InvalidInput(
                    f"originalTimestamp {_iso(original_timestamp)} and sentAt {_iso(sent_at)} "
                    "are too far apart to correct the device clock; send timestamp instead"
                ) from None
        return original_timestamp
    return received_at


def _identifier_field(message: dict[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"{field} must be a string or null, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidInput(f"{field} is {len(text)} characters long; the limit is {MAX_ID_LENGTH}")
    return text


def _name_field(message: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = message.get(field)
    if value is None:
        if required:
            raise InvalidInput(f"{field} is required for this event type")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInput(f"{field} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{field} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    return value


def _object_field(message: dict[str, Any], field: str) -> dict[str, Any]:
    value = message.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be an object, got {type(value).__name__}")
    return value


def parse_message(
    message: Any,
    *,
    received_at: datetime,
    new_message_id: str,
    default_type: str | None = None,
    batch_sent_at: datetime | None = None,
    encoded_size: int = 0,
) -> Event:
    """Validate one Segment message and resolve its time; raise `InvalidInput` if it is bad.

    `default_type` is the type implied by the endpoint (`/v1/track`); inside a
    batch each item names its own. `encoded_size` is the item's JSON size.
    """
    if encoded_size > MAX_EVENT_BYTES:
        raise LimitExceeded(
            "event_too_large",
            f"event is {encoded_size} bytes; the limit is {MAX_EVENT_BYTES} bytes "
            f"({encoded_size - MAX_EVENT_BYTES} over)",
        )
    if not isinstance(message, dict):
        raise InvalidInput(f"an event must be a JSON object, got {_json_kind(message)}")
    kind = default_type or message.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise InvalidInput(
            f"type {kind!r} is not one of {', '.join(sorted(EVENT_TYPES))}"
            if kind is not None
            else "type is required for each item of a batch"
        )
    user_id = _identifier_field(message, "userId")
    anonymous_id = _identifier_field(message, "anonymousId")
    previous_id = _identifier_field(message, "previousId")
    group_id = _identifier_field(message, "groupId")
    if user_id is None and anonymous_id is None:
        raise InvalidInput("userId or anonymousId is required (both were missing or null)")
    if all(value is None or is_junk(value) for value in (user_id, anonymous_id)):
        raise InvalidInput(
            f"no usable identifier: userId {user_id!r} and anonymousId {anonymous_id!r} are "
            "empty or placeholder values (like 'anonymous', 'null', '0')"
        )
    if kind == "alias" and (previous_id is None or user_id is None):
        raise InvalidInput("alias needs both previousId and userId")
    if kind == "group" and group_id is None:
        raise InvalidInput("groupId is required for a group call")
    name = _name_field(message, "event", required=True) if kind == "track" else None
    if kind in ("page", "screen"):
        name = _name_field(message, "name", required=False)
    objects = {field: _object_field(message, field) for field in _OBJECT_FIELDS}
    timestamp = resolve_timestamp(
        timestamp=parse_time(message.get("timestamp"), "timestamp"),
        original_timestamp=parse_time(message.get("originalTimestamp"), "originalTimestamp"),
        sent_at=parse_time(message.get("sentAt"), "sentAt") or batch_sent_at,
        received_at=received_at,
    )
    message_id = _identifier_field(message, "messageId") or new_message_id
    # Bad consent is refused at the door, so the worker never meets it.
    # Only a track call named `Consent Updated` is the consent event, as in `profiles.apply_event`:
    # a page or screen may carry that name without consent properties.
    consent_rules.changes_from_event(
        name if kind == "track" else None, objects["properties"], objects["context"], timestamp
    )
    return Event(
        type=cast(EventType, kind),
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=name,
        properties=objects["properties"],
        traits=objects["traits"],
        context=objects["context"],
        timestamp=timestamp,
        received_at=received_at,
        previous_id=previous_id,
        group_id=group_id,
    )


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_nesting(item: Any) -> None:
    """Refuse nesting deeper than `MAX_NESTING` (checked before anything encodes the item)."""
    # Only containers are visited, so this costs little; the slow walk below runs only
    # to name the place of a problem.
    if type(item) is not dict and type(item) is not list:
        return
    stack: list[tuple[Any, int]] = [(item, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            check_storable(item)
        for child in value.values() if type(value) is dict else value:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))


def check_no_nul(item: Any, encoded: bytes) -> None:
    """Refuse NUL characters in strings or keys (PostgreSQL cannot store them)."""
    if b"\\u0000" in encoded:
        check_storable(item)


def check_storable(item: Any) -> None:
    """Refuse what cannot be encoded safely or stored alike on SQLite and PostgreSQL:
    nesting deeper than `MAX_NESTING`, NUL characters in strings or keys."""
    # Each entry is (value, key, parent entry, depth); paths are spelled out only for an error.
    stack: list[_Node] = [(item, None, None, 1)]
    while stack:
        node = stack.pop()
        value, _, _, depth = node
        if isinstance(value, str):
            if "\x00" in value:
                raise InvalidInput(
                    f"{_path(node) or 'the event'} contains the NUL character (\\u0000), "
                    "which cannot be stored"
                )
        elif isinstance(value, dict | list):
            if depth > MAX_NESTING:
                raise InvalidInput(
                    f"{_path(node) or 'the event'} is nested more than {MAX_NESTING} objects "
                    f"or arrays deep (the limit is {MAX_NESTING})"
                )
            children = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in children:
                if isinstance(key, str) and "\x00" in key:
                    raise InvalidInput(
                        f"a key of {_path(node) or 'the event'} contains the NUL character "
                        "(\\u0000), which cannot be stored"
                    )
                stack.append((child, key, node, depth + 1))


_Node = tuple[Any, str | int | None, Any, int]


def _path(node: _Node) -> str:
    """Where a value sits in an event, e.g. `properties.items[2].name` (shortened if long)."""
    parts: list[str] = []
    current: _Node | None = node
    while current is not None and current[1] is not None:
        key = current[1]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        current = current[2]
    path = "".join(reversed(parts)).removeprefix(".")
    return path if len(path) <= 120 else f"{path[:60]}...{path[-57:]}"


def pruned(value: Any, levels: int) -> Any:
    """A copy of `value` with levels deeper than `levels` replaced by a note."""
    if not isinstance(value, dict | list):
        return value
    if levels == 0:
        return "(deeper levels not kept)"
    if isinstance(value, dict):
        return {k: pruned(v, levels - 1) for k, v in value.items()}
    return [pruned(v, levels - 1) for v in value]
