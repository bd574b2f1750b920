"""HTTP adapter of the public licence checks: the verification page, status lists, trust list.

* ``GET /verify/license/<identifier>`` — what a licence's QR code opens: a server-rendered page
  (no JavaScript; Chinese by default, English with ``?lang=en`` or Accept-Language) with the
  licence's public view (:mod:`license.public`) and whether its signature checks. 400 for a
  malformed identifier (naming the part), 404 for an unknown one.
* ``GET /verify/license`` — the same page with only the check forms.
* ``POST /verify/license`` — check a submitted QR payload (field ``qr``, ``GT1:...``) or licence
  document: a PDF or an OFD (multipart file field ``pdf`` or ``ofd``, either holding either
  format, told apart by the bytes; or a raw ``application/pdf`` / ``application/ofd`` body);
  answers the page, or JSON with ``Accept: application/json`` (``checked``: ``pdf`` or
  ``ofd``). Bodies over the upload limit get 413 unread. A document is
  checked in the bounded document pool (:func:`govtrust.rpc.offload.document_pool`), never in
  the shared one: 503 with ``Retry-After`` when its workers and queue are full, 413
  ``RESOURCE_EXHAUSTED`` naming the limit when the document has more revisions, objects or
  signatures than allowed (:mod:`govtrust.pdf_guard`), an OFD is past the package limits
  (entries, inflated size, compression ratio: a zip bomb) or its check outlasts the time budget;
  a client that disconnects stops its check.
* ``GET /licence/status/<issuer>`` — the issuer's signed status list
  (``application/statuslist+jwt``, ETag, short max-age); ``GET /licence/trust-list`` — the
  department seal chains offline QR verifiers load (JSON, cacheable).

The page routes are rate-limited per client address (IPv6 per /64) by a token bucket in the
shared database (:class:`govtrust.shared_limits.SharedRateLimiter`, scope ``public-verify``;
``GOVTRUST_VERIFY_RATE`` tokens per second, ``GOVTRUST_VERIFY_BURST`` bucket size): 429 with
``Retry-After`` and a page saying so. Every worker and replica spends from the same bucket, so
the limit holds cluster-wide.
Wiring: ``govtrust.server.adapters.ROUTERS["license"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import UploadFile
from starlette.routing import Route

from govtrust.errors import InvalidArgument, NotFound, ResourceExhausted
from govtrust.http.errors import error_body
from govtrust.http.limits import body_limit
from govtrust.http.pages import strict_page_headers
from govtrust.http.ratelimit import Limiter, client_key
from govtrust.platform import Components
from govtrust.rpc.offload import PoolBusy, document_pool, run_sync
from govtrust.shared_limits import SharedRateLimiter
from license import public
from license.base45 import ALPHABET as BASE45_ALPHABET
from license.identifiers import ISSUER_CODE_LENGTH
from license.ofd_check import is_ofd
from license.page_texts import TEXTS
from license.qr import MAX_PAYLOAD_CHARS
from license.qr import PREFIX as QR_PREFIX
from license.runtime import (
    LICENCE_RUNTIME,
    STATUS_PATH,
    TRUST_LIST_PATH,
    VERIFY_PATH,
    LicenceRuntime,
    licence_alias,
    status_list_token,
)

if TYPE_CHECKING:
    from govtrust.platform import Platform

TEMPLATES = Path(__file__).resolve().parent / "templates"
VERIFY_FORM_PATH = VERIFY_PATH.rstrip("/")  # /verify/license
STATUS_LIST_MEDIA_TYPE = "application/statuslist+jwt"
PUBLIC_PAGE_SCOPE = "public-verify"  # the shared rate-limit scope of the public page
MAX_UPLOAD = 10 * 1024 * 1024  # a licence PDF or OFD is a few hundred KB
DOCUMENT_FIELDS = ("pdf", "ofd")  # the multipart file fields of a licence document
MULTIPART_OVERHEAD = 16 * 1024
STATUS_MAX_AGE = 60
TRUST_LIST_MAX_AGE = 300

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_CSS = (TEMPLATES / "licence.css").read_text(encoding="utf-8")
PAGE_HEADERS = strict_page_headers(_CSS)
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

# --- rendering ----------------------------------------------------------------------------------


def pick_language(request: Request, form_lang: str = "") -> str:
    """``zh-CN`` or ``en``: explicit choice (form, ``?lang=``), then Accept-Language; zh-CN."""
    accept = [
        p.split(";")[0].strip() for p in request.headers.get("accept-language", "").split(",")
    ]
    for candidate in [form_lang, request.query_params.get("lang", ""), *accept]:
        lowered = candidate.lower()
        if lowered.startswith("en"):
            return "en"
        if lowered.startswith("zh"):
            return "zh-CN"
    return "zh-CN"


def wants_json(request: Request) -> bool:
    """Whether the client asked for JSON rather than the page."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _status_text(t: Mapping[str, str], view: public.PublicLicenceView) -> str:
    text = t[f"status_{view.status.value}"]
    return text.format(n=view.superseded_version or "?")


def _banner(t: Mapping[str, str], view: public.PublicLicenceView) -> tuple[str, str]:
    if not view.signature_ok:
        return t["banner_forged"], "bad"
    if view.status is public.PublicStatus.VALID:
        return t["banner_valid"], "ok"
    if view.status is public.PublicStatus.UNKNOWN:
        return t["banner_indeterminate"], "warn"
    return t["banner_not_valid"].format(status=_status_text(t, view)), "bad"


def _reasons(t: Mapping[str, str], view: public.PublicLicenceView) -> list[tuple[str, str]]:
    """(code, explanation) pairs; a free-text detail after a code explains that code."""
    out: list[tuple[str, str]] = []
    for reason in view.reasons:
        key = f"reason_{reason}"
        if key in t:
            out.append((reason, t[key]))
        elif out:
            code, text = out[-1]
            out[-1] = (code, f"{text} — {reason}")
        else:
            out.append(("", reason))
    return out


def _href(identifier: str, lang: str) -> str:
    return f"{VERIFY_PATH}{quote(identifier, safe='')}?lang={lang}"


def render_page(
    request: Request,
    *,
    lang: str,
    view: public.PublicLicenceView | None = None,
    status: int = 200,
    message: str = "",
    detail: str = "",
    message_class: str = "bad",
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The verification page (result and/or message, always with the check forms)."""
    t = TEXTS[lang]
    other = t["other_locale"]
    if view is not None and view.identifier and view.known:
        lang_link = _href(view.identifier, other)
    elif request.method == "GET":
        lang_link = f"{request.url.path}?lang={other}"
    else:
        lang_link = f"{VERIFY_FORM_PATH}?lang={other}"
    values: dict[str, Any] = {
        "t": t,
        "title": t["title"],
        "css": _CSS,
        "lang_link": lang_link,
        "post_url": VERIFY_FORM_PATH,
        "message": message,
        "detail": detail,
        "message_class": message_class,
        "v": view,
    }
    if view is not None and lang != "zh-CN":
        # the English page labels fields with the catalogue's English labels where it has them
        values["v"] = dataclasses.replace(
            view,
            fields=tuple(dataclasses.replace(f, label=f.label_en or f.label) for f in view.fields),
        )
    if view is not None:
        banner, banner_class = _banner(t, view)
        values.update(
            banner=banner,
            banner_class=banner_class,
            status_text=_status_text(t, view),
            checked_text=t[f"checked_{view.checked}"],
            reasons=_reasons(t, view),
            superseded_href=_href(view.superseded_by, lang) if view.superseded_by else "",
            previous_href=_href(view.previous, lang) if view.previous else "",
        )
    html = _env.get_template("licence_page.html").render(**values)
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def problem(
    request: Request,
    *,
    lang: str,
    status: int,
    code: str,
    message: str,
    detail: str = "",
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error answered as the page (message + forms) or as the JSON error document."""
    if wants_json(request):
        body = error_body(code, f"{message}: {detail}" if detail else message)
        return JSONResponse(body, status_code=status, headers={**JSON_HEADERS, **(headers or {})})
    return render_page(
        request, lang=lang, status=status, message=message, detail=detail, headers=headers
    )


def answer(request: Request, lang: str, view: public.PublicLicenceView) -> Response:
    """A checked licence as the page or as JSON."""
    if wants_json(request):
        return JSONResponse(view.to_json(), headers=JSON_HEADERS)
    return render_page(request, lang=lang, view=view)


# --- request bodies -----------------------------------------------------------------------------


class UploadTooLarge(Exception):
    """The request body exceeds the upload limit."""


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (unread) a declared or actual size over ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Submitted:
    """A POST body: the QR text, or a document and the field (``pdf``, ``ofd``) it came as,
    and the form's language."""

    qr: str | None = None
    document: bytes | None = None
    field: str = "pdf"
    lang: str = ""


async def submitted(request: Request, body: bytes) -> Submitted:
    """The QR text or the licence document of a POST body, by its content type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/pdf":
        return Submitted(document=body, field="pdf")
    if content_type == "application/ofd":
        return Submitted(document=body, field="ofd")
    if content_type == "text/plain":
        return Submitted(qr=body.decode("utf-8", errors="replace"))
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise InvalidArgument.field("qr", "the form is not UTF-8") from None
        form = dict(reversed(pairs))  # first value wins
        return Submitted(qr=form.get("qr"), lang=form.get("lang", ""))
    if content_type == "multipart/form-data":

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        clone = Request(request.scope, replay)
        try:
            multipart = await clone.form(max_files=1, max_fields=8)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a malformed upload
            raise InvalidArgument.field("pdf", f"malformed multipart body: {exc}") from None
        lang = multipart.get("lang")
        qr = multipart.get("qr")
        document: bytes | None = None
        field = "pdf"
        for name in DOCUMENT_FIELDS:
            upload = multipart.get(name)
            if isinstance(upload, UploadFile):
                data = await upload.read()
                if not data and upload.filename == "" and isinstance(qr, str) and qr.strip():
                    continue  # the browser sent an empty file input next to a QR payload
                document, field = data, name
                break
            if isinstance(upload, str) and upload:
                raise InvalidArgument.field(name, "must be a file upload")
        return Submitted(
            qr if isinstance(qr, str) else None,
            document,
            field,
            lang if isinstance(lang, str) else "",
        )
    raise InvalidArgument.field(
        "content-type",
        "send a form (field qr or file pdf / ofd), application/pdf, application/ofd or text/plain",
    )


def qr_problem(text: str) -> str | None:
    """Why ``text`` is not a licence QR payload at all (None when it looks like one)."""
    if not text:
        return "qr: empty; paste the content of the licence's QR code"
    if len(text) > MAX_PAYLOAD_CHARS:
        return f"qr: too long ({len(text)} characters; a licence QR holds at most 4296)"
    if not text.startswith(QR_PREFIX):
        return f"qr: a licence QR payload starts with {QR_PREFIX}"
    for position, char in enumerate(text[len(QR_PREFIX) :], start=len(QR_PREFIX) + 1):
        if char not in BASE45_ALPHABET:
            return f"qr: character {position} ({char!r}) is not in the QR alphanumeric set"
    return None


def document_problem(data: bytes, field: str = "pdf") -> str | None:
    """Why ``data`` is neither a PDF nor an OFD file at all (None when it starts like one)."""
    if not data:
        return f"{field}: the uploaded file is empty"
    if data.lstrip(b"\r\n\t ")[:5] != b"%PDF-" and not is_ofd(data):
        return f"{field}: not a PDF or OFD file (it starts neither with %PDF- nor as a zip package)"
    return None


# --- document checks -----------------------------------------------------------------------------

T = TypeVar("T")


class ClientGone(Exception):
    """The HTTP client disconnected before its answer was ready."""


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body is read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; when the client disconnects first, cancel it (a document check's budget is
    cancelled with it, so the check stops at its next checkpoint) and raise ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone
    return task.result()


# --- the router ---------------------------------------------------------------------------------


def _etag(data: str) -> str:
    return '"' + hashlib.sha256(data.encode()).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(",")) or (
        header.strip() == "*"
    )


def _format_limit(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


def router(platform: Platform) -> APIRouter:
    """The public licence routes of one process (production wiring)."""
    from license.runtime import runtime_for

    settings = platform.settings
    limiter = SharedRateLimiter(
        platform.db, PUBLIC_PAGE_SCOPE, settings.verify_rate, settings.verify_burst
    )
    return make_router(lambda: runtime_for(platform), limiter=limiter)


def make_router(
    runtime: Callable[[], LicenceRuntime],
    *,
    limiter: Limiter | None = None,
    max_upload: int = MAX_UPLOAD,
    check_pdf: Callable[[LicenceRuntime, bytes], public.PublicLicenceView] | None = None,
) -> APIRouter:
    """The routes over a runtime factory (tests inject theirs); ``limiter=None`` disables rate
    limiting; ``check_pdf`` replaces the document check, PDF or OFD (default
    :func:`license.public.view_document`)."""
    components = Components()  # the runtime, built on first use (in the worker pool)

    def current() -> LicenceRuntime:
        return components.get(LICENCE_RUNTIME, runtime)

    api = APIRouter()

    async def limited(request: Request, lang: str) -> Response | None:
        if limiter is None:
            return None
        wait = await run_sync(limiter.take, client_key(request))
        if wait <= 0:
            return None
        seconds = max(1, math.ceil(wait))
        return problem(
            request,
            lang=lang,
            status=429,
            code="RESOURCE_EXHAUSTED",
            message=TEXTS[lang]["err_rate_limited"].format(seconds=seconds),
            headers={"Retry-After": str(seconds)},
        )

    async def verify_get(request: Request) -> Response:
        lang = pick_language(request)
        refused = await limited(request, lang)
        if refused is not None:
            return refused
        identifier: str = request.path_params["identifier"]
        t = TEXTS[lang]
        try:
            view = await run_sync(
                lambda: public.view_identifier(current().service, current().roots, identifier)
            )
        except InvalidArgument as exc:
            return problem(
                request,
                lang=lang,
                status=400,
                code="INVALID_ARGUMENT",
                message=t["err_bad_identifier"],
                detail=exc.message,
            )
        except NotFound:
            return problem(
                request,
                lang=lang,
                status=404,
                code="NOT_FOUND",
                message=t["err_not_found"],
                detail=t["err_not_found_detail"].format(identifier=identifier),
            )
        return answer(request, lang, view)

    async def form_get(request: Request) -> Response:
        lang = pick_language(request)
        refused = await limited(request, lang)
        if refused is not None:
            return refused
        return render_page(request, lang=lang)

    # The route refuses an upload over max_upload itself (the page or JSON, localised); the
    # body limit (govtrust.http.limits) is the streaming backstop above it.
    @body_limit(2 * (max_upload + MULTIPART_OVERHEAD))
    async def verify_post(request: Request) -> Response:
        lang = pick_language(request)
        refused = await limited(request, lang)
        if refused is not None:
            return refused
        t = TEXTS[lang]
        try:
            body = await bounded_body(request, max_upload + MULTIPART_OVERHEAD)
            sent = await submitted(request, body)
        except UploadTooLarge:
            return problem(
                request,
                lang=lang,
                status=413,
                code="RESOURCE_EXHAUSTED",
                message=t["err_too_large"].format(limit=_format_limit(max_upload)),
            )
        except InvalidArgument as exc:
            return problem(
                request,
                lang=lang,
                status=400,
                code="INVALID_ARGUMENT",
                message=t["err_bad_request"],
                detail=exc.message,
            )
        lang = pick_language(request, sent.lang)
        qr, document, field = sent.qr, sent.document, sent.field
        t = TEXTS[lang]

        def bad(detail: str, status: int = 400) -> Response:
            return problem(
                request,
                lang=lang,
                status=status,
                code="INVALID_ARGUMENT" if status == 400 else "RESOURCE_EXHAUSTED",
                message=t["err_too_large"].format(limit=_format_limit(max_upload))
                if status == 413
                else t["err_bad_request"],
                detail=detail,
            )

        if document is not None and qr is not None and qr.strip():
            return bad(f"send either a licence document ({field}) or a QR payload (qr), not both")
        if document is not None:
            if len(document) > max_upload:
                return bad(f"{field}: larger than {_format_limit(max_upload)}", 413)
            why = document_problem(document, field)
            if why is not None:
                return bad(why)
            pdf_check = check_pdf or _default_pdf_check
            upload = document
            try:  # in the bounded document pool, under its budget, while the client waits
                view = await while_connected(
                    request, document_pool().run(lambda: pdf_check(current(), upload))
                )
            except InvalidArgument as exc:
                return bad(exc.message)
            except ClientGone:
                return Response(status_code=499)  # nobody reads it; the check was stopped
            except PoolBusy as exc:
                return problem(
                    request,
                    lang=lang,
                    status=503,
                    code="UNAVAILABLE",
                    message=t["err_busy"].format(seconds=exc.retry_after),
                    headers={"Retry-After": str(exc.retry_after)},
                )
            except ResourceExhausted as exc:  # over a document limit or the time budget
                return problem(
                    request,
                    lang=lang,
                    status=413,
                    code="RESOURCE_EXHAUSTED",
                    message=t["err_too_complex"],
                    detail=exc.message,
                )
            return answer(request, lang, view)
        if qr is None:
            return bad(
                "send a licence PDF or OFD (file field pdf or ofd) or a QR payload (field qr)"
            )
        text = qr.strip()
        why = qr_problem(text)
        if why is not None:
            return bad(why)

        def check() -> public.PublicLicenceView:
            rt = current()
            return public.view_qr(rt.service, rt.trust_list(), rt.roots, text)

        return answer(request, lang, await run_sync(check))

    async def status_get(request: Request) -> Response:
        issuer: str = request.path_params["issuer"]
        if len(issuer) != ISSUER_CODE_LENGTH or not issuer.isalnum() or not issuer.isascii():
            return JSONResponse(
                error_body("INVALID_ARGUMENT", "issuer: must be an 18-character USCC"),
                status_code=400,
                headers=JSON_HEADERS,
            )
        token = await run_sync(lambda: status_list_token(current().service, issuer))
        if token is None:
            return JSONResponse(
                error_body("NOT_FOUND", f"no status list for issuer {issuer}"),
                status_code=404,
                headers=JSON_HEADERS,
            )
        etag = _etag(token)
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={STATUS_MAX_AGE}, must-revalidate",
            "X-Content-Type-Options": "nosniff",
        }
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(token, media_type=STATUS_LIST_MEDIA_TYPE, headers=headers)

    async def trust_list_get(request: Request) -> Response:
        document = await run_sync(lambda: current().trust_list_document())
        etag = _etag(document)
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={TRUST_LIST_MAX_AGE}",
            "X-Content-Type-Options": "nosniff",
        }
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(document, media_type="application/json", headers=headers)

    api.add_route(VERIFY_PATH + "{identifier}", verify_get, methods=["GET"])
    api.add_route(VERIFY_FORM_PATH, form_get, methods=["GET"])
    api.add_route(VERIFY_FORM_PATH, verify_post, methods=["POST"])
    api.add_route(STATUS_PATH + "{issuer}", status_get, methods=["GET"])
    api.add_route(TRUST_LIST_PATH, trust_list_get, methods=["GET"])
    for route in list(api.routes):  # the "licence" spellings: permanent aliases, same handlers
        assert isinstance(route, Route)
        api.add_route(licence_alias(route.path), route.endpoint, methods=list(route.methods or []))
    return api


def _default_pdf_check(runtime: LicenceRuntime, data: bytes) -> public.PublicLicenceView:
    return public.view_document(runtime.service, runtime.roots, data)
