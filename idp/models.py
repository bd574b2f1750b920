"""Tables of the identity registry (all prefixed ``idp_``).

Every identity has one row in ``idp_identities`` (kind, name, status, assurance — what searches,
status changes and summaries need) and one row in its kind's table keyed by the same id.
Resident ID numbers and phones are stored only as AES-GCM ciphertexts plus keyed blind indexes
(see :mod:`idp.pii`); base-data tables hold blind indexes, never numbers.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from govtrust.db import Base

NAME_LENGTH = 200
REASON_LENGTH = 500
EMAIL_LENGTH = 254


class IdentityRow(Base):
    """What every identity has: kind, display name, status and assurance."""

    __tablename__ = "idp_identities"
    __table_args__ = (Index("ix_idp_identities_name_key_id", "name_key", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # Case-folded, NFKC-normalised name for prefix search and name matching.
    name_key: Mapped[str] = mapped_column(String(NAME_LENGTH))
    masked_identifier: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(String(REASON_LENGTH))
    assurance_level: Mapped[int] = mapped_column(SmallInteger)
    assurance_source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CitizenRow(Base):
    """A natural person; ID number and phone encrypted, looked up by blind index."""

    __tablename__ = "idp_citizens"

    id: Mapped[str] = mapped_column(ForeignKey("idp_identities.id"), primary_key=True)
    id_number_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    id_number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(8))
    region_code: Mapped[str] = mapped_column(String(6))
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    masked_phone: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))


class LegalPersonRow(Base):
    """A legal person identified by its USCC (public, stored in clear)."""

    __tablename__ = "idp_legal_persons"

    id: Mapped[str] = mapped_column(ForeignKey("idp_identities.id"), primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    legal_person_kind: Mapped[str] = mapped_column(String(32))
    registration_authority: Mapped[str] = mapped_column(String(1))
    institution_type: Mapped[str] = mapped_column(String(1))
    region_code: Mapped[str] = mapped_column(String(6))
    uscc_allow_listed: Mapped[bool] = mapped_column(Boolean)
    legal_representative_id: Mapped[str] = mapped_column(ForeignKey("idp_citizens.id"), index=True)


class StaffRow(Base):
    """A government worker: department, employee number, govtrust roles."""

    __tablename__ = "idp_staff"
    __table_args__ = (UniqueConstraint("department_code", "employee_number"),)

    id: Mapped[str] = mapped_column(ForeignKey("idp_identities.id"), primary_key=True)
    department_code: Mapped[str] = mapped_column(String(64), index=True)
    department_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    employee_number: Mapped[str] = mapped_column(String(64))
    # Space-separated, sorted govtrust roles.
    roles: Mapped[str] = mapped_column(Text)
    citizen_id: Mapped[str | None] = mapped_column(ForeignKey("idp_citizens.id"), index=True)
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), index=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    masked_phone: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))


class StaffAccountRow(Base):
    """A staff member's account in one business system (unified or mapped mode)."""

    __tablename__ = "idp_staff_accounts"
    __table_args__ = (
        UniqueConstraint("staff_id", "system_id"),
        # Mapped mode: one local account belongs to one person. NULL (unified) never collides.
        UniqueConstraint("system_id", "local_account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("idp_staff.id"), index=True)
    system_id: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))
    local_account_id: Mapped[str | None] = mapped_column(String(128))


class AgentGrantRow(Base):
    """A legal person's authorisation of a citizen to act for it (经办人授权)."""

    __tablename__ = "idp_agent_grants"
    __table_args__ = (Index("ix_idp_agent_grants_pair", "legal_person_id", "agent_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    legal_person_id: Mapped[str] = mapped_column(ForeignKey("idp_legal_persons.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("idp_citizens.id"), index=True)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The citizen who granted it (representative or agent), NULL when a registrar recorded it.
    granted_by_id: Mapped[str | None] = mapped_column(ForeignKey("idp_citizens.id"))
    granted_by_actor: Mapped[str] = mapped_column(String(256))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by_id: Mapped[str | None] = mapped_column(ForeignKey("idp_citizens.id"))
    revoked_by_actor: Mapped[str | None] = mapped_column(String(256))
    revoke_reason: Mapped[str] = mapped_column(String(REASON_LENGTH))


class AgentGrantScopeRow(Base):
    """One scope of an agent grant."""

    __tablename__ = "idp_agent_grant_scopes"

    grant_id: Mapped[str] = mapped_column(ForeignKey("idp_agent_grants.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)


class BasePopulationRow(Base):
    """One record of the population base data (人口库): blind index of the ID number + name."""

    __tablename__ = "idp_base_population"

    id_number_index: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    name_key: Mapped[str] = mapped_column(String(NAME_LENGTH))
    source: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BaseLegalPersonRow(Base):
    """One record of the legal-person base data (法人库)."""

    __tablename__ = "idp_base_legal_persons"

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    name_key: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # Blind index of the legal representative's ID number, when the source has it.
    legal_representative_index: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    source: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServiceIdentityRow(Base):
    """A business system that calls govtrust over mTLS: its name (the ``system_id`` its service
    certificate names) and the govtrust roles it holds while active."""

    __tablename__ = "idp_service_identities"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Space-separated, sorted govtrust roles.
    roles: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # active | disabled
    status_reason: Mapped[str] = mapped_column(String(REASON_LENGTH))
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
