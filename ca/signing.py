"""Sign DER structures through the key store and name the matching signature algorithm.

Every CA structure (certificate, CRL, OCSP response, CMS SignedData of a time-stamp) is built as
a "to be signed" DER blob and signed here with ``KeyStore.sign``; the private key never leaves
the store. The scheme follows the key (P-256→SHA-256, P-384→SHA-384, RSA→PKCS#1 v1.5 SHA-256,
SM2→SM3-with-SM2 ``1.2.156.10197.1.501`` with no parameters, signed with the default signer ID
``1234567812345678`` as GM/T 0009 and GM/T 0015 require for certificates).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, x509

from hsm.keystore import KeyAlgorithm, KeyStore, SignatureScheme, default_scheme
from hsm.sm2 import SM3_OID, SM3_WITH_SM2_OID

# asn1crypto SignedDigestAlgorithm names for each scheme.
_ALGORITHM_NAMES: dict[SignatureScheme, str] = {
    SignatureScheme.ECDSA_SHA256: "sha256_ecdsa",
    SignatureScheme.ECDSA_SHA384: "sha384_ecdsa",
    SignatureScheme.RSA_PKCS1V15_SHA256: "sha256_rsa",
    SignatureScheme.RSA_PKCS1V15_SHA384: "sha384_rsa",
    # asn1crypto has no name for SM3-with-SM2: the dotted OID is written as is
    SignatureScheme.SM2_SM3: SM3_WITH_SM2_OID,
}
_DIGESTS: dict[SignatureScheme, str] = {
    SignatureScheme.ECDSA_SHA256: "sha256",
    SignatureScheme.ECDSA_SHA384: "sha384",
    SignatureScheme.RSA_PKCS1V15_SHA256: "sha256",
    SignatureScheme.RSA_PKCS1V15_SHA384: "sha384",
    SignatureScheme.SM2_SM3: "sm3",
}
# The DigestAlgorithm identifier (CMS, OCSP CertID, TSA imprint) of each digest name.
DIGEST_OIDS: dict[str, str] = {"sm3": SM3_OID}


def digest_algorithm(name: str) -> algos.DigestAlgorithm:
    """A DigestAlgorithm for ``name`` (``sha256``, ``sm3``, …)."""
    return algos.DigestAlgorithm({"algorithm": DIGEST_OIDS.get(name, name)})


@dataclass(frozen=True)
class SigningKey:
    """A key-store key plus the scheme and algorithm identifier it signs CA structures with."""

    keystore: KeyStore
    key_id: str
    algorithm: KeyAlgorithm

    @property
    def scheme(self) -> SignatureScheme:
        """The signature scheme used with this key."""
        return default_scheme(self.algorithm)

    @property
    def algorithm_name(self) -> str:
        """asn1crypto's name of the signature algorithm (``sha256_ecdsa``)."""
        return _ALGORITHM_NAMES[self.scheme]

    @property
    def digest_name(self) -> str:
        """The digest the signature uses (``sha256``)."""
        return _DIGESTS[self.scheme]

    @functools.cached_property
    def algorithm_der(self) -> bytes:
        """DER of the signature AlgorithmIdentifier (cached: it never changes)."""
        dumped: bytes = self.signature_algorithm().dump()
        return dumped

    def signature_algorithm(self) -> algos.SignedDigestAlgorithm:
        """A fresh AlgorithmIdentifier for the signature (no parameters for ECDSA)."""
        return algos.SignedDigestAlgorithm({"algorithm": self.algorithm_name})

    @functools.cached_property
    def public_key_der(self) -> bytes:
        """The key's SubjectPublicKeyInfo DER (cached: the SM2 lint checks each signature)."""
        return self.keystore.public_key(self.key_id)

    @property
    def is_sm2(self) -> bool:
        """True for an SM2 key (the national algorithm hierarchy)."""
        return self.algorithm is KeyAlgorithm.SM2

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` in the key store (DER ECDSA/SM2 or raw RSA signature)."""
        return self.keystore.sign(self.key_id, data, self.scheme)


def x509_time(moment: datetime) -> x509.Time:
    """UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 4.1.2.5)."""
    moment = moment.astimezone(UTC).replace(microsecond=0)
    if moment.year < 2050:
        return x509.Time(name="utc_time", value=moment)
    return x509.Time(name="general_time", value=moment)


def now() -> datetime:
    """The current time in UTC, whole seconds (DER times carry no fractions here)."""
    return datetime.now(UTC).replace(microsecond=0)
