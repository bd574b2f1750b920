"""The key management centre (issue 18 items 1, 2 and 4): paired SM2 encryption certificates,
escrowed keys enveloped to the signing key, cascades, re-keying renewals and dual-control recovery.

Envelopes are opened by tests/sm2_envelope_judge.py (openssl and asn1crypto only), and each
recovered key is held against the encryption certificate's public key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asn1crypto import x509
from sqlalchemy import select

from ca import issuance
from ca.authority import CertificateAuthority
from ca.issuance import SubjectSpec
from ca.models import CaCertificate, CaKeyRecovery
from govtrust.audit import AuditRecord, chain_key, verify_chain
from govtrust.db import Database
from govtrust.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from govtrust.principal import Principal
from hsm import SoftKeyStore
from hsm.errors import KeyDestroyed
from tests.ca.conftest import OPERATOR, USCC, ocsp_query, openssl, pem, pkilint
from tests.sm2_envelope_judge import open_envelope
from tests.unchanged import unchanged

DISTID = "distid:1234567812345678"
REQUESTER = Principal("user", "desk-officer", frozenset({"ca-operator", "key-recovery"}))
OFFICER_1 = Principal("user", "officer-1", frozenset({"key-recovery"}))
OFFICER_2 = Principal("user", "officer-2", frozenset({"key-recovery"}))
ADMIN = Principal("user", "root", frozenset({"admin"}))
CLERK = Principal("user", "clerk", frozenset({"verifier"}))
LEGAL_BASIS = "刑事诉讼法第一百四十三条; (2026)闽0102刑初123号 court order"


def _sm2_csr(tmp: Path, name: str) -> tuple[bytes, Path]:
    key = tmp / f"{name}.key"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(key))
    csr = tmp / f"{name}.csr"
    openssl(
        "req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-subj", "/CN=ignored",
        "-outform", "DER", "-out", str(csr),
    )  # fmt: skip
    return csr.read_bytes(), key


def _signing(
    authority: CertificateAuthority, tmp: Path, name: str = "signing"
) -> tuple[CaCertificate, Path]:
    """An SM2 legal-person signing certificate whose key openssl holds (and its key file)."""
    csr, key = _sm2_csr(tmp, name)
    issued = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person", subject=SubjectSpec(identity=USCC), csr=csr
    ))  # fmt: skip
    return issued.certificate, key


def _spki(der: bytes) -> bytes:
    return bytes(x509.Certificate.load(der).public_key.dump())


def _row(authority: CertificateAuthority, certificate_id: str) -> CaCertificate:
    return authority.get(certificate_id)


def _ocsp_status(authority: CertificateAuthority, row: CaCertificate) -> tuple[str, object]:
    single = ocsp_query(authority, row).basic_ocsp_response["tbs_response_data"]["responses"][0]
    status = single["cert_status"]
    reason = status.chosen["revocation_reason"].native if status.name == "revoked" else None
    return status.name, reason


def _audit(database: Database, action: str) -> list[AuditRecord]:
    with database.read() as session:
        return list(
            session.scalars(
                select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
            )
        )


def test_pair_is_issued_and_the_envelope_opens_with_the_signing_key(
    authority: CertificateAuthority, database: Database, tmp_path: Path
) -> None:
    signing, signing_key = _signing(authority, tmp_path)
    pair = authority.issue_encryption_pair(OPERATOR, signing.id)
    encryption = pair.encryption
    assert encryption.profile == "legal-person-encryption"
    assert encryption.issuer == "sm2-legal-person" and encryption.key_algorithm == "sm2"
    assert encryption.key_id is None and encryption.escrow_key_id is not None
    assert encryption.subject == signing.subject
    assert _row(authority, signing.id).paired_with == encryption.id
    assert _row(authority, encryption.id).paired_with == signing.id
    cert = x509.Certificate.load(encryption.der)
    assert cert.key_usage_value.native == {"key_encipherment", "data_encipherment", "key_agreement"}
    assert cert.extended_key_usage_value is None
    assert cert.not_valid_after <= x509.Certificate.load(signing.der).not_valid_after
    # openssl: the encryption certificate chains to the SM2 CA
    ca = authority.hierarchy.get("sm2-legal-person")
    (tmp_path / "ca.pem").write_text(pem(ca.der))
    (tmp_path / "enc.pem").write_text(pem(encryption.der))
    out = openssl("verify", "-vfyopt", DISTID, "-partial_chain", "-CAfile",
                  str(tmp_path / "ca.pem"), str(tmp_path / "enc.pem"))  # fmt: skip
    assert out.strip().endswith("OK"), out
    # the envelope opens with the signing key, using openssl and asn1crypto only, and holds the
    # private key of the encryption certificate
    opened = open_envelope(pair.envelope, signing_key, tmp_path)
    assert opened.public_spki_der == _spki(encryption.der)
    # the CA answers OCSP for it
    (records,) = [_audit(database, "ca.kmc.issue_encryption_pair")]
    assert len(records) == 1 and json.loads(records[0].details)["escrow_key_id"] == (
        encryption.escrow_key_id
    )


def test_encryption_certificate_passes_pkilint(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    signing, _key = _signing(authority, tmp_path)
    encryption = authority.issue_encryption_pair(OPERATOR, signing.id).encryption
    der_path = tmp_path / "enc.der"
    der_path.write_bytes(encryption.der)
    findings = pkilint("lint_pkix_cert", "--document-format", "DER", str(der_path))
    # RFC 5480 lets an id-ecPublicKey certificate assert only digitalSignature, nonRepudiation,
    # keyAgreement, keyCertSign and cRLSign; an SM2 encryption certificate (GM/T 0015, TLCP
    # key transport) needs keyEncipherment and dataEncipherment: SM2 encryption is not ECDH.
    # That is the one finding, accepted (docs/ca.md); nothing else.
    codes = {line.split()[0] for line in findings.splitlines() if "(ERROR)" in line}
    assert codes == {"pkix.key_usage_value_prohibited_for_ec"}, findings


def test_non_sm2_signing_certificate_is_refused(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore
) -> None:
    p256 = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person", subject=SubjectSpec(identity=USCC), generate_key_algorithm="ec-p256"
    )).certificate  # fmt: skip
    with unchanged(database, soft_keystore), pytest.raises(InvalidArgument) as error:
        authority.issue_encryption_pair(OPERATOR, p256.id)
    assert "not SM2" in str(error.value)
    assert error.value.violations[0].field == "signing_certificate"


def test_other_refusals_of_a_pair_change_nothing(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore, tmp_path: Path
) -> None:
    seal = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="seal", subject=SubjectSpec(seal_id="seal-1"), generate_key_algorithm="sm2"
    )).certificate  # fmt: skip
    with unchanged(database, soft_keystore), pytest.raises(InvalidArgument):
        authority.issue_encryption_pair(OPERATOR, seal.id)
    signing, _key = _signing(authority, tmp_path)
    with unchanged(database, soft_keystore), pytest.raises(PermissionDenied):
        authority.issue_encryption_pair(OFFICER_1, signing.id)
    pair = authority.issue_encryption_pair(OPERATOR, signing.id)
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition):
        authority.issue_encryption_pair(OPERATOR, signing.id)  # already paired
    with unchanged(database, soft_keystore), pytest.raises(InvalidArgument):
        authority.issue_encryption_pair(OPERATOR, pair.encryption.id)  # not a signing one
    other, _ = _signing(authority, tmp_path, "suspended")
    authority.suspend(OPERATOR, other.id)
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition):
        authority.issue_encryption_pair(OPERATOR, other.id)


@pytest.mark.parametrize("which", ["signing", "encryption"])
def test_revoking_either_certificate_revokes_both(
    authority: CertificateAuthority, database: Database, tmp_path: Path, which: str
) -> None:
    signing, _key = _signing(authority, tmp_path)
    pair = authority.issue_encryption_pair(OPERATOR, signing.id)
    chosen = signing if which == "signing" else pair.encryption
    authority.revoke(OPERATOR, chosen.id, reason="keyCompromise")
    for row in (signing, pair.encryption):
        current = _row(authority, row.id)
        assert current.status == "revoked" and current.revocation_reason == 1
        assert _ocsp_status(authority, current) == ("revoked", "key_compromise")
    records = _audit(database, "ca.revoke")
    assert len(records) == 2
    assert "paired_with" in json.loads(records[1].details)


def test_suspending_the_signing_certificate_suspends_its_pair(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore, tmp_path: Path
) -> None:
    signing, _key = _signing(authority, tmp_path)
    encryption = authority.issue_encryption_pair(OPERATOR, signing.id).encryption
    authority.suspend(OPERATOR, signing.id, "lost token")
    assert _row(authority, encryption.id).status == "suspended"
    assert _ocsp_status(authority, encryption) == ("revoked", "certificate_hold")
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition) as error:
        authority.resume(OPERATOR, encryption.id)
    assert "on hold" in str(error.value)
    authority.resume(OPERATOR, signing.id)
    assert _row(authority, signing.id).status == "active"
    assert _row(authority, encryption.id).status == "active"
    assert _ocsp_status(authority, encryption) == ("good", None)
    # suspending the encryption certificate alone leaves the signing certificate alone
    authority.suspend(OPERATOR, encryption.id)
    assert _row(authority, signing.id).status == "active"
    assert _row(authority, encryption.id).status == "suspended"


def test_renewal_re_keys_both(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore, tmp_path: Path
) -> None:
    signing, _key = _signing(authority, tmp_path)
    old = authority.issue_encryption_pair(OPERATOR, signing.id).encryption
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition):
        authority.renew(OPERATOR, old, generate_key_algorithm="sm2")
    with unchanged(database, soft_keystore), pytest.raises(InvalidArgument):
        authority.renew(OPERATOR, signing, generate_key_algorithm="ec-p256")
    with unchanged(database, soft_keystore), pytest.raises(InvalidArgument):
        authority.renew(OPERATOR, signing)  # same key: the pair would not be re-keyed
    csr, new_key = _sm2_csr(tmp_path, "renewed")
    renewed = authority.renew(OPERATOR, signing, csr=csr, revoke_previous=True)
    assert renewed.encryption is not None
    new_pair = renewed.encryption
    assert new_pair.encryption.escrow_key_id != old.escrow_key_id
    assert _spki(new_pair.encryption.der) != _spki(old.der)
    assert _row(authority, renewed.certificate.id).paired_with == new_pair.encryption.id
    assert open_envelope(new_pair.envelope, new_key, tmp_path).public_spki_der == _spki(
        new_pair.encryption.der
    )
    # the old pair went with the old signing certificate
    assert _row(authority, signing.id).status == "revoked"
    assert _row(authority, old.id).status == "revoked"


def _recipient(authority: CertificateAuthority, tmp_path: Path) -> tuple[CaCertificate, Path]:
    return _signing(authority, tmp_path, "recipient")


def test_dual_control_recovery(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore, tmp_path: Path
) -> None:
    signing, _key = _signing(authority, tmp_path)
    encryption = authority.issue_encryption_pair(OPERATOR, signing.id).encryption
    recipient, recipient_key = _recipient(authority, tmp_path)
    request = authority.request_key_recovery(
        REQUESTER, encryption.id, legal_basis=LEGAL_BASIS, recipient_certificate_id=recipient.id
    )
    rid = request.record.id
    assert request.record.status == "pending" and request.approvals == 0
    # no approval, then one approver: delivery refused
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition) as error:
        authority.deliver_recovered_key(REQUESTER, rid)
    assert "has 0" in str(error.value)
    # admin does not imply key-recovery
    with unchanged(database, soft_keystore), pytest.raises(PermissionDenied):
        authority.approve_key_recovery(ADMIN, rid)
    # the requester cannot approve, even holding key-recovery
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition) as error:
        authority.approve_key_recovery(REQUESTER, rid)
    assert "requested" in str(error.value)
    first = authority.approve_key_recovery(OFFICER_1, rid)
    assert first.approvals == 1 and first.record.status == "pending"
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition) as error:
        authority.approve_key_recovery(OFFICER_1, rid)  # the same officer twice
    assert "twice" in str(error.value)
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition) as error:
        authority.deliver_recovered_key(REQUESTER, rid)
    assert "has 1" in str(error.value)
    second = authority.approve_key_recovery(OFFICER_2, rid)
    assert second.approvals == 2 and second.record.status == "approved"
    delivered, envelope = authority.deliver_recovered_key(REQUESTER, rid)
    assert delivered.record.status == "delivered"
    # the recipient opens it (openssl + asn1crypto) and it is the encryption certificate's key
    opened = open_envelope(envelope, recipient_key, tmp_path)
    assert opened.public_spki_der == _spki(encryption.der)
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition):
        authority.deliver_recovered_key(REQUESTER, rid)  # a request delivers once
    # every step is in the audit chain, by whom it was taken
    actors = [
        (r.action, r.actor)
        for r in _audit(database, "ca.kmc.recovery.request")
        + _audit(database, "ca.kmc.recovery.approve")
        + _audit(database, "ca.kmc.recovery.deliver")
    ]
    assert actors == [
        ("ca.kmc.recovery.request", REQUESTER.actor),
        ("ca.kmc.recovery.approve", OFFICER_1.actor),
        ("ca.kmc.recovery.approve", OFFICER_2.actor),
        ("ca.kmc.recovery.deliver", REQUESTER.actor),
    ]
    request_details = json.loads(_audit(database, "ca.kmc.recovery.request")[0].details)
    assert request_details["legal_basis"] == LEGAL_BASIS
    with database.read() as session:
        assert verify_chain(session, chain_key(database)).ok


def test_a_citizen_pair_carries_the_identify_code(
    authority: CertificateAuthority, database: Database
) -> None:
    signing = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="citizen", subject=SubjectSpec(identity="c-rep"), generate_key_algorithm="sm2"
    )).certificate  # fmt: skip
    pair = authority.issue_encryption_pair(OPERATOR, signing.id)
    assert pair.encryption.profile == "citizen-encryption"
    assert pair.encryption.issuer == "sm2-citizen"
    cert = x509.Certificate.load(pair.encryption.der)
    oids = {e["extn_id"].dotted for e in cert["tbs_certificate"]["extensions"]}
    assert "1.2.156.10260.4.1.1" in oids  # GM/T 0015 IdentifyCode, as on the signing certificate
    assert cert.key_usage_value.native == {"key_encipherment", "data_encipherment", "key_agreement"}
    # the signing key is in our key store here (cloud certificate), so no outside party can open
    # the envelope in this test; the legal-person tests open theirs with openssl
    assert signing.key_id is not None and pair.envelope


def test_recovery_request_refusals_change_nothing(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore, tmp_path: Path
) -> None:
    signing, _key = _signing(authority, tmp_path)
    encryption = authority.issue_encryption_pair(OPERATOR, signing.id).encryption
    recipient, _ = _recipient(authority, tmp_path)
    p256 = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person", subject=SubjectSpec(identity=USCC), generate_key_algorithm="ec-p256"
    )).certificate  # fmt: skip
    cases: list[tuple[Principal, str, str, str, type[Exception]]] = [
        (REQUESTER, encryption.id, "  ", recipient.id, InvalidArgument),  # no legal basis
        (REQUESTER, signing.id, LEGAL_BASIS, recipient.id, InvalidArgument),  # no escrowed key
        (REQUESTER, encryption.id, LEGAL_BASIS, p256.id, InvalidArgument),  # recipient not SM2
        (CLERK, encryption.id, LEGAL_BASIS, recipient.id, PermissionDenied),  # no role
    ]
    for principal, certificate_id, basis, recipient_id, expected in cases:
        with unchanged(database, soft_keystore), pytest.raises(expected):
            authority.request_key_recovery(
                principal, certificate_id, legal_basis=basis, recipient_certificate_id=recipient_id
            )
    authority.revoke(OPERATOR, recipient.id)
    with unchanged(database, soft_keystore), pytest.raises(FailedPrecondition):
        authority.request_key_recovery(
            REQUESTER, encryption.id, legal_basis=LEGAL_BASIS, recipient_certificate_id=recipient.id
        )


def test_a_destroyed_key_cannot_be_recovered(
    authority: CertificateAuthority, database: Database, soft_keystore: SoftKeyStore, tmp_path: Path
) -> None:
    signing, _key = _signing(authority, tmp_path)
    encryption = authority.issue_encryption_pair(OPERATOR, signing.id).encryption
    recipient, _ = _recipient(authority, tmp_path)
    rid = authority.request_key_recovery(
        REQUESTER, encryption.id, legal_basis=LEGAL_BASIS, recipient_certificate_id=recipient.id
    ).record.id
    authority.approve_key_recovery(OFFICER_1, rid)
    authority.approve_key_recovery(OFFICER_2, rid)
    assert encryption.escrow_key_id is not None
    soft_keystore.destroy(encryption.escrow_key_id)
    with unchanged(database, soft_keystore), pytest.raises(KeyDestroyed):
        authority.deliver_recovered_key(REQUESTER, rid)
    with unchanged(database, soft_keystore), pytest.raises(KeyDestroyed):
        authority.request_key_recovery(
            REQUESTER, encryption.id, legal_basis=LEGAL_BASIS, recipient_certificate_id=recipient.id
        )
    with database.read() as session:
        assert session.get(CaKeyRecovery, rid).status == "approved"  # type: ignore[union-attr]
