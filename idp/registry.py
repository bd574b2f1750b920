"""The identity registry: citizens, legal persons, staff and agent grants.

Domain functions take the caller's :class:`~govtrust.principal.Principal`, check its role (or its
relation to the legal person, for agent grants), validate input into specific field violations,
and change the database and the audit log in one transaction. They return the frozen
dataclasses of :mod:`idp.types`; personal data leaves only in masked form.

Who may do what:

* register and change status: ``identity-registrar``; giving a staff member the ``admin`` or
  ``identity-registrar`` role needs ``admin``;
* read, search and check: ``verifier`` or ``identity-registrar`` (a citizen may also read their
  own record and the agent grants they hold);
* grant an agent: the legal representative, an agent of the legal person holding ``agent.manage``
  (only scopes it holds itself, never beyond its own validity), or an ``identity-registrar``
  recording a paper authorisation at a counter;
* revoke a grant: the same people, or the agent renouncing its own grant.

One concept per module: :mod:`idp.registry_state` is the state the services share (database,
codec, base data, clock) with reference resolution and the field checks, :mod:`idp.paging` the
page tokens, :mod:`idp.citizens`, :mod:`idp.legal_persons`, :mod:`idp.staff` and
:mod:`idp.agent_grants` one kind of record each, :mod:`idp.identity_search` the search and
:mod:`idp.status_change` suspension, reinstatement and cancellation. :class:`IdentityRegistry`
is the facade callers use, composing them over one :class:`~idp.registry_state.RegistryState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from govtrust.db import Database
from govtrust.fastsql import PointReader
from govtrust.principal import Principal
from hsm.atrest import DEFAULT_SCHEME
from idp.agent_grants import AgentGrants
from idp.basedata import LegalPersonBaseData, PopulationBaseData
from idp.citizens import CitizenRegistry
from idp.identifiers import ResidentId, Uscc, load_uscc_allow_list
from idp.identity_search import search_identities
from idp.legal_persons import LegalPersonRegistry
from idp.pii import KeyDeriver, PiiCodec
from idp.registry_state import REGISTRAR, VERIFIER, RegistryState
from idp.staff import PRIVILEGED_STAFF_ROLES, StaffRegistry
from idp.status_change import StatusChanges
from idp.status_listeners import StatusListeners
from idp.types import (
    AgentGrant,
    Citizen,
    CitizenCheck,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    IdentitySummary,
    LegalPerson,
    LegalPersonCheck,
    Page,
    Staff,
    StatusAction,
    SystemAccount,
)

__all__ = ["PRIVILEGED_STAFF_ROLES", "REGISTRAR", "VERIFIER", "IdentityRegistry"]


class IdentityRegistry:
    """Domain service of the identity registry over one database: a facade over
    :class:`~idp.citizens.CitizenRegistry`, :class:`~idp.legal_persons.LegalPersonRegistry`,
    :class:`~idp.staff.StaffRegistry`, :class:`~idp.agent_grants.AgentGrants`,
    :func:`~idp.identity_search.search_identities` and
    :class:`~idp.status_change.StatusChanges`, sharing one state."""

    def __init__(
        self,
        db: Database,
        codec: PiiCodec,
        *,
        uscc_allow_list: frozenset[str] = frozenset(),
        registrar_grantable_roles: frozenset[str] = frozenset(),
        population: PopulationBaseData | None = None,
        legal_person_base: LegalPersonBaseData | None = None,
        clock: Callable[[], datetime] | None = None,
        status_listeners: StatusListeners | None = None,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        # the services read the clock through ``now``, so that replacing ``_clock`` reaches them
        self.state = RegistryState(
            db,
            codec,
            uscc_allow_list=uscc_allow_list,
            population=population,
            legal_person_base=legal_person_base,
            clock=self.now,
        )
        # told of every status change in its transaction (the platform's, see idp.runtime)
        self.status_listeners = status_listeners or StatusListeners()
        self.citizens = CitizenRegistry(self.state)
        self.legal_persons = LegalPersonRegistry(self.state)
        self.staff = StaffRegistry(self.state, registrar_grantable_roles)
        self.agents = AgentGrants(self.state)
        self.status_changes = StatusChanges(self.state, self.status_listeners)

    @classmethod
    def open(
        cls,
        db: Database,
        master_key: KeyDeriver,
        *,
        data_dir: Path | None = None,
        registrar_grantable_roles: Iterable[str] = (),
        at_rest_scheme: str = DEFAULT_SCHEME,
        status_listeners: StatusListeners | None = None,
        uscc_allow_list: Iterable[str] = (),
    ) -> IdentityRegistry:
        """A registry with keys derived from the master key (new personal data written under
        ``at_rest_scheme``), the configured USCC allow-list and the staff roles a registrar may
        give (setting ``registrar_grantable_roles``)."""
        return cls(
            db,
            PiiCodec.from_master_key(master_key, at_rest_scheme),
            uscc_allow_list=load_uscc_allow_list(data_dir, uscc_allow_list),
            registrar_grantable_roles=frozenset(registrar_grantable_roles),
            status_listeners=status_listeners,
        )

    # --- the shared state -----------------------------------------------------------------

    @property
    def db(self) -> Database:
        """The registry's database."""
        return self.state.db

    @property
    def codec(self) -> PiiCodec:
        """The codec of personal data (encryption and blind indexes)."""
        return self.state.codec

    @property
    def uscc_allow_list(self) -> frozenset[str]:
        """USCCs accepted though their check character does not verify."""
        return self.state.uscc_allow_list

    @property
    def population(self) -> PopulationBaseData:
        """The population base data a citizen's registration is matched against."""
        return self.state.population

    @population.setter
    def population(self, base: PopulationBaseData) -> None:
        self.state.population = base

    @property
    def legal_person_base(self) -> LegalPersonBaseData:
        """The legal-person base data a legal person's registration is matched against."""
        return self.state.legal_person_base

    @legal_person_base.setter
    def legal_person_base(self, base: LegalPersonBaseData) -> None:
        self.state.legal_person_base = base

    @property
    def registrar_grantable_roles(self) -> frozenset[str]:
        """The staff roles a registrar may give (never the privileged ones)."""
        return self.staff.registrar_grantable_roles

    @property
    def reader(self) -> PointReader:
        """The fast point reader of the citizen check (:meth:`check_citizen`)."""
        return self.citizens.reader

    def now(self) -> datetime:
        """The registry's clock (UTC)."""
        return self._clock()

    def parse_resident_id(self, value: str, field: str) -> ResidentId:
        """Validate a resident ID number for ``field``."""
        return self.state.parse_resident_id(value, field)

    def parse_uscc(self, value: str, field: str) -> Uscc:
        """Validate a USCC for ``field`` against the configured allow-list."""
        return self.state.parse_uscc(value, field)

    # --- citizens -------------------------------------------------------------------------

    def register_citizen(
        self, principal: Principal, *, name: str, id_number: str, phone: str = "", email: str = ""
    ) -> Citizen:
        """Register a citizen: :meth:`idp.citizens.CitizenRegistry.register`."""
        return self.citizens.register(
            principal, name=name, id_number=id_number, phone=phone, email=email
        )

    def bulk_register_citizens(
        self, principal: Principal, people: Sequence[tuple[str, str, str]]
    ) -> list[str]:
        """Register many citizens at once: :meth:`idp.citizens.CitizenRegistry.bulk_register`."""
        return self.citizens.bulk_register(principal, people)

    def get_citizen(self, principal: Principal, ref: IdentityRef) -> Citizen:
        """One citizen (masked); verifiers, registrars, or the citizen themself."""
        return self.citizens.get(principal, ref)

    def check_citizen(self, principal: Principal, *, name: str, id_number: str) -> CitizenCheck:
        """MATCH / MISMATCH / NOT_FOUND for a name and ID number:
        :meth:`idp.citizens.CitizenRegistry.check`."""
        return self.citizens.check(principal, name=name, id_number=id_number)

    # --- legal persons --------------------------------------------------------------------

    def register_legal_person(
        self, principal: Principal, *, uscc: str, name: str, legal_representative: IdentityRef
    ) -> LegalPerson:
        """Register a legal person whose representative is a registered, active citizen."""
        return self.legal_persons.register(
            principal, uscc=uscc, name=name, legal_representative=legal_representative
        )

    def get_legal_person(self, principal: Principal, ref: IdentityRef) -> LegalPerson:
        """One legal person with its representative; verifiers and registrars."""
        return self.legal_persons.get(principal, ref)

    def legal_persons_by_uscc(
        self, principal: Principal, usccs: Iterable[str]
    ) -> dict[str, LegalPerson]:
        """The registered legal persons of ``usccs``, keyed by the code as given:
        :meth:`idp.legal_persons.LegalPersonRegistry.by_uscc`."""
        return self.legal_persons.by_uscc(principal, usccs)

    def check_legal_person(
        self,
        principal: Principal,
        *,
        uscc: str,
        name: str,
        citizen_id_number: str = "",
        scope: str = "",
    ) -> LegalPersonCheck:
        """MATCH / MISMATCH / NOT_FOUND for a USCC and name:
        :meth:`idp.legal_persons.LegalPersonRegistry.check`."""
        return self.legal_persons.check(
            principal, uscc=uscc, name=name, citizen_id_number=citizen_id_number, scope=scope
        )

    # --- staff ----------------------------------------------------------------------------

    def register_staff(
        self,
        principal: Principal,
        *,
        name: str,
        department_code: str,
        department_name: str,
        employee_number: str,
        roles: Sequence[str] = (),
        system_accounts: Sequence[SystemAccount] = (),
        citizen: IdentityRef | None = None,
        phone: str = "",
        email: str = "",
    ) -> Staff:
        """Register a staff member: :meth:`idp.staff.StaffRegistry.register`."""
        return self.staff.register(
            principal,
            name=name,
            department_code=department_code,
            department_name=department_name,
            employee_number=employee_number,
            roles=roles,
            system_accounts=system_accounts,
            citizen=citizen,
            phone=phone,
            email=email,
        )

    def get_staff(self, principal: Principal, ref: IdentityRef) -> Staff:
        """One staff member; verifiers and registrars."""
        return self.staff.get(principal, ref)

    # --- search and status ----------------------------------------------------------------

    def search(
        self,
        principal: Principal,
        *,
        name_prefix: str = "",
        kind: IdentityKind | None = None,
        status: IdentityStatus | None = None,
        department_code: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[IdentitySummary]:
        """Identities by name prefix, kind, status and department, ordered by name then id."""
        return search_identities(
            self.state.db,
            principal,
            name_prefix=name_prefix,
            kind=kind,
            status=status,
            department_code=department_code,
            page_size=page_size,
            page_token=page_token,
        )

    def get_identity(self, principal: Principal, ref: IdentityRef) -> IdentitySummary:
        """One identity's summary, any kind; verifiers and registrars:
        :meth:`idp.status_change.StatusChanges.summary`."""
        return self.status_changes.summary(principal, ref)

    def update_status(
        self, principal: Principal, ref: IdentityRef, action: StatusAction, reason: str
    ) -> IdentitySummary:
        """Suspend, reinstate or cancel an identity:
        :meth:`idp.status_change.StatusChanges.update_status`."""
        return self.status_changes.update_status(principal, ref, action, reason)

    # --- agent grants ---------------------------------------------------------------------

    def grant_agent(
        self,
        principal: Principal,
        *,
        legal_person: IdentityRef,
        agent: IdentityRef,
        scopes: Sequence[str],
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> AgentGrant:
        """Authorise a citizen to act for a legal person (see the module docstring for who)."""
        return self.agents.grant(
            principal,
            legal_person=legal_person,
            agent=agent,
            scopes=scopes,
            valid_from=valid_from,
            valid_until=valid_until,
        )

    def revoke_agent(self, principal: Principal, *, grant_id: str, reason: str) -> AgentGrant:
        """Revoke a grant: :meth:`idp.agent_grants.AgentGrants.revoke`."""
        return self.agents.revoke(principal, grant_id=grant_id, reason=reason)

    def get_agent_grant(self, principal: Principal, grant_id: str) -> AgentGrant:
        """One agent grant by id: :meth:`idp.agent_grants.AgentGrants.get`."""
        return self.agents.get(principal, grant_id)

    def list_agents(
        self,
        principal: Principal,
        *,
        legal_person: IdentityRef | None = None,
        agent: IdentityRef | None = None,
        scope: str = "",
        include_inactive: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[AgentGrant]:
        """Grants of a legal person and/or to a citizen, newest first:
        :meth:`idp.agent_grants.AgentGrants.list_grants`."""
        return self.agents.list_grants(
            principal,
            legal_person=legal_person,
            agent=agent,
            scope=scope,
            include_inactive=include_inactive,
            page_size=page_size,
            page_token=page_token,
        )
