"""Tables of the seal system: seals, use grants, the seal history, and the seal maker's key.

Identities (owner, applicant, grantee) are referenced by registry id without a foreign key, so
this migration depends only on the platform's base revision (see ``0005_eseals``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from govtrust.db import Base

REASON_LENGTH = 1000


class SealRow(Base):
    """One seal, in whatever state; rows are never deleted (destroyed seals keep their record).

    ``official_owner`` / ``business_slot`` are set only while a seal is live (not rejected,
    revoked or destroyed); their unique constraints enforce one official seal per owner and
    one live business seal per number in the database itself.
    """

    __tablename__ = "seal_seals"
    # the listings' order (newest first) read from an index, per state, per owner and overall:
    # a work queue's first page reads 26 index entries instead of sorting the whole state
    __table_args__ = (
        Index("ix_seal_seals_status_applied", "status", "applied_at", "id"),
        Index("ix_seal_seals_owner_applied", "owner_id", "applied_at", "id"),
        Index("ix_seal_seals_applied", "applied_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_name: Mapped[str] = mapped_column(String(256))
    owner_uscc: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    business_number: Mapped[str] = mapped_column(String(16), default="")
    taxpayer_number: Mapped[str] = mapped_column(String(32), default="")
    named_person_id: Mapped[str] = mapped_column(String(64), default="")
    named_person_name: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    status_reason: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")
    shape: Mapped[str] = mapped_column(String(16))
    width_mm: Mapped[int] = mapped_column(Integer)
    height_mm: Mapped[int] = mapped_column(Integer)
    key_algorithm: Mapped[str] = mapped_column(String(32), default="")
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    certificate_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    seal_structure: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # An SM2 seal's P-256 key and certificate for PAdES (migration 0012); None for ECDSA seals,
    # whose one key serves both.
    pdf_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdf_certificate_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    pdf_certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    filing_number: Mapped[str] = mapped_column(String(64), default="")
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    applicant_id: Mapped[str] = mapped_column(String(64), default="")
    applicant_actor: Mapped[str] = mapped_column(String(256))
    apply_reason: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    made_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    filed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replaces_seal_id: Mapped[str] = mapped_column(String(32), default="")
    replaced_by_seal_id: Mapped[str] = mapped_column(String(32), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    official_owner: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    business_slot: Mapped[str | None] = mapped_column(String(96), nullable=True, unique=True)
    history_length: Mapped[int] = mapped_column(Integer, default=0)


class SealGrantRow(Base):
    """A right to use a seal, given to a person for a window, optionally per document kind."""

    __tablename__ = "seal_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seal_id: Mapped[str] = mapped_column(ForeignKey("seal_seals.id"), index=True)
    grantee_id: Mapped[str] = mapped_column(String(64), index=True)
    document_kinds: Mapped[str] = mapped_column(Text, default="")  # comma-separated, "" = any
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    granted_by: Mapped[str] = mapped_column(String(256))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str] = mapped_column(String(256), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoke_reason: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")


class SealEventRow(Base):
    """One event of a seal's history (transition, grant change or use), with its audit record."""

    __tablename__ = "seal_events"
    __table_args__ = (UniqueConstraint("seal_id", "sequence"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    seal_id: Mapped[str] = mapped_column(ForeignKey("seal_seals.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str] = mapped_column(String(16), default="")
    to_status: Mapped[str] = mapped_column(String(16), default="")
    actor_id: Mapped[str] = mapped_column(String(64), default="")
    principal: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    digest_algorithm: Mapped[str] = mapped_column(String(16), default="")
    digest: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    document_kind: Mapped[str] = mapped_column(String(64), default="")
    related_id: Mapped[str] = mapped_column(String(64), default="")
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class SealMakerRow(Base):
    """The seal maker's (制章者) signing key and certificate; one row per maker name."""

    __tablename__ = "seal_makers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    key_algorithm: Mapped[str] = mapped_column(String(32))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
