"""Who and what the controller decides about, and the eligibility rules.

A `Candidate` is a message a journey wants to send to one person; `Recipient` is what
the controller knows about the person; `Sent` a message sent before (for caps). Each
rule is a named function that returns a reason (or a reason and when it stops
applying), or None: expiry, a paused journey, the global control group, quiet hours,
consent, a reachable address, suppression, frequency caps, mutual exclusion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from airspace.domain import consent as consent_rules
from airspace.domain import timing
from airspace.domain.consent import ConsentRecord, Topic
from airspace.domain.workspace_settings import Cap, Exclusion, WorkspaceSettings

NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A message a journey wants to send to one person."""

    id: str
    profile_id: str
    enrollment_id: str
    journey_id: str
    step_id: str
    channels: tuple[str, ...]
    content: str
    created_at: datetime
    expires_at: datetime
    topic: str | None = None
    value: float | None = None
    urgent: bool = False
    transactional: bool = False
    priority: int = 0
    tier: int = 0
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    """A message already sent to the person (for caps)."""

    at: datetime
    channel: str
    journey_id: str
    topic: str | None = None
    transactional: bool = False


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the controller knows about the person."""

    profile_id: str
    consent: Mapping[str, ConsentRecord]
    addresses: Mapping[str, str]
    topics: Mapping[str, Topic] = field(default_factory=dict)
    paused_journeys: frozenset[str] = frozenset()
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    suppressed: Mapping[str, str] = field(default_factory=dict)  # channel -> why
    engaged: Mapping[str, int] = field(default_factory=dict)  # opens and clicks per channel
    stratum: str = ""
    control: bool = False  # in the global control group


# --- eligibility rules: each returns a reason or None -------------------------------------


def rule_not_expired(candidate: Candidate, now: datetime) -> str | None:
    """A candidate stops competing when it expires."""
    return f"expired at {candidate.expires_at.isoformat()}" if now >= candidate.expires_at else None


def rule_journey_running(candidate: Candidate, recipient: Recipient) -> str | None:
    """A paused journey's messages are not sent."""
    return "its journey is paused" if candidate.journey_id in recipient.paused_journeys else None


def rule_consent(
    candidate: Candidate, channel: str, recipient: Recipient, settings: WorkspaceSettings
) -> str | None:
    """Marketing needs consent on the channel and, if any, the topic."""
    if candidate.transactional:
        return None
    topic = recipient.topics.get(candidate.topic) if candidate.topic else None
    if candidate.topic and topic is None:
        topic = Topic(candidate.topic, "opt_out")
    default = (
        settings.channels[channel].consent_default if channel in settings.channels else "opted_in"
    )
    if consent_rules.is_granted(recipient.consent, channel, topic, channel_default=default):
        return None
    return f"no consent for {channel}" + (f" / topic {candidate.topic}" if candidate.topic else "")


def rule_address(channel: str, recipient: Recipient) -> str | None:
    """A channel needs an address to send to."""
    return None if recipient.addresses.get(channel) else f"no {channel} address"


def rule_quiet_hours(
    candidate: Candidate, recipient: Recipient, quiet: tuple[time, time] | None, now: datetime
) -> tuple[str, datetime] | None:
    """No marketing in the person's quiet hours (their local time): the reason, and when
    the quiet hours end. Transactional messages are not held back."""
    if quiet is None or candidate.transactional:
        return None
    start, end = quiet
    local = now.astimezone(recipient.timezone).time()
    inside = start <= local < end if start < end else (local >= start or local < end)
    if not inside:
        return None
    ends = timing.next_local_time(now, end, recipient.timezone)
    return f"quiet hours {start:%H:%M}-{end:%H:%M} in {recipient.timezone.key}", ends


def in_scope(cap: Cap, channel: str, journey_id: str, topic: str | None) -> bool:
    """Does a message on this channel, of this journey and topic, count under the cap?"""
    kind, _, name = cap.scope.partition(":")
    if kind == "marketing":
        return True
    if kind == "channel":
        return name == channel
    if kind == "topic":
        return name == topic
    return name == journey_id


def rule_caps(
    candidate: Candidate, channel: str, history: Sequence[Sent], caps: Iterable[Cap], now: datetime
) -> tuple[str, datetime] | None:
    """Frequency caps over rolling windows: the reason, naming every cap that blocks, and
    when the last of them frees."""
    if candidate.transactional:
        return None
    blocked: list[tuple[str, datetime]] = []
    for cap in caps:
        start = now - cap.per
        counted = sorted(
            s.at
            for s in history
            if not s.transactional
            and s.at > start
            and in_scope(cap, s.channel, s.journey_id, s.topic)
        )
        if (
            in_scope(cap, channel, candidate.journey_id, candidate.topic)
            and len(counted) >= cap.max
        ):
            # The cap frees when the oldest message that keeps it full leaves the window;
            # a cap of 0 never frees.
            frees = counted[len(counted) - cap.max] + cap.per if cap.max else NEVER
            blocked.append((f"{cap.scope} {cap.max} per {timing.format_duration(cap.per)}", frees))
    if not blocked:
        return None
    names = [name for name, _ in blocked]
    caps_named = f"cap {names[0]}" if len(names) == 1 else f"caps {', '.join(names)}"
    return f"{caps_named} reached", max(frees for _, frees in blocked)


def rule_global_control(candidate: Candidate, recipient: Recipient) -> str | None:
    """The global control group never receives marketing."""
    if recipient.control and not candidate.transactional:
        return "in the global control group"
    return None


def rule_suppression(channel: str, recipient: Recipient) -> str | None:
    """A hard bounce or a spam complaint stops a channel until the address changes."""
    why = recipient.suppressed.get(channel)
    return f"{channel} suppressed ({why})" if why else None


def rule_exclusion(
    candidate: Candidate, history: Sequence[Sent], exclusions: Iterable[Exclusion], now: datetime
) -> tuple[str, datetime] | None:
    """After a message from one journey of a mutual-exclusion group, the group's other
    journeys wait: the reason, and when the last such message leaves the window."""
    if candidate.transactional:
        return None
    blocked: list[tuple[str, datetime]] = []
    for group in exclusions:
        if candidate.journey_id not in group.journeys:
            continue
        others = [
            s
            for s in history
            if s.journey_id in group.journeys
            and s.journey_id != candidate.journey_id
            and s.at > now - group.per
        ]
        if others:
            last = max(others, key=lambda s: s.at)
            blocked.append(
                (f"excluded by {last.journey_id} (group {group.name})", last.at + group.per)
            )
    return max(blocked, key=lambda b: b[1]) if blocked else None


def addresses(traits: Mapping[str, Any], identifiers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Where a person can be reached, per channel."""
    found: dict[str, str] = {"webhook": "webhook", "onsite": "onsite"}
    owned = dict(identifiers)
    for channel, trait, kind in (("email", "email", "email"), ("sms", "phone", "phone")):
        value = traits.get(trait)
        if isinstance(value, str) and value.strip():
            found[channel] = value.strip()
        elif owned.get(kind):
            found[channel] = owned[kind]
    if owned.get("push_token"):
        found["push"] = owned["push_token"]
    return found
