"""Issuance: every profile verifies with openssl and lints clean with pkilint; subject fields come
from the registry; server-side keys; renewal and re-key. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from ca.authority import CertificateAuthority
from ca.extensions import IDENTIFY_CODE_OID, parse_identify_code, salted_identity_hash
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from ca.models import CaCertificate, CaOcspResponse
from govtrust.audit import AuditRecord, verify_chain
from tests.ca.conftest import (
    CITIZEN_ID_NUMBER,
    OPERATOR,
    USCC,
    assert_verifies_and_lints,
    make_csr,
    new_key,
    openssl,
    pem,
    pkilint,
    write_chain,
)
from tests.unchanged import unchanged

SUBJECTS = {
    "citizen": SubjectSpec(identity="c-rep"),
    "legal-person": SubjectSpec(identity=USCC),
    "seal": SubjectSpec(seal_id="seal-1"),
    "service": SubjectSpec(
        service=ServiceSubject("bizsys-01", ("approval.example.gov.cn",), ("10.1.2.3",))
    ),
}
ETSI_TYPES = {
    "citizen": "NCP-NATURAL-PERSON-CERTIFICATE",
    "legal-person": "NCP-LEGAL-PERSON-CERTIFICATE",
    "seal": "NCP-LEGAL-PERSON-CERTIFICATE",
}


def _attrs(der: bytes) -> dict[str, str]:
    cert = x509.Certificate.load(der)
    return {k: str(v) for k, v in cert.subject.native.items()}


def test_every_profile_verifies_and_lints_clean(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    chain = write_chain(authority, tmp_path / "chain")
    for profile, subject in SUBJECTS.items():
        issued = authority.issue(OPERATOR, IssueRequest(profile, subject, csr=make_csr()))
        der_path = assert_verifies_and_lints(chain, tmp_path, profile, issued.certificate.der)
        if profile in ETSI_TYPES:
            findings = pkilint(
                "lint_etsi_cert",
                "-t",
                ETSI_TYPES[profile],
                "--document-format",
                "DER",
                str(der_path),
            )
            assert findings == "", f"{profile}: {findings}"
    # the hierarchy itself lints clean too
    for issuer in authority.chain(include_responders=True):
        path = tmp_path / f"ca-{issuer.name}.der"
        path.write_bytes(issuer.der)
        assert pkilint("lint_pkix_cert", "--document-format", "DER", str(path)) == "", issuer.name
        # the SM2 hierarchy's links are judged per link with the default signer ID (openssl
        # verifies a chain's upper SM2 links with an empty ID): tests/ca/test_sm2.py
        if issuer.role != "root" and not issuer.name.startswith("sm2-"):
            out = openssl(
                "verify",
                "-CAfile",
                str(chain.root),
                "-untrusted",
                str(chain.all),
                str(chain.ca(issuer.name)),
            )
            assert "OK" in out


def test_subject_comes_from_the_registry_not_the_csr(authority: CertificateAuthority) -> None:
    issued = authority.issue(
        OPERATOR, IssueRequest("citizen", SUBJECTS["citizen"], csr=make_csr(cn="Mallory"))
    )
    attrs = _attrs(issued.certificate.der)
    assert attrs["common_name"] == "张三"
    assert attrs["serial_number"] == f"IDCCN-{CITIZEN_ID_NUMBER}"
    assert attrs["surname"] == "张" and attrs["given_name"] == "三"
    assert "Mallory" not in issued.certificate.subject
    cert = x509.Certificate.load(issued.certificate.der)
    extension = next(
        e for e in cert["tbs_certificate"]["extensions"] if e["extn_id"].dotted == IDENTIFY_CODE_OID
    )
    assert parse_identify_code(extension["extn_value"].contents) == CITIZEN_ID_NUMBER
    assert cert.serial_number.bit_length() > 64
    assert cert.key_identifier_value is not None and cert.authority_key_identifier is not None
    assert cert.ocsp_urls == ["http://pki.example.gov.cn/ocsp"]
    assert cert.crl_distribution_points[0].url == "http://pki.example.gov.cn/crl/citizen.crl"

    lp = authority.issue(
        OPERATOR,
        IssueRequest("legal-person", SUBJECTS["legal-person"], csr=make_csr(cn="Evil Corp")),
    )
    attrs = _attrs(lp.certificate.der)
    assert attrs["organization_identifier"] == f"NTRCN-{USCC}"
    assert attrs["organization_name"] == "福州示例科技有限公司"


def test_compound_surname_from_registry(authority: CertificateAuthority) -> None:
    issued = authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity="c-ouyang"), csr=make_csr())
    )
    attrs = _attrs(issued.certificate.der)
    assert attrs["surname"] == "欧阳" and attrs["given_name"] == "修"


def test_hashed_identity_number(authority: CertificateAuthority) -> None:
    issued = authority.issue(
        OPERATOR,
        IssueRequest("citizen", SUBJECTS["citizen"], csr=make_csr(), hash_identity_number=True),
    )
    row = issued.certificate
    assert row.identity_salt is not None
    cert = x509.Certificate.load(row.der)
    extension = next(
        e for e in cert["tbs_certificate"]["extensions"] if e["extn_id"].dotted == IDENTIFY_CODE_OID
    )
    value = parse_identify_code(extension["extn_value"].contents)
    assert value == salted_identity_hash(CITIZEN_ID_NUMBER, bytes.fromhex(row.identity_salt))
    assert CITIZEN_ID_NUMBER not in row.der.decode("latin-1")


def test_server_side_key_generation_returns_a_reference(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    issued = authority.issue(
        OPERATOR,
        IssueRequest("legal-person", SUBJECTS["legal-person"], generate_key_algorithm="ec-p384"),
    )
    assert issued.key is not None
    assert issued.certificate.key_id == issued.key.key_id
    cert = x509.Certificate.load(issued.certificate.der)
    assert cert.public_key.dump() == issued.key.public_key_der
    # the key signs in the store and the certificate's key verifies it
    signature = authority.ctx.keystore.sign(issued.key, b"hello", "ecdsa-sha384")
    public = issued.key.load_public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    from cryptography.hazmat.primitives import hashes

    public.verify(signature, b"hello", ec.ECDSA(hashes.SHA384()))
    chain = write_chain(authority, tmp_path)
    path = tmp_path / "cloud.pem"
    path.write_text(pem(issued.certificate.der))
    openssl("verify", "-CAfile", str(chain.root), "-untrusted", str(chain.all), str(path))


def test_issuance_stores_status_and_audit(authority: CertificateAuthority) -> None:
    issued = authority.issue(OPERATOR, IssueRequest("seal", SUBJECTS["seal"], csr=make_csr()))
    with authority.ctx.db.read() as session:
        response = session.get(CaOcspResponse, issued.certificate.id)
        assert response is not None
        actions = list(session.scalars(select(AuditRecord.action)))
        assert "ca.issue" in actions and "ca.bootstrap" in actions
        assert verify_chain(session).ok
    assert issued.certificate.seal_id == "seal-1"
    assert issued.certificate.identity_id == "lp-1"


def test_renewal_and_rekey(authority: CertificateAuthority) -> None:
    first = authority.issue(
        OPERATOR,
        IssueRequest("citizen", SUBJECTS["citizen"], csr=make_csr(new_key(ec.SECP384R1()))),
    )
    renewed = authority.renew(OPERATOR, first.certificate, csr=make_csr(), revoke_previous=True)
    assert renewed.certificate.renewed_from == first.certificate.id
    assert renewed.certificate.subject == first.certificate.subject
    previous = authority.get(first.certificate.id)
    assert previous.status == "revoked" and previous.revocation_reason == 4
    assert previous.renewed_by == renewed.certificate.id
    with (
        unchanged(authority.ctx.db, authority.ctx.keystore),
        pytest.raises(Exception, match="revoked"),
    ):
        authority.renew(OPERATOR, previous, csr=make_csr())

    cloud = authority.issue(OPERATOR, IssueRequest("legal-person", SUBJECTS["legal-person"]))
    same_key = authority.renew(OPERATOR, cloud.certificate)
    assert same_key.certificate.key_id == cloud.certificate.key_id
    assert same_key.certificate.serial != cloud.certificate.serial
    rekeyed = authority.renew(OPERATOR, same_key.certificate, generate_key_algorithm="ec-p256")
    assert rekeyed.key is not None and rekeyed.key.key_id != cloud.certificate.key_id
    with authority.ctx.db.read() as session:
        count = session.scalar(select(func.count()).select_from(CaCertificate))
    assert count == 5


def test_bootstrap_is_idempotent(authority: CertificateAuthority) -> None:
    again = CertificateAuthority.open(
        authority.ctx.db, authority.ctx.keystore, authority.ctx.config, authority.ctx.directory
    )
    assert {n: i.der for n, i in again.hierarchy.issuers.items()} == {
        n: i.der for n, i in authority.hierarchy.issuers.items()
    }
    names = set(authority.hierarchy.issuers)
    assert {"root", "citizen", "legal-person", "seal", "service", "tsa"} <= names
    assert {"citizen-ocsp", "legal-person-ocsp", "seal-ocsp", "service-ocsp"} <= names


def test_list_and_paging(authority: CertificateAuthority) -> None:
    from ca.authority import ListFilter

    for _ in range(5):
        authority.issue(OPERATOR, IssueRequest("citizen", SUBJECTS["citizen"], csr=make_csr()))
    authority.issue(OPERATOR, IssueRequest("seal", SUBJECTS["seal"], csr=make_csr()))
    page, token = authority.list_certificates(ListFilter(profile="citizen"), page_size=2)
    seen = [r.id for r in page]
    while token:
        page, token = authority.list_certificates(
            ListFilter(profile="citizen"), page_size=2, page_token=token
        )
        seen += [r.id for r in page]
    assert len(seen) == len(set(seen)) == 5
    rows, _ = authority.list_certificates(ListFilter(identity_id="c-rep", status="active"))
    assert len(rows) == 5
