"""SM2 signatures (GB/T 32918.2, with SM3), SM2 public-key encryption (GB/T 32918.4) and SM2
public keys: the only module using gmalglib.

* Keys: the recommended 256-bit curve of GB/T 32918.5. Public keys travel as X.509
  SubjectPublicKeyInfo with ``id-ecPublicKey`` (1.2.840.10045.2.1) and the named curve
  ``1.2.156.10197.1.301`` and an uncompressed point; private keys, for wrapping in the soft key
  store, as PKCS#8 ``PrivateKeyInfo`` around an RFC 5915 ``ECPrivateKey`` (what ``openssl genpkey
  -algorithm SM2`` writes).
* Signing: ``e = SM3(Z ‖ M)`` with ``Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)`` over the
  signer ID (default ``1234567812345678``, GM/T 0009); govtrust computes Z and e itself and has
  gmalglib sign the digest, so any signer ID costs the same. Signatures are DER
  ``SEQUENCE {r INTEGER, s INTEGER}``.
* Encryption: GB/T 32918.4 with SM3, ciphertext in the C1C3C2 order carried as the GM/T 0009
  ``SM2Cipher ::= SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER, HASH OCTET STRING (32),
  CipherText OCTET STRING }`` (what ``openssl pkeyutl -encrypt`` writes for an SM2 key).
* Parsing is strict and every refusal is specific: :class:`~hsm.errors.InvalidSm2PublicKey`
  (bad DER, another curve such as P-256, a truncated, compressed or off-curve point),
  :class:`~hsm.errors.InvalidSm2Signature` (not canonical DER, r or s out of range, or it does
  not verify), :class:`~hsm.errors.InvalidSm2SignerId` (empty or too long, or the signature was
  made with the default ID rather than the one given).

gmalglib was chosen by measurement among the maintained packages (docs/performance.md, "SM2").
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable

from asn1crypto import core, keys
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gmalglib.sm2 import SM2 as _GmSm2  # noqa: N811 - the library's class, kept private here

from hsm.errors import InvalidSm2PublicKey, InvalidSm2Signature, InvalidSm2SignerId

SM2_CURVE_OID = "1.2.156.10197.1.301"
SM3_OID = "1.2.156.10197.1.401"
SM3_WITH_SM2_OID = "1.2.156.10197.1.501"
EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"
DEFAULT_SIGNER_ID = b"1234567812345678"
# ENTL is the ID length in bits on two bytes: at most 65535 bits, so 8191 whole bytes.
MAX_SIGNER_ID_BYTES = 8191

# GB/T 32918.5-2017 recommended curve: y^2 = x^3 + ax + b over F_p, base point G of order n.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

_CURVE_BYTES = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))
_KNOWN_CURVES = {
    "1.2.840.10045.3.1.7": "P-256 (secp256r1)",
    "1.3.132.0.34": "P-384 (secp384r1)",
    "1.3.132.0.35": "P-521 (secp521r1)",
    "1.3.132.0.10": "secp256k1",
}

RandomSource = Callable[[int], bytes]


class Sm2Cipher(core.Sequence):  # type: ignore[misc]
    """GM/T 0009 ``SM2Cipher``: C1 as two coordinates, C3 (the SM3 check value), C2."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("x_coordinate", core.Integer),
        ("y_coordinate", core.Integer),
        ("hash", core.OctetString),
        ("cipher_text", core.OctetString),
    ]


class _PrivateKeyInfo(core.Sequence):  # type: ignore[misc]
    """PKCS#8 ``PrivateKeyInfo`` without asn1crypto's curve registry (which lacks SM2)."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("version", core.Integer),
        ("private_key_algorithm", keys.PrivateKeyAlgorithm),
        ("private_key", core.OctetString),
    ]


def signer_id_bytes(signer_id: bytes | str | None) -> bytes:
    """The signer ID as bytes (a ``str`` is UTF-8; ``None`` is the default ID)."""
    if signer_id is None:
        return DEFAULT_SIGNER_ID
    if isinstance(signer_id, str):
        signer_id = signer_id.encode("utf-8")
    if not isinstance(signer_id, bytes | bytearray):
        raise InvalidSm2SignerId.field("signer_id", "an SM2 signer ID is bytes or text")
    if not signer_id:
        raise InvalidSm2SignerId.field("signer_id", "an SM2 signer ID must not be empty")
    if len(signer_id) > MAX_SIGNER_ID_BYTES:
        raise InvalidSm2SignerId.field(
            "signer_id",
            f"an SM2 signer ID is at most {MAX_SIGNER_ID_BYTES} bytes (ENTL is 16 bits)",
        )
    return bytes(signer_id)


def z_value(point: bytes, signer_id: bytes | str | None = None) -> bytes:
    """``Z_A = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)`` for an uncompressed 65-byte point."""
    return _z_value(bytes(point), signer_id_bytes(signer_id))


@functools.lru_cache(maxsize=1024)
def _z_value(point: bytes, uid: bytes) -> bytes:
    """:func:`z_value`, remembered: a verifier sees the same few keys again and again."""
    entl = (len(uid) * 8).to_bytes(2, "big")
    return hashlib.new("sm3", entl + uid + _CURVE_BYTES + point[1:]).digest()


def _e(z: bytes, message: bytes) -> bytes:
    return hashlib.new("sm3", z + message).digest()


def _check_point(point: bytes, *, field: str = "public_key") -> bytes:
    """An uncompressed SM2 point on the curve, not the identity; specific errors otherwise."""
    if len(point) != 65:
        if len(point) == 33 and point[:1] in (b"\x02", b"\x03"):
            reason = "a compressed SM2 point is not accepted (use the uncompressed form)"
        else:
            reason = f"the SM2 point is truncated or malformed ({len(point)} bytes, expected 65)"
        raise InvalidSm2PublicKey.field(field, reason)
    if point[0] != 4:
        raise InvalidSm2PublicKey.field(
            field, f"the SM2 point does not start with 0x04 (got 0x{point[0]:02x})"
        )
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:], "big")
    if x >= P or y >= P:
        raise InvalidSm2PublicKey.field(field, "an SM2 point coordinate is not below p")
    if (y * y - (x * x * x + A * x + B)) % P != 0:
        raise InvalidSm2PublicKey.field(field, "the SM2 point is not on the SM2 curve")
    # cofactor 1: every point on the curve other than the identity has order n
    return bytes(point)


def encode_public_key(point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER (id-ecPublicKey, namedCurve SM2) of an uncompressed point."""
    info = keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": keys.ECDomainParameters(name="named", value=SM2_CURVE_OID),
            },
            "public_key": _check_point(point),
        }
    )
    return bytes(info.dump())


def parse_public_key(spki_der: bytes, *, field: str = "public_key") -> bytes:
    """The uncompressed point of an SM2 SubjectPublicKeyInfo, checked strictly.

    Refuses (:class:`InvalidSm2PublicKey`) anything but DER with id-ecPublicKey, the named curve
    1.2.156.10197.1.301 and a 65-byte point on that curve; a P-256 (or other EC) key is named.
    A key that parsed is remembered (a verifier sees the same few keys again and again); a
    refusal is not.
    """
    return _parse_public_key(bytes(spki_der), field)


@functools.lru_cache(maxsize=1024)
def _parse_public_key(spki_der: bytes, field: str) -> bytes:
    """:func:`parse_public_key` (an exception is raised afresh each time, never cached)."""
    try:
        info = keys.PublicKeyInfo.load(bytes(spki_der), strict=True)
        algorithm = info["algorithm"]["algorithm"].dotted
        params = info["algorithm"]["parameters"]
        named = isinstance(params, keys.ECDomainParameters) and params.name == "named"
        curve = params.chosen.dotted if named else None
        point = info["public_key"].native
        canonical = info.dump(force=True) == bytes(spki_der)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidSm2PublicKey.field(
            field, "not a DER SubjectPublicKeyInfo (truncated or malformed)"
        ) from None
    if not canonical:
        raise InvalidSm2PublicKey.field(field, "the SubjectPublicKeyInfo is not in DER form")
    if algorithm != EC_PUBLIC_KEY_OID:
        raise InvalidSm2PublicKey.field(
            field, f"not an elliptic-curve key (algorithm {algorithm}); an SM2 key is expected"
        )
    if curve is None:
        raise InvalidSm2PublicKey.field(
            field,
            "an SM2 key names its curve (1.2.156.10197.1.301); explicit or implicit "
            "curve parameters are not accepted",
        )
    if curve != SM2_CURVE_OID:
        name = _KNOWN_CURVES.get(curve, curve)
        raise InvalidSm2PublicKey.field(
            field, f"a {name} key is not an SM2 key (curve 1.2.156.10197.1.301 expected)"
        )
    if not isinstance(point, bytes):
        raise InvalidSm2PublicKey.field(field, "the SM2 public key is not a whole-byte point")
    return _check_point(point, field=field)


def encode_signature(raw: bytes) -> bytes:
    """DER ``SEQUENCE{r, s}`` of a raw 64-byte ``r ‖ s``."""
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def decode_signature(der_signature: bytes, *, field: str = "signature") -> bytes:
    """The raw 64-byte ``r ‖ s`` of a DER SM2 signature (canonical DER, 1 ≤ r, s < n)."""
    try:
        r, s = decode_dss_signature(bytes(der_signature))
    except (ValueError, TypeError):
        raise InvalidSm2Signature.field(
            field, "an SM2 signature is a DER SEQUENCE { r INTEGER, s INTEGER }"
        ) from None
    if not (1 <= r < N and 1 <= s < N):
        raise InvalidSm2Signature.field(field, "SM2 signature r or s is out of range [1, n-1]")
    if encode_dss_signature(r, s) != bytes(der_signature):
        raise InvalidSm2Signature.field(field, "the SM2 signature is not in canonical DER form")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Sm2PrivateKey:
    """An SM2 private key in memory (only the key stores hold one)."""

    __slots__ = ("_d", "_default_z", "_signer", "public_point")

    def __init__(self, private_value: bytes, *, random_source: RandomSource | None = None) -> None:
        """``private_value`` is d, 32 bytes big-endian with 1 ≤ d ≤ n-2.

        ``random_source`` is for known-answer tests only: it returns the per-signature k
        (big-endian, 32 bytes); by default k comes from the operating system.
        """
        d = int.from_bytes(private_value, "big")
        if len(private_value) != 32 or not 1 <= d <= N - 2:
            raise ValueError("an SM2 private key is 32 bytes with 1 <= d <= n-2")
        self._d = bytes(private_value)
        if random_source is None:
            rnd: RandomSource = os.urandom
        else:

            def rnd(size: int, source: RandomSource = random_source) -> bytes:
                # gmalglib reads its random bytes as a little-endian integer
                return source(size)[::-1]

        self._signer = _GmSm2(self._d, rnd_fn=rnd)
        self.public_point = bytes(_GmSm2.get_pk(self._d))
        self._default_z = z_value(self.public_point)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        """A fresh key pair (d from the operating system's random source)."""
        while True:
            candidate = os.urandom(32)
            if 1 <= int.from_bytes(candidate, "big") <= N - 2:
                return cls(candidate)

    @property
    def private_value(self) -> bytes:
        """d, 32 bytes big-endian (only for wrapping; never logged)."""
        return self._d

    @property
    def public_key_der(self) -> bytes:
        """SubjectPublicKeyInfo DER of the public key."""
        return encode_public_key(self.public_point)

    def sign(self, message: bytes, signer_id: bytes | str | None = None) -> bytes:
        """GB/T 32918.2 signature of ``message`` over ``signer_id``, as DER ``SEQUENCE{r, s}``."""
        z = self._default_z if signer_id is None else z_value(self.public_point, signer_id)
        return encode_signature(self._signer.sign_digest(_e(z, message)))

    def decrypt(self, cipher_der: bytes) -> bytes:
        """The plaintext of a DER ``SM2Cipher`` encrypted to this key (``ValueError`` if it was
        not, or was altered)."""
        cipher = Sm2Cipher.load(bytes(cipher_der), strict=True)
        raw = (
            b"\x04"
            + int(cipher["x_coordinate"].native).to_bytes(32, "big")
            + int(cipher["y_coordinate"].native).to_bytes(32, "big")
            + bytes(cipher["hash"].native)
            + bytes(cipher["cipher_text"].native)
        )
        try:
            return bytes(_GmSm2(self._d).decrypt(raw))
        except Exception as exc:  # gmalglib raises its own error types
            raise ValueError("the SM2 ciphertext does not decrypt with this key") from exc

    def to_pkcs8(self) -> bytes:
        """PKCS#8 ``PrivateKeyInfo`` DER (id-ecPublicKey, namedCurve SM2, ECPrivateKey)."""
        ec_key = keys.ECPrivateKey(
            {
                "version": "ecPrivkeyVer1",
                "private_key": int.from_bytes(self._d, "big"),
                "public_key": self.public_point,
            }
        )
        ec_key["private_key"].set_encoded_width(32)
        info = _PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": {
                    "algorithm": "ec",
                    "parameters": keys.ECDomainParameters(name="named", value=SM2_CURVE_OID),
                },
                "private_key": ec_key.dump(),
            }
        )
        return bytes(info.dump())

    @classmethod
    def from_pkcs8(cls, der: bytes) -> Sm2PrivateKey:
        """The key in a PKCS#8 DER made by :meth:`to_pkcs8` (or ``openssl genpkey``).

        Raises ``ValueError`` for anything but an SM2 EC key whose public part (if present)
        matches its private value.
        """
        info = _PrivateKeyInfo.load(bytes(der), strict=True)
        algorithm = info["private_key_algorithm"]
        params = algorithm["parameters"]
        if (
            algorithm["algorithm"].dotted != EC_PUBLIC_KEY_OID
            or not isinstance(params, keys.ECDomainParameters)
            or params.name != "named"
            or params.chosen.dotted != SM2_CURVE_OID
        ):
            raise ValueError("not an SM2 private key")
        ec_key = keys.ECPrivateKey.load(info["private_key"].native, strict=True)
        value = int(ec_key["private_key"].native)
        key = cls(value.to_bytes(32, "big"))
        public = ec_key["public_key"].native
        if public is not None and bytes(public) != key.public_point:
            raise ValueError("the SM2 private key does not match its public key")
        return key


def sm2_encrypt(point: bytes, plaintext: bytes) -> bytes:
    """GB/T 32918.4 encryption of ``plaintext`` to the SM2 public ``point`` (uncompressed, checked),
    as DER ``SM2Cipher`` (C1C3C2; ``openssl pkeyutl -decrypt`` opens it)."""
    if not plaintext:
        raise ValueError("SM2 encryption needs at least one byte of plaintext")
    raw = bytes(_GmSm2(pk=_check_point(point)).encrypt(bytes(plaintext)))
    # gmalglib writes 0x04 ‖ x ‖ y ‖ C3 ‖ C2 (C1C3C2, uncompressed C1)
    return bytes(
        Sm2Cipher(
            {
                "x_coordinate": int.from_bytes(raw[1:33], "big"),
                "y_coordinate": int.from_bytes(raw[33:65], "big"),
                "hash": raw[65:97],
                "cipher_text": raw[97:],
            }
        ).dump()
    )


def verify_sm2_signature(
    spki_der: bytes, signer_id: bytes | str | None, message: bytes, der_signature: bytes
) -> None:
    """Check a GB/T 32918.2 signature; returns nothing, raises the specific error otherwise.

    ``signer_id`` ``None`` means the default ``1234567812345678``. A signature that does not
    verify under the given ID but does under the default one raises
    :class:`InvalidSm2SignerId` (it was made with another signer ID); any other mismatch
    raises :class:`InvalidSm2Signature`.
    """
    point = parse_public_key(spki_der)
    verify_sm2_point(point, signer_id, message, der_signature)


def verify_sm2_point(
    point: bytes, signer_id: bytes | str | None, message: bytes, der_signature: bytes
) -> None:
    """:func:`verify_sm2_signature` for an already-checked uncompressed point."""
    uid = signer_id_bytes(signer_id)
    raw = decode_signature(der_signature)
    verifier = _GmSm2(pk=point)
    if verifier.verify_digest(_e(z_value(point, uid), message), raw):
        return
    if uid != DEFAULT_SIGNER_ID and verifier.verify_digest(
        _e(z_value(point, DEFAULT_SIGNER_ID), message), raw
    ):
        raise InvalidSm2SignerId.field(
            "signer_id",
            "the SM2 signature was made with the default signer ID 1234567812345678, "
            "not the signer ID given",
        )
    raise InvalidSm2Signature.field(
        "signature",
        "the SM2 signature does not verify for this public key, signer ID and message",
    )
