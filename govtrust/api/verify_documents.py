"""VerifyPdf, VerifyPdfStream, VerifyOfd and VerifyLicense of ``govtrust.v1.VerifyService``.

:class:`govtrust.api.verify.VerifyServicer` inherits these RPCs from :class:`DocumentRpcs`.
Thin adapters: convert the request, run :func:`verify.pdf.verify_pdf_check` /
:func:`verify.ofd.verify_ofd_check` / :func:`verify.licences.verify_licence_check` with the
caller's principal, wait for the audit record, convert the report with ``report_to_pb``. A
document (VerifyPdf, VerifyPdfStream, VerifyOfd, VerifyLicense with ``document``) is checked in
the bounded pool of VerifyPdf (``document_pool(VERIFY)`` of :mod:`govtrust.rpc.offload`: its own
threads, a queue limit, a time budget per call, stopped when the call is cancelled), the other
evidence in the ``run_sync`` pool.

Errors (mapped centrally from the domain errors):

* empty ``pdf`` / evidence, a malformed licence identifier, a stream without a header first,
  a second header, a size or digest that does not match the header → INVALID_ARGUMENT;
* a document over the configured limit (``GOVTRUST_VERIFY_MAX_PDF_BYTES``; an OFD
  ``GOVTRUST_VERIFY_MAX_OFD_BYTES``) → RESOURCE_EXHAUSTED, for a stream as soon as the header
  announces it or the chunks received pass it (the rest is not read);
* a document with more revisions, cross-reference entries or signatures than the limits
  (``GOVTRUST_PDF_MAX_*``, :mod:`govtrust.pdf_guard`), an OFD package past its limits (entries,
  inflated size, compression ratio: a zip bomb), or a check that outlasts the budget
  (``GOVTRUST_DOCUMENT_BUDGET_SECONDS``) → RESOURCE_EXHAUSTED naming the limit;
* the document pool's workers and queue all taken → UNAVAILABLE (retry later);
* anything wrong *inside* the bytes (not a PDF or OFD, truncated, encrypted, unsigned) is not
  an error: the report says so (INVALID with FORMAT_ERROR / NO_SIGNATURE), so that a business
  system archives one kind of answer for every document it was handed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from govtrust.errors import InvalidArgument
from govtrust.rpc.context import current_principal
from govtrust.rpc.offload import VERIFY, document_pool, run_sync
from govtrust.v1 import common_pb2, verify_pb2
from verify.ofd import OfdCheck, verify_ofd_check
from verify.pdf import PdfCheck, check_size, verify_pdf_check

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from govtrust.platform import Platform
    from verify.service import VerifyContext

_LICENCE_FORMS = ("identifier", "signed_data", "document", "qr_payload")


class DocumentRpcs:
    """Mixin holding the document RPCs of the verify servicer."""

    context: VerifyContext
    platform: Platform | None

    async def VerifyPdf(
        self, request: verify_pb2.VerifyPdfRequest, context: Any
    ) -> verify_pb2.VerifyPdfResponse:
        from govtrust.api.verify import finished, options_in, report_to_pb, signed_pb
        from govtrust.rpc.convert import time_in

        check = PdfCheck(
            pdf=request.pdf,
            at_time=time_in(request, "at_time"),
            options=options_in(request.report_options),
        )
        principal = current_principal()
        verified = await finished(
            await document_pool(VERIFY).run(verify_pdf_check, self.context, principal, check)
        )
        return verify_pb2.VerifyPdfResponse(
            report=report_to_pb(verified.report), signed_report=signed_pb(verified.signed)
        )

    async def VerifyPdfStream(
        self, request_iterator: AsyncIterator[verify_pb2.VerifyPdfStreamRequest], context: Any
    ) -> verify_pb2.VerifyPdfStreamResponse:
        from govtrust.api.verify import finished, options_in, report_to_pb, signed_pb
        from govtrust.rpc.convert import time_in

        principal = current_principal()
        principal.require_role("verifier")  # before reading a possibly large upload
        header, pdf = await _upload(request_iterator, self.context.config.max_pdf_bytes, "pdf")
        check = PdfCheck(
            pdf=pdf,
            at_time=time_in(header, "at_time"),
            options=options_in(header.report_options, "header.report_options"),
            filename=header.filename[:512],
        )
        verified = await finished(
            await document_pool(VERIFY).run(verify_pdf_check, self.context, principal, check)
        )
        return verify_pb2.VerifyPdfStreamResponse(
            report=report_to_pb(verified.report), signed_report=signed_pb(verified.signed)
        )

    async def VerifyOfd(
        self, request_iterator: AsyncIterator[verify_pb2.VerifyOfdRequest], context: Any
    ) -> verify_pb2.VerifyOfdResponse:
        from govtrust.api.verify import finished, options_in, report_to_pb, signed_pb
        from govtrust.rpc.convert import time_in

        principal = current_principal()
        principal.require_role("verifier")  # before reading a possibly large upload
        header, ofd = await _upload(request_iterator, self.context.config.max_ofd_bytes, "ofd")
        check = OfdCheck(
            ofd=ofd,
            at_time=time_in(header, "at_time"),
            options=options_in(header.report_options, "header.report_options"),
            filename=header.filename[:512],
        )
        verified = await finished(
            await document_pool(VERIFY).run(verify_ofd_check, self.context, principal, check)
        )
        return verify_pb2.VerifyOfdResponse(
            report=report_to_pb(verified.report), signed_report=signed_pb(verified.signed)
        )

    async def VerifyLicense(
        self, request: verify_pb2.VerifyLicenseRequest, context: Any
    ) -> verify_pb2.VerifyLicenseResponse:
        from govtrust.api.verify import finished, options_in, report_to_pb, signed_pb
        from govtrust.rpc.convert import time_in
        from verify.licences import LicenceCheckRequest, verify_licence_check

        form = request.evidence.WhichOneof("evidence")
        if form not in _LICENCE_FORMS:
            raise InvalidArgument.field(
                "evidence", "one of identifier, signed_data, document or qr_payload is required"
            )
        value: str | bytes = getattr(request.evidence, form)
        if not value:
            raise InvalidArgument.field(f"evidence.{form}", "required")
        check = LicenceCheckRequest(
            form=form,
            value=value,
            at_time=time_in(request, "at_time"),
            options=options_in(request.report_options),
        )
        pool = document_pool(VERIFY).run if form == "document" else run_sync
        verified = await finished(
            await pool(verify_licence_check, self.context, current_principal(), check)
        )
        return verify_pb2.VerifyLicenseResponse(
            report=report_to_pb(verified.report), signed_report=signed_pb(verified.signed)
        )


async def _upload(requests: AsyncIterator[Any], limit: int, what: str) -> tuple[Any, bytes]:
    """The header and the content of a client-streamed upload (VerifyPdfStream, VerifyOfd):
    the header first and only there, then chunks; RESOURCE_EXHAUSTED as soon as the announced
    size or the chunks received pass ``limit`` (the rest is not read); the announced size and
    SHA-256 checked after the last chunk."""
    header: Any = None
    received = bytearray()
    async for message in requests:
        part = message.WhichOneof("part")
        if header is None:
            if part != "header":
                raise InvalidArgument.field("header", "the first message must be the header")
            header = message.header
            if header.size_bytes < 0:
                raise InvalidArgument.field("header.size_bytes", "must not be negative")
            check_size(header.size_bytes, limit, what)
            continue
        if part == "header":
            raise InvalidArgument.field("header", "only the first message may be a header")
        if part != "chunk":
            raise InvalidArgument.field("chunk", "a message after the header must be a chunk")
        check_size(len(received) + len(message.chunk), limit, what)
        received += message.chunk
    if header is None:
        raise InvalidArgument.field("header", "the stream carried no header")
    if header.size_bytes and len(received) != header.size_bytes:
        raise InvalidArgument.field(
            "header.size_bytes",
            f"announced {header.size_bytes} bytes but received {len(received)}",
        )
    content = bytes(received)
    if header.HasField("expected_digest"):
        expected = header.expected_digest
        if expected.algorithm not in (
            common_pb2.DIGEST_ALGORITHM_SHA256,
            common_pb2.DIGEST_ALGORITHM_UNSPECIFIED,
        ):
            raise InvalidArgument.field(
                "header.expected_digest.algorithm", "only SHA-256 is supported"
            )
        if hashlib.sha256(content).digest() != expected.value:
            raise InvalidArgument.field(
                "header.expected_digest", "the received document does not have this SHA-256"
            )
    if not content:
        raise InvalidArgument.field("chunk", "the stream carried no content")
    return header, content
