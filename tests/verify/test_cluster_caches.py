"""Shared caches stay true across replicas (issue #20 item 2): a revocation on replica A is
visible on replica B — a separate platform (own engine, caches, components) on the same
PostgreSQL database — within the stated bound (docs/scaling.md "Cluster jobs and caches"):
VerifyCertificate at once by default and within ``status_cache_seconds`` when an operator
sets it; B's OCSP responder within its cache's epoch check (0.25 s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.authority import authority_for
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from ca.models import CaCertificate
from govtrust.config import Settings
from govtrust.platform import Platform
from govtrust.principal import SYSTEM, Principal
from govtrust.server.wiring import open_wired
from tests.ca.conftest import ocsp_query
from verify.certificates import CertificateCheck, verify_certificate
from verify.report import Verdict
from verify.service import VerifyConfig, VerifyContext, context_for

# serial: revocations must show within 1.25-1.5 s, which another test on the other core can miss
pytestmark = [pytest.mark.postgresql_only, pytest.mark.serial]

VERIFIER = Principal("service", "bank", frozenset({"verifier"}))


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    a = open_wired(settings)
    b = open_wired(settings)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _issue(platform: Platform, system_id: str) -> CaCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_id)]))
        .sign(key, hashes.SHA256())
    )
    request = IssueRequest(
        profile="service",
        subject=SubjectSpec(service=ServiceSubject(system_id)),
        csr=csr.public_bytes(serialization.Encoding.PEM),
    )
    return authority_for(platform).issue(SYSTEM, request).certificate


def _verdict(ctx: VerifyContext, der: bytes) -> Verdict:
    verified = verify_certificate(ctx, VERIFIER, CertificateCheck(der))
    verified.audited.result(timeout=30)
    return verified.report.verdict


def _ocsp_status(platform: Platform, row: CaCertificate) -> str:
    response = ocsp_query(authority_for(platform), row)
    basic = response["response_bytes"]["response"].parsed
    assert isinstance(basic, asn1_ocsp.BasicOCSPResponse)
    return str(basic["tbs_response_data"]["responses"][0]["cert_status"].name)


def _seconds_until(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition`` holds, polled; fails past ``limit``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, "not visible within the bound"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_revocation_on_one_replica_is_visible_on_another(
    replicas: tuple[Platform, Platform],
) -> None:
    a, b = replicas
    row = _issue(a, "bank-core")
    fresh = context_for(b)  # the default: our status store read on every check
    cached = VerifyContext(
        b.db, b.keystore, authority_for(b), config=VerifyConfig(status_cache_seconds=1.0)
    )
    try:
        for _ in range(2):  # the second check is a settled one (cached path and analysis)
            assert _verdict(fresh, row.der) is Verdict.VALID
            assert _verdict(cached, row.der) is Verdict.VALID
        assert _ocsp_status(b, row) == "good"
        assert _ocsp_status(b, row) == "good"  # now in B's OCSP cache

        authority_for(a).revoke(SYSTEM, row.id, reason="keyCompromise")

        assert _verdict(fresh, row.der) is Verdict.INVALID  # bound 0: the very next check
        took = _seconds_until(lambda: _verdict(cached, row.der) is Verdict.INVALID, 1.0 + 1.0)
        assert took <= 1.0 + 0.5
        took = _seconds_until(lambda: _ocsp_status(b, row) == "revoked", 0.25 + 1.0)
        assert took <= 0.25 + 0.5
    finally:
        cached.close()
