"""Licence signers backed by the issuing departments' official e-seals.

A licence is signed once by the issuing department (GB/T 36903): here with the key of the
department's active official seal (法定名称章) managed by the seal service, with the seal's
certificate and the seal CA in ``x5c``. The seal's status is read on every call (a suspended
or revoked seal stops issuance at once); the parsed chain is cached per seal key.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from cryptography import x509

from govtrust.errors import FailedPrecondition
from license.signer import LicenceSigner

if TYPE_CHECKING:
    from hsm.keystore import KeyStore
    from seal.lifecycle import SealService, UseContext

DOCUMENT_KIND = "licence"
"""The document kind of a licence's seal use (use grant, PDF seal, use record)."""


class DepartmentSealSigners:
    """``issuer USCC → LicenceSigner`` over the seal service (the ``signers`` of
    :class:`license.issuance.LicenceService`). Callers must have authorised the department."""

    def __init__(self, seals: SealService, keystore: KeyStore) -> None:
        self.seals = seals
        self.keystore = keystore
        self._signers: dict[str, LicenceSigner] = {}
        self._lock = threading.Lock()

    def context(self, issuer_code: str) -> UseContext:
        """The department's official seal as a use context (for sealing the PDF document)."""
        from seal.errors import SealNotFound

        try:
            return self.seals.department_use(issuer_code, DOCUMENT_KIND)
        except SealNotFound:
            raise FailedPrecondition(
                f"department {issuer_code} has no active official seal to sign licences with"
            ) from None

    def __call__(self, issuer_code: str) -> LicenceSigner:
        context = self.context(issuer_code)
        cache_key = f"{context.seal.id}/{context.key_id}"
        signer = self._signers.get(cache_key)
        if signer is None:
            leaf = x509.load_der_x509_certificate(context.certificate_der)
            chain = [x509.load_der_x509_certificate(d) for d in self.seals.authority.chain()]
            non_roots = tuple(c for c in chain if c.issuer != c.subject)
            signer = LicenceSigner(
                self.keystore, self.keystore.get(context.key_id), (leaf, *non_roots)
            )
            with self._lock:
                if len(self._signers) > 1024:
                    self._signers.clear()
                self._signers[cache_key] = signer
        return signer


def department_sm2_seal_chains(seals: SealService) -> list[list[x509.Certificate]]:
    """The SM2 chains (leaf first, no root) of every department official seal that is an SM2
    seal: what an offline verifier of OFD licences checks their GB/T 38540 signatures against
    (the JWS and QR keys stay P-256: JOSE and COSE register no SM2)."""
    from seal.official import official_seal_sm2_certificates

    leaves = official_seal_sm2_certificates(seals.db)
    if not leaves:
        return []
    ca_chain = [x509.load_der_x509_certificate(d) for d in seals.authority.chain(sm2=True)]
    non_roots = [c for c in ca_chain if c.issuer != c.subject]
    return [[x509.load_der_x509_certificate(d), *non_roots] for d in leaves]


def department_seal_chains(seals: SealService) -> list[list[x509.Certificate]]:
    """The chains (leaf first, no root) of every department official seal that has a
    certificate — the content of the licence trust list that offline QR verifiers download.
    Revoked seals stay listed: their old licences must still be recognised (and reported by
    their status), not taken for forgeries."""
    from seal.official import official_seal_certificates

    ca_chain = [x509.load_der_x509_certificate(d) for d in seals.authority.chain()]
    non_roots = [c for c in ca_chain if c.issuer != c.subject]
    leaves = official_seal_certificates(seals.db)
    return [[x509.load_der_x509_certificate(d), *non_roots] for d in leaves]
