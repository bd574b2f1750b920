"""Seal kinds, states and the value types the seal domain returns (no database, no gRPC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class SealKind(StrEnum):
    """Kinds of seal (2025 national e-seal measures)."""

    OFFICIAL = "official"  # 法定名称章
    FINANCE = "finance"  # 财务专用章
    CONTRACT = "contract"  # 合同专用章
    INVOICE = "invoice"  # 发票专用章
    BUSINESS = "business"  # 业务专用章 (numbered)
    PERSONAL_NAME = "personal_name"  # 个人名章

    @property
    def label(self) -> str:
        """The Chinese kind text shown on the seal (empty for the official and personal seals)."""
        return _LABELS[self]

    @property
    def code(self) -> int:
        """The SES_ESPropertyInfo ``type`` (1 official, 2 specialised, 3 personal, as ofdrw)."""
        if self is SealKind.OFFICIAL:
            return 1
        if self is SealKind.PERSONAL_NAME:
            return 3
        return 2


_LABELS = {
    SealKind.OFFICIAL: "",
    SealKind.FINANCE: "财务专用章",
    SealKind.CONTRACT: "合同专用章",
    SealKind.INVOICE: "发票专用章",
    SealKind.BUSINESS: "业务专用章",
    SealKind.PERSONAL_NAME: "",
}


class SealStatus(StrEnum):
    """States of the seal lifecycle (DESIGN.md)."""

    APPLIED = "applied"
    APPROVED = "approved"
    REJECTED = "rejected"
    MADE = "made"
    FILED = "filed"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    DESTROYED = "destroyed"


class SealShape(StrEnum):
    """Outline of the seal picture."""

    ROUND = "round"
    OVAL = "oval"
    SQUARE = "square"
    RECTANGLE = "rectangle"


class GrantState(StrEnum):
    """State of a use grant at an instant."""

    ACTIVE = "active"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


class PadesLevel(StrEnum):
    """PAdES baseline levels produced by :mod:`seal.pdf`."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"


@dataclass(frozen=True)
class SealView:
    """A seal as the domain returns it."""

    id: str
    owner_id: str
    owner_name: str
    owner_uscc: str
    kind: SealKind
    name: str
    business_number: str
    taxpayer_number: str
    named_person_id: str
    named_person_name: str
    status: SealStatus
    status_reason: str
    shape: SealShape
    width_mm: int
    height_mm: int
    key_algorithm: str
    certificate_der: bytes | None
    certificate_id: str
    seal_structure: bytes | None
    filing_number: str
    valid_from: datetime | None
    valid_until: datetime | None
    applicant_id: str
    applied_at: datetime
    reviewed_at: datetime | None
    made_at: datetime | None
    filed_at: datetime | None
    issued_at: datetime | None
    revoked_at: datetime | None
    destroyed_at: datetime | None
    replaces_seal_id: str
    replaced_by_seal_id: str
    updated_at: datetime
    pdf_certificate_der: bytes | None = None  # an SM2 seal's P-256 certificate for PAdES


@dataclass(frozen=True)
class GrantView:
    """A use grant."""

    id: str
    seal_id: str
    grantee_id: str
    document_kinds: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime | None
    state: GrantState
    granted_by: str
    granted_at: datetime
    revoked_by: str
    revoked_at: datetime | None
    revoke_reason: str


@dataclass(frozen=True)
class EventView:
    """One event of a seal's history."""

    sequence: int
    action: str
    from_status: str
    to_status: str
    actor_id: str
    principal: str
    role: str
    reason: str
    occurred_at: datetime
    digest_algorithm: str = ""
    digest: bytes = b""
    document_kind: str = ""
    related_id: str = ""
    audit_seq: int = 0
    details: dict[str, str] = field(default_factory=dict)


USE_ACTIONS = ("seal_pdf", "seal_ofd", "sign_data")
"""The history actions that record a use of a seal (not a lifecycle step)."""
