"""Tables of the e-licence package: the catalogue, issued licences, their annotations (加注),
the departments' IssueLicense idempotency keys, the source keys of bulk imports, per-issuer
status lists and the holders' access grants to third parties.

``licences.signed_data``, ``qr_payload``, ``document_pdf`` and ``document_ofd`` hold ciphertexts
(:mod:`license.vault`, bound to the identifier); access codes are stored as SHA-256 only.

Structured catalogue parts (field schema, validity rules, layout) are stored as canonical JSON
text so the same schema works on SQLite and PostgreSQL; :mod:`license.catalogue` owns their shape.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Date,
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


class LicenceTypeRow(Base):
    """One licence type of the catalogue (证照目录): its current revision (every revision,
    this one included, is kept in :class:`LicenceTypeRevisionRow`)."""

    __tablename__ = "licence_types"

    type_code: Mapped[str] = mapped_column(String(21), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128))
    defining_authority: Mapped[str] = mapped_column(String(256))
    defining_authority_code: Mapped[str] = mapped_column(String(18))
    issuing_departments: Mapped[str] = mapped_column(Text)  # JSON list of USCCs
    holder_code_types: Mapped[str] = mapped_column(String(32))  # JSON list: "001", "111"
    field_schema: Mapped[str] = mapped_column(Text)  # JSON list of field specs
    validity: Mapped[str] = mapped_column(Text)  # JSON validity rules
    layout: Mapped[str] = mapped_column(Text)  # JSON layout description
    document_formats: Mapped[str] = mapped_column(String(16), server_default="pdf")  # pdf,ofd
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # of this revision
    revision: Mapped[int] = mapped_column(Integer, server_default="1")


class LicenceTypeRevisionRow(Base):
    """One revision of a licence type's definition, as it was defined (the same JSON columns
    as :class:`LicenceTypeRow`); licences name the revision they were issued under."""

    __tablename__ = "licence_type_revisions"

    type_code: Mapped[str] = mapped_column(
        String(21), ForeignKey("licence_types.type_code"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128))
    defining_authority: Mapped[str] = mapped_column(String(256))
    defining_authority_code: Mapped[str] = mapped_column(String(18))
    issuing_departments: Mapped[str] = mapped_column(Text)
    holder_code_types: Mapped[str] = mapped_column(String(32))
    field_schema: Mapped[str] = mapped_column(Text)
    validity: Mapped[str] = mapped_column(Text)
    layout: Mapped[str] = mapped_column(Text)
    document_formats: Mapped[str] = mapped_column(String(16), server_default="pdf")
    defined_by: Mapped[str] = mapped_column(String(200))  # principal actor
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LicenceRow(Base):
    """One version of one issued licence; a new version is a new row linked to the old."""

    __tablename__ = "licences"
    __table_args__ = (UniqueConstraint("issuer_code", "status_index"),)

    identifier: Mapped[str] = mapped_column(String(160), primary_key=True)
    type_code: Mapped[str] = mapped_column(
        String(21), ForeignKey("licence_types.type_code"), index=True
    )
    type_revision: Mapped[int] = mapped_column(Integer, server_default="1")
    issuer_code: Mapped[str] = mapped_column(String(18), index=True)
    serial: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    licence_number: Mapped[str] = mapped_column(String(128))  # ZZBH
    holder_identity_id: Mapped[str] = mapped_column(String(64), index=True)
    holder_code_type: Mapped[str] = mapped_column(String(3))  # 111 resident ID, 001 USCC
    status: Mapped[str] = mapped_column(String(16))  # valid | suspended | revoked
    status_reason: Mapped[str] = mapped_column(String(1000))
    status_index: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    previous_identifier: Mapped[str | None] = mapped_column(String(160), nullable=True)
    superseded_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    signing_key_id: Mapped[str] = mapped_column(String(64))
    signed_data: Mapped[str] = mapped_column(Text)  # compact JWS, encrypted (license.vault)
    qr_payload: Mapped[str] = mapped_column(Text)  # GT1: payload, encrypted
    document_pdf: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    document_ofd: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LicenceAnnotationRow(Base):
    """The annotation (加注件) that produced one licence version (2, 3, ...): its text, the
    fields that changed, who and when. A version's annotations are those of its chain (same
    issuer, type and serial) up to its version."""

    __tablename__ = "licence_annotations"
    __table_args__ = (Index("ix_licence_annotations_chain", "issuer_code", "serial"),)

    identifier: Mapped[str] = mapped_column(
        String(160), ForeignKey("licences.identifier"), primary_key=True
    )
    previous_identifier: Mapped[str] = mapped_column(String(160))
    issuer_code: Mapped[str] = mapped_column(String(18))
    type_code: Mapped[str] = mapped_column(String(21))
    serial: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(1000))
    changed_fields: Mapped[str] = mapped_column(Text)  # JSON list of KZ_* names (and CZZT, ...)
    annotated_by: Mapped[str] = mapped_column(String(200))  # principal actor
    annotated_by_id: Mapped[str] = mapped_column(String(64))  # acting citizen id, or ""
    annotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LicenceIssueRequestRow(Base):
    """An IssueLicense idempotency key (``request_id``) of one issuing department.

    Claimed, with the licence identifier it will issue, in the transaction that reserves the
    status-list index; ``completed_at`` is set in the transaction that stores the licence. The
    primary key makes concurrent duplicates collide: only one claim (and one index) commits."""

    __tablename__ = "licence_issue_requests"

    issuer_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))  # of the canonical request body
    identifier: Mapped[str] = mapped_column(String(160))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the claiming process (govtrust.lease member id, "" when it is none) and the claim's
    # random token, replaced by a takeover and checked by the completing write (a fence)
    holder: Mapped[str] = mapped_column(String(200), server_default="", default="")
    claim_token: Mapped[str] = mapped_column(String(32), server_default="", default="")


class LicenceSourceRow(Base):
    """A row of a bulk import (存量证照电子化) that was issued: the department's source key for
    it (the paper licence's number in the old register, say) and the licence it became.

    Written in the transaction that stores the licence, so a source key is issued exactly once:
    a later import of the same key answers this identifier; the primary key makes concurrent
    imports of one key collide. ``request_sha256`` is the row's body as issuance read it
    (:func:`license.issuance.request_sha256`): the same key with another body is refused."""

    __tablename__ = "licence_sources"

    issuer_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    source_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(160), ForeignKey("licences.identifier"))
    request_sha256: Mapped[str] = mapped_column(String(64))
    imported_by: Mapped[str] = mapped_column(String(200))  # principal actor
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LicenceStatusListRow(Base):
    """The status list of one issuing department: index allocation and the last signed token."""

    __tablename__ = "licence_status_lists"

    issuer_code: Mapped[str] = mapped_column(String(18), primary_key=True)
    next_index: Mapped[int] = mapped_column(Integer)
    token: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LicenceAccessGrantRow(Base):
    """A holder's grant to a third party to read one licence version for a purpose and a time
    window; the access code is shown once and stored as its SHA-256."""

    __tablename__ = "licence_access_grants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    identifier: Mapped[str] = mapped_column(
        String(160), ForeignKey("licences.identifier"), index=True
    )
    holder_identity_id: Mapped[str] = mapped_column(String(64), index=True)
    grantee_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    grantee_name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(200))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str] = mapped_column(String(200))  # principal actor
    granted_by_id: Mapped[str] = mapped_column(String(64))  # acting citizen id
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_reason: Mapped[str] = mapped_column(String(1000))
    access_count: Mapped[int] = mapped_column(Integer)
    last_access_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
