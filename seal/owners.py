"""Who owns and who may act for a seal: a port onto the identity registry.

The seal domain asks an :class:`Owners` (a Protocol) instead of reading identity tables;
:class:`RegistryOwners` answers from :class:`idp.registry.IdentityRegistry` as the system.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from govtrust.errors import InvalidArgument, NotFound
from govtrust.principal import SYSTEM
from idp.identity_status import legal_representative, staff_citizen
from idp.registry import IdentityRegistry
from idp.types import IdentityKind, IdentityRef, IdentityStatus


@dataclass(frozen=True)
class Party:
    """A citizen or legal person as the seal system needs it."""

    id: str
    kind: str  # "legal_person" | "citizen"
    name: str
    uscc: str = ""
    active: bool = True
    representative_id: str = ""  # legal persons: the legal representative (a citizen id)


class Owners(Protocol):
    """Look-ups the seal system needs from the identity registry."""

    def party(self, ref: IdentityRef, field: str) -> Party:
        """A legal person or citizen by reference (``NotFound`` otherwise)."""
        ...

    def citizen(self, ref: IdentityRef, field: str) -> Party:
        """A citizen by reference (``NotFound`` otherwise)."""
        ...

    def holds_scope(self, legal_person_id: str, citizen_id: str, scope: str) -> bool:
        """Whether the citizen holds a current agent grant with ``scope`` for the legal person."""
        ...

    def representative(self, legal_person_id: str) -> tuple[str, bool]:
        """(legal representative's citizen id, whether the legal person is active); the hot
        path of every seal use, so one small query."""
        ...

    def person_of(self, identity_id: str) -> str | None:
        """The citizen a staff identity is registered as (None for anyone else): a staff token
        carries no citizen id, yet it is the same person for separation of duties."""
        ...


class RegistryOwners:
    """:class:`Owners` over the identity registry (read as the system principal)."""

    REPRESENTATIVE_TTL = 1.0
    """Seconds a representative look-up is reused: every seal use asks, and a change of
    representative or an owner's suspension may take this long to apply to uses (a cancelled
    owner's seals are revoked at once by the status listener, and the seal's own status is
    always read fresh)."""

    def __init__(self, registry: IdentityRegistry) -> None:
        self.registry = registry
        self._representatives: dict[str, tuple[float, tuple[str, bool]]] = {}

    def party(self, ref: IdentityRef, field: str) -> Party:
        if ref.is_empty:
            raise InvalidArgument.field(field, "required")
        if ref.resident_id_number is not None:
            return self.citizen(ref, field)
        if ref.uscc is not None:
            return self._legal_person(ref)
        try:
            return self._legal_person(ref)
        except (NotFound, InvalidArgument):
            return self.citizen(ref, field)

    def _legal_person(self, ref: IdentityRef) -> Party:
        lp = self.registry.get_legal_person(SYSTEM, ref)
        return Party(
            lp.id,
            IdentityKind.LEGAL_PERSON.value,
            lp.name,
            lp.uscc,
            lp.status == IdentityStatus.ACTIVE,
            lp.legal_representative.id,
        )

    def citizen(self, ref: IdentityRef, field: str) -> Party:
        if ref.is_empty:
            raise InvalidArgument.field(field, "required")
        citizen = self.registry.get_citizen(SYSTEM, ref)
        return Party(
            citizen.id,
            IdentityKind.CITIZEN.value,
            citizen.name,
            "",
            citizen.status == IdentityStatus.ACTIVE,
        )

    def representative(self, legal_person_id: str) -> tuple[str, bool]:
        now = time.monotonic()
        cached = self._representatives.get(legal_person_id)
        if cached is not None and now - cached[0] < self.REPRESENTATIVE_TTL:
            return cached[1]
        answer = legal_representative(self.registry.db, legal_person_id)
        if len(self._representatives) > 4096:
            self._representatives.clear()
        self._representatives[legal_person_id] = (now, answer)
        return answer

    def person_of(self, identity_id: str) -> str | None:
        return staff_citizen(self.registry.db, identity_id)

    def holds_scope(self, legal_person_id: str, citizen_id: str, scope: str) -> bool:
        page = self.registry.list_agents(
            SYSTEM,
            legal_person=IdentityRef(id=legal_person_id),
            agent=IdentityRef(id=citizen_id),
            scope=scope,
            page_size=1,
        )
        return bool(page.items)
