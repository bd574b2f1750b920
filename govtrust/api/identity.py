"""gRPC adapter of ``govtrust.v1.IdentityService`` over :class:`idp.registry.IdentityRegistry`.

Thin by design: each method converts the request into domain values, calls the registry with the
call's principal (``current_principal()``) in the ``run_sync`` pool, and converts the result.
Domain errors propagate to the platform interceptor, which maps them to status codes with
``google.rpc`` details. The OIDC client RPCs and IntrospectToken belong to the OIDC issue and
answer UNIMPLEMENTED (inherited from the generated base class).

Authorisation (enforced in the domain, see :mod:`idp.registry`): Register*/UpdateIdentityStatus
need ``identity-registrar``; Check*/Get*/SearchIdentities need ``verifier`` or
``identity-registrar``; GrantAgent/RevokeAgent/ListAgents accept the legal representative or an
agent holding ``agent.manage`` (``principal.citizen_id``), or an ``identity-registrar`` acting on
record. The service-identity RPCs need ``admin`` (see :mod:`idp.services`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from govtrust.api.oidc_grpc import OidcClientRpcs
from govtrust.audit import ClaimEffect
from govtrust.db import Database
from govtrust.errors import InvalidArgument
from govtrust.platform import Platform
from govtrust.rpc.answers import acted_on, all_acted_on, rebuilt_from
from govtrust.rpc.context import current_principal
from govtrust.rpc.convert import time_in, timestamp_pb
from govtrust.rpc.offload import run_sync
from govtrust.v1 import common_pb2, identity_pb2, identity_pb2_grpc
from idp.identifiers import LegalPersonKind, Sex
from idp.pii import KeyDeriver
from idp.registry import IdentityRegistry
from idp.runtime import identity_registry_for
from idp.services import ServiceIdentity, ServiceRegistry, ServiceStatus
from idp.types import (
    AgentGrant,
    AssuranceSource,
    CheckResult,
    Citizen,
    ConnectionMode,
    GrantStatus,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    IdentitySummary,
    LegalPerson,
    Staff,
    StatusAction,
    SystemAccount,
)


class _Settings(Protocol):
    @property
    def data_dir(self) -> Path: ...

    @property
    def registrar_grantable_roles(self) -> tuple[str, ...]: ...

    @property
    def at_rest_scheme(self) -> str: ...


class IdentityPlatform(Protocol):
    """What the servicer needs from :class:`govtrust.platform.Platform`."""

    @property
    def settings(self) -> _Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def master_key(self) -> KeyDeriver: ...


# --- enum maps ----------------------------------------------------------------------------------

_KIND = {
    IdentityKind.CITIZEN: common_pb2.IDENTITY_KIND_CITIZEN,
    IdentityKind.LEGAL_PERSON: common_pb2.IDENTITY_KIND_LEGAL_PERSON,
    IdentityKind.STAFF: common_pb2.IDENTITY_KIND_STAFF,
}
_KIND_IN = {v: k for k, v in _KIND.items()}
_STATUS = {
    IdentityStatus.ACTIVE: common_pb2.IDENTITY_STATUS_ACTIVE,
    IdentityStatus.SUSPENDED: common_pb2.IDENTITY_STATUS_SUSPENDED,
    IdentityStatus.CANCELLED: common_pb2.IDENTITY_STATUS_CANCELLED,
}
_STATUS_IN = {v: k for k, v in _STATUS.items()}
_NO_STATUS = common_pb2.IDENTITY_STATUS_UNSPECIFIED
_ACTION_IN = {
    identity_pb2.IDENTITY_STATUS_ACTION_SUSPEND: StatusAction.SUSPEND,
    identity_pb2.IDENTITY_STATUS_ACTION_REINSTATE: StatusAction.REINSTATE,
    identity_pb2.IDENTITY_STATUS_ACTION_CANCEL: StatusAction.CANCEL,
}
_SOURCE = {
    AssuranceSource.NONE: identity_pb2.ASSURANCE_SOURCE_UNSPECIFIED,
    AssuranceSource.SELF_REGISTERED: identity_pb2.ASSURANCE_SOURCE_SELF_REGISTERED,
    AssuranceSource.BASE_DATA: identity_pb2.ASSURANCE_SOURCE_BASE_DATA,
    AssuranceSource.IN_PERSON: identity_pb2.ASSURANCE_SOURCE_IN_PERSON,
    AssuranceSource.CERTIFICATE: identity_pb2.ASSURANCE_SOURCE_CERTIFICATE,
}
_SEX = {Sex.MALE: identity_pb2.SEX_MALE, Sex.FEMALE: identity_pb2.SEX_FEMALE}
_LP_KIND = {
    LegalPersonKind.ORGAN: identity_pb2.LEGAL_PERSON_KIND_ORGAN,
    LegalPersonKind.INSTITUTION: identity_pb2.LEGAL_PERSON_KIND_INSTITUTION,
    LegalPersonKind.MASS_ORGANISATION: identity_pb2.LEGAL_PERSON_KIND_MASS_ORGANISATION,
    LegalPersonKind.SOCIAL_ORGANISATION: identity_pb2.LEGAL_PERSON_KIND_SOCIAL_ORGANISATION,
    LegalPersonKind.PRIVATE_NON_ENTERPRISE: identity_pb2.LEGAL_PERSON_KIND_PRIVATE_NON_ENTERPRISE,
    LegalPersonKind.FOUNDATION: identity_pb2.LEGAL_PERSON_KIND_FOUNDATION,
    LegalPersonKind.ENTERPRISE: identity_pb2.LEGAL_PERSON_KIND_ENTERPRISE,
    LegalPersonKind.INDIVIDUAL_BUSINESS: identity_pb2.LEGAL_PERSON_KIND_INDIVIDUAL_BUSINESS,
    LegalPersonKind.FARMERS_COOPERATIVE: identity_pb2.LEGAL_PERSON_KIND_FARMERS_COOPERATIVE,
    LegalPersonKind.OTHER: identity_pb2.LEGAL_PERSON_KIND_OTHER,
}
_MODE = {
    ConnectionMode.UNIFIED: identity_pb2.CONNECTION_MODE_UNIFIED,
    ConnectionMode.MAPPED: identity_pb2.CONNECTION_MODE_MAPPED,
}
_MODE_IN = {v: k for k, v in _MODE.items()}
_RESULT = {
    CheckResult.MATCH: identity_pb2.CHECK_RESULT_MATCH,
    CheckResult.MISMATCH: identity_pb2.CHECK_RESULT_MISMATCH,
    CheckResult.NOT_FOUND: identity_pb2.CHECK_RESULT_NOT_FOUND,
}
_GRANT = {
    GrantStatus.ACTIVE: common_pb2.GRANT_STATUS_ACTIVE,
    GrantStatus.NOT_YET_VALID: common_pb2.GRANT_STATUS_NOT_YET_VALID,
    GrantStatus.EXPIRED: common_pb2.GRANT_STATUS_EXPIRED,
    GrantStatus.REVOKED: common_pb2.GRANT_STATUS_REVOKED,
}


def _assurance(level: int | None) -> Any:
    return level if level in (1, 2, 3) else common_pb2.ASSURANCE_LEVEL_UNSPECIFIED


# --- request parsing ----------------------------------------------------------------------------


def parse_ref(message: common_pb2.IdentityRef) -> IdentityRef:
    """The domain reference named by an ``IdentityRef`` (empty when unset)."""
    which = message.WhichOneof("ref")
    if which == "id":
        return IdentityRef(id=message.id)
    if which == "resident_id_number":
        return IdentityRef(resident_id_number=message.resident_id_number)
    if which == "uscc":
        return IdentityRef(uscc=message.uscc)
    if which == "staff":
        return IdentityRef(staff=(message.staff.department_code, message.staff.employee_number))
    return IdentityRef()


def _enum_in(field: str, value: int, mapping: dict[Any, Any], *, optional: bool) -> Any:
    if value == 0 and optional:
        return None
    if value not in mapping:
        raise InvalidArgument.field(field, "required" if value == 0 else "unknown value")
    return mapping[value]


# --- response building --------------------------------------------------------------------------


def _opt_summary_pb(summary: IdentitySummary | None) -> common_pb2.IdentitySummary | None:
    return None if summary is None else summary_pb(summary)


def summary_pb(summary: IdentitySummary) -> common_pb2.IdentitySummary:
    """``IdentitySummary`` message."""
    return common_pb2.IdentitySummary(
        id=summary.id,
        kind=_KIND[summary.kind],
        display_name=summary.display_name,
        masked_identifier=summary.masked_identifier,
        status=_STATUS[summary.status],
        assurance_level=_assurance(summary.assurance_level),
    )


def citizen_pb(citizen: Citizen) -> identity_pb2.Citizen:
    """``Citizen`` message."""
    return identity_pb2.Citizen(
        id=citizen.id,
        name=citizen.name,
        masked_id_number=citizen.masked_id_number,
        birth_date=citizen.birth_date.isoformat(),
        sex=_SEX[citizen.sex],
        region_code=citizen.region_code,
        masked_phone=citizen.masked_phone,
        email=citizen.email,
        status=_STATUS[citizen.status],
        status_reason=citizen.status_reason,
        assurance_level=_assurance(citizen.assurance_level),
        assurance_source=_SOURCE[citizen.assurance_source],
        created_at=timestamp_pb(citizen.created_at),
        updated_at=timestamp_pb(citizen.updated_at),
    )


def legal_person_pb(lp: LegalPerson) -> identity_pb2.LegalPerson:
    """``LegalPerson`` message."""
    return identity_pb2.LegalPerson(
        id=lp.id,
        uscc=lp.uscc,
        name=lp.name,
        kind=_LP_KIND[lp.kind],
        registration_authority_code=lp.registration_authority,
        institution_type_code=lp.institution_type,
        region_code=lp.region_code,
        uscc_allow_listed=lp.uscc_allow_listed,
        legal_representative=summary_pb(lp.legal_representative),
        status=_STATUS[lp.status],
        status_reason=lp.status_reason,
        assurance_level=_assurance(lp.assurance_level),
        assurance_source=_SOURCE[lp.assurance_source],
        created_at=timestamp_pb(lp.created_at),
        updated_at=timestamp_pb(lp.updated_at),
    )


def staff_pb(staff: Staff) -> identity_pb2.Staff:
    """``Staff`` message."""
    return identity_pb2.Staff(
        id=staff.id,
        name=staff.name,
        department_code=staff.department_code,
        department_name=staff.department_name,
        employee_number=staff.employee_number,
        roles=list(staff.roles),
        system_accounts=[
            identity_pb2.SystemAccount(
                system_id=a.system_id, mode=_MODE[a.mode], local_account_id=a.local_account_id
            )
            for a in staff.system_accounts
        ],
        citizen=_opt_summary_pb(staff.citizen),
        masked_phone=staff.masked_phone,
        email=staff.email,
        status=_STATUS[staff.status],
        status_reason=staff.status_reason,
        created_at=timestamp_pb(staff.created_at),
        updated_at=timestamp_pb(staff.updated_at),
    )


def grant_pb(grant: AgentGrant) -> identity_pb2.AgentGrant:
    """``AgentGrant`` message."""
    return identity_pb2.AgentGrant(
        id=grant.id,
        legal_person=summary_pb(grant.legal_person),
        agent=summary_pb(grant.agent),
        scopes=list(grant.scopes),
        valid_from=timestamp_pb(grant.valid_from),
        valid_until=timestamp_pb(grant.valid_until),
        status=_GRANT[grant.status],
        granted_by=_opt_summary_pb(grant.granted_by),
        granted_at=timestamp_pb(grant.granted_at),
        revoked_by=_opt_summary_pb(grant.revoked_by),
        revoked_at=timestamp_pb(grant.revoked_at),
        revoke_reason=grant.revoke_reason,
    )


_SERVICE_STATUS = {
    ServiceStatus.ACTIVE: identity_pb2.SERVICE_IDENTITY_STATUS_ACTIVE,
    ServiceStatus.DISABLED: identity_pb2.SERVICE_IDENTITY_STATUS_DISABLED,
}


def service_identity_pb(identity: ServiceIdentity) -> identity_pb2.ServiceIdentity:
    """``ServiceIdentity`` message."""
    return identity_pb2.ServiceIdentity(
        name=identity.name,
        roles=list(identity.roles),
        status=_SERVICE_STATUS[identity.status],
        status_reason=identity.status_reason,
        created_by=identity.created_by,
        created_at=timestamp_pb(identity.created_at),
        updated_by=identity.updated_by,
        updated_at=timestamp_pb(identity.updated_at),
    )


# --- the servicer -------------------------------------------------------------------------------

Context = Any  # grpc.aio.ServicerContext; unused by the adapter beyond the signature


def _citizen_registered(
    servicer: IdentityServicer, effects: Sequence[ClaimEffect]
) -> identity_pb2.RegisterCitizenResponse | None:
    """A lost RegisterCitizen answer: the citizen it registered (read as the caller)."""
    citizen_id = acted_on(effects, "identity.citizen.register", "citizen:")
    if citizen_id is None:
        return None
    citizen = servicer.registry.get_citizen(current_principal(), IdentityRef(id=citizen_id))
    return identity_pb2.RegisterCitizenResponse(citizen=citizen_pb(citizen))


def _legal_person_registered(
    servicer: IdentityServicer, effects: Sequence[ClaimEffect]
) -> identity_pb2.RegisterLegalPersonResponse | None:
    """A lost RegisterLegalPerson answer: the legal person it registered (read as the caller)."""
    lp_id = acted_on(effects, "identity.legal_person.register", "legal_person:")
    if lp_id is None:
        return None
    lp = servicer.registry.get_legal_person(current_principal(), IdentityRef(id=lp_id))
    return identity_pb2.RegisterLegalPersonResponse(legal_person=legal_person_pb(lp))


def _staff_registered(
    servicer: IdentityServicer, effects: Sequence[ClaimEffect]
) -> identity_pb2.RegisterStaffResponse | None:
    """A lost RegisterStaff answer: the staff member it registered (read as the caller)."""
    staff_id = acted_on(effects, "identity.staff.register", "staff:")
    if staff_id is None:
        return None
    staff = servicer.registry.get_staff(current_principal(), IdentityRef(id=staff_id))
    return identity_pb2.RegisterStaffResponse(staff=staff_pb(staff))


def _service_after(response: Callable[..., Any]) -> Callable[..., Any]:
    """The rebuilder of a service identity change's lost answer: ``response`` with the service
    identity it registered or changed, as it stands now (read as the caller)."""

    def rebuild(servicer: IdentityServicer, effects: Sequence[ClaimEffect]) -> Any:
        name = acted_on(effects, "identity.service.", "service:")
        if name is None:
            return None
        identity = servicer.services.get(current_principal(), name)
        return response(service_identity=service_identity_pb(identity))

    return rebuild


def _agent_grant_after(action: str, response: Callable[..., Any]) -> Callable[..., Any]:
    """The rebuilder of an agent grant change's lost answer: ``response`` with the grant its
    one ``action`` record names, as the grant stands now (read as the caller)."""

    def rebuild(servicer: IdentityServicer, effects: Sequence[ClaimEffect]) -> Any:
        grant_id = acted_on(effects, action, "agent_grant:")
        if grant_id is None:
            return None
        return response(
            grant=grant_pb(servicer.registry.get_agent_grant(current_principal(), grant_id))
        )

    return rebuild


def _status_updated(
    servicer: IdentityServicer, effects: Sequence[ClaimEffect]
) -> identity_pb2.UpdateIdentityStatusResponse | None:
    """A lost UpdateIdentityStatus answer: the identity its one status record (suspend,
    reinstate or cancel) names, as it stands now (read as the caller); the records a
    cancellation's listeners wrote (revoked seals) are other packages' actions."""
    found = {
        identity
        for action in StatusAction
        for kind in IdentityKind
        for identity in all_acted_on(effects, f"identity.{action.value}", f"{kind.value}:")
    }
    if len(found) != 1:
        return None
    identity_id = found.pop()
    summary = servicer.registry.get_identity(current_principal(), IdentityRef(id=identity_id))
    return identity_pb2.UpdateIdentityStatusResponse(identity=summary_pb(summary))


class IdentityServicer(OidcClientRpcs, identity_pb2_grpc.IdentityServiceServicer):
    """IdentityService over one :class:`IdentityRegistry`, plus the OIDC client RPCs."""

    def __init__(self, registry: IdentityRegistry, oidc_platform: Platform | None = None) -> None:
        self.registry = registry
        self.services = ServiceRegistry(registry.db)
        if oidc_platform is not None:
            self.oidc_platform = oidc_platform

    @rebuilt_from(_citizen_registered)
    async def RegisterCitizen(
        self, request: identity_pb2.RegisterCitizenRequest, context: Context
    ) -> identity_pb2.RegisterCitizenResponse:
        """Register a citizen (identity-registrar)."""
        citizen = await run_sync(
            self.registry.register_citizen,
            current_principal(),
            name=request.name,
            id_number=request.id_number,
            phone=request.phone,
            email=request.email,
        )
        return identity_pb2.RegisterCitizenResponse(citizen=citizen_pb(citizen))

    @rebuilt_from(_legal_person_registered)
    async def RegisterLegalPerson(
        self, request: identity_pb2.RegisterLegalPersonRequest, context: Context
    ) -> identity_pb2.RegisterLegalPersonResponse:
        """Register a legal person (identity-registrar)."""
        lp = await run_sync(
            self.registry.register_legal_person,
            current_principal(),
            uscc=request.uscc,
            name=request.name,
            legal_representative=parse_ref(request.legal_representative),
        )
        return identity_pb2.RegisterLegalPersonResponse(legal_person=legal_person_pb(lp))

    @rebuilt_from(_staff_registered)
    async def RegisterStaff(
        self, request: identity_pb2.RegisterStaffRequest, context: Context
    ) -> identity_pb2.RegisterStaffResponse:
        """Register a staff member (identity-registrar; admin for privileged roles)."""
        accounts = [
            SystemAccount(
                system_id=a.system_id.strip(),
                mode=_enum_in(f"system_accounts[{i}].mode", a.mode, _MODE_IN, optional=False),
                local_account_id=a.local_account_id.strip(),
            )
            for i, a in enumerate(request.system_accounts)
        ]
        staff = await run_sync(
            self.registry.register_staff,
            current_principal(),
            name=request.name,
            department_code=request.department_code,
            department_name=request.department_name,
            employee_number=request.employee_number,
            roles=list(request.roles),
            system_accounts=accounts,
            citizen=parse_ref(request.citizen) if request.HasField("citizen") else None,
            phone=request.phone,
            email=request.email,
        )
        return identity_pb2.RegisterStaffResponse(staff=staff_pb(staff))

    async def GetCitizen(
        self, request: identity_pb2.GetCitizenRequest, context: Context
    ) -> identity_pb2.GetCitizenResponse:
        """One citizen, masked (verifier, identity-registrar, or the citizen)."""
        citizen = await run_sync(
            self.registry.get_citizen, current_principal(), parse_ref(request.citizen)
        )
        return identity_pb2.GetCitizenResponse(citizen=citizen_pb(citizen))

    async def GetLegalPerson(
        self, request: identity_pb2.GetLegalPersonRequest, context: Context
    ) -> identity_pb2.GetLegalPersonResponse:
        """One legal person (verifier or identity-registrar)."""
        lp = await run_sync(
            self.registry.get_legal_person, current_principal(), parse_ref(request.legal_person)
        )
        return identity_pb2.GetLegalPersonResponse(legal_person=legal_person_pb(lp))

    async def GetStaff(
        self, request: identity_pb2.GetStaffRequest, context: Context
    ) -> identity_pb2.GetStaffResponse:
        """One staff member (verifier or identity-registrar)."""
        staff = await run_sync(
            self.registry.get_staff, current_principal(), parse_ref(request.staff)
        )
        return identity_pb2.GetStaffResponse(staff=staff_pb(staff))

    async def SearchIdentities(
        self, request: identity_pb2.SearchIdentitiesRequest, context: Context
    ) -> identity_pb2.SearchIdentitiesResponse:
        """Paged search by name prefix, kind, status, department."""
        page = await run_sync(
            self.registry.search,
            current_principal(),
            name_prefix=request.name_prefix,
            kind=_enum_in("kind", request.kind, _KIND_IN, optional=True),
            status=_enum_in("status", request.status, _STATUS_IN, optional=True),
            department_code=request.department_code,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_pb2.SearchIdentitiesResponse(
            identities=[summary_pb(s) for s in page.items], next_page_token=page.next_page_token
        )

    @rebuilt_from(_status_updated)
    async def UpdateIdentityStatus(
        self, request: identity_pb2.UpdateIdentityStatusRequest, context: Context
    ) -> identity_pb2.UpdateIdentityStatusResponse:
        """Suspend, reinstate or cancel (identity-registrar)."""
        action = _enum_in("action", request.action, _ACTION_IN, optional=False)
        summary = await run_sync(
            self.registry.update_status,
            current_principal(),
            parse_ref(request.identity),
            action,
            request.reason,
        )
        return identity_pb2.UpdateIdentityStatusResponse(identity=summary_pb(summary))

    async def CheckCitizen(
        self, request: identity_pb2.CheckCitizenRequest, context: Context
    ) -> identity_pb2.CheckCitizenResponse:
        """MATCH / MISMATCH / NOT_FOUND, status and assurance (verifier).

        On SQLite the look-up is a local indexed read of tens of microseconds, less than the
        hand-off to the thread pool costs, so it runs inline; on PostgreSQL (a network round
        trip) it is offloaded like every other call.
        """
        if self.registry.reader.is_local:
            check = self.registry.check_citizen(
                current_principal(), name=request.name, id_number=request.id_number
            )
        else:
            check = await run_sync(
                self.registry.check_citizen,
                current_principal(),
                name=request.name,
                id_number=request.id_number,
            )
        return identity_pb2.CheckCitizenResponse(
            result=_RESULT[check.result],
            status=_STATUS[check.status] if check.status else _NO_STATUS,
            assurance_level=_assurance(check.assurance_level),
        )

    async def CheckLegalPerson(
        self, request: identity_pb2.CheckLegalPersonRequest, context: Context
    ) -> identity_pb2.CheckLegalPersonResponse:
        """USCC + name check, and the citizen's relation to the legal person (verifier)."""
        check = await run_sync(
            self.registry.check_legal_person,
            current_principal(),
            uscc=request.uscc,
            name=request.name,
            citizen_id_number=request.citizen_id_number,
            scope=request.scope,
        )
        return identity_pb2.CheckLegalPersonResponse(
            result=_RESULT[check.result],
            status=_STATUS[check.status] if check.status else _NO_STATUS,
            assurance_level=_assurance(check.assurance_level),
            citizen_is_legal_representative=check.citizen_is_legal_representative,
            citizen_is_agent=check.citizen_is_agent,
        )

    @rebuilt_from(_agent_grant_after("identity.agent.grant", identity_pb2.GrantAgentResponse))
    async def GrantAgent(
        self, request: identity_pb2.GrantAgentRequest, context: Context
    ) -> identity_pb2.GrantAgentResponse:
        """Authorise a citizen to act for a legal person."""
        grant = await run_sync(
            self.registry.grant_agent,
            current_principal(),
            legal_person=parse_ref(request.legal_person),
            agent=parse_ref(request.agent),
            scopes=list(request.scopes),
            valid_from=time_in(request, "valid_from"),
            valid_until=time_in(request, "valid_until"),
        )
        return identity_pb2.GrantAgentResponse(grant=grant_pb(grant))

    @rebuilt_from(_agent_grant_after("identity.agent.revoke", identity_pb2.RevokeAgentResponse))
    async def RevokeAgent(
        self, request: identity_pb2.RevokeAgentRequest, context: Context
    ) -> identity_pb2.RevokeAgentResponse:
        """Revoke an agent grant with a reason."""
        grant = await run_sync(
            self.registry.revoke_agent,
            current_principal(),
            grant_id=request.grant_id,
            reason=request.reason,
        )
        return identity_pb2.RevokeAgentResponse(grant=grant_pb(grant))

    async def ListAgents(
        self, request: identity_pb2.ListAgentsRequest, context: Context
    ) -> identity_pb2.ListAgentsResponse:
        """Agent grants of a legal person and/or to a citizen, newest first."""
        page = await run_sync(
            self.registry.list_agents,
            current_principal(),
            legal_person=parse_ref(request.legal_person),
            agent=parse_ref(request.agent),
            scope=request.scope,
            include_inactive=request.include_inactive,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_pb2.ListAgentsResponse(
            grants=[grant_pb(g) for g in page.items], next_page_token=page.next_page_token
        )

    # --- service identities (admin) ------------------------------------------------------

    @rebuilt_from(_service_after(identity_pb2.RegisterServiceIdentityResponse))
    async def RegisterServiceIdentity(
        self, request: identity_pb2.RegisterServiceIdentityRequest, context: Context
    ) -> identity_pb2.RegisterServiceIdentityResponse:
        """Register a business system calling over mTLS, with its roles (admin)."""
        identity = await run_sync(
            self.services.register, current_principal(), request.name, list(request.roles)
        )
        return identity_pb2.RegisterServiceIdentityResponse(
            service_identity=service_identity_pb(identity)
        )

    async def GetServiceIdentity(
        self, request: identity_pb2.GetServiceIdentityRequest, context: Context
    ) -> identity_pb2.GetServiceIdentityResponse:
        """One service identity (admin)."""
        identity = await run_sync(self.services.get, current_principal(), request.name)
        return identity_pb2.GetServiceIdentityResponse(
            service_identity=service_identity_pb(identity)
        )

    async def ListServiceIdentities(
        self, request: identity_pb2.ListServiceIdentitiesRequest, context: Context
    ) -> identity_pb2.ListServiceIdentitiesResponse:
        """Service identities by name, paged (admin)."""
        page = await run_sync(
            self.services.list,
            current_principal(),
            include_disabled=not request.active_only,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return identity_pb2.ListServiceIdentitiesResponse(
            service_identities=[service_identity_pb(i) for i in page.items],
            next_page_token=page.next_page_token,
        )

    @rebuilt_from(_service_after(identity_pb2.UpdateServiceIdentityRolesResponse))
    async def UpdateServiceIdentityRoles(
        self, request: identity_pb2.UpdateServiceIdentityRolesRequest, context: Context
    ) -> identity_pb2.UpdateServiceIdentityRolesResponse:
        """Replace a service identity's roles (admin)."""
        identity = await run_sync(
            self.services.update_roles, current_principal(), request.name, list(request.roles)
        )
        return identity_pb2.UpdateServiceIdentityRolesResponse(
            service_identity=service_identity_pb(identity)
        )

    @rebuilt_from(_service_after(identity_pb2.DisableServiceIdentityResponse))
    async def DisableServiceIdentity(
        self, request: identity_pb2.DisableServiceIdentityRequest, context: Context
    ) -> identity_pb2.DisableServiceIdentityResponse:
        """Disable a service identity, with a reason (admin)."""
        identity = await run_sync(
            self.services.set_status,
            current_principal(),
            request.name,
            ServiceStatus.DISABLED,
            request.reason,
        )
        return identity_pb2.DisableServiceIdentityResponse(
            service_identity=service_identity_pb(identity)
        )

    @rebuilt_from(_service_after(identity_pb2.EnableServiceIdentityResponse))
    async def EnableServiceIdentity(
        self, request: identity_pb2.EnableServiceIdentityRequest, context: Context
    ) -> identity_pb2.EnableServiceIdentityResponse:
        """Re-enable a service identity, with a reason (admin)."""
        identity = await run_sync(
            self.services.set_status,
            current_principal(),
            request.name,
            ServiceStatus.ACTIVE,
            request.reason,
        )
        return identity_pb2.EnableServiceIdentityResponse(
            service_identity=service_identity_pb(identity)
        )


def servicer(platform: IdentityPlatform) -> identity_pb2_grpc.IdentityServiceServicer:
    """The IdentityService servicer for a platform (keys derived once, allow-lists loaded)."""
    if isinstance(platform, Platform):
        return IdentityServicer(identity_registry_for(platform), platform)
    registry = IdentityRegistry.open(
        platform.db,
        platform.master_key,
        data_dir=platform.settings.data_dir,
        registrar_grantable_roles=platform.settings.registrar_grantable_roles,
        at_rest_scheme=platform.settings.at_rest_scheme,
    )
    return IdentityServicer(registry, platform if isinstance(platform, Platform) else None)
