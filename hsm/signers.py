"""Adapters that let X.509/CMS builders and pyHanko sign through any :class:`hsm.KeyStore`.

* :class:`TbsSigner` / :func:`sign_tbs` — for structures assembled with asn1crypto
  (certificates, CRLs, OCSP responses, timestamp tokens): the ``SignedDigestAlgorithm`` is known
  *before* signing (it goes inside the to-be-signed part), then the signer turns TBS DER bytes
  into the signature value.
* :class:`KeyStoreSigner` — a pyHanko :class:`~pyhanko.sign.signers.pdf_cms.Signer` whose raw
  signatures come from the key store (offloaded to a worker thread, so an HSM round trip does
  not stall the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from asn1crypto import algos, keys, x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import CertificateStore, SimpleCertificateStore

from govtrust.errors import InvalidArgument
from hsm.errors import UnsupportedScheme
from hsm.keystore import (
    ALGORITHMS,
    SCHEMES,
    KeyFamily,
    KeyRef,
    KeyRefOrId,
    KeyStore,
    SignatureScheme,
    check_scheme,
)
from hsm.sm2 import SM3_WITH_SM2_OID


def signed_digest_algorithm(scheme: SignatureScheme | str) -> algos.SignedDigestAlgorithm:
    """The X.509/CMS ``AlgorithmIdentifier`` of a scheme.

    ECDSA and SM3-with-SM2 identifiers carry no parameters (RFC 5758, GM/T 0006); RSA PKCS#1
    v1.5 ones carry NULL (RFC 4055); RSASSA-PSS carries explicit parameters: the digest, MGF1
    with that digest, and a salt as long as the digest.
    """
    spec = SCHEMES[SignatureScheme(scheme)]
    if spec.family is KeyFamily.SM2:  # SM3-with-SM2, parameters absent (GM/T 0006)
        return algos.SignedDigestAlgorithm({"algorithm": SM3_WITH_SM2_OID})
    if spec.family is KeyFamily.EC:
        return algos.SignedDigestAlgorithm({"algorithm": f"{spec.digest}_ecdsa"})
    if spec.padding == "pss":
        digest = algos.DigestAlgorithm({"algorithm": spec.digest})
        params = algos.RSASSAPSSParams(
            {
                "hash_algorithm": digest,
                "mask_gen_algorithm": algos.MaskGenAlgorithm(
                    {"algorithm": "mgf1", "parameters": digest}
                ),
                "salt_length": spec.digest_size,
                "trailer_field": "trailer_field_bc",
            }
        )
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})
    return algos.SignedDigestAlgorithm({"algorithm": f"{spec.digest}_rsa"})


def _resolve(keystore: KeyStore, ref_or_id: KeyRefOrId) -> KeyRef:
    return keystore.get(ref_or_id if isinstance(ref_or_id, str) else ref_or_id.key_id)


@dataclass(frozen=True)
class TbsSigner:
    """Signs to-be-signed DER with one key and scheme; build with :func:`tbs_signer`."""

    keystore: KeyStore
    key: KeyRef
    scheme: SignatureScheme

    @property
    def algorithm(self) -> algos.SignedDigestAlgorithm:
        """The ``AlgorithmIdentifier`` to place in the TBS structure and beside the signature."""
        return signed_digest_algorithm(self.scheme)

    def __call__(self, tbs_der: bytes) -> tuple[bytes, algos.SignedDigestAlgorithm]:
        """Sign ``tbs_der``; returns the signature value and its algorithm identifier."""
        signature = self.keystore.sign(self.key.key_id, tbs_der, self.scheme)
        return signature, self.algorithm


def tbs_signer(
    keystore: KeyStore, ref_or_id: KeyRefOrId, scheme: SignatureScheme | str | None = None
) -> TbsSigner:
    """A :class:`TbsSigner` for a key; ``scheme`` defaults to the key algorithm's usual one."""
    key = _resolve(keystore, ref_or_id)
    chosen = key.default_scheme if scheme is None else check_scheme(key.algorithm, scheme)
    return TbsSigner(keystore, key, chosen)


def sign_tbs(
    keystore: KeyStore,
    ref_or_id: KeyRefOrId,
    tbs_der: bytes,
    scheme: SignatureScheme | str | None = None,
) -> tuple[bytes, algos.SignedDigestAlgorithm]:
    """One-shot signing callback: the signature over ``tbs_der`` and its algorithm identifier.

    Prefer :func:`tbs_signer` when the identifier must be embedded in the TBS structure first.
    """
    return tbs_signer(keystore, ref_or_id, scheme)(tbs_der)


def _same_public_key(a: bytes, b: bytes) -> bool:
    def canonical(der: bytes) -> bytes:
        return serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return a == b or canonical(a) == canonical(b)


def _max_signature_size(key: KeyRef) -> int:
    spec = ALGORITHMS[key.algorithm]
    if spec.family is KeyFamily.EC:
        size = int(keys.PublicKeyInfo.load(key.public_key_der).bit_size)
        body = 2 * (2 + (size + 7) // 8 + 1)  # two INTEGERs, each possibly with a 0x00 pad
        return body + (2 if body < 128 else 3)
    return ((spec.key_size or 4096) + 7) // 8


class KeyStoreSigner(Signer):
    """A pyHanko signer whose private key lives in a :class:`hsm.KeyStore`.

    ``signing_cert`` must certify the key's public key (checked here, so a mismatch fails at
    construction rather than producing an invalid signature). ``other_certs`` (the chain) are
    added to the certificate registry unless ``cert_registry`` is given.
    """

    def __init__(
        self,
        keystore: KeyStore,
        ref_or_id: KeyRefOrId,
        signing_cert: x509.Certificate,
        *,
        scheme: SignatureScheme | str | None = None,
        other_certs: Iterable[x509.Certificate] = (),
        cert_registry: CertificateStore | None = None,
        embed_roots: bool = True,
    ) -> None:
        key = _resolve(keystore, ref_or_id)
        chosen = key.default_scheme if scheme is None else check_scheme(key.algorithm, scheme)
        if SCHEMES[chosen].family is KeyFamily.SM2:
            raise UnsupportedScheme.field(
                "scheme",
                "PDF (PAdES) signatures are ECDSA or RSA: international PDF validators cannot "
                "check SM2",
            )
        if not _same_public_key(signing_cert.public_key.dump(), key.public_key_der):
            raise InvalidArgument.field(
                "signing_cert",
                f"the certificate's public key is not the public key of key {key.key_id!r}",
            )
        registry = cert_registry or SimpleCertificateStore()  # type: ignore[no-untyped-call]
        if cert_registry is None:
            for cert in (signing_cert, *other_certs):
                registry.register(cert)
        super().__init__(
            prefer_pss=SCHEMES[chosen].padding == "pss",
            embed_roots=embed_roots,
            signature_mechanism=signed_digest_algorithm(chosen),
            signing_cert=signing_cert,
            cert_registry=registry,
        )
        self._keystore = keystore
        self._key = key
        self._scheme = chosen
        self._max_size = _max_signature_size(key)

    @property
    def scheme(self) -> SignatureScheme:
        """The signature scheme every signature of this signer uses."""
        return self._scheme

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        """Sign ``data`` in the key store (in a worker thread); placeholder bytes on dry runs."""
        expected = SCHEMES[self._scheme].digest
        if digest_algorithm.lower() != expected:
            raise SigningError(
                f"this signer uses {self._scheme.value}, which needs digest {expected}, "
                f"not {digest_algorithm}"
            )
        if dry_run:
            return bytes(self._max_size)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self._keystore.sign, self._key.key_id, data, self._scheme
        )
