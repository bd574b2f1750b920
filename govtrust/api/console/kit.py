"""What the console's core (:mod:`.routes`) hands to the modules that add pages of their own
(:mod:`.licences`, :mod:`.certificates`): rendering, the session, CSRF-checked forms and the
mapping of domain refusals — so every page shares one login, one CSP and one error mapping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from govtrust.errors import GovtrustError

if TYPE_CHECKING:
    from govtrust.api.console.routes import User
    from govtrust.platform import Platform

T = TypeVar("T")


class Page(Protocol):
    """``page(request, template, user, *, title=..., status=..., **values)``."""

    def __call__(
        self,
        request: Request,
        template: str,
        user: User | None,
        *,
        title: str = "",
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse: ...


class Domain(Protocol):
    """``await domain(request, user, call)``: the call's result, or its refusal as a page."""

    def __call__(
        self, request: Request, user: User, call: Callable[[], T]
    ) -> Awaitable[T | Response]: ...


@dataclass(frozen=True)
class Kit:
    """The console core's helpers, bound to one platform."""

    platform: Platform
    base: str
    max_form_bytes: int
    lang: Callable[[Request], str]
    page: Page
    refused: Callable[[Request, User | None, GovtrustError], HTMLResponse]
    logged_in: Callable[[Request], Awaitable[User | Response]]
    posted: Callable[[Request], Awaitable[tuple[User, dict[str, str]] | Response]]
    domain: Domain
