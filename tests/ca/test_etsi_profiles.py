"""ETSI EN 319 412 conformance in a production-shaped configuration: an https public base URL
with a separate plain-http revocation base. pkilint's ``lint_etsi_cert`` reports no ERROR on any
end-entity profile, including a citizen certificate with a hashed ID number."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509

from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.directory import InMemoryDirectory
from ca.issuance import IssueRequest, SubjectSpec
from govtrust.config import ConfigError, load_settings
from govtrust.db import Database
from hsm import SoftKeyStore
from tests.ca.conftest import OPERATOR, USCC, make_csr, pkilint

PAGES = "https://pki.example.gov.cn"
STATUS = "http://crl.example.gov.cn"
ETSI_TYPES = {
    "citizen": "NCP-NATURAL-PERSON-CERTIFICATE",
    "legal-person": "NCP-LEGAL-PERSON-CERTIFICATE",
    "seal": "NCP-LEGAL-PERSON-CERTIFICATE",
}


@pytest.fixture
def production_authority(
    database: Database, soft_keystore: SoftKeyStore, directory: InMemoryDirectory
) -> CertificateAuthority:
    config = CaConfig(public_base_url=PAGES, crl_base_url=STATUS)
    return CertificateAuthority.open(database, soft_keystore, config, directory)


def _uris(der: bytes) -> list[str]:
    cert = x509.Certificate.load(der)
    uris = [u for dp in cert.crl_distribution_points for u in dp.url and [dp.url]]
    aia = cert.authority_information_access_value
    uris += [a["access_location"].native for a in aia] if aia else []
    return uris


@pytest.mark.parametrize(
    ("profile", "subject", "hashed"),
    [
        ("citizen", SubjectSpec(identity="c-rep"), False),
        ("citizen", SubjectSpec(identity="c-rep"), True),
        ("legal-person", SubjectSpec(identity=USCC), False),
        ("seal", SubjectSpec(seal_id="seal-1"), False),
    ],
)
def test_every_end_entity_profile_lints_without_etsi_errors(
    production_authority: CertificateAuthority,
    tmp_path: Path,
    profile: str,
    subject: SubjectSpec,
    hashed: bool,
) -> None:
    issued = production_authority.issue(
        OPERATOR,
        IssueRequest(profile, subject, csr=make_csr(), hash_identity_number=hashed),
    )
    der = issued.certificate.der
    uris = _uris(der)
    assert uris and all(u.startswith(STATUS + "/") for u in uris), uris
    path = tmp_path / f"{profile}.der"
    path.write_bytes(der)
    findings = pkilint(
        "lint_etsi_cert", "-t", ETSI_TYPES[profile], "--document-format", "DER", str(path)
    )
    assert findings == "", f"{profile} (hashed={hashed}): {findings}"
    assert pkilint("lint_pkix_cert", "--document-format", "DER", str(path)) == ""


def test_hierarchy_points_at_the_http_revocation_base(
    production_authority: CertificateAuthority,
) -> None:
    for issuer in production_authority.chain(include_responders=True):
        assert all(u.startswith(STATUS + "/") for u in _uris(issuer.der)), issuer.name


def test_revocation_base_defaults_to_http_and_refuses_https() -> None:
    assert (
        CaConfig(public_base_url=PAGES).crl_url("seal") == "http://pki.example.gov.cn/crl/seal.crl"
    )
    assert CaConfig(public_base_url="http://127.0.0.1:9/").ocsp_url() == "http://127.0.0.1:9/ocsp"
    with pytest.raises(ConfigError, match=r"ca\.crl_base_url: must be a plain http"):
        CaConfig.from_settings(None, public_base_url=PAGES, crl_base_url="https://crl.example")
    with pytest.raises(ConfigError, match="crl_base_url"):
        load_settings(env={"GOVTRUST_CRL_BASE_URL": "https://crl.example"})
    settings = load_settings(env={"GOVTRUST_CRL_BASE_URL": STATUS})
    assert settings.crl_base_url == STATUS


def test_the_seal_makers_organisation_certificate_lints_clean(
    production_authority: CertificateAuthority, database: Database, tmp_path: Path
) -> None:
    from seal.authority import CaSealAuthority

    issued = CaSealAuthority(production_authority, database).issue_maker_certificate(
        "ec-p256", 5 * 365
    )
    path = tmp_path / "maker.der"
    path.write_bytes(issued.der)
    findings = pkilint(
        "lint_etsi_cert",
        "-t",
        "NCP-LEGAL-PERSON-CERTIFICATE",
        "--document-format",
        "DER",
        str(path),
    )
    assert findings == "", findings
