"""HTTP adapter of the web console (``/console``): server-rendered pages over the seal domain.

Thin: each route parses the form, resolves the caller (the console session's OIDC grant →
:class:`govtrust.principal.Principal`, exactly what a bearer token gives gRPC), calls the same
:class:`seal.lifecycle.SealService` methods the gRPC servicer calls (in the worker pool), and
renders a page. Every action is re-checked by the domain (role, state, separation of duties):
a forged POST answers 403 and changes nothing. Sessions, login secrets and the client's
registration are :mod:`idp.oidc.rp_sessions`; what to offer is
:func:`seal.transitions.offered`.

Security: a session cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` over HTTPS, path
``/console``), a synchroniser CSRF token in every form, the public page's strict CSP (no
script at all; the one stylesheet by hash; images only from ``self`` and ``data:``), idle and
absolute timeouts (``console_idle_seconds`` / ``console_absolute_seconds``), log-out ending the
SSO session at the provider (RP-initiated logout with the ID token as hint).
Wiring: ``govtrust.server.adapters.ROUTERS["console"]``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from govtrust.api.console import operator
from govtrust.api.console.texts import TEXTS
from govtrust.errors import (
    GovtrustError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from govtrust.http.limits import body_limit
from govtrust.http.pages import strict_page_headers
from govtrust.principal import Principal
from govtrust.rpc.offload import run_sync
from govtrust.rpc.status import classify
from idp.oidc.errors import OAuthError
from idp.oidc.factory import provider_for
from idp.oidc.rp_sessions import (
    FIRST_PARTY_PURPOSE,
    RpSession,
    RpSessions,
    SessionExpired,
    check_csrf,
    ensure_first_party_client,
    login_secrets,
)
from idp.oidc.sessions import live_logins
from idp.types import IdentityRef
from seal import images, transitions
from seal.lifecycle import Application, Making, SealService
from seal.pdf import design_of
from seal.runtime import runtime_for
from seal.types import USE_ACTIONS, EventView, SealKind, SealStatus, SealView

if TYPE_CHECKING:
    from govtrust.platform import Platform

BASE = "/console"
CLIENT_ID = "govtrust-console"
COOKIE = "gt_console"
LOGIN_COOKIE = "gt_console_login"
LANG_COOKIE = "gt_console_lang"
MAX_FORM_BYTES = 64 * 1024
PAGE_SIZE = 25
TEMPLATES = Path(__file__).resolve().parent / "templates"
QUEUES: Mapping[str, SealStatus] = {
    "review": SealStatus.APPLIED,
    "make": SealStatus.APPROVED,
    "file": SealStatus.MADE,
    "issue": SealStatus.FILED,
}
# who works each queue: the role of the queue's transition
QUEUE_OPERATION = {"review": "approve", "make": "make", "file": "file", "issue": "issue"}
DESTRUCTIVE = frozenset({"revoke", "destroy", "remake"})
SUSPEND_CAUSES = ("loss", "owner_request", "suspected_compromise", "administrative")
REMAKE_CAUSES = ("loss", "key_compromise", "information_change")
ALGORITHMS = ("sm2", "ec-p256", "ec-p384")

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_CSS = (TEMPLATES / "console.css").read_text(encoding="utf-8")
PAGE_HEADERS = strict_page_headers(_CSS)
T = TypeVar("T")


@dataclass(frozen=True)
class User:
    """The logged-in caller as the pages show it."""

    principal: Principal
    session: RpSession
    name: str
    roles: tuple[str, ...]
    # the legal persons the caller acts for (the one it logged in as, or those a citizen
    # represents or is an agent of), then the citizen itself (personal seals)
    owner_ids: tuple[str, ...] = ()

    @property
    def staff(self) -> bool:
        return bool(self.roles)

    @property
    def owner(self) -> bool:
        return bool(self.owner_ids)

    @property
    def organisation(self) -> str | None:
        """The legal person the owner pages are about (the first the caller acts for)."""
        return self.owner_ids[0] if self.owner_ids else None

    def owns(self, seal: SealView) -> bool:
        """Whether the caller acts for the seal's owner (the domain decides what it may do)."""
        return seal.owner_id in self.owner_ids


def _lang(request: Request) -> str:
    for candidate in (request.query_params.get("lang", ""), request.cookies.get(LANG_COOKIE, "")):
        if candidate.lower().startswith("en"):
            return "en"
        if candidate.lower().startswith("zh"):
            return "zh-CN"
    return "zh-CN"


def _svg_data(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


async def appearance(seal: SealView) -> str:
    """The seal's picture as a data: URL (the made seal's design, or the application's): drawn
    once per design, in the worker pool (the seal page is read far more than made; a design
    drawn before is a dictionary look-up, cheaper than the hand-off)."""
    design = design_of(seal)
    picture = _pictures.get(design)
    if picture is None:
        picture = await run_sync(lambda: _svg_data(images.render_svg(design)))
        if len(_pictures) >= PICTURES:
            _pictures.clear()
        _pictures[design] = picture
    return picture


PICTURES = 2048  # designs whose picture is kept
_pictures: dict[images.SealDesign, str] = {}


def router(platform: Platform) -> APIRouter:
    """The console's routes for a platform (registers the console's OIDC client)."""
    settings = platform.settings
    base_url = settings.effective_public_base_url
    provider = provider_for(platform)
    key = platform.master_key.derive_key(FIRST_PARTY_PURPOSE)
    redirect_uri = f"{base_url}{BASE}/callback"
    after_logout = f"{base_url}{BASE}/"
    secret = ensure_first_party_client(
        provider.clients,
        key,
        client_id=CLIENT_ID,
        client_name="govtrust 控制台 console",
        redirect_uri=redirect_uri,
        post_logout_redirect_uri=after_logout,
    )
    sessions = RpSessions(
        platform.db,
        CLIENT_ID,
        lambda: provider.now(),  # the provider's clock, read at each call (tests move it)
        idle_seconds=settings.console_idle_seconds,
        absolute_seconds=settings.console_absolute_seconds,
    )
    platform.on_close(sessions.close)
    secure = base_url.startswith("https://") or settings.tls_enabled

    def seals() -> SealService:
        return runtime_for(platform).service

    api = APIRouter()

    # --- rendering ----------------------------------------------------------------------------

    def page(
        request: Request,
        template: str,
        user: User | None,
        *,
        title: str = "",
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        lang = _lang(request)
        t = TEXTS[lang]
        queues = [
            q
            for q, op in QUEUE_OPERATION.items()
            if user is not None and transitions.staff_role(op, user.principal.has_role)
        ]
        html = _env.get_template(template).render(
            t=t,
            lang=lang,
            css=_CSS,
            base=BASE,
            user=user,
            csrf=user.session.csrf if user else "",
            queues=[*queues, "all"] if queues else [],
            title=title or t["title"],
            **values,
        )
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if "lang" in request.query_params:
            response.set_cookie(
                LANG_COOKIE, lang, path=BASE, httponly=True, samesite="lax", secure=secure
            )
        return response

    def message(
        request: Request,
        user: User | None,
        heading: str,
        detail: str = "",
        status: int = 200,
        *,
        login_again: bool = False,
    ) -> HTMLResponse:
        return page(
            request,
            "message.html",
            user,
            title=heading,
            heading=heading,
            detail=detail,
            status=status,
            login_again=login_again,
        )

    def refused(request: Request, user: User | None, exc: GovtrustError) -> HTMLResponse:
        """A domain refusal as a page with the status the one error mapping gives it."""
        t = TEXTS[_lang(request)]
        mapped = classify(exc)
        heading = t["forbidden"] if mapped.http_status == 403 else t["error"]
        detail = mapped.message
        if isinstance(exc, InvalidArgument) and exc.violations:
            detail += ": " + "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
        return message(request, user, heading, detail, mapped.http_status)

    # --- the session ----------------------------------------------------------------------------

    async def current(request: Request) -> User | Response | None:
        """The logged-in user; ``None`` without a session; a redirect to log in again past a
        timeout or a revoked grant. The session, its grant, the identity's status, name and
        roles are one fresh point read (:meth:`RpSessions.resume`) on every request."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            if sessions.reader.is_local:  # SQLite: the read is cheaper than the hand-off
                lookup = sessions.look_up(cookie)
                if lookup.writes:
                    resumed = await run_sync(sessions.settle, lookup)
                else:
                    resumed = sessions.settle(lookup)
            else:
                resumed = await run_sync(sessions.resume, cookie)
        except SessionExpired:
            return _again(request)
        if resumed is None:
            return None
        principal = resumed.principal
        name = resumed.name
        if principal.citizen_id and principal.legal_person_id:
            name = f"{name}（{resumed.acting_name or principal.citizen_id}）"
        owners: list[str] = []
        if principal.legal_person_id:
            owners.append(principal.legal_person_id)
        elif principal.citizen_id:
            owners += await run_sync(provider.directory.represented_by, principal.citizen_id)
        return User(principal, resumed.session, name, tuple(sorted(principal.roles)), tuple(owners))

    def _again(request: Request) -> Response:
        heading = TEXTS[_lang(request)]["expired"]
        response = message(request, None, heading, status=401, login_again=True)
        response.delete_cookie(COOKIE, path=BASE)
        return response

    async def logged_in(request: Request) -> User | Response:
        user = await current(request)
        if user is None:
            return RedirectResponse(f"{BASE}/login", status_code=303)
        return user

    async def posted(request: Request) -> tuple[User, dict[str, str]] | Response:
        """The user and the form of a POST whose CSRF token is the session's; 403 if not."""
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        form = await request.form()
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        if not check_csrf(user.session, fields.get("csrf", "")):
            return message(request, user, TEXTS[_lang(request)]["csrf_failed"], status=403)
        fields["_all_seal_ids"] = "\n".join(
            v for k, v in form.multi_items() if k == "seal_id" and isinstance(v, str)
        )
        return user, fields

    async def domain(request: Request, user: User, call: Callable[[], T]) -> T | Response:
        try:
            return await run_sync(call)
        except GovtrustError as exc:
            return refused(request, user, exc)

    # --- log in and out -------------------------------------------------------------------------

    @api.get(BASE)
    @api.get(BASE + "/")
    async def home(request: Request) -> Response:
        user = await current(request)
        if isinstance(user, Response):
            return user
        if user is None:
            return page(request, "landing.html", None)
        if user.staff:
            first = next(
                (
                    q
                    for q, op in QUEUE_OPERATION.items()
                    if transitions.staff_role(op, user.principal.has_role)
                ),
                None,
            )
            if first is None and user.principal.has_role(operator.OPERATOR_ROLE):
                return RedirectResponse(f"{BASE}/operator", status_code=303)
            return RedirectResponse(f"{BASE}/queue/{first or 'all'}", status_code=303)
        if user.owner:
            return RedirectResponse(f"{BASE}/seals", status_code=303)
        # a citizen acting for no legal person: their own licences (self-service)
        return RedirectResponse(f"{BASE}/licences", status_code=303)

    @api.get(BASE + "/login")
    async def login(request: Request) -> Response:
        state = secrets.token_urlsafe(24)
        _verifier, challenge, nonce = login_secrets(key, state)
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "ui_locales": _lang(request),
        }
        response = RedirectResponse(f"/oidc/authorize?{urlencode(params)}", status_code=303)
        response.set_cookie(
            LOGIN_COOKIE,
            state,
            max_age=1800,
            path=BASE,
            httponly=True,
            samesite="lax",
            secure=secure,
        )
        return response

    @api.get(BASE + "/callback")
    async def callback(request: Request) -> Response:
        t = TEXTS[_lang(request)]
        state = request.query_params.get("state", "")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        code = request.query_params.get("code", "")
        if not state or not secrets.compare_digest(state, expected) or not code:
            detail = request.query_params.get("error_description", "the login did not complete")
            return message(request, None, t["error"], detail, 400)
        verifier, _challenge, nonce = login_secrets(key, state)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        try:
            tokens = await run_sync(provider.token, form, (CLIENT_ID, secret))
            claims = await run_sync(provider.verify_id_token_hint, tokens["id_token"])
            info = await run_sync(provider.validate_access_token, tokens["access_token"])
        except (OAuthError, GovtrustError) as exc:
            return message(request, None, t["error"], str(exc), 400)
        if claims.get("nonce") != nonce or info.grant_id is None:
            return message(request, None, t["error"], "the ID token does not match the login", 400)
        grant_id = info.grant_id
        identity = await run_sync(provider.principal_for_grant, grant_id)
        cookie = await run_sync(
            lambda: sessions.open(
                grant_id=grant_id,
                identity_id=identity.subject,
                sid=str(claims.get("sid", "")),
                id_token=tokens["id_token"],
            )
        )
        response = RedirectResponse(f"{BASE}/", status_code=303)
        response.set_cookie(COOKIE, cookie, path=BASE, httponly=True, samesite="lax", secure=secure)
        response.delete_cookie(LOGIN_COOKIE, path=BASE)
        return response

    @api.post(BASE + "/logout")
    @body_limit(MAX_FORM_BYTES)
    async def logout(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        ended = await run_sync(sessions.end, request.cookies.get(COOKIE))
        params = {"post_logout_redirect_uri": after_logout, "client_id": CLIENT_ID}
        if ended is not None:
            params["id_token_hint"] = ended.id_token
        response = RedirectResponse(f"/oidc/end_session?{urlencode(params)}", status_code=303)
        response.delete_cookie(COOKIE, path=BASE)
        return response

    # --- everyone: my logins ---------------------------------------------------------------

    @api.get(BASE + "/sessions")
    async def my_logins(request: Request) -> Response:
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        logins = await run_sync(live_logins, platform.db, user.session.identity_id, provider.now())
        return page(
            request,
            "sessions.html",
            user,
            title=TEXTS[_lang(request)]["my_sessions"],
            logins=logins,
            current=user.session.sid[:8],
        )

    @api.post(BASE + "/sessions/logout-everywhere")
    @body_limit(MAX_FORM_BYTES)
    async def logout_everywhere(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        user, _form = got
        await run_sync(sessions.end_everywhere, user.session.identity_id)
        t = TEXTS[_lang(request)]
        response = message(request, None, t["logged_out"], login_again=True)
        response.delete_cookie(COOKIE, path=BASE)
        return response

    # --- staff: queues --------------------------------------------------------------------------

    async def listing(request: Request, path: str, heading: str, **filters: Any) -> Response:
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        queue = filters.pop("queue", None)
        if queue is not None and not transitions.staff_role(
            QUEUE_OPERATION[queue], user.principal.has_role
        ):
            return refused(
                request, user, PermissionDenied(f"{user.principal.actor} does not work this queue")
            )
        q = request.query_params.get("q", "")[:100]
        kind_value = request.query_params.get("kind", "")
        kind = SealKind(kind_value) if kind_value in {k.value for k in SealKind} else None
        token = request.query_params.get("page", "")
        found = await domain(
            request,
            user,
            lambda: seals().list_seals(
                kind=kind, page_size=PAGE_SIZE, page_token=token, search=q, **filters
            ),
        )
        if isinstance(found, Response):
            return found
        items, next_token = found
        next_href = f"{BASE}/{path}?" + urlencode(
            {"q": q, "kind": kind_value, "page": next_token, "lang": _lang(request)}
        )
        return page(
            request,
            "queue.html",
            user,
            title=heading,
            heading=heading,
            path=path,
            seals=items,
            q=q,
            kind=kind_value,
            kinds=[k.value for k in SealKind],
            page_token=token,
            next_token=next_token,
            next_href=next_href,
            bulk=queue == "review",
        )

    @api.get(BASE + "/queue/{queue}")
    async def queue_page(request: Request, queue: str) -> Response:
        t = TEXTS[_lang(request)]
        if queue == "all":
            user = await logged_in(request)
            if isinstance(user, Response):
                return user
            if not user.staff:
                return refused(request, user, PermissionDenied("staff only"))
            return await listing(request, "queue/all", t["queue_all"])
        if queue not in QUEUES:
            return message(request, None, t["not_found"], status=404)
        return await listing(
            request, f"queue/{queue}", t[f"queue_{queue}"], queue=queue, statuses=[QUEUES[queue]]
        )

    @dataclass(frozen=True)
    class BulkResult:
        seal_id: str
        ok: bool
        detail: str

    @api.post(BASE + "/queue/review/bulk")
    @body_limit(MAX_FORM_BYTES)
    async def bulk_review(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        user, form = got
        approve = form.get("decision") == "approve"
        reason = form.get("reason", "")
        results: list[BulkResult] = []
        for seal_id in [s for s in form["_all_seal_ids"].split("\n") if s][: PAGE_SIZE * 4]:
            try:
                done = await run_sync(seals().review, user.principal, seal_id, approve, reason)
                results.append(BulkResult(seal_id, True, done.status.value))
            except GovtrustError as exc:
                results.append(BulkResult(seal_id, False, classify(exc).message))
        return page(request, "bulk.html", user, results=results)

    # --- a seal ---------------------------------------------------------------------------------

    async def seal_page(request: Request, user: User, seal_id: str, notice: str = "") -> Response:
        def load() -> tuple[SealView, list[EventView], list[EventView], list[Any]]:
            service = seals()
            # the seal and its history in one read when the whole history fits a page of 400
            # (most seals), else a second read of the history without the uses
            seal, every, more = service.with_history(seal_id, page_size=400)
            uses: list[EventView] = []
            grants: list[Any] = []
            if user.owns(seal) or user.staff:
                uses = [e for e in every if e.action in USE_ACTIONS][:200]
            if more:
                history, _ = service.history(seal_id, page_size=200)
            else:
                history = [e for e in every if e.action not in USE_ACTIONS][:200]
            if user.owns(seal):
                grants, _ = service.list_grants(
                    user.principal, seal_id=seal_id, include_inactive=True, page_size=100
                )
            return seal, history, uses, grants

        found = await domain(request, user, load)
        if isinstance(found, Response):
            return found
        seal, history, uses, grants = found
        owner = user.owns(seal)
        actions = transitions.offered(seal.status, user.principal.has_role, is_owner=owner)
        return page(
            request,
            "seal.html",
            user,
            title=seal.name,
            s=seal,
            image=await appearance(seal),
            made=seal.certificate_der is not None,
            certificates=_certificates(seal, TEXTS[_lang(request)]),
            actions=actions,
            destructive=DESTRUCTIVE,
            suspend_causes=SUSPEND_CAUSES if not owner or user.staff else ("loss", "owner_request"),
            remake_causes=REMAKE_CAUSES,
            owner_view=owner,
            may_grant=owner and transitions.accepts_grants(seal.status),
            grants=grants,
            uses=uses,
            history=history,
            notice=notice,
            notice_class="ok",
        )

    @api.get(BASE + "/seals")
    async def my_seals(request: Request) -> Response:
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        owner_id = user.organisation
        if owner_id is None:
            return refused(request, user, PermissionDenied("only an owner has seals"))
        return await listing(
            request, "seals", TEXTS[_lang(request)]["my_seals"], owner=IdentityRef(id=owner_id)
        )

    @api.get(BASE + "/seals/{seal_id}")
    async def seal_get(request: Request, seal_id: str) -> Response:
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        done = request.query_params.get("done", "")
        t = TEXTS[_lang(request)]
        notice = t["done"] + t[f"op_{done}"] if f"op_{done}" in t else ""
        return await seal_page(request, user, seal_id, notice)

    @api.get(BASE + "/seals/{seal_id}/make")
    async def make_preview(request: Request, seal_id: str) -> Response:
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        seal = await domain(request, user, lambda: seals().get(seal_id))
        if isinstance(seal, Response):
            return seal
        if "make" not in transitions.offered(seal.status, user.principal.has_role, is_owner=False):
            return refused(
                request, user, PermissionDenied(f"{user.principal.actor} may not make this seal")
            )
        return page(
            request,
            "make.html",
            user,
            title=seal.name,
            s=seal,
            image=await appearance(seal),
        )

    def action(principal: Principal, seal_id: str, op: str, form: Mapping[str, str]) -> SealView:
        """Take ``op`` through the same SealService method the gRPC servicer calls."""
        service = seals()
        reason = form.get("reason", "")
        if op in DESTRUCTIVE and form.get("confirm", "").strip() != seal_id:
            raise InvalidArgument.field("confirm", "type the seal code to confirm")
        if op in ("approve", "reject"):
            return service.review(principal, seal_id, op == "approve", reason)
        if op == "make":
            return service.make(principal, seal_id, Making(reason=reason))
        if op == "file":
            return service.file(principal, seal_id, form.get("filing_number", ""), reason)
        if op == "issue":
            return service.issue(principal, seal_id, reason)
        if op == "suspend":
            return service.suspend(principal, seal_id, form.get("cause", "owner_request"), reason)
        if op == "resume":
            return service.resume(principal, seal_id, reason)
        if op == "revoke":
            return service.revoke(principal, seal_id, reason, 5)
        if op == "destroy":
            return service.destroy(principal, seal_id, reason)
        if op == "remake":
            _old, new = service.remake(principal, seal_id, form.get("cause", "loss"), reason)
            return new
        raise NotFound(f"no action {op!r}")

    @api.post(BASE + "/seals/{seal_id}/act/{op}")
    @body_limit(MAX_FORM_BYTES)
    async def act(request: Request, seal_id: str, op: str) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        user, form = got
        result = await domain(request, user, lambda: action(user.principal, seal_id, op, form))
        if isinstance(result, Response):
            return result
        lang = _lang(request)
        return RedirectResponse(f"{BASE}/seals/{result.id}?done={op}&lang={lang}", status_code=303)

    # --- owners: apply, grants -----------------------------------------------------------------

    def apply_form(values: Mapping[str, str]) -> dict[str, str]:
        return {
            "kind": values.get("kind", SealKind.CONTRACT.value),
            "name": values.get("name", ""),
            "business_number": values.get("business_number", ""),
            "key_algorithm": values.get("key_algorithm", settings.effective_seal_key_algorithm),
            "reason": values.get("reason", ""),
        }

    def apply_page(
        request: Request, user: User, form: dict[str, str], image: str = "", status: int = 200
    ) -> Response:
        return page(
            request,
            "apply.html",
            user,
            title=TEXTS[_lang(request)]["apply_title"],
            form=form,
            image=image,
            kinds=[k.value for k in SealKind if k is not SealKind.PERSONAL_NAME],
            algorithms=ALGORITHMS,
            status=status,
        )

    @api.get(BASE + "/apply")
    async def apply_get(request: Request) -> Response:
        user = await logged_in(request)
        if isinstance(user, Response):
            return user
        return apply_page(request, user, apply_form({}))

    @api.post(BASE + "/apply")
    @body_limit(MAX_FORM_BYTES)
    async def apply_post(request: Request) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        user, raw = got
        form = apply_form(raw)
        if form["kind"] not in {k.value for k in SealKind}:
            return refused(request, user, InvalidArgument.field("kind", "unknown seal kind"))
        owner_id = user.organisation
        if owner_id is None:
            return refused(
                request,
                user,
                PermissionDenied("only a legal person's representative or agent applies here"),
            )
        kind = SealKind(form["kind"])
        if raw.get("step") == "preview":

            def preview() -> str:
                name = form["name"].strip() or (
                    provider.directory.identity(owner_id).name  # type: ignore[union-attr]
                )
                design = images.SealDesign(kind, name, form["business_number"].strip())
                return _svg_data(images.render_svg(design))

            image = await domain(request, user, preview)
            if isinstance(image, Response):
                return image
            return apply_page(request, user, form, image)
        application = Application(
            owner=IdentityRef(id=owner_id),
            kind=kind,
            name=form["name"],
            business_number=form["business_number"],
            reason=form["reason"],
            key_algorithm=form["key_algorithm"],
        )
        seal = await domain(request, user, lambda: seals().apply(user.principal, application))
        if isinstance(seal, Response):
            return seal
        return RedirectResponse(f"{BASE}/seals/{seal.id}?done=apply", status_code=303)

    @api.post(BASE + "/seals/{seal_id}/grants")
    @body_limit(MAX_FORM_BYTES)
    async def grant(request: Request, seal_id: str) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        user, form = got
        kinds = [k.strip() for k in form.get("document_kinds", "").split(",") if k.strip()]

        def call() -> Any:
            until = _date(form.get("valid_until", ""), "valid_until")
            grantee = form.get("grantee", "").strip()
            ref = (
                IdentityRef(resident_id_number=grantee)
                if len(grantee) == 18
                else IdentityRef(id=grantee)
            )
            return seals().grant_use(user.principal, seal_id, ref, kinds, None, until)

        result = await domain(request, user, call)
        if isinstance(result, Response):
            return result
        return RedirectResponse(f"{BASE}/seals/{seal_id}?done=grant_use", status_code=303)

    @api.post(BASE + "/seals/{seal_id}/grants/{grant_id}/revoke")
    @body_limit(MAX_FORM_BYTES)
    async def revoke_grant(request: Request, seal_id: str, grant_id: str) -> Response:
        got = await posted(request)
        if isinstance(got, Response):
            return got
        user, form = got
        result = await domain(
            request,
            user,
            lambda: seals().revoke_use(user.principal, grant_id, form.get("reason", "")),
        )
        if isinstance(result, Response):
            return result
        return RedirectResponse(f"{BASE}/seals/{seal_id}?done=revoke_use", status_code=303)

    # --- pages of their own modules (licences, certificates, operators) ---------------------
    from govtrust.api.console import certificates, licences
    from govtrust.api.console.kit import Kit

    kit = Kit(platform, BASE, MAX_FORM_BYTES, _lang, page, refused, logged_in, posted, domain)
    licences.install(api, kit)
    certificates.install(api, kit)
    operator.install(api, kit)
    return api


def _date(value: str, field: str) -> datetime | None:
    """A ``YYYY-MM-DD`` form date as the end of that day (UTC); ``None`` when empty."""
    value = value.strip()
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise InvalidArgument.field(field, "a date as YYYY-MM-DD") from None
    return day.replace(hour=23, minute=59, second=59, tzinfo=UTC)


def _certificates(seal: SealView, t: Mapping[str, str]) -> list[dict[str, str]]:
    out = []
    for label, der in (
        (t["certificate"], seal.certificate_der),
        (t["pdf_certificate"], seal.pdf_certificate_der),
    ):
        if der:
            out.append({"label": label, **_certificate_fields(der)})
    return out


@lru_cache(maxsize=1024)
def _certificate_fields(der: bytes) -> dict[str, str]:
    """What the seal page shows of a certificate (parsed once per certificate)."""
    from asn1crypto import x509

    cert = x509.Certificate.load(der)
    return {
        "subject": cert.subject.human_friendly,
        "issuer": cert.issuer.human_friendly,
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before.strftime("%Y-%m-%d"),
        "not_after": cert.not_valid_after.strftime("%Y-%m-%d"),
        "fingerprint": hashlib.sha256(der).hexdigest(),
    }
