"""The typed error hierarchy shared by the core, the service, the client, the runtime and the CLI.

Every error carries a stable ``code`` and the HTTP ``status`` the registry answers it with: the
server sends both (its one error table reads them here), the HTTP client maps the code back to
the same class (``error_for_code``, or ``error_for_status`` when a proxy answered without our
body), and the CLI prints it. Add a new kind by subclassing ``PseudowordError`` with a new
``code`` and ``status``; the lookups below pick it up.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PseudowordError(Exception):
    """Base of every error we raise on purpose."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def __str__(self) -> str:
        return self.message


class InvalidRequest(PseudowordError):
    """Well-formed transport, bad content (metadata, parameters)."""

    code = "invalid_request"
    status = 400


class InvalidReference(PseudowordError):
    code = "invalid_reference"
    status = 400


class InvalidFile(PseudowordError):
    """The bytes are not a readable embedding file (empty, truncated, malformed header...)."""

    code = "invalid_file"
    status = 422


class ShapeMismatch(InvalidFile):
    """The file reads, but its tensors are not a textual-inversion embedding we accept."""

    code = "shape_mismatch"


class NonFiniteValues(InvalidFile):
    code = "non_finite"


class UnsafePickle(InvalidFile):
    """A pickle asked for something the restricted loader does not allow (code execution)."""

    code = "unsafe_pickle"


class TooLarge(PseudowordError):
    code = "too_large"
    status = 413


class NotFound(PseudowordError):
    code = "not_found"
    status = 404


class RemoteNotFound(NotFound):
    """The registry answered that it does not know this reference."""

    code = "not_found"


class LocalNotFound(NotFound):
    """Nothing cached locally for this reference (offline mode, or a missing local file)."""

    code = "local_not_found"


class Conflict(PseudowordError):
    code = "conflict"
    status = 409


class Unauthorized(PseudowordError):
    code = "unauthorized"
    status = 401


class Forbidden(PseudowordError):
    code = "forbidden"
    status = 403


class StorageUnavailable(PseudowordError):
    code = "storage_unavailable"
    status = 503


class RegistryUnreachable(PseudowordError):
    """The client could not talk to the registry at all (connection refused, timeout)."""

    code = "registry_unreachable"
    status = 503


class IntegrityError(PseudowordError):
    """Downloaded or cached bytes do not match the digest they were asked for."""

    code = "integrity_error"
    status = 502


class ArchitectureMismatch(PseudowordError):
    """An embedding's architecture does not fit the pipeline or the AIR it was asked under."""

    code = "architecture_mismatch"
    status = 422


class UnsupportedPipeline(PseudowordError):
    code = "unsupported_pipeline"
    status = 422


class InvalidWeight(PseudowordError):
    code = "invalid_weight"
    status = 400


class DatabaseUnavailable(PseudowordError):
    code = "database_unavailable"
    status = 503


class InsufficientStorage(PseudowordError):
    """The disk (or the object store's quota) is full: nothing was stored; try again later."""

    code = "insufficient_storage"
    status = 507


class TooManyRequests(PseudowordError):
    """This client is over its rate limit; ``Retry-After`` says when to come back."""

    code = "too_many_requests"
    status = 429


class MethodNotAllowed(PseudowordError):
    code = "method_not_allowed"
    status = 405


class RequestTimeout(PseudowordError):
    """The client did not send its request within the read timeout."""

    code = "request_timeout"
    status = 408


class InvalidResponse(PseudowordError):
    """The registry (or something in between) answered with JSON that is not what it should send."""

    code = "invalid_response"
    status = 502


class InvalidSetting(PseudowordError):
    """A ``PSEUDOWORD_*`` setting (or a flag standing for one) that does not parse: fix the setting."""

    code = "invalid_setting"
    status = 500


class MissingCatalogue(PseudowordError):
    """A server-side command found no catalogue where it looked, and does not create one silently."""

    code = "no_catalogue"
    status = 500


def _all_subclasses(cls: type[PseudowordError]) -> list[type[PseudowordError]]:
    out: list[type[PseudowordError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str) -> type[PseudowordError]:
    """The class to raise for a code received over HTTP (first defined wins, so
    ``not_found`` maps to ``NotFound``'s remote flavour)."""
    if code == NotFound.code:
        return RemoteNotFound
    for cls in _all_subclasses(PseudowordError):
        if cls.code == code:
            return cls
    return PseudowordError


def error_for_status(status: int) -> type[PseudowordError]:
    """The class for a bare HTTP status (an answer without our error body, e.g. from a proxy, or a
    framework error): the first class defined with that status."""
    if status == PseudowordError.status:  # a bare 500 is a server bug, not any one of our kinds
        return PseudowordError
    for cls in _all_subclasses(PseudowordError):
        if cls.status == status:
            return cls
    return InvalidRequest if 400 <= status < 500 else PseudowordError
