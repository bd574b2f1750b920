"""Certificate login (一证通) with SM2 (issue 16 item 4): an SM2 certificate issued by our SM2 CA
logs in through the real flow with an SM2-with-SM3 challenge signature made by openssl (default
signer ID 1234567812345678, DER ``SEQUENCE{r, s}``); the ID token stays ES256 and verifies with
the JWKS. Each bad input is refused with its own reason and leaves nothing but the used challenge.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from jose import jwt

from ca import issuance
from ca.authority import CertificateAuthority
from ca.config import CaConfig
from ca.issuance import SubjectSpec
from ca.path import is_sm2_key, signed_by
from govtrust.api.oidc_http import SESSION_COOKIE
from hsm.sm2 import DEFAULT_SIGNER_ID, Sm2PrivateKey
from idp.oidc import certlogin
from idp.oidc.certlogin import CaDatabaseValidator, CertificateRejected
from tests.ca.conftest import OPERATOR, PUBLIC_URL, make_directory, openssl
from tests.oidc.conftest import CITIZEN_ID, USCC, OidcEnv, TestCa, pem, pkce_pair
from tests.oidc.flows import (
    authorize,
    challenge_of,
    code_from,
    exchange,
    finish_consent,
    follow_to_page,
    form_value,
)
from tests.oidc.test_basic_op import decode_id_token
from tests.unchanged import unchanged

DISTID = "distid:" + DEFAULT_SIGNER_ID.decode()
CHALLENGE_USED = ["oidc_interactions"]


@dataclass
class Sm2Holder:
    """An SM2 key made by openssl and the certificate our SM2 CA issued for it."""

    key_path: Path
    cert: x509.Certificate
    certificate_id: str

    def openssl_sign(self, tmp: Path, challenge: str, distid: str = DISTID) -> bytes:
        """openssl signs ``challenge`` SM2-with-SM3 over the signer ID (docs/standards.md)."""
        data, sig = tmp / "challenge.txt", tmp / "challenge.sig"
        data.write_bytes(challenge.encode())
        openssl(
            "pkeyutl", "-sign", "-inkey", str(self.key_path), "-rawin", "-digest", "sm3",
            "-pkeyopt", distid, "-in", str(data), "-out", str(sig),
        )  # fmt: skip
        return sig.read_bytes()

    def private_key(self) -> Sm2PrivateKey:
        _type, _headers, der = asn1_pem.unarmor(self.key_path.read_bytes())  # PKCS#8
        return Sm2PrivateKey.from_pkcs8(der)


@dataclass
class Sm2Env:
    env: OidcEnv
    authority: CertificateAuthority
    tmp: Path

    def issue(self, profile: str, identity: str, name: str) -> Sm2Holder:
        """openssl makes an SM2 key and CSR; our CA issues it (the SM2 issuing CA)."""
        key = self.tmp / f"{name}.key"
        csr = self.tmp / f"{name}.csr"
        openssl("genpkey", "-algorithm", "SM2", "-out", str(key))
        openssl(
            "req", "-new", "-key", str(key), "-sm3", "-sigopt", DISTID, "-subj", "/CN=ignored",
            "-outform", "DER", "-out", str(csr),
        )  # fmt: skip
        issued = self.authority.issue(
            OPERATOR,
            issuance.IssueRequest(
                profile=profile, subject=SubjectSpec(identity), csr=csr.read_bytes()
            ),
        )
        assert issued.certificate.issuer == f"sm2-{profile}"
        cert = x509.load_der_x509_certificate(issued.certificate.der)
        return Sm2Holder(key, cert, issued.certificate.id)


@pytest.fixture
def sm2_env(oidc_env: OidcEnv, tmp_path: Path) -> Sm2Env:
    """The OIDC env with our real CA (both hierarchies) on the same database, and the
    provider's production validator (chain to our roots, status from ``ca_certificates``)."""
    platform = oidc_env.platform
    authority = CertificateAuthority.open(
        platform.db, platform.keystore, CaConfig(public_base_url=PUBLIC_URL), make_directory()
    )
    oidc_env.provider.validator = CaDatabaseValidator(platform.db)
    return Sm2Env(oidc_env, authority, tmp_path)


def _post(http: TestClient, path: str, html: str, cert_pem: str, signature: bytes) -> Any:
    return http.post(
        f"{path}/certificate",
        data={
            "csrf": form_value(html, "csrf"),
            "certificate": cert_pem,
            "signature": base64.b64encode(signature).decode(),
        },
    )


@pytest.mark.parametrize(
    ("profile", "identity", "acr_kind"),
    [("citizen", "c-rep", "citizen"), ("legal-person", USCC, "legal_person")],
)
def test_sm2_certificate_logs_in_and_the_id_token_is_es256(
    sm2_env: Sm2Env, profile: str, identity: str, acr_kind: str
) -> None:
    env = sm2_env.env
    holder = sm2_env.issue(profile, identity, profile)
    assert is_sm2_key(holder.cert)
    assert holder.cert.signature_algorithm_oid.dotted_string == "1.2.156.10197.1.501"
    client_id, secret = env.register_client()
    verifier, pkce = pkce_pair()
    scope = "openid profile legal_person" if acr_kind == "legal_person" else "openid profile"
    with env.http() as http:
        start = authorize(
            http, client_id, scope=scope, code_challenge=pkce, code_challenge_method="S256"
        )
        path, html = follow_to_page(http, start)
        signature = holder.openssl_sign(sm2_env.tmp, challenge_of(html))
        result = _post(http, path, html, pem(holder.cert), signature)
        if acr_kind == "legal_person":  # the legal person chooses who acts (its agent)
            page, acting = follow_to_page(http, result)
            result = http.post(
                f"{page}/acting",
                data={"csrf": form_value(acting, "csrf"), "person_id": env.agent_id},
            )
        result = finish_consent(http, result)
        code = code_from(result)["code"]
        tokens = exchange(http, client_id, secret, code, verifier).json()
        assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "ES256"
        claims = decode_id_token(http, tokens["id_token"], client_id, env.issuer)
        assert claims["acr"].endswith("3")
        userinfo = http.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).json()
        expected = env.citizen_id if acr_kind == "citizen" else env.company_id
        assert userinfo["sub"] == claims["sub"] == expected


def _assert_refused(sm2_env: Sm2Env, cert_pem: str, sign: Callable[[str], bytes]) -> None:
    """Through the real flow: refused (400, the certificate error), no session, only the used
    challenge changes."""
    env = sm2_env.env
    client_id, _ = env.register_client()
    with env.http() as http:
        path, html = follow_to_page(http, authorize(http, client_id))
        signature = sign(challenge_of(html))
        with unchanged(env.platform.db, allow=CHALLENGE_USED):
            result = _post(http, path, html, cert_pem, signature)
        assert result.status_code == 400
        assert "证书" in result.text or "certificate" in result.text.lower()
        assert SESSION_COOKIE not in http.cookies


def _reason(sm2_env: Sm2Env, cert: x509.Certificate, signature: bytes, challenge: str) -> str:
    with pytest.raises(CertificateRejected) as refused:
        certlogin.verify_login(
            CaDatabaseValidator(sm2_env.env.platform.db), pem(cert), challenge, signature
        )
    return refused.value.code


def _with_point(cert: x509.Certificate, point: bytes) -> x509.Certificate:
    """``cert`` with its public key's point replaced (the CA's signature no longer holds)."""
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    spki = tbs["subject_public_key_info"]
    spki.__setitem__("public_key", point)
    tbs.__setitem__("subject_public_key_info", spki)
    der = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": parsed["signature_algorithm"],
            "signature_value": parsed["signature_value"],
        }
    ).dump(force=True)
    return x509.load_pem_x509_certificate(asn1_pem.armor("CERTIFICATE", der))


def test_sm2_signature_with_another_signer_id_is_refused(sm2_env: Sm2Env) -> None:
    holder = sm2_env.issue("citizen", "c-rep", "citizen")
    key = holder.private_key()
    challenge = "a-challenge"
    assert _reason(sm2_env, holder.cert, key.sign(challenge.encode(), b"ALICE123@YAHOO.COM"),
                   challenge) == "sm2_signature"  # fmt: skip
    # openssl with another distid, too
    other = holder.openssl_sign(sm2_env.tmp, challenge, "distid:ALICE123@YAHOO.COM")
    assert _reason(sm2_env, holder.cert, other, challenge) == "sm2_signature"
    # and the same key with the default ID passes the signature check
    certlogin.check_challenge_signature(holder.cert, challenge, key.sign(challenge.encode()))
    _assert_refused(
        sm2_env, pem(holder.cert), lambda c: key.sign(c.encode(), b"ALICE123@YAHOO.COM")
    )


def test_truncated_or_off_curve_sm2_point_is_refused(sm2_env: Sm2Env) -> None:
    holder = sm2_env.issue("citizen", "c-rep", "citizen")
    key = holder.private_key()
    point = key.public_point
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    for bad in (point[:40], off_curve):
        cert = _with_point(holder.cert, bad)
        with pytest.raises(CertificateRejected) as refused:
            certlogin.check_challenge_signature(cert, "c", key.sign(b"c"))
        assert refused.value.code == "sm2_public_key"
        assert "truncated" in str(refused.value) or "not on the SM2 curve" in str(refused.value)
        _assert_refused(sm2_env, pem(cert), lambda c: key.sign(c.encode()))


def test_p256_key_presented_as_sm2_and_the_reverse(sm2_env: Sm2Env) -> None:
    holder = sm2_env.issue("citizen", "c-rep", "citizen")
    p256 = ec.generate_private_key(ec.SECP256R1())
    p256_point = p256.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    # the certificate names the SM2 curve but carries a P-256 key; the challenge is ECDSA
    posing = _with_point(holder.cert, p256_point)
    with pytest.raises(CertificateRejected) as refused:
        certlogin.check_challenge_signature(posing, "c", p256.sign(b"c", ec.ECDSA(hashes.SHA256())))
    assert refused.value.code == "sm2_public_key"
    _assert_refused(
        sm2_env, pem(posing), lambda c: p256.sign(c.encode(), ec.ECDSA(hashes.SHA256()))
    )
    # a genuine SM2 certificate with an ECDSA signature (any key): not SM2-with-SM3
    ecdsa = p256.sign(b"c", ec.ECDSA(hashes.SHA256()))
    assert _reason(sm2_env, holder.cert, ecdsa, "c") == "sm2_signature"
    # a P-256 certificate with an SM2 signature: not ECDSA
    test_ca = TestCa.create()
    _key, p256_cert = test_ca.citizen_cert(CITIZEN_ID, "张三")
    with pytest.raises(CertificateRejected) as refused:
        certlogin.check_challenge_signature(p256_cert, "c", holder.private_key().sign(b"c"))
    assert refused.value.code == "signature"
    assert "ECDSA" in str(refused.value)


def test_sm2_certificate_from_an_unknown_sm2_ca_is_refused(
    sm2_env: Sm2Env, sqlite_template: Path, tmp_path: Path
) -> None:
    # another instance's SM2 hierarchy (its own database and keys): a lookalike SM2 CA
    import shutil

    from govtrust.db import Database
    from hsm import SoftKeyStore
    from hsm.master import MasterKey

    shutil.copyfile(sqlite_template, tmp_path / "rogue.db")
    other_db = Database(f"sqlite:///{tmp_path / 'rogue.db'}")
    try:
        rogue = Sm2Env(
            sm2_env.env,
            CertificateAuthority.open(
                other_db,
                SoftKeyStore(other_db, MasterKey.generate()),
                CaConfig(public_base_url=PUBLIC_URL),
                make_directory(),
            ),
            tmp_path,
        )
        holder = rogue.issue("citizen", "c-rep", "rogue")
        ours = sm2_env.authority.hierarchy.get("sm2-citizen").certificate
        rogue_ca = rogue.authority.hierarchy.get("sm2-citizen")
        theirs = x509.load_der_x509_certificate(rogue_ca.der)
        assert signed_by(holder.cert, theirs)
        assert ours["tbs_certificate"]["subject"].dump() == theirs.subject.public_bytes()
        key = holder.private_key()
        assert _reason(sm2_env, holder.cert, key.sign(b"c"), "c") == "untrusted"
        # even presented with its (rogue) issuing CA, the chain ends nowhere we trust
        chain = pem(holder.cert) + pem(theirs)
        validator = certlogin.ChainValidator(
            [
                x509.load_der_x509_certificate(sm2_env.authority.hierarchy.get(n).der)
                for n in ("root", "sm2-root")
            ]
        )
        with pytest.raises(CertificateRejected) as refused:
            certlogin.verify_login(validator, chain, "c", key.sign(b"c"))
        assert refused.value.code == "untrusted"
        _assert_refused(sm2_env, chain, lambda c: key.sign(c.encode()))
    finally:
        other_db.dispose()


def test_revoked_sm2_certificate_is_refused(sm2_env: Sm2Env) -> None:
    holder = sm2_env.issue("citizen", "c-rep", "citizen")
    key = holder.private_key()
    certlogin.verify_login(
        CaDatabaseValidator(sm2_env.env.platform.db), pem(holder.cert), "c", key.sign(b"c")
    )
    sm2_env.authority.revoke(OPERATOR, holder.certificate_id, reason="key_compromise")
    assert _reason(sm2_env, holder.cert, key.sign(b"c"), "c") == "revoked"
    _assert_refused(sm2_env, pem(holder.cert), lambda c: key.sign(c.encode()))


def test_sm2_chain_links_verify_through_ca_path(sm2_env: Sm2Env) -> None:
    """ca.path.signed_by checks SM3-with-SM2 links with hsm.sm2; a tampered one fails."""
    holder = sm2_env.issue("citizen", "c-rep", "citizen")
    hierarchy = sm2_env.authority.hierarchy
    issuing = x509.load_der_x509_certificate(hierarchy.get("sm2-citizen").der)
    root = x509.load_der_x509_certificate(hierarchy.get("sm2-root").der)
    ecdsa_root = x509.load_der_x509_certificate(hierarchy.get("root").der)
    assert signed_by(holder.cert, issuing) and signed_by(issuing, root) and signed_by(root, root)
    assert not signed_by(holder.cert, root)
    assert not signed_by(issuing, ecdsa_root)
    der = bytearray(holder.cert.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside s
    tampered = x509.load_der_x509_certificate(bytes(der))
    assert not signed_by(tampered, issuing)
