"""What the identity registry's services share: the registry's state (database, personal-data
codec, base data, USCC allow-list, clock), references resolved to identity rows, identity
summaries, new ids and the field checks every service's input goes through.

The services (:mod:`idp.citizens`, :mod:`idp.legal_persons`, :mod:`idp.staff`,
:mod:`idp.agent_grants`, :mod:`idp.identity_search`, :mod:`idp.status_change`) each hold the
one :class:`RegistryState` of their :class:`idp.registry.IdentityRegistry`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from govtrust.db import Database, as_utc
from govtrust.errors import FieldViolation, InvalidArgument, NotFound
from idp.basedata import ImportedBaseData, LegalPersonBaseData, PopulationBaseData
from idp.identifiers import ResidentId, Uscc, parse_resident_id, parse_uscc
from idp.models import REASON_LENGTH, CitizenRow, IdentityRow, LegalPersonRow, StaffRow
from idp.names import name_key
from idp.pii import PURPOSE_ID_NUMBER, PURPOSE_PHONE, PiiCodec, mask_phone
from idp.types import (
    AssuranceSource,
    CheckResult,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    IdentitySummary,
)

REGISTRAR = "identity-registrar"
VERIFIER = "verifier"
CODE_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-")
"""The characters of department codes, employee numbers and system ids."""


def opt_utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; None stays None."""
    return None if moment is None else as_utc(moment)


def new_id(prefix: str) -> str:
    """A new identity or grant id: ``prefix`` and a random UUID."""
    return f"{prefix}_{uuid.uuid4().hex}"


def summary_of(row: IdentityRow) -> IdentitySummary:
    """The summary of an identity row."""
    return IdentitySummary(
        id=row.id,
        kind=IdentityKind(row.kind),
        display_name=row.name,
        masked_identifier=row.masked_identifier,
        status=IdentityStatus(row.status),
        assurance_level=row.assurance_level,
    )


def new_identity_row(
    identity_id: str,
    kind: IdentityKind,
    display_name: str,
    masked_identifier: str,
    assurance: tuple[int, AssuranceSource],
    now: datetime,
) -> IdentityRow:
    """The ``idp_identities`` row of a newly registered, active identity."""
    level, source = assurance
    return IdentityRow(
        id=identity_id,
        kind=kind.value,
        name=display_name,
        name_key=name_key(display_name),
        masked_identifier=masked_identifier,
        status=IdentityStatus.ACTIVE.value,
        status_reason="",
        assurance_level=level,
        assurance_source=source.value,
        created_at=now,
        updated_at=now,
    )


def assurance_of(match: CheckResult) -> tuple[int, AssuranceSource]:
    """Assurance level and source of a registration: 2 when the base data matches, else 1."""
    if match is CheckResult.MATCH:
        return 2, AssuranceSource.BASE_DATA
    return 1, AssuranceSource.SELF_REGISTERED


def summaries(session: Session, ids: Iterable[str | None]) -> dict[str, IdentitySummary]:
    """The summaries of the identities ``ids`` (None and "" skipped), by id, in one query."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = session.scalars(select(IdentityRow).where(IdentityRow.id.in_(wanted)))
    return {row.id: summary_of(row) for row in rows}


def raise_if(violations: Sequence[FieldViolation | None]) -> None:
    """``InvalidArgument`` naming every violation found (the Nones are none); else nothing."""
    found = [v for v in violations if v is not None]
    if found:
        text = "; ".join(f"{v.field}: {v.description}" for v in found)
        raise InvalidArgument(text, found)


def reason_violation(field: str, value: str) -> FieldViolation | None:
    """What is wrong with a required reason: empty, or longer than the column holds."""
    if not value.strip():
        return FieldViolation(field, "required")
    if len(value.strip()) > REASON_LENGTH:
        return FieldViolation(field, f"length: at most {REASON_LENGTH} characters")
    return None


def code_violation(field: str, value: str, *, max_length: int = 64) -> FieldViolation | None:
    """What is wrong with a required code (department, employee number, system id)."""
    if not value:
        return FieldViolation(field, "required")
    if len(value) > max_length:
        return FieldViolation(field, f"length: at most {max_length} characters")
    if not set(value) <= CODE_CHARS:
        return FieldViolation(field, "character not allowed: use letters, digits, '.', '_', '-'")
    return None


class RegistryState:
    """The state the registry's services share: one database, one personal-data codec (so one
    blind-index key), the base data, the USCC allow-list and one clock."""

    def __init__(
        self,
        db: Database,
        codec: PiiCodec,
        *,
        uscc_allow_list: frozenset[str] = frozenset(),
        population: PopulationBaseData | None = None,
        legal_person_base: LegalPersonBaseData | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.codec = codec
        self.uscc_allow_list = uscc_allow_list
        base = ImportedBaseData(db, codec)
        self.population: PopulationBaseData = population or base
        self.legal_person_base: LegalPersonBaseData = legal_person_base or base
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The registry's clock (UTC)."""
        return self._clock()

    def parse_resident_id(self, value: str, field: str) -> ResidentId:
        """Validate a resident ID number for ``field``."""
        return parse_resident_id(value, field=field, today=self.now().date())

    def parse_uscc(self, value: str, field: str) -> Uscc:
        """Validate a USCC for ``field`` against the configured allow-list."""
        return parse_uscc(value, field=field, allow_list=self.uscc_allow_list)

    def phone_columns(self, phone: str) -> tuple[bytes | None, bytes | None, str]:
        """A cleaned phone number as stored: (blind index, ciphertext, masked); no index or
        ciphertext for no phone."""
        if not phone:
            return None, None, mask_phone(phone)
        return (
            self.codec.blind_index(phone, PURPOSE_PHONE),
            self.codec.encrypt(phone, PURPOSE_PHONE),
            mask_phone(phone),
        )

    def id_index(self, number: str) -> bytes:
        """The blind index of a resident ID number (what ``idp_citizens`` is searched by)."""
        return self.codec.blind_index(number, PURPOSE_ID_NUMBER)

    def resolve(
        self, session: Session, ref: IdentityRef, field: str, kind: IdentityKind | None
    ) -> IdentityRow:
        """The identity row ``ref`` names (by id, resident ID number, USCC or staff
        department and number), of ``kind`` when given; ``InvalidArgument`` on ``field`` for a
        malformed reference, ``NotFound`` when there is no such identity."""
        if ref.is_empty:
            raise InvalidArgument.field(field, "required")
        what = kind.value.replace("_", " ") if kind else "identity"
        row: IdentityRow | None
        if ref.id is not None:
            row = session.get(IdentityRow, ref.id)
        elif ref.resident_id_number is not None:
            self._expect(kind, IdentityKind.CITIZEN, field, "resident_id_number")
            number = self.parse_resident_id(ref.resident_id_number, f"{field}.resident_id_number")
            row = session.scalar(
                select(IdentityRow)
                .join(CitizenRow, CitizenRow.id == IdentityRow.id)
                .where(CitizenRow.id_number_index == self.id_index(number.number))
            )
        elif ref.uscc is not None:
            self._expect(kind, IdentityKind.LEGAL_PERSON, field, "uscc")
            code = self.parse_uscc(ref.uscc, f"{field}.uscc")
            row = session.scalar(
                select(IdentityRow)
                .join(LegalPersonRow, LegalPersonRow.id == IdentityRow.id)
                .where(LegalPersonRow.uscc == code.code)
            )
        else:
            assert ref.staff is not None
            self._expect(kind, IdentityKind.STAFF, field, "staff")
            department, employee = ref.staff
            raise_if(
                [
                    code_violation(f"{field}.staff.department_code", department),
                    code_violation(f"{field}.staff.employee_number", employee),
                ]
            )
            row = session.scalar(
                select(IdentityRow)
                .join(StaffRow, StaffRow.id == IdentityRow.id)
                .where(StaffRow.department_code == department)
                .where(StaffRow.employee_number == employee)
            )
        if row is None or (kind is not None and row.kind != kind.value):
            raise NotFound(f"{field}: no such {what}")
        return row

    @staticmethod
    def _expect(kind: IdentityKind | None, wanted: IdentityKind, field: str, ref: str) -> None:
        if kind is not None and kind != wanted:
            raise InvalidArgument.field(
                f"{field}.{ref}", f"names a {wanted.value.replace('_', ' ')}, not a {kind.value}"
            )
