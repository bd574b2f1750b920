"""Per-call context shared by the gRPC interceptor, the HTTP middleware and servicers.

The interceptor binds the authenticated :class:`~govtrust.principal.Principal` and the request id
in context variables for the duration of one call; servicers read them with
:func:`current_principal` and :func:`current_request_id`. ``run_sync`` copies the context into
its worker thread, so domain code called from a servicer sees the same values.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar

from govtrust.errors import Unauthenticated
from govtrust.principal import Principal

_principal: ContextVar[Principal | None] = ContextVar("govtrust_principal", default=None)
_request_id: ContextVar[str | None] = ContextVar("govtrust_request_id", default=None)

# A caller-supplied request id is accepted only when short and free of anything that could
# forge a log line or a header; otherwise we mint our own.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


_safe_request_id = _SAFE_REQUEST_ID.match


def new_request_id() -> str:
    """A fresh, random request id (32 hex digits, 128 random bits).

    ``os.urandom(16).hex()`` rather than ``uuid.uuid4().hex``: the same format and entropy
    (uuid4 also reads ``os.urandom(16)``), without building a ``UUID`` object on every call.
    """
    return os.urandom(16).hex()


def accept_request_id(candidate: str | None) -> str:
    """The caller's ``x-request-id`` when it is safe to echo and log, else a new one."""
    if candidate and _safe_request_id(candidate):
        return candidate
    return os.urandom(16).hex()


def current_principal() -> Principal:
    """The authenticated caller of the current call; raises ``Unauthenticated`` outside one."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call carries no authenticated principal")
    return principal


def current_principal_or_none() -> Principal | None:
    """The authenticated caller, or None (health checks, reflection, public HTTP routes)."""
    return _principal.get()


def current_request_id() -> str | None:
    """The request id of the current call (gRPC or HTTP), if any."""
    return _request_id.get()


def bind_request_id(request_id: str) -> None:
    """Set the request id for the rest of the current task (called by the adapters)."""
    _request_id.set(request_id)


def bind_principal(principal: Principal | None) -> None:
    """Set the principal for the rest of the current task (called by the adapters)."""
    _principal.set(principal)


@contextlib.contextmanager
def acting_as(principal: Principal, request_id: str | None = None) -> Iterator[Principal]:
    """Run a block as ``principal`` (tests, internal jobs); restores the previous values."""
    principal_token = _principal.set(principal)
    request_token = _request_id.set(request_id or new_request_id())
    try:
        yield principal
    finally:
        _request_id.reset(request_token)
        _principal.reset(principal_token)
