"""Who is calling: the authenticated principal every domain function receives.

Adapters (gRPC interceptors, HTTP routes) build a ``Principal`` from an mTLS client certificate
or a bearer token; domain code checks roles on it and records ``principal.actor`` in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from govtrust.errors import PermissionDenied

# Roles from DESIGN.md's security model. ``licence-issuer:<dept>`` is parameterised.
ROLES = frozenset(
    {
        "verifier",
        "seal-reviewer",
        "seal-maker",
        "seal-filing",
        "ca-operator",
        "identity-registrar",
        "admin",
    }
)
LICENCE_ISSUER_PREFIX = "licence-issuer:"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``kind`` is ``service`` (mTLS client certificate), ``user`` (bearer token from our IdP),
    ``local`` (loopback without TLS in the embedded default) or ``system`` (internal jobs).
    ``subject`` is stable for the kind (certificate subject, token ``sub``); ``citizen_id`` and
    ``legal_person_id`` are set when a person acts (for a company, when acting as its agent).
    """

    kind: str
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    citizen_id: str | None = None
    legal_person_id: str | None = None

    @property
    def actor(self) -> str:
        """The string written to the audit log's ``actor`` column."""
        return f"{self.kind}:{self.subject}"

    def has_role(self, role: str) -> bool:
        """``admin`` holds every role."""
        return role in self.roles or "admin" in self.roles

    def require_role(self, *roles: str) -> None:
        """Raise ``PermissionDenied`` unless the principal holds one of ``roles``."""
        if not any(self.has_role(r) for r in roles):
            wanted = " or ".join(roles)
            raise PermissionDenied(f"{self.actor} lacks the role {wanted}")


SYSTEM = Principal(kind="system", subject="govtrust", roles=frozenset({"admin"}))
LOCAL_ADMIN = Principal(kind="local", subject="loopback", roles=frozenset({"admin"}))
