"""An in-memory identity graph that applies `identity.resolve` the way the engine does.

It mirrors `airspace/engine/apply.py` (`_State`, `_resolve`, `_merge`) without a
database: an owner map identifier → profile, the identifiers of each profile,
one `resolve` per event, and a merge that moves the loser's identifiers to the
survivor. Profiles are created one second apart, so "oldest" is well defined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airspace.domain import identity
from airspace.domain.events import Event, EventType
from airspace.domain.identity import Identifier, IdentityRules, KnownProfile, Resolution

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def make_event(
    kind: EventType = "track",
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    previous_id: str | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    name: str | None = None,
    at: datetime = EPOCH,
    message_id: str = "m-1",
    properties: dict[str, Any] | None = None,
) -> Event:
    """A validated-looking event built from plain values (no parsing, no clock)."""
    return Event(
        type=kind,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=name if name is not None or kind != "track" else "Viewed",
        properties=properties or {},
        traits=traits or {},
        context=context or {},
        timestamp=at,
        received_at=at,
        previous_id=previous_id,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event did: its identifiers, its profile (None if refused), the resolution."""

    identifiers: tuple[Identifier, ...]
    profile_id: str | None
    resolution: Resolution
    refused: str | None = None


@dataclass
class IdentityModel:
    """The engine's identity state for any number of events, in memory."""

    rules: IdentityRules = field(default_factory=IdentityRules)
    owner: dict[Identifier, str] = field(default_factory=dict)
    ids_of: dict[str, set[Identifier]] = field(default_factory=dict)
    created_at: dict[str, datetime] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def known(self, ids: list[Identifier]) -> dict[Identifier, KnownProfile]:
        """What `resolve` may know of the profiles owning `ids` (as `_State.known`)."""
        result: dict[Identifier, KnownProfile] = {}
        for i in ids:
            pid = self.owner.get(i)
            if pid is not None:
                result[i] = KnownProfile(pid, self.created_at[pid], frozenset(self.ids_of[pid]))
        return result

    def apply(self, event: Event) -> Outcome:
        """Resolve one event and carry out the resolution (as `engine.apply._resolve`)."""
        ids = identity.extract_identifiers(event, self.rules)
        strict = event.type == "alias"
        if strict:
            ids += identity.alias_candidates(event)
        if not ids:
            # As `apply_batch`: only placeholder values, so no person to put the event on.
            reason = "no usable identifier: userId and anonymousId are empty or placeholders"
            self.refused.append(reason)
            return Outcome((), None, Resolution(None), reason)
        if strict:
            ids = identity.alias_identifiers(event, self.rules, self.known(ids))
        resolution = identity.resolve(ids, self.known(ids), self.rules, strict=strict)
        if resolution.conflict is not None:
            self.refused.append(f"alias {resolution.conflict}")
            return Outcome(tuple(ids), None, resolution, f"alias {resolution.conflict}")
        pid = resolution.profile_id
        if pid is None:
            pid = f"p{len(self.created_at):06d}"
            self.created_at[pid] = EPOCH + timedelta(seconds=len(self.created_at))
            self.ids_of[pid] = set()
        for loser in resolution.merged:
            for i in self.ids_of.pop(loser):
                self.owner[i] = pid
                self.ids_of[pid].add(i)
            self.redirect[loser] = pid
        for i in resolution.link:
            if i in self.owner:
                raise AssertionError(f"resolve linked {i.key}, already owned by {self.owner[i]}")
            self.owner[i] = pid
            self.ids_of[pid].add(i)
        return Outcome(tuple(ids), pid, resolution)

    def final(self, profile_id: str) -> str:
        """The profile a (possibly merged-away) profile id lives on as."""
        while profile_id in self.redirect:
            profile_id = self.redirect[profile_id]
        return profile_id

    def profile_of(self, key: str) -> str | None:
        """The profile owning `type:value`, or None."""
        return self.owner.get(Identifier.parse(key))

    def keys_of(self, profile_id: str) -> set[str]:
        """The `type:value` keys of one profile."""
        return {i.key for i in self.ids_of[self.final(profile_id)]}

    def partition(self) -> frozenset[frozenset[Identifier]]:
        """The identifiers grouped by profile, independent of profile ids."""
        return frozenset(frozenset(ids) for ids in self.ids_of.values() if ids)
