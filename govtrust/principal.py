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
        "key-recovery",
        "admin",
    }
)
# Roles ``admin`` does not imply: they must be granted by name (dual control of escrowed-key
# recovery must not collapse into "any administrator").
EXPLICIT_ROLES = frozenset({"key-recovery"})
LICENCE_ISSUER_PREFIX = "licence-issuer:"
_DEPARTMENT_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-")


def is_known_role(role: str) -> bool:
    """Whether ``role`` is one of :data:`ROLES` or ``licence-issuer:<department code>``."""
    if role in ROLES:
        return True
    department = role.removeprefix(LICENCE_ISSUER_PREFIX)
    return (
        role.startswith(LICENCE_ISSUER_PREFIX)
        and bool(department)
        and set(department) <= _DEPARTMENT_CHARS
    )


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``kind`` is ``service`` (mTLS client certificate), ``user`` (bearer token from our IdP),
    ``local`` (loopback without TLS in the embedded default) or ``system`` (internal jobs).
    ``subject`` is stable for the kind (certificate subject, token ``sub``); ``citizen_id`` and
    ``legal_person_id`` are set when a person acts (for a company, when acting as its agent).
    ``note`` says why a principal holds no roles (e.g. an unregistered service identity); it is
    added to the message of a role refusal.
    """

    kind: str
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    citizen_id: str | None = None
    legal_person_id: str | None = None
    note: str = ""

    @property
    def actor(self) -> str:
        """The string written to the audit log's ``actor`` column."""
        return f"{self.kind}:{self.subject}"

    def has_role(self, role: str) -> bool:
        """``admin`` holds every role but the :data:`EXPLICIT_ROLES` (granted by name only)."""
        return role in self.roles or ("admin" in self.roles and role not in EXPLICIT_ROLES)

    def require_role(self, *roles: str) -> None:
        """Raise ``PermissionDenied`` unless the principal holds one of ``roles``."""
        if not any(self.has_role(r) for r in roles):
            wanted = " or ".join(roles)
            note = f" ({self.note})" if self.note else ""
            raise PermissionDenied(f"{self.actor} lacks the role {wanted}{note}")


SYSTEM = Principal(kind="system", subject="govtrust", roles=frozenset({"admin"}))
LOCAL_ADMIN = Principal(kind="local", subject="loopback", roles=frozenset({"admin"}))
