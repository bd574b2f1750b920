"""The identity registry: citizens, legal persons, staff and agent grants.

Domain functions take the caller's :class:`~govtrust.principal.Principal`, check its role (or its
relation to the legal person, for agent grants), validate input into specific field violations,
and change the database and the audit log in one transaction. They return the frozen
dataclasses of :mod:`idp.types`; personal data leaves only in masked form.

Who may do what:

* register and change status: ``identity-registrar``; giving a staff member the ``admin`` or
  ``identity-registrar`` role needs ``admin``;
* read, search and check: ``verifier`` or ``identity-registrar`` (a citizen may also read their
  own record and the agent grants they hold);
* grant an agent: the legal representative, an agent of the legal person holding ``agent.manage``
  (only scopes it holds itself, never beyond its own validity), or an ``identity-registrar``
  recording a paper authorisation at a counter;
* revoke a grant: the same people, or the agent renouncing its own grant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from govtrust.fastsql import PointReader
from govtrust.principal import LICENCE_ISSUER_PREFIX, ROLES, Principal
from hsm.atrest import DEFAULT_SCHEME
from idp.basedata import ImportedBaseData, LegalPersonBaseData, PopulationBaseData
from idp.identifiers import (
    InvalidIdentifier,
    LegalPersonKind,
    ResidentId,
    Sex,
    Uscc,
    load_uscc_allow_list,
    parse_resident_id,
    parse_uscc,
)
from idp.models import (
    REASON_LENGTH,
    AgentGrantRow,
    AgentGrantScopeRow,
    CitizenRow,
    IdentityRow,
    LegalPersonRow,
    StaffAccountRow,
    StaffRow,
)
from idp.names import (
    clean_name,
    clean_phone,
    email_violation,
    name_key,
    name_violation,
    phone_violation,
)
from idp.pii import (
    PURPOSE_ID_NUMBER,
    PURPOSE_PHONE,
    KeyDeriver,
    PiiCodec,
    mask_id_number,
    mask_phone,
)
from idp.status_listeners import StatusListeners
from idp.types import (
    AGENT_MANAGE,
    AGENT_SCOPES,
    AgentGrant,
    AssuranceSource,
    CheckResult,
    Citizen,
    CitizenCheck,
    ConnectionMode,
    GrantStatus,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    IdentitySummary,
    LegalPerson,
    LegalPersonCheck,
    Page,
    Staff,
    StatusAction,
    SystemAccount,
)

log = logging.getLogger("govtrust.idp")

REGISTRAR = "identity-registrar"
VERIFIER = "verifier"
# never given by a registrar: key-recovery too, or a registrar could mint both officers of a
# dual-control key recovery (ca/recovery.py)
PRIVILEGED_STAFF_ROLES = frozenset({"admin", REGISTRAR, "key-recovery"})
DEFAULT_PAGE_SIZE = 50
_BULK_CHUNK = 5000
MAX_PAGE_SIZE = 1000
_CODE_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-")


def _opt_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _summary(row: IdentityRow) -> IdentitySummary:
    return IdentitySummary(
        id=row.id,
        kind=IdentityKind(row.kind),
        display_name=row.name,
        masked_identifier=row.masked_identifier,
        status=IdentityStatus(row.status),
        assurance_level=row.assurance_level,
    )


def _raise_if(violations: Sequence[FieldViolation | None]) -> None:
    found = [v for v in violations if v is not None]
    if found:
        text = "; ".join(f"{v.field}: {v.description}" for v in found)
        raise InvalidArgument(text, found)


def _reason_violation(field: str, value: str) -> FieldViolation | None:
    if not value.strip():
        return FieldViolation(field, "required")
    if len(value.strip()) > REASON_LENGTH:
        return FieldViolation(field, f"length: at most {REASON_LENGTH} characters")
    return None


def _code_violation(field: str, value: str, *, max_length: int = 64) -> FieldViolation | None:
    if not value:
        return FieldViolation(field, "required")
    if len(value) > max_length:
        return FieldViolation(field, f"length: at most {max_length} characters")
    if not set(value) <= _CODE_CHARS:
        return FieldViolation(field, "character not allowed: use letters, digits, '.', '_', '-'")
    return None


# --- paging -------------------------------------------------------------------------------------


def _page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(filters: Iterable[object]) -> str:
    return hashlib.sha256(json.dumps([str(f) for f in filters]).encode()).hexdigest()[:16]


def _encode_token(filters: Iterable[object], *position: str) -> str:
    body = json.dumps({"f": _fingerprint(filters), "p": list(position)}).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _decode_token(token: str, filters: Iterable[object], size: int) -> list[str] | None:
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = body["p"]
        valid = body["f"] == _fingerprint(filters) and len(position) == size
    except (ValueError, KeyError, TypeError, binascii.Error):
        valid = False
    if not valid or not all(isinstance(p, str) for p in position):
        raise InvalidArgument.field(
            "page_token", "not a token of a previous page of this query (filters must not change)"
        )
    return [str(p) for p in position]


# --- the registry -------------------------------------------------------------------------------


class IdentityRegistry:
    """Domain service of the identity registry over one database."""

    def __init__(
        self,
        db: Database,
        codec: PiiCodec,
        *,
        uscc_allow_list: frozenset[str] = frozenset(),
        registrar_grantable_roles: frozenset[str] = frozenset(),
        population: PopulationBaseData | None = None,
        legal_person_base: LegalPersonBaseData | None = None,
        clock: Callable[[], datetime] | None = None,
        status_listeners: StatusListeners | None = None,
    ) -> None:
        self.db = db
        # told of every status change in its transaction (the platform's, see idp.runtime)
        self.status_listeners = status_listeners or StatusListeners()
        self.codec = codec
        self.uscc_allow_list = uscc_allow_list
        self.registrar_grantable_roles = registrar_grantable_roles - PRIVILEGED_STAFF_ROLES
        base = ImportedBaseData(db, codec)
        self.population: PopulationBaseData = population or base
        self.legal_person_base: LegalPersonBaseData = legal_person_base or base
        self._clock = clock or (lambda: datetime.now(UTC))
        self.reader = PointReader(db.engine)
        self._check_citizen_sql = self.reader.sql(
            "SELECT i.name_key, i.status, i.assurance_level FROM idp_citizens c "
            "JOIN idp_identities i ON i.id = c.id WHERE c.id_number_index = ?"
        )

    @classmethod
    def open(
        cls,
        db: Database,
        master_key: KeyDeriver,
        *,
        data_dir: Path | None = None,
        registrar_grantable_roles: Iterable[str] = (),
        at_rest_scheme: str = DEFAULT_SCHEME,
        status_listeners: StatusListeners | None = None,
        uscc_allow_list: Iterable[str] = (),
    ) -> IdentityRegistry:
        """A registry with keys derived from the master key (new personal data written under
        ``at_rest_scheme``), the configured USCC allow-list and the staff roles a registrar may
        give (setting ``registrar_grantable_roles``)."""
        return cls(
            db,
            PiiCodec.from_master_key(master_key, at_rest_scheme),
            uscc_allow_list=load_uscc_allow_list(data_dir, uscc_allow_list),
            registrar_grantable_roles=frozenset(registrar_grantable_roles),
            status_listeners=status_listeners,
        )

    def now(self) -> datetime:
        """The registry's clock (UTC)."""
        return self._clock()

    def bulk_register_citizens(
        self, principal: Principal, people: Sequence[tuple[str, str, str]]
    ) -> list[str]:
        """Register many citizens ``(name, resident ID number, phone or "")`` at once (loading an
        existing register, benchmarks): numbers and names validated, assurance 1, in chunks of
        one transaction each (a number already registered fails its whole chunk), audited once
        per chunk. Returns the new identity ids in order."""
        principal.require_role(REGISTRAR)
        ids: list[str] = []
        for start in range(0, len(people), _BULK_CHUNK):
            chunk = people[start : start + _BULK_CHUNK]
            now = self.now()
            identities: list[dict[str, object]] = []
            citizens: list[dict[str, object]] = []
            for position, (name, number, phone) in enumerate(chunk, start):
                resident = self.parse_resident_id(number, f"people[{position}].id_number")
                display = clean_name(name)
                problem = name_violation(f"people[{position}].name", display)
                if problem is not None:
                    raise InvalidArgument("invalid citizen", [problem])
                phone_value = clean_phone(phone)
                citizen_id = _new_id("cit")
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
                        "id_number_index": self._id_index(resident.number),
                        "id_number_enc": self.codec.encrypt(resident.number, PURPOSE_ID_NUMBER),
                        "birth_date": resident.birth_date,
                        "sex": resident.sex.value,
                        "region_code": resident.region_code,
                        "phone_index": self.codec.blind_index(phone_value, PURPOSE_PHONE)
                        if phone_value
                        else None,
                        "phone_enc": self.codec.encrypt(phone_value, PURPOSE_PHONE)
                        if phone_value
                        else None,
                        "masked_phone": mask_phone(phone_value),
                        "email": "",
                    }
                )
            with self.db.transaction() as session:
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

    # --- identifiers ----------------------------------------------------------------------

    def parse_resident_id(self, value: str, field: str) -> ResidentId:
        """Validate a resident ID number for ``field``."""
        return parse_resident_id(value, field=field, today=self.now().date())

    def parse_uscc(self, value: str, field: str) -> Uscc:
        """Validate a USCC for ``field`` against the configured allow-list."""
        return parse_uscc(value, field=field, allow_list=self.uscc_allow_list)

    def _id_index(self, number: str) -> bytes:
        return self.codec.blind_index(number, PURPOSE_ID_NUMBER)

    # --- resolution -----------------------------------------------------------------------

    def _resolve(
        self, session: Session, ref: IdentityRef, field: str, kind: IdentityKind | None
    ) -> IdentityRow:
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
                .where(CitizenRow.id_number_index == self._id_index(number.number))
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
            _raise_if(
                [
                    _code_violation(f"{field}.staff.department_code", department),
                    _code_violation(f"{field}.staff.employee_number", employee),
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

    def _summaries(self, session: Session, ids: Iterable[str | None]) -> dict[str, IdentitySummary]:
        wanted = {i for i in ids if i}
        if not wanted:
            return {}
        rows = session.scalars(select(IdentityRow).where(IdentityRow.id.in_(wanted)))
        return {row.id: _summary(row) for row in rows}

    # --- citizens -------------------------------------------------------------------------

    def register_citizen(
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
            resident = self.parse_resident_id(id_number, "id_number")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        _raise_if(violations)
        assert resident is not None
        display = clean_name(name)
        match = self.population.match_citizen(display, resident.number)
        level, source = (
            (2, AssuranceSource.BASE_DATA)
            if match is CheckResult.MATCH
            else (1, AssuranceSource.SELF_REGISTERED)
        )
        index = self._id_index(resident.number)
        phone_value = clean_phone(phone)
        now = self.now()
        citizen_id = _new_id("cit")
        masked = mask_id_number(resident.number)
        try:
            with self.db.transaction() as session:
                taken = session.scalar(
                    select(CitizenRow.id).where(CitizenRow.id_number_index == index)
                )
                if taken is not None:
                    raise AlreadyExists("a citizen with this resident ID number is registered")
                identity = IdentityRow(
                    id=citizen_id,
                    kind=IdentityKind.CITIZEN.value,
                    name=display,
                    name_key=name_key(display),
                    masked_identifier=masked,
                    status=IdentityStatus.ACTIVE.value,
                    status_reason="",
                    assurance_level=level,
                    assurance_source=source.value,
                    created_at=now,
                    updated_at=now,
                )
                session.add(identity)
                session.flush()
                citizen = CitizenRow(
                    id=citizen_id,
                    id_number_index=index,
                    id_number_enc=self.codec.encrypt(resident.number, PURPOSE_ID_NUMBER),
                    birth_date=resident.birth_date,
                    sex=resident.sex.value,
                    region_code=resident.region_code,
                    phone_index=self.codec.blind_index(phone_value, PURPOSE_PHONE)
                    if phone_value
                    else None,
                    phone_enc=self.codec.encrypt(phone_value, PURPOSE_PHONE)
                    if phone_value
                    else None,
                    masked_phone=mask_phone(phone_value),
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

    def get_citizen(self, principal: Principal, ref: IdentityRef) -> Citizen:
        """One citizen (masked); verifiers, registrars, or the citizen themself."""
        with self.db.read() as session:
            identity = self._resolve(session, ref, "citizen", IdentityKind.CITIZEN)
            if principal.citizen_id != identity.id:
                principal.require_role(VERIFIER, REGISTRAR)
            citizen = session.get(CitizenRow, identity.id)
            assert citizen is not None
            return self._citizen(identity, citizen)

    def check_citizen(self, principal: Principal, *, name: str, id_number: str) -> CitizenCheck:
        """MATCH / MISMATCH / NOT_FOUND for a name and ID number; nothing else leaves.

        The hot path: one blind-index HMAC and one indexed SELECT on a private per-thread
        connection (:class:`govtrust.fastsql.PointReader`), without ORM or Core overhead. Checks
        are not audited (they change nothing); the access log records the call.
        """
        principal.require_role(VERIFIER, REGISTRAR)
        violations: list[FieldViolation | None] = [name_violation("name", name)]
        resident: ResidentId | None = None
        try:
            resident = self.parse_resident_id(id_number, "id_number")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        _raise_if(violations)
        assert resident is not None
        row = self.reader.fetchone(self._check_citizen_sql, (self._id_index(resident.number),))
        if row is None:
            return CitizenCheck(CheckResult.NOT_FOUND)
        if row[0] != name_key(name):
            return CitizenCheck(CheckResult.MISMATCH)
        return CitizenCheck(CheckResult.MATCH, IdentityStatus(row[1]), int(row[2]))

    # --- legal persons --------------------------------------------------------------------

    def register_legal_person(
        self, principal: Principal, *, uscc: str, name: str, legal_representative: IdentityRef
    ) -> LegalPerson:
        """Register a legal person whose representative is a registered, active citizen."""
        principal.require_role(REGISTRAR)
        violations: list[FieldViolation | None] = [name_violation("name", name)]
        code: Uscc | None = None
        try:
            code = self.parse_uscc(uscc, "uscc")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        if legal_representative.is_empty:
            violations.append(FieldViolation("legal_representative", "required"))
        _raise_if(violations)
        assert code is not None
        display = clean_name(name)
        now = self.now()
        lp_id = _new_id("lp")
        try:
            with self.db.transaction() as session:
                rep = self._resolve(
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
                rep_number = self.codec.decrypt(rep_citizen.id_number_enc, PURPOSE_ID_NUMBER)
                match = self.legal_person_base.match_legal_person(code.code, display, rep_number)
                level, source = (
                    (2, AssuranceSource.BASE_DATA)
                    if match is CheckResult.MATCH
                    else (1, AssuranceSource.SELF_REGISTERED)
                )
                identity = IdentityRow(
                    id=lp_id,
                    kind=IdentityKind.LEGAL_PERSON.value,
                    name=display,
                    name_key=name_key(display),
                    masked_identifier=code.code,
                    status=IdentityStatus.ACTIVE.value,
                    status_reason="",
                    assurance_level=level,
                    assurance_source=source.value,
                    created_at=now,
                    updated_at=now,
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
                result = self._legal_person(identity, row, _summary(rep))
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

    def get_legal_person(self, principal: Principal, ref: IdentityRef) -> LegalPerson:
        """One legal person with its representative; verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        with self.db.read() as session:
            identity = self._resolve(session, ref, "legal_person", IdentityKind.LEGAL_PERSON)
            row = session.get(LegalPersonRow, identity.id)
            assert row is not None
            rep = session.get(IdentityRow, row.legal_representative_id)
            assert rep is not None
            return self._legal_person(identity, row, _summary(rep))

    def legal_persons_by_uscc(
        self, principal: Principal, usccs: Iterable[str]
    ) -> dict[str, LegalPerson]:
        """The registered legal persons of ``usccs`` (as :meth:`get_legal_person` reads them),
        keyed by the code as given, in two queries for them all (bulk issuance looks a
        chunk's holders up at once); a code that does not parse or is not registered is left
        out (its own look-up then says why). Verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        given: dict[str, str] = {}
        for text in set(usccs):
            try:
                given[text] = self.parse_uscc(text, "uscc").code
            except InvalidArgument:
                continue
        found: dict[str, LegalPerson] = {}
        codes = sorted(set(given.values()))
        with self.db.read() as session:
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
                    found[row.uscc] = self._legal_person(identity, row, _summary(rep))
        return {text: found[code] for text, code in given.items() if code in found}

    def check_legal_person(
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
            code = self.parse_uscc(uscc, "uscc")
        except InvalidIdentifier as exc:
            violations.extend(exc.violations)
        if citizen_id_number.strip():
            try:
                resident = self.parse_resident_id(citizen_id_number, "citizen_id_number")
            except InvalidIdentifier as exc:
                violations.extend(exc.violations)
        if scope and scope not in AGENT_SCOPES:
            violations.append(
                FieldViolation("scope", f"unknown scope; one of {sorted(AGENT_SCOPES)}")
            )
        _raise_if(violations)
        assert code is not None
        with self.db.read() as session:
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
                    .where(CitizenRow.id_number_index == self._id_index(resident.number))
                ).first()
                if citizen is not None:
                    is_rep = citizen[0] == row.legal_representative_id
                    if (
                        citizen[1] == IdentityStatus.ACTIVE.value
                        and identity.status == IdentityStatus.ACTIVE.value
                    ):
                        is_agent = bool(
                            self._active_scopes(session, row.id, citizen[0], scope or None)
                        )
            return LegalPersonCheck(
                CheckResult.MATCH,
                IdentityStatus(identity.status),
                identity.assurance_level,
                is_rep,
                is_agent,
            )

    # --- staff ----------------------------------------------------------------------------

    def _check_grantable(self, principal: Principal, roles: Sequence[str]) -> None:
        """Only an admin gives staff roles (they become token roles); a registrar gives none,
        or only those in ``registrar_grantable_roles`` (never admin or identity-registrar)."""
        if "admin" in principal.roles:
            return
        refused = [r for r in roles if r not in self.registrar_grantable_roles]
        if refused:
            allowed = ", ".join(sorted(self.registrar_grantable_roles)) or "none"
            raise PermissionDenied(
                f"{principal.actor} may not give the role {', '.join(refused)}: only an admin "
                f"gives staff roles (a registrar may give: {allowed})"
            )

    def register_staff(
        self,
        principal: Principal,
        *,
        name: str,
        department_code: str,
        department_name: str,
        employee_number: str,
        roles: Sequence[str] = (),
        system_accounts: Sequence[SystemAccount] = (),
        citizen: IdentityRef | None = None,
        phone: str = "",
        email: str = "",
    ) -> Staff:
        """Register a staff member with govtrust roles and business-system accounts.

        Unified-mode accounts carry no local account id (the user centre's id is the account);
        mapped-mode accounts need the system's own account id, unique per system.
        """
        principal.require_role(REGISTRAR)
        department_code = department_code.strip()
        employee_number = employee_number.strip()
        violations: list[FieldViolation | None] = [
            name_violation("name", name),
            _code_violation("department_code", department_code),
            name_violation("department_name", department_name, required=False),
            _code_violation("employee_number", employee_number),
            phone_violation("phone", phone),
            email_violation("email", email),
        ]
        clean_roles = sorted({r.strip() for r in roles})
        for i, role in enumerate(clean_roles):
            dept = role.removeprefix(LICENCE_ISSUER_PREFIX)
            if role not in ROLES and not (
                role.startswith(LICENCE_ISSUER_PREFIX) and dept and set(dept) <= _CODE_CHARS
            ):
                violations.append(FieldViolation(f"roles[{i}]", "unknown role"))
        seen_systems: set[str] = set()
        for i, account in enumerate(system_accounts):
            field = f"system_accounts[{i}]"
            violations.append(
                _code_violation(f"{field}.system_id", account.system_id, max_length=128)
            )
            if account.system_id in seen_systems:
                violations.append(FieldViolation(f"{field}.system_id", "duplicate system"))
            seen_systems.add(account.system_id)
            if account.mode is ConnectionMode.MAPPED:
                violations.append(
                    _code_violation(
                        f"{field}.local_account_id", account.local_account_id, max_length=128
                    )
                )
            elif account.local_account_id:
                violations.append(
                    FieldViolation(
                        f"{field}.local_account_id",
                        "only mapped-mode accounts have a local account id",
                    )
                )
        _raise_if(violations)
        self._check_grantable(principal, clean_roles)
        display = clean_name(name)
        phone_value = clean_phone(phone)
        now = self.now()
        staff_id = _new_id("stf")
        masked = f"{department_code}/{employee_number}"
        try:
            with self.db.transaction() as session:
                citizen_row: IdentityRow | None = None
                if citizen is not None and not citizen.is_empty:
                    citizen_row = self._resolve(session, citizen, "citizen", IdentityKind.CITIZEN)
                if session.scalar(
                    select(StaffRow.id)
                    .where(StaffRow.department_code == department_code)
                    .where(StaffRow.employee_number == employee_number)
                ):
                    raise AlreadyExists(f"staff member {masked} is registered")
                for account in system_accounts:
                    if account.mode is ConnectionMode.MAPPED and session.scalar(
                        select(StaffAccountRow.id)
                        .where(StaffAccountRow.system_id == account.system_id)
                        .where(StaffAccountRow.local_account_id == account.local_account_id)
                    ):
                        raise AlreadyExists(
                            f"local account {account.local_account_id} of system "
                            f"{account.system_id} is mapped to another staff member"
                        )
                identity = IdentityRow(
                    id=staff_id,
                    kind=IdentityKind.STAFF.value,
                    name=display,
                    name_key=name_key(display),
                    masked_identifier=masked,
                    status=IdentityStatus.ACTIVE.value,
                    status_reason="",
                    assurance_level=0,
                    assurance_source=AssuranceSource.NONE.value,
                    created_at=now,
                    updated_at=now,
                )
                session.add(identity)
                session.flush()
                row = StaffRow(
                    id=staff_id,
                    department_code=department_code,
                    department_name=clean_name(department_name),
                    employee_number=employee_number,
                    roles=" ".join(clean_roles),
                    citizen_id=citizen_row.id if citizen_row else None,
                    phone_index=self.codec.blind_index(phone_value, PURPOSE_PHONE)
                    if phone_value
                    else None,
                    phone_enc=self.codec.encrypt(phone_value, PURPOSE_PHONE)
                    if phone_value
                    else None,
                    masked_phone=mask_phone(phone_value),
                    email=email.strip(),
                )
                session.add(row)
                session.flush()
                accounts = [
                    StaffAccountRow(
                        staff_id=staff_id,
                        system_id=a.system_id,
                        mode=a.mode.value,
                        local_account_id=a.local_account_id
                        if a.mode is ConnectionMode.MAPPED
                        else None,
                    )
                    for a in system_accounts
                ]
                session.add_all(accounts)
                session.flush()
                audit.append(
                    session,
                    actor=principal.actor,
                    action="identity.staff.register",
                    target=f"staff:{staff_id}",
                    details={
                        "staff": masked,
                        "roles": clean_roles,
                        "systems": [f"{a.system_id}:{a.mode.value}" for a in system_accounts],
                        "citizen": citizen_row.id if citizen_row else None,
                        "masked_phone": row.masked_phone,
                    },
                )
                result = self._staff(
                    identity, row, accounts, _summary(citizen_row) if citizen_row else None
                )
        except IntegrityError:
            raise AlreadyExists(
                f"staff member {masked} or one of its mapped accounts is registered"
            ) from None
        log.info("staff registered", extra={"staff_id": staff_id, "staff": masked})
        return result

    @staticmethod
    def _staff(
        identity: IdentityRow,
        row: StaffRow,
        accounts: Sequence[StaffAccountRow],
        citizen: IdentitySummary | None,
    ) -> Staff:
        return Staff(
            id=identity.id,
            name=identity.name,
            department_code=row.department_code,
            department_name=row.department_name,
            employee_number=row.employee_number,
            roles=tuple(row.roles.split()),
            system_accounts=tuple(
                SystemAccount(a.system_id, ConnectionMode(a.mode), a.local_account_id or "")
                for a in sorted(accounts, key=lambda a: a.system_id)
            ),
            citizen=citizen,
            masked_phone=row.masked_phone,
            email=row.email,
            status=IdentityStatus(identity.status),
            status_reason=identity.status_reason,
            created_at=as_utc(identity.created_at),
            updated_at=as_utc(identity.updated_at),
        )

    def get_staff(self, principal: Principal, ref: IdentityRef) -> Staff:
        """One staff member; verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        with self.db.read() as session:
            identity = self._resolve(session, ref, "staff", IdentityKind.STAFF)
            row = session.get(StaffRow, identity.id)
            assert row is not None
            accounts = session.scalars(
                select(StaffAccountRow).where(StaffAccountRow.staff_id == identity.id)
            ).all()
            citizen = session.get(IdentityRow, row.citizen_id) if row.citizen_id else None
            return self._staff(identity, row, accounts, _summary(citizen) if citizen else None)

    # --- search and status ----------------------------------------------------------------

    def search(
        self,
        principal: Principal,
        *,
        name_prefix: str = "",
        kind: IdentityKind | None = None,
        status: IdentityStatus | None = None,
        department_code: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[IdentitySummary]:
        """Identities by name prefix, kind, status and department, ordered by name then id."""
        principal.require_role(VERIFIER, REGISTRAR)
        size = _page_size(page_size)
        prefix = name_key(name_prefix)
        department_code = department_code.strip()
        filters = ("search", prefix, kind, status, department_code)
        position = _decode_token(page_token, filters, 2)
        stmt = select(IdentityRow)
        if department_code:
            stmt = stmt.join(StaffRow, StaffRow.id == IdentityRow.id).where(
                StaffRow.department_code == department_code
            )
        if kind is not None:
            stmt = stmt.where(IdentityRow.kind == kind.value)
        if status is not None:
            stmt = stmt.where(IdentityRow.status == status.value)
        if prefix:
            stmt = stmt.where(IdentityRow.name_key.startswith(prefix, autoescape=True))
        if position is not None:
            stmt = stmt.where(
                or_(
                    IdentityRow.name_key > position[0],
                    and_(IdentityRow.name_key == position[0], IdentityRow.id > position[1]),
                )
            )
        stmt = stmt.order_by(IdentityRow.name_key, IdentityRow.id).limit(size + 1)
        with self.db.read() as session:
            rows = list(session.scalars(stmt))
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode_token(filters, rows[-1].name_key, rows[-1].id)
        return Page(tuple(_summary(r) for r in rows), token)

    def update_status(
        self, principal: Principal, ref: IdentityRef, action: StatusAction, reason: str
    ) -> IdentitySummary:
        """Suspend (active→suspended), reinstate (suspended→active) or cancel (→cancelled).

        Cancelling revokes the agent grants that hang off the identity (of a legal person, or
        held by a citizen) in the same transaction; status listeners run there too.
        """
        principal.require_role(REGISTRAR)
        _raise_if([_reason_violation("reason", reason)])
        transitions: dict[StatusAction, tuple[set[str], IdentityStatus]] = {
            StatusAction.SUSPEND: ({IdentityStatus.ACTIVE.value}, IdentityStatus.SUSPENDED),
            StatusAction.REINSTATE: ({IdentityStatus.SUSPENDED.value}, IdentityStatus.ACTIVE),
            StatusAction.CANCEL: (
                {IdentityStatus.ACTIVE.value, IdentityStatus.SUSPENDED.value},
                IdentityStatus.CANCELLED,
            ),
        }
        allowed_from, target = transitions[action]
        reason = reason.strip()
        now = self.now()
        with self.db.transaction() as session:
            row = self._resolve(session, ref, "identity", None)
            before = IdentityStatus(row.status)
            if row.status not in allowed_from:
                raise FailedPrecondition(
                    f"cannot {action.value} an identity that is {row.status}",
                    [
                        PreconditionViolation(
                            "STATUS",
                            f"{row.kind}:{row.id}",
                            f"{action.value} needs " + " or ".join(sorted(allowed_from)),
                        )
                    ],
                )
            row.status = target.value
            row.status_reason = reason
            row.updated_at = now
            revoked: list[str] = []
            if target is IdentityStatus.CANCELLED:
                column = (
                    AgentGrantRow.legal_person_id
                    if row.kind == IdentityKind.LEGAL_PERSON.value
                    else AgentGrantRow.agent_id
                )
                revoked = list(
                    session.scalars(
                        select(AgentGrantRow.id)
                        .where(column == row.id)
                        .where(AgentGrantRow.revoked_at.is_(None))
                    )
                )
                if revoked:
                    session.execute(
                        update(AgentGrantRow)
                        .where(AgentGrantRow.id.in_(revoked))
                        .values(
                            revoked_at=now,
                            revoked_by_actor=principal.actor,
                            revoke_reason=f"{row.kind} cancelled: {reason}"[:REASON_LENGTH],
                        )
                    )
            session.flush()
            summary = _summary(row)
            audit.append(
                session,
                actor=principal.actor,
                action=f"identity.{action.value}",
                target=f"{row.kind}:{row.id}",
                details={
                    "from": before.value,
                    "to": target.value,
                    "reason": reason,
                    "revoked_grants": revoked,
                },
            )
            self.status_listeners.notify(session, summary, before, reason)
        log.info(
            "identity status changed",
            extra={"identity": row.id, "from": before.value, "to": target.value},
        )
        return summary

    # --- agent grants ---------------------------------------------------------------------

    def _active_filter(self, now: datetime) -> ColumnElement[bool]:
        return and_(
            AgentGrantRow.revoked_at.is_(None),
            AgentGrantRow.valid_from <= now,
            or_(AgentGrantRow.valid_until.is_(None), AgentGrantRow.valid_until > now),
        )

    def _active_grants(
        self, session: Session, legal_person_id: str, agent_id: str, scope: str | None
    ) -> list[AgentGrantRow]:
        stmt = (
            select(AgentGrantRow)
            .where(AgentGrantRow.legal_person_id == legal_person_id)
            .where(AgentGrantRow.agent_id == agent_id)
            .where(self._active_filter(self.now()))
        )
        if scope is not None:
            stmt = stmt.where(_has_scope(scope))
        return list(session.scalars(stmt))

    def _active_scopes(
        self, session: Session, legal_person_id: str, agent_id: str, scope: str | None
    ) -> set[str]:
        grants = self._active_grants(session, legal_person_id, agent_id, scope)
        if not grants:
            return set()
        return set(
            session.scalars(
                select(AgentGrantScopeRow.scope).where(
                    AgentGrantScopeRow.grant_id.in_([g.id for g in grants])
                )
            )
        )

    def _grant_authority(
        self, session: Session, principal: Principal, lp: LegalPersonRow, action: str
    ) -> tuple[str | None, set[str] | None, datetime | None, bool]:
        """Who acts on the legal person's grants: (citizen id or None for a registrar,
        scopes it may grant or None for all, latest end it may grant or None, unbounded)."""
        if principal.has_role(REGISTRAR):
            return None, None, None, True
        citizen_id = principal.citizen_id
        if citizen_id is None:
            raise PermissionDenied(
                f"{action} needs the legal representative, an agent holding {AGENT_MANAGE}, "
                f"or the {REGISTRAR} role"
            )
        actor = session.get(IdentityRow, citizen_id)
        if actor is None or actor.status != IdentityStatus.ACTIVE.value:
            raise PermissionDenied(f"{action}: the acting citizen is not active")
        if citizen_id == lp.legal_representative_id:
            return citizen_id, None, None, True
        managing = self._active_grants(session, lp.id, citizen_id, AGENT_MANAGE)
        if not managing:
            raise PermissionDenied(
                f"{action} needs the legal representative or an agent holding {AGENT_MANAGE}"
            )
        scopes = self._active_scopes(session, lp.id, citizen_id, AGENT_MANAGE)
        unbounded = any(g.valid_until is None for g in managing)
        ends = [as_utc(g.valid_until) for g in managing if g.valid_until is not None]
        return citizen_id, scopes, (None if unbounded else max(ends)), unbounded

    def grant_agent(
        self,
        principal: Principal,
        *,
        legal_person: IdentityRef,
        agent: IdentityRef,
        scopes: Sequence[str],
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> AgentGrant:
        """Authorise a citizen to act for a legal person (see the module docstring for who)."""
        now = self.now()
        start = as_utc(valid_from) if valid_from is not None else now
        end = _opt_utc(valid_until)
        wanted = sorted({s.strip() for s in scopes})
        violations: list[FieldViolation | None] = []
        if not wanted:
            violations.append(FieldViolation("scopes", "required: at least one scope"))
        for i, scope in enumerate(wanted):
            if scope not in AGENT_SCOPES:
                violations.append(
                    FieldViolation(f"scopes[{i}]", f"unknown scope; one of {sorted(AGENT_SCOPES)}")
                )
        if end is not None and end <= start:
            violations.append(FieldViolation("valid_until", "must be after valid_from"))
        if end is not None and end <= now:
            violations.append(FieldViolation("valid_until", "must be in the future"))
        _raise_if(violations)
        grant_id = _new_id("agt")
        with self.db.transaction() as session:
            lp_identity = self._resolve(
                session, legal_person, "legal_person", IdentityKind.LEGAL_PERSON
            )
            lp = session.get(LegalPersonRow, lp_identity.id)
            assert lp is not None
            agent_identity = self._resolve(session, agent, "agent", IdentityKind.CITIZEN)
            granted_by, may_grant, latest_end, unbounded = self._grant_authority(
                session, principal, lp, "granting an agent"
            )
            if may_grant is not None and not set(wanted) <= may_grant:
                raise PermissionDenied(
                    "an agent may only grant scopes it holds itself: "
                    + ", ".join(sorted(set(wanted) - may_grant))
                )
            if not unbounded and latest_end is not None and (end is None or end > latest_end):
                raise PermissionDenied(
                    "an agent may not grant beyond the end of its own authorisation"
                )
            for identity, what in ((lp_identity, "legal person"), (agent_identity, "agent")):
                if identity.status != IdentityStatus.ACTIVE.value:
                    raise FailedPrecondition(
                        f"the {what} is not active",
                        [
                            PreconditionViolation(
                                "STATUS", identity.id, f"{what} is {identity.status}"
                            )
                        ],
                    )
            current = session.scalar(
                select(AgentGrantRow.id)
                .where(AgentGrantRow.legal_person_id == lp.id)
                .where(AgentGrantRow.agent_id == agent_identity.id)
                .where(AgentGrantRow.revoked_at.is_(None))
                .where(or_(AgentGrantRow.valid_until.is_(None), AgentGrantRow.valid_until > now))
            )
            if current is not None:
                raise AlreadyExists(
                    f"the citizen already holds grant {current} for this legal person; "
                    "revoke it before granting anew"
                )
            row = AgentGrantRow(
                id=grant_id,
                legal_person_id=lp.id,
                agent_id=agent_identity.id,
                valid_from=start,
                valid_until=end,
                granted_by_id=granted_by,
                granted_by_actor=principal.actor,
                granted_at=now,
                revoked_at=None,
                revoked_by_id=None,
                revoked_by_actor=None,
                revoke_reason="",
            )
            session.add(row)
            session.flush()
            session.add_all(AgentGrantScopeRow(grant_id=grant_id, scope=s) for s in wanted)
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action="identity.agent.grant",
                target=f"agent_grant:{grant_id}",
                details={
                    "legal_person": lp.id,
                    "agent": agent_identity.id,
                    "scopes": wanted,
                    "valid_from": start.isoformat(),
                    "valid_until": end.isoformat() if end else None,
                    "granted_by": granted_by,
                },
            )
            return self._grants(session, [row])[0]

    def revoke_agent(self, principal: Principal, *, grant_id: str, reason: str) -> AgentGrant:
        """Revoke a grant: the representative, an agent holding agent.manage, a registrar, or
        the agent itself (renouncing). Anyone else is refused the same way whether the grant
        exists or not (authorise before telling NOT_FOUND)."""
        _raise_if(
            [
                FieldViolation("grant_id", "required") if not grant_id.strip() else None,
                _reason_violation("reason", reason),
            ]
        )
        now = self.now()
        denied = PermissionDenied(
            f"{principal.actor} may not revoke agent grant {grant_id.strip()}: only the agent, "
            f"the legal representative, an agent holding {AGENT_MANAGE} or the {REGISTRAR} "
            "role may"
        )
        with self.db.transaction() as session:
            row = session.get(AgentGrantRow, grant_id.strip())
            if row is None:
                # only a registrar, who may revoke any grant, learns that the id is unknown
                if principal.has_role(REGISTRAR):
                    raise NotFound("grant_id: no such agent grant")
                raise denied
            if principal.citizen_id is not None and principal.citizen_id == row.agent_id:
                revoked_by: str | None = row.agent_id
            else:
                lp = session.get(LegalPersonRow, row.legal_person_id)
                assert lp is not None
                try:
                    revoked_by = self._grant_authority(session, principal, lp, "revoking an agent")[
                        0
                    ]
                except PermissionDenied:
                    raise denied from None
            if row.revoked_at is not None:
                raise FailedPrecondition(
                    "the grant is already revoked",
                    [PreconditionViolation("STATUS", f"agent_grant:{row.id}", "revoked")],
                )
            row.revoked_at = now
            row.revoked_by_id = revoked_by
            row.revoked_by_actor = principal.actor
            row.revoke_reason = reason.strip()
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action="identity.agent.revoke",
                target=f"agent_grant:{row.id}",
                details={"reason": reason.strip(), "revoked_by": revoked_by},
            )
            return self._grants(session, [row])[0]

    def list_agents(
        self,
        principal: Principal,
        *,
        legal_person: IdentityRef | None = None,
        agent: IdentityRef | None = None,
        scope: str = "",
        include_inactive: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[AgentGrant]:
        """Grants of a legal person and/or to a citizen, newest first.

        Verifiers and registrars see any; a citizen sees the grants it holds, and the
        representative or an agent holding agent.manage sees the legal person's grants.
        """
        lp_ref = legal_person if legal_person is not None and not legal_person.is_empty else None
        agent_ref = agent if agent is not None and not agent.is_empty else None
        violations: list[FieldViolation | None] = []
        if lp_ref is None and agent_ref is None:
            violations.append(FieldViolation("legal_person", "legal_person or agent is required"))
        if scope and scope not in AGENT_SCOPES:
            violations.append(
                FieldViolation("scope", f"unknown scope; one of {sorted(AGENT_SCOPES)}")
            )
        _raise_if(violations)
        size = _page_size(page_size)
        now = self.now()
        with self.db.read() as session:
            lp_row = (
                self._resolve(session, lp_ref, "legal_person", IdentityKind.LEGAL_PERSON)
                if lp_ref
                else None
            )
            agent_row = (
                self._resolve(session, agent_ref, "agent", IdentityKind.CITIZEN)
                if agent_ref
                else None
            )
            if not (principal.has_role(VERIFIER) or principal.has_role(REGISTRAR)):
                own = agent_row is not None and principal.citizen_id == agent_row.id
                if not own:
                    if lp_row is None:
                        raise PermissionDenied(f"{principal.actor} may not list these grants")
                    lp = session.get(LegalPersonRow, lp_row.id)
                    assert lp is not None
                    self._grant_authority(session, principal, lp, "listing agents")
            filters = (
                "agents",
                lp_row.id if lp_row else "",
                agent_row.id if agent_row else "",
                scope,
                include_inactive,
            )
            position = _decode_token(page_token, filters, 2)
            stmt = select(AgentGrantRow)
            if lp_row is not None:
                stmt = stmt.where(AgentGrantRow.legal_person_id == lp_row.id)
            if agent_row is not None:
                stmt = stmt.where(AgentGrantRow.agent_id == agent_row.id)
            if scope:
                stmt = stmt.where(_has_scope(scope))
            if not include_inactive:
                stmt = stmt.where(self._active_filter(now))
            if position is not None:
                try:
                    at = datetime.fromisoformat(position[0])
                except ValueError:
                    raise InvalidArgument.field("page_token", "malformed") from None
                stmt = stmt.where(
                    or_(
                        AgentGrantRow.granted_at < at,
                        and_(AgentGrantRow.granted_at == at, AgentGrantRow.id < position[1]),
                    )
                )
            stmt = stmt.order_by(AgentGrantRow.granted_at.desc(), AgentGrantRow.id.desc())
            rows = list(session.scalars(stmt.limit(size + 1)))
            token = ""
            if len(rows) > size:
                rows = rows[:size]
                last = rows[-1]
                token = _encode_token(filters, as_utc(last.granted_at).isoformat(), last.id)
            return Page(tuple(self._grants(session, rows)), token)

    def _grants(self, session: Session, rows: Sequence[AgentGrantRow]) -> list[AgentGrant]:
        if not rows:
            return []
        scopes: dict[str, list[str]] = {r.id: [] for r in rows}
        for grant_id, scope in session.execute(
            select(AgentGrantScopeRow.grant_id, AgentGrantScopeRow.scope)
            .where(AgentGrantScopeRow.grant_id.in_(list(scopes)))
            .order_by(AgentGrantScopeRow.scope)
        ):
            scopes[grant_id].append(scope)
        people = self._summaries(
            session,
            [
                i
                for r in rows
                for i in (r.legal_person_id, r.agent_id, r.granted_by_id, r.revoked_by_id)
            ],
        )
        now = self.now()
        result = []
        for r in rows:
            start, end, revoked = (
                as_utc(r.valid_from),
                _opt_utc(r.valid_until),
                _opt_utc(r.revoked_at),
            )
            if revoked is not None:
                status = GrantStatus.REVOKED
            elif now < start:
                status = GrantStatus.NOT_YET_VALID
            elif end is not None and now >= end:
                status = GrantStatus.EXPIRED
            else:
                status = GrantStatus.ACTIVE
            result.append(
                AgentGrant(
                    id=r.id,
                    legal_person=people[r.legal_person_id],
                    agent=people[r.agent_id],
                    scopes=tuple(scopes[r.id]),
                    valid_from=start,
                    valid_until=end,
                    status=status,
                    granted_by=people.get(r.granted_by_id) if r.granted_by_id else None,
                    granted_by_actor=r.granted_by_actor,
                    granted_at=as_utc(r.granted_at),
                    revoked_by=people.get(r.revoked_by_id) if r.revoked_by_id else None,
                    revoked_by_actor=r.revoked_by_actor,
                    revoked_at=revoked,
                    revoke_reason=r.revoke_reason,
                )
            )
        return result


def _has_scope(scope: str) -> ColumnElement[bool]:
    return exists().where(
        AgentGrantScopeRow.grant_id == AgentGrantRow.id, AgentGrantScopeRow.scope == scope
    )
