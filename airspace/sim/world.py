"""The plug-in protocol of the simulator: a world, and the records that cross it.

A world owns its customers and their hidden truth. It never sees the engine: the
driver hands it the messages the engine sent (`Delivery`) and gets back what the
customers did (`Action`). Times are aware UTC datetimes throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

CONSENT_EVENT = "Consent Updated"
"""The event a world emits for an unsubscribe: properties `{channel, status: opted_out}`."""


@dataclass(frozen=True, slots=True)
class Customer:
    """One simulated person, as the engine first learns of them.

    `traits` and `consent` go in one identify call at `joined` (or at the world's
    start when `joined` is None); `push_token`, when present, is their device's
    token (send it as `context.device.token`, which makes push reachable).
    """

    user_id: str
    traits: Mapping[str, Any]
    consent: Mapping[str, bool]
    push_token: str | None = None
    joined: datetime | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One tracking call the world makes (a `track` event)."""

    at: datetime
    user_id: str
    event: str
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message the engine sent, as read from its capture channel."""

    at: datetime
    user_id: str
    journey_id: str
    channel: str
    content: str


@dataclass(frozen=True, slots=True)
class Truth:
    """What really happened so far: the scoreboard policies are compared on."""

    messages: int
    message_cost: float
    incremental_conversions: float
    incremental_revenue: float
    unsubscribes: int
    purchases: int
    revenue: float
    # (journey, kind of customer as the world names it, or "") -> (messages, net value):
    # where the value went. Optional: a world may leave it empty.
    by_journey: Mapping[tuple[str, str], tuple[int, float]] = field(default_factory=dict)

    @property
    def net_value(self) -> float:
        """Expected incremental revenue minus what the messages cost."""
        return self.incremental_revenue - self.message_cost


@runtime_checkable
class World(Protocol):
    """A population of simulated customers with a known true response to messages."""

    name: str
    definitions: Path

    def customers(self) -> Sequence[Customer]:
        """Everyone, including those who join during the run (`Customer.joined`)."""
        ...

    def start(self) -> datetime:
        """The first simulated instant: a midnight, aware UTC."""
        ...

    def day(self, start: datetime) -> list[Action]:
        """Spontaneous behaviour in [start, start + 1 day), sorted by time."""
        ...

    def deliver(self, delivery: Delivery) -> list[Action]:
        """The customer's realised response to one message; updates fatigue and truth."""
        ...

    def uplift(
        self, user_id: str, journey_id: str, channel: str, at: datetime
    ) -> tuple[float, float]:
        """True incremental conversion probability of sending now, and the order value."""
        ...

    def truth(self) -> Truth:
        """The scoreboard so far."""
        ...

    def cost(self, channel: str) -> float:
        """What one message on this channel costs (as settings.yaml says)."""
        ...


@runtime_checkable
class Baseline(Protocol):
    """Optional: a world that can say how noisy a measurement of its uplift is."""

    def baseline(self, user_id: str, at: datetime) -> float:
        """The chance the customer reaches a journey's goal within its window with no
        message at all (the `measured_oracle` policy's noise: p (1 - p) per trial)."""
        ...
