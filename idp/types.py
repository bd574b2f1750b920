"""Enumerations and result types of the identity registry (no database, no gRPC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, TypeVar

from idp.identifiers import LegalPersonKind, Sex

T = TypeVar("T")


class IdentityKind(StrEnum):
    """Citizen, legal person or staff member."""

    CITIZEN = "citizen"
    LEGAL_PERSON = "legal_person"
    STAFF = "staff"


class IdentityStatus(StrEnum):
    """Lifecycle of an identity: active ⇄ suspended → cancelled."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"


class StatusAction(StrEnum):
    """A status change asked for by a registrar."""

    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    CANCEL = "cancel"


class AssuranceSource(StrEnum):
    """How an identity reached its assurance level (``NONE`` for staff)."""

    NONE = ""
    SELF_REGISTERED = "self_registered"
    BASE_DATA = "base_data"
    IN_PERSON = "in_person"
    CERTIFICATE = "certificate"


class ConnectionMode(StrEnum):
    """How a business system connects its staff accounts (unified or mapped)."""

    UNIFIED = "unified"
    MAPPED = "mapped"


class CheckResult(StrEnum):
    """Outcome of an identity check."""

    MATCH = "match"
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"


class GrantStatus(StrEnum):
    """State of an agent grant at a given instant."""

    ACTIVE = "active"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


# Agent scopes a legal person can grant (DESIGN.md: seals, licences, certificates).
AGENT_SCOPES = frozenset(
    {"seal.use", "seal.apply", "licence.apply", "certificate.apply", "agent.manage"}
)
AGENT_MANAGE = "agent.manage"


@dataclass(frozen=True)
class IdentityRef:
    """One way of naming an identity: exactly one of the fields is set."""

    id: str | None = None
    resident_id_number: str | None = None
    uscc: str | None = None
    staff: tuple[str, str] | None = None  # (department_code, employee_number)

    @property
    def is_empty(self) -> bool:
        return (
            self.id is None
            and self.resident_id_number is None
            and self.uscc is None
            and self.staff is None
        )


@dataclass(frozen=True)
class IdentitySummary:
    """A privacy-safe description of an identity."""

    id: str
    kind: IdentityKind
    display_name: str
    masked_identifier: str
    status: IdentityStatus
    assurance_level: int


@dataclass(frozen=True)
class Citizen:
    """A citizen as the registry returns it (ID number and phone masked)."""

    id: str
    name: str
    masked_id_number: str
    birth_date: date
    sex: Sex
    region_code: str
    masked_phone: str
    email: str
    status: IdentityStatus
    status_reason: str
    assurance_level: int
    assurance_source: AssuranceSource
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LegalPerson:
    """A legal person, with its legal representative."""

    id: str
    uscc: str
    name: str
    kind: LegalPersonKind
    registration_authority: str
    institution_type: str
    region_code: str
    uscc_allow_listed: bool
    legal_representative: IdentitySummary
    status: IdentityStatus
    status_reason: str
    assurance_level: int
    assurance_source: AssuranceSource
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SystemAccount:
    """A staff member's account in one business system."""

    system_id: str
    mode: ConnectionMode
    local_account_id: str = ""


@dataclass(frozen=True)
class Staff:
    """A government staff member."""

    id: str
    name: str
    department_code: str
    department_name: str
    employee_number: str
    roles: tuple[str, ...]
    system_accounts: tuple[SystemAccount, ...]
    citizen: IdentitySummary | None
    masked_phone: str
    email: str
    status: IdentityStatus
    status_reason: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AgentGrant:
    """An authorisation for a citizen to act for a legal person."""

    id: str
    legal_person: IdentitySummary
    agent: IdentitySummary
    scopes: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None
    status: GrantStatus
    granted_by: IdentitySummary | None
    granted_by_actor: str
    granted_at: datetime
    revoked_by: IdentitySummary | None
    revoked_by_actor: str | None
    revoked_at: datetime | None
    revoke_reason: str


@dataclass(frozen=True)
class CitizenCheck:
    """Answer of CheckCitizen: status and assurance only on MATCH."""

    result: CheckResult
    status: IdentityStatus | None = None
    assurance_level: int | None = None


@dataclass(frozen=True)
class LegalPersonCheck:
    """Answer of CheckLegalPerson, plus the asked citizen's relation to it."""

    result: CheckResult
    status: IdentityStatus | None = None
    assurance_level: int | None = None
    citizen_is_legal_representative: bool = False
    citizen_is_agent: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the token of the next (empty on the last page)."""

    items: tuple[T, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class ImportReport:
    """Outcome of a base-data import."""

    imported: int
    skipped: tuple[str, ...]  # "line N: field: reason" (masked, never a number)
    upgraded: int  # registered identities raised to assurance 2 by this import
