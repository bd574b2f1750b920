"""Signed licence data: JWS through the key store, x5c chain, tampering and unknown keys."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from jose import jws as jose_jws

from hsm.soft import SoftKeyStore
from license.errors import LicenceVerificationFailed, Reason
from license.signed_data import LicenceMetadata, sign_licence, verify_licence
from license.signer import LicenceSigner, b64url, b64url_decode
from tests.license.conftest import (
    OTHER_USCC,
    MiniCa,
    make_ca,
    make_signer,
    same,
    sample_metadata,
    with_malformed_issuer,
)


def _tamper_payload(token: str, key: str, value: object) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(b64url_decode(payload))
    data[key] = value
    new = b64url(json.dumps(data, ensure_ascii=False).encode())
    return f"{header}.{new}.{signature}"


def test_sign_and_verify_round_trip(signer: LicenceSigner, test_ca: MiniCa) -> None:
    meta = sample_metadata()
    token = sign_licence(signer, meta)
    verified = verify_licence(token, [test_ca.root])
    assert verified.metadata == meta
    assert verified.signer == signer.chain[0]
    header = jose_jws.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["typ"] == "licence+jws"
    assert len(header["x5c"]) == 1
    payload = json.loads(b64url_decode(token.split(".")[1]))
    assert payload["ZZBS"] == meta.identifier
    assert payload["ZZYXQJZRQ"] == "长期"
    assert payload["CZZTDMLX"] == "001"
    assert payload["KZ_FDDBR"] == "张三"
    assert payload["status"] == {"status_list": {"idx": 7, "uri": meta.status_uri}}


def test_payload_is_canonical_json(signer: LicenceSigner) -> None:
    token = sign_licence(signer, sample_metadata())
    raw = b64url_decode(token.split(".")[1])
    assert (
        raw
        == json.dumps(
            json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )


def test_es256_signature_is_raw_r_s(signer: LicenceSigner) -> None:
    token = sign_licence(signer, sample_metadata())
    assert len(b64url_decode(token.split(".")[2])) == 64


@pytest.mark.parametrize(
    ("key", "value"),
    [("CZZT", "另一家公司"), ("KZ_ZCZB", "1000万元"), ("ZZYXQJZRQ", "2099-01-01")],
)
def test_tampered_field_is_bad_signature(
    signer: LicenceSigner, test_ca: MiniCa, key: str, value: str
) -> None:
    token = _tamper_payload(sign_licence(signer, sample_metadata()), key, value)
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(token, [test_ca.root])
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_unknown_root_is_untrusted(signer: LicenceSigner) -> None:
    token = sign_licence(signer, sample_metadata())
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(token, [make_ca("another root").root])
    assert info.value.reason is Reason.UNTRUSTED_CHAIN


def test_swapped_certificate_is_bad_signature(
    signer: LicenceSigner, keystore: SoftKeyStore, test_ca: MiniCa
) -> None:
    """A genuine certificate of the same department glued onto a signature by another key."""
    other = make_signer(keystore, test_ca)
    token = sign_licence(signer, sample_metadata())
    header = json.loads(b64url_decode(token.split(".")[0]))
    header["x5c"] = other.x5c
    forged = ".".join([b64url(json.dumps(header).encode()), *token.split(".")[1:]])
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(forged, [test_ca.root])
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_self_signed_key_is_untrusted(keystore: SoftKeyStore, test_ca: MiniCa) -> None:
    rogue_ca = make_ca("govtrust test root")  # same name, different key
    rogue = make_signer(keystore, rogue_ca)
    token = sign_licence(rogue, sample_metadata())
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(token, [test_ca.root])
    assert info.value.reason is Reason.UNTRUSTED_CHAIN


def test_other_organisation_certificate_cannot_sign(
    keystore: SoftKeyStore, test_ca: MiniCa
) -> None:
    for uscc in (OTHER_USCC, None):
        impostor = make_signer(keystore, test_ca, uscc=uscc)
        token = sign_licence(impostor, sample_metadata())
        with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
            verify_licence(token, [test_ca.root])
        assert info.value.reason is Reason.ISSUER_MISMATCH


def test_expired_certificate(keystore: SoftKeyStore, test_ca: MiniCa) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    old = make_signer(keystore, test_ca, not_before=start, days=10)
    # claims to be issued today, after the seal certificate expired
    token = sign_licence(old, sample_metadata())
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(token, [test_ca.root])
    assert info.value.reason is Reason.CERTIFICATE_EXPIRED
    # issued while the certificate was valid: still verifies (long-term licences)
    then = (start + timedelta(days=5)).date()
    good = sign_licence(old, sample_metadata(issue_date=then))
    assert verify_licence(good, [test_ca.root]).metadata.issue_date == then
    # an explicit verification time after expiry is reported as such
    with same(keystore), pytest.raises(LicenceVerificationFailed) as late:
        verify_licence(good, [test_ca.root], at=datetime.now(UTC))
    assert late.value.reason is Reason.CERTIFICATE_EXPIRED


def test_intermediate_chain(keystore: SoftKeyStore, test_ca: MiniCa) -> None:
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = test_ca.issue(inter_key.public_key(), uscc=None, name="seal CA", ca=True)
    ref = keystore.generate("seal", "ec-p256")
    public = ref.load_public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    leaf = test_ca.issue(public, issuer=(inter, inter_key))
    token = sign_licence(LicenceSigner(keystore, ref, (leaf, inter)), sample_metadata())
    assert verify_licence(token, [test_ca.root]).chain == (leaf, inter)
    # without the intermediate the chain is incomplete
    alone = sign_licence(LicenceSigner(keystore, ref, (leaf,)), sample_metadata())
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(alone, [test_ca.root])
    assert info.value.reason is Reason.UNTRUSTED_CHAIN


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", "RS256"])
def test_header_alg_is_not_trusted(signer: LicenceSigner, test_ca: MiniCa, alg: str) -> None:
    token = sign_licence(signer, sample_metadata())
    header = json.loads(b64url_decode(token.split(".")[0]))
    header["alg"] = alg
    forged = ".".join([b64url(json.dumps(header).encode()), *token.split(".")[1:]])
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(forged, [test_ca.root])
    assert info.value.reason is Reason.UNSUPPORTED_ALGORITHM


_ANY_ROOT = make_ca("malformed-token root").root


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a.b", "ü.b.c", "e30.e30.AA"],
)
def test_malformed_tokens(token: str) -> None:
    # no key store, no database: the token is refused before any trust anchor is looked at
    with pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(token, [_ANY_ROOT])
    assert info.value.reason in {Reason.MALFORMED, Reason.MISSING_CHAIN}


def test_missing_x5c(signer: LicenceSigner, test_ca: MiniCa) -> None:
    token = sign_licence(signer, sample_metadata())
    header = json.loads(b64url_decode(token.split(".")[0]))
    del header["x5c"]
    forged = ".".join([b64url(json.dumps(header).encode()), *token.split(".")[1:]])
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(forged, [test_ca.root])
    assert info.value.reason is Reason.MISSING_CHAIN


def test_signer_rejects_foreign_certificate(
    keystore: SoftKeyStore, signer: LicenceSigner, test_ca: MiniCa
) -> None:
    other = make_signer(keystore, test_ca)
    with same(keystore), pytest.raises(ValueError, match="does not certify"):
        LicenceSigner(keystore, signer.key, other.chain)


def test_metadata_round_trip_with_end_date_and_previous() -> None:
    meta = sample_metadata(
        valid_until=date(2028, 5, 3), previous="x", status_index=None, status_uri=None
    )
    data = meta.to_json()
    assert data["ZZYXQJZRQ"] == "2028-05-03"
    assert "status" not in data
    assert LicenceMetadata.from_json(data) == meta


def test_metadata_missing_field_is_malformed() -> None:
    data = sample_metadata().to_json()
    del data["CZZTDM"]
    with pytest.raises(LicenceVerificationFailed, match="CZZTDM"):
        LicenceMetadata.from_json(data)
    data = sample_metadata().to_json()
    data["ZZBS"] = data["ZZBS"][:-1] + ("A" if data["ZZBS"][-1] != "A" else "B")
    with pytest.raises(LicenceVerificationFailed, match="ZZBS"):
        LicenceMetadata.from_json(data)


def test_x5c_is_standard_base64_der(signer: LicenceSigner) -> None:
    token = sign_licence(signer, sample_metadata())
    header = jose_jws.get_unverified_header(token)
    der = base64.b64decode(header["x5c"][0], validate=True)
    assert der == signer.chain[0].public_bytes(Encoding.DER)


def test_malformed_issuer_name_is_malformed(signer: LicenceSigner, test_ca: MiniCa) -> None:
    """A certificate whose issuer name cannot be parsed is MALFORMED evidence, not a crash
    (cryptography parses names lazily and raised ValueError out of the chain check)."""
    token = with_malformed_issuer(sign_licence(signer, sample_metadata()))
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_licence(token, [test_ca.root])
    assert info.value.reason is Reason.MALFORMED
    assert "cannot be read" in info.value.message
