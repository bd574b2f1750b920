"""Per-process wiring that is not a servicer or a router: resolvers, the CA's subject directory
and the periodic jobs.

Each serving process (every worker is a fresh interpreter) calls :func:`wire` once, after the
platform is open and before it accepts calls, and runs :func:`periodic_jobs` while it serves.
"""

from __future__ import annotations

import asyncio
import logging

from ca.directory import SubjectDirectory
from govtrust.platform import Platform
from govtrust.rpc.offload import run_sync

log = logging.getLogger("govtrust.server")

CA_REFRESH_SECONDS = 120.0


def wire(platform: Platform) -> None:
    """Install the bearer-token resolver, the service-certificate resolver (mTLS callers get
    the roles of their registered service identity) and the registry-backed CA directory."""
    del platform  # each hook builds its per-platform objects on first use
    from ca.authority import set_directory_factory
    from govtrust.api.oidc_grpc import install_token_resolver
    from govtrust.rpc.auth import register_certificate_resolver
    from idp.services import certificate_principal

    install_token_resolver()
    register_certificate_resolver(certificate_principal)
    set_directory_factory(_registry_directory)


def _registry_directory(platform: Platform) -> SubjectDirectory:
    from idp.ca_directory import RegistryDirectory
    from idp.registry import IdentityRegistry

    registry = IdentityRegistry.open(
        platform.db, platform.master_key, data_dir=platform.settings.data_dir
    )
    return RegistryDirectory(registry)


async def periodic_jobs(platform: Platform, stop: asyncio.Event) -> None:
    """Re-sign OCSP responses nearing nextUpdate and republish aged CRLs, until ``stop``."""
    from ca.authority import authority_for

    while not stop.is_set():
        try:
            await run_sync(lambda: authority_for(platform).refresh())
        except Exception:  # a failed round is logged; the next one tries again
            log.exception("periodic CA refresh failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=CA_REFRESH_SECONDS)
        except TimeoutError:
            continue
