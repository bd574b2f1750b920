"""license.records.effective_status: what a reader sees of a stored licence version."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import pytest

from license.records import EffectiveStatus, LicenceRecord, effective_status


@dataclass
class Record:
    identifier: str = "L-1"
    type_code: str = "T"
    type_revision: int = 1
    issuer_code: str = "11350000000000000X"
    serial: str = "1"
    version: int = 1
    licence_number: str = "N-1"
    holder_identity_id: str = "h"
    holder_code_type: str = "001"
    status: str = "valid"
    status_reason: str = ""
    status_index: int = 0
    valid_from: date = date(2026, 1, 1)
    valid_until: date | None = date(2026, 12, 31)
    issued_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    previous_identifier: str | None = None
    superseded_by: str | None = None
    updated_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)


ON = date(2026, 6, 1)


@pytest.mark.parametrize(
    ("change", "today", "expected"),
    [
        ({}, ON, EffectiveStatus.VALID),
        ({}, date(2026, 12, 31), EffectiveStatus.VALID),  # the last day is still valid
        ({}, date(2027, 1, 1), EffectiveStatus.EXPIRED),
        ({}, date(2025, 12, 31), EffectiveStatus.NOT_YET_VALID),
        ({"valid_until": None}, date(2099, 1, 1), EffectiveStatus.VALID),  # long term
        ({"status": "suspended"}, date(2027, 1, 1), EffectiveStatus.SUSPENDED),
        ({"status": "revoked"}, date(2025, 1, 1), EffectiveStatus.REVOKED),
        ({"superseded_by": "L-2", "status": "revoked"}, ON, EffectiveStatus.SUPERSEDED),
        ({"superseded_by": "L-2"}, date(2027, 1, 1), EffectiveStatus.SUPERSEDED),
    ],
)
def test_effective_status(
    change: dict[str, object], today: date, expected: EffectiveStatus
) -> None:
    record: LicenceRecord = replace(Record(), **change)  # type: ignore[arg-type]
    assert effective_status(record, today) is expected
