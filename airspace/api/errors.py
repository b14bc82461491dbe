"""Turn `AirspaceError`s into HTTP answers with a JSON `{code, message}` body."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from starlette.exceptions import HTTPException

from airspace.domain.errors import (
    AirspaceError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)

_STATUS: list[tuple[type[AirspaceError], int]] = [
    (RateLimited, 429),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (InvalidInput, 400),
]

_HTTP_CODES = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed"}


def status_of(error: AirspaceError) -> int:
    """The HTTP status for an error."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_response(error: AirspaceError) -> ORJSONResponse:
    """The answer for an error."""
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="airspace"'
    return ORJSONResponse(
        {"code": error.code, "message": error.message}, status_of(error), headers=headers
    )


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""

    @app.exception_handler(AirspaceError)
    async def _airspace_error(_request: Request, error: AirspaceError) -> ORJSONResponse:
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, error: HTTPException) -> ORJSONResponse:
        # Unknown paths and methods answer like every other error (SDKs read `code`).
        code = _HTTP_CODES.get(error.status_code, "http_error")
        return ORJSONResponse(
            {"code": code, "message": str(error.detail)}, error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> ORJSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return ORJSONResponse({"code": "invalid_input", "message": problems}, 422)
