"""The process's seal service over a platform: CA port, registry, status listener, PDF sealer."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seal.authority import DEFAULT_MAKER, MakerIdentity
from seal.lifecycle import SealService
from seal.pdf import SealPdf

if TYPE_CHECKING:
    from govtrust.config import Settings
    from govtrust.platform import Platform


@dataclass(frozen=True)
class SealRuntime:
    """The seal domain objects one process uses."""

    service: SealService
    pdf: SealPdf


_runtimes: dict[int, SealRuntime] = {}
_guard = threading.Lock()


def runtime_for(platform: Platform) -> SealRuntime:
    """Build (once per platform) the seal service over the platform's CA and registry, and
    subscribe it to identity status changes (a cancelled owner's seals are revoked)."""
    with _guard:
        existing = _runtimes.get(id(platform))
        if existing is not None:
            return existing
        from ca.authority import authority_for
        from idp.registry import IdentityRegistry, register_status_listener
        from seal.authority import CaSealAuthority
        from seal.owners import RegistryOwners

        registry = IdentityRegistry.open(
            platform.db, platform.master_key, data_dir=platform.settings.data_dir
        )
        authority = CaSealAuthority(
            authority_for(platform), platform.db, maker_identity(platform.settings)
        )
        service = SealService(
            platform.db,
            platform.keystore,
            authority,
            RegistryOwners(registry),
            default_key_algorithm=platform.settings.seal_default_key_algorithm,
        )
        register_status_listener(service.on_identity_status)
        runtime = SealRuntime(service, SealPdf(service))
        _runtimes[id(platform)] = runtime
        on_close = getattr(platform, "on_close", None)
        if callable(on_close):
            on_close(lambda: _release(id(platform), service))
        return runtime


def maker_identity(settings: Settings) -> MakerIdentity:
    """The configured seal-making unit (its USCC checked), or the development default."""
    if settings.seal_maker_name is None or settings.seal_maker_uscc is None:
        return DEFAULT_MAKER
    from govtrust.config import ConfigError
    from idp.identifiers import InvalidIdentifier, parse_uscc

    try:
        uscc = parse_uscc(settings.seal_maker_uscc, field="seal_maker_uscc").code
    except InvalidIdentifier as exc:
        raise ConfigError(f"seal_maker_uscc: {exc}") from None
    return MakerIdentity(settings.seal_maker_name, uscc)


def _release(key: int, service: SealService) -> None:
    """Forget a closed platform's runtime and stop its identity listener: a listener left
    behind would act, inside another platform's transactions, for a service that is gone."""
    from idp.registry import unregister_status_listener

    unregister_status_listener(service.on_identity_status)
    with _guard:
        _runtimes.pop(key, None)
