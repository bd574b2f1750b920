"""Request body limits: one mechanism for every HTTP route, enforced while the body streams in.

:class:`BodyLimitMiddleware` wraps ``receive``: a declared ``Content-Length`` over the limit is
refused before the first byte is read, and a body (chunked or not) is refused as soon as the
bytes received pass the limit, so nothing bigger than the limit (plus one chunk) is ever held.
The refusal is :class:`BodyTooLarge`, an HTTP 413 that the error handlers answer with the JSON
error document (``RESOURCE_EXHAUSTED``); where no handler sees it (a raw ASGI endpoint), the
middleware answers the same. Any response that starts before the request body was read to its
end (this refusal, a route's own, a 404, a 415) gets ``Connection: close``, so the server never
reads the rest of a huge upload.

The limit is the endpoint's own when it declares one with :func:`body_limit` (read from
``scope["endpoint"]`` on the first ``receive``, i.e. after routing), else the configured default
(``http_max_body_bytes``). The middleware sits in the normal stack and in the fast lane
(:class:`govtrust.http.app.GovtrustApp`), so no route escapes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from govtrust.config import DEFAULT_HTTP_MAX_BODY_BYTES
from govtrust.http.errors import http_error_response

_ATTRIBUTE = "govtrust_body_limit"

Endpoint = TypeVar("Endpoint")


class BodyTooLarge(StarletteHTTPException):
    """The request body is over the route's limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


def body_limit(limit: int) -> Callable[[Endpoint], Endpoint]:
    """Declare an endpoint's body limit in bytes (instead of the configured default)."""
    if limit < 0:
        raise ValueError("a body limit is a non-negative number of bytes")

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _ATTRIBUTE, limit)
        return endpoint

    return declare


def limit_for(scope: Scope, default: int) -> int:
    """The body limit of the endpoint the request was routed to (``default`` if none)."""
    limit = getattr(scope.get("endpoint"), _ATTRIBUTE, None)
    return limit if isinstance(limit, int) else default


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            text = bytes(value).decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _bodiless(scope: Scope) -> bool:
    """Whether the request has no body at all (nothing left unread if it is answered now)."""
    chunked = any(k.lower() == b"transfer-encoding" for k, _ in scope.get("headers", ()))
    return not chunked and not _declared_length(scope)


class BodyLimitMiddleware:
    """Refuse request bodies over the route's limit while they stream (see the module)."""

    def __init__(self, app: ASGIApp, default: int = DEFAULT_HTTP_MAX_BODY_BYTES) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {
            "limit": None,
            "received": 0,
            "started": False,
            "complete": _bodiless(scope),
        }

        async def limited_receive() -> Message:
            limit = state["limit"]
            if limit is None:
                limit = state["limit"] = limit_for(scope, self.default)
                declared = _declared_length(scope)
                if declared is not None and declared > limit:
                    raise BodyTooLarge(limit)
            if state["received"] > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["complete"] = not message.get("more_body", False)
                if state["received"] > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if not state["complete"]:  # answered before the body: do not drain the rest
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if state["started"]:
                raise
            await http_error_response(exc)(scope, receive, tracking_send)
