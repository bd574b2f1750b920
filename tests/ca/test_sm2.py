"""The SM2 hierarchy (issue 16 item 2): SM3-with-SM2 certificates, CRLs, OCSP responses and
time-stamp tokens, judged by openssl 3.

OpenSSL 3.0 checks SM2 signatures inside ``crl -verify``, ``ocsp`` and ``ts -verify`` with an
empty signer ID and offers no option to set one, and ``verify -vfyopt distid:…`` applies the ID
to the leaf only; govtrust signs with the default ID 1234567812345678 (GM/T 0009/0015), so each
artefact's signature is checked here with ``openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt
distid:1234567812345678`` over its TBS bytes and each chain link with ``openssl verify -vfyopt
distid:1234567812345678 -partial_chain`` (docs/standards.md, "SM2 and openssl").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp, x509

from ca import issuance
from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.directory import InMemoryDirectory
from ca.issuance import SubjectSpec
from ca.lint import SM3_WITH_SM2_ALGORITHM, lint_sm2_signature, lint_sm2_tbs, require_clean
from govtrust.config import ConfigError, load_settings
from govtrust.db import Database
from govtrust.errors import FailedPrecondition, InvalidArgument
from hsm import Pkcs11KeyStore, SoftKeyStore
from hsm.sm2 import (
    DEFAULT_SIGNER_ID,
    SM2_CURVE_OID,
    SM3_OID,
    SM3_WITH_SM2_OID,
    Sm2PrivateKey,
)
from tests.ca.conftest import OPERATOR, PUBLIC_URL, USCC, openssl, pem
from tests.unchanged import unchanged

DISTID = "distid:" + DEFAULT_SIGNER_ID.decode()
SM2_CAS = ("sm2-citizen", "sm2-legal-person", "sm2-seal", "sm2-service")


def pkeyutl_verify(tmp: Path, name: str, issuer_der: bytes, tbs: bytes, signature: bytes) -> None:
    """openssl checks ``signature`` over ``tbs`` with the issuer's key and the default ID."""
    cert = tmp / f"{name}-issuer.pem"
    cert.write_text(pem(issuer_der))
    pub = tmp / f"{name}-issuer.pub"
    openssl("x509", "-in", str(cert), "-pubkey", "-noout", "-out", str(pub))
    (tmp / f"{name}.tbs").write_bytes(tbs)
    (tmp / f"{name}.sig").write_bytes(signature)
    out = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-digest", "sm3",
        "-pkeyopt", DISTID, "-in", str(tmp / f"{name}.tbs"), "-sigfile", str(tmp / f"{name}.sig"),
    )  # fmt: skip
    assert "Signature Verified Successfully" in out, out


def verify_link(tmp: Path, name: str, issuer_der: bytes, der: bytes) -> None:
    """openssl verify accepts ``der`` directly under ``issuer_der`` (default distid)."""
    (tmp / f"{name}-ca.pem").write_text(pem(issuer_der))
    (tmp / f"{name}.pem").write_text(pem(der))
    out = openssl(
        "verify", "-vfyopt", DISTID, "-partial_chain", "-CAfile", str(tmp / f"{name}-ca.pem"),
        str(tmp / f"{name}.pem"),
    )  # fmt: skip
    assert out.strip().endswith("OK"), out


def test_bootstrap_creates_the_sm2_hierarchy(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    hierarchy = authority.hierarchy
    root = hierarchy.get("sm2-root")
    assert hierarchy.get("root").key.algorithm.value != "sm2"
    for name in ("sm2-root", *SM2_CAS, *[f"{ca}-ocsp" for ca in SM2_CAS], "sm2-tsa"):
        issuer = hierarchy.get(name)
        cert = issuer.certificate
        assert cert["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
        assert cert["signature_algorithm"]["parameters"].native is None
        assert cert["signature_algorithm"].contents == bytes.fromhex("06082a811ccf55018375")
        spki = cert["tbs_certificate"]["subject_public_key_info"]
        assert spki["algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"
        assert spki["algorithm"]["parameters"].chosen.dotted == SM2_CURVE_OID
        parent = hierarchy.get(issuer.parent) if issuer.parent else root
        pkeyutl_verify(
            tmp_path,
            name,
            parent.der,
            cert["tbs_certificate"].dump(),
            cert["signature_value"].native,
        )
        verify_link(tmp_path, name, parent.der, issuer.der)


def _sm2_csr(tmp: Path) -> bytes:
    """openssl makes an SM2 key and a CSR signed SM3-with-SM2 with the default ID."""
    key = tmp / "sm2.key"
    openssl("genpkey", "-algorithm", "SM2", "-out", str(key))
    csr = tmp / "sm2.csr"
    openssl(
        "req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-subj", "/CN=ignored",
        "-outform", "DER", "-out", str(csr),
    )  # fmt: skip
    return csr.read_bytes()


def test_openssl_sm2_csr_is_issued_by_the_sm2_ca(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    issued = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person",
        subject=SubjectSpec(identity=USCC),
        csr=_sm2_csr(tmp_path),
    ))  # fmt: skip
    row = issued.certificate
    assert row.issuer == "sm2-legal-person"
    assert row.key_algorithm == "sm2"
    ca = authority.hierarchy.get("sm2-legal-person")
    cert = x509.Certificate.load(row.der)
    assert cert["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
    pkeyutl_verify(
        tmp_path, "leaf", ca.der, cert["tbs_certificate"].dump(), cert["signature_value"].native
    )
    verify_link(tmp_path, "leaf", ca.der, row.der)


def _issue_sm2(authority: CertificateAuthority) -> issuance.Issued:
    return authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person", subject=SubjectSpec(USCC), generate_key_algorithm="sm2"
    ))  # fmt: skip


def test_generated_sm2_key_revoked_shows_in_sm2_crls(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    issued = _issue_sm2(authority)
    row = issued.certificate
    assert row.issuer == "sm2-legal-person" and row.key_algorithm == "sm2"
    # a full CRL published before the revocation is the delta's base (RFC 5280 5.2.4: the
    # delta lists what changed since its base, so without it the new delta would be empty)
    authority.crl("sm2-legal-person")
    authority.revoke(OPERATOR, row.id, reason="key_compromise")
    ca = authority.hierarchy.get("sm2-legal-person")
    for delta in (False, True):
        info = authority.crl("sm2-legal-person", delta=delta)
        crl = asn1_crl.CertificateList.load(info.der)
        assert crl["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
        assert crl["signature_algorithm"]["parameters"].native is None
        serials = [
            c["user_certificate"].native for c in crl["tbs_cert_list"]["revoked_certificates"]
        ]
        assert int(row.serial, 16) in serials
        name = f"crl-{delta}"
        pkeyutl_verify(tmp_path, name, ca.der, crl["tbs_cert_list"].dump(), crl["signature"].native)
    # the ECDSA CA's CRL does not list the SM2 certificate
    ecdsa = asn1_crl.CertificateList.load(authority.crl("legal-person").der)
    assert not list(ecdsa["tbs_cert_list"]["revoked_certificates"] or [])


def _sm3_ocsp_request(ca_der: bytes, serial: int) -> bytes:
    ca = x509.Certificate.load(ca_der)
    request: bytes = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": SM3_OID},
        "issuer_name_hash": hashlib.new("sm3", ca.subject.dump()).digest(),
        "issuer_key_hash": hashlib.new("sm3", bytes(ca.public_key["public_key"])).digest(),
        "serial_number": serial,
    }}]}}).dump()  # fmt: skip
    return request


def test_ocsp_with_an_sm3_cert_id_is_answered_by_the_sm2_responder(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    issued = _issue_sm2(authority)
    ca = authority.hierarchy.get("sm2-legal-person")
    responder = authority.hierarchy.get("sm2-legal-person-ocsp")
    der = authority.ocsp(_sm3_ocsp_request(ca.der, int(issued.certificate.serial, 16)))
    response = asn1_ocsp.OCSPResponse.load(der)
    assert response["response_status"].native == "successful"
    basic = response["response_bytes"]["response"].parsed
    assert basic["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
    single = basic["tbs_response_data"]["responses"][0]
    assert single["cert_status"].name == "good"
    assert single["cert_id"]["hash_algorithm"]["algorithm"].dotted == SM3_OID
    pkeyutl_verify(
        tmp_path, "ocsp", responder.der, basic["tbs_response_data"].dump(),
        basic["signature"].native,
    )  # fmt: skip
    verify_link(tmp_path, "responder", ca.der, responder.der)


def test_sm2_tsa_token_with_an_sm3_imprint(authority: CertificateAuthority, tmp_path: Path) -> None:
    request = tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": SM3_OID},
            "hashed_message": hashlib.new("sm3", b"hello").digest(),
        },
        "nonce": int.from_bytes(os.urandom(8), "big"),
        "cert_req": True,
    }).dump()  # fmt: skip
    result = authority.timestamp(request, sm2=True)
    assert result.granted, result.message
    token = tsp.TimeStampResp.load(result.der)["time_stamp_token"]
    signed = token["content"]
    signer = signed["signer_infos"][0]
    assert signer["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
    assert signer["digest_algorithm"]["algorithm"].dotted == SM3_OID
    info = signed["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].dotted == SM3_OID
    tsa = authority.hierarchy.get("sm2-tsa")
    pkeyutl_verify(
        tmp_path, "tsa", tsa.der, signer["signed_attrs"].untag().dump(),
        signer["signature"].native,
    )  # fmt: skip
    verify_link(tmp_path, "tsa", authority.hierarchy.get("sm2-service").der, tsa.der)
    # the ECDSA TSA still answers, and refuses nothing it accepted before
    assert authority.timestamp(request).granted


def test_pkcs11_without_sm2_keeps_ecdsa_and_refuses_sm2_cleanly(
    database: Database, directory: InMemoryDirectory, tmp_path: Path, ca_softhsm_token: Any
) -> None:
    store = Pkcs11KeyStore(ca_softhsm_token.module, ca_softhsm_token.label, ca_softhsm_token.pin)
    try:
        authority = CertificateAuthority.open(
            database, store, CaConfig(public_base_url=PUBLIC_URL), directory
        )
        assert "sm2-root" not in authority.hierarchy.issuers
        assert authority.hierarchy.ca_names()[0] == "root"
        ecdsa = authority.issue(OPERATOR, issuance.IssueRequest(
            profile="legal-person", subject=SubjectSpec(USCC), generate_key_algorithm="ec-p256"
        ))  # fmt: skip
        assert ecdsa.certificate.issuer == "legal-person"
        for request in (
            issuance.IssueRequest(
                profile="legal-person", subject=SubjectSpec(USCC), generate_key_algorithm="sm2"
            ),
            issuance.IssueRequest(
                profile="legal-person", subject=SubjectSpec(USCC), csr=_sm2_csr(tmp_path)
            ),
        ):
            with unchanged(database, store), pytest.raises(FailedPrecondition, match="SM2"):
                authority.issue(OPERATOR, request)
        refused = authority.timestamp(b"\x30\x00", sm2=True)
        assert not refused.granted
    finally:
        store.close()


def test_sm2_lint_refuses_wrong_identifiers_bad_points_and_other_signer_ids() -> None:
    key = Sm2PrivateKey.generate()
    spki = key.public_key_der
    assert lint_sm2_tbs(SM3_WITH_SM2_ALGORITHM, spki) == []
    ecdsa_sha256 = bytes.fromhex("300a06082a8648ce3d040302")
    with_null = bytes.fromhex("300c06082a811ccf550183750500")
    for algorithm in (ecdsa_sha256, with_null):
        assert lint_sm2_tbs(algorithm, spki) == [
            "signature algorithm is not SM3-with-SM2 without parameters"
        ]
    off_curve = spki[:-1] + bytes([spki[-1] ^ 1])
    assert "subject SM2 public key" in lint_sm2_tbs(SM3_WITH_SM2_ALGORITHM, off_curve)[0]
    tbs = b"to be signed"
    assert lint_sm2_signature(spki, tbs, key.sign(tbs)) == []
    other_id = key.sign(tbs, signer_id=b"ALICE123@YAHOO.COM")
    assert "default signer ID" in lint_sm2_signature(spki, tbs, other_id)[0]
    with pytest.raises(FailedPrecondition, match="RFC 5280"):
        require_clean(lint_sm2_signature(spki, tbs, other_id), "certificate")


def test_default_key_algorithm_per_profile(
    database: Database, soft_keystore: SoftKeyStore, directory: InMemoryDirectory
) -> None:
    config = CaConfig(public_base_url=PUBLIC_URL, profile_key_algorithms="legal-person=sm2")
    authority = CertificateAuthority.open(database, soft_keystore, config, directory)
    default = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person", subject=SubjectSpec(USCC)
    ))  # fmt: skip
    assert default.certificate.issuer == "sm2-legal-person"
    assert default.certificate.key_algorithm == "sm2"
    chosen = authority.issue(OPERATOR, issuance.IssueRequest(
        profile="legal-person", subject=SubjectSpec(USCC), generate_key_algorithm="ec-p256"
    ))  # fmt: skip
    assert chosen.certificate.issuer == "legal-person"
    for bad in ("legal-person", "nobody=sm2", "seal=sm9"):
        with unchanged(database, soft_keystore), pytest.raises(InvalidArgument):
            CaConfig(profile_key_algorithms=bad).validate()
    settings = load_settings({"ca_key_algorithms": "seal=sm2,legal-person=sm2"}, env={})
    assert settings.ca_key_algorithms == ("seal=sm2", "legal-person=sm2")
    with pytest.raises(ConfigError, match="ca_key_algorithms"):
        load_settings({"ca_key_algorithms": "seal"}, env={})
