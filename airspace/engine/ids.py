"""Ids that sort by creation: the clock's milliseconds, then random hex.

The random part comes from the system's generator; a simulation calls `repeatable(seed)`
so that a run with the same seed makes the same ids (and so the same holdout draws,
which hash them) every time.
"""

from __future__ import annotations

import random
from datetime import datetime

_source: random.Random = random.SystemRandom()


def repeatable(seed: int | None) -> None:
    """Draw ids from a generator seeded with `seed` (None: the system's, the default)."""
    global _source
    _source = random.SystemRandom() if seed is None else random.Random(seed)


def token(nbytes: int) -> str:
    """`nbytes` random bytes as hex."""
    return f"{_source.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def new_id(now: datetime) -> str:
    """A 26-character id that sorts by creation time."""
    return f"{int(now.timestamp() * 1000):012x}{token(7)}"
