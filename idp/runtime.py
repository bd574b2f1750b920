"""The identity domain objects of one platform, kept on its container (as ``seal.runtime`` and
``license.runtime`` keep theirs): the identity registry every package uses, the listeners of its
status changes, and the service-identity registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from govtrust.platform import Component
from idp.status_listeners import StatusListeners

if TYPE_CHECKING:
    from govtrust.platform import Platform
    from idp.registry import IdentityRegistry
    from idp.services import ServiceRegistry

STATUS_LISTENERS: Component[StatusListeners] = Component("the identity status listeners")
IDENTITY_REGISTRY: Component[IdentityRegistry] = Component("the identity registry")
SERVICE_REGISTRY: Component[ServiceRegistry] = Component("the service-identity registry")


def status_listeners_for(platform: Platform) -> StatusListeners:
    """The listeners of ``platform``'s identity status changes (none at first)."""
    return platform.components.get(STATUS_LISTENERS, StatusListeners)


def identity_registry_for(platform: Platform) -> IdentityRegistry:
    """``platform``'s identity registry (built once: keys derived from the master key, the
    configured USCC allow-list and grantable roles), telling its status listeners."""
    return platform.components.get(IDENTITY_REGISTRY, lambda: _build_registry(platform))


def service_registry_for(platform: Platform) -> ServiceRegistry:
    """``platform``'s service-identity registry (built once)."""
    from idp.services import ServiceRegistry

    return platform.components.get(SERVICE_REGISTRY, lambda: ServiceRegistry(platform.db))


def _build_registry(platform: Platform) -> IdentityRegistry:
    from idp.registry import IdentityRegistry

    settings = platform.settings
    return IdentityRegistry.open(
        platform.db,
        platform.master_key,
        data_dir=settings.data_dir,
        registrar_grantable_roles=settings.registrar_grantable_roles,
        at_rest_scheme=settings.at_rest_scheme,
        status_listeners=status_listeners_for(platform),
        uscc_allow_list=settings.uscc_allow_list,
    )
