"""The one source of time. Domain functions take `now` as an argument; the
engine, API and simulator hold a `Clock` and pass its readings in."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that can tell the current time in UTC."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the wall-clock time in UTC."""
        return datetime.now(UTC)


class SimulatedClock:
    """A clock that moves only when told to: tests and the simulator use it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"SimulatedClock needs a timezone-aware start, got {start!r}")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the simulated time."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by `delta` and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"time only moves forward; got {delta}")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when`, which must not be in the past."""
        if when.tzinfo is None:
            # astimezone() would read a naive time as the machine's local time.
            raise ValueError(f"SimulatedClock.set needs a timezone-aware time, got {when!r}")
        with self._lock:
            if when.astimezone(UTC) < self._now:
                raise ValueError(f"time only moves forward; {when} is before {self._now}")
            self._now = when.astimezone(UTC)
