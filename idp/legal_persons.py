"""Legal persons: registering one (its representative a registered, active citizen), reading
them (one, or a batch by USCC), and checking a USCC and name (and whether a citizen is the
representative or an agent) against the register."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from govtrust import audit
from govtrust.db import as_utc
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)
from govtrust.principal import Principal
from idp.agent_grants import active_scopes
from idp.identifiers import InvalidIdentifier, LegalPersonKind, ResidentId, Uscc
from idp.models import CitizenRow, IdentityRow, LegalPersonRow
from idp.names import clean_name, name_key, name_violation
from idp.pii import PURPOSE_ID_NUMBER
from idp.registry_state import (
    REGISTRAR,
    VERIFIER,
    RegistryState,
    assurance_of,
    new_id,
    new_identity_row,
    raise_if,
    summary_of,
)
from idp.types import (
    AGENT_SCOPES,
    AssuranceSource,
    CheckResult,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    IdentitySummary,
    LegalPerson,
    LegalPersonCheck,
)

log = logging.getLogger("govtrust.idp")


class LegalPersonRegistry:
    """Register, read and check legal persons."""

    def __init__(self, state: RegistryState) -> None:
        self.state = state

    def register(
        self, principal: Principal, *, uscc: str, name: str, legal_representative: IdentityRef
    ) -> LegalPerson:
        """Register a legal person whose representative is a registered, active citizen."""
        principal.require_role(REGISTRAR)
        violations: list[FieldViolation | None] = [name_violation("name", name)]
        code: Uscc | None = None
        try:
            code = self.state.parse_uscc(uscc, "uscc")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        if legal_representative.is_empty:
            violations.append(FieldViolation("legal_representative", "required"))
        raise_if(violations)
        assert code is not None
        display = clean_name(name)
        now = self.state.now()
        lp_id = new_id("lp")
        try:
            with self.state.db.transaction() as session:
                rep = self.state.resolve(
                    session, legal_representative, "legal_representative", IdentityKind.CITIZEN
                )
                if rep.status != IdentityStatus.ACTIVE.value:
                    raise FailedPrecondition(
                        "the legal representative is not active",
                        [PreconditionViolation("STATUS", rep.id, f"citizen is {rep.status}")],
                    )
                if session.scalar(
                    select(LegalPersonRow.id).where(LegalPersonRow.uscc == code.code)
                ):
                    raise AlreadyExists(f"a legal person with USCC {code.code} is registered")
                rep_citizen = session.get(CitizenRow, rep.id)
                assert rep_citizen is not None
                rep_number = self.state.codec.decrypt(rep_citizen.id_number_enc, PURPOSE_ID_NUMBER)
                match = self.state.legal_person_base.match_legal_person(
                    code.code, display, rep_number
                )
                level, source = assurance_of(match)
                identity = new_identity_row(
                    lp_id, IdentityKind.LEGAL_PERSON, display, code.code, (level, source), now
                )
                session.add(identity)
                session.flush()
                row = LegalPersonRow(
                    id=lp_id,
                    uscc=code.code,
                    legal_person_kind=code.kind.value,
                    registration_authority=code.registration_authority,
                    institution_type=code.institution_type,
                    region_code=code.region_code,
                    uscc_allow_listed=code.allow_listed,
                    legal_representative_id=rep.id,
                )
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    actor=principal.actor,
                    action="identity.legal_person.register",
                    target=f"legal_person:{lp_id}",
                    details={
                        "uscc": code.code,
                        "uscc_allow_listed": code.allow_listed,
                        "legal_representative": rep.id,
                        "assurance_level": level,
                    },
                )
                result = self._legal_person(identity, row, summary_of(rep))
        except IntegrityError:
            raise AlreadyExists(f"a legal person with USCC {code.code} is registered") from None
        log.info("legal person registered", extra={"legal_person_id": lp_id, "uscc": code.code})
        return result

    @staticmethod
    def _legal_person(
        identity: IdentityRow, row: LegalPersonRow, rep: IdentitySummary
    ) -> LegalPerson:
        return LegalPerson(
            id=identity.id,
            uscc=row.uscc,
            name=identity.name,
            kind=LegalPersonKind(row.legal_person_kind),
            registration_authority=row.registration_authority,
            institution_type=row.institution_type,
            region_code=row.region_code,
            uscc_allow_listed=row.uscc_allow_listed,
            legal_representative=rep,
            status=IdentityStatus(identity.status),
            status_reason=identity.status_reason,
            assurance_level=identity.assurance_level,
            assurance_source=AssuranceSource(identity.assurance_source),
            created_at=as_utc(identity.created_at),
            updated_at=as_utc(identity.updated_at),
        )

    def get(self, principal: Principal, ref: IdentityRef) -> LegalPerson:
        """One legal person with its representative; verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        with self.state.db.read() as session:
            identity = self.state.resolve(session, ref, "legal_person", IdentityKind.LEGAL_PERSON)
            row = session.get(LegalPersonRow, identity.id)
            assert row is not None
            rep = session.get(IdentityRow, row.legal_representative_id)
            assert rep is not None
            return self._legal_person(identity, row, summary_of(rep))

    def by_uscc(self, principal: Principal, usccs: Iterable[str]) -> dict[str, LegalPerson]:
        """The registered legal persons of ``usccs`` (as :meth:`get` reads them),
        keyed by the code as given, in two queries for them all (bulk issuance looks a
        chunk's holders up at once); a code that does not parse or is not registered is left
        out (its own look-up then says why). Verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        given: dict[str, str] = {}
        for text in set(usccs):
            try:
                given[text] = self.state.parse_uscc(text, "uscc").code
            except InvalidArgument:
                continue
        found: dict[str, LegalPerson] = {}
        codes = sorted(set(given.values()))
        with self.state.db.read() as session:
            for start in range(0, len(codes), 500):
                pairs = session.execute(
                    select(IdentityRow, LegalPersonRow)
                    .join(LegalPersonRow, LegalPersonRow.id == IdentityRow.id)
                    .where(LegalPersonRow.uscc.in_(codes[start : start + 500]))
                    .where(IdentityRow.kind == IdentityKind.LEGAL_PERSON.value)
                ).all()
                reps = {
                    rep.id: rep
                    for rep in session.scalars(
                        select(IdentityRow).where(
                            IdentityRow.id.in_({row.legal_representative_id for _, row in pairs})
                        )
                    )
                }
                for identity, row in pairs:
                    rep = reps[row.legal_representative_id]
                    found[row.uscc] = self._legal_person(identity, row, summary_of(rep))
        return {text: found[code] for text, code in given.items() if code in found}

    def check(
        self,
        principal: Principal,
        *,
        uscc: str,
        name: str,
        citizen_id_number: str = "",
        scope: str = "",
    ) -> LegalPersonCheck:
        """MATCH / MISMATCH / NOT_FOUND for a USCC and name; with a citizen's ID number, also
        whether that citizen is the representative or an agent holding ``scope`` (any scope
        when empty). Grants count only while the legal person and the agent are active."""
        principal.require_role(VERIFIER, REGISTRAR)
        violations: list[FieldViolation | None] = [name_violation("name", name)]
        code: Uscc | None = None
        resident: ResidentId | None = None
        try:
            code = self.state.parse_uscc(uscc, "uscc")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        if citizen_id_number.strip():
            try:
                resident = self.state.parse_resident_id(citizen_id_number, "citizen_id_number")
            except InvalidIdentifier as exc:
                violations.extend(exc.violations)
        if scope and scope not in AGENT_SCOPES:
            violations.append(
                FieldViolation("scope", f"unknown scope; one of {sorted(AGENT_SCOPES)}")
            )
        raise_if(violations)
        assert code is not None
        with self.state.db.read() as session:
            found = session.execute(
                select(IdentityRow, LegalPersonRow)
                .join(LegalPersonRow, LegalPersonRow.id == IdentityRow.id)
                .where(LegalPersonRow.uscc == code.code)
            ).first()
            if found is None:
                return LegalPersonCheck(CheckResult.NOT_FOUND)
            identity, row = found
            if identity.name_key != name_key(name):
                return LegalPersonCheck(CheckResult.MISMATCH)
            is_rep = is_agent = False
            if resident is not None:
                citizen = session.execute(
                    select(IdentityRow.id, IdentityRow.status)
                    .join(CitizenRow, CitizenRow.id == IdentityRow.id)
                    .where(CitizenRow.id_number_index == self.state.id_index(resident.number))
                ).first()
                if citizen is not None:
                    is_rep = citizen[0] == row.legal_representative_id
                    if (
                        citizen[1] == IdentityStatus.ACTIVE.value
                        and identity.status == IdentityStatus.ACTIVE.value
                    ):
                        is_agent = bool(
                            active_scopes(
                                session, row.id, citizen[0], scope or None, self.state.now()
                            )
                        )
            return LegalPersonCheck(
                CheckResult.MATCH,
                IdentityStatus(identity.status),
                identity.assurance_level,
                is_rep,
                is_agent,
            )
