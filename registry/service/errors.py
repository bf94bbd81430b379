"""The one place that turns every exception into an HTTP answer with DESIGN's error body
``{"error": {"code", "message", "detail"}}``.

Our own errors carry their code and status (core/errors.py, which the client reads too). Errors
of the libraries underneath that mean "bad input" or "a service we need is down" are mapped by
class in ``FOREIGN`` below, so a new code path that lets one escape answers a clear 4xx/503 rather
than a 500; they are logged as one line, without a traceback or the statement's parameters.
Anything else is a bug: 500, logged with its traceback.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DataError, OperationalError, StatementError

from pseudoword.registry.core import errors as e

log = logging.getLogger("pseudoword.service")

#: Exceptions raised by what we build on, and the error each stands for (first match along the
#: exception's class hierarchy wins; None: a bug, answered 500).
FOREIGN: dict[type[BaseException], tuple[type[e.PseudowordError], str] | None] = {
    KeyError: None,  # LookupError's subclasses are our own bugs ...
    IndexError: None,
    LookupError: (e.InvalidRequest, "unknown character set"),  # ... LookupError itself: codecs.lookup
    UnicodeError: (e.InvalidRequest, "text that is not valid in its encoding"),
    RecursionError: (e.InvalidRequest, "input nested too deeply"),
    OverflowError: (e.InvalidRequest, "a number out of range"),
    DataError: (e.InvalidRequest, "a value the catalogue cannot store (out of range or invalid text)"),
    OperationalError: (e.DatabaseUnavailable, "the catalogue database is unavailable; try again"),
}
#: Retry-After (seconds) on answers that mean "come back later".
_RETRY_AFTER = {429: 1, 503: 5, 507: 60}


def error_response(status: int, code: str, message: str, detail: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    headers = dict(headers or {})
    if status in _RETRY_AFTER and "retry-after" not in {key.lower() for key in headers}:
        headers["Retry-After"] = str((detail or {}).get("retry_after") or _RETRY_AFTER[status])
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return Response({"error": {"code": code, "message": message, "detail": detail or {}}},
                    status_code=status, headers=headers)


def on_domain_error(_: Request, exc: e.PseudowordError) -> Response[dict[str, Any]]:
    # The Hugging Face compatible routes name the kind of a 404 as the Hub does (compat_hf.py).
    hub_code = exc.detail.get("hf_error_code") if isinstance(exc.detail, dict) else None
    message = "".join(c if " " <= c <= "~" else "?" for c in exc.message[:200])  # a header holds ASCII only
    headers = {"X-Error-Code": hub_code, "X-Error-Message": message} if isinstance(hub_code, str) else None
    return error_response(exc.status, exc.code, exc.message, exc.detail, headers)


def on_http_error(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    """Errors Litestar raises itself (routing, parameter validation, body limits, rate limits)."""
    status = exc.status_code if 400 <= exc.status_code < 600 else 500
    code = e.error_for_status(status).code if status < 500 or status == 503 else "internal_error"
    detail: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        detail = {"errors": exc.extra if isinstance(exc.extra, list) else [exc.extra]}
    message = exc.detail if isinstance(exc.detail, str) else str(exc)
    headers = dict(exc.headers or {})
    if status == 413:
        message = f"request body too large: {message}"
    if status == 429:
        reset = headers.get("RateLimit-Reset") or "1"
        headers["Retry-After"] = str(max(1, int(reset))) if reset.isdigit() else "1"
        message = f"too many requests from this client; retry after {headers['Retry-After']} s"
    return error_response(status, code, message, detail, headers)


def on_exception(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """Everything that is neither ours nor Litestar's: mapped by ``FOREIGN``, else a 500."""
    if isinstance(exc, StatementError) and not isinstance(exc, (DataError, OperationalError)):
        exc = exc.orig if isinstance(exc.orig, Exception) else exc  # e.g. a driver's ValueError on NUL
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        log.warning("%s %s: disk full (%s)", request.method, request.url.path, type(exc).__name__)
        return on_domain_error(request, e.InsufficientStorage("no space left on the server's disk; nothing was stored"))
    for cls in type(exc).__mro__:
        if cls in FOREIGN:
            mapped = FOREIGN[cls]
            if mapped is None:
                break
            error_class, what = mapped
            log.warning("%s %s: %s (%s)", request.method, request.url.path, what, type(exc).__name__)
            if error_class is e.DatabaseUnavailable:
                return on_domain_error(request, error_class(what))
            return on_domain_error(request, error_class(f"invalid request: {what}", {"error": type(exc).__name__}))
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; it was logged")


EXCEPTION_HANDLERS = {
    e.PseudowordError: on_domain_error,
    HTTPException: on_http_error,
    Exception: on_exception,
}
