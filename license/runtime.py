"""The process's licence domain over a platform: issuance, department signers, roots, trust list.

One :class:`LicenceRuntime` per platform, shared by the gRPC servicer, the public HTTP pages
and the CLI, so they sign with the same department seals and check against the same roots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509

from license.departments import DepartmentSealSigners, department_seal_chains
from license.issuance import LicenceService
from license.qr import TrustList, export_trust_list

if TYPE_CHECKING:
    from govtrust.platform import Platform
    from seal.runtime import SealRuntime

TRUST_LIST_TTL_SECONDS = 60.0
STATUS_PATH = "/licence/status/"
TRUST_LIST_PATH = "/licence/trust-list"
VERIFY_PATH = "/verify/license/"


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
            entry = (now, trust, export_trust_list(chains))
            with self._lock:
                self._trust = entry
        return entry

    def trust_list(self) -> TrustList:
        """Department seal chains by kid (refreshed every minute) for offline QR checks."""
        return self._trust_entry()[1]

    def trust_list_document(self) -> str:
        """The exported trust list offline verifiers download (JSON; chains checked on load)."""
        return self._trust_entry()[2]

    def invalidate_trust_list(self) -> None:
        """Forget the cached trust list (a department seal was just made)."""
        with self._lock:
            self._trust = None


_runtimes: dict[int, LicenceRuntime] = {}
_guard = threading.Lock()


def runtime_for(platform: Platform) -> LicenceRuntime:
    """Build (once per platform) the licence service over the platform's registry, the seal
    service's department seals and the CA's root."""
    with _guard:
        existing = _runtimes.get(id(platform))
        if existing is not None:
            return existing
        from ca.authority import authority_for
        from idp.registry import IdentityRegistry
        from seal.runtime import runtime_for as seal_runtime_for

        seals = seal_runtime_for(platform)
        registry = IdentityRegistry.open(
            platform.db, platform.master_key, data_dir=platform.settings.data_dir
        )
        base = platform.settings.effective_public_base_url
        signers = DepartmentSealSigners(seals.service, platform.keystore)
        service = LicenceService(
            platform.db,
            registry,
            signers,
            status_uri=lambda issuer: f"{base}{STATUS_PATH}{issuer}",
        )
        roots = [
            x509.load_der_x509_certificate(i.der) for i in authority_for(platform).chain("root")
        ]
        runtime = LicenceRuntime(service, signers, seals, roots, base)
        _runtimes[id(platform)] = runtime
        return runtime
