"""KeyStore behaviour, identical on the soft and the PKCS#11 backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto.algos import DSASignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from govtrust.db import Database
from hsm import (
    SCHEMES,
    InvalidLabel,
    KeyAlgorithm,
    KeyDestroyed,
    KeyNotFound,
    KeyRef,
    KeyStore,
    KeyStoreError,
    SignatureScheme,
    UnsupportedAlgorithm,
    UnsupportedScheme,
    check_scheme,
    default_scheme,
    schemes_for,
)
from tests.unchanged import unchanged

HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}
MESSAGE = b"govtrust: 32-byte-ish test message"


def verify(ref: KeyRef, signature: bytes, data: bytes, scheme: SignatureScheme) -> None:
    """Verify with ``cryptography``; raises InvalidSignature on failure."""
    spec = SCHEMES[scheme]
    digest = HASHES[spec.digest]
    public = ref.load_public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(digest))
    elif isinstance(public, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(digest), salt_length=spec.digest_size)
            if spec.padding == "pss"
            else padding.PKCS1v15()
        )
        public.verify(signature, data, pad, digest)
    else:  # pragma: no cover
        raise AssertionError(type(public))


def test_scheme_helpers() -> None:
    assert schemes_for(KeyAlgorithm.EC_P256) == (
        SignatureScheme.ECDSA_SHA256,
        SignatureScheme.ECDSA_SHA384,
    )
    assert len(schemes_for("rsa-3072")) == 4
    assert default_scheme("ec-p384") is SignatureScheme.ECDSA_SHA384
    assert check_scheme("rsa-2048", "rsa-pss-sha256") is SignatureScheme.RSA_PSS_SHA256
    with pytest.raises(UnsupportedScheme, match="does not fit a ec-p256 key"):
        check_scheme("ec-p256", "rsa-pss-sha256")
    with pytest.raises(UnsupportedAlgorithm, match="unsupported key algorithm 'ec-p521'"):
        schemes_for("ec-p521")


# SM2 (no cryptography public key object, its own signature) is tested in test_sm2.py
@pytest.mark.parametrize("algorithm", [a for a in KeyAlgorithm if a is not KeyAlgorithm.SM2])
def test_generate_sign_verify_every_scheme(keystore: KeyStore, algorithm: KeyAlgorithm) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    ref = keystore.generate(f"test {algorithm.value}", algorithm)
    assert ref.algorithm is algorithm
    assert ref.label == f"test {algorithm.value}"
    assert len(ref.key_id) == 32
    assert before <= ref.created_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert keystore.public_key(ref) == ref.public_key_der
    assert keystore.get(ref.key_id) == ref

    public = ref.load_public_key()
    if algorithm.value.startswith("ec"):
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}[algorithm]
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.key_size == int(algorithm.value.split("-")[1])

    for scheme in schemes_for(algorithm):
        signature = keystore.sign(ref, MESSAGE, scheme)
        verify(ref, signature, MESSAGE, scheme)
        # by id and by plain string scheme too
        verify(ref, keystore.sign(ref.key_id, MESSAGE, scheme.value), MESSAGE, scheme)
        if SCHEMES[scheme].family.value == "ec":  # DER SEQUENCE { r, s }, as X.509/CMS want
            parsed = DSASignature.load(signature)
            assert parsed.dump() == signature
            assert parsed["r"].native > 0 and parsed["s"].native > 0


def test_sign_with_mismatched_scheme_is_a_clear_error(
    database: Database, keystore: KeyStore
) -> None:
    ref = keystore.generate("ec key", KeyAlgorithm.EC_P256)
    with unchanged(database, keystore), pytest.raises(UnsupportedScheme) as info:
        keystore.sign(ref, MESSAGE, SignatureScheme.RSA_PSS_SHA256)
    assert "'rsa-pss-sha256' does not fit a ec-p256 key" in info.value.message
    assert "ecdsa-sha256" in info.value.message
    assert info.value.violations[0].field == "scheme"
    with (
        unchanged(database, keystore),
        pytest.raises(UnsupportedScheme, match="unsupported signature scheme 'md5-rsa'"),
    ):
        keystore.sign(ref, MESSAGE, "md5-rsa")


def test_unsupported_algorithm_and_bad_labels(database: Database, keystore: KeyStore) -> None:
    with unchanged(database, keystore), pytest.raises(UnsupportedAlgorithm, match="ec-p521"):
        keystore.generate("k", "ec-p521")
    for label in ("", "   ", "tab\there", "x" * 256):
        with unchanged(database, keystore), pytest.raises(InvalidLabel):
            keystore.generate(label, KeyAlgorithm.EC_P256)


def test_list_get_and_unknown_ids(database: Database, keystore: KeyStore) -> None:
    first = keystore.generate("first", KeyAlgorithm.EC_P256)
    second = keystore.generate("second", KeyAlgorithm.EC_P384)
    listed = keystore.list()
    ids = [ref.key_id for ref in listed]
    assert first in listed and second in listed
    assert ids.index(first.key_id) < ids.index(second.key_id)  # oldest first
    assert keystore.get(second.key_id) == second

    for unknown in ("0" * 32, "not-hex-at-all", "", "ab" * 40, "ab cd", "F" * 32):
        with unchanged(database, keystore), pytest.raises(KeyNotFound):
            keystore.get(unknown)
        with unchanged(database, keystore), pytest.raises(KeyNotFound):
            keystore.sign(unknown, MESSAGE, SignatureScheme.ECDSA_SHA256)
        with unchanged(database, keystore), pytest.raises(KeyNotFound):
            keystore.public_key(unknown)
        with unchanged(database, keystore), pytest.raises(KeyNotFound):
            keystore.destroy(unknown)
    with pytest.raises(KeyNotFound, match="'00000000000000000000000000000000' does not exist"):
        keystore.get("0" * 32)


def test_destroy_then_use_is_an_error(database: Database, keystore: KeyStore) -> None:
    ref = keystore.generate("doomed", KeyAlgorithm.EC_P256)
    keep = keystore.generate("kept", KeyAlgorithm.EC_P256)
    keystore.sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)  # warm any cache

    keystore.destroy(ref)

    with (
        unchanged(database, keystore),
        pytest.raises(KeyDestroyed, match="has been destroyed"),
    ):
        keystore.sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)
    with unchanged(database, keystore), pytest.raises(KeyDestroyed):
        keystore.sign(ref.key_id, MESSAGE, SignatureScheme.ECDSA_SHA256)
    with unchanged(database, keystore), pytest.raises(KeyDestroyed):
        keystore.get(ref.key_id)
    assert ref.key_id not in [r.key_id for r in keystore.list()]
    # the public key stays answerable (to verify what the key signed before)
    assert keystore.public_key(ref) == ref.public_key_der
    keystore.destroy(ref)  # idempotent
    # other keys are untouched
    verify(
        keep,
        keystore.sign(keep, MESSAGE, SignatureScheme.ECDSA_SHA256),
        MESSAGE,
        SignatureScheme.ECDSA_SHA256,
    )


def test_is_a_keystore(keystore: KeyStore) -> None:
    assert isinstance(keystore, KeyStore)


def test_concurrent_signing_and_unicode_labels(keystore: KeyStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    label = "市场监管局 电子印章 (seal)"
    ref = keystore.generate(label, KeyAlgorithm.EC_P256)
    assert keystore.get(ref.key_id).label == label

    def work(index: int) -> list[tuple[bytes, bytes]]:
        out = []
        for i in range(200):
            message = f"{index}/{i}".encode()
            out.append((message, keystore.sign(ref.key_id, message, SignatureScheme.ECDSA_SHA256)))
        return out

    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(work, range(8)))
    assert sum(len(batch) for batch in batches) == 1600
    for batch in batches:
        for message, signature in batch:
            verify(ref, signature, message, SignatureScheme.ECDSA_SHA256)


def test_ping_answers_while_open_and_fails_after_close(
    database: Database, keystore: KeyStore
) -> None:
    keystore.ping()
    keystore.close()
    # a closed store cannot list its keys: the soft store's rows are the database's
    with unchanged(database), pytest.raises(KeyStoreError):
        keystore.ping()
