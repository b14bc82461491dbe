"""The one seam between Airspace and the outside world's channels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a channel delivers: who, where, what, and the key that makes retries safe."""

    idempotency_key: str
    channel: str
    address: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The channel's answer: delivered, or failed with a reason and whether to retry."""

    delivered: bool
    detail: str = ""
    retry: bool = False


class Channel(Protocol):
    """A delivery adapter."""

    def deliver(self, message: OutboundMessage) -> DeliveryResult:
        """Hand the message over; never raise for the recipient's or provider's faults."""
        ...
