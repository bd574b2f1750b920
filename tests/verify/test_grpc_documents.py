"""VerifyPdf, VerifyPdfStream and VerifyOfd over a real gRPC server (platform interceptor,
bearer tokens): reports for good and bad documents, the streaming protocol's errors, the size
limit."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

import grpc
import grpc.aio
import pytest

from govtrust.db import Database
from govtrust.principal import Principal
from govtrust.v1 import common_pb2, verify_pb2, verify_pb2_grpc
from seal.ofd.model import Font
from seal.ofd.writer import write_document
from seal.ofd_seal import OfdSealRequest, SealOfd
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.types import PadesLevel
from tests.seal.conftest import World, one_page_pdf
from tests.seal.test_ofd_document import _document, cjk_font  # noqa: F401
from tests.seal.test_sm2_seals import _active
from tests.unchanged import unchanged
from tests.verify.conftest import NOBODY, VERIFIER
from verify.service import VerifyConfig, VerifyContext

LIMIT = 200_000


@dataclass
class Server:
    """VerifyService on a free loopback port."""

    stub: verify_pb2_grpc.VerifyServiceStub
    tokens: dict[str, Principal]
    world: World

    def fails(self, call: object, code: grpc.StatusCode, text: str) -> None:
        """``call()`` is refused with ``code`` and ``text``, and stored nothing (rows, keys)."""
        with unchanged(self.world.db, self.world.keystore), pytest.raises(grpc.RpcError) as info:
            call()  # type: ignore[operator]
        error = info.value
        assert error.code() == code, error.details()
        assert text in (error.details() or ""), error.details()

    def metadata(self, principal: Principal | None) -> tuple[tuple[str, str], ...]:
        if principal is None:
            return ()
        token = secrets.token_urlsafe(16)
        self.tokens[token] = principal
        return (("authorization", f"Bearer {token}"),)

    def pdf(
        self, request: verify_pb2.VerifyPdfRequest, principal: Principal | None = VERIFIER
    ) -> verify_pb2.VerifyPdfResponse:
        response: verify_pb2.VerifyPdfResponse = self.stub.VerifyPdf(
            request, metadata=self.metadata(principal), timeout=120
        )
        return response

    def stream(
        self, messages: list[verify_pb2.VerifyPdfStreamRequest], principal: Principal = VERIFIER
    ) -> verify_pb2.VerifyPdfStreamResponse:
        response: verify_pb2.VerifyPdfStreamResponse = self.stub.VerifyPdfStream(
            iter(messages), metadata=self.metadata(principal), timeout=120
        )
        return response


@pytest.fixture
def server(vworld: World) -> Iterator[Server]:
    from govtrust.api.verify import VerifyServicer
    from govtrust.config import Settings
    from govtrust.errors import Unauthenticated
    from govtrust.observability.metrics import get_metrics
    from govtrust.rpc.auth import Authenticator, set_token_resolver
    from govtrust.rpc.interceptors import GovtrustInterceptor

    context = VerifyContext(
        vworld.db,
        vworld.keystore,
        vworld.authority,
        config=VerifyConfig(max_pdf_bytes=LIMIT, max_ofd_bytes=LIMIT),
        seals=vworld.service,
    )
    tokens: dict[str, Principal] = {}

    def resolve(_platform: object, token: str) -> Principal:
        if token not in tokens:
            raise Unauthenticated("unknown test token")
        return tokens[token]

    @dataclass
    class _Platform:
        settings: Settings
        db: Database

    platform = _Platform(Settings(), vworld.db)
    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="verify-grpc", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        grpc_server = grpc.aio.server(
            interceptors=[
                GovtrustInterceptor(
                    Authenticator(platform, trust_insecure_loopback=False),  # type: ignore[arg-type]
                    get_metrics(),
                )
            ]
        )
        verify_pb2_grpc.add_VerifyServiceServicer_to_server(VerifyServicer(context), grpc_server)
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        await grpc_server.start()
        return grpc_server, port

    grpc_server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Server(verify_pb2_grpc.VerifyServiceStub(channel), tokens, vworld)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(grpc_server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        set_token_resolver(None)
        context.close()


def _sealed(world: World) -> bytes:
    seal = world.active_seal()
    return world.sealer.seal(
        world.rep,
        PdfSealRequest(seal.id, one_page_pdf(), Position(1, 100, 100), PadesLevel.B_T, "contract"),
    ).sealed_pdf


def _chunks(data: bytes, size: int = 4096) -> list[verify_pb2.VerifyPdfStreamRequest]:
    return [
        verify_pb2.VerifyPdfStreamRequest(chunk=data[i : i + size])
        for i in range(0, len(data), size)
    ]


def test_verify_pdf(server: Server, vworld: World) -> None:
    pdf = _sealed(vworld)
    response = server.pdf(
        verify_pb2.VerifyPdfRequest(
            pdf=pdf,
            report_options=common_pb2.ReportOptions(
                report_format=common_pb2.REPORT_FORMAT_SIGNED_JSON, locale="en", reference="c-1"
            ),
        )
    )
    report = response.report
    assert report.verdict == common_pb2.VERDICT_VALID, report
    assert report.evidence_kind == common_pb2.EVIDENCE_KIND_PDF
    assert report.evidence_digest.value == hashlib.sha256(pdf).digest()
    [sig] = report.signatures
    assert sig.pades_level == common_pb2.PADES_LEVEL_B_T and sig.seal.seal_id
    assert sig.signing_time_source == common_pb2.SIGNING_TIME_SOURCE_TIMESTAMP
    assert sig.seal.status_at_signing_time == common_pb2.SEAL_STATUS_ACTIVE
    assert report.document.signature_count == 1 and report.reference == "c-1"
    assert response.signed_report.jws.count(".") == 2 and '"VERDICT_VALID"' in (
        response.signed_report.json
    )

    # bad bytes are a report, not an error
    garbage = server.pdf(verify_pb2.VerifyPdfRequest(pdf=b"\x00garbage" * 50)).report
    assert garbage.verdict == common_pb2.VERDICT_INVALID
    assert [r.code for r in garbage.reasons] == [common_pb2.REASON_CODE_FORMAT_ERROR]
    tampered = server.pdf(
        verify_pb2.VerifyPdfRequest(pdf=pdf.replace(b"Seal here", b"Seal HERE", 1))
    ).report
    assert tampered.verdict == common_pb2.VERDICT_INVALID
    assert common_pb2.REASON_CODE_DIGEST_MISMATCH in [r.code for r in tampered.reasons]

    # nothing to check, no role, bad options, too large
    server.fails(
        lambda: server.pdf(verify_pb2.VerifyPdfRequest()), grpc.StatusCode.INVALID_ARGUMENT, "pdf"
    )
    server.fails(
        lambda: server.pdf(verify_pb2.VerifyPdfRequest(pdf=pdf), NOBODY),
        grpc.StatusCode.PERMISSION_DENIED,
        "verifier",
    )
    server.fails(
        lambda: server.pdf(verify_pb2.VerifyPdfRequest(pdf=pdf), None),
        grpc.StatusCode.UNAUTHENTICATED,
        "",
    )
    server.fails(
        lambda: server.pdf(
            verify_pb2.VerifyPdfRequest(
                pdf=pdf, report_options=common_pb2.ReportOptions(locale="fr")
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "locale",
    )
    server.fails(
        lambda: server.pdf(verify_pb2.VerifyPdfRequest(pdf=b"%PDF-1.7\n" + b" " * LIMIT)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"limit of {LIMIT} bytes",
    )


def test_verify_pdf_stream(server: Server, vworld: World) -> None:
    pdf = _sealed(vworld)
    header = verify_pb2.VerifyPdfStreamHeader(
        size_bytes=len(pdf),
        expected_digest=common_pb2.Digest(
            algorithm=common_pb2.DIGEST_ALGORITHM_SHA256, value=hashlib.sha256(pdf).digest()
        ),
        filename="contract.pdf",
    )
    first = verify_pb2.VerifyPdfStreamRequest(header=header)
    report = server.stream([first, *_chunks(pdf)]).report
    assert report.verdict == common_pb2.VERDICT_VALID, report
    assert report.evidence_digest.value == hashlib.sha256(pdf).digest()
    assert report.document.size_bytes == len(pdf)
    # the size need not be announced
    bare = verify_pb2.VerifyPdfStreamRequest(header=verify_pb2.VerifyPdfStreamHeader())
    assert server.stream([bare, *_chunks(pdf, 1000)]).report.verdict == common_pb2.VERDICT_VALID

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    server.fails(lambda: server.stream(_chunks(pdf)), invalid, "first message must be the header")
    server.fails(lambda: server.stream([]), invalid, "no header")
    server.fails(lambda: server.stream([bare]), invalid, "no content")
    server.fails(lambda: server.stream([first, first, *_chunks(pdf)]), invalid, "only the first")
    server.fails(
        lambda: server.stream([first, *_chunks(pdf[:-10])]), invalid, f"announced {len(pdf)}"
    )
    wrong = verify_pb2.VerifyPdfStreamHeader()
    wrong.expected_digest.value = b"\x00" * 32
    server.fails(
        lambda: server.stream([verify_pb2.VerifyPdfStreamRequest(header=wrong), *_chunks(pdf)]),
        invalid,
        "does not have this SHA-256",
    )

    # the limit: refused from the header's announcement, or once the chunks pass it
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    big = verify_pb2.VerifyPdfStreamHeader(size_bytes=LIMIT + 1)
    server.fails(
        lambda: server.stream([verify_pb2.VerifyPdfStreamRequest(header=big)]),
        exhausted,
        f"limit of {LIMIT} bytes",
    )
    server.fails(
        lambda: server.stream([bare, *_chunks(b"%PDF-1.7\n" + b" " * LIMIT, 50_000)]),
        exhausted,
        f"limit of {LIMIT} bytes",
    )
    server.fails(
        lambda: server.stream([bare, *_chunks(pdf)], NOBODY),
        grpc.StatusCode.PERMISSION_DENIED,
        "verifier",
    )


def test_verify_ofd_streamed(server: Server, vworld: World, cjk_font: Font) -> None:  # noqa: F811
    seal = _active(vworld, "sm2")
    ofd = (
        SealOfd(vworld.service)
        .seal(vworld.rep, OfdSealRequest(seal.id, write_document(_document(cjk_font))))
        .sealed.ofd
    )
    metadata = server.metadata(VERIFIER)

    def call(messages: Iterator[verify_pb2.VerifyOfdRequest]) -> verify_pb2.VerifyOfdResponse:
        response: verify_pb2.VerifyOfdResponse = server.stub.VerifyOfd(
            messages, metadata=metadata, timeout=120
        )
        return response

    def chunks(data: bytes, size: int = 4096) -> list[verify_pb2.VerifyOfdRequest]:
        return [
            verify_pb2.VerifyOfdRequest(chunk=data[i : i + size]) for i in range(0, len(data), size)
        ]

    header = verify_pb2.VerifyOfdHeader(
        size_bytes=len(ofd),
        expected_digest=common_pb2.Digest(
            algorithm=common_pb2.DIGEST_ALGORITHM_SHA256, value=hashlib.sha256(ofd).digest()
        ),
        report_options=common_pb2.ReportOptions(
            report_format=common_pb2.REPORT_FORMAT_SIGNED_JSON, locale="en"
        ),
        filename="licence.ofd",
    )
    first = verify_pb2.VerifyOfdRequest(header=header)
    response = call(iter([first, *chunks(ofd)]))
    report = response.report
    assert report.verdict == common_pb2.VERDICT_VALID, report
    assert report.evidence_kind == common_pb2.EVIDENCE_KIND_OFD
    assert report.evidence_digest.value == hashlib.sha256(ofd).digest()
    [sig] = report.signatures
    assert sig.format == common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE
    assert sig.seal.seal_id == seal.id and sig.intact and sig.signature_valid
    assert sig.signing_time_source == common_pb2.SIGNING_TIME_SOURCE_TIMESTAMP
    assert sig.field_name == "Doc_0/Signs/Sign_0/Signature.xml"
    assert '"VERDICT_VALID"' in response.signed_report.json

    bare = verify_pb2.VerifyOfdRequest(header=verify_pb2.VerifyOfdHeader())
    garbage = call(iter([bare, *chunks(b"not a zip" * 100)])).report
    assert garbage.verdict == common_pb2.VERDICT_INVALID
    assert [r.code for r in garbage.reasons] == [common_pb2.REASON_CODE_FORMAT_ERROR]

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    server.fails(lambda: call(iter(chunks(ofd))), invalid, "first message must be the header")
    server.fails(lambda: call(iter([bare])), invalid, "no content")
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    big = verify_pb2.VerifyOfdRequest(header=verify_pb2.VerifyOfdHeader(size_bytes=LIMIT + 1))
    server.fails(
        lambda: call(iter([big])),
        exhausted,
        f"ofd: the document is larger than the limit of {LIMIT}",
    )
    # an endless upload is refused once it passes the limit: the server stops reading
    sent = count()

    def endless() -> Iterator[verify_pb2.VerifyOfdRequest]:
        yield bare
        while True:
            next(sent)
            yield verify_pb2.VerifyOfdRequest(chunk=b"\0" * 50_000)

    server.fails(lambda: call(endless()), exhausted, f"limit of {LIMIT} bytes")
    assert next(sent) < 100
    server.fails(
        lambda: server.stub.VerifyOfd(
            iter([bare, *chunks(ofd)]), metadata=server.metadata(NOBODY), timeout=120
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "verifier",
    )


def test_verify_license_needs_a_licence_service(server: Server) -> None:
    request = verify_pb2.VerifyLicenseRequest()
    server.fails(
        lambda: server.stub.VerifyLicense(request, metadata=server.metadata(VERIFIER), timeout=60),
        grpc.StatusCode.INVALID_ARGUMENT,
        "evidence",
    )
    request.evidence.qr_payload = "GT1:whatever"
    server.fails(
        lambda: server.stub.VerifyLicense(request, metadata=server.metadata(VERIFIER), timeout=60),
        grpc.StatusCode.FAILED_PRECONDITION,
        "licence service",
    )
