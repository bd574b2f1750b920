"""Who may call an RPC at all: one declared rule per method, checked before the servicer runs.

The interceptor (:mod:`govtrust.rpc.interceptors`) calls an :data:`Authorise` hook with the
method and the authenticated principal; :func:`gate` builds that hook over a table of
:class:`Access` rules (the server's table is :data:`govtrust.api.access.RPC_ACCESS`). The gate
is the coarse first check — the caller holds one of the roles, or is a person (citizen or legal
person acting) when a relation can admit it, or the method is open to every authenticated
caller. The domain then checks the relation itself (is this citizen the seal owner's
representative?), the state and the duties. A method missing from the table is refused: a new
RPC is closed until someone declares who may call it.

Because the rule runs before the servicer, a caller who can never call a method learns nothing
from it: not whether an id exists (NOT_FOUND), nor whether its request is well-formed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from govtrust.errors import PermissionDenied
from govtrust.principal import Principal

Authorise = Callable[[str, Principal], None]
"""``(full method name, principal)`` → None, or raise ``PermissionDenied``."""

ANY_SUFFIX = "*"  # "licence-issuer:*": any role with that prefix (the department is checked later)


@dataclass(frozen=True)
class Access:
    """Who may call one RPC.

    ``roles``: any of these admits (``admin`` holds every role; ``prefix:*`` matches every
    role with that prefix). ``relations``: how a person without those roles may still be
    admitted (human-readable; the domain checks them) — the gate lets a principal acting as a
    citizen or legal person through to that check. ``authenticated``: every authenticated
    caller (the domain may still refuse, e.g. a grant or an access code decides).
    """

    roles: tuple[str, ...] = ()
    relations: tuple[str, ...] = ()
    authenticated: bool = False
    note: str = ""

    def admits(self, principal: Principal) -> bool:
        """Whether the gate lets ``principal`` through to the servicer."""
        if self.authenticated:
            return True
        for role in self.roles:
            if role.endswith(ANY_SUFFIX):
                prefix = role[: -len(ANY_SUFFIX)]
                if "admin" in principal.roles or any(r.startswith(prefix) for r in principal.roles):
                    return True
            elif principal.has_role(role):
                return True
        acting = principal.citizen_id is not None or principal.legal_person_id is not None
        return bool(self.relations) and acting

    def describe(self) -> str:
        """The rule in words (for errors and the generated role table)."""
        if self.authenticated:
            return "any authenticated caller"
        parts = [f"`{r}`" for r in self.roles] + list(self.relations)
        return " or ".join(parts) if parts else "nobody"


def gate(table: Mapping[str, Access]) -> Authorise:
    """The interceptor hook over ``table`` (keys: ``/package.Service/Method``)."""

    def authorise(method: str, principal: Principal) -> None:
        access = table.get(method)
        if access is None:
            raise PermissionDenied(f"{method} has no declared access rule: refused")
        if not access.admits(principal):
            why = f"; {principal.note}" if principal.note else ""
            raise PermissionDenied(
                f"{principal.actor} may not call {method.rsplit('/', 1)[-1]} "
                f"(needs {access.describe()}{why})"
            )

    return authorise
