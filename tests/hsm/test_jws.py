"""hsm.jws: compact JWS signed through the key store, checked with cryptography (independently of
python-jose) and verified only under the one alg the caller names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from govtrust.db import Database
from hsm import jws
from hsm.keystore import KeyAlgorithm
from hsm.soft import SoftKeyStore
from tests.unchanged import unchanged

CASES = [
    (KeyAlgorithm.EC_P256, "ES256", 64),
    (KeyAlgorithm.EC_P384, "ES384", 96),
    (KeyAlgorithm.RSA_2048, "RS256", 256),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(("algorithm", "alg", "size"), CASES)
def test_sign_compact_is_a_jws_that_cryptography_verifies(
    database: Database, soft_store: SoftKeyStore, algorithm: KeyAlgorithm, alg: str, size: int
) -> None:
    ref = soft_store.generate(f"jws-{alg}", algorithm)
    public = load_der_public_key(ref.public_key_der)
    token = jws.sign_compact(soft_store, ref, {"alg": alg, "kid": "k1"}, {"sub": "张三", "n": 1})
    head, body, sig = token.split(".")
    # insertion order, no spaces, UTF-8 (not \\u escapes)
    assert _unb64(head) == b'{"alg":"' + alg.encode() + b'","kid":"k1"}'
    assert _unb64(body) == '{"sub":"张三","n":1}'.encode()
    raw = _unb64(sig)
    assert len(raw) == size and "=" not in token
    signing_input = f"{head}.{body}".encode()
    if isinstance(public, ec.EllipticCurvePublicKey):
        half = size // 2
        der = encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
        public.verify(der, signing_input, ec.ECDSA(digest))
        with unchanged(database, soft_store), pytest.raises(InvalidSignature):
            public.verify(der, signing_input + b"x", ec.ECDSA(digest))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(raw, signing_input, padding.PKCS1v15(), hashes.SHA256())
    assert jws.alg_for_key(public) == alg
    assert jws.verify_json(token, public, alg) == {"sub": "张三", "n": 1}


def test_verify_takes_only_the_named_alg(database: Database, soft_store: SoftKeyStore) -> None:
    ref = soft_store.generate("jws-confusion", KeyAlgorithm.EC_P256)
    public = load_der_public_key(ref.public_key_der)
    token = jws.sign_compact(soft_store, ref, {"alg": "ES256"}, {"a": 1})
    head, body, sig = token.split(".")
    # an HMAC keyed with the public key (the classic alg confusion) is refused
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    forged_head = _b64(json.dumps({"alg": "HS256"}).encode())
    mac = hmac.new(pem, f"{forged_head}.{body}".encode(), hashlib.sha256).digest()
    with unchanged(database, soft_store), pytest.raises(jws.BadSignature):
        jws.verify(f"{forged_head}.{body}.{_b64(mac)}", public, "ES256")
    # alg none is refused
    none_head = _b64(json.dumps({"alg": "none"}).encode())
    with unchanged(database, soft_store), pytest.raises(jws.BadSignature):
        jws.verify(f"{none_head}.{body}.", public, "ES256")
    # a changed payload is refused; the intact token passes
    other = _b64(b'{"a":2}')
    with unchanged(database, soft_store), pytest.raises(jws.BadSignature):
        jws.verify(f"{head}.{other}.{sig}", public, "ES256")
    assert jws.verify(token, public, "ES256") == b'{"a":1}'


def test_parse_errors_name_the_part() -> None:
    with pytest.raises(jws.NotCompact):
        jws.unverified_header("a.b")
    with pytest.raises(jws.BadHeader):
        jws.unverified_header("!!!.e30.")
    with pytest.raises(jws.HeaderNotObject):
        jws.unverified_header(_b64(b"[1]") + ".e30.")
    assert jws.unverified_payload(_b64(b'{"alg":"ES256"}') + "." + _b64(b'{"x":1}') + ".s") == {
        "x": 1
    }
    with pytest.raises(jws.PayloadNotObject):
        jws.unverified_payload("e30." + _b64(b'"s"') + ".")
    with pytest.raises(jws.BadPayload):
        jws.parse_payload(b"{not json")
    with pytest.raises(jws.UnsupportedKey):
        jws.alg_for_key(ec.generate_private_key(ec.SECP521R1()).public_key())
    with pytest.raises(jws.UnsupportedKey):
        weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - refused on purpose
        jws.alg_for_key(weak.public_key())
