"""A deterministic workload for the crash tests: many people, their devices, and the
identify / alias calls that link (and often merge) their profiles.

Every person's events form a timeline in the order the person did them; the
timelines are interleaved at random (same seed, same workload), then numbered:
the n-th message has messageId `crash-<n>` and a timestamp n x 10 ms after `start`.

Kinds of people (see `_PEOPLE`):

single          anonymous pages on one device, identify(userId, anonymousId, email),
                then tracked as that user (some calls server-side: userId only)
two_devices     as single on device 1; device 2 browses anonymously (its own profile)
                until identify(userId, anonymousId 2) merges the two profiles
email_link      device 2 is linked by identify(anonymousId 2, traits.email) without a userId
alias           anonymous browsing, then alias(previousId=anonymousId, userId)
alias_conflict  a single person who also sends alias(previousId=<another person's
                userId>, userId): joining two userIds is refused (quarantined) when
                the other userId is already known when the alias is applied
shared_device   a household: two users identify on the same device one after the
                other; the device stays with the first, the userIds never merge

Padding visitors (one anonymous page each) bring the total to exactly `total`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

PAGES = ("/", "/shoes", "/shoes/trail", "/bags", "/cart", "/checkout", "/account", "/help")
TRACKS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Coupon Used")
SCREENS = ("Home", "Search", "Basket")
PLANS = ("free", "plus", "pro")
TIMEZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/Berlin")

Message = dict[str, Any]


@dataclass
class Person:
    """One person of the workload and what the test may expect of them."""

    user_id: str
    kind: str
    messages: list[Message] = field(default_factory=list)
    # Every applied event of a converging person ends on one profile, whatever the order
    # in which the workers applied them. Shared-device people do not converge: the device's
    # anonymous events stay with whoever identified on it first.
    converges: bool = True

    @property
    def message_ids(self) -> list[str]:
        """The messageIds of this person's events."""
        return [m["messageId"] for m in self.messages]


@dataclass
class Workload:
    """The messages in arrival order and the people they belong to."""

    messages: list[Message]
    people: list[Person]

    def kinds(self) -> dict[str, int]:
        """How many people of each kind (and padding visitors as `visitor`)."""
        counts: dict[str, int] = {}
        for person in self.people:
            counts[person.kind] = counts.get(person.kind, 0) + 1
        return counts

    def types(self) -> dict[str, int]:
        """How many messages of each type."""
        counts: dict[str, int] = {}
        for message in self.messages:
            counts[message["type"]] = counts.get(message["type"], 0) + 1
        return counts


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def new_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial:06d}"

    def browse(self, anonymous_id: str, count: int, user_id: str | None = None) -> list[Message]:
        """`count` page / track / screen calls from one device (as a user when `user_id`)."""
        messages: list[Message] = []
        for _ in range(count):
            roll = self.rng.random()
            message: Message
            if roll < 0.6:
                message = {
                    "type": "page",
                    "name": self.rng.choice(PAGES),
                    "properties": {"path": self.rng.choice(PAGES)},
                }
            elif roll < 0.9:
                message = {
                    "type": "track",
                    "event": self.rng.choice(TRACKS),
                    "properties": {"price": self.rng.randint(5, 300)},
                }
            else:
                message = {"type": "screen", "name": self.rng.choice(SCREENS)}
            message["anonymousId"] = anonymous_id
            if user_id is not None:
                message["userId"] = user_id
            if self.rng.random() < 0.2:
                message["context"] = {"timezone": self.rng.choice(TIMEZONES), "locale": "en-GB"}
            messages.append(message)
        return messages

    def server_side(self, user_id: str, count: int) -> list[Message]:
        """Calls a back office sends with the userId only."""
        messages: list[Message] = []
        for _ in range(count):
            if self.rng.random() < 0.85:
                messages.append(
                    {
                        "type": "track",
                        "userId": user_id,
                        "event": "Order Completed",
                        "properties": {"revenue": self.rng.randint(10, 500)},
                    }
                )
            else:
                messages.append({"type": "group", "userId": user_id, "groupId": "acme"})
        return messages

    def identify(self, user_id: str | None, anonymous_id: str, email: str) -> Message:
        message: Message = {
            "type": "identify",
            "anonymousId": anonymous_id,
            "traits": {"email": email, "plan": self.rng.choice(PLANS)},
        }
        if user_id is not None:
            message["userId"] = user_id
            message["traits"]["name"] = f"Customer {user_id}"
        if self.rng.random() < 0.3:
            message["context"] = {
                "consent": {"categoryPreferences": {"email": self.rng.random() < 0.7}}
            }
        return message

    def mix(self, *sequences: list[Message]) -> list[Message]:
        """Interleave sequences (devices used in parallel), keeping each one's order."""
        queues = [list(s) for s in sequences if s]
        merged: list[Message] = []
        while queues:
            weights = [len(q) for q in queues]
            queue = self.rng.choices(queues, weights)[0]
            merged.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
        return merged

    def visits(self) -> int:
        return self.rng.randint(1, 6)

    # One builder per kind of person: each returns the people and their one timeline.

    def single(self, known: list[str]) -> tuple[list[Person], list[Message]]:
        person = Person(self.new_id("user"), "single")
        device = self.new_id("anon")
        email = f"{person.user_id}@example.org"
        timeline = [
            *self.browse(device, self.visits()),
            self.identify(person.user_id, device, email),
            *self.mix(
                self.browse(device, self.rng.randint(0, 5), person.user_id),
                self.server_side(person.user_id, self.rng.randint(0, 2)),
            ),
        ]
        person.messages = timeline
        return [person], timeline

    def two_devices(self, known: list[str]) -> tuple[list[Person], list[Message]]:
        person = Person(self.new_id("user"), "two_devices")
        laptop, phone = self.new_id("anon"), self.new_id("anon")
        email = f"{person.user_id}@example.org"
        first = [
            *self.browse(laptop, self.visits()),
            self.identify(person.user_id, laptop, email),
            *self.browse(laptop, self.rng.randint(0, 3), person.user_id),
        ]
        second = [
            *self.browse(phone, self.visits()),
            self.identify(person.user_id, phone, email),
            *self.browse(phone, self.rng.randint(0, 3), person.user_id),
        ]
        person.messages = self.mix(first, second)
        return [person], person.messages

    def email_link(self, known: list[str]) -> tuple[list[Person], list[Message]]:
        person = Person(self.new_id("user"), "email_link")
        laptop, tablet = self.new_id("anon"), self.new_id("anon")
        email = f"{person.user_id}@example.org"
        first = [
            *self.browse(laptop, self.visits()),
            self.identify(person.user_id, laptop, email),
            *self.server_side(person.user_id, self.rng.randint(0, 2)),
        ]
        second = [
            *self.browse(tablet, self.visits()),
            self.identify(None, tablet, email.upper()),  # normalised to the same email
            *self.browse(tablet, self.rng.randint(0, 3)),
        ]
        person.messages = self.mix(first, second)
        return [person], person.messages

    def alias(self, known: list[str]) -> tuple[list[Person], list[Message]]:
        person = Person(self.new_id("user"), "alias")
        device = self.new_id("anon")
        timeline = [
            *self.browse(device, self.visits()),
            {"type": "alias", "previousId": device, "userId": person.user_id},
            *self.server_side(person.user_id, self.rng.randint(1, 3)),
            *self.browse(device, self.rng.randint(0, 3), person.user_id),
        ]
        person.messages = timeline
        return [person], timeline

    def alias_conflict(self, known: list[str]) -> tuple[list[Person], list[Message]]:
        people, timeline = self.single(known)
        person = people[0]
        person.kind = "alias_conflict"
        # Someone else: refused if their userId is known when the alias is applied.
        other = self.rng.choice(known)
        position = self.rng.randint(len(timeline) // 2, len(timeline))
        timeline.insert(position, {"type": "alias", "previousId": other, "userId": person.user_id})
        return people, timeline

    def shared_device(self, known: list[str]) -> tuple[list[Person], list[Message]]:
        first = Person(self.new_id("user"), "shared_device", converges=False)
        second = Person(self.new_id("user"), "shared_device", converges=False)
        family, own = self.new_id("anon"), self.new_id("anon")
        family_timeline = [
            *self.browse(family, self.visits()),
            self.identify(first.user_id, family, f"{first.user_id}@example.org"),
            *self.browse(family, self.rng.randint(0, 3), first.user_id),
            *self.browse(family, self.visits()),  # the second person, still anonymous
            self.identify(second.user_id, family, f"{second.user_id}@example.org"),
            *self.browse(family, self.rng.randint(1, 3), second.user_id),
        ]
        own_timeline = [
            *self.browse(own, self.rng.randint(0, 3)),
            self.identify(second.user_id, own, f"{second.user_id}@example.org"),
            *self.server_side(second.user_id, self.rng.randint(0, 2)),
        ]
        timeline = self.mix(family_timeline, own_timeline)
        for message in timeline:
            mine = message.get("userId") == second.user_id or message["anonymousId"] == own
            owner = second if mine else first
            owner.messages.append(message)
        return [first, second], timeline


_PEOPLE = (
    ("single", 40),
    ("two_devices", 20),
    ("email_link", 10),
    ("alias", 10),
    ("alias_conflict", 5),
    ("shared_device", 8),
)


def build_workload(total: int, seed: int, start: datetime, spread: float = 0.02) -> Workload:
    """Exactly `total` messages, the same for the same seed.

    `spread` is the share of the whole stream over which a person's timeline of about
    ten events is spread: small puts one person's devices in the same batches of
    several partitions at once (workers contend for the person), large spreads it thin.
    """
    builder = _Builder(seed)
    kinds = [kind for kind, _ in _PEOPLE]
    weights = [weight for _, weight in _PEOPLE]
    people: list[Person] = []
    timelines: list[list[Message]] = []
    known: list[str] = []
    count = 0
    while True:
        kind = builder.rng.choices(kinds, weights)[0]
        if kind == "alias_conflict" and len(known) < 50:
            continue
        new_people, timeline = getattr(builder, kind)(known)
        if count + len(timeline) > total:
            break
        people.extend(new_people)
        known.extend(p.user_id for p in new_people)
        timelines.append(timeline)
        count += len(timeline)
    while count < total:
        visitor = Person("", "visitor", converges=False)
        visitor.messages = builder.browse(builder.new_id("anon"), 1)
        people.append(visitor)
        timelines.append(visitor.messages)
        count += 1
    messages = _interleave(builder.rng, timelines, spread / 5)
    for n, message in enumerate(messages):
        message["messageId"] = f"crash-{n:07d}"
        message["timestamp"] = (start + timedelta(milliseconds=10 * n)).isoformat()
    return Workload(messages, people)


def _interleave(rng: random.Random, timelines: list[list[Message]], gap: float) -> list[Message]:
    """Spread each timeline over a stretch of the whole; keep the order within each."""
    keyed: list[tuple[float, int, int, Message]] = []
    for number, timeline in enumerate(timelines):
        moment = rng.random()
        for position, message in enumerate(timeline):
            keyed.append((moment, number, position, message))
            moment += rng.uniform(0.0, gap)
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]
