"""VerifyPdf's corpus (issue #8, "Must show"): each case made for real, with the expected verdict
and reason codes, and for the PDFs the verdict agrees with poppler's pdfsig (NSS, our root — and
the external test CA where it is configured — imported with certutil) on integrity and trust.

How the cases are made:

* seals go on with the real seal service (``world.sealer``: authorisation, key store, our TSA);
* "revoked seal used after revocation": the seal service refuses to seal with a revoked seal, so
  the case is what a stolen or retained key looks like — a use context authorised while the
  seal was active, the seal then revoked through its lifecycle (its certificate revoked in the
  CA), and the retained context used to sign afterwards (``SealPdf.sign``: the signing step with
  the key, time-stamped by our TSA *after* the revocation);
* "signed before revocation": sealed, then revoked through the lifecycle with the CA's and the
  seal service's clocks five seconds ahead (time-stamps and revocation times have whole-second
  precision, and the verifier gives the signer the benefit of none of that second);
* "expired" and "unknown CA": a self-made CA (``cryptography``) and pyHanko's own signer, with a
  time-stamp from our TSA; configured as an external anchor for "expired", not at all for
  "unknown CA".
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from govtrust.errors import InvalidArgument, ResourceExhausted
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.signing import CaTimeStamper
from seal.types import PadesLevel, SealKind
from tests.conftest import require_tool
from tests.seal.conftest import FILING, World, one_page_pdf
from tests.unchanged import unchanged
from tests.verify.conftest import VERIFIER, TestCa
from verify.pdf import PdfCheck, verify_pdf, verify_pdf_check
from verify.report import (
    Coverage,
    ModificationLevel,
    ReasonCode,
    RevocationStatus,
    SigningTimeSource,
    Verdict,
    VerificationReport,
)
from verify.report import PadesLevel as ReportPades
from verify.service import VerifyConfig, VerifyContext

# --- helpers -----------------------------------------------------------------------------------


def codes(report: VerificationReport) -> set[ReasonCode]:
    """The reason codes of a report."""
    return {r.code for r in report.reasons}


def warning_codes(report: VerificationReport) -> set[ReasonCode]:
    """The warning codes of a report."""
    return {r.code for r in report.warnings}


def nss_db(tmp_path: Path, roots: list[bytes]) -> Path:
    """A fresh NSS database trusting ``roots`` (DER) for signing."""
    certutil = require_tool("certutil")
    directory = tmp_path / "nss"
    directory.mkdir(exist_ok=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{directory}", "--empty-password"], check=True)
    for i, der in enumerate(roots):
        path = tmp_path / f"root{i}.der"
        path.write_bytes(der)
        subprocess.run(
            [certutil, "-A", "-d", f"sql:{directory}", "-n", f"root{i}", "-t", ",C,", "-i", path],
            check=True,
        )
    return directory


def pdfsig(nss: Path, pdf: bytes, tmp_path: Path) -> list[str]:
    """pdfsig's per-signature reports (it exits non-zero on some verdicts: read its text)."""
    binary = require_tool("pdfsig")
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        [binary, "-nssdir", f"sql:{nss}", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout.split("Signature #")[1:]


def pdfsig_intact(report: str) -> bool:
    """pdfsig's integrity verdict for one signature."""
    return "Signature is Valid" in report


def pdfsig_trust(report: str) -> str:
    """pdfsig's certificate verdict: trusted, revoked, expired, untrusted or unknown."""
    if "Certificate is Trusted" in report:
        return "trusted"
    if "Revoked" in report:
        return "revoked"
    if "Expired" in report:
        return "expired"
    if "issuer isn't Trusted" in report or "Issuer is Unknown" in report:
        return "untrusted"
    return "unknown"


def seal_pdf(world: World, seal_id: str, pdf: bytes, level: PadesLevel = PadesLevel.B_T) -> bytes:
    """``pdf`` sealed by the company's representative with the real seal service."""
    return world.sealer.seal(
        world.rep, PdfSealRequest(seal_id, pdf, Position(1, 100, 100), level, "contract")
    ).sealed_pdf


def self_signed_pdf(
    world: World,
    ca: TestCa,
    pdf: bytes,
    *,
    not_after: datetime | None = None,
    timestamp: bool = True,
) -> tuple[bytes, x509.Certificate]:
    """``pdf`` signed (PAdES, pyHanko's own signer) by a fresh leaf of ``ca``, time-stamped by
    our TSA; returns the PDF and the leaf."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "external signer")]))
        .issuer_name(ca.root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    der = serialization.Encoding.DER
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(leaf.public_bytes(der)),
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        ),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(ca.root.public_bytes(der))]
        ),
    )
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)),
        signers.PdfSignatureMetadata(
            field_name="External", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
        ),
        signer=signer,
        timestamper=CaTimeStamper(world.seal_authority) if timestamp else None,
    )
    return out.getvalue(), leaf


def retained_context_signature(world: World, pdf: bytes) -> tuple[bytes, str]:
    """A seal revoked through its lifecycle, then its key used anyway (see the docstring)."""
    seal = world.active_seal(SealKind.FINANCE)
    context = world.service.authorise_use(world.rep, seal.id, "contract")
    world.service.revoke(FILING, seal.id, "key card reported stolen")
    signed, _, _ = world.sealer.sign(
        context, PdfSealRequest(seal.id, pdf, Position(1, 60, 60), PadesLevel.B_T)
    )
    return signed, seal.id


# --- the corpus ----------------------------------------------------------------------------------


def test_valid_sealed_pdf(ctx: VerifyContext, vworld: World, live_ca: str, tmp_path: Path) -> None:
    seal = vworld.active_seal()
    pdf = seal_pdf(vworld, seal.id, one_page_pdf())
    report = verify_pdf(ctx, pdf)
    assert report.verdict is Verdict.VALID, report.reasons
    assert report.reasons == () and report.warnings == ()
    [sig] = report.signatures
    assert sig.intact and sig.signature_valid and sig.coverage is Coverage.ENTIRE_FILE
    assert sig.modification_level is ModificationLevel.NONE
    assert sig.pades_level is ReportPades.B_T
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
    assert sig.certificate is not None and sig.certificate.trusted
    assert sig.certificate.chain[-1].subject == "CN=govtrust Root CA,O=govtrust,C=CN"
    assert sig.certificate.revocation_at_validation_time is not None
    assert sig.certificate.revocation_at_validation_time.status is RevocationStatus.GOOD
    assert sig.seal is not None and sig.seal.seal_id == seal.id
    assert sig.seal.kind is SealKind.CONTRACT and sig.seal.owner is not None
    assert sig.seal.owner.masked_identifier == "91350100M000100Y43"
    # who applied it: the seal-use record of the document the seal service was handed
    assert sig.seal.applied_by is not None and sig.seal.applied_by.display_name == "张三"
    assert sig.seal.applied_by.id == vworld.rep.citizen_id
    assert sig.seal.status_at_signing_time is not None
    assert sig.seal.status_at_signing_time.value == "active" and sig.pages == (1,)
    assert report.document is not None and report.document.signature_count == 1
    assert (
        report.document.page_count == 1
        and not report.document.unsigned_changes_after_last_signature
    )

    [peer] = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), pdf, tmp_path)
    assert pdfsig_intact(peer) and pdfsig_trust(peer) == "trusted", peer


def test_tampered_after_sealing(ctx: VerifyContext, vworld: World, tmp_path: Path) -> None:
    seal = vworld.active_seal()
    pdf = seal_pdf(vworld, seal.id, one_page_pdf())
    tampered = pdf.replace(b"Seal here", b"Seal HERE", 1)  # inside the signed byte range
    assert tampered != pdf and len(tampered) == len(pdf)
    report = verify_pdf(ctx, tampered)
    assert report.verdict is Verdict.INVALID
    assert ReasonCode.DIGEST_MISMATCH in codes(report)
    assert not report.signatures[0].intact

    [peer] = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), tampered, tmp_path)
    assert not pdfsig_intact(peer) and "Digest Mismatch" in peer, peer


def test_revoked_seal_used_after_revocation(
    ctx: VerifyContext, vworld: World, live_ca: str, tmp_path: Path
) -> None:
    pdf, seal_id = retained_context_signature(vworld, one_page_pdf())
    report = verify_pdf(ctx, pdf)
    assert report.verdict is Verdict.INVALID
    assert {ReasonCode.CERTIFICATE_REVOKED, ReasonCode.SEAL_NOT_ACTIVE} <= codes(report)
    [sig] = report.signatures
    assert sig.intact and sig.signature_valid  # the bytes are fine: the seal was not
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.seal is not None and sig.seal.seal_id == seal_id
    assert sig.seal.status_at_signing_time is not None
    assert sig.seal.status_at_signing_time.value == "revoked"
    assert sig.seal.applied_by is None  # no use was ever recorded for this signature

    [peer] = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), pdf, tmp_path)
    assert pdfsig_intact(peer) and pdfsig_trust(peer) == "revoked", peer


def test_signed_before_revocation_with_timestamp(
    ctx: VerifyContext,
    vworld: World,
    live_ca: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seal = vworld.active_seal()
    pdf = seal_pdf(vworld, seal.id, one_page_pdf())
    later = datetime.now(UTC) + timedelta(seconds=5)
    monkeypatch.setattr("ca.revocation.now", lambda: later.replace(microsecond=0))
    monkeypatch.setattr(vworld.service, "_clock", lambda: later)
    vworld.service.revoke(FILING, seal.id, "company closed its contract desk")
    monkeypatch.undo()

    report = verify_pdf(ctx, pdf)
    assert report.verdict is Verdict.VALID, report.reasons
    assert {ReasonCode.CERTIFICATE_REVOKED, ReasonCode.SEAL_NOT_ACTIVE} <= warning_codes(report)
    [sig] = report.signatures
    assert sig.certificate is not None
    assert sig.certificate.revocation_at_validation_time is not None
    assert sig.certificate.revocation_at_validation_time.status is RevocationStatus.GOOD
    assert sig.certificate.revocation_now is not None
    assert sig.certificate.revocation_now.status is RevocationStatus.REVOKED
    assert sig.seal is not None and sig.seal.status_now is not None
    assert sig.seal.status_now.value == "revoked"
    assert sig.seal.status_at_signing_time is not None
    assert sig.seal.status_at_signing_time.value == "active"

    # pdfsig judges the certificate now: intact, and revoked now — as our revocation_now says
    [peer] = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), pdf, tmp_path)
    assert pdfsig_intact(peer) and pdfsig_trust(peer) in ("revoked", "unknown"), peer

    # the same signature without its time-stamp's proof is not provable: a B-B seal, revoked
    seal_b = vworld.active_seal(SealKind.FINANCE)
    bb = seal_pdf(vworld, seal_b.id, one_page_pdf(), PadesLevel.B_B)
    vworld.service.revoke(FILING, seal_b.id, "closed")
    report = verify_pdf(ctx, bb)
    assert report.verdict is Verdict.INDETERMINATE
    assert ReasonCode.NO_TRUSTED_TIME in codes(report)
    assert report.signatures[0].signing_time_source is SigningTimeSource.CLAIMED


def test_expired_certificate(vworld: World, other_ca: TestCa, tmp_path: Path, live_ca: str) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(other_ca.root.public_bytes(serialization.Encoding.PEM))
    context = VerifyContext(
        vworld.db,
        vworld.keystore,
        vworld.authority,
        config=VerifyConfig(trust_anchors=str(anchors), fetch_timeout_seconds=1.0),
        seals=vworld.service,
    )
    try:
        expired_at = datetime.now(UTC) - timedelta(days=1)
        pdf, _ = self_signed_pdf(vworld, other_ca, one_page_pdf(), not_after=expired_at)
        report = verify_pdf(context, pdf)
        assert report.verdict is Verdict.INVALID
        assert ReasonCode.CERTIFICATE_EXPIRED in codes(report)
        [sig] = report.signatures
        assert sig.intact and sig.signing_time_source is SigningTimeSource.TIMESTAMP
        assert sig.certificate is not None and not sig.certificate.within_validity_period

        peer_db = nss_db(
            tmp_path,
            [
                vworld.seal_authority.chain()[-1],
                other_ca.root.public_bytes(serialization.Encoding.DER),
            ],
        )
        [peer] = pdfsig(peer_db, pdf, tmp_path)
        assert pdfsig_intact(peer) and pdfsig_trust(peer) == "expired", peer

        # a still-valid certificate of the same CA: trusted, but revocation unknown (no OCSP
        # or CRL in it) → INDETERMINATE, never VALID
        fresh, _ = self_signed_pdf(vworld, other_ca, one_page_pdf())
        report = verify_pdf(context, fresh)
        assert report.verdict is Verdict.INDETERMINATE
        assert codes(report) == {ReasonCode.REVOCATION_UNKNOWN}
    finally:
        context.close()

    # validation time in the future past the seal certificate's expiry, no trusted time (B-B)
    seal = vworld.active_seal()
    bb = seal_pdf(vworld, seal.id, one_page_pdf(), PadesLevel.B_B)
    assert seal.valid_until is not None
    report = verify_pdf(ctx_for(vworld), bb, at=seal.valid_until + timedelta(days=1))
    assert report.verdict is Verdict.INDETERMINATE
    assert ReasonCode.NO_TRUSTED_TIME in codes(report)
    assert "expired" in " ".join(r.message for r in report.reasons).lower() or "过期" in " ".join(
        r.message for r in report.reasons
    )


def ctx_for(world: World) -> VerifyContext:
    """A default verification context over ``world``."""
    return VerifyContext(world.db, world.keystore, world.authority, seals=world.service)


def test_unknown_ca(ctx: VerifyContext, vworld: World, other_ca: TestCa, tmp_path: Path) -> None:
    pdf, _ = self_signed_pdf(vworld, other_ca, one_page_pdf())
    report = verify_pdf(ctx, pdf)
    assert report.verdict is Verdict.INDETERMINATE
    assert ReasonCode.UNKNOWN_ISSUER in codes(report)
    [sig] = report.signatures
    assert sig.intact and sig.signature_valid and sig.certificate is not None
    assert not sig.certificate.trusted and sig.seal is None

    [peer] = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), pdf, tmp_path)
    assert pdfsig_intact(peer) and pdfsig_trust(peer) in ("untrusted", "unknown"), peer


def test_two_seals_one_invalid(
    ctx: VerifyContext, vworld: World, live_ca: str, tmp_path: Path
) -> None:
    good = vworld.active_seal()
    first = seal_pdf(vworld, good.id, one_page_pdf())
    both, bad_id = retained_context_signature(vworld, first)
    report = verify_pdf(ctx, both)
    assert report.verdict is Verdict.INVALID
    first_sig, second_sig = report.signatures
    assert first_sig.verdict is Verdict.VALID, first_sig.reasons
    assert first_sig.coverage is Coverage.ENTIRE_REVISION
    assert first_sig.modification_level is ModificationLevel.FORM_FILLING
    assert second_sig.verdict is Verdict.INVALID and second_sig.coverage is Coverage.ENTIRE_FILE
    assert {r.subject.split(".")[0] for r in report.reasons} == {"signatures[1]"}
    assert second_sig.seal is not None and second_sig.seal.seal_id == bad_id

    peers = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), both, tmp_path)
    assert len(peers) == 2 and all(pdfsig_intact(p) for p in peers), peers
    assert pdfsig_trust(peers[0]) == "trusted" and pdfsig_trust(peers[1]) == "revoked", peers


def test_incremental_update_adding_content(
    ctx: VerifyContext, vworld: World, tmp_path: Path
) -> None:
    seal = vworld.active_seal()
    pdf = seal_pdf(vworld, seal.id, one_page_pdf())
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    stream = generic.StreamObject(stream_data=b"BT /F1 30 Tf 72 500 Td (PAID IN FULL) Tj ET")
    writer.add_stream_to_page(0, writer.add_object(stream))
    out = io.BytesIO()
    writer.write(out)
    updated = out.getvalue()
    assert updated.startswith(pdf)

    report = verify_pdf(ctx, updated)
    assert report.verdict is Verdict.INVALID
    assert ReasonCode.DISALLOWED_MODIFICATION in codes(report)
    [sig] = report.signatures
    assert sig.intact and sig.coverage is Coverage.ENTIRE_REVISION
    assert sig.modification_level is ModificationLevel.OTHER
    assert report.document is not None and report.document.revision_count == 3
    assert report.document.unsigned_changes_after_last_signature

    # pdfsig: the signed range is intact, but the signature no longer covers the document
    [peer] = pdfsig(nss_db(tmp_path, [vworld.seal_authority.chain()[-1]]), updated, tmp_path)
    assert pdfsig_intact(peer) and "not total document signed" in peer.lower(), peer


def test_truncated_garbage_and_other_bad_input(ctx: VerifyContext, vworld: World) -> None:
    seal = vworld.active_seal()
    pdf = seal_pdf(vworld, seal.id, one_page_pdf(), PadesLevel.B_B)
    cases = {
        "truncated": pdf[: len(pdf) // 2],
        "garbage": bytes(range(256)) * 40,
        "text": b"hello, this is not a PDF",
        "header only": b"%PDF-1.7\n%%EOF\n",
    }
    for name, data in cases.items():
        report = verify_pdf(ctx, data)
        assert report.verdict is Verdict.INVALID, name
        assert codes(report) == {ReasonCode.FORMAT_ERROR}, (name, report.reasons)
        assert report.signatures == () and report.document is not None
        assert report.document.size_bytes == len(data)
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    locked = copy_into_new_writer(PdfFileReader(io.BytesIO(pdf)))
    locked.encrypt("owner", "user")
    out = io.BytesIO()
    locked.write(out)
    encrypted = verify_pdf(ctx, out.getvalue())
    assert encrypted.verdict is Verdict.INVALID and codes(encrypted) == {ReasonCode.FORMAT_ERROR}
    assert "encrypted" in encrypted.reasons[0].message or "加密" in encrypted.reasons[0].message
    unsigned = verify_pdf(ctx, one_page_pdf())
    assert unsigned.verdict is Verdict.INVALID and codes(unsigned) == {ReasonCode.NO_SIGNATURE}
    assert unsigned.document is not None and unsigned.document.page_count == 1

    # nothing to check, or more than we agree to read: errors, and nothing is audited
    with unchanged(vworld.db, vworld.keystore), pytest.raises(InvalidArgument, match="pdf"):
        verify_pdf(ctx, b"")
    small = VerifyContext(
        vworld.db, vworld.keystore, vworld.authority, config=VerifyConfig(max_pdf_bytes=1000)
    )
    with (
        unchanged(vworld.db, vworld.keystore),
        pytest.raises(ResourceExhausted, match="limit of 1000 bytes"),
    ):
        verify_pdf_check(small, VERIFIER, PdfCheck(pdf))


def test_report_check_is_audited_and_signed(ctx: VerifyContext, vworld: World) -> None:
    from verify.report import ReportFormat, ReportOptions, verify_signed_report

    seal = vworld.active_seal()
    pdf = seal_pdf(vworld, seal.id, one_page_pdf())
    verified = verify_pdf_check(
        ctx,
        VERIFIER,
        PdfCheck(pdf, options=ReportOptions(ReportFormat.SIGNED_JSON, "en", "case-42")),
    )
    verified.audited.result(timeout=30)
    assert verified.report.verdict is Verdict.VALID and verified.report.reference == "case-42"
    assert verified.signed is not None
    payload = verify_signed_report(verified.signed.jws, ctx.our_roots)
    assert payload["verdict"] == "VERDICT_VALID" and payload["reference"] == "case-42"
    assert "document verification result: VALID" in verified.report.summary
    from sqlalchemy import select

    from govtrust.audit import AuditRecord

    with vworld.db.read() as session:
        rows = list(session.scalars(select(AuditRecord).where(AuditRecord.action == "verify.pdf")))
    assert len(rows) == 1 and rows[0].actor == VERIFIER.actor
    assert rows[0].target == "sha256:" + hashlib.sha256(pdf).hexdigest()
    from govtrust.errors import PermissionDenied
    from tests.verify.conftest import NOBODY

    with unchanged(vworld.db, vworld.keystore), pytest.raises(PermissionDenied):
        verify_pdf_check(ctx, NOBODY, PdfCheck(pdf))


# --- the faster /Contents reader ----------------------------------------------------------------

_HEX_ALPHABET = "0123456789abcdefABCDEF \n\r\t\x00\x0c%gZ<>"


@settings(max_examples=400)
@given(text=st.text(alphabet=_HEX_ALPHABET, max_size=200), tail=st.binary(max_size=20))
def test_fast_hex_reader_matches_pyhanko(text: str, tail: bytes) -> None:
    """Same object and the same stream position as pyHanko's reader, or the same error class."""
    from pyhanko.pdf_utils.misc import PdfError

    from verify.pdf import _fast_read_hex_string, _original_hex_reader

    data = b"<" + text.encode("latin-1") + tail

    def run(reader: object) -> tuple[object, ...] | type:
        stream = io.BytesIO(data)
        try:
            value = reader(stream)  # type: ignore[operator]
        except (PdfError, ValueError) as exc:
            return type(exc)
        return (type(value), bytes(value.original_bytes), stream.tell())

    assert run(_fast_read_hex_string) == run(_original_hex_reader)


def test_concurrent_verifications_agree(ctx: VerifyContext, vworld: World) -> None:
    """Threads sharing one verifier (caches, per-thread connections) give each document its
    own, correct answer."""
    from concurrent.futures import ThreadPoolExecutor

    seal = vworld.active_seal()
    good = seal_pdf(vworld, seal.id, one_page_pdf())
    bad = good.replace(b"Seal here", b"Seal HERE", 1)
    inputs = [good, bad, b"garbage" * 10] * 8
    expected = [Verdict.VALID, Verdict.INVALID, Verdict.INVALID] * 8
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda pdf: verify_pdf(ctx, pdf).verdict, inputs))
    assert verdicts == expected
