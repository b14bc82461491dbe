"""Key checks: write keys for tracking, admin keys for everything under /admin."""

from __future__ import annotations

import base64

from fastapi import Request

from airspace.domain.errors import Forbidden, Unauthorized
from airspace.store.keys import ApiKey, KeyCache


def credentials(request: Request) -> str | None:
    """The secret from `Authorization: Basic key:` or `Authorization: Bearer key`."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not valid base64") from None
        return decoded.partition(":")[0] or None
    raise Unauthorized(f"unsupported authorization scheme {scheme!r}; use Basic or Bearer")


def require_kind(keys: KeyCache, secret: str | None, kind: str) -> ApiKey:
    """The key for `secret`, which must be of `kind`."""
    if secret is None:
        raise Unauthorized(
            "no key: send it as the HTTP Basic user (key:)"
            + (" or as writeKey in the body" if kind == "write" else " or as a Bearer token")
        )
    key = keys.get(secret)
    if key is None:
        raise Unauthorized("unknown or revoked key")
    if key.kind != kind:
        article = "an" if key.kind == "admin" else "a"
        raise Forbidden(
            f"{article} {key.kind} key cannot do this; use "
            + ("a write key" if kind == "write" else "an admin (secret) key")
        )
    return key
