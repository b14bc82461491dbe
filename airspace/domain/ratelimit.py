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
        # A reading older than the last one must not move the bucket back in time:
        # the same seconds would be refilled twice.
        self.updated = max(self.updated, now)
        if count <= self.tokens:
            self.tokens -= count
            return None
        if count > self.burst and self.tokens >= self.burst:
            # More than a full bucket can ever hold: allow it once the bucket is full and
            # go into debt, so the sustained rate still holds and the caller is not refused forever.
            self.tokens -= count
            return None
        needed = min(count, self.burst) - self.tokens
        return max(needed / self.rate, 0.001)
