"""The process's seal service over a platform: CA port, registry, status listener, PDF sealer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from govtrust.platform import Component
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


SEAL_RUNTIME: Component[SealRuntime] = Component("the seal runtime")


def runtime_for(platform: Platform) -> SealRuntime:
    """The platform's seal service over its CA and registry (built once), subscribed to
    the platform's identity status changes (a cancelled owner's seals are revoked)."""
    return platform.components.get(SEAL_RUNTIME, lambda: _build(platform))


def _build(platform: Platform) -> SealRuntime:
    from ca.authority import authority_for
    from idp.runtime import identity_registry_for, status_listeners_for
    from seal.authority import CaSealAuthority
    from seal.owners import RegistryOwners

    registry = identity_registry_for(platform)
    authority = CaSealAuthority(
        authority_for(platform), platform.db, maker_identity(platform.settings)
    )
    service = SealService(
        platform.db,
        platform.keystore,
        authority,
        RegistryOwners(registry),
        default_key_algorithm=platform.settings.effective_seal_key_algorithm,
    )
    status_listeners_for(platform).add(service.on_identity_status)
    return SealRuntime(service, SealPdf(service))


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
