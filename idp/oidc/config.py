"""The provider's configuration (issuer, lifetimes) and its assurance-level ``acr`` values."""

from __future__ import annotations

from dataclasses import dataclass

ACR_PREFIX = "urn:govtrust:loa:"
ACR_VALUES = tuple(f"{ACR_PREFIX}{n}" for n in (1, 2, 3))


def acr_level(acr: str) -> int:
    """The level of an ``urn:govtrust:loa:N`` value (0 for anything else)."""
    if acr.startswith(ACR_PREFIX) and acr[len(ACR_PREFIX) :].isdigit():
        return int(acr[len(ACR_PREFIX) :])
    return 0


@dataclass(frozen=True)
class ProviderConfig:
    """Issuer and lifetimes (seconds)."""

    issuer: str
    code_ttl: int = 60
    access_token_ttl: int = 900
    id_token_ttl: int = 3600
    refresh_token_ttl: int = 14 * 24 * 3600
    # a rotated refresh token presented again this soon after its rotation, its successor still
    # unused, is answered again (idp/oidc/reuse.py); 0: never, every reuse revokes the family
    refresh_reuse_interval: int = 30
    session_ttl: int = 12 * 3600
    interaction_ttl: int = 1800
    clock_skew: int = 60
    secure_cookies: bool = False

    def endpoint(self, path: str) -> str:
        """Absolute URL of one of our endpoints."""
        return f"{self.issuer}{path}"
