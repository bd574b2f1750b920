"""Citizens: registering them (one, or many at once), reading one, and checking a name and
resident ID number against the register (the hot path)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from govtrust import audit
from govtrust.db import as_utc
from govtrust.errors import AlreadyExists, FieldViolation, InvalidArgument
from govtrust.fastsql import PointReader
from govtrust.principal import Principal
from idp.identifiers import InvalidIdentifier, ResidentId, Sex
from idp.models import CitizenRow, IdentityRow
from idp.names import (
    clean_name,
    clean_phone,
    email_violation,
    name_key,
    name_violation,
    phone_violation,
)
from idp.pii import PURPOSE_ID_NUMBER, mask_id_number
from idp.registry_state import (
    REGISTRAR,
    VERIFIER,
    RegistryState,
    assurance_of,
    new_id,
    new_identity_row,
    raise_if,
)
from idp.types import (
    AssuranceSource,
    CheckResult,
    Citizen,
    CitizenCheck,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
)

log = logging.getLogger("govtrust.idp")

BULK_CHUNK = 5000
"""Citizens registered in one transaction by :meth:`CitizenRegistry.bulk_register`."""


class CitizenRegistry:
    """Register, read and check citizens."""

    def __init__(self, state: RegistryState) -> None:
        self.state = state
        self.reader = PointReader(state.db.engine)
        self._check_citizen_sql = self.reader.sql(
            "SELECT i.name_key, i.status, i.assurance_level FROM idp_citizens c "
            "JOIN idp_identities i ON i.id = c.id WHERE c.id_number_index = ?"
        )

    def register(
        self, principal: Principal, *, name: str, id_number: str, phone: str = "", email: str = ""
    ) -> Citizen:
        """Register a citizen; assurance 2 when the population base data matches, else 1."""
        principal.require_role(REGISTRAR)
        violations: list[FieldViolation | None] = [
            name_violation("name", name),
            phone_violation("phone", phone),
            email_violation("email", email),
        ]
        resident: ResidentId | None = None
        try:
            resident = self.state.parse_resident_id(id_number, "id_number")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        raise_if(violations)
        assert resident is not None
        display = clean_name(name)
        match = self.state.population.match_citizen(display, resident.number)
        level, source = assurance_of(match)
        index = self.state.id_index(resident.number)
        phone_index, phone_enc, masked_phone = self.state.phone_columns(clean_phone(phone))
        now = self.state.now()
        citizen_id = new_id("cit")
        masked = mask_id_number(resident.number)
        try:
            with self.state.db.transaction() as session:
                taken = session.scalar(
                    select(CitizenRow.id).where(CitizenRow.id_number_index == index)
                )
                if taken is not None:
                    raise AlreadyExists("a citizen with this resident ID number is registered")
                identity = new_identity_row(
                    citizen_id, IdentityKind.CITIZEN, display, masked, (level, source), now
                )
                session.add(identity)
                session.flush()
                citizen = CitizenRow(
                    id=citizen_id,
                    id_number_index=index,
                    id_number_enc=self.state.codec.encrypt(resident.number, PURPOSE_ID_NUMBER),
                    birth_date=resident.birth_date,
                    sex=resident.sex.value,
                    region_code=resident.region_code,
                    phone_index=phone_index,
                    phone_enc=phone_enc,
                    masked_phone=masked_phone,
                    email=email.strip(),
                )
                session.add(citizen)
                session.flush()
                audit.append(
                    session,
                    actor=principal.actor,
                    action="identity.citizen.register",
                    target=f"citizen:{citizen_id}",
                    details={
                        "masked_id_number": masked,
                        "masked_phone": citizen.masked_phone,
                        "assurance_level": level,
                        "assurance_source": source.value,
                    },
                )
                result = self._citizen(identity, citizen)
        except IntegrityError:
            raise AlreadyExists("a citizen with this resident ID number is registered") from None
        log.info(
            "citizen registered",
            extra={"citizen_id": citizen_id, "masked_id_number": masked, "assurance": level},
        )
        return result

    @staticmethod
    def _citizen(identity: IdentityRow, citizen: CitizenRow) -> Citizen:
        return Citizen(
            id=identity.id,
            name=identity.name,
            masked_id_number=identity.masked_identifier,
            birth_date=citizen.birth_date,
            sex=Sex(citizen.sex),
            region_code=citizen.region_code,
            masked_phone=citizen.masked_phone,
            email=citizen.email,
            status=IdentityStatus(identity.status),
            status_reason=identity.status_reason,
            assurance_level=identity.assurance_level,
            assurance_source=AssuranceSource(identity.assurance_source),
            created_at=as_utc(identity.created_at),
            updated_at=as_utc(identity.updated_at),
        )

    def get(self, principal: Principal, ref: IdentityRef) -> Citizen:
        """One citizen (masked); verifiers, registrars, or the citizen themself."""
        with self.state.db.read() as session:
            identity = self.state.resolve(session, ref, "citizen", IdentityKind.CITIZEN)
            if principal.citizen_id != identity.id:
                principal.require_role(VERIFIER, REGISTRAR)
            citizen = session.get(CitizenRow, identity.id)
            assert citizen is not None
            return self._citizen(identity, citizen)

    def check(self, principal: Principal, *, name: str, id_number: str) -> CitizenCheck:
        """MATCH / MISMATCH / NOT_FOUND for a name and ID number; nothing else leaves.

        The hot path: one blind-index HMAC and one indexed SELECT on a private per-thread
        connection (:class:`govtrust.fastsql.PointReader`), without ORM or Core overhead. Checks
        are not audited (they change nothing); the access log records the call.
        """
        principal.require_role(VERIFIER, REGISTRAR)
        violations: list[FieldViolation | None] = [name_violation("name", name)]
        resident: ResidentId | None = None
        try:
            resident = self.state.parse_resident_id(id_number, "id_number")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        raise_if(violations)
        assert resident is not None
        row = self.reader.fetchone(self._check_citizen_sql, (self.state.id_index(resident.number),))
        if row is None:
            return CitizenCheck(CheckResult.NOT_FOUND)
        if row[0] != name_key(name):
            return CitizenCheck(CheckResult.MISMATCH)
        return CitizenCheck(CheckResult.MATCH, IdentityStatus(row[1]), int(row[2]))

    def bulk_register(
        self, principal: Principal, people: Sequence[tuple[str, str, str]]
    ) -> list[str]:
        """Register many citizens ``(name, resident ID number, phone or "")`` at once (loading an
        existing register, benchmarks): numbers and names validated, assurance 1, in chunks of
        one transaction each (a number already registered fails its whole chunk), audited once
        per chunk. Returns the new identity ids in order."""
        principal.require_role(REGISTRAR)
        ids: list[str] = []
        for start in range(0, len(people), BULK_CHUNK):
            chunk = people[start : start + BULK_CHUNK]
            now = self.state.now()
            identities: list[dict[str, object]] = []
            citizens: list[dict[str, object]] = []
            for position, (name, number, phone) in enumerate(chunk, start):
                resident = self.state.parse_resident_id(number, f"people[{position}].id_number")
                display = clean_name(name)
                problem = name_violation(f"people[{position}].name", display)
                if problem is not None:
                    raise InvalidArgument("invalid citizen", [problem])
                phone_index, phone_enc, masked_phone = self.state.phone_columns(clean_phone(phone))
                citizen_id = new_id("cit")
                identities.append(
                    {
                        "id": citizen_id,
                        "kind": IdentityKind.CITIZEN.value,
                        "name": display,
                        "name_key": name_key(display),
                        "masked_identifier": mask_id_number(resident.number),
                        "status": IdentityStatus.ACTIVE.value,
                        "status_reason": "",
                        "assurance_level": 1,
                        "assurance_source": AssuranceSource.SELF_REGISTERED.value,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                citizens.append(
                    {
                        "id": citizen_id,
                        "id_number_index": self.state.id_index(resident.number),
                        "id_number_enc": self.state.codec.encrypt(
                            resident.number, PURPOSE_ID_NUMBER
                        ),
                        "birth_date": resident.birth_date,
                        "sex": resident.sex.value,
                        "region_code": resident.region_code,
                        "phone_index": phone_index,
                        "phone_enc": phone_enc,
                        "masked_phone": masked_phone,
                        "email": "",
                    }
                )
            with self.state.db.transaction() as session:
                session.execute(insert(IdentityRow), identities)
                session.execute(insert(CitizenRow), citizens)
                audit.append(
                    session,
                    actor=principal.actor,
                    action="identity.citizen.bulk_register",
                    target=f"citizens:{len(citizens)}",
                    details={"count": len(citizens), "first": identities[0]["id"]},
                )
            ids += [str(i["id"]) for i in identities]
        return ids
