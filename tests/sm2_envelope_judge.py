"""An outside judge of GM/T 0009 ``SM2EnvelopedKey``: opens one with openssl and asn1crypto only.

None of govtrust's code is used here: the envelope is parsed with an asn1crypto schema written
from the standard's text, ``symEncryptedKey`` is decrypted by ``openssl pkeyutl -decrypt`` (SM2,
GB/T 32918.4), ``sm2EncryptedPrivateKey`` by ``openssl enc -d -sm4-ecb``, and the recovered
private key's public half is computed by ``openssl pkey -pubout``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import algos, core, keys

from tests.conftest import require_tool

SM2_CURVE = "1.2.156.10197.1.301"


class _Cipher(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("x", core.Integer),
        ("y", core.Integer),
        ("hash", core.OctetString),
        ("ciphertext", core.OctetString),
    ]


class _Envelope(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("sym_alg_id", algos.AlgorithmIdentifier),
        ("sym_encrypted_key", _Cipher),
        ("sm2_public_key", core.OctetBitString),
        ("sm2_encrypted_private_key", core.OctetBitString),
    ]


class _Pkcs8(core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("version", core.Integer),
        ("algorithm", keys.PrivateKeyAlgorithm),
        ("private_key", core.OctetString),
    ]


@dataclass(frozen=True)
class Recipient:
    """An SM2 key pair made by openssl: its PEM private key file and SPKI DER."""

    pem: Path
    spki_der: bytes


@dataclass(frozen=True)
class Opened:
    """What the judge found: the SM2 private key (PEM file), its public SPKI (by openssl) and the
    envelope's fields."""

    private_pem: Path
    public_spki_der: bytes
    envelope_public_point: bytes
    sym_algorithm: str


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(
        [require_tool("openssl"), *args], input=data, capture_output=True, check=True, timeout=30
    ).stdout


def make_recipient(folder: Path, name: str = "recipient") -> Recipient:
    """A fresh SM2 key pair (``openssl genpkey -algorithm SM2``)."""
    pem = folder / f"{name}.pem"
    _openssl("genpkey", "-algorithm", "SM2", "-out", str(pem))
    return Recipient(pem, _openssl("pkey", "-in", str(pem), "-pubout", "-outform", "DER"))


def open_envelope(envelope_der: bytes, recipient_pem: Path, folder: Path) -> Opened:
    """Open ``envelope_der`` with the recipient's private key, using openssl and asn1crypto."""
    envelope = _Envelope.load(envelope_der, strict=True)
    cipher_file = folder / "sym_encrypted_key.der"
    cipher_file.write_bytes(envelope["sym_encrypted_key"].dump())
    sm4_key = _openssl("pkeyutl", "-decrypt", "-inkey", str(recipient_pem), "-in", str(cipher_file))
    assert len(sm4_key) == 16
    private_value = _openssl(
        "enc",
        "-d",
        "-sm4-ecb",
        "-nopad",
        "-K",
        sm4_key.hex(),
        data=bytes(envelope["sm2_encrypted_private_key"].native),
    )
    assert len(private_value) == 32
    ec_key = keys.ECPrivateKey(
        {"version": "ecPrivkeyVer1", "private_key": int.from_bytes(private_value, "big")}
    )
    ec_key["private_key"].set_encoded_width(32)
    pkcs8 = _Pkcs8(
        {
            "version": 0,
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value=SM2_CURVE),
            },
            "private_key": ec_key.dump(),
        }
    )
    der_file = folder / "recovered.der"
    der_file.write_bytes(pkcs8.dump())
    pem = folder / "recovered.pem"
    _openssl("pkey", "-inform", "DER", "-in", str(der_file), "-out", str(pem))
    public = _openssl("pkey", "-in", str(pem), "-pubout", "-outform", "DER")
    return Opened(
        pem,
        public,
        bytes(envelope["sm2_public_key"].native),
        envelope["sym_alg_id"]["algorithm"].dotted,
    )


def spki_point(spki_der: bytes) -> bytes:
    """The public point of a SubjectPublicKeyInfo (asn1crypto)."""
    return bytes(keys.PublicKeyInfo.load(spki_der)["public_key"].native)


def decrypt_with(private_pem: Path, cipher_der: bytes, folder: Path) -> bytes:
    """``openssl pkeyutl -decrypt`` of an SM2 ciphertext with the key in ``private_pem``."""
    path = folder / "cipher.der"
    path.write_bytes(cipher_der)
    return _openssl("pkeyutl", "-decrypt", "-inkey", str(private_pem), "-in", str(path))


def encrypt_to(spki_der: bytes, message: bytes, folder: Path) -> bytes:
    """``openssl pkeyutl -encrypt`` of ``message`` to an SM2 public key (DER SM2Cipher)."""
    key = folder / "to.der"
    key.write_bytes(spki_der)
    return _openssl(
        "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", str(key), data=message
    )
