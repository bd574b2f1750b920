"""What the licence package's callers read of a stored licence version: :class:`LicenceRecord`
(the shape of ``StoredLicence.row``) and :func:`effective_status`, the status a reader sees once
supersession and the validity window are taken into account.

The licence table is this package's; adapters and other packages name this shape, never the ORM
model, and never work out a licence's status themselves.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from license.days import licence_day


class LicenceRecord(Protocol):
    """A stored licence version: identity, holder, validity, recorded status and its chain."""

    identifier: str
    type_code: str
    type_revision: int
    issuer_code: str
    serial: str
    version: int
    licence_number: str
    holder_identity_id: str
    holder_code_type: str
    status: str  # valid | suspended | revoked (as recorded; see effective_status)
    status_reason: str
    status_index: int
    valid_from: date
    valid_until: date | None
    issued_at: datetime
    previous_identifier: str | None
    superseded_by: str | None
    updated_at: datetime


class EffectiveStatus(StrEnum):
    """A licence version's status as its readers see it."""

    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"


def effective_status(record: LicenceRecord, today: date | None = None) -> EffectiveStatus:
    """The status of ``record`` on ``today`` (a licence day, default today in Beijing).

    A later version supersedes it whatever its recorded status; a recorded ``valid`` becomes
    ``expired`` after its last day and ``not_yet_valid`` before its first.
    """
    if record.superseded_by is not None:
        return EffectiveStatus.SUPERSEDED
    status = EffectiveStatus(record.status)
    if status is EffectiveStatus.VALID:
        day = today if today is not None else licence_day()
        if record.valid_until is not None and record.valid_until < day:
            return EffectiveStatus.EXPIRED
        if record.valid_from > day:
            return EffectiveStatus.NOT_YET_VALID
    return status
