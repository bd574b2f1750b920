"""VerifyPdf / VerifyPdfStream under hostile input (issue #13): a PDF with hundreds of empty
incremental updates is RESOURCE_EXHAUSTED naming the limit before any signature is checked, and
a cancelled call stops its check instead of holding a document worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from govtrust.pdf_guard import DEFAULT_LIMITS, DocumentLimits, configure_limits
from govtrust.rpc.offload import VERIFY, document_pool
from govtrust.v1 import verify_pb2
from tests.seal.conftest import World
from tests.untrusted_pdf import append_empty_updates
from tests.verify.conftest import VERIFIER
from tests.verify.test_grpc_documents import (  # noqa: F401 - the server fixture
    LIMIT,
    Server,
    _chunks,
    _sealed,
    server,
)

LIMIT_TEXT = "GOVTRUST_PDF_MAX_REVISIONS"


@pytest.fixture
def roomy_limits() -> Iterator[None]:
    configure_limits(DocumentLimits(max_revisions=10_000))
    yield
    configure_limits(DEFAULT_LIMITS)


def test_many_updates_are_resource_exhausted(server: Server, vworld: World) -> None:  # noqa: F811
    pdf = _sealed(vworld)
    hostile = append_empty_updates(pdf, 300)  # a report after seconds of work before the fix
    started = time.monotonic()
    server.fails(
        lambda: server.pdf(verify_pb2.VerifyPdfRequest(pdf=hostile)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        LIMIT_TEXT,
    )
    header = verify_pb2.VerifyPdfStreamRequest(
        header=verify_pb2.VerifyPdfStreamHeader(size_bytes=len(hostile))
    )
    server.fails(
        lambda: server.stream([header, *_chunks(hostile, 65536)]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        LIMIT_TEXT,
    )
    assert time.monotonic() - started < 10
    report = server.pdf(verify_pb2.VerifyPdfRequest(pdf=append_empty_updates(pdf, 20))).report
    assert report.document.revision_count == 22 and len(report.signatures) == 1


@pytest.mark.serial  # the check stops within 2 s of the cancellation
def test_a_cancelled_call_stops_its_check(
    server: Server,  # noqa: F811
    vworld: World,
    roomy_limits: None,
) -> None:
    hostile = append_empty_updates(_sealed(vworld), 1500)  # ~45 s before the fix, ~4 s now
    assert len(hostile) < LIMIT  # under the size limit: only the cancellation stops it
    pool = document_pool(VERIFY)
    call = server.stub.VerifyPdf.future(
        verify_pb2.VerifyPdfRequest(pdf=hostile), metadata=server.metadata(VERIFIER), timeout=120
    )
    deadline = time.monotonic() + 30
    while pool.admitted == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pool.admitted == 1, call.done() and call.exception()
    time.sleep(0.3)  # well into the check
    call.cancel()
    cancelled = time.monotonic()
    while pool.admitted and time.monotonic() - cancelled < 5:
        time.sleep(0.005)
    assert pool.admitted == 0, "the check went on after the call was cancelled"
    assert time.monotonic() - cancelled < 2
