"""Verification fixtures (shared by every tests/verify module; add new fixtures at the end).

The seal test world (registry with a company and citizens, a bootstrapped CA on SQLite and
PostgreSQL, the seal service, the live CA over HTTP) plus: a :class:`VerifyContext` over it
with the registry-backed CA directory, an external test CA built with ``cryptography``
(unknown issuer, expired, external anchors, its own OCSP/CRL URLs) and helpers to issue our
certificates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.issuance import Issued, IssueRequest, ServiceSubject, SubjectSpec
from govtrust.principal import Principal
from idp.ca_directory import RegistryDirectory
from idp.types import CheckResult
from tests.seal.conftest import (  # noqa: F401 - fixtures re-exported for tests/verify
    FILING,
    MAKER,
    REGISTRAR,
    REVIEWER,
    USCC,
    World,
    free_port,
    live_ca,
    one_page_pdf,
    resident_id,
    world,
)
from verify.service import VerifyConfig, VerifyContext

VERIFIER = Principal("service", "bank-system", frozenset({"verifier"}))
NOBODY = Principal("service", "nobody", frozenset())
OPERATOR = Principal("system", "ca-desk", frozenset({"ca-operator"}))


@pytest.fixture
def vworld(world: World) -> World:  # noqa: F811 - the seal fixture
    """The seal world with the registry answering the CA's subject look-ups."""
    directory = world.authority.ctx.directory
    directory.inner = RegistryDirectory(world.registry)  # type: ignore[attr-defined]
    return world


@pytest.fixture
def ctx(vworld: World) -> Iterator[VerifyContext]:
    """A verification context over the world (default configuration)."""
    context = VerifyContext(
        vworld.db,
        vworld.keystore,
        vworld.authority,
        config=VerifyConfig(fetch_timeout_seconds=2.0),
        seals=vworld.service,
    )
    try:
        yield context
    finally:
        context.close()


class _EveryoneMatches:
    """Population base data that confirms every citizen (assurance level 2)."""

    def match_citizen(self, name: str, id_number: str) -> CheckResult:
        return CheckResult.MATCH


def assured_citizen(env: World, name: str, first17: str) -> str:
    """Register a citizen confirmed by (stand-in) base data, so the CA may certify them."""
    registry = env.registry
    saved = registry.population
    registry.population = _EveryoneMatches()
    try:
        return registry.register_citizen(REGISTRAR, name=name, id_number=resident_id(first17)).id
    finally:
        registry.population = saved


@pytest.fixture
def citizen(vworld: World) -> str:
    """Registry id of an assured citizen (赵六) who can hold a citizen certificate."""
    return assured_citizen(vworld, "赵六", "11010519700101005")


def issue_citizen(env: World, identity: str, *, validity_days: int = 0) -> Issued:
    """A citizen certificate of our CA with a key in the key store."""
    return env.authority.issue(
        OPERATOR,
        IssueRequest(
            profile="citizen",
            subject=SubjectSpec(identity=identity),
            generate_key_algorithm="ec-p256",
            validity_days=validity_days,
        ),
    )


def issue_service(env: World, system_id: str = "bank-core") -> Issued:
    """A service (TLS) certificate of our CA."""
    return env.authority.issue(
        OPERATOR,
        IssueRequest(
            profile="service",
            subject=SubjectSpec(service=ServiceSubject(system_id, ("bank.example",))),
            generate_key_algorithm="ec-p256",
        ),
    )


@dataclass
class TestCa:
    """A self-made CA (not ours): root + leaves, built with ``cryptography``."""

    __test__ = False

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    name: str = "Other Root CA"
    root: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        self.root = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=30))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def leaf(
        self,
        cn: str = "external signer",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        ocsp_url: str = "",
        crl_url: str = "",
        serial: int | None = None,
    ) -> x509.Certificate:
        """A document-signing leaf (digitalSignature + nonRepudiation)."""
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.root.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, True, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
        )
        if ocsp_url:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(ocsp_url),
                        )
                    ]
                ),
                critical=False,
            )
        if crl_url:
            builder = builder.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(crl_url)], None, None, None
                        )
                    ]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256())

    def crl(self, revoked: dict[int, datetime]) -> bytes:
        """A DER CRL revoking ``serial → revocation time`` (keyCompromise)."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.root.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + timedelta(hours=1))
        )
        for serial, moment in revoked.items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(moment)
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(Encoding.DER)


@pytest.fixture
def other_ca() -> TestCa:
    """An external CA that is not one of our anchors (unless configured)."""
    return TestCa()


def der(cert: x509.Certificate) -> bytes:
    """DER of a certificate."""
    return cert.public_bytes(Encoding.DER)
