"""VerifyCertificate at validity boundaries, with intermediates (issue #23 item 3).

An external three-level hierarchy (root → intermediate → leaf) is built here with
``cryptography`` alone — none of our CA code — and its root configured as a trust anchor; the
root and the intermediate publish CRLs over HTTP. RFC 5280 §4.1.2.5: a certificate is valid
from ``notBefore`` through ``notAfter`` inclusive, so it is good at both instants and bad one
second outside; each certificate of the path is checked, not only the leaf. A revocation
counts from its revocation date on (the status at a past validation time is ``good`` one
second before it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI, Response

from tests.ca.conftest import ServerThread
from tests.seal.conftest import World, free_port
from tests.verify.test_certificates import check, codes
from verify.report import ReasonCode, Verdict, VerificationReport
from verify.service import VerifyConfig, VerifyContext

NOW = datetime.now(UTC).replace(microsecond=0)
FAR = timedelta(days=3650)


def _crl_point(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


@dataclass
class Hierarchy:
    """Root and one intermediate, each publishing a CRL at ``base`` + /root.crl, /int.crl."""

    base: str
    int_not_before: datetime = NOW - FAR
    int_not_after: datetime = NOW + FAR
    revoked_intermediate: datetime | None = None
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    int_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Boundary Root")])
        self.root = self._ca(root_name, root_name, self.root_key, NOW - FAR, NOW + FAR, None)
        self.intermediate = self._ca(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Boundary Intermediate")]),
            root_name,
            self.int_key,
            self.int_not_before,
            self.int_not_after,
            f"{self.base}/root.crl",
        )

    def _ca(
        self,
        subject: x509.Name,
        issuer: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        not_before: datetime,
        not_after: datetime,
        crl_url: str | None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
        )
        if crl_url:
            builder = builder.add_extension(_crl_point(crl_url), critical=False)
        return builder.sign(self.root_key, hashes.SHA256())

    def leaf(
        self,
        not_before: datetime,
        not_after: datetime,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> x509.Certificate:
        """A document-signing leaf of the intermediate (for ``key``, default a fresh one)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "boundary leaf")]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, True, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.int_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
            .add_extension(_crl_point(f"{self.base}/int.crl"), critical=False)
            .sign(self.int_key, hashes.SHA256())
        )

    def crl(self, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, revoked: Any) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer)
            .last_update(datetime.now(UTC) - timedelta(minutes=1))
            .next_update(datetime.now(UTC) + timedelta(hours=1))
        )
        for serial, moment in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(moment)
                .add_extension(x509.CRLReason(x509.ReasonFlags.ca_compromise), critical=False)
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)

    def app(self) -> FastAPI:
        root_revoked = (
            [(self.intermediate.serial_number, self.revoked_intermediate)]
            if self.revoked_intermediate
            else []
        )
        root_crl = self.crl(self.root_key, self.root.subject, root_revoked)
        int_crl = self.crl(self.int_key, self.intermediate.subject, [])
        app = FastAPI()

        @app.get("/root.crl")
        async def serve_root() -> Response:
            return Response(root_crl, media_type="application/pkix-crl")

        @app.get("/int.crl")
        async def serve_int() -> Response:
            return Response(int_crl, media_type="application/pkix-crl")

        return app


@dataclass
class Setup:
    world: World
    tmp: Path
    port: int

    def context(self, hierarchy: Hierarchy) -> VerifyContext:
        bundle = self.tmp / f"anchors-{id(hierarchy)}.pem"
        bundle.write_bytes(hierarchy.root.public_bytes(Encoding.PEM))
        return VerifyContext(
            self.world.db,
            self.world.keystore,
            self.world.authority,
            config=VerifyConfig(trust_anchors=str(bundle), fetch_timeout_seconds=5.0),
        )


@pytest.fixture
def setup(vworld: World, tmp_path: Path) -> Setup:
    return Setup(vworld, tmp_path, free_port())


def _at(ctx: VerifyContext, h: Hierarchy, leaf: x509.Certificate, at: datetime) -> Any:
    report: VerificationReport = check(
        ctx,
        leaf.public_bytes(Encoding.DER),
        intermediates=(h.intermediate.public_bytes(Encoding.DER),),
        at_time=at,
    )
    return report


def _subjects(report: VerificationReport, code: ReasonCode) -> list[str]:
    return [r.subject for r in report.reasons if r.code is code]


def test_leaf_is_valid_from_its_first_through_its_last_second(setup: Setup) -> None:
    h = Hierarchy(f"http://127.0.0.1:{setup.port}")
    start, end = NOW - timedelta(days=10), NOW + timedelta(days=10)
    leaf = h.leaf(start, end)
    ctx = setup.context(h)
    try:
        with ServerThread(h.app(), setup.port):
            for moment in (start, end):
                report = _at(ctx, h, leaf, moment)
                assert report.verdict is Verdict.VALID, (moment, report.reasons)
            early = _at(ctx, h, leaf, start - timedelta(seconds=1))
            assert early.verdict is Verdict.INVALID
            assert codes(early) == [ReasonCode.CERTIFICATE_NOT_YET_VALID]
            assert early.reasons[0].subject == "certificate.chain[0]"
            late = _at(ctx, h, leaf, end + timedelta(seconds=1))
            assert late.verdict is Verdict.INVALID
            assert codes(late) == [ReasonCode.CERTIFICATE_EXPIRED]
            assert late.reasons[0].subject == "certificate.chain[0]"
    finally:
        ctx.close()


def test_expired_intermediate_invalidates_a_valid_leaf(setup: Setup) -> None:
    end = NOW + timedelta(days=5)
    h = Hierarchy(f"http://127.0.0.1:{setup.port}", int_not_after=end)
    leaf = h.leaf(NOW - timedelta(days=10), NOW + timedelta(days=30))  # outlives its issuer
    ctx = setup.context(h)
    try:
        with ServerThread(h.app(), setup.port):
            report = _at(ctx, h, leaf, end)
            assert report.verdict is Verdict.VALID, report.reasons
            report = _at(ctx, h, leaf, end + timedelta(seconds=1))
            assert report.verdict is Verdict.INVALID
            assert codes(report) == [ReasonCode.CERTIFICATE_EXPIRED]
            assert _subjects(report, ReasonCode.CERTIFICATE_EXPIRED) == ["certificate.chain[1]"]
            assert report.certificate is not None
            assert not report.certificate.within_validity_period
    finally:
        ctx.close()


def test_not_yet_valid_intermediate_invalidates_a_valid_leaf(setup: Setup) -> None:
    start = NOW - timedelta(days=5)
    h = Hierarchy(f"http://127.0.0.1:{setup.port}", int_not_before=start)
    leaf = h.leaf(NOW - timedelta(days=30), NOW + timedelta(days=30))  # predates its issuer
    ctx = setup.context(h)
    try:
        with ServerThread(h.app(), setup.port):
            report = _at(ctx, h, leaf, start)
            assert report.verdict is Verdict.VALID, report.reasons
            report = _at(ctx, h, leaf, start - timedelta(seconds=1))
            assert report.verdict is Verdict.INVALID
            assert codes(report) == [ReasonCode.CERTIFICATE_NOT_YET_VALID]
            assert _subjects(report, ReasonCode.CERTIFICATE_NOT_YET_VALID) == [
                "certificate.chain[1]"
            ]
    finally:
        ctx.close()


def test_revoked_intermediate_invalidates_a_valid_leaf_from_its_revocation_date(
    setup: Setup,
) -> None:
    revoked_at = NOW - timedelta(days=2)
    h = Hierarchy(f"http://127.0.0.1:{setup.port}", revoked_intermediate=revoked_at)
    leaf = h.leaf(NOW - timedelta(days=10), NOW + timedelta(days=30))
    ctx = setup.context(h)
    try:
        with ServerThread(h.app(), setup.port):
            now = check(
                ctx,
                leaf.public_bytes(Encoding.DER),
                intermediates=(h.intermediate.public_bytes(Encoding.DER),),
            )
            assert now.verdict is Verdict.INVALID
            assert codes(now) == [ReasonCode.CERTIFICATE_REVOKED]
            assert _subjects(now, ReasonCode.CERTIFICATE_REVOKED) == ["certificate.chain[1]"]
            at_revocation = _at(ctx, h, leaf, revoked_at)
            assert codes(at_revocation) == [ReasonCode.CERTIFICATE_REVOKED]
            before = _at(ctx, h, leaf, revoked_at - timedelta(seconds=1))
            assert ReasonCode.CERTIFICATE_REVOKED not in codes(before), before.reasons
    finally:
        ctx.close()
