"""SM2 encryption (GB/T 32918.4), the GM/T 0009 envelope and escrowed keys in the key stores.

The envelope is opened by tests/sm2_envelope_judge.py with openssl and asn1crypto only."""

from __future__ import annotations

from pathlib import Path

import pytest

from govtrust.db import Database
from hsm import KeyStore, Pkcs11KeyStore, SoftKeyStore
from hsm.envelope import SM4_ECB_OID, open_enveloped_key
from hsm.errors import (
    EscrowedKeyCannotSign,
    EscrowNotSupported,
    InvalidSm2PublicKey,
    KeyDestroyed,
    NotEscrowed,
)
from hsm.keystore import KeyAlgorithm, SignatureScheme
from hsm.sm2 import Sm2PrivateKey, sm2_encrypt
from tests.sm2_envelope_judge import (
    decrypt_with,
    encrypt_to,
    make_recipient,
    open_envelope,
    spki_point,
)
from tests.unchanged import unchanged


def test_sm2_encryption_opens_with_openssl_and_openssl_ciphertext_opens_here(
    tmp_path: Path,
) -> None:
    recipient = make_recipient(tmp_path)
    message = "一证通 encryption key".encode()
    assert (
        decrypt_with(recipient.pem, sm2_encrypt(spki_point(recipient.spki_der), message), tmp_path)
        == message
    )
    key = Sm2PrivateKey.generate()
    assert key.decrypt(encrypt_to(key.public_key_der, message, tmp_path)) == message


def test_sm2_encryption_refuses_a_p256_point() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    with pytest.raises(InvalidSm2PublicKey):
        sm2_encrypt(point, b"x")


def test_escrowed_key_envelope_opens_with_openssl_only(
    soft_store: SoftKeyStore, tmp_path: Path
) -> None:
    escrowed = soft_store.generate_escrowed("kmc/test")
    assert escrowed.algorithm is KeyAlgorithm.SM2
    recipient = make_recipient(tmp_path)
    envelope = soft_store.export_enveloped(escrowed, recipient.spki_der)
    opened = open_envelope(envelope, recipient.pem, tmp_path)
    assert opened.sym_algorithm == SM4_ECB_OID
    # the recovered private key is the escrowed key: same public key as the store reports
    assert opened.public_spki_der == escrowed.public_key_der
    assert opened.envelope_public_point == spki_point(escrowed.public_key_der)
    # and it decrypts what openssl encrypted to the escrowed public key
    secret = b"data encrypted to the company"
    assert (
        decrypt_with(
            opened.private_pem, encrypt_to(escrowed.public_key_der, secret, tmp_path), tmp_path
        )
        == secret
    )
    # a second export is a different envelope (fresh SM4 key) of the same key
    again = soft_store.export_enveloped(escrowed.key_id, recipient.spki_der)
    assert again != envelope
    assert open_envelope(again, recipient.pem, tmp_path).public_spki_der == escrowed.public_key_der


def test_envelope_round_trip_in_project_code(database: Database, soft_store: SoftKeyStore) -> None:
    escrowed = soft_store.generate_escrowed("kmc/round-trip")
    recipient = Sm2PrivateKey.generate()
    envelope = soft_store.export_enveloped(escrowed, recipient.public_key_der)
    assert open_enveloped_key(envelope, recipient).public_key_der == escrowed.public_key_der
    with unchanged(database, soft_store), pytest.raises(ValueError):
        open_enveloped_key(envelope, Sm2PrivateKey.generate())


def test_escrowed_key_never_signs_and_is_not_listed(
    database: Database, soft_store: SoftKeyStore
) -> None:
    escrowed = soft_store.generate_escrowed("kmc/no-sign")
    with unchanged(database, soft_store), pytest.raises(EscrowedKeyCannotSign):
        soft_store.sign(escrowed, b"data", SignatureScheme.SM2_SM3)
    assert escrowed.key_id not in {ref.key_id for ref in soft_store.list()}


def test_export_refusals_change_nothing(
    database: Database, soft_store: SoftKeyStore, tmp_path: Path
) -> None:
    escrowed = soft_store.generate_escrowed("kmc/refusals")
    signing = soft_store.generate("signing", KeyAlgorithm.SM2)
    p256 = soft_store.generate("p256", KeyAlgorithm.EC_P256)
    with unchanged(database, soft_store), pytest.raises(NotEscrowed):
        soft_store.export_enveloped(signing, p256.public_key_der)
    with unchanged(database, soft_store), pytest.raises(InvalidSm2PublicKey) as error:
        soft_store.export_enveloped(escrowed, p256.public_key_der)
    assert "P-256" in str(error.value)
    soft_store.destroy(escrowed)
    with unchanged(database, soft_store), pytest.raises(KeyDestroyed):
        soft_store.export_enveloped(escrowed, signing.public_key_der)


def test_pkcs11_store_refuses_escrow(database: Database, pkcs11_store: Pkcs11KeyStore) -> None:
    store: KeyStore = pkcs11_store
    with unchanged(None, store), pytest.raises(EscrowNotSupported):
        store.generate_escrowed("kmc/pkcs11")
    with unchanged(None, store), pytest.raises(EscrowNotSupported):
        store.export_enveloped("00" * 16, b"")
