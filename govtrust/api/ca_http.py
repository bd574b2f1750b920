"""HTTP adapter of the CA's public endpoints: OCSP, CRLs, CA certificates, time-stamping.

* ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<base64>`` (RFC 6960 A.1);
  always an ``application/ocsp-response`` (garbage gets ``malformedRequest``, never a 500).
  A cached response is returned on the event loop without a thread hop or database access.
* ``GET /crl/<ca>.crl`` and ``GET /crl/<ca>-delta.crl``: DER CRL with caching headers.
* ``GET /ca/<name>.crt``: DER certificate of a CA, responder or the TSA.
* ``POST /tsa`` (``application/timestamp-query`` → ``application/timestamp-reply``), signed by
  the ECDSA TSA; ``POST /tsa/sm2`` the same, signed SM3-with-SM2 by the SM2 TSA (a separate
  path rather than content negotiation: RFC 3161 clients cannot express an algorithm choice).
  A raw ASGI endpoint like ``POST /ocsp``: the token is built and signed on the event loop (a
  key store that signs on a device gets a pool thread instead) and the answer is sent once the
  token's record is committed by the TSA's ledger (group commit), awaited without a thread.
  A request that is not a fitting TimeStampReq gets a ``rejection`` TimeStampResp (400), never
  a 500; a wrong Content-Type gets 415 with the JSON error document.

Request bodies are limited while they stream (:mod:`govtrust.http.limits`): 16 KiB for OCSP and
TSA requests, answered 413 with the JSON error document beyond that.

The routes are plain Starlette endpoints on the ``APIRouter`` (no body validation layer), so
the OCSP hot path costs little more than the dict look-up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import threading
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ca import ocsp, tsa
from ca.authority import CertificateAuthority, authority_for
from govtrust.errors import NotFound
from govtrust.http.limits import body_limit
from govtrust.rpc.offload import run_sync

if TYPE_CHECKING:
    from govtrust.platform import Platform

OCSP_RESPONSE = "application/ocsp-response"
# Request body limits (413 beyond, see govtrust.http.limits): what the protocol layers accept.
MAX_BODY = ocsp.MAX_REQUEST_BYTES
MAX_TSA_BODY = tsa.MAX_REQUEST_BYTES


class _Lazy:
    """The authority, bootstrapped on first use (in the worker pool, not at import)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.value: CertificateAuthority | None = None
        self.lock = threading.Lock()

    def get(self) -> CertificateAuthority:
        if self.value is None:
            with self.lock:
                if self.value is None:
                    self.value = authority_for(self.platform)
        return self.value


def _http_date(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


class _OcspPost:
    """``POST /ocsp`` as a raw ASGI endpoint: no Request/Response objects on the hot path, and a
    cached answer is sent without leaving the event loop."""

    def __init__(self, lazy: _Lazy) -> None:
        self.lazy = lazy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        more = True
        while more:  # at most MAX_BODY: the body limit (govtrust.http.limits) refuses more
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        authority = self.lazy.value
        der = ocsp.cached(authority.ctx, body) if authority is not None else None
        if der is None:
            der = await run_sync(self.lazy.get().ocsp, body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", OCSP_RESPONSE.encode()),
                    (b"content-length", str(len(der)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": der})


TSA_REPLY = b"application/timestamp-reply"
_TSA_QUERY = b"application/timestamp-query"
_WRONG_TYPE = (
    b'{"error":{"code":"INVALID_ARGUMENT",'
    b'"message":"Content-Type must be application/timestamp-query"}}'
)


def _set_result(future: asyncio.Future[tsa.TsaResult], result: tsa.TsaResult) -> None:
    if not future.done():  # the client may have gone (the future cancelled)
        future.set_result(result)


class _TsaPost:
    """``POST /tsa`` and ``POST /tsa/sm2`` as raw ASGI endpoints (see the module's docstring)."""

    def __init__(self, lazy: _Lazy, *, sm2: bool) -> None:
        self.lazy = lazy
        self.sm2 = sm2
        self.warm = False  # the first answer runs in the pool: it loads the TSA's key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.split(b";")[0].strip().lower()
        chunks: list[bytes] = []
        more = True
        while more:  # at most MAX_TSA_BODY: the body limit (govtrust.http.limits) refuses more
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if content_type != _TSA_QUERY:
            await _send(send, 415, b"application/json", _WRONG_TYPE)
            return
        body = b"".join(chunks)
        authority = self.lazy.value
        if authority is None or not self.warm or authority.ctx.keystore.signs_on_device:
            result = await run_sync(lambda: self.lazy.get().timestamp(body, sm2=self.sm2))
            self.warm = True
        else:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[tsa.TsaResult] = loop.create_future()
            authority.timestamp_nowait(
                body,
                lambda answer: loop.call_soon_threadsafe(_set_result, future, answer),
                sm2=self.sm2,
            )
            result = await future
        await _send(send, 200 if result.granted else 400, TSA_REPLY, result.der)


async def _send(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def router(platform: Platform) -> APIRouter:
    """The CA's HTTP routes for one process."""
    lazy = _Lazy(platform)
    api = APIRouter()

    async def answer_ocsp(body: bytes) -> Response:
        authority = lazy.value
        if authority is not None:
            hit = ocsp.cached(authority.ctx, body)
            if hit is not None:
                return Response(hit, media_type=OCSP_RESPONSE)
        der = await run_sync(lambda: lazy.get().ocsp(body))
        return Response(der, media_type=OCSP_RESPONSE)

    async def ocsp_get(request: Request) -> Response:
        encoded = urllib.parse.unquote(request.path_params["encoded"])
        try:
            body = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            body = b""
        return await answer_ocsp(body)

    async def crl_get(request: Request) -> Response:
        name: str = request.path_params["name"]
        delta = name.endswith("-delta")
        ca = name.removesuffix("-delta")
        info = await run_sync(lambda: lazy.get().crl(ca, delta=delta))
        next_update = (
            info.next_update if info.next_update.tzinfo else info.next_update.replace(tzinfo=UTC)
        )
        max_age = max(0, min(3600, int((next_update - datetime.now(UTC)).total_seconds())))
        headers = {
            "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
            "Last-Modified": _http_date(info.this_update),
            "Expires": _http_date(next_update),
            "ETag": f'"{ca}-{info.crl_number}"',
        }
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(info.der, media_type="application/pkix-crl", headers=headers)

    async def ca_get(request: Request) -> Response:
        name: str = request.path_params["name"]
        authority = await run_sync(lazy.get)
        try:
            issuer = authority.hierarchy.get(name)
        except NotFound as exc:
            return JSONResponse({"error": {"code": "NOT_FOUND", "message": exc.message}}, 404)
        return Response(
            issuer.der,
            media_type="application/pkix-cert",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    fast_post = body_limit(MAX_BODY)(_OcspPost(lazy))
    api.add_route("/ocsp", fast_post, methods=["POST"])  # type: ignore[arg-type]
    api.add_route("/ocsp/", fast_post, methods=["POST"])  # type: ignore[arg-type]
    api.add_route("/ocsp/{encoded:path}", ocsp_get, methods=["GET"])
    api.add_route("/crl/{name}.crl", crl_get, methods=["GET"])
    api.add_route("/ca/{name}.crt", ca_get, methods=["GET"])
    tsa_post = body_limit(MAX_TSA_BODY)(_TsaPost(lazy, sm2=False))
    sm2_tsa_post = body_limit(MAX_TSA_BODY)(_TsaPost(lazy, sm2=True))
    api.add_route("/tsa", tsa_post, methods=["POST"])  # type: ignore[arg-type]
    api.add_route("/tsa/sm2", sm2_tsa_post, methods=["POST"])  # type: ignore[arg-type]
    return api
