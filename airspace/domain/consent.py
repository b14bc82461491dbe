"""Consent per channel and per topic (subscription group).

A record says opted in, opted out or unknown, with where it came from and
when. The latest record by event time wins; at the same instant an opt-out
wins. When two profiles merge and disagree, the result is *not granted*
(`opted_out`, source `merge-conflict`): sending to someone who said no is
worse than missing someone who said yes.

Events that set consent:
- the reserved track event `Consent Updated` with `properties` either
  `{channel, status, topic?, source?}` or `{channels: {email: true}, topics: {news: false}}`;
- `context.consent.categoryPreferences` on any event (`{"email": true, "Advertising": false}`):
  a category named like a channel sets that channel, any other sets the topic of that name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from airspace.domain.errors import InvalidInput

CHANNELS: tuple[str, ...] = ("email", "sms", "push", "webhook", "onsite")
CONSENT_EVENT = "Consent Updated"

ConsentStatus = Literal["opted_in", "opted_out", "unknown"]
TopicKind = Literal["opt_in", "opt_out"]

_STATUS_WORDS: dict[Any, ConsentStatus] = {
    True: "opted_in",
    False: "opted_out",
    "opted_in": "opted_in",
    "opt_in": "opted_in",
    "subscribed": "opted_in",
    "granted": "opted_in",
    "opted_out": "opted_out",
    "opt_out": "opted_out",
    "unsubscribed": "opted_out",
    "denied": "opted_out",
    "unknown": "unknown",
}

_STATUS_NAMES: tuple[str, ...] = tuple(word for word in _STATUS_WORDS if isinstance(word, str))


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One consent state with its source and time."""

    status: ConsentStatus
    source: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Topic:
    """A subscription group: opt-in (off until said yes) or opt-out (on until said no)."""

    name: str
    kind: TopicKind = "opt_in"
    description: str = ""


def channel_key(channel: str) -> str:
    """The consent key of a channel."""
    return f"channel:{channel}"


def topic_key(topic: str) -> str:
    """The consent key of a topic (topic names compare without case)."""
    return f"topic:{topic.strip().lower()}"


def parse_status(value: Any, where: str) -> ConsentStatus:
    """Read a consent status word or boolean; raise `InvalidInput` naming `where`."""
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, bool | str):
        status = _STATUS_WORDS.get(key)
        if status is not None:
            return status
    raise InvalidInput(
        f"{where} is {value!r}; expected a JSON boolean (true or false, without quotes) "
        f"or one of {', '.join(_STATUS_NAMES)}"
    )


def _check_channel(channel: Any, where: str) -> str:
    if not isinstance(channel, str) or channel.lower() not in CHANNELS:
        raise InvalidInput(f"{where} is {channel!r}; expected one of {', '.join(CHANNELS)}")
    return channel.lower()


def _check_topic(topic: Any, where: str) -> str:
    if not isinstance(topic, str) or not topic.strip() or len(topic) > 100:
        raise InvalidInput(f"{where} must be a topic name of 1 to 100 characters, got {topic!r}")
    return topic.strip().lower()


def changes_from_event(
    name: str | None, properties: Mapping[str, Any], context: Mapping[str, Any], at: datetime
) -> list[tuple[str, ConsentRecord]]:
    """The consent changes an event carries; raise `InvalidInput` if they are malformed."""
    changes: list[tuple[str, ConsentRecord]] = []
    if name == CONSENT_EVENT:
        changes.extend(_changes_from_properties(properties, at))
    consent = context.get("consent")
    if consent is not None:
        if not isinstance(consent, dict):
            raise InvalidInput("context.consent must be an object")
        preferences = consent.get("categoryPreferences")
        if preferences is not None:
            if not isinstance(preferences, dict):
                raise InvalidInput("context.consent.categoryPreferences must be an object")
            for category, granted in preferences.items():
                where = f"context.consent.categoryPreferences.{category}"
                status = parse_status(granted, where)
                lowered = str(category).strip().lower()
                key = (
                    channel_key(lowered)
                    if lowered in CHANNELS
                    else topic_key(_check_topic(category, where))
                )
                changes.append((key, ConsentRecord(status, "context.consent", at)))
    return changes


def _changes_from_properties(
    properties: Mapping[str, Any], at: datetime
) -> list[tuple[str, ConsentRecord]]:
    source = properties.get("source", "event")
    if not isinstance(source, str):
        raise InvalidInput("properties.source of Consent Updated must be a string")
    changes: list[tuple[str, ConsentRecord]] = []
    if "status" in properties:
        status = parse_status(properties["status"], "properties.status")
        if properties.get("topic") is not None:
            key = topic_key(_check_topic(properties["topic"], "properties.topic"))
        else:
            key = channel_key(_check_channel(properties.get("channel"), "properties.channel"))
        changes.append((key, ConsentRecord(status, source, at)))
    for field, make_key, check in (
        ("channels", channel_key, _check_channel),
        ("topics", topic_key, _check_topic),
    ):
        group = properties.get(field)
        if group is None:
            continue
        if not isinstance(group, dict):
            raise InvalidInput(f"properties.{field} of Consent Updated must be an object")
        for item, value in group.items():
            where = f"properties.{field}.{item}"
            record = ConsentRecord(parse_status(value, where), source, at)
            changes.append((make_key(check(item, where)), record))
    if not changes:
        raise InvalidInput(
            "Consent Updated needs properties {channel|topic, status} or {channels: {...}} "
            "or {topics: {...}}"
        )
    return changes


def _newer(current: ConsentRecord | None, candidate: ConsentRecord) -> bool:
    if current is None or candidate.at > current.at:
        return True
    return candidate.at == current.at and candidate.status == "opted_out"


def apply_changes(
    consent: Mapping[str, ConsentRecord], changes: Iterable[tuple[str, ConsentRecord]]
) -> dict[str, ConsentRecord]:
    """Apply changes: the latest by event time wins, an opt-out wins a tie."""
    result = dict(consent)
    for key, record in changes:
        if _newer(result.get(key), record):
            result[key] = record
    return result


def merge(
    first: Mapping[str, ConsentRecord], second: Mapping[str, ConsentRecord]
) -> dict[str, ConsentRecord]:
    """Combine the consent of two merged profiles: where they disagree, not granted."""
    result = dict(first)
    for key, theirs in second.items():
        ours = result.get(key)
        if ours is None:
            result[key] = theirs
        elif ours.status != theirs.status and "unknown" not in (ours.status, theirs.status):
            result[key] = ConsentRecord("opted_out", "merge-conflict", max(ours.at, theirs.at))
        elif ours.status == "unknown" or (theirs.status != "unknown" and theirs.at > ours.at):
            result[key] = theirs
    return result


def is_granted(
    consent: Mapping[str, ConsentRecord],
    channel: str,
    topic: Topic | None = None,
    *,
    channel_default: ConsentStatus = "opted_in",
) -> bool:
    """May a marketing message on `channel` (and `topic`) go to this person?"""
    record = consent.get(channel_key(channel))
    status = record.status if record is not None else "unknown"
    if status == "unknown":
        status = channel_default
    if status != "opted_in":
        return False
    if topic is None:
        return True
    topic_record = consent.get(topic_key(topic.name))
    topic_status = topic_record.status if topic_record is not None else "unknown"
    if topic_status == "unknown":
        return topic.kind == "opt_out"
    return topic_status == "opted_in"
