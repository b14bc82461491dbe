"""A token bucket per write key: a sustained rate with room for bursts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; one token per event."""

    rate: float
    burst: float
    tokens: float
    updated: datetime

    def take(self, count: int, now: datetime) -> float | None:
        """Spend `count` tokens; return None if allowed, else seconds to wait before retrying."""
        elapsed = max((now - self.updated).total_seconds(), 0.0)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if count <= self.tokens:
            self.tokens -= count
            return None
        needed = min(count, self.burst) - self.tokens
        return max(needed / self.rate, 0.001)
