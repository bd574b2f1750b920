"""Tests that kill the surviving mutants of license.document_check (docs/testing.md).

Each report of :func:`check_pdf` is compared whole — verdict, state, both reasons and the
licence's fields kept from the signed data — against what the signed-data check, the PDF reader
and the QR decoder say on their own.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from asn1crypto import cms

from govtrust.pdf_guard import DocumentLimits, DocumentTooComplex
from license.checking import LicenceCheck, State, Verdict, check_signed_data, failed_check
from license.days import licence_day
from license.document_check import MAX_PDF_BYTES, check_pdf
from license.errors import LicenceVerificationFailed
from license.pdf_reader import open_pdf
from license.qr import TrustList, decode_payload
from license.signed_data import verify_licence
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.types import PadesLevel, SealKind
from tests.license.test_document import Licence, _issue, licence  # noqa: F401 - fixture
from tests.seal.conftest import live_ca, world  # noqa: F401 - fixtures
from tests.unchanged import unchanged


def _failed(base: LicenceCheck, reason: str, message: str) -> LicenceCheck:
    """What ``invalid(..., base=base)`` reports: the licence's fields kept."""
    return replace(base, verdict=Verdict.INVALID, state=State.UNKNOWN, reasons=(reason, message))


def _refused(licence: Licence, pdf: bytes, **options: Any) -> LicenceCheck:  # noqa: F811
    """``check_pdf`` of the licence's roots and lists, checked to change nothing stored."""
    with unchanged(licence.world.db, licence.world.keystore):
        return check_pdf(pdf, licence.roots, licence.lists, **options)


def _bare(reason: str, message: str) -> LicenceCheck:
    return LicenceCheck(Verdict.INVALID, State.UNKNOWN, (reason, message))


def test_a_valid_document_reports_what_its_signed_data_says(licence: Licence) -> None:  # noqa: F811
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID
    assert check_pdf(pdf, licence.roots, licence.lists) == expected
    before = licence_day() - timedelta(days=1)
    early = check_pdf(pdf, licence.roots, licence.lists, today=before)
    assert early == check_signed_data(
        licence.doc.signed_data, licence.roots, licence.lists, today=before
    )
    assert early.state is State.NOT_YET_VALID
    # the digest covers the file: one byte changed is named, the licence still named
    tampered = pdf.replace(b"govtrust licence documents", b"govtrust licence Documents", 1)
    assert check_pdf(tampered, licence.roots, licence.lists) == _failed(
        expected,
        "PDF_SIGNATURE_INVALID",
        "the document was altered after sealing (digest mismatch)",
    )


def test_inputs_that_are_not_a_sealed_licence(licence: Licence) -> None:  # noqa: F811
    roots, lists = licence.roots, licence.lists
    for bad in (b"", b"garbage", b"%PDF-1.7\n garbage"):
        with pytest.raises(LicenceVerificationFailed) as info:
            open_pdf(bad)
        assert _refused(licence, bad) == _bare(info.value.reason.value, info.value.message)
    too_big = b"%PDF-1.7\n" + b"0" * (MAX_PDF_BYTES - 8)
    assert len(too_big) == MAX_PDF_BYTES + 1
    assert _refused(licence, too_big) == _bare(
        "MALFORMED", "a licence document is at most 20971520 bytes"
    )
    at_limit = _refused(licence, too_big[:-1])
    assert at_limit.reasons[0] == "MALFORMED" and "at most" not in at_limit.reasons[1]
    unsealed = licence.documents.render(licence.doc, licence.context.seal)
    assert _refused(licence, unsealed) == _bare(
        "PDF_UNSEALED", "the licence document carries no seal"
    )
    # sealed, but its signed data is broken: the signed-data check's own report
    broken = replace(licence.doc, signed_data="e30.e30.AAAA")
    with pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(broken.signed_data, roots)
    sealed_broken = licence.documents.make_pdf(broken, licence.context)
    assert _refused(licence, sealed_broken) == failed_check(info.value)
    # anything else that goes wrong is reported, not raised
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    odd_roots: list[object] = [object()]
    with pytest.raises(Exception) as raised:
        verify_licence(licence.doc.signed_data, odd_roots)  # type: ignore[arg-type]
    assert check_pdf(pdf, odd_roots, lists) == _bare(  # type: ignore[arg-type]
        "MALFORMED", f"the document cannot be checked: {raised.value}"
    )


def test_a_changed_or_second_signed_document(licence: Licence) -> None:  # noqa: F811
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    cover = generic.StreamObject(stream_data=b"q 1 g 100 300 300 80 re f Q")
    writer.add_stream_to_page(0, writer.add_object(cover))
    out = io.BytesIO()
    writer.write(out)
    assert _refused(licence, out.getvalue()) == _failed(
        expected,
        "PDF_MODIFIED",
        "the document was changed after sealing (coverage ENTIRE_REVISION, changes OTHER)",
    )
    # a second seal after the first: the earliest signature is the licence's, and the rest
    # of the file is a change it does not cover
    resealed, _, _ = licence.world.sealer.sign(
        licence.context, PdfSealRequest(licence.context.seal.id, pdf, Position(1, 100, 100))
    )
    report = _refused(licence, resealed)
    assert report.reasons[0] == "PDF_MODIFIED" and report.identifier == expected.identifier
    with pytest.raises(DocumentTooComplex):
        check_pdf(resealed, licence.roots, licence.lists, limits=DocumentLimits(max_signatures=1))
    with pytest.raises(DocumentTooComplex):
        check_pdf(resealed, licence.roots, licence.lists, limits=DocumentLimits(max_revisions=1))
    one = DocumentLimits(max_revisions=2, max_signatures=1)
    assert _refused(licence, pdf, limits=one) == expected


def test_a_seal_without_a_time_stamp(licence: Licence) -> None:  # noqa: F811
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    pdf = licence.documents.render(licence.doc, licence.context.seal)
    sealed, _, _ = licence.world.sealer.sign(
        licence.context,
        PdfSealRequest(licence.context.seal.id, pdf, Position(1, 240, 160), PadesLevel.B_B),
    )
    assert _refused(licence, sealed) == _failed(
        expected, "PDF_TIMESTAMP_INVALID", "no valid trusted time-stamp on the seal (PAdES B-T)"
    )


def test_another_seal_or_another_qr_payload(licence: Licence) -> None:  # noqa: F811
    w = licence.world
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    contract = w.active_seal(SealKind.CONTRACT)
    other_context = w.service.authorise_use(w.rep, contract.id, "licence")
    pdf = licence.documents.render(licence.doc, licence.context.seal)
    sealed, _, _ = w.sealer.sign(
        other_context, PdfSealRequest(contract.id, pdf, Position(1, 240, 160), PadesLevel.B_T)
    )
    assert _refused(licence, sealed) == _failed(
        expected,
        "PDF_SIGNER_MISMATCH",
        "the document is sealed by another certificate than the one that signed the licence",
    )
    other = _issue(w, serial="20230000777")
    mixed = replace(licence.doc, qr_payload=other.qr_payload)
    made = licence.documents.make_pdf(mixed, licence.context)
    assert _refused(licence, made) == _failed(
        expected, "QR_MISMATCH", "the embedded QR payload is of another licence"
    )
    payload = licence.doc.qr_payload
    bad_payload = payload[:-3] + ("000" if not payload.endswith("000") else "111")
    made = licence.documents.make_pdf(replace(licence.doc, qr_payload=bad_payload), licence.context)
    trust = TrustList(licence.roots)
    trust.add(verify_licence(licence.doc.signed_data, licence.roots).chain)
    with pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(bad_payload, trust)
    assert _refused(licence, made) == _failed(
        expected, "QR_MISMATCH", f"the embedded QR payload does not verify: {info.value}"
    )


def test_a_flipped_seal_signature_value_is_named(licence: Licence) -> None:  # noqa: F811
    """One bit of the CMS signature value flipped: the digest still matches, the signature fails.

    The bytes are patched in place (re-encoding the CMS with asn1crypto's ``dump(force=True)``
    is what once looked like a hang here: that re-encoding is slow, the check is not).
    """
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    found = re.search(rb"/Contents ?<([0-9a-fA-F]+)>", pdf)
    assert found is not None
    der = bytes.fromhex(found.group(1).decode())
    signature = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native
    flipped = bytearray(der)
    flipped[der.rindex(signature) + len(signature) - 3] ^= 0x01
    tampered = pdf[: found.start(1)] + bytes(flipped).hex().encode() + pdf[found.end(1) :]
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert _refused(licence, tampered) == _failed(
        expected, "PDF_SIGNATURE_INVALID", "the seal signature does not verify"
    )
