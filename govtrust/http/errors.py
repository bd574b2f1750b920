"""HTTP side of the one error mapping: exceptions → JSON error bodies.

Uses :func:`govtrust.rpc.status.classify`, so a domain error has the same meaning over HTTP as
over gRPC. Body shape (every 4xx/5xx the app produces)::

    {"error": {"code": "INVALID_ARGUMENT", "message": "...", "reason": "...",
               "request_id": "...", "violations": [{"field": "...", "description": "..."}]}}

For FAILED_PRECONDITION the violations are ``{"type", "subject", "description"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from govtrust.errors import FieldViolation, GovtrustError, InvalidArgument
from govtrust.rpc.context import current_request_id
from govtrust.rpc.status import MappedError, classify

log = logging.getLogger("govtrust.http")

_CODE_FOR_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def error_body(
    code: str,
    message: str,
    *,
    reason: str | None = None,
    violations: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The JSON error document."""
    return {
        "error": {
            "code": code,
            "message": message,
            "reason": reason or code,
            "request_id": current_request_id(),
            "violations": violations or [],
        }
    }


def mapped_body(mapped: MappedError) -> dict[str, Any]:
    """The JSON error document of a mapped exception."""
    violations = [{"field": v.field, "description": v.description} for v in mapped.field_violations]
    violations += [
        {"type": v.type, "subject": v.subject, "description": v.description}
        for v in mapped.precondition_violations
    ]
    return error_body(mapped.code_name, mapped.message, reason=mapped.reason, violations=violations)


def error_response(exc: BaseException) -> JSONResponse:
    """Map any exception to its JSON response; unexpected ones are logged with the traceback."""
    request_id = current_request_id()
    mapped = classify(exc, request_id)
    if mapped.internal:
        log.error("unexpected error", exc_info=exc, extra={"request_id": request_id})
    return JSONResponse(mapped_body(mapped), status_code=mapped.http_status)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """The JSON error document of an HTTP exception (404, 405, 413 ...), with its headers."""
    fallback = "INTERNAL" if exc.status_code >= 500 else "ERROR"
    code = _CODE_FOR_HTTP.get(exc.status_code, fallback)
    return JSONResponse(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _validation_error(exc: RequestValidationError) -> InvalidArgument:
    violations = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        violations.append(FieldViolation(".".join(location) or "request", str(error.get("msg"))))
    return InvalidArgument("the request is invalid", violations)


def install_error_handlers(app: FastAPI) -> None:
    """Make domain errors, validation errors and HTTP errors answer the same JSON shape."""

    async def on_exception(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(_validation_error(exc))

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Domain errors are answered here; anything else is caught (and logged once) by
    # ObservabilityMiddleware, so Starlette's ServerErrorMiddleware never re-raises it.
    app.add_exception_handler(GovtrustError, on_exception)
