"""The key-store interface: algorithms, signature schemes, key references and the protocol.

Private keys live only behind a :class:`KeyStore`; the rest of govtrust holds :class:`KeyRef`
values (an opaque id plus the public key) and asks the store to sign. Algorithms and schemes are
table-driven (:data:`ALGORITHMS`, :data:`SCHEMES`), so callers do not branch per family. SM2
keys (GB/T 32918, :mod:`hsm.sm2`) sign with SM3 over a signer ID (``sign(..., signer_id=...)``).
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from hsm.errors import InvalidLabel, InvalidSm2SignerId, UnsupportedAlgorithm, UnsupportedScheme

MAX_LABEL_LENGTH = 255


class KeyFamily(enum.StrEnum):
    """The mathematical family of a key; a scheme fits an algorithm when their families agree."""

    EC = "ec"
    RSA = "rsa"
    SM2 = "sm2"  # GB/T 32918: its own curve and signature (Z value over a signer ID), not ECDSA


class KeyAlgorithm(enum.StrEnum):
    """Key algorithms the key store can generate (values are stable, stored in the database)."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    SM2 = "sm2"


class SignatureScheme(enum.StrEnum):
    """How to sign: family, message digest and (for RSA) padding. The store hashes the data."""

    ECDSA_SHA256 = "ecdsa-sha256"
    ECDSA_SHA384 = "ecdsa-sha384"
    RSA_PKCS1V15_SHA256 = "rsa-pkcs1v15-sha256"
    RSA_PKCS1V15_SHA384 = "rsa-pkcs1v15-sha384"
    RSA_PSS_SHA256 = "rsa-pss-sha256"
    RSA_PSS_SHA384 = "rsa-pss-sha384"
    SM2_SM3 = "sm2-sm3"  # GB/T 32918.2 with SM3; signer ID default 1234567812345678


@dataclass(frozen=True)
class AlgorithmSpec:
    """Parameters of a key algorithm: family, named curve (EC) or modulus size (RSA)."""

    family: KeyFamily
    curve: str | None = None  # asn1crypto / OpenSSL short name, e.g. "secp256r1"
    key_size: int | None = None  # RSA modulus bits
    default_scheme: SignatureScheme = SignatureScheme.ECDSA_SHA256


@dataclass(frozen=True)
class SchemeSpec:
    """Parameters of a signature scheme.

    ``digest`` is the hashlib / asn1crypto digest name. ``padding`` is ``pkcs1v15`` or ``pss``
    for RSA and ``None`` otherwise. RSASSA-PSS always uses MGF1 with the same digest and a salt
    as long as the digest (RFC 4055 / RFC 8017 recommendation, and what X.509 profiles expect).
    """

    family: KeyFamily
    digest: str
    padding: str | None = None

    @property
    def digest_size(self) -> int:
        return {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}[self.digest]


ALGORITHMS: dict[KeyAlgorithm, AlgorithmSpec] = {
    KeyAlgorithm.EC_P256: AlgorithmSpec(
        KeyFamily.EC, curve="secp256r1", default_scheme=SignatureScheme.ECDSA_SHA256
    ),
    KeyAlgorithm.EC_P384: AlgorithmSpec(
        KeyFamily.EC, curve="secp384r1", default_scheme=SignatureScheme.ECDSA_SHA384
    ),
    KeyAlgorithm.RSA_2048: AlgorithmSpec(
        KeyFamily.RSA, key_size=2048, default_scheme=SignatureScheme.RSA_PKCS1V15_SHA256
    ),
    KeyAlgorithm.RSA_3072: AlgorithmSpec(
        KeyFamily.RSA, key_size=3072, default_scheme=SignatureScheme.RSA_PKCS1V15_SHA256
    ),
    KeyAlgorithm.SM2: AlgorithmSpec(
        KeyFamily.SM2, curve="sm2", default_scheme=SignatureScheme.SM2_SM3
    ),
}

SCHEMES: dict[SignatureScheme, SchemeSpec] = {
    SignatureScheme.ECDSA_SHA256: SchemeSpec(KeyFamily.EC, "sha256"),
    SignatureScheme.ECDSA_SHA384: SchemeSpec(KeyFamily.EC, "sha384"),
    SignatureScheme.RSA_PKCS1V15_SHA256: SchemeSpec(KeyFamily.RSA, "sha256", "pkcs1v15"),
    SignatureScheme.RSA_PKCS1V15_SHA384: SchemeSpec(KeyFamily.RSA, "sha384", "pkcs1v15"),
    SignatureScheme.RSA_PSS_SHA256: SchemeSpec(KeyFamily.RSA, "sha256", "pss"),
    SignatureScheme.RSA_PSS_SHA384: SchemeSpec(KeyFamily.RSA, "sha384", "pss"),
    SignatureScheme.SM2_SM3: SchemeSpec(KeyFamily.SM2, "sm3"),
}


def parse_algorithm(value: KeyAlgorithm | str) -> KeyAlgorithm:
    """The :class:`KeyAlgorithm` named by ``value``; :class:`UnsupportedAlgorithm` otherwise."""
    try:
        return KeyAlgorithm(value)
    except ValueError:
        supported = ", ".join(a.value for a in KeyAlgorithm)
        raise UnsupportedAlgorithm.field(
            "algorithm", f"unsupported key algorithm {value!r} (supported: {supported})"
        ) from None


def parse_scheme(value: SignatureScheme | str) -> SignatureScheme:
    """The :class:`SignatureScheme` named by ``value``; :class:`UnsupportedScheme` otherwise."""
    try:
        return SignatureScheme(value)
    except ValueError:
        supported = ", ".join(s.value for s in SignatureScheme)
        raise UnsupportedScheme.field(
            "scheme", f"unsupported signature scheme {value!r} (supported: {supported})"
        ) from None


def schemes_for(algorithm: KeyAlgorithm | str) -> tuple[SignatureScheme, ...]:
    """Every signature scheme a key of ``algorithm`` can sign with."""
    family = ALGORITHMS[parse_algorithm(algorithm)].family
    return tuple(scheme for scheme, spec in SCHEMES.items() if spec.family is family)


def default_scheme(algorithm: KeyAlgorithm | str) -> SignatureScheme:
    """The conventional scheme for ``algorithm`` (P-256→SHA-256, P-384→SHA-384, RSA→PKCS#1 v1.5)."""
    return ALGORITHMS[parse_algorithm(algorithm)].default_scheme


def check_scheme(algorithm: KeyAlgorithm | str, scheme: SignatureScheme | str) -> SignatureScheme:
    """Validate that ``scheme`` fits ``algorithm``; returns the parsed scheme.

    Raises :class:`UnsupportedScheme` naming the schemes that would fit, so a caller asking an
    EC key for an RSA signature learns what to ask for instead.
    """
    parsed = parse_scheme(scheme)
    algo = parse_algorithm(algorithm)
    if SCHEMES[parsed].family is not ALGORITHMS[algo].family:
        fitting = ", ".join(s.value for s in schemes_for(algo))
        raise UnsupportedScheme.field(
            "scheme",
            f"signature scheme {parsed.value!r} does not fit a {algo.value} key "
            f"(use one of: {fitting})",
        )
    return parsed


def check_signer_id(scheme: SignatureScheme | str, signer_id: bytes | str | None) -> None:
    """A signer ID is for SM2 schemes only (:class:`InvalidSm2SignerId` on any other)."""
    if signer_id is not None and SCHEMES[parse_scheme(scheme)].family is not KeyFamily.SM2:
        raise InvalidSm2SignerId.field(
            "signer_id", f"a signer ID applies to SM2 signatures only, not to {scheme}"
        )


def validate_label(label: str) -> str:
    """Check a key label: 1–255 printable characters (it is shown to operators and on tokens)."""
    if not isinstance(label, str) or not label.strip():
        raise InvalidLabel.field("label", "a key label must be a non-empty string")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidLabel.field("label", f"a key label must be at most {MAX_LABEL_LENGTH} chars")
    if not label.isprintable():
        raise InvalidLabel.field("label", "a key label must not contain control characters")
    return label


def new_key_id() -> tuple[str, datetime]:
    """A fresh key id and its creation time.

    The id is 16 bytes, hex-encoded: 6 bytes of creation time in milliseconds then 10 random
    bytes. It is opaque to callers, unique without coordination, sorts by creation time, and
    lets the PKCS#11 backend (which has no creation-time attribute) recover ``created_at``.
    """
    millis = time.time_ns() // 1_000_000
    created_at = datetime.fromtimestamp(millis / 1000, UTC)
    return (millis.to_bytes(6, "big") + os.urandom(10)).hex(), created_at


def created_at_from_key_id(key_id: str) -> datetime | None:
    """The creation time encoded in a key id made by :func:`new_key_id` (None if not one)."""
    if len(key_id) != 32:
        return None
    try:
        millis = int(key_id[:12], 16)
    except ValueError:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


@dataclass(frozen=True)
class KeyRef:
    """A reference to a key in a key store: what the rest of govtrust holds instead of a key.

    ``key_id`` is stable and opaque; ``public_key_der`` is the DER SubjectPublicKeyInfo.
    """

    key_id: str
    label: str
    algorithm: KeyAlgorithm
    public_key_der: bytes = field(repr=False)
    created_at: datetime

    def load_public_key(self) -> PublicKeyTypes:
        """The public key as a ``cryptography`` object (for verifying signatures).

        ``cryptography`` has no SM2: verify SM2 keys with :func:`hsm.sm2.verify_sm2_signature`.
        """
        return serialization.load_der_public_key(self.public_key_der)

    @property
    def default_scheme(self) -> SignatureScheme:
        """The conventional signature scheme for this key's algorithm."""
        return ALGORITHMS[self.algorithm].default_scheme


KeyRefOrId = KeyRef | str


def key_id_of(ref_or_id: KeyRefOrId) -> str:
    """The key id of a :class:`KeyRef` or of an id given directly."""
    return ref_or_id if isinstance(ref_or_id, str) else ref_or_id.key_id


@runtime_checkable
class KeyStore(Protocol):
    """Custody of private keys: generate, sign, expose public keys, destroy.

    Implementations are thread-safe. ``sign`` hashes ``data`` with the scheme's digest and
    returns the signature as X.509 / CMS carry it: ECDSA and SM2 as DER ``SEQUENCE {r, s}``, RSA
    as the raw big-endian signature. Errors are the ones in :mod:`hsm.errors`.
    """

    def generate(self, label: str, algorithm: KeyAlgorithm | str) -> KeyRef:
        """Generate a new key pair inside the store and return its reference."""
        ...

    def sign(
        self,
        ref_or_id: KeyRefOrId,
        data: bytes,
        scheme: SignatureScheme | str,
        *,
        signer_id: bytes | str | None = None,
    ) -> bytes:
        """Sign ``data`` (not a digest) with the key, using ``scheme`` (which must fit the key).

        ``signer_id`` is the SM2 signer ID that goes into Z (GB/T 32918.2); ``None`` is the
        default ``1234567812345678``. Giving one for a non-SM2 scheme is
        :class:`InvalidSm2SignerId`.
        """
        ...

    def public_key(self, ref_or_id: KeyRefOrId) -> bytes:
        """The key's SubjectPublicKeyInfo DER; still answered after the key is destroyed."""
        ...

    def destroy(self, ref_or_id: KeyRefOrId) -> None:
        """Irreversibly destroy the private key (idempotent); the public key stays known."""
        ...

    def list(self) -> list[KeyRef]:
        """Every key that can still sign, oldest first."""
        ...

    def get(self, key_id: str) -> KeyRef:
        """The reference of a live key (:class:`KeyNotFound` / :class:`KeyDestroyed` otherwise)."""
        ...

    def generate_escrowed(self, label: str) -> KeyRef:
        """Generate an SM2 encryption key pair whose private half is kept wrapped under the key
        management centre's key (never exportable in clear, never signing); refused with
        :class:`~hsm.errors.EscrowNotSupported` by stores that cannot escrow."""
        ...

    def export_enveloped(self, ref_or_id: KeyRefOrId, recipient_public_key: bytes) -> bytes:
        """The escrowed key as a GM/T 0009 ``SM2EnvelopedKey`` (DER) to the SM2 public key
        ``recipient_public_key`` (SubjectPublicKeyInfo DER); :class:`~hsm.errors.KeyDestroyed`
        once destroyed, :class:`~hsm.errors.NotEscrowed` for any other key."""
        ...

    def ping(self) -> None:
        """Cheap liveness check for readiness probes; raises if the store cannot serve."""
        ...

    @property
    def signs_on_device(self) -> bool:
        """Whether a signature waits on a device (an HSM) rather than on this process's CPU:
        callers that sign in bulk then use more threads than there are cores."""
        ...

    def close(self) -> None:
        """Release sessions, caches and handles; the store must not be used afterwards."""
        ...
