"""Authoritative base data: the population (人口库) and legal-person (法人库) base databases.

The registry asks a :class:`PopulationBaseData` / :class:`LegalPersonBaseData` whether what it is
registering matches; a match gives assurance level 2. :class:`ImportedBaseData` is the
file-based implementation: operators import CSV extracts (``govtrust identity import``) into the
``idp_base_*`` tables, which hold blind indexes of ID numbers, never the numbers. A live
connection to a city's base-data exchange would implement the same two protocols.

CSV formats (UTF-8, optional BOM, header row required, extra columns ignored):

* citizens: ``name,id_number``
* legal persons: ``uscc,name[,legal_representative_id_number]``
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.db import Database
from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from idp.identifiers import InvalidIdentifier, parse_resident_id, parse_uscc
from idp.models import (
    BaseLegalPersonRow,
    BasePopulationRow,
    CitizenRow,
    IdentityRow,
    LegalPersonRow,
)
from idp.names import name_key, name_violation
from idp.pii import PURPOSE_ID_NUMBER, PiiCodec
from idp.types import AssuranceSource, CheckResult, IdentityStatus, ImportReport

log = logging.getLogger("govtrust.idp.basedata")

CITIZEN_COLUMNS = ("name", "id_number")
LEGAL_PERSON_COLUMNS = ("uscc", "name")
OPTIONAL_LEGAL_PERSON_COLUMNS = ("legal_representative_id_number",)
_BATCH = 1000
MAX_REPORTED_SKIPS = 1000


class PopulationBaseData(Protocol):
    """The population base database: does this name belong to this ID number?"""

    def match_citizen(self, name: str, id_number: str) -> CheckResult:
        """MATCH, MISMATCH (number known, other name) or NOT_FOUND; inputs already valid."""
        ...


class LegalPersonBaseData(Protocol):
    """The legal-person base database."""

    def match_legal_person(
        self, uscc: str, name: str, legal_representative_id_number: str | None
    ) -> CheckResult:
        """MATCH when code and name agree (and the representative, when both sides know it)."""
        ...


class ImportedBaseData:
    """Both protocols over the imported ``idp_base_*`` tables."""

    def __init__(self, db: Database, codec: PiiCodec) -> None:
        self._db = db
        self._codec = codec

    def match_citizen(self, name: str, id_number: str) -> CheckResult:
        """Look the blind index up and compare normalised names."""
        index = self._codec.blind_index(id_number, PURPOSE_ID_NUMBER)
        with self._db.read() as session:
            stored = session.scalar(
                select(BasePopulationRow.name_key).where(BasePopulationRow.id_number_index == index)
            )
        if stored is None:
            return CheckResult.NOT_FOUND
        return CheckResult.MATCH if stored == name_key(name) else CheckResult.MISMATCH

    def match_legal_person(
        self, uscc: str, name: str, legal_representative_id_number: str | None
    ) -> CheckResult:
        """Compare the name, and the representative when both the record and caller name one."""
        with self._db.read() as session:
            row = session.execute(
                select(
                    BaseLegalPersonRow.name_key, BaseLegalPersonRow.legal_representative_index
                ).where(BaseLegalPersonRow.uscc == uscc)
            ).first()
        if row is None:
            return CheckResult.NOT_FOUND
        if row[0] != name_key(name):
            return CheckResult.MISMATCH
        if row[1] is not None and legal_representative_id_number is not None:
            wanted = self._codec.blind_index(legal_representative_id_number, PURPOSE_ID_NUMBER)
            if wanted != row[1]:
                return CheckResult.MISMATCH
        return CheckResult.MATCH


# --- import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    rows: list[dict[str, object]]
    skipped: list[str]


def _reader(text: str, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidArgument.field(
            "file", f"missing column(s) {', '.join(missing)}; header must include {required}"
        )
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}


def _skip(skipped: list[str], line: int, why: str) -> None:
    if len(skipped) < MAX_REPORTED_SKIPS:
        skipped.append(f"line {line}: {why}")


def _parse_citizens(text: str, codec: PiiCodec, now: datetime, source: str) -> _Parsed:
    rows: dict[bytes, dict[str, object]] = {}
    skipped: list[str] = []
    for line, record in _reader(text, CITIZEN_COLUMNS):
        violation = name_violation("name", record["name"])
        if violation is not None:
            _skip(skipped, line, f"{violation.field}: {violation.description}")
            continue
        try:
            resident = parse_resident_id(record["id_number"], field="id_number")
        except InvalidIdentifier as exc:
            _skip(skipped, line, exc.message)
            continue
        index = codec.blind_index(resident.number, PURPOSE_ID_NUMBER)
        rows[index] = {
            "id_number_index": index,
            "name_key": name_key(record["name"]),
            "source": source,
            "imported_at": now,
        }
    return _Parsed(list(rows.values()), skipped)


def _parse_legal_persons(
    text: str, codec: PiiCodec, now: datetime, source: str, allow_list: frozenset[str]
) -> _Parsed:
    rows: dict[str, dict[str, object]] = {}
    skipped: list[str] = []
    for line, record in _reader(text, LEGAL_PERSON_COLUMNS):
        violation = name_violation("name", record["name"])
        if violation is not None:
            _skip(skipped, line, f"{violation.field}: {violation.description}")
            continue
        try:
            uscc = parse_uscc(record["uscc"], allow_list=allow_list)
            rep_number = record.get("legal_representative_id_number", "").strip()
            rep_index = (
                codec.blind_index(
                    parse_resident_id(rep_number, field="legal_representative_id_number").number,
                    PURPOSE_ID_NUMBER,
                )
                if rep_number
                else None
            )
        except InvalidIdentifier as exc:
            _skip(skipped, line, exc.message)
            continue
        rows[uscc.code] = {
            "uscc": uscc.code,
            "name_key": name_key(record["name"]),
            "legal_representative_index": rep_index,
            "source": source,
            "imported_at": now,
        }
    return _Parsed(list(rows.values()), skipped)


def _batches(items: Sequence[dict[str, object]]) -> Iterable[Sequence[dict[str, object]]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def import_population(
    db: Database,
    codec: PiiCodec,
    text: str,
    *,
    principal: Principal,
    source: str = "citizens.csv",
) -> ImportReport:
    """Load a population CSV (``name,id_number``), replacing records with the same number.

    Registered citizens at assurance 1 whose name and number now match are raised to 2, each
    with its own audit record; the import itself is audited once (counts and the file's SHA-256).
    """
    principal.require_role("identity-registrar")
    now = datetime.now(UTC)
    parsed = _parse_citizens(text, codec, now, source)
    upgraded = 0
    with db.transaction() as session:
        for batch in _batches(parsed.rows):
            keys = [r["id_number_index"] for r in batch]
            session.execute(
                delete(BasePopulationRow).where(BasePopulationRow.id_number_index.in_(keys))
            )
            session.execute(insert(BasePopulationRow), list(batch))
            wanted = {r["id_number_index"]: r["name_key"] for r in batch}
            candidates = session.execute(
                select(CitizenRow.id, CitizenRow.id_number_index, IdentityRow.name_key)
                .join(IdentityRow, IdentityRow.id == CitizenRow.id)
                .where(CitizenRow.id_number_index.in_(keys))
                .where(IdentityRow.assurance_level < 2)
                .where(IdentityRow.status != IdentityStatus.CANCELLED.value)
            ).all()
            for citizen_id, index, key in candidates:
                if wanted.get(index) == key:
                    _upgrade(session, principal, "citizen", citizen_id, now)
                    upgraded += 1
        audit.append(
            session,
            actor=principal.actor,
            action="identity.basedata.import",
            target="basedata:population",
            details={
                "source": source,
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "imported": len(parsed.rows),
                "skipped": len(parsed.skipped),
                "upgraded": upgraded,
            },
        )
    log.info(
        "population base data imported",
        extra={"imported": len(parsed.rows), "skipped": len(parsed.skipped)},
    )
    return ImportReport(len(parsed.rows), tuple(parsed.skipped), upgraded)


def import_legal_persons(
    db: Database,
    codec: PiiCodec,
    text: str,
    *,
    principal: Principal,
    allow_list: frozenset[str] = frozenset(),
    source: str = "legal-persons.csv",
) -> ImportReport:
    """Load a legal-person CSV (``uscc,name[,legal_representative_id_number]``).

    Registered legal persons at assurance 1 whose name (and representative, when given) now
    match are raised to 2.
    """
    principal.require_role("identity-registrar")
    now = datetime.now(UTC)
    parsed = _parse_legal_persons(text, codec, now, source, allow_list)
    upgraded = 0
    with db.transaction() as session:
        for batch in _batches(parsed.rows):
            keys = [r["uscc"] for r in batch]
            session.execute(delete(BaseLegalPersonRow).where(BaseLegalPersonRow.uscc.in_(keys)))
            session.execute(insert(BaseLegalPersonRow), list(batch))
            wanted = {r["uscc"]: r for r in batch}
            candidates = session.execute(
                select(
                    LegalPersonRow.id,
                    LegalPersonRow.uscc,
                    IdentityRow.name_key,
                    CitizenRow.id_number_index,
                )
                .join(IdentityRow, IdentityRow.id == LegalPersonRow.id)
                .join(CitizenRow, CitizenRow.id == LegalPersonRow.legal_representative_id)
                .where(LegalPersonRow.uscc.in_(keys))
                .where(IdentityRow.assurance_level < 2)
                .where(IdentityRow.status != IdentityStatus.CANCELLED.value)
            ).all()
            for lp_id, uscc, key, rep_index in candidates:
                record = wanted[uscc]
                rep_ok = record["legal_representative_index"] in (None, rep_index)
                if record["name_key"] == key and rep_ok:
                    _upgrade(session, principal, "legal_person", lp_id, now)
                    upgraded += 1
        audit.append(
            session,
            actor=principal.actor,
            action="identity.basedata.import",
            target="basedata:legal_persons",
            details={
                "source": source,
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "imported": len(parsed.rows),
                "skipped": len(parsed.skipped),
                "upgraded": upgraded,
            },
        )
    return ImportReport(len(parsed.rows), tuple(parsed.skipped), upgraded)


def _upgrade(
    session: Session, principal: Principal, kind: str, identity_id: str, now: datetime
) -> None:
    session.execute(
        update(IdentityRow)
        .where(IdentityRow.id == identity_id)
        .values(
            assurance_level=2,
            assurance_source=AssuranceSource.BASE_DATA.value,
            updated_at=now,
        )
    )
    audit.append(
        session,
        actor=principal.actor,
        action="identity.assurance.raise",
        target=f"{kind}:{identity_id}",
        details={"assurance_level": 2, "source": AssuranceSource.BASE_DATA.value},
    )


def read_csv(path: Path) -> str:
    """The text of a CSV file (UTF-8, BOM tolerated)."""
    return path.read_text(encoding="utf-8-sig")


__all__ = [
    "CITIZEN_COLUMNS",
    "LEGAL_PERSON_COLUMNS",
    "ImportedBaseData",
    "LegalPersonBaseData",
    "PopulationBaseData",
    "import_legal_persons",
    "import_population",
    "read_csv",
]
