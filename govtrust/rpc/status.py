"""The one mapping from exceptions to gRPC status codes (and HTTP statuses).

Every servicer goes through :class:`govtrust.rpc.interceptors.GovtrustInterceptor`, which calls
:func:`to_grpc_status`; the HTTP app calls :func:`classify` from ``govtrust.http.errors``. So a
domain error means the same thing on both surfaces, and the table below is the only place that
decides it.

Details follow the ``google.rpc`` error model (AIP-193): every error carries an ``ErrorInfo``
(domain ``govtrust`` and a machine-readable reason) and a ``RequestInfo`` with the request id;
``InvalidArgument`` adds ``BadRequest`` field violations, ``FailedPrecondition`` adds a
``PreconditionFailure``. Anything unexpected becomes INTERNAL with a generic message and the
request id; the traceback is logged by the caller, never sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from govtrust.db import is_connection_fault
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    GovtrustError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

ERROR_DOMAIN = "govtrust"
REQUEST_ID_KEY = "x-request-id"

# (domain error, gRPC code, HTTP status) — first match wins, so subclasses of two domain errors
# (e.g. a key-store error that is also NotFound) take the first listed.
_TABLE: tuple[tuple[type[GovtrustError], grpc.StatusCode, int], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, 412),
    (NotFound, grpc.StatusCode.NOT_FOUND, 404),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, 409),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, 403),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, 401),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (Unavailable, grpc.StatusCode.UNAVAILABLE, 503),
)

_REASON_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,62}[A-Z0-9]$")


@dataclass(frozen=True)
class MappedError:
    """What an exception means to a caller: code, HTTP status, safe message and details.

    ``internal`` is true when the exception was not a domain error: the caller must log it with
    its traceback and must not show anything but ``message``.
    """

    code: grpc.StatusCode
    http_status: int
    message: str
    reason: str
    field_violations: tuple[FieldViolation, ...] = ()
    precondition_violations: tuple[PreconditionViolation, ...] = ()
    internal: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def code_name(self) -> str:
        """The canonical name, e.g. ``INVALID_ARGUMENT`` (also used in HTTP error bodies)."""
        return self.code.name


def _reason(exc: BaseException, code: grpc.StatusCode) -> str:
    """A domain error may carry ``reason`` (UPPER_SNAKE_CASE); otherwise the code name."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and _REASON_RE.match(reason):
        return reason
    return code.name


def classify(exc: BaseException, request_id: str | None = None) -> MappedError:
    """Map any exception to what the caller may see. Never raises."""
    for error_type, code, http_status in _TABLE:
        if isinstance(exc, error_type):
            return MappedError(
                code=code,
                http_status=http_status,
                message=exc.message or code.name.lower().replace("_", " "),
                reason=_reason(exc, code),
                field_violations=tuple(getattr(exc, "violations", ()))
                if isinstance(exc, InvalidArgument)
                else (),
                precondition_violations=tuple(getattr(exc, "violations", ()))
                if isinstance(exc, FailedPrecondition)
                else (),
            )
    if isinstance(exc, NotImplementedError):
        return MappedError(
            code=grpc.StatusCode.UNIMPLEMENTED,
            http_status=501,
            message="this operation is not implemented yet",
            reason="UNIMPLEMENTED",
        )
    if is_connection_fault(exc):
        return MappedError(
            code=grpc.StatusCode.UNAVAILABLE,
            http_status=503,
            message="the database is unavailable; retry later",
            reason="DATABASE_UNAVAILABLE",
            internal=True,
        )
    suffix = f" (request id {request_id})" if request_id else ""
    return MappedError(
        code=grpc.StatusCode.INTERNAL,
        http_status=500,
        message=f"internal error{suffix}; the operator can find it in the server log",
        reason="INTERNAL",
        internal=True,
    )


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status_proto(mapped: MappedError, request_id: str | None = None) -> status_pb2.Status:
    """A ``google.rpc.Status`` with ErrorInfo, RequestInfo and the violations as details."""
    status = status_pb2.Status(code=_CODE_NUMBERS[mapped.code], message=mapped.message)
    if mapped.field_violations:
        status.details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in mapped.field_violations
                    ]
                )
            )
        )
    if mapped.precondition_violations:
        status.details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=v.type, subject=v.subject, description=v.description
                        )
                        for v in mapped.precondition_violations
                    ]
                )
            )
        )
    status.details.append(
        _pack(
            error_details_pb2.ErrorInfo(
                reason=mapped.reason, domain=ERROR_DOMAIN, metadata=mapped.metadata
            )
        )
    )
    if request_id:
        status.details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    return status


def to_grpc_status(exc: BaseException, request_id: str | None = None) -> grpc.Status:
    """The ``grpc.Status`` to abort a call with (details in ``grpc-status-details-bin``)."""
    status: grpc.Status = rpc_status.to_status(
        to_status_proto(classify(exc, request_id), request_id)
    )
    return status


_CODE_NUMBERS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: code_pb2.OK,
    grpc.StatusCode.CANCELLED: code_pb2.CANCELLED,
    grpc.StatusCode.UNKNOWN: code_pb2.UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
    grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED: code_pb2.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE: code_pb2.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED: code_pb2.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL: code_pb2.INTERNAL,
    grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS: code_pb2.DATA_LOSS,
    grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
}
