"""VerifyCertificate with SM2 (issue 16 item 5, certificates): an SM2 leaf of our SM2 CA is
VALID with its chain to the SM2 root, its status now from the registry and the algorithms named
(SM3withSM2, SM2); a tampered SM2 signature or a revoked SM2 certificate is INVALID with its
reason; over gRPC the report carries the algorithm fields — on SQLite and PostgreSQL."""

from __future__ import annotations

from cryptography import x509

from ca.issuance import Issued, IssueRequest, SubjectSpec
from ca.path import key_algorithm_name, signature_algorithm_name
from govtrust.v1 import common_pb2, verify_pb2
from tests.seal.conftest import World
from tests.verify.conftest import OPERATOR, issue_citizen
from tests.verify.test_certificates import check, codes
from tests.verify.test_grpc import Handle, grpc_verify  # noqa: F401 - fixture
from verify.report import (
    CertificateProfile,
    CertificatePurpose,
    ReasonCode,
    ReportOptions,
    RevocationCheck,
    RevocationStatus,
    StatusSource,
    Verdict,
)
from verify.service import VerifyContext


def issue_sm2_citizen(env: World, identity: str) -> Issued:
    """A citizen certificate of our SM2 CA, its SM2 key in the key store."""
    return env.authority.issue(
        OPERATOR,
        IssueRequest(
            profile="citizen",
            subject=SubjectSpec(identity=identity),
            generate_key_algorithm="sm2",
        ),
    )


def test_sm2_leaf_is_valid_with_its_algorithms_named(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_sm2_citizen(vworld, citizen)
    assert issued.certificate.issuer == "sm2-citizen"
    report = check(
        ctx,
        issued.certificate.der,
        purpose=CertificatePurpose.DOCUMENT_SIGNING,
        options=ReportOptions(locale="en"),
    )
    assert report.verdict is Verdict.VALID, report.reasons
    cert = report.certificate
    assert cert is not None and cert.trusted and cert.within_validity_period
    leaf = cert.certificate
    assert leaf is not None and leaf.profile is CertificateProfile.CITIZEN
    assert (leaf.signature_algorithm, leaf.public_key_algorithm) == ("SM3withSM2", "SM2")
    assert [c.issuer_ca for c in cert.chain] == ["sm2-citizen", "sm2-root", ""]
    assert [(c.signature_algorithm, c.public_key_algorithm) for c in cert.chain] == [
        ("SM3withSM2", "SM2")
    ] * 3
    assert cert.chain[-1].profile is CertificateProfile.ROOT_CA
    assert cert.revocation_now is not None
    assert cert.revocation_now.status is RevocationStatus.GOOD
    assert cert.revocation_now.source is StatusSource.REGISTRY
    assert cert.identity is not None and cert.identity.id == citizen
    # the ECDSA hierarchy is named as such
    ecdsa = check(ctx, issue_citizen(vworld, citizen).certificate.der).certificate
    assert ecdsa is not None and ecdsa.certificate is not None
    assert (ecdsa.certificate.signature_algorithm, ecdsa.certificate.public_key_algorithm) == (
        "ecdsa-with-SHA256",
        "EC P-256",
    )


def test_sm2_leaf_with_a_tampered_signature_is_invalid(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_sm2_citizen(vworld, citizen)
    der = bytearray(issued.certificate.der)
    der[-5] ^= 0x01  # inside the SM2 signature's s
    tampered = bytes(der)
    report = check(ctx, tampered, options=ReportOptions(locale="en"))
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.CHAIN_INVALID]
    assert "does not verify with its issuer's key" in report.reasons[0].message
    assert report.certificate is not None and not report.certificate.trusted
    leaf = report.certificate.certificate
    assert leaf is not None and leaf.signature_algorithm == "SM3withSM2"


def test_revoked_sm2_certificate_is_invalid_now(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_sm2_citizen(vworld, citizen)
    vworld.authority.revoke(OPERATOR, issued.certificate.id, reason=1)
    report = check(ctx, issued.certificate.der, options=ReportOptions(locale="en"))
    assert report.verdict is Verdict.INVALID
    assert codes(report) == [ReasonCode.CERTIFICATE_REVOKED]
    assert report.certificate is not None and report.certificate.revocation_now is not None
    assert report.certificate.revocation_now.status is RevocationStatus.REVOKED


def test_grpc_report_names_the_sm2_algorithms(
    vworld: World,
    grpc_verify: Handle,  # noqa: F811 - fixture
    citizen: str,
) -> None:
    issued = issue_sm2_citizen(vworld, citizen)
    response = grpc_verify.call(
        "VerifyCertificate", verify_pb2.VerifyCertificateRequest(certificate=issued.certificate.der)
    )
    report = response.report
    assert report.verdict == common_pb2.VERDICT_VALID
    leaf = report.certificate.certificate
    assert (leaf.signature_algorithm, leaf.public_key_algorithm) == ("SM3withSM2", "SM2")
    assert [c.signature_algorithm for c in report.certificate.chain] == ["SM3withSM2"] * 3


def test_algorithm_names_of_other_keys() -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert signature_algorithm_name(cert) == "sha256WithRSAEncryption"
    assert key_algorithm_name(cert) == "RSA 2048"


def test_sm2_status_by_ocsp_and_crl_from_the_live_ca(
    vworld: World, ctx: VerifyContext, live_ca: str, citizen: str
) -> None:
    """The SM2 OCSP responder's and the SM2 CA's CRL signatures (SM3-with-SM2) are checked
    through ca.path: good, then revoked."""
    issued = issue_sm2_citizen(vworld, citizen)
    for mode, source in (
        (RevocationCheck.OCSP, StatusSource.OCSP),
        (RevocationCheck.CRL, StatusSource.CRL),
    ):
        report = check(ctx, issued.certificate.der, revocation_check=mode)
        assert report.verdict is Verdict.VALID, (mode, report.reasons)
        cert = report.certificate
        assert cert is not None and cert.revocation_now is not None
        assert cert.revocation_now.source is source
    revoked = issue_sm2_citizen(vworld, citizen)
    vworld.authority.revoke(OPERATOR, revoked.certificate.id, reason="superseded")
    ctx.certificates.invalidate()
    for mode in (RevocationCheck.OCSP, RevocationCheck.CRL):
        report = check(ctx, revoked.certificate.der, revocation_check=mode)
        assert report.verdict is Verdict.INVALID, (mode, report.reasons)
        assert codes(report) == [ReasonCode.CERTIFICATE_REVOKED]
