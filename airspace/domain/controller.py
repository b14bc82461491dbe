"""The controller: which proposed messages go out, and why the others do not.

Journeys propose `Candidate`s; the controller decides per person. Each
eligibility rule is a named function returning a reason or None. The policy
here is the baseline our peers use — first come, first served under
frequency caps: candidates are taken in the order they were proposed and each
one that is eligible and fits every cap is sent. A candidate blocked only by a
cap is deferred until the cap frees (if that is before it expires); one that
can never go (no consent, no address, expired) is suppressed. Transactional
messages bypass the marketing caps. Caps are counted over what was sent
before plus what this decision sends, so they are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from airspace.domain import consent as consent_rules
from airspace.domain import timing
from airspace.domain.consent import ConsentRecord, Topic
from airspace.domain.definitions import Cap, WorkspaceSettings

Outcome = Literal["send", "defer", "suppress"]
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


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one candidate, with the reason in plain words."""

    candidate_id: str
    outcome: Outcome
    reason: str
    channel: str | None = None
    retry_at: datetime | None = None


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


def _in_scope(cap: Cap, channel: str, journey_id: str, topic: str | None) -> bool:
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
    """Frequency caps over rolling windows; the reason and when the first blocking cap frees."""
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
            and _in_scope(cap, s.channel, s.journey_id, s.topic)
        )
        if (
            _in_scope(cap, channel, candidate.journey_id, candidate.topic)
            and len(counted) >= cap.max
        ):
            # The cap frees when the oldest message that keeps it full leaves the window;
            # a cap of 0 never frees.
            frees = counted[len(counted) - cap.max] + cap.per if cap.max else NEVER
            per = timing.format_duration(cap.per)
            blocked.append((f"cap {cap.scope} {cap.max} per {per} reached", frees))
    if not blocked:
        return None
    return max(blocked, key=lambda b: b[1])


# --- the baseline policy ------------------------------------------------------------------


Policy = Callable[
    [Sequence[Candidate], Recipient, Sequence[Sent], WorkspaceSettings, datetime], list[Decision]
]


def first_come(
    candidates: Sequence[Candidate],
    recipient: Recipient,
    history: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
) -> list[Decision]:
    """First come, first served under caps: the baseline policy."""
    sent = list(history)
    decisions: list[Decision] = []
    for candidate in sorted(candidates, key=lambda c: (c.created_at, c.id)):
        decision = _decide_one(candidate, recipient, sent, settings, now)
        if decision.outcome == "send" and decision.channel is not None:
            sent.append(
                Sent(
                    now,
                    decision.channel,
                    candidate.journey_id,
                    candidate.topic,
                    candidate.transactional,
                )
            )
        decisions.append(decision)
    return decisions


def _decide_one(
    candidate: Candidate,
    recipient: Recipient,
    sent: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
) -> Decision:
    reason = rule_not_expired(candidate, now) or rule_journey_running(candidate, recipient)
    if reason:
        return Decision(candidate.id, "suppress", reason)
    quiet = rule_quiet_hours(candidate, recipient, settings.quiet_hours, now)
    if quiet is not None:
        return _defer_or_expire(candidate, *quiet)
    refusals: list[str] = []
    earliest: tuple[str, datetime] | None = None
    for channel in candidate.channels:
        reason = rule_consent(candidate, channel, recipient, settings) or rule_address(
            channel, recipient
        )
        if reason:
            refusals.append(reason)
            continue
        blocked = rule_caps(candidate, channel, sent, settings.caps, now)
        if blocked is None:
            return Decision(candidate.id, "send", f"first come, sent on {channel}", channel)
        if earliest is None or blocked[1] < earliest[1]:
            earliest = blocked
    if earliest is not None:
        return _defer_or_expire(candidate, *earliest)
    return Decision(candidate.id, "suppress", "; ".join(refusals) or "no channel")


def _defer_or_expire(candidate: Candidate, reason: str, until: datetime) -> Decision:
    """Wait until `until` if the candidate is still alive then; else it is suppressed."""
    if until < candidate.expires_at:
        return Decision(
            candidate.id, "defer", f"{reason}; retry at {until.isoformat()}", retry_at=until
        )
    return Decision(candidate.id, "suppress", f"{reason} until after it expires")


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


def decision_due(candidates: Sequence[Candidate], window: timedelta, now: datetime) -> datetime:
    """When a person's pending candidates are decided: at once if any is urgent or
    transactional, else when the first one has waited the decision window."""
    if (
        not candidates
        or window <= timedelta(0)
        or any(c.urgent or c.transactional for c in candidates)
    ):
        return now
    return min(c.created_at for c in candidates) + window
