"""VerifyCertificate in the domain: path, validity, revocation (registry, OCSP, CRL), purpose,
identity, bad input — against our real CA on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from ca.models import CaCertificate
from govtrust.audit import AuditRecord
from govtrust.errors import InvalidArgument, PermissionDenied
from idp.types import IdentityKind, IdentityStatus
from tests.seal.conftest import World
from tests.unchanged import Snapshot, unchanged
from tests.verify.conftest import (
    NOBODY,
    OPERATOR,
    VERIFIER,
    TestCa,
    assured_citizen,
    der,
    issue_citizen,
    issue_service,
)
from verify.certificates import (
    CertificateCheck,
    load_certificate,
    named_identity,
    verify_certificate,
)
from verify.report import (
    CertificateProfile,
    CertificatePurpose,
    ReasonCode,
    ReportFormat,
    ReportOptions,
    RevocationCheck,
    RevocationReasonCode,
    RevocationStatus,
    StatusSource,
    Verdict,
    VerificationReport,
)
from verify.service import VerifyConfig, VerifyContext


def _same(vworld: World) -> AbstractContextManager[Snapshot]:
    """A refused verification stores nothing: no audit record, no row, no key."""
    return unchanged(vworld.db, vworld.keystore)


def check(ctx: VerifyContext, certificate: bytes, **kwargs: Any) -> VerificationReport:
    verified = verify_certificate(ctx, VERIFIER, CertificateCheck(certificate, **kwargs))
    verified.audited.result(timeout=30)
    return verified.report


def codes(report: VerificationReport) -> list[ReasonCode]:
    return [r.code for r in report.reasons]


def test_valid_citizen_certificate_names_its_identity(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    report = check(
        ctx,
        issued.certificate.der,
        purpose=CertificatePurpose.DOCUMENT_SIGNING,
        options=ReportOptions(locale="en"),
    )
    assert report.verdict is Verdict.VALID, report.reasons
    cert = report.certificate
    assert cert is not None and cert.verdict is Verdict.VALID and cert.trusted
    assert cert.within_validity_period and cert.purpose_allowed
    assert cert.certificate is not None
    assert cert.certificate.profile is CertificateProfile.CITIZEN
    assert cert.certificate.issuer_ca == "citizen"
    assert cert.certificate.der == issued.certificate.der
    assert [c.issuer_ca for c in cert.chain] == ["citizen", "root", ""]
    assert cert.chain[-1].profile is CertificateProfile.ROOT_CA
    assert cert.revocation_now is not None
    assert cert.revocation_now.status is RevocationStatus.GOOD
    assert cert.revocation_now.source is StatusSource.REGISTRY
    assert cert.identity is not None and cert.identity.id == citizen
    assert cert.identity.kind is IdentityKind.CITIZEN
    assert cert.identity.status is IdentityStatus.ACTIVE
    assert (
        cert.identity.masked_identifier.startswith("1101")
        and "*" in cert.identity.masked_identifier
    )
    assert "VALID" in report.summary and "Certificate subject" in report.summary
    named = named_identity(load_certificate(issued.certificate.der)[0], "1.3.6.1.4.1.32473.1")
    assert named.kind == "citizen" and named.identifier.endswith(
        cert.identity.masked_identifier[-4:]
    )
    # PEM works the same
    pem = load_certificate(issued.certificate.der)[0].public_bytes(Encoding.PEM)
    assert check(ctx, pem).verdict is Verdict.VALID


def test_every_call_is_audited_with_hashes_only(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    with vworld.db.read() as session:
        before = session.scalar(select(func.count()).select_from(AuditRecord))
        certs_before = session.scalar(select(func.count()).select_from(CaCertificate))
    report = check(ctx, issued.certificate.der, options=ReportOptions(reference="case-42"))
    with vworld.db.read() as session:
        rows = list(
            session.scalars(select(AuditRecord).where(AuditRecord.action == "verify.certificate"))
        )
        after = session.scalar(select(func.count()).select_from(AuditRecord))
        certs_after = session.scalar(select(func.count()).select_from(CaCertificate))
    assert after == (before or 0) + 1 and certs_after == certs_before
    assert len(rows) == 1
    row = rows[0]
    assert row.actor == VERIFIER.actor and row.outcome == "valid"
    assert report.evidence_digest is not None
    assert row.target == f"sha256:{report.evidence_digest.value.hex()}"
    assert report.report_id in row.details
    assert "case-42" not in row.details and "张三" not in row.details


def test_caller_needs_the_verifier_role(vworld: World, ctx: VerifyContext, citizen: str) -> None:
    issued = issue_citizen(vworld, citizen)
    with _same(vworld), pytest.raises(PermissionDenied):
        verify_certificate(ctx, NOBODY, CertificateCheck(issued.certificate.der))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30\x03\x02\x01\x01",
        b"garbage" * 10,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_garbage_is_invalid_argument_and_not_audited(
    vworld: World, ctx: VerifyContext, data: bytes
) -> None:
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify_certificate(ctx, VERIFIER, CertificateCheck(data))
    assert info.value.violations[0].field == "certificate"


def test_garbage_intermediate_names_its_index(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify_certificate(
            ctx, VERIFIER, CertificateCheck(issued.certificate.der, intermediates=(b"x",))
        )
    assert info.value.violations[0].field == "intermediates[0]"


def test_unknown_ca_is_indeterminate(ctx: VerifyContext, other_ca: TestCa) -> None:
    report = check(ctx, der(other_ca.leaf()), options=ReportOptions(locale="en"))
    assert report.verdict is Verdict.INDETERMINATE
    assert codes(report) == [ReasonCode.UNKNOWN_ISSUER]
    assert "Other Root CA" in report.reasons[0].message
    assert report.certificate is not None and not report.certificate.trusted
    assert report.certificate.chain == ()
    # even the intermediates cannot help without an anchor
    report = check(ctx, der(other_ca.leaf()), intermediates=(der(other_ca.root),))
    assert report.verdict is Verdict.INDETERMINATE
    assert codes(report) == [ReasonCode.UNKNOWN_ISSUER]


def test_forged_certificate_with_our_issuer_name_is_invalid(
    vworld: World, ctx: VerifyContext
) -> None:
    """A certificate naming our citizen CA as issuer but signed by another key."""
    from cryptography import x509

    citizen_ca = x509.load_der_x509_certificate(vworld.authority.hierarchy.get("citizen").der)
    leaf = TestCa().leaf()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(citizen_ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    report = check(ctx, der(forged))
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.CHAIN_INVALID]


def test_external_anchor_from_a_pem_bundle(
    vworld: World, other_ca: TestCa, tmp_path: object
) -> None:
    from pathlib import Path

    bundle = Path(str(tmp_path)) / "anchors.pem"
    bundle.write_bytes(other_ca.root.public_bytes(Encoding.PEM))
    context = VerifyContext(
        vworld.db,
        vworld.keystore,
        vworld.authority,
        config=VerifyConfig(trust_anchors=str(bundle)),
    )
    try:
        # trusted now, but no revocation information at all: INDETERMINATE saying so
        report = check(context, der(other_ca.leaf()), options=ReportOptions(locale="en"))
        assert report.certificate is not None and report.certificate.trusted
        assert report.verdict is Verdict.INDETERMINATE
        assert codes(report) == [ReasonCode.REVOCATION_UNKNOWN]
        assert "no OCSP URL or CRL distribution point" in report.reasons[0].message
        # expired (a real past validity) → INVALID with the expiry reason
        now = datetime.now(UTC)
        expired = other_ca.leaf(
            not_before=now - timedelta(days=60), not_after=now - timedelta(days=30)
        )
        report = check(context, der(expired))
        assert report.verdict is Verdict.INVALID
        assert ReasonCode.CERTIFICATE_EXPIRED in codes(report)
        assert report.certificate is not None and not report.certificate.within_validity_period
    finally:
        context.close()


def test_expired_at_the_requested_time(vworld: World, ctx: VerifyContext, citizen: str) -> None:
    issued = issue_citizen(vworld, citizen, validity_days=1)
    later = datetime.now(UTC) + timedelta(days=3)
    report = check(ctx, issued.certificate.der, at_time=later, options=ReportOptions(locale="en"))
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.CERTIFICATE_EXPIRED]
    assert report.reasons[0].subject == "certificate.chain[0]"
    assert report.validation_time == later
    earlier = datetime.now(UTC) - timedelta(days=3)
    report = check(ctx, issued.certificate.der, at_time=earlier)
    assert set(codes(report)) == {ReasonCode.CERTIFICATE_NOT_YET_VALID}  # the new CAs too
    assert report.reasons[0].subject == "certificate.chain[0]"


def test_revoked_certificate_is_invalid_with_the_reason(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    assert check(ctx, issued.certificate.der).verdict is Verdict.VALID
    before = datetime.now(UTC)
    vworld.authority.revoke(OPERATOR, issued.certificate.id, reason=1, comment="lost token")
    report = check(ctx, issued.certificate.der, options=ReportOptions(locale="en"))
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.CERTIFICATE_REVOKED]
    assert "key compromise" in report.reasons[0].message
    cert = report.certificate
    assert cert is not None and cert.revocation_now is not None
    assert cert.revocation_now.status is RevocationStatus.REVOKED
    assert cert.revocation_now.reason is RevocationReasonCode.KEY_COMPROMISE
    assert cert.revocation_now.revoked_at is not None
    # judged at a time before the revocation: VALID, with a warning that it was revoked since
    report = check(ctx, issued.certificate.der, at_time=before - timedelta(seconds=5))
    assert report.verdict is Verdict.VALID
    assert [w.code for w in report.warnings] == [ReasonCode.CERTIFICATE_REVOKED]


def test_certificate_on_hold_then_resumed(vworld: World, ctx: VerifyContext, citizen: str) -> None:
    issued = issue_citizen(vworld, citizen)
    vworld.authority.suspend(OPERATOR, issued.certificate.id, comment="reported lost")
    report = check(ctx, issued.certificate.der)
    assert report.verdict is Verdict.INDETERMINATE
    assert codes(report) == [ReasonCode.CERTIFICATE_ON_HOLD]
    assert report.certificate is not None and report.certificate.revocation_now is not None
    assert report.certificate.revocation_now.status is RevocationStatus.ON_HOLD
    vworld.authority.resume(OPERATOR, issued.certificate.id, comment="found")
    assert check(ctx, issued.certificate.der).verdict is Verdict.VALID


def test_wrong_purpose_server_certificate_for_document_signing(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_service(vworld)
    report = check(
        ctx,
        issued.certificate.der,
        purpose=CertificatePurpose.DOCUMENT_SIGNING,
        options=ReportOptions(locale="en"),
    )
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.KEY_USAGE_MISMATCH]
    assert report.certificate is not None and not report.certificate.purpose_allowed
    assert "document signing" in report.reasons[0].message
    assert report.certificate.certificate is not None
    assert report.certificate.certificate.profile is CertificateProfile.SERVICE
    for purpose in (CertificatePurpose.SERVER_AUTH, CertificatePurpose.CLIENT_AUTH):
        assert check(ctx, issued.certificate.der, purpose=purpose).verdict is Verdict.VALID
    personal = issue_citizen(vworld, citizen)
    report = check(ctx, personal.certificate.der, purpose=CertificatePurpose.SERVER_AUTH)
    assert codes(report) == [ReasonCode.KEY_USAGE_MISMATCH]
    report = check(ctx, personal.certificate.der, purpose=CertificatePurpose.SEAL)
    assert codes(report) == [ReasonCode.KEY_USAGE_MISMATCH]


def test_identity_not_active_is_reported(vworld: World, ctx: VerifyContext, citizen: str) -> None:
    from idp.types import IdentityRef, StatusAction
    from tests.seal.conftest import REGISTRAR

    user = assured_citizen(vworld, "孙八", "11010519750101007")
    issued = issue_citizen(vworld, user)
    vworld.registry.update_status(
        REGISTRAR, IdentityRef(id=user), StatusAction.SUSPEND, reason="inquiry"
    )
    report = check(ctx, issued.certificate.der)
    assert ReasonCode.IDENTITY_NOT_ACTIVE in codes(report)
    assert report.verdict is not Verdict.VALID


def test_ocsp_and_crl_from_the_live_ca(
    vworld: World, ctx: VerifyContext, live_ca: str, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    for mode, source in (
        (RevocationCheck.OCSP, StatusSource.OCSP),
        (RevocationCheck.CRL, StatusSource.CRL),
    ):
        report = check(ctx, issued.certificate.der, revocation_check=mode)
        assert report.verdict is Verdict.VALID, (mode, report.reasons)
        cert = report.certificate
        assert cert is not None and cert.revocation_now is not None
        assert cert.revocation_now.source is source
        assert cert.revocation_now.this_update is not None
        assert cert.revocation_now.next_update is not None
    revoked = issue_citizen(vworld, citizen)
    vworld.authority.revoke(OPERATOR, revoked.certificate.id, reason="superseded")
    # the CRL fetched above is cached until its nextUpdate: still "good" for this verifier ...
    report = check(ctx, revoked.certificate.der, revocation_check=RevocationCheck.CRL)
    assert report.verdict is Verdict.VALID
    ctx.certificates.invalidate()  # ... a verifier without it fetches the new one
    for mode in (RevocationCheck.OCSP, RevocationCheck.CRL):
        report = check(ctx, revoked.certificate.der, revocation_check=mode)
        assert report.verdict is Verdict.INVALID, mode
        assert codes(report) == [ReasonCode.CERTIFICATE_REVOKED]
        cert = report.certificate
        assert cert is not None and cert.revocation_now is not None
        assert cert.revocation_now.reason is RevocationReasonCode.SUPERSEDED


def test_unreachable_responder_is_indeterminate_saying_what(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)  # live CA not running: its URLs refuse connections
    report = check(
        ctx,
        issued.certificate.der,
        revocation_check=RevocationCheck.OCSP,
        options=ReportOptions(locale="en"),
    )
    assert report.verdict is Verdict.INDETERMINATE
    assert codes(report) == [ReasonCode.REVOCATION_UNKNOWN]
    message = report.reasons[0].message
    assert f"OCSP http://127.0.0.1:{vworld.ca_port}/ocsp" in message and "unreachable" in message
    report = check(ctx, issued.certificate.der, revocation_check=RevocationCheck.CRL)
    assert codes(report) == [ReasonCode.REVOCATION_UNKNOWN]
    assert "CRL http://127.0.0.1" in report.reasons[0].message


def test_external_crl_revocation(vworld: World, other_ca: TestCa, tmp_path: object) -> None:
    """An external issuer's CRL served over HTTP: revoked → INVALID, other serial → VALID."""
    from pathlib import Path

    from fastapi import FastAPI, Response

    from tests.ca.conftest import ServerThread
    from tests.seal.conftest import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/other.crl"
    revoked_leaf = other_ca.leaf(crl_url=url)
    good_leaf = other_ca.leaf(crl_url=url)
    crl = other_ca.crl({revoked_leaf.serial_number: datetime.now(UTC) - timedelta(hours=1)})
    app = FastAPI()

    @app.get("/other.crl")
    async def serve() -> Response:
        return Response(crl, media_type="application/pkix-crl")

    bundle = Path(str(tmp_path)) / "anchors.pem"
    bundle.write_bytes(other_ca.root.public_bytes(Encoding.PEM))
    context = VerifyContext(
        vworld.db, vworld.keystore, vworld.authority, config=VerifyConfig(trust_anchors=str(bundle))
    )
    try:
        with ServerThread(app, port):
            report = check(context, der(revoked_leaf))
            assert report.verdict is Verdict.INVALID
            assert codes(report) == [ReasonCode.CERTIFICATE_REVOKED]
            report = check(context, der(good_leaf))
            assert report.verdict is Verdict.VALID, report.reasons
            assert report.certificate is not None and report.certificate.revocation_now is not None
            assert report.certificate.revocation_now.source is StatusSource.CRL
    finally:
        context.close()


def test_status_cache_and_offline_checks(vworld: World, citizen: str) -> None:
    """Offline (inline) checks read a local SQLite status store and need I/O (NeedsIo) for a
    server's; an explicitly configured status cache spares the read — and then a revocation
    shows once the cached answer is dropped. By default there is no status cache."""
    from verify.certificates import NeedsIo

    assert VerifyConfig.from_settings(None).status_cache_seconds == 0
    assert VerifyConfig().status_cache_seconds == 0
    context = VerifyContext(
        vworld.db,
        vworld.keystore,
        vworld.authority,
        config=VerifyConfig(status_cache_seconds=3600),
    )
    try:
        issued = issue_citizen(vworld, citizen)
        request = CertificateCheck(issued.certificate.der)
        if context.certificates.reader.is_local:
            inline = verify_certificate(context, VERIFIER, request, offline=True)
            inline.audited.result(timeout=30)
            assert inline.report.verdict is Verdict.VALID
        else:
            with _same(vworld), pytest.raises(NeedsIo):
                verify_certificate(context, VERIFIER, request, offline=True)
        assert check(context, issued.certificate.der).verdict is Verdict.VALID
        inline = verify_certificate(context, VERIFIER, request, offline=True)
        inline.audited.result(timeout=30)
        assert inline.report.verdict is Verdict.VALID
        signed = CertificateCheck(
            issued.certificate.der, options=ReportOptions(report_format=ReportFormat.SIGNED_JSON)
        )
        with (
            _same(vworld),
            pytest.raises(NeedsIo),
        ):  # signing may need a remote key store: never inline
            verify_certificate(context, VERIFIER, signed, offline=True)
        vworld.authority.revoke(OPERATOR, issued.certificate.id, reason=1)
        assert check(context, issued.certificate.der).verdict is Verdict.VALID  # cached
        context.certificates.invalidate()
        assert check(context, issued.certificate.der).verdict is Verdict.INVALID
    finally:
        context.close()


def test_pem_with_explanatory_text_before_it_loads(ctx: VerifyContext) -> None:
    der = ctx.authority.chain()[0].der  # the root
    cert, loaded_der = load_certificate(der)
    pem = cert.public_bytes(Encoding.PEM)
    # RFC 7468 allows text before the block; `govtrust ca chain` writes a comment line there.
    _, der2 = load_certificate(b"# root: CN=govtrust Root CA\nsubject=...\n" + pem)
    assert der2 == loaded_der == der
    with unchanged(ctx.db, ctx.keystore), pytest.raises(InvalidArgument, match="not a DER or PEM"):
        load_certificate(b"# nothing here\n-----BEGIN CERTIFICATE-----\nAAAA\n")
