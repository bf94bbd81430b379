"""The typed error hierarchy shared by the core, the service, the client, the runtime and the CLI.

Every error carries a stable ``code``: the server sends it in its JSON error body, the HTTP
client maps it back to the same class (``error_for_code``), and the CLI prints it. Add a new
kind by subclassing ``PseudowordError`` with a new ``code``; the registry below picks it up.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PseudowordError(Exception):
    """Base of every error we raise on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def __str__(self) -> str:
        return self.message


class InvalidReference(PseudowordError):
    code = "invalid_reference"


class InvalidFile(PseudowordError):
    """The bytes are not a readable embedding file (empty, truncated, malformed header...)."""

    code = "invalid_file"


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


class InvalidRequest(PseudowordError):
    """Well-formed transport, bad content (metadata, parameters)."""

    code = "invalid_request"


class NotFound(PseudowordError):
    code = "not_found"


class RemoteNotFound(NotFound):
    """The registry answered that it does not know this reference."""

    code = "not_found"


class LocalNotFound(NotFound):
    """Nothing cached locally for this reference (offline mode, or a missing local file)."""

    code = "local_not_found"


class Conflict(PseudowordError):
    code = "conflict"


class Unauthorized(PseudowordError):
    code = "unauthorized"


class Forbidden(PseudowordError):
    code = "forbidden"


class StorageUnavailable(PseudowordError):
    code = "storage_unavailable"


class RegistryUnreachable(PseudowordError):
    """The client could not talk to the registry at all (connection refused, timeout)."""

    code = "registry_unreachable"


class IntegrityError(PseudowordError):
    """Downloaded or cached bytes do not match the digest they were asked for."""

    code = "integrity_error"


class ArchitectureMismatch(PseudowordError):
    """An embedding's architecture does not fit the pipeline or the AIR it was asked under."""

    code = "architecture_mismatch"


class UnsupportedPipeline(PseudowordError):
    code = "unsupported_pipeline"


class InvalidWeight(PseudowordError):
    code = "invalid_weight"


class DatabaseUnavailable(PseudowordError):
    code = "database_unavailable"


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
