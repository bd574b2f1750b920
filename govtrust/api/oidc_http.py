"""HTTP adapter of the OpenID Connect provider (FastAPI routes over :mod:`idp.oidc`).

Thin: parse the request, run the domain method in the worker pool, render a page or JSON.
Wiring: ``govtrust.server.adapters.ROUTERS["oidc"]``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.routing import Route

from govtrust.http.limits import body_limit
from govtrust.http.ratelimit import client_key
from govtrust.rpc.offload import run_sync
from govtrust.shared_limits import SharedRateLimiter
from idp.oidc.authorization import Redirect, RedirectableError, ShowInteraction
from idp.oidc.errors import AuthorizationPageError, OAuthError
from idp.oidc.factory import provider_for
from idp.oidc.i18n import TEXTS, pick_locale
from idp.oidc.interaction import LoginPageError, ShowInteractionWithCookie
from idp.oidc.logout import ConfirmLogout, LogoutNotice

if TYPE_CHECKING:
    from govtrust.platform import Platform

SESSION_COOKIE = "gt_session"
INTERACTION_COOKIE = "gt_interaction"
TEMPLATES = Path(__file__).resolve().parents[2] / "idp" / "oidc" / "templates"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_background: set[asyncio.Task[None]] = set()


def _locale(request: Request, ui_locales: str = "") -> str:
    return pick_locale(
        ui_locales, request.headers.get("accept-language", ""), request.query_params.get("lang", "")
    )


def _page(
    request: Request, name: str, *, status: int = 200, ui_locales: str = "", **values: Any
) -> HTMLResponse:
    locale = _locale(request, ui_locales)
    texts = TEXTS[locale]
    title = texts.get(f"title_{name.removesuffix('.html')}", "govtrust")
    other = texts["other_locale"]
    lang_link = (
        f"{request.url.path}?lang={other}"
        if request.method == "GET" and request.url.path.startswith("/oidc/interaction/")
        else ""
    )
    html = _env.get_template(name).render(
        t=texts, title=title, base="", lang_link=lang_link, **values
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _error_page(request: Request, message: str, status: int = 400) -> HTMLResponse:
    return _page(request, "error.html", status=status, message=message)


def _oauth_json(exc: OAuthError, *, basic_used: bool = False) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="govtrust"' if basic_used else "Bearer"
    return JSONResponse(exc.as_dict(), status_code=exc.status, headers=headers)


def _slow_down(wait: float) -> JSONResponse:
    """429 for a client over the token endpoint's shared limit (``token_rate``)."""
    seconds = max(1, math.ceil(wait))
    return JSONResponse(
        {
            "error": "temporarily_unavailable",
            "error_description": f"too many token requests from this client; retry in {seconds} s",
        },
        status_code=429,
        headers={**NO_STORE, "Retry-After": str(seconds)},
    )


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials", status=401)
    return unquote_plus(client_id), unquote_plus(secret)


TOKEN_ENDPOINT_LIMIT_SCOPE = "oidc-token"  # noqa: S105 - a rate-limit scope name, not a secret
MAX_FORM_BYTES = 256 * 1024  # the body limit of every POST route here (govtrust.http.limits)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded (or multipart) body as a dict; the first value of a repeated field wins.

    urlencoded bodies are parsed directly (the token endpoint's hot path). Every route that
    reads a form declares ``@body_limit(MAX_FORM_BYTES)``: a bigger body, urlencoded or
    multipart, is refused with 413 while it streams, never buffered.
    """
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type:
        body = await request.body()
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "the body is not UTF-8") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            form.setdefault(key, value)
        return form
    if "multipart/form-data" in content_type:
        multipart = await request.form()
        return {k: v for k, v in multipart.items() if isinstance(v, str)}
    return {}


async def _page_form(request: Request) -> dict[str, str]:
    """:func:`_form` for browser pages: a malformed body is an empty form (CSRF then fails)."""
    try:
        return await _form(request)
    except OAuthError:
        return {}


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _redirect(url: str, *, status: int = 303) -> RedirectResponse:
    return RedirectResponse(url, status_code=status, headers={"Cache-Control": "no-store"})


def router(platform: Platform) -> APIRouter:
    """The OIDC routes for one platform."""
    api = APIRouter()
    provider = provider_for(platform)
    provider.ensure_keys()  # at start-up, not on a request's event loop
    secure = provider.config.secure_cookies
    settings = platform.settings
    token_limiter = (
        SharedRateLimiter(
            platform.db, TOKEN_ENDPOINT_LIMIT_SCOPE, settings.token_rate, settings.token_burst
        )
        if settings.token_rate > 0
        else None
    )

    def set_session(response: Response, cookie: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
            max_age=provider.config.session_ttl,
        )

    def outcome_response(outcome: Redirect | ShowInteraction) -> Response:
        if isinstance(outcome, Redirect):
            response: Response = _redirect(outcome.url)
            if outcome.session_cookie:
                set_session(response, outcome.session_cookie)
            response.delete_cookie(INTERACTION_COOKIE, path="/oidc")
            return response
        response = _redirect(f"/oidc/interaction/{outcome.interaction_id}")
        response.set_cookie(
            INTERACTION_COOKIE,
            outcome.interaction_id,
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/oidc",
            max_age=provider.config.interaction_ttl,
        )
        if isinstance(outcome, ShowInteractionWithCookie) and outcome.session_cookie:
            set_session(response, outcome.session_cookie)
        return response

    # --- discovery and keys --------------------------------------------------------------------

    @api.get("/.well-known/openid-configuration")
    async def discovery() -> JSONResponse:
        return JSONResponse(provider.discovery())

    @api.get("/oidc/jwks")
    async def jwks() -> JSONResponse:
        document = await run_sync(provider.keys.jwks)
        if not document["keys"]:
            await run_sync(provider.keys.ensure)
            document = await run_sync(provider.keys.jwks)
        return JSONResponse(
            document,
            media_type="application/jwk-set+json",
            headers={"Cache-Control": "public, max-age=60"},
        )

    # --- authorization -------------------------------------------------------------------------

    async def authorize(request: Request, params: Mapping[str, str]) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        try:
            outcome = await run_sync(provider.authorize, dict(params), cookie)
        except AuthorizationPageError as exc:
            return _error_page(request, str(exc))
        except RedirectableError as exc:
            return _redirect(exc.url(provider.config.issuer))
        return outcome_response(outcome)

    @api.get("/oidc/authorize")
    async def authorize_get(request: Request) -> Response:
        return await authorize(request, dict(request.query_params))

    @api.post("/oidc/authorize")
    @body_limit(MAX_FORM_BYTES)
    async def authorize_post(request: Request) -> Response:
        return await authorize(request, await _page_form(request))

    def _bound(request: Request, iid: str) -> bool:
        return request.cookies.get(INTERACTION_COOKIE) == iid

    async def show(request: Request, iid: str, error: str = "", status: int = 200) -> Response:
        view = await run_sync(provider.interaction_view, iid)
        locale = _locale(request, view.ui_locales)
        message = TEXTS[locale].get(error, "") if error else ""
        name = {"login": "login.html", "consent": "consent.html", "acting": "acting.html"}
        return _page(
            request,
            name[view.stage],
            status=status,
            ui_locales=view.ui_locales,
            view=view,
            error=message,
        )

    @api.get("/oidc/interaction/{iid}")
    async def interaction(request: Request, iid: str) -> Response:
        if not _bound(request, iid):
            return _error_page(request, "this login page belongs to another browser")
        try:
            return await show(request, iid)
        except AuthorizationPageError as exc:
            return _error_page(request, str(exc))

    async def step(request: Request, iid: str, action: str) -> Response:
        if not _bound(request, iid):
            return _error_page(request, "this login page belongs to another browser", 403)
        form = await _page_form(request)
        csrf = form.get("csrf", "")
        try:
            if action == "password":
                outcome: Any = await run_sync(
                    provider.password_login,
                    iid,
                    csrf,
                    form.get("login_name", ""),
                    form.get("password", ""),
                    source=_source(request),
                )
            elif action == "certificate":
                outcome = await run_sync(
                    provider.certificate_login,
                    iid,
                    csrf,
                    form.get("certificate", ""),
                    form.get("signature", ""),
                )
            elif action == "acting":
                outcome = await run_sync(
                    provider.choose_acting_person, iid, csrf, form.get("person_id", "")
                )
            else:
                outcome = await run_sync(
                    provider.consent,
                    iid,
                    csrf,
                    form.get("decision") == "allow",
                    request.cookies.get(SESSION_COOKIE),
                )
        except LoginPageError as exc:
            return await show(request, iid, exc.code, status=400)
        except AuthorizationPageError as exc:
            return _error_page(request, str(exc), 403)
        return outcome_response(outcome)

    @api.post("/oidc/interaction/{iid}/password")
    @body_limit(MAX_FORM_BYTES)
    async def password_step(request: Request, iid: str) -> Response:
        return await step(request, iid, "password")

    @api.post("/oidc/interaction/{iid}/certificate")
    @body_limit(MAX_FORM_BYTES)
    async def certificate_step(request: Request, iid: str) -> Response:
        return await step(request, iid, "certificate")

    @api.post("/oidc/interaction/{iid}/acting")
    @body_limit(MAX_FORM_BYTES)
    async def acting_step(request: Request, iid: str) -> Response:
        return await step(request, iid, "acting")

    @api.post("/oidc/interaction/{iid}/consent")
    @body_limit(MAX_FORM_BYTES)
    async def consent_step(request: Request, iid: str) -> Response:
        return await step(request, iid, "consent")

    # --- token, userinfo, introspection, revocation --------------------------------------------

    @body_limit(MAX_FORM_BYTES)
    async def token(request: Request) -> Response:
        basic_used = False
        try:
            basic = _basic(request)
            basic_used = basic is not None
            form = await _form(request)
            if token_limiter is not None:
                client_id = basic[0] if basic is not None else form.get("client_id", "")
                key = f"{client_id}@{client_key(request)}"
                wait = await run_sync(token_limiter.take, key)
                if wait > 0:
                    return _slow_down(wait)
            body = await provider.token_endpoint(form, basic, run_sync)
        except OAuthError as exc:
            return _oauth_json(exc, basic_used=basic_used)
        return JSONResponse(body, headers=NO_STORE)

    async def userinfo(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if not token and request.method == "POST":
            token = (await _page_form(request)).get("access_token", "")
        if not token:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "no access token"},
                status_code=401,
                headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="govtrust"'},
            )
        try:
            claims = await run_sync(provider.userinfo, token)
        except OAuthError as exc:
            return JSONResponse(
                exc.as_dict(),
                status_code=exc.status,
                headers={**NO_STORE, "WWW-Authenticate": f'Bearer error="{exc.error}"'},
            )
        return JSONResponse(claims, headers=NO_STORE)

    @api.get("/oidc/userinfo")
    async def userinfo_get(request: Request) -> Response:
        return await userinfo(request)

    @api.post("/oidc/userinfo")
    @body_limit(MAX_FORM_BYTES)
    async def userinfo_post(request: Request) -> Response:
        return await userinfo(request)

    async def client_call(request: Request, method: str) -> Response:
        """Introspection and revocation: authenticate the client and act, in one thread hop."""
        basic_used = False
        try:
            basic = _basic(request)
            basic_used = basic is not None
            form = await _form(request)
            body = await provider.client_endpoint(method, form, basic, run_sync)
        except OAuthError as exc:
            return _oauth_json(exc, basic_used=basic_used)
        if body is None:
            return Response(status_code=200, headers=NO_STORE)
        return JSONResponse(body, headers=NO_STORE)

    @body_limit(MAX_FORM_BYTES)
    async def introspect(request: Request) -> Response:
        return await client_call(request, "introspect")

    @body_limit(MAX_FORM_BYTES)
    async def revoke(request: Request) -> Response:
        return await client_call(request, "revoke")

    # --- logout --------------------------------------------------------------------------------

    async def notify(notices: tuple[LogoutNotice, ...]) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            for notice in notices:
                try:
                    await http.post(notice.uri, data={"logout_token": notice.logout_token})
                except httpx.HTTPError:
                    continue

    async def end_session(request: Request, params: dict[str, str], confirmed: bool) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if confirmed:
            expected = provider.csrf_for_session(cookie or "")
            if not cookie or params.get("csrf") != expected:
                return _error_page(request, "the logout form has expired", 403)
        try:
            outcome = await run_sync(provider.end_session, params, cookie, confirmed=confirmed)
        except AuthorizationPageError as exc:
            return _error_page(request, str(exc))
        except ConfirmLogout as exc:
            carry = [
                (k, v)
                for k, v in params.items()
                if k
                in {"post_logout_redirect_uri", "state", "client_id", "id_token_hint", "ui_locales"}
            ]
            return _page(
                request,
                "logout.html",
                ui_locales=params.get("ui_locales", ""),
                csrf=exc.csrf,
                carry=carry,
            )
        if outcome.notices:
            task = asyncio.create_task(notify(outcome.notices))
            _background.add(task)
            task.add_done_callback(_background.discard)
        response: Response
        if outcome.redirect_url:
            response = _redirect(outcome.redirect_url)
        else:
            response = _page(request, "logged_out.html", ui_locales=params.get("ui_locales", ""))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @api.get("/oidc/end_session")
    async def end_session_get(request: Request) -> Response:
        return await end_session(request, dict(request.query_params), False)

    @api.post("/oidc/end_session")
    @body_limit(MAX_FORM_BYTES)
    async def end_session_post(request: Request) -> Response:
        form = await _page_form(request)
        return await end_session(request, form, form.get("logout") == "yes")

    # The machine-to-machine endpoints are plain Starlette routes: no dependency solving or
    # OpenAPI machinery on the token endpoint's hot path.
    api.routes.append(Route("/oidc/token", token, methods=["POST"]))
    api.routes.append(Route("/oidc/introspect", introspect, methods=["POST"]))
    api.routes.append(Route("/oidc/revoke", revoke, methods=["POST"]))
    return api


def query_string(params: Mapping[str, str]) -> str:
    """URL-encode ``params`` (helper for tests and clients)."""
    return urlencode(params)
