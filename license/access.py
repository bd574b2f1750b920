"""Who may read a licence, holders' lists, and third-party access grants — every access audited.

A licence version is readable by:

* its issuing department (role ``licence-issuer:<dept>``);
* its holder: the citizen holding it, or for a legal person its legal representative or an
  agent holding the ``licence.apply`` scope (checked in the identity registry);
* a third party presenting the access code of a current grant for that very version, or a
  registered grantee authenticated as itself.

Holders grant access for a purpose and a time window; the code (256 random bits) is returned
once and stored as its SHA-256. Every successful read, list, grant and revocation appends an
audit record (grant ids and code hashes, never codes); a refused one changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.audit import RecordView
from govtrust.db import as_utc
from govtrust.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from govtrust.principal import LICENCE_ISSUER_PREFIX, Principal
from idp.types import IdentityRef
from license.days import licence_day
from license.identifiers import parse_identifier
from license.issuance import LicenceService, StoredLicence
from license.models import LicenceAccessGrantRow, LicenceRow
from license.signed_data import HOLDER_USCC
from license.verification import VERIFY_ACTION
from seal.owners import Owners

SCOPE_LICENCE = "licence.apply"
CODE_PREFIX = "LA1-"
MAX_GRANT_DAYS = 366
MAX_TEXT = 200
MAX_REASON = 1000
DEFAULT_PAGE = 50
MAX_PAGE = 500
LIST_STATUSES = frozenset({"valid", "suspended", "revoked", "superseded", "expired"})


class GrantState(StrEnum):
    """The state of an access grant at a moment."""

    ACTIVE = "active"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class GrantView:
    """An access grant as shown to its holder (never the code)."""

    id: str
    identifier: str
    grantee_id: str | None
    grantee_name: str
    purpose: str
    valid_from: datetime
    valid_until: datetime
    state: GrantState
    granted_by: str
    granted_by_id: str
    granted_at: datetime
    revoked_at: datetime | None
    access_count: int


@dataclass(frozen=True)
class CheckRecord:
    """One check of a licence by someone other than its holder, from the audit chain: a read by
    the issuing department or a grantee (``how`` ``read``), or a VerifyLicense whose evidence was
    this licence (``how`` ``verify``, matched by the evidence's SHA-256). Hashes only: never a
    code, a verifier's reference or the evidence itself."""

    seq: int
    at: datetime
    actor: str
    how: str  # read | verify
    role: str  # issuer | grantee (reads) or verifier
    evidence: str  # what was presented: licence / document, or the verify evidence kind
    outcome: str  # ok, or the verify verdict
    evidence_sha256: str  # verifications: the evidence's SHA-256 (hex); reads: ""
    grant_id: str = ""
    grantee_name: str = ""


@dataclass(frozen=True)
class Access:
    """A successful read: the licence in clear and on what ground it was read."""

    licence: StoredLicence
    role: str  # issuer | holder | representative | agent | grantee
    grant_id: str = ""


def code_hash(code: str) -> bytes:
    """SHA-256 of an access code (what is stored and audited)."""
    return hashlib.sha256(code.encode("utf-8")).digest()


def grant_state(row: LicenceAccessGrantRow, now: datetime) -> GrantState:
    """The state of a grant at ``now``."""
    if row.revoked_at is not None:
        return GrantState.REVOKED
    if now < as_utc(row.valid_from):
        return GrantState.NOT_YET_VALID
    if now >= as_utc(row.valid_until):
        return GrantState.EXPIRED
    return GrantState.ACTIVE


def grant_view(row: LicenceAccessGrantRow, now: datetime) -> GrantView:
    """The view of a stored grant."""
    return GrantView(
        row.id,
        row.identifier,
        row.grantee_id,
        row.grantee_name,
        row.purpose,
        as_utc(row.valid_from),
        as_utc(row.valid_until),
        grant_state(row, now),
        row.granted_by,
        row.granted_by_id,
        as_utc(row.granted_at),
        as_utc(row.revoked_at) if row.revoked_at is not None else None,
        row.access_count,
    )


def _text(value: str, field: str, *, required: bool, limit: int = MAX_TEXT) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidArgument.field(field, "required")
    if len(text) > limit or (text and not text.isprintable()):
        raise InvalidArgument.field(field, f"at most {limit} printable characters")
    return text


def page_bounds(page_size: int, page_token: str) -> tuple[int, int]:
    """(size, offset) of a paged request; INVALID_ARGUMENT for a bad size or token."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
    if not page_token:
        return size, 0
    if not page_token.isdigit() or len(page_token) > 9:
        raise InvalidArgument.field("page_token", "not a token from a previous response")
    return size, int(page_token)


class LicenceAccess:
    """Reads, lists and access grants over a :class:`LicenceService` and the registry."""

    def __init__(
        self,
        service: LicenceService,
        owners: Owners,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.service = service
        self.owners = owners
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- who is the holder ------------------------------------------------------------------

    def holder_role(self, principal: Principal, holder_id: str, holder_code_type: str) -> str:
        """``holder`` / ``representative`` / ``agent`` when the caller acts for the holder."""
        citizen = principal.citizen_id
        if citizen is None:
            return ""
        if holder_code_type != HOLDER_USCC:
            return "holder" if citizen == holder_id else ""
        representative, _active = self.owners.representative(holder_id)
        if citizen == representative:
            return "representative"
        if self.owners.holds_scope(holder_id, citizen, SCOPE_LICENCE):
            return "agent"
        return ""

    def _holder_of(self, principal: Principal, row: LicenceRow) -> str:
        role = self.holder_role(principal, row.holder_identity_id, row.holder_code_type)
        if not role:
            raise PermissionDenied(
                f"{principal.actor} is neither the holder of {row.identifier} nor its agent"
            )
        return role

    # --- reads --------------------------------------------------------------------------

    def read(
        self,
        principal: Principal,
        identifier: str,
        access_code: str = "",
        *,
        what: str,
        document_format: str = "",
    ) -> Access:
        """Read a licence (``what``: ``licence`` or ``document``, of ``document_format``
        ``pdf`` or ``ofd`` when given) as its issuer, holder/agent or a grantee (by
        ``access_code`` or as the registered grantee); audited. A document that is not there is
        NotFound before anything is recorded."""
        parse_identifier(identifier, check_uscc=False)
        now = self._clock()
        with self.service.db.transaction() as session:
            row = session.get(LicenceRow, identifier)
            if row is None:
                raise NotFound(f"no licence {identifier}")
            grant: LicenceAccessGrantRow | None = None
            if access_code:
                grant = self._grant_by_code(session, identifier, access_code, now)
                role = "grantee"
            elif principal.has_role(LICENCE_ISSUER_PREFIX + row.issuer_code):
                role = "issuer"
            else:
                role = self.holder_role(principal, row.holder_identity_id, row.holder_code_type)
                if not role:
                    grant = self._grant_for_grantee(session, principal, identifier, now)
                    role = "grantee"
            notes = self.service.annotations(session, [row]).get(identifier, ())
            stored = self.service.opened(row, notes)
            documents = {"pdf": stored.document_pdf, "ofd": stored.document_ofd}
            if what == "document" and document_format and documents[document_format] is None:
                raise NotFound(f"licence {identifier} has no {document_format.upper()} document")
            if what == "document" and not any(documents.values()):
                raise NotFound(f"licence {identifier} has no document")
            if grant is not None:
                grant.access_count += 1
                grant.last_access_at = now
            audit.append(
                session,
                actor=principal.actor,
                action=f"licence.read.{what}",
                target=identifier,
                details={
                    "role": role,
                    "acting_citizen": principal.citizen_id or "",
                    "grant": grant.id if grant is not None else "",
                    "code_sha256": code_hash(access_code).hex() if access_code else "",
                },
            )
        return Access(stored, role, grant.id if grant is not None else "")

    @staticmethod
    def _usable(grant: LicenceAccessGrantRow | None, identifier: str, now: datetime) -> None:
        if grant is None or grant.identifier != identifier:
            raise PermissionDenied(f"no access grant to {identifier} with this code")
        state = grant_state(grant, now)
        if state is not GrantState.ACTIVE:
            raise PermissionDenied(
                f"the access grant {grant.id} is {state.value.replace('_', ' ')}"
            )

    def _grant_by_code(
        self, session: Session, identifier: str, code: str, now: datetime
    ) -> LicenceAccessGrantRow:
        if len(code) > 200 or not code.startswith(CODE_PREFIX):
            raise PermissionDenied(f"no access grant to {identifier} with this code")
        grant = session.scalars(
            select(LicenceAccessGrantRow)
            .where(LicenceAccessGrantRow.code_hash == code_hash(code))
            .with_for_update()
        ).first()
        self._usable(grant, identifier, now)
        assert grant is not None
        return grant

    def _grant_for_grantee(
        self, session: Session, principal: Principal, identifier: str, now: datetime
    ) -> LicenceAccessGrantRow:
        denied = PermissionDenied(f"{principal.actor} may not read licence {identifier}")
        if principal.citizen_id is None:
            raise denied
        grants = session.scalars(
            select(LicenceAccessGrantRow)
            .where(
                LicenceAccessGrantRow.identifier == identifier,
                LicenceAccessGrantRow.grantee_id == principal.citizen_id,
            )
            .with_for_update()
        ).all()
        for grant in grants:
            if grant_state(grant, now) is GrantState.ACTIVE:
                return grant
        raise denied

    # --- lists --------------------------------------------------------------------------

    def list_for_holder(
        self,
        principal: Principal,
        holder: IdentityRef,
        *,
        type_code: str = "",
        status: str = "",
        include_superseded: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[StoredLicence], str]:
        """ListLicenses by holder, for the holder, its representative or agent; audited."""
        party = self.owners.party(holder, "holder")
        code_type = HOLDER_USCC if party.kind == "legal_person" else "111"
        if not self.holder_role(principal, party.id, code_type):
            raise PermissionDenied(f"{principal.actor} may not list the licences of {party.id}")
        query = select(LicenceRow).where(LicenceRow.holder_identity_id == party.id)
        return self._list(
            principal, query, f"holder/{party.id}", type_code, status, include_superseded,
            page_size, page_token,
        )  # fmt: skip

    def list_for_issuer(
        self,
        principal: Principal,
        issuer_code: str,
        *,
        type_code: str = "",
        status: str = "",
        include_superseded: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[StoredLicence], str]:
        """ListLicenses by issuing department, for that department; audited."""
        if not principal.has_role(LICENCE_ISSUER_PREFIX + issuer_code):
            raise PermissionDenied(f"{principal.actor} does not issue for {issuer_code}")
        query = select(LicenceRow).where(LicenceRow.issuer_code == issuer_code)
        return self._list(
            principal, query, f"issuer/{issuer_code}", type_code, status, include_superseded,
            page_size, page_token,
        )  # fmt: skip

    def _list(
        self,
        principal: Principal,
        query: Select[LicenceRow],
        target: str,
        type_code: str,
        status: str,
        include_superseded: bool,
        page_size: int,
        page_token: str,
    ) -> tuple[list[StoredLicence], str]:
        size, offset = page_bounds(page_size, page_token)
        if status and status not in LIST_STATUSES:
            raise InvalidArgument.field("status", f"one of {sorted(LIST_STATUSES)}")
        if type_code:
            query = query.where(LicenceRow.type_code == type_code)
        today = licence_day(self._clock())
        if status == "superseded":
            query = query.where(LicenceRow.superseded_by.is_not(None))
        else:
            if not include_superseded:
                query = query.where(LicenceRow.superseded_by.is_(None))
            if status == "expired":
                query = query.where(
                    LicenceRow.status == "valid",
                    LicenceRow.valid_until.is_not(None),
                    LicenceRow.valid_until < today,
                )
            elif status == "valid":
                query = query.where(
                    LicenceRow.status == "valid",
                    LicenceRow.superseded_by.is_(None),
                    (LicenceRow.valid_until.is_(None)) | (LicenceRow.valid_until >= today),
                )
            elif status:
                query = query.where(LicenceRow.status == status)
        query = query.order_by(LicenceRow.issued_at.desc(), LicenceRow.identifier.desc())
        with self.service.db.transaction() as session:
            rows = list(session.scalars(query.offset(offset).limit(size + 1)))
            more = len(rows) > size
            rows = rows[:size]
            notes = self.service.annotations(session, rows)
            items = [self.service.opened(r, notes.get(r.identifier, ())) for r in rows]
            audit.append(
                session,
                actor=principal.actor,
                action="licence.list",
                target=target,
                details={"count": len(items), "offset": offset},
            )
        return items, str(offset + size) if more else ""

    # --- grants -------------------------------------------------------------------------

    def grant(
        self,
        principal: Principal,
        identifier: str,
        *,
        grantee: IdentityRef | None,
        grantee_name: str,
        purpose: str,
        valid_from: datetime | None,
        valid_until: datetime | None,
    ) -> tuple[GrantView, str]:
        """GrantLicenseAccess by the holder (or its agent): a view and the code, shown once."""
        parse_identifier(identifier, check_uscc=False)
        name = _text(grantee_name, "grantee_name", required=False)
        purpose = _text(purpose, "purpose", required=True)
        now = self._clock()
        start = as_utc(valid_from) if valid_from is not None else now
        if valid_until is None:
            raise InvalidArgument.field("valid_until", "required")
        end = as_utc(valid_until)
        if end <= start or end <= now:
            raise InvalidArgument.field("valid_until", "must be after valid_from and now")
        if end - start > timedelta(days=MAX_GRANT_DAYS):
            raise InvalidArgument.field("valid_until", f"at most {MAX_GRANT_DAYS} days")
        grantee_id: str | None = None
        if grantee is not None and not grantee.is_empty:
            party = self.owners.party(grantee, "grantee")
            grantee_id = party.id
            name = name or party.name
        if not name:
            raise InvalidArgument.field("grantee_name", "required when no grantee is given")
        code = CODE_PREFIX + secrets.token_urlsafe(32)
        with self.service.db.transaction() as session:
            row = session.get(LicenceRow, identifier)
            if row is None:
                raise NotFound(f"no licence {identifier}")
            role = self._holder_of(principal, row)
            if row.superseded_by is not None or row.status == "revoked":
                raise FailedPrecondition(f"{identifier} is no longer current")
            grant = LicenceAccessGrantRow(
                id=str(uuid.uuid4()),
                identifier=identifier,
                holder_identity_id=row.holder_identity_id,
                grantee_id=grantee_id,
                grantee_name=name,
                purpose=purpose,
                code_hash=code_hash(code),
                valid_from=start,
                valid_until=end,
                granted_by=principal.actor,
                granted_by_id=principal.citizen_id or "",
                granted_at=now,
                revoked_at=None,
                revoked_reason="",
                access_count=0,
                last_access_at=None,
            )
            session.add(grant)
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action="licence.access.grant",
                target=identifier,
                details={
                    "grant": grant.id,
                    "role": role,
                    "grantee": grantee_id or "",
                    "purpose": purpose,
                    "valid_until": end.isoformat(),
                    "code_sha256": grant.code_hash.hex(),
                },
            )
            view = grant_view(grant, now)
        return view, code

    def revoke_grant(self, principal: Principal, grant_id: str, reason: str) -> GrantView:
        """RevokeLicenseAccess by the holder (or its agent); a revoked grant stays revoked.

        No role may revoke every grant, so a grant that does not exist is refused exactly like
        one the caller may not revoke: the answer never tells whether a grant id exists (nor
        which licence it belongs to)."""
        if not grant_id:
            raise InvalidArgument.field("grant_id", "required")
        reason = _text(reason, "reason", required=False, limit=MAX_REASON)
        now = self._clock()
        denied = PermissionDenied(
            f"{principal.actor} may not revoke access grant {grant_id}: only the licence's "
            "holder or its agent may"
        )
        with self.service.db.transaction() as session:
            grant = session.get(LicenceAccessGrantRow, grant_id, with_for_update=True)
            if grant is None:
                raise denied
            row = session.get(LicenceRow, grant.identifier)
            assert row is not None
            if not self.holder_role(principal, row.holder_identity_id, row.holder_code_type):
                raise denied
            if grant.revoked_at is not None:
                raise FailedPrecondition(f"the access grant {grant_id} is already revoked")
            grant.revoked_at = now
            grant.revoked_reason = reason
            audit.append(
                session,
                actor=principal.actor,
                action="licence.access.revoke",
                target=grant.identifier,
                details={"grant": grant_id, "reason": reason},
            )
            return grant_view(grant, now)

    # --- the holder's views: grants and who checked ------------------------------------------

    def _holder_row(self, session: Session, principal: Principal, identifier: str) -> LicenceRow:
        """The licence row when the caller acts for its holder; NotFound / PermissionDenied."""
        parse_identifier(identifier, check_uscc=False)
        row = session.get(LicenceRow, identifier)
        if row is None:
            raise NotFound(f"no licence {identifier}")
        self._holder_of(principal, row)
        return row

    def list_grants(self, principal: Principal, identifier: str) -> list[GrantView]:
        """The access grants of licence version ``identifier`` (newest first), for its holder or
        agent; audited (``licence.access.list``). Never the codes."""
        now = self._clock()
        with self.service.db.transaction() as session:
            row = self._holder_row(session, principal, identifier)
            grants = session.scalars(
                select(LicenceAccessGrantRow)
                .where(LicenceAccessGrantRow.identifier == row.identifier)
                .order_by(LicenceAccessGrantRow.granted_at.desc(), LicenceAccessGrantRow.id)
            ).all()
            views = [grant_view(g, now) for g in grants]
            audit.append(
                session,
                actor=principal.actor,
                action="licence.access.list",
                target=identifier,
                details={"count": len(views)},
            )
        return views

    def checks(
        self, principal: Principal, identifier: str, *, limit: int = 200
    ) -> list[CheckRecord]:
        """Who checked licence version ``identifier`` (newest first), for its holder or agent:
        reads by the issuing department or a grantee (``licence.read.*``), and verifications
        (the verification service's ``verify.license``, LicenseService's ``licence.verify``)
        whose evidence's SHA-256 is that of the identifier, the signed data, the QR payload or
        a document of this version. From the audit chain; records nothing (it reads the record
        of what others did)."""
        with self.service.db.read() as session:
            row = self._holder_row(session, principal, identifier)
            notes = self.service.annotations(session, [row]).get(identifier, ())
            stored = self.service.opened(row, notes)
            forms: list[bytes] = [
                identifier.encode(),
                stored.signed_data.encode(),
                stored.qr_payload.encode(),
            ]
            forms += [d for d in (stored.document_pdf, stored.document_ofd) if d is not None]
            digests = ["sha256:" + hashlib.sha256(f).hexdigest() for f in forms if f]
            reads = audit.records_about(
                session, [identifier], action_prefixes=["licence.read."], limit=limit
            )
            verifications = audit.records_about(
                session, digests, actions=["verify.license", VERIFY_ACTION], limit=limit
            )
            grant_ids = {str(r.details.get("grant", "")) for r in reads} - {""}
            names = (
                dict(
                    session.execute(
                        select(LicenceAccessGrantRow.id, LicenceAccessGrantRow.grantee_name).where(
                            LicenceAccessGrantRow.id.in_(grant_ids)
                        )
                    ).all()
                )
                if grant_ids
                else {}
            )
        found = [_read_check(r, names) for r in reads if r.details.get("role") in _OTHERS]
        found += [_verify_check(r) for r in verifications]
        found.sort(key=lambda c: c.seq, reverse=True)
        return found[:limit]


_OTHERS = frozenset({"issuer", "grantee"})  # readers who are not the holder's side


def _read_check(record: RecordView, names: dict[str, str]) -> CheckRecord:
    grant = str(record.details.get("grant", ""))
    return CheckRecord(
        record.seq,
        record.recorded_at,
        record.actor,
        "read",
        str(record.details.get("role", "")),
        record.action.removeprefix("licence.read."),
        record.outcome,
        "",
        grant,
        names.get(grant, ""),
    )


def _verify_check(record: RecordView) -> CheckRecord:
    return CheckRecord(
        record.seq,
        record.recorded_at,
        record.actor,
        "verify",
        "verifier",
        str(record.details.get("evidence_kind", "")),
        str(record.details.get("verdict", record.outcome)),
        record.target.removeprefix("sha256:"),
    )
