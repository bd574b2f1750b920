"""Domain errors shared by every package.

Domain code raises these; the gRPC and HTTP adapters map them to status codes in one place
(``govtrust.rpc.status`` and ``govtrust.http.errors``). Messages are safe to show a caller:
they never contain secrets or unmasked personal data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request: ``field`` is a dotted path, ``description`` says why."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition: ``type`` (e.g. ``STATE``), ``subject`` (what), ``description``."""

    type: str
    subject: str
    description: str


class GovtrustError(Exception):
    """Base of every domain error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GovtrustError):
    """The request is malformed; ``violations`` name each bad field and the reason."""

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        """An error about exactly one field."""
        return cls(f"{name}: {description}", [FieldViolation(name, description)])


class NotFound(GovtrustError):
    """The named resource does not exist (or the caller may not know it exists)."""


class AlreadyExists(GovtrustError):
    """A resource with the same unique key exists."""


class FailedPrecondition(GovtrustError):
    """The system is not in a state that allows the operation (e.g. an illegal transition)."""

    def __init__(self, message: str, violations: list[PreconditionViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []


class PermissionDenied(GovtrustError):
    """The caller is authenticated but not allowed to do this."""


class Unauthenticated(GovtrustError):
    """The caller presented no or invalid credentials."""


class ResourceExhausted(GovtrustError):
    """A limit was hit (size, rate); retrying later or with less may succeed."""


class Unavailable(GovtrustError):
    """A dependency (database, key store) cannot be reached right now."""


class ShuttingDown(Unavailable):
    """The serving process is draining and its grace period is over: the call or request was
    ended before its answer; retry it (elsewhere; a mutating call with the same
    ``request_id``)."""

    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("the server is shutting down; retry")
