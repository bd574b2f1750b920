"""The process's licence domain over a platform: issuance, department signers, roots, trust list.

One :class:`LicenceRuntime` per platform, shared by the gRPC servicer, the public HTTP pages
and the CLI, so they sign with the same department seals and check against the same roots.
Its service issues with the departments' official seals (JWS, QR payload and the sealed PDF
from :mod:`license.document`, the seal's use recorded with the licence) and encrypts the
licence secrets at rest under a key derived from the platform master key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509

from govtrust.errors import FailedPrecondition
from govtrust.platform import Component
from license.departments import (
    DepartmentSealSigners,
    department_seal_chains,
    department_sm2_seal_chains,
)
from license.errors import LicenceVerificationFailed
from license.issuance import DocumentMaker, DocumentRequest, LicenceService
from license.models import LicenceStatusListRow
from license.qr import TrustList, export_trust_list
from license.status_list import VerifiedStatusList, verify_status_list

if TYPE_CHECKING:
    from govtrust.platform import Platform
    from seal.lifecycle import UseContext
    from seal.pdf import SealPdf
    from seal.runtime import SealRuntime

TRUST_LIST_TTL_SECONDS = 60.0
# HTTP paths are spelled "license", like the package, the proto and the CLI. The "licence"
# spellings are permanent aliases (licences issued before carry /licence/status/ URIs).
STATUS_PATH = "/license/status/"
TRUST_LIST_PATH = "/license/trust-list"
VERIFY_PATH = "/verify/license/"


def licence_alias(path: str) -> str:
    """The permanent alias of a ``license`` path: the same path spelled ``licence``."""
    return path.replace("license", "licence")


@dataclass
class LicenceRuntime:
    """The licence domain objects one process uses."""

    service: LicenceService
    signers: DepartmentSealSigners
    seals: SealRuntime
    roots: list[x509.Certificate]
    public_base_url: str
    _trust: tuple[float, TrustList, str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def verify_url(self, identifier: str) -> str:
        """The public verification page of a licence (what the document's QR code opens)."""
        return f"{self.public_base_url}{VERIFY_PATH}{identifier}"

    def _trust_entry(self) -> tuple[float, TrustList, str]:
        now = time.monotonic()
        entry = self._trust
        if entry is None or now - entry[0] > TRUST_LIST_TTL_SECONDS:
            chains = department_seal_chains(self.seals.service)
            trust = TrustList(self.roots)
            for chain in chains:
                trust.add(chain)
            sm2_chains = department_sm2_seal_chains(self.seals.service)
            entry = (now, trust, export_trust_list(chains, sm2_chains))
            with self._lock:
                self._trust = entry
        return entry

    def trust_list(self) -> TrustList:
        """Department seal chains by kid (refreshed every minute) for offline QR checks."""
        return self._trust_entry()[1]

    def trust_list_document(self) -> str:
        """The exported trust list offline verifiers download (JSON; chains checked on load)."""
        return self._trust_entry()[2]

    def status_lists(self) -> Mapping[str, VerifiedStatusList]:
        """The issuers' cached signed status lists, verified against the roots on look-up
        (a list that cannot be signed or does not verify is absent: status unknown)."""
        return StatusLists(self.service, self.roots)

    def invalidate_trust_list(self) -> None:
        """Forget the cached trust list now (otherwise it is rebuilt every minute, so a newly
        made department seal appears in it within TRUST_LIST_TTL_SECONDS)."""
        with self._lock:
            self._trust = None


def document_maker(pdf: SealPdf) -> DocumentMaker:
    """The issuance hook over :class:`license.document.LicenceDocuments` (render + seal the
    formats the licence type names)."""
    from license.document import LicenceDocuments, LicenceFiles
    from license.layout import DocumentInput

    documents = LicenceDocuments(pdf)

    def make(request: DocumentRequest, context: UseContext) -> LicenceFiles:
        return documents.make(
            DocumentInput(
                licence_type=request.licence_type,
                metadata=request.metadata,
                signed_data=request.signed_data,
                qr_payload=request.qr_payload,
                verify_url=request.verify_url,
            ),
            context,
            request.licence_type.document_formats,
        )

    return make


class StatusLists(Mapping[str, VerifiedStatusList]):
    """Issuers' verified status lists, loaded on first use (what the checks look issuers up in).

    Only issuers that have a status list row (they issued something here) are loaded, so a
    look-up never creates state; a list that does not verify counts as absent (the check then
    answers ``STATUS_UNKNOWN``).
    """

    def __init__(self, service: LicenceService, roots: Sequence[x509.Certificate]) -> None:
        self._service = service
        self._roots = roots
        self._loaded: dict[str, VerifiedStatusList | None] = {}

    def __getitem__(self, issuer_code: str) -> VerifiedStatusList:
        if issuer_code not in self._loaded:
            self._loaded[issuer_code] = self._load(issuer_code)
        found = self._loaded[issuer_code]
        if found is None:
            raise KeyError(issuer_code)
        return found

    def _load(self, issuer_code: str) -> VerifiedStatusList | None:
        try:
            token = status_list_token(self._service, issuer_code)
        except FailedPrecondition:  # never signed, and the department cannot sign now
            return None
        if token is None:
            return None
        try:
            return verify_status_list(token, self._roots, issuer_code=issuer_code)
        except LicenceVerificationFailed:
            return None

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self._loaded.items() if v is not None])

    def __len__(self) -> int:
        return sum(1 for v in self._loaded.values() if v is not None)


def status_list_token(service: LicenceService, issuer_code: str) -> str | None:
    """The issuer's signed status list, or None when it issued nothing here (unknown issuer);
    :meth:`LicenceService.status_list_token` keeps it fresh."""
    with service.db.read() as session:
        if session.get(LicenceStatusListRow, issuer_code) is None:
            return None
    return service.status_list_token(issuer_code)


LICENCE_RUNTIME: Component[LicenceRuntime] = Component("the licence runtime")


def runtime_for(platform: Platform) -> LicenceRuntime:
    """The platform's licence service (built once) over its registry, the seal service's
    department seals and the CA's roots (ECDSA and SM2)."""
    return platform.components.get(LICENCE_RUNTIME, lambda: _build(platform))


def _build(platform: Platform) -> LicenceRuntime:
    from ca.authority import authority_for
    from ca.hierarchy import ROOT, SM2_ROOT
    from idp.runtime import identity_registry_for
    from license.fonts import configure_font
    from seal.runtime import runtime_for as seal_runtime_for

    configure_font(platform.settings.seal_font)
    seals = seal_runtime_for(platform)
    registry = identity_registry_for(platform)
    base = platform.settings.effective_public_base_url
    signers = DepartmentSealSigners(seals.service, platform.keystore)
    service = LicenceService(
        platform.db,
        registry,
        signers,
        master_key=platform.master_key,
        at_rest_scheme=platform.settings.at_rest_scheme,
        status_uri=lambda issuer: f"{base}{STATUS_PATH}{issuer}",
        verify_url=lambda identifier: f"{base}{VERIFY_PATH}{identifier}",
        documents=document_maker(seals.pdf),
        seals=signers,
    )
    # the ECDSA root (signed data, PDF seals, QR) and the SM2 root (an SM2 seal's OFD signature)
    authority = authority_for(platform)
    roots = [
        x509.load_der_x509_certificate(i.der)
        for name in (ROOT, SM2_ROOT)
        for i in authority.chain(name)
    ]
    return LicenceRuntime(service, signers, seals, roots, base)
