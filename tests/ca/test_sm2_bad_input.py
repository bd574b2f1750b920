"""Bad SM2 input to the CA (issue 16 item 6): each refused with a specific INVALID_ARGUMENT on
``csr``, nothing stored.

The requests are built here with asn1crypto and signed by gmalglib (``hsm.sm2``), so that each
fault is exactly one: another signer ID, a changed signature, an ECDSA signature algorithm on an
SM2 key, an SM2 point that is off the curve or truncated, a P-256 key labelled as SM2, and an
SM3-with-SM2 signature algorithm on a P-256 key.
"""

from __future__ import annotations

import pytest
from asn1crypto import csr, keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca import issuance
from ca.authority import CertificateAuthority
from ca.issuance import SubjectSpec
from govtrust.errors import InvalidArgument
from hsm import SoftKeyStore
from hsm.sm2 import SM2_CURVE_OID, SM3_WITH_SM2_OID, Sm2PrivateKey
from tests.ca.conftest import OPERATOR, USCC
from tests.unchanged import unchanged

ECDSA_SHA256_OID = "1.2.840.10045.4.3.2"


def _info(spki_der: bytes) -> csr.CertificationRequestInfo:
    return csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": asn1_x509.Name.build({"common_name": "ignored-by-the-ca"}),
            "subject_pk_info": keys.PublicKeyInfo.load(spki_der),
            "attributes": [],
        }
    )


def _request(info: csr.CertificationRequestInfo, algorithm: str, signature: bytes) -> bytes:
    der: bytes = csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": algorithm},
            "signature": signature,
        }
    ).dump()
    return der


def _sm2_csr(
    key: Sm2PrivateKey,
    *,
    spki_der: bytes | None = None,
    signer_id: bytes | None = None,
    algorithm: str = SM3_WITH_SM2_OID,
    tamper: bool = False,
) -> bytes:
    info = _info(spki_der or key.public_key_der)
    signature = key.sign(info.dump(), signer_id=signer_id)
    if tamper:
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    return _request(info, algorithm, signature)


def _sm2_spki(point: bytes) -> bytes:
    """An SPKI with the SM2 curve's algorithm identifier around ``point``."""
    sm2 = keys.PublicKeyInfo.load(Sm2PrivateKey.generate().public_key_der)
    assert sm2["algorithm"]["parameters"].chosen.dotted == SM2_CURVE_OID
    spki: bytes = keys.PublicKeyInfo({"algorithm": sm2["algorithm"], "public_key": point}).dump()
    return spki


def _point(spki_der: bytes) -> bytes:
    return bytes(keys.PublicKeyInfo.load(spki_der)["public_key"].native)


def _issue(authority: CertificateAuthority, der: bytes) -> issuance.Issued:
    return authority.issue(
        OPERATOR,
        issuance.IssueRequest(profile="legal-person", subject=SubjectSpec(USCC), csr=der),
    )


def test_a_well_formed_sm2_request_is_issued(authority: CertificateAuthority) -> None:
    """The builder above makes requests the CA accepts, so each refusal below is its fault."""
    issued = _issue(authority, _sm2_csr(Sm2PrivateKey.generate()))
    assert issued.certificate.key_algorithm == "sm2"


def _cases() -> list[tuple[str, bytes, str]]:
    key = Sm2PrivateKey.generate()
    point = _point(key.public_key_der)
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    p256 = ec.generate_private_key(ec.SECP256R1())
    p256_point = p256.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    p256_spki = p256.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    p256_info = _info(p256_spki)
    return [
        (
            "another signer ID",
            _sm2_csr(key, signer_id=b"ALICE123@YAHOO.COM"),
            "the SM2 signature does not verify",
        ),
        ("a changed signature", _sm2_csr(key, tamper=True), "the SM2 signature does not verify"),
        (
            "an ECDSA algorithm on an SM2 key",
            _sm2_csr(key, algorithm=ECDSA_SHA256_OID),
            "must be signed SM3-with-SM2",
        ),
        (
            "an SM2 point off the curve",
            _sm2_csr(key, spki_der=_sm2_spki(off_curve)),
            "SM2 point is not on the SM2 curve",
        ),
        (
            "a truncated SM2 point",
            _sm2_csr(key, spki_der=_sm2_spki(point[:40])),
            "SM2 point is truncated or malformed",
        ),
        (
            "a P-256 key labelled SM2",
            _sm2_csr(key, spki_der=_sm2_spki(p256_point)),
            "SM2 point is not on the SM2 curve",
        ),
        (
            "SM3-with-SM2 on a P-256 key",
            _request(p256_info, SM3_WITH_SM2_OID, key.sign(p256_info.dump())),
            "signature algorithm is not supported",
        ),
    ]


@pytest.mark.parametrize("index", range(7))
def test_bad_sm2_requests_are_refused_and_change_nothing(
    authority: CertificateAuthority, soft_keystore: SoftKeyStore, index: int
) -> None:
    what, der, text = _cases()[index]
    with (
        unchanged(authority.ctx.db, soft_keystore),
        pytest.raises(InvalidArgument, match=text) as refused,
    ):
        _issue(authority, der)
    assert refused.value.violations, what
    assert refused.value.violations[0].field == "csr", (what, refused.value.violations)
