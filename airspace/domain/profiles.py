"""Profiles: declared traits (last write by event time wins) and computed traits.

`apply_event` folds one event into a profile; `merge_profiles` folds two
profiles into one. Both are pure: same inputs, same result, in any process.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from airspace.domain import consent as consent_rules
from airspace.domain.consent import CHANNELS, ConsentRecord
from airspace.domain.events import Event


@dataclass(frozen=True, slots=True)
class Computed:
    """Traits Airspace infers rather than the customer declares."""

    first_seen: datetime | None = None
    last_seen: datetime | None = None
    event_count: int = 0
    counts_by_type: dict[str, int] = field(default_factory=dict)
    counts_by_event: dict[str, int] = field(default_factory=dict)
    timezone: str | None = None
    timezone_at: datetime | None = None
    locale: str | None = None
    groups: tuple[str, ...] = ()
    last_by_event: dict[str, datetime] = field(default_factory=dict)
    engaged: dict[str, int] = field(default_factory=dict)  # opens and clicks per channel
    suppressed: dict[str, str] = field(default_factory=dict)  # channel -> why (hard bounce, ...)


# Events a channel or the customer's own systems report about messages.
ENGAGEMENT_EVENTS = frozenset({"Message Opened", "Message Clicked"})
BOUNCE_EVENT = "Message Bounced"  # {channel, type: hard|soft}
COMPLAINT_EVENT = "Spam Reported"  # {channel}
# A new address lifts the channel's suppression.
_ADDRESS_TRAITS = {"email": "email", "phone": "sms"}


@dataclass(frozen=True, slots=True)
class Profile:
    """One person: declared traits with their times, computed traits, consent."""

    profile_id: str
    created_at: datetime
    traits: dict[str, Any] = field(default_factory=dict)
    trait_times: dict[str, datetime] = field(default_factory=dict)
    computed: Computed = field(default_factory=Computed)
    consent: dict[str, ConsentRecord] = field(default_factory=dict)


def declared_traits(event: Event) -> dict[str, Any]:
    """The person's traits an event declares (a group call's traits are the group's)."""
    traits: dict[str, Any] = {}
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        traits.update(context_traits)
    if event.type == "identify":
        traits.update(event.traits)
    return traits


def _set_traits(
    traits: dict[str, Any], times: dict[str, datetime], new: dict[str, Any], at: datetime
) -> None:
    for key, value in new.items():
        previous = times.get(key)
        if previous is None or at >= previous:
            traits[key] = value
            times[key] = at


def _count(counts: dict[str, int], key: str | None, by: int = 1) -> dict[str, int]:
    if key is None:
        return counts
    updated = dict(counts)
    updated[key] = updated.get(key, 0) + by
    return updated


def _suppressed_after(
    suppressed: dict[str, str], event: Event, declared: dict[str, Any], before: dict[str, Any]
) -> dict[str, str]:
    """A hard bounce or a complaint stops a channel until the person gives a new address."""
    channel = event.properties.get("channel") if event.type == "track" else None
    reason = None
    if event.name == BOUNCE_EVENT and event.properties.get("type", "hard") == "hard":
        reason = "hard bounce"
    elif event.name == COMPLAINT_EVENT:
        reason = "spam complaint"
    lifted = [
        ch
        for trait, ch in _ADDRESS_TRAITS.items()
        if ch in suppressed and trait in declared and declared[trait] != before.get(trait)
    ]
    if not lifted and not (reason and isinstance(channel, str) and channel in CHANNELS):
        return suppressed
    updated = {ch: why for ch, why in suppressed.items() if ch not in lifted}
    if reason and isinstance(channel, str) and channel in CHANNELS:
        updated[channel] = f"{reason} at {event.timestamp.isoformat()}"
    return updated


def _computed_after(computed: Computed, event: Event) -> Computed:
    at = event.timestamp
    timezone, timezone_at = computed.timezone, computed.timezone_at
    tz = event.context.get("timezone")
    if isinstance(tz, str) and tz and (timezone_at is None or at >= timezone_at):
        timezone, timezone_at = tz[:64], at
    locale = event.context.get("locale")
    groups = computed.groups
    track = event.name if event.type == "track" else None
    channel = event.properties.get("channel")
    channel = channel if isinstance(channel, str) and channel in CHANNELS else None
    if event.type == "group" and event.group_id and event.group_id not in groups:
        groups = (*groups, event.group_id)
    return Computed(
        first_seen=at if computed.first_seen is None else min(computed.first_seen, at),
        last_seen=at if computed.last_seen is None else max(computed.last_seen, at),
        event_count=computed.event_count + 1,
        counts_by_type=_count(computed.counts_by_type, event.type),
        counts_by_event=_count(
            computed.counts_by_event, event.name if event.type == "track" else None
        ),
        timezone=timezone,
        timezone_at=timezone_at,
        locale=locale[:32] if isinstance(locale, str) and locale else computed.locale,
        groups=groups,
        last_by_event=_later(computed.last_by_event, track, at)
        if track
        else computed.last_by_event,
        engaged=_count(computed.engaged, channel if track in ENGAGEMENT_EVENTS else None),
        suppressed=computed.suppressed,
    )


def _later(times: dict[str, datetime], key: str, at: datetime) -> dict[str, datetime]:
    if key in times and times[key] >= at:
        return times
    return {**times, key: at}


def apply_event(profile: Profile, event: Event) -> Profile:
    """Fold one event into a profile: traits, computed traits, consent."""
    traits = dict(profile.traits)
    times = dict(profile.trait_times)
    declared = declared_traits(event)
    _set_traits(traits, times, declared, event.timestamp)
    changes = consent_rules.changes_from_event(
        event.name if event.type == "track" else None,
        event.properties,
        event.context,
        event.timestamp,
    )
    return Profile(
        profile_id=profile.profile_id,
        created_at=profile.created_at,
        traits=traits,
        trait_times=times,
        computed=replace(
            computed := _computed_after(profile.computed, event),
            suppressed=_suppressed_after(computed.suppressed, event, declared, profile.traits),
        ),
        consent=consent_rules.apply_changes(profile.consent, changes)
        if changes
        else profile.consent,
    )


def _merge_counts(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    merged = dict(first)
    for key, count in second.items():
        merged[key] = merged.get(key, 0) + count
    return merged


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def merge_profiles(survivor: Profile, loser: Profile) -> Profile:
    """Fold `loser` into `survivor`: per trait the later write wins, counts add up."""
    traits = dict(survivor.traits)
    times = dict(survivor.trait_times)
    for key, value in loser.traits.items():
        _set_traits(traits, times, {key: value}, loser.trait_times[key])
    a, b = survivor.computed, loser.computed
    later = b if (b.timezone_at and (a.timezone_at is None or b.timezone_at > a.timezone_at)) else a
    computed = Computed(
        first_seen=_earliest(a.first_seen, b.first_seen),
        last_seen=_latest(a.last_seen, b.last_seen),
        event_count=a.event_count + b.event_count,
        counts_by_type=_merge_counts(a.counts_by_type, b.counts_by_type),
        counts_by_event=_merge_counts(a.counts_by_event, b.counts_by_event),
        timezone=later.timezone,
        timezone_at=later.timezone_at,
        locale=a.locale or b.locale,
        groups=tuple(dict.fromkeys((*a.groups, *b.groups))),
        last_by_event={
            k: max(t for t in (a.last_by_event.get(k), b.last_by_event.get(k)) if t is not None)
            for k in {*a.last_by_event, *b.last_by_event}
        },
        engaged=_merge_counts(a.engaged, b.engaged),
        suppressed={**b.suppressed, **a.suppressed},
    )
    return replace(
        survivor,
        traits=traits,
        trait_times=times,
        computed=computed,
        consent=consent_rules.merge(survivor.consent, loser.consent),
    )
