"""Identity resolution: which profile an event belongs to.

Identifiers an event can carry, highest priority first:

    user_id        userId (limit 1 per profile, ever: two userIds never share a profile)
    email          traits.email / context.traits.email, trimmed and lower-cased
    phone          traits.phone / context.traits.phone, as E.164
    ext:<type>     context.externalIds[] custom ids
    push_token     context.device.token
    device_id      context.device.id
    anonymous_id   anonymousId

Rules (`resolve`): no known identifier → a new profile; all known ones on one
profile → attach; on several → merge them, the oldest surviving. Before any
attach or merge the per-type limits are checked on the result; if one would be
passed, the event's lowest-priority identifier is dropped and the rules run
again. So a shared device (an anonymousId already owned by another known user)
sends the new events to the user that the event names and merges nothing.
An `alias` is strict: instead of dropping, a conflict is reported and the
engine quarantines the event.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import phonenumbers

from airspace.domain.events import Event, is_junk

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

DEFAULT_PRIORITY: tuple[str, ...] = (
    "user_id",
    "email",
    "phone",
    "ext:*",
    "push_token",
    "device_id",
    "anonymous_id",
)
DEFAULT_LIMITS: Mapping[str, int] = {
    "user_id": 1,
    "email": 5,
    "phone": 5,
    "push_token": 20,
    "device_id": 20,
    "anonymous_id": 100,
}


class Identifier(NamedTuple):
    """One identifier of a person: a type and a normalised value.

    A named tuple rather than a dataclass: identifiers are hashed and compared
    millions of times per minute in the worker, and tuples do that in C.
    """

    type: str
    value: str

    @property
    def key(self) -> str:
        """The `type:value` form used in the API (`email:ana@example.com`)."""
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identifier:
        """Read `type:value` (as in `?identifier=email:ana@example.com`)."""
        kind, sep, value = text.partition(":")
        if not sep or not kind or not value:
            raise ValueError(
                f"identifier {text!r} must look like type:value, e.g. email:ana@example.com"
            )
        if kind.startswith("ext") and ":" in value and kind == "ext":
            ext_type, _, value = value.partition(":")
            kind = f"ext:{ext_type}"
        return cls(kind, value)


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """Per-type limits and priorities; configurable per workspace."""

    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    priority: tuple[str, ...] = DEFAULT_PRIORITY
    default_limit: int = 5
    phone_region: str | None = None
    _ranks: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ranks", {kind: n for n, kind in enumerate(self.priority)})

    def limit(self, kind: str) -> int:
        """How many identifiers of this type one profile may hold."""
        if kind == "user_id":
            return 1
        return self.limits.get(kind, self.default_limit)

    def rank(self, kind: str) -> int:
        """Position in the priority order: 0 is the most important."""
        rank = self._ranks.get(kind)
        if rank is None:
            wildcard = "ext:*" if kind.startswith("ext:") else kind
            rank = self._ranks.get(wildcard, len(self.priority))
        return rank


def normalize_email(value: Any) -> str | None:
    """Trim and lower-case an address; None if it is not one."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email) or is_junk(email):
        return None
    return email


def normalize_phone(value: Any, region: str | None = None) -> str | None:
    """E.164 form of a phone number; None if it is not a valid number."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    return _e164(str(value).strip(), region)


@lru_cache(maxsize=65536)
def _e164(text: str, region: str | None) -> str | None:
    # Parsing a number costs tens of microseconds; the same numbers come back all day.
    if not text or len(text) > 40:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    # Valid, not merely possible: placeholders such as +1 000 000 0000 have a possible
    # length, and one shared by many people would join them into one profile.
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _plain(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    if is_junk(text) or len(text) > 512:
        return None
    return text


def _person_traits(event: Event) -> list[Mapping[str, Any]]:
    sources: list[Mapping[str, Any]] = []
    if event.type == "identify":
        sources.append(event.traits)
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        sources.append(context_traits)
    return sources


def extract_identifiers(event: Event, rules: IdentityRules) -> list[Identifier]:
    """Every usable identifier the event carries, junk values left out, in priority order."""
    found: set[Identifier] = set()
    for kind, raw in (("user_id", event.user_id), ("anonymous_id", event.anonymous_id)):
        value = _plain(raw)
        if value is not None:
            found.add(Identifier(kind, value))
    for traits in _person_traits(event):
        email = normalize_email(traits.get("email"))
        if email is not None:
            found.add(Identifier("email", email))
        phone = normalize_phone(traits.get("phone"), rules.phone_region)
        if phone is not None:
            found.add(Identifier("phone", phone))
    found |= _context_identifiers(event.context)
    return sort_by_priority(found, rules)


def _context_identifiers(context: Mapping[str, Any]) -> set[Identifier]:
    found: set[Identifier] = set()
    device = context.get("device")
    if isinstance(device, dict):
        for kind, name in (("device_id", "id"), ("push_token", "token")):
            value = _plain(device.get(name))
            if value is not None:
                found.add(Identifier(kind, value))
    external = context.get("externalIds")
    if isinstance(external, list):
        for item in external:
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                value = _plain(item.get("id"))
                ext_type = item["type"].strip().lower()
                if value is not None and ext_type and len(ext_type) <= 64:
                    found.add(Identifier(f"ext:{ext_type}", value))
    return found


def identifiers_in_raw(message: Any, rules: IdentityRules) -> set[Identifier]:
    """Identifiers in a raw, possibly invalid message: finds a person's quarantined items."""
    if not isinstance(message, dict):
        return set()
    found: set[Identifier] = set()
    for kind, field_name in (
        ("user_id", "userId"),
        ("anonymous_id", "anonymousId"),
        ("user_id", "previousId"),
        ("anonymous_id", "previousId"),
    ):
        value = _plain(message.get(field_name))
        if value is not None:
            found.add(Identifier(kind, value))
    context = message.get("context")
    context = context if isinstance(context, dict) else {}
    for traits in (message.get("traits"), context.get("traits")):
        if isinstance(traits, dict):
            email = normalize_email(traits.get("email"))
            phone = normalize_phone(traits.get("phone"), rules.phone_region)
            found |= {Identifier("email", email)} if email else set()
            found |= {Identifier("phone", phone)} if phone else set()
    return found | _context_identifiers(context)


def alias_candidates(event: Event) -> list[Identifier]:
    """What an alias's previousId might be known as: a userId, else an anonymousId."""
    previous = _plain(event.previous_id)
    if previous is None:
        return []
    return [Identifier("user_id", previous), Identifier("anonymous_id", previous)]


def alias_identifiers(
    event: Event, rules: IdentityRules, known: Mapping[Identifier, KnownProfile]
) -> list[Identifier]:
    """The identifiers an alias joins: its userId and its previousId as it is known."""
    ids = extract_identifiers(event, rules)
    candidates = alias_candidates(event)
    if candidates:
        as_user, as_anonymous = candidates
        # previousId equal to the userId is that userId, known yet or not.
        ids.append(as_user if as_user in known or as_user in ids else as_anonymous)
    return sort_by_priority(set(ids), rules)


def sort_by_priority(ids: Iterable[Identifier], rules: IdentityRules) -> list[Identifier]:
    """Highest priority first; ties in a fixed order so results never depend on input order."""
    return sorted(ids, key=lambda i: (rules.rank(i.type), i))


@dataclass(frozen=True, slots=True)
class KnownProfile:
    """What resolution needs to know of an existing profile."""

    profile_id: str
    created_at: datetime
    identifiers: AbstractSet[Identifier]


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving one event's identifiers.

    `profile_id` None means: create a new profile. `merged` are the profiles
    folded into `profile_id` (oldest survives). `link` are identifiers to attach
    to it; `dropped` were left out to respect a limit. `conflict` is set (and
    nothing else is) when a strict resolution (alias) would have had to drop.
    """

    profile_id: str | None
    merged: tuple[str, ...] = ()
    link: tuple[Identifier, ...] = ()
    dropped: tuple[Identifier, ...] = ()
    conflict: str | None = None


def _counts(identifiers: Iterable[Identifier]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for identifier in set(identifiers):
        counts[identifier.type] = counts.get(identifier.type, 0) + 1
    return counts


def violations(
    identifiers: Iterable[Identifier],
    rules: IdentityRules,
    held: Iterable[AbstractSet[Identifier]] = (),
) -> list[str]:
    """Which per-type limits a set of identifiers passes, in words.

    A profile that already holds more than a (since lowered) limit keeps what it
    has: only growth past max(limit, what one profile in `held` holds) counts.
    """
    allowed: dict[str, int] = {}
    for owned in held:
        for kind, count in _counts(owned).items():
            allowed[kind] = max(allowed.get(kind, 0), count)
    return [
        f"{count} {kind} identifiers (limit {rules.limit(kind)})"
        for kind, count in sorted(_counts(identifiers).items())
        if count > max(rules.limit(kind), allowed.get(kind, 0))
    ]


def resolve(
    identifiers: Sequence[Identifier],
    known: Mapping[Identifier, KnownProfile],
    rules: IdentityRules,
    *,
    strict: bool = False,
) -> Resolution:
    """Decide which profile the identifiers belong to (see the module docstring)."""
    owners = {known[i].profile_id for i in identifiers if i in known}
    if len(owners) == 1 and all(i in known for i in identifiers):
        # The common case: every identifier is already on one profile.
        return Resolution(profile_id=owners.pop())
    ids = sort_by_priority(set(identifiers), rules)
    dropped: list[Identifier] = []
    while True:
        profiles = sorted(
            {known[i].profile_id: known[i] for i in ids if i in known}.values(),
            key=lambda p: (p.created_at, p.profile_id),
        )
        union: set[Identifier] = set(ids)
        for profile in profiles:
            union |= profile.identifiers
        problems = violations(union, rules, (p.identifiers for p in profiles))
        if not problems or not ids:
            break
        if strict:
            return Resolution(
                profile_id=None,
                conflict="would join " + ", ".join(problems) + " on one profile",
            )
        dropped.append(ids.pop())
    survivor = profiles[0].profile_id if profiles else None
    owned: set[Identifier] = set()
    for profile in profiles:
        owned |= profile.identifiers
    return Resolution(
        profile_id=survivor,
        merged=tuple(p.profile_id for p in profiles[1:]),
        link=tuple(i for i in ids if i not in owned),
        dropped=tuple(dropped),
    )


def erasure_hash(identifier: Identifier, secret: bytes) -> str:
    """A keyed hash of an erased identifier: recognisable later, not reversible."""
    return hmac.new(secret, identifier.key.encode(), hashlib.sha256).hexdigest()
