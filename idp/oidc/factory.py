"""One :class:`Provider` per platform, shared by HTTP routes, gRPC methods and token resolver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from govtrust.platform import Component
from idp.oidc.config import ProviderConfig
from idp.oidc.provider import Provider
from idp.oidc.sessions import on_identity_status_change
from idp.runtime import status_listeners_for

if TYPE_CHECKING:
    from govtrust.platform import Platform

PROVIDER: Component[Provider] = Component("the OpenID provider")


def provider_for(platform: Platform) -> Provider:
    """The provider of ``platform`` (created on first use; issuer = the public base URL)."""
    return platform.components.get(PROVIDER, lambda: _build(platform))


def _build(platform: Platform) -> Provider:
    status_listeners_for(platform).add(on_identity_status_change)
    settings = platform.settings
    issuer = settings.effective_public_base_url
    return Provider(
        platform.db,
        platform.keystore,
        ProviderConfig(
            issuer=issuer,
            refresh_reuse_interval=settings.oidc_refresh_reuse_interval_seconds,
            secure_cookies=settings.tls_enabled or issuer.startswith("https://"),
        ),
        key_deriver=platform.master_key,
    )


def install_provider(platform: Platform, provider: Provider) -> None:
    """Use ``provider`` for ``platform`` (tests with a custom validator or clock)."""
    status_listeners_for(platform).add(on_identity_status_change)
    platform.components.put(PROVIDER, provider)
