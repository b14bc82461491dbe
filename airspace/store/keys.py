"""API keys: `write` keys may only send events; `admin` keys may read and change everything.

The secret is shown once when created and stored only as a SHA-256 hash.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import insert, select, update

from airspace.store.database import Database
from airspace.store.tables import ApiKeyRow

KeyKind = Literal["write", "admin"]
_PREFIX: dict[str, str] = {"write": "wk_", "admin": "sk_"}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the rest of Airspace sees it (never the secret)."""

    id: int
    kind: KeyKind
    name: str
    prefix: str
    created_at: datetime
    revoked: bool


def hash_secret(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, kind: KeyKind, name: str, now: datetime) -> tuple[ApiKey, str]:
    """Create a key; return it and its secret (shown once, never stored)."""
    if kind not in _PREFIX:
        raise ValueError(f"key kind must be write or admin, got {kind!r}")
    secret = _PREFIX[kind] + secrets.token_urlsafe(24)
    with db.write() as conn:
        key_id = conn.execute(
            insert(ApiKeyRow)
            .values(
                kind=kind,
                name=name,
                prefix=secret[:10],
                key_hash=hash_secret(secret),
                created_at=now,
            )
            .returning(ApiKeyRow.id)
        ).scalar_one()
    return ApiKey(key_id, kind, name, secret[:10], now, False), secret


def find_key(db: Database, secret: str) -> ApiKey | None:
    """The live key with this secret, if any."""
    with db.read() as conn:
        row = conn.execute(
            select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_secret(secret))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    return ApiKey(row.id, row.kind, row.name, row.prefix, row.created_at, False)


def list_keys(db: Database) -> list[ApiKey]:
    """Every key, newest first."""
    with db.read() as conn:
        rows = conn.execute(select(ApiKeyRow).order_by(ApiKeyRow.id.desc())).all()
    return [
        ApiKey(r.id, r.kind, r.name, r.prefix, r.created_at, r.revoked_at is not None) for r in rows
    ]


def revoke_key(db: Database, key_id: int, now: datetime) -> bool:
    """Revoke a key; False if there is no such live key."""
    with db.write() as conn:
        result = conn.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return bool(result.rowcount)


class KeyCache:
    """Keys looked up by secret, kept for a minute so tracking needs no query per request."""

    def __init__(self, db: Database, ttl_seconds: float = 60.0) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, secret: str) -> ApiKey | None:
        """The live key for a secret, or None."""
        # Monotonic time only ages the cache; it never reaches the domain.
        moment = time.monotonic()
        with self._lock:
            hit = self._cache.get(secret)
        if hit is not None and moment - hit[0] < self.ttl:
            return hit[1]
        key = find_key(self.db, secret) if len(secret) <= 200 else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[secret] = (moment, key)
        return key
