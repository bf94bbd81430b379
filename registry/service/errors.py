"""One table from domain errors to HTTP answers, and the handlers that write DESIGN's error body
``{"error": {"code", "message", "detail"}}`` for every failure, framework ones included."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import OperationalError

from pseudoword.registry.core import errors as e

log = logging.getLogger("pseudoword.service")

#: Status for each error class; a subclass not listed takes its nearest listed base's status.
STATUS: dict[type[e.PseudowordError], int] = {
    e.InvalidReference: 400,
    e.InvalidRequest: 400,
    e.InvalidFile: 422,
    e.ArchitectureMismatch: 422,
    e.TooLarge: 413,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.StorageUnavailable: 503,
    e.DatabaseUnavailable: 503,
}
#: Codes for errors the framework raises before our code runs.
FRAMEWORK_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 413: "too_large", 415: "invalid_request", 429: "too_many_requests"}


def status_for(error: e.PseudowordError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_response(status: int, code: str, message: str, detail: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    return Response({"error": {"code": code, "message": message, "detail": detail or {}}},
                    status_code=status, headers=headers)


def on_domain_error(_: Request, exc: e.PseudowordError) -> Response[dict[str, Any]]:
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, exc.detail, headers)


def on_http_error(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code if 400 <= exc.status_code < 600 else 500
    code = FRAMEWORK_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    detail: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        detail = {"errors": exc.extra if isinstance(exc.extra, list) else [exc.extra]}
    message = exc.detail if isinstance(exc.detail, str) else str(exc)
    if status == 413:
        message = f"request body too large: {message}"
    return error_response(status, code, message, detail)


def on_database_error(_: Request, exc: OperationalError) -> Response[dict[str, Any]]:
    log.error("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
    return error_response(503, e.DatabaseUnavailable.code, "the catalogue database is unavailable; try again")


def on_unexpected(_: Request, exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; it was logged")


EXCEPTION_HANDLERS = {
    e.PseudowordError: on_domain_error,
    HTTPException: on_http_error,
    OperationalError: on_database_error,
    Exception: on_unexpected,
}
