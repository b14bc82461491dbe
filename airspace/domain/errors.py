"""Errors of the business; only `api/errors.py` and the CLI turn them into answers.

AirspaceError
 ├── InvalidInput      input that breaks a documented rule (4xx)
 │    ├── LimitExceeded   a size or count limit, with how far it was passed
 │    └── MalformedJson   a body that is not JSON, with the parse position
 ├── Unauthorized      missing or unknown key
 ├── Forbidden         a key of the wrong kind
 ├── NotFound          no such profile, key or record
 └── RateLimited       too many events for a write key, with when to retry
"""

from __future__ import annotations


class AirspaceError(Exception):
    """Base of every error Airspace raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(AirspaceError):
    """Input that breaks a documented rule."""

    code = "invalid_input"


class LimitExceeded(InvalidInput):
    """A size or count limit was passed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class MalformedJson(InvalidInput):
    """The body is not valid JSON."""

    code = "malformed_json"


class Unauthorized(AirspaceError):
    """No key, or a key that does not exist."""

    code = "unauthorized"


class Forbidden(AirspaceError):
    """A key that exists but may not do this."""

    code = "forbidden"


class NotFound(AirspaceError):
    """The thing asked for does not exist."""

    code = "not_found"


class RateLimited(AirspaceError):
    """Too many events for one write key; retry after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
