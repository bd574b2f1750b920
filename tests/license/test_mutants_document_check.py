"""Tests that kill the surviving mutants of license.document_check (docs/testing.md).

Each report of :func:`check_pdf` is compared whole — verdict, state, both reasons and the
licence's fields kept from the signed data — against what the signed-data check, the PDF reader
and the QR decoder say on their own. Seal certificates and time-stamps the seal service never
makes (a certificate that expired since sealing or before it, a self-signed one, a CMS without its
intermediates, a TSA no one trusts) are built here with the test CA's keys or pyHanko's test TSA.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asn1crypto import cms
from cryptography import x509

from govtrust.pdf_guard import DocumentLimits, DocumentTooComplex
from license.checking import LicenceCheck, State, Verdict, check_signed_data, failed_check
from license.days import licence_day
from license.document_check import MAX_PDF_BYTES, CheckedPdf, check_pdf, check_pdf_reading
from license.errors import LicenceVerificationFailed
from license.layout import DocumentInput
from license.pdf_reader import EmbeddedLicence, dss_certificates, open_pdf
from license.qr import TrustList, decode_payload
from license.signed_data import verify_licence
from seal.lifecycle import UseContext
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.types import PadesLevel, SealKind
from tests.license.test_document import Licence, _issue, licence  # noqa: F401 - fixture
from tests.seal.conftest import FILING, live_ca, world  # noqa: F401 - fixtures
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


# --- seal certificates and time-stamps the seal service does not make --------------------------


def _reissued(licence: Licence, not_before: datetime, not_after: datetime, **how: bool) -> bytes:  # noqa: F811
    """The licence's seal certificate again (same subject, key and extensions) valid from
    ``not_before`` to ``not_after``: issued by the seal's own issuing CA, with ``other_ca=True``
    by another issuing CA of the hierarchy, or with ``self_signed=True`` signed by the seal key
    itself (a root no one trusts)."""
    from asn1crypto import x509 as asn1_x509

    from ca.builder import build_certificate, random_serial
    from ca.signing import SigningKey

    real = asn1_x509.Certificate.load(licence.context.certificate_der)
    tbs = real["tbs_certificate"]
    kept = [e.dump() for e in tbs["extensions"] if e["extn_id"].dotted not in _KEY_IDS]
    if how.get("self_signed"):
        keystore = licence.world.keystore
        key = keystore.get(licence.context.key_id)
        signer = SigningKey(keystore, key.key_id, key.algorithm)
        issuer_name, issuer_key_id = tbs["subject"].dump(), real.key_identifier
    else:
        issuers = licence.world.authority.hierarchy.issuers.values()
        own = tbs["issuer"].dump()
        if how.get("other_ca"):
            issuing = next(i for i in issuers if i.role == "issuing" and i.subject_der != own)
        else:
            issuing = next(i for i in issuers if i.subject_der == own)
        signer, issuer_name, issuer_key_id = issuing.key, issuing.subject_der, issuing.key_id
    return build_certificate(
        signer=signer,
        issuer_name=issuer_name,
        issuer_key_id=issuer_key_id,
        subject=tbs["subject"].dump(),
        spki=tbs["subject_public_key_info"].dump(),
        serial=random_serial(),
        not_before=not_before,
        not_after=not_after,
        extensions=kept,
        ski_value=real.key_identifier,
    )


_KEY_IDS = ("2.5.29.14", "2.5.29.35")  # subject / authority key identifiers: the builder adds them


def _signed_with(licence: Licence, leaf_der: bytes) -> DocumentInput:  # noqa: F811
    """The licence's data signed again by the seal key under the certificate ``leaf_der``."""
    from cryptography import x509

    from license.qr import encode_payload
    from license.signed_data import sign_licence
    from license.signer import LicenceSigner

    keystore = licence.world.keystore
    chain = [x509.load_der_x509_certificate(d) for d in licence.world.seal_authority.chain()]
    signer = LicenceSigner(
        keystore,
        keystore.get(licence.context.key_id),
        (x509.load_der_x509_certificate(leaf_der), *(c for c in chain if c.issuer != c.subject)),
    )
    meta = licence.doc.metadata
    return replace(
        licence.doc, signed_data=sign_licence(signer, meta), qr_payload=encode_payload(signer, meta)
    )


def _sealed_under(licence: Licence, leaf_der: bytes) -> tuple[DocumentInput, bytes]:  # noqa: F811
    """The licence signed and its document sealed (PAdES B-T, the CA's TSA) under ``leaf_der``."""
    doc = _signed_with(licence, leaf_der)
    context = replace(licence.context, certificate_der=leaf_der)
    return doc, licence.documents.make_pdf(doc, context)


def _stamp_time(pdf: bytes) -> datetime:
    """The genTime of the seal's signature time-stamp."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    [sig] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    token = sig.signer_info["unsigned_attrs"][0]["values"][0]
    gen_time: datetime = token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
    return gen_time


def test_a_seal_certificate_expired_since_sealing_is_checked_at_its_expiry(
    licence: Licence,  # noqa: F811
) -> None:
    """A seal certificate valid for one instant only, the second the seal was time-stamped in,
    checked seconds later: the chain is checked one second before its expiry (pyHanko allows
    one second either way), not now, and a time-stamp on either bound is inside its validity."""
    sealed: tuple[DocumentInput, bytes, datetime] | None = None
    for _ in range(10):  # seal within the second the certificate is valid in (retry if late)
        time.sleep(1.02 - time.time() % 1)
        instant = datetime.now(UTC).replace(microsecond=0)
        leaf_der = _reissued(licence, instant, instant)
        doc, pdf = _sealed_under(licence, leaf_der)
        if _stamp_time(pdf) == instant:
            sealed = doc, pdf, instant
            break
    assert sealed is not None, "no seal was time-stamped within its certificate's second"
    doc, pdf, instant = sealed
    time.sleep(max(0.0, (instant + timedelta(seconds=2.5) - datetime.now(UTC)).total_seconds()))
    expected = check_signed_data(doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID and expected.state is State.VALID
    assert _refused(licence, pdf) == expected


def test_a_seal_time_stamped_after_its_certificate_expired(licence: Licence) -> None:  # noqa: F811
    """A seal certificate that ended before the seal was time-stamped (it starts with the CA,
    created a minute back-dated with the test's world, and lasts thirty seconds)."""
    chain = [x509.load_der_x509_certificate(d) for d in licence.world.seal_authority.chain()]
    start = max(c.not_valid_before_utc for c in chain)
    end = start + timedelta(seconds=30)
    leaf_der = _reissued(licence, start, end)
    doc, pdf = _sealed_under(licence, leaf_der)
    assert _stamp_time(pdf) > end + timedelta(seconds=1)
    expected = check_signed_data(doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID
    assert _refused(licence, pdf) == _failed(
        expected, "PDF_TIMESTAMP_INVALID", "sealed outside the seal certificate's validity"
    )


def test_a_seal_certificate_that_chains_to_no_trusted_root(licence: Licence) -> None:  # noqa: F811
    """The document sealed by the licence's own key under a self-signed certificate: the signed
    data verifies, the PDF's chain does not."""
    real = x509.load_der_x509_certificate(licence.context.certificate_der)
    leaf_der = _reissued(
        licence, real.not_valid_before_utc, real.not_valid_after_utc, self_signed=True
    )
    pdf = licence.documents.make_pdf(
        licence.doc, replace(licence.context, certificate_der=leaf_der)
    )
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID
    assert _refused(licence, pdf) == _failed(
        expected, "PDF_UNTRUSTED", "the seal certificate does not chain to a trusted root"
    )


def _fast_sealed(
    licence: Licence,  # noqa: F811
    pdf: bytes,
    chain: tuple[bytes, ...],
    timestamp: Callable[[bytes], bytes],
    context: UseContext | None = None,
) -> bytes:
    """``pdf`` sealed with the licence's seal (or ``context``'s key and certificate) by the fast
    path, the CMS carrying only ``chain`` besides the seal certificate, time-stamped by
    ``timestamp``."""
    from seal import fastpdf, images
    from seal.pdf import design_of

    context = context or licence.context
    stream = images.pdf_content(design_of(context.seal))[0]

    def place(count: int, box_of: Callable[[int], tuple[float, float, float, float]]) -> Any:
        return fastpdf.Visible(0, (100.0, 100.0, 200.0, 200.0), stream, 100.0, 100.0)

    sealed, _ = fastpdf.seal(
        fastpdf.FastRequest(
            pdf=pdf,
            field_name="Seal",
            place=place,
            reason="",
            location="",
            keystore=licence.world.keystore,
            key_id=context.key_id,
            template=fastpdf.cms_template(context.certificate_der, chain, context.scheme),
            timestamp=timestamp,
        )
    )
    return sealed


def test_a_seal_ca_found_only_in_the_signed_data(licence: Licence) -> None:  # noqa: F811
    """Neither the CMS (the seal certificate and the root only) nor the document's certificates
    (the CA hierarchy but the seal CA) carry the seal CA: the chain is completed from the
    licence's signed data (x5c)."""
    from asn1crypto import cms as asn1_cms

    from license.layout import lay_out
    from license.pdf_writer import write_pdf
    from seal.pdf import design_of

    authority = licence.world.seal_authority
    seal_ca, root = authority.chain()[0], authority.chain()[-1]
    assert x509.load_der_x509_certificate(licence.context.certificate_der).issuer == (
        x509.load_der_x509_certificate(seal_ca).subject
    )
    others = [d for d in authority.hierarchy_certificates() if d not in (seal_ca, root)]
    assert others  # the TSA's CA: its time-stamp is checked offline with the root
    page = lay_out(licence.doc, max(design_of(licence.context.seal).size_mm()))
    pdf = _fast_sealed(licence, write_pdf(page, licence.doc, others), (root,), authority.timestamp)
    found = re.search(rb"/Contents ?<([0-9a-fA-F]+)>", pdf)
    assert found is not None
    signed = asn1_cms.ContentInfo.load(bytes.fromhex(found.group(1).decode()))["content"]
    carried = {c.chosen.dump() for c in signed["certificates"]}
    assert carried == {licence.context.certificate_der, root}
    assert set(dss_certificates(open_pdf(pdf).root)) == set(others)
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID
    assert _refused(licence, pdf) == expected


def test_an_intact_time_stamp_of_an_untrusted_authority(licence: Licence) -> None:  # noqa: F811
    """A well-formed time-stamp whose TSA (pyHanko's test TSA, a self-signed RSA key) chains to
    no trusted root."""
    from asn1crypto import keys, tsp
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # pyHanko's is RSA-only
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Untrusted TSA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        tsa_key=keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
    )

    def timestamp(request: bytes) -> bytes:
        return bytes(stamper.request_tsa_response(tsp.TimeStampReq.load(request)).dump())

    unsealed = licence.documents.render(licence.doc, licence.context.seal)
    pdf = _fast_sealed(licence, unsealed, tuple(licence.world.seal_authority.chain()), timestamp)
    stamp = _validated(licence, pdf).timestamp_validity
    assert stamp is not None and stamp.intact and stamp.valid and not stamp.trusted
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert _refused(licence, pdf) == _failed(
        expected, "PDF_TIMESTAMP_INVALID", "no valid trusted time-stamp on the seal (PAdES B-T)"
    )


def _validated(licence: Licence, pdf: bytes, allow_fetching: bool = False) -> Any:  # noqa: F811
    """pyHanko's own status of the document's seal against the licence's root (revocation
    information fetched from the CA with ``allow_fetching``, else not looked up)."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    [sig] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    authority = licence.world.seal_authority
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(authority.chain()[-1])],
        other_certs=[asn1_x509.Certificate.load(d) for d in authority.chain()],
        allow_fetching=allow_fetching,
        revocation_mode="soft-fail",
    )
    return validate_pdf_signature(sig, context)


def test_a_seal_revoked_after_sealing_keeps_the_licence_valid(
    licence: Licence,  # noqa: F811
    live_ca: str,  # noqa: F811
) -> None:
    """The check is offline: a department seal revoked after it sealed a licence does not void
    the licence (its status list does). The CA's OCSP responder and CRLs are served here, and a
    validation that fetches them sees the revocation."""
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    licence.world.service.revoke(FILING, licence.context.seal.id, "department reorganised")
    time.sleep(1.1)  # revocation times have whole seconds
    fetched = _validated(licence, pdf, allow_fetching=True)
    assert fetched.intact and fetched.valid and not fetched.trusted
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID
    assert _refused(licence, pdf) == expected


def test_a_seal_ca_found_only_in_the_document(licence: Licence) -> None:  # noqa: F811
    """The document sealed by the licence's key under a certificate of another issuing CA of
    the hierarchy, which only the document's certificates (/DSS) carry: the seal's chain is
    complete and trusted, and the seal is named as another certificate than the licence's."""
    real = x509.load_der_x509_certificate(licence.context.certificate_der)
    other_der = _reissued(
        licence, real.not_valid_before_utc, real.not_valid_after_utc, other_ca=True
    )
    other = x509.load_der_x509_certificate(other_der)
    authority = licence.world.seal_authority
    root = authority.chain()[-1]
    [other_ca] = [
        d
        for d in authority.hierarchy_certificates()
        if x509.load_der_x509_certificate(d).subject == other.issuer
    ]
    assert other.issuer != real.issuer and other_ca not in authority.chain()
    context = replace(licence.context, certificate_der=other_der)
    unsealed = licence.documents.render(licence.doc, context.seal)
    assert other_ca in dss_certificates(open_pdf(unsealed).root)
    pdf = _fast_sealed(licence, unsealed, (root,), authority.timestamp, context=context)
    expected = check_signed_data(licence.doc.signed_data, licence.roots, licence.lists)
    assert expected.verdict is Verdict.VALID
    assert _refused(licence, pdf) == _failed(
        expected,
        "PDF_SIGNER_MISMATCH",
        "the document is sealed by another certificate than the one that signed the licence",
    )


def test_the_reading_gives_back_the_licence_it_read(licence: Licence) -> None:  # noqa: F811
    """``check_pdf_reading``: the report of ``check_pdf`` and the licence as the file carries
    it (the sealed revision's), or None when the file holds no readable licence."""
    carried = EmbeddedLicence(licence.doc.signed_data, licence.doc.qr_payload)
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    reading = check_pdf_reading(pdf, licence.roots, licence.lists)
    assert reading == CheckedPdf(check_pdf(pdf, licence.roots, licence.lists), carried)
    assert reading.check.verdict is Verdict.VALID
    unsealed = licence.documents.render(licence.doc, licence.context.seal)
    assert check_pdf_reading(unsealed, licence.roots, licence.lists) == CheckedPdf(
        _bare("PDF_UNSEALED", "the licence document carries no seal"), carried
    )
    garbage = check_pdf_reading(b"garbage", licence.roots, licence.lists)
    assert garbage.embedded is None and garbage.check.reasons[0] == "MALFORMED"
