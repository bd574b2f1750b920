"""One :class:`Provider` per platform, shared by HTTP routes, gRPC methods and token resolver."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from idp.oidc.config import ProviderConfig
from idp.oidc.provider import Provider
from idp.oidc.sessions import on_identity_status_change
from idp.registry import register_status_listener

if TYPE_CHECKING:
    from govtrust.platform import Platform

_lock = threading.Lock()
_providers: dict[int, Provider] = {}


def provider_for(platform: Platform) -> Provider:
    """The provider of ``platform`` (created on first use; issuer = the public base URL)."""
    register_status_listener(on_identity_status_change)
    key = id(platform)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            settings = platform.settings
            issuer = settings.effective_public_base_url
            provider = Provider(
                platform.db,
                platform.keystore,
                ProviderConfig(
                    issuer=issuer,
                    secure_cookies=settings.tls_enabled or issuer.startswith("https://"),
                ),
                key_deriver=platform.master_key,
            )
            _providers[key] = provider
        return provider


def install_provider(platform: Platform, provider: Provider) -> None:
    """Use ``provider`` for ``platform`` (tests with a custom validator or clock)."""
    register_status_listener(on_identity_status_change)
    with _lock:
        _providers[id(platform)] = provider


def forget(platform: Platform) -> None:
    """Drop the cached provider of a closed platform."""
    with _lock:
        _providers.pop(id(platform), None)
