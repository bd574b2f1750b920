"""The GM/T 0009 ``SM2EnvelopedKey``: an SM2 private key delivered to the holder of another SM2 key.

    SM2EnvelopedKey ::= SEQUENCE {
        symAlgID                AlgorithmIdentifier,  -- SM4-ECB 1.2.156.10197.1.104.1, no params
        symEncryptedKey         SM2Cipher,            -- the 16-byte SM4 key, SM2-encrypted to
                                                      -- the recipient (GB/T 32918.4, C1C3C2)
        sm2PublicKey            BIT STRING,           -- the enveloped public point 04 ‖ x ‖ y
        sm2EncryptedPrivateKey  BIT STRING }          -- SM4-ECB(k, d), d: 32 bytes big-endian

This is the structure the key management centre (GB/T 25056, GM/T 0014) returns with an
encryption certificate: the recipient opens ``symEncryptedKey`` with its SM2 private key (its
signing key), decrypts ``sm2EncryptedPrivateKey`` with the SM4 key and checks that d·G is
``sm2PublicKey``. The SM4 key is fresh for every envelope and encrypts exactly two blocks of
uniformly random data, so ECB (the mode GM/T 0009 and GM/T 0016's ``ENVELOPEDKEYBLOB`` use) leaks
nothing. Only key stores (:mod:`hsm.soft`) build envelopes: the private key exists in clear only
inside them.
"""

from __future__ import annotations

import os

from asn1crypto import algos, core
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hsm.sm2 import Sm2Cipher, Sm2PrivateKey, parse_public_key, sm2_encrypt

SM4_OID = "1.2.156.10197.1.104"
SM4_ECB_OID = "1.2.156.10197.1.104.1"
SM4_KEY_BYTES = 16


class Sm2EnvelopedKey(core.Sequence):  # type: ignore[misc]
    """GM/T 0009 ``SM2EnvelopedKey``."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("sym_alg_id", algos.AlgorithmIdentifier),
        ("sym_encrypted_key", Sm2Cipher),
        ("sm2_public_key", core.OctetBitString),
        ("sm2_encrypted_private_key", core.OctetBitString),
    ]


def _sm4_ecb(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.SM4(key), modes.ECB())  # noqa: S305 - two random blocks, see above
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(data) + op.finalize()


def build_enveloped_key(key: Sm2PrivateKey, recipient_spki: bytes) -> bytes:
    """DER ``SM2EnvelopedKey`` of ``key`` for the holder of the SM2 public key ``recipient_spki``
    (SubjectPublicKeyInfo DER; anything but an SM2 key is :class:`~hsm.errors.InvalidSm2PublicKey`
    naming ``recipient_public_key``)."""
    point = parse_public_key(recipient_spki, field="recipient_public_key")
    sm4_key = os.urandom(SM4_KEY_BYTES)
    envelope = Sm2EnvelopedKey(
        {
            "sym_alg_id": {"algorithm": SM4_ECB_OID},
            "sym_encrypted_key": Sm2Cipher.load(sm2_encrypt(point, sm4_key)),
            "sm2_public_key": key.public_point,
            "sm2_encrypted_private_key": _sm4_ecb(sm4_key, key.private_value),
        }
    )
    return bytes(envelope.dump())


def open_enveloped_key(envelope_der: bytes, recipient: Sm2PrivateKey) -> Sm2PrivateKey:
    """The private key inside an envelope made for ``recipient`` (``ValueError`` if it is not one,
    was made for another key, or its private and public parts disagree)."""
    envelope = Sm2EnvelopedKey.load(bytes(envelope_der), strict=True)
    if envelope["sym_alg_id"]["algorithm"].dotted not in (SM4_OID, SM4_ECB_OID):
        raise ValueError("the envelope's symmetric algorithm is not SM4")
    sm4_key = recipient.decrypt(envelope["sym_encrypted_key"].dump())
    if len(sm4_key) != SM4_KEY_BYTES:
        raise ValueError("the envelope's SM4 key is not 16 bytes")
    private_value = _sm4_ecb(
        sm4_key, bytes(envelope["sm2_encrypted_private_key"].native), decrypt=True
    )
    key = Sm2PrivateKey(private_value)
    if key.public_point != bytes(envelope["sm2_public_key"].native):
        raise ValueError("the enveloped private key does not match the envelope's public key")
    return key
