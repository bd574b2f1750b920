"""Issuing licences and changing their status: IssueLicense, new versions, revoke/suspend/resume.

One write transaction per operation holds every change: the status-list index, the licence row
(signed data + offline QR payload), the superseded version's status and the audit record. The
holder is checked in the identity registry first (active citizen by resident ID number — code
type 111 — or active legal person by USCC — 001). The PDF document is not produced here yet.

Signing keys come from ``signers``: a callable from the issuing department's USCC to its
:class:`LicenceSigner` (the seal service will provide the department's seal key and chain).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.db import Database
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from govtrust.principal import LICENCE_ISSUER_PREFIX, Principal
from idp.registry import IdentityRegistry
from idp.types import IdentityRef, IdentityStatus
from license.catalogue import LicenceType, get_type, validate_fields, validate_validity
from license.identifiers import build_identifier, parse_identifier
from license.jws import LicenceSigner, b64url_decode
from license.models import LicenceRow, LicenceStatusListRow
from license.qr import encode_payload
from license.signed_data import (
    HOLDER_RESIDENT_ID,
    HOLDER_USCC,
    LicenceMetadata,
    sign_licence,
)
from license.status_list import allocate_index, refresh_status_list

# The registry's own reads need a verifier; issuance reads on the department's behalf.
_REGISTRY_READER = Principal(
    kind="system", subject="license-issuance", roles=frozenset({"verifier"})
)
MAX_REASON = 1000


@dataclass(frozen=True)
class IssueRequest:
    """What a department submits to issue a licence."""

    type_code: str
    issuer_code: str
    issuer_name: str
    holder_code_type: str  # 111 resident ID number, 001 USCC
    holder_code: str
    fields: Mapping[str, object]
    valid_from: date
    valid_until: date | None = None
    number: str = ""  # ZZBH; defaults to the serial
    serial: str = ""  # defaults to <year><random 10 digits>


@dataclass(frozen=True)
class IssuedLicence:
    """An issued licence version."""

    identifier: str
    metadata: LicenceMetadata
    signed_data: str
    qr_payload: str
    status: str = "valid"
    previous: str | None = None


@dataclass(frozen=True)
class StoredLicence:
    """A stored licence version and its secrets in clear (they are encrypted at rest)."""

    row: LicenceRow
    signed_data: str
    qr_payload: str
    document_pdf: bytes | None


class LicenceService:
    """Issuance and status changes over one database, registry and set of signers."""

    def __init__(
        self,
        db: Database,
        registry: IdentityRegistry,
        signers: Callable[[str], LicenceSigner],
        *,
        status_uri: Callable[[str], str] = lambda issuer: f"/licence/status/{issuer}",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.signers = signers
        self.status_uri = status_uri
        self._clock = clock or (lambda: datetime.now(UTC))

    # --- checks -------------------------------------------------------------------------

    @staticmethod
    def _authorise(principal: Principal, licence_type: LicenceType, issuer_code: str) -> None:
        if not principal.has_role(LICENCE_ISSUER_PREFIX + issuer_code):
            raise PermissionDenied(f"{principal.actor} may not issue for department {issuer_code}")
        if issuer_code not in licence_type.issuing_departments:
            raise PermissionDenied(
                f"department {issuer_code} may not issue licence type {licence_type.type_code}"
            )

    def _holder(self, licence_type: LicenceType, code_type: str, code: str) -> tuple[str, str, str]:
        """(identity id, holder name, normalised code) of an active holder."""
        if code_type not in licence_type.holder_code_types:
            allowed = ", ".join(licence_type.holder_code_types)
            raise InvalidArgument.field(
                "holder_code_type", f"this licence type is held by code types {allowed}"
            )
        if code_type == HOLDER_USCC:
            lp = self.registry.get_legal_person(_REGISTRY_READER, IdentityRef(uscc=code))
            identity = (lp.id, lp.name, lp.uscc, lp.status)
        elif code_type == HOLDER_RESIDENT_ID:
            ref = IdentityRef(resident_id_number=code)
            citizen = self.registry.get_citizen(_REGISTRY_READER, ref)
            number = self.registry.parse_resident_id(code, "holder_code").number
            identity = (citizen.id, citizen.name, number, citizen.status)
        else:
            raise InvalidArgument.field("holder_code_type", "must be 111 or 001")
        if identity[3] != IdentityStatus.ACTIVE:
            raise FailedPrecondition(f"the holder is {identity[3]}, not active")
        return identity[0], identity[1], identity[2]

    # --- issue --------------------------------------------------------------------------

    def issue(self, principal: Principal, request: IssueRequest) -> IssuedLicence:
        """IssueLicense: validate, assign the identifier, sign, store and audit in one go."""
        return self.issue_many(principal, [request])[0]

    def issue_many(
        self, principal: Principal, requests: Sequence[IssueRequest]
    ) -> list[IssuedLicence]:
        """Issue several licences in one transaction (all or none), one audit record each.

        Every request is validated first (errors name the request: ``requests[3].fields.KZ_MC``
        when there is more than one); the transaction then allocates status indexes, signs and
        stores. Batching amortises the commit and the audit-chain lock.
        """
        types: dict[str, LicenceType] = {}
        prepared = [
            self._prepare(principal, r, i, len(requests), types) for i, r in enumerate(requests)
        ]
        now = self._clock()
        out: list[IssuedLicence] = []
        per_issuer: dict[str, int] = {}
        for request in requests:
            per_issuer[request.issuer_code] = per_issuer.get(request.issuer_code, 0) + 1
        with self.db.transaction() as session:
            next_index = {
                issuer: allocate_index(session, issuer, count)
                for issuer, count in sorted(per_issuer.items())
            }
            seen: set[str] = set()
            for item in prepared:
                request, licence_type, fields, valid_until, holder, serial = item
                ident = str(
                    build_identifier(
                        licence_type.type_code, request.issuer_code, serial, 1,
                        allow_list=self.registry.uscc_allow_list,
                    )
                )  # fmt: skip
                if ident in seen or session.get(LicenceRow, ident) is not None:
                    raise AlreadyExists(f"a licence {ident} exists (serial {serial})")
                seen.add(ident)
                status_index = next_index[request.issuer_code]
                next_index[request.issuer_code] += 1
                metadata = LicenceMetadata(
                    name=licence_type.name,
                    type_code=licence_type.type_code,
                    number=request.number or serial,
                    identifier=ident,
                    issuer_name=request.issuer_name,
                    issuer_code=request.issuer_code,
                    issue_date=now.date(),
                    holder_name=holder[1],
                    holder_code=holder[2],
                    holder_code_type=request.holder_code_type,
                    valid_from=request.valid_from,
                    valid_until=valid_until,
                    fields=fields,
                    status_index=status_index,
                    status_uri=self.status_uri(request.issuer_code),
                )
                signer = self.signers(request.issuer_code)
                issued = self._store(session, signer, metadata, holder[0], now)
                audit.append(
                    session,
                    actor=principal.actor,
                    action="licence.issue",
                    target=issued.identifier,
                    details={"type": licence_type.type_code, "holder": holder[0]},
                )
                out.append(issued)
        return out

    def _prepare(
        self,
        principal: Principal,
        request: IssueRequest,
        index: int,
        count: int,
        types: dict[str, LicenceType],
    ) -> tuple[IssueRequest, LicenceType, dict[str, str], date | None, tuple[str, str, str], str]:
        try:
            licence_type = types.get(request.type_code)
            if licence_type is None:
                with self.db.read() as session:
                    licence_type = types[request.type_code] = get_type(session, request.type_code)
            self._authorise(principal, licence_type, request.issuer_code)
            fields = validate_fields(licence_type, request.fields)
            valid_until = validate_validity(licence_type, request.valid_from, request.valid_until)
            holder = self._holder(licence_type, request.holder_code_type, request.holder_code)
        except InvalidArgument as exc:
            if count == 1:
                raise
            raise InvalidArgument(
                f"requests[{index}]: {exc.message}",
                [
                    FieldViolation(f"requests[{index}].{v.field}", v.description)
                    for v in exc.violations
                ],
            ) from None
        year = self._clock().year
        serial = request.serial or f"{year}{secrets.randbelow(10**10):010d}"
        return request, licence_type, fields, valid_until, holder, serial

    def _store(
        self,
        session: Session,
        signer: LicenceSigner,
        metadata: LicenceMetadata,
        holder_id: str,
        now: datetime,
    ) -> IssuedLicence:
        signed = sign_licence(signer, metadata)
        qr = encode_payload(signer, metadata)
        ident = parse_identifier(metadata.identifier, check_uscc=False)
        assert metadata.status_index is not None
        session.add(
            LicenceRow(
                identifier=metadata.identifier,
                type_code=metadata.type_code,
                issuer_code=metadata.issuer_code,
                serial=ident.serial,
                version=ident.version,
                licence_number=metadata.number,
                holder_identity_id=holder_id,
                holder_code_type=metadata.holder_code_type,
                status="valid",
                status_reason="",
                status_index=metadata.status_index,
                valid_from=metadata.valid_from,
                valid_until=metadata.valid_until,
                issued_at=now,
                previous_identifier=metadata.previous,
                superseded_by=None,
                signing_key_id=signer.key.key_id,
                signed_data=signed,
                qr_payload=qr,
                document_pdf=None,
                updated_at=now,
            )
        )
        session.flush()
        return IssuedLicence(metadata.identifier, metadata, signed, qr, previous=metadata.previous)

    # --- versions and status ------------------------------------------------------------

    def _current(self, session: Session, principal: Principal, identifier: str) -> LicenceRow:
        parse_identifier(identifier, check_uscc=False)
        row = session.get(LicenceRow, identifier, with_for_update=True)
        if row is None:
            raise NotFound(f"no licence {identifier}")
        if not principal.has_role(LICENCE_ISSUER_PREFIX + row.issuer_code):
            raise PermissionDenied(f"{principal.actor} is not the issuer of {identifier}")
        return row

    def new_version(
        self,
        principal: Principal,
        identifier: str,
        *,
        fields: Mapping[str, object],
        reason: str,
        valid_until: date | None = None,
    ) -> IssuedLicence:
        """A changed licence (加注/变更): version N+1 linked to N; N is marked superseded."""
        reason = _reason(reason)
        now = self._clock()
        with self.db.transaction() as session:
            old = self._current(session, principal, identifier)
            if old.superseded_by is not None:
                raise FailedPrecondition(f"{identifier} is superseded by {old.superseded_by}")
            if old.status == "revoked":
                raise FailedPrecondition(f"{identifier} is revoked")
            licence_type = get_type(session, old.type_code)
            previous = LicenceMetadata.from_json(_payload(old.signed_data))
            merged = {**previous.fields, **fields}
            new_fields = validate_fields(licence_type, merged)
            end = validate_validity(
                licence_type, previous.valid_from, valid_until or previous.valid_until
            )
            ident = parse_identifier(identifier, check_uscc=False).with_version(old.version + 1)
            signer = self.signers(old.issuer_code)
            metadata = LicenceMetadata(
                **{
                    **previous.__dict__,
                    "identifier": str(ident),
                    "issue_date": now.date(),
                    "valid_until": end,
                    "fields": new_fields,
                    "status_index": allocate_index(session, old.issuer_code),
                    "previous": identifier,
                }
            )
            issued = self._store(session, signer, metadata, old.holder_identity_id, now)
            old.superseded_by = issued.identifier
            old.status = "revoked"
            old.status_reason = f"superseded by {issued.identifier}: {reason}"
            old.updated_at = now
            self._refresh(session, old.issuer_code)
            audit.append(
                session,
                actor=principal.actor,
                action="licence.new_version",
                target=issued.identifier,
                details={"previous": identifier, "reason": reason},
            )
        return issued

    def _set_status(
        self, principal: Principal, identifier: str, reason: str, allowed: set[str], new: str
    ) -> None:
        reason = _reason(reason)
        with self.db.transaction() as session:
            row = self._current(session, principal, identifier)
            if row.status not in allowed or row.superseded_by is not None:
                raise FailedPrecondition(f"cannot go from {row.status} to {new}")
            old = row.status
            row.status = new
            row.status_reason = reason
            row.updated_at = self._clock()
            self._refresh(session, row.issuer_code)
            audit.append(
                session,
                actor=principal.actor,
                action=f"licence.status.{new}",
                target=identifier,
                details={"from": old, "reason": reason},
            )

    def _refresh(self, session: Session, issuer_code: str) -> None:
        """Re-sign the issuer's status list in the same transaction as the change."""
        session.flush()
        refresh_status_list(
            session, self.signers(issuer_code), issuer_code, uri=self.status_uri(issuer_code)
        )

    def status_list_token(self, issuer_code: str) -> str:
        """The issuer's cached signed status list (signed now if none was cached yet)."""
        with self.db.read() as session:
            row = session.get(LicenceStatusListRow, issuer_code)
            if row is not None and row.token:
                return row.token
        with self.db.transaction() as session:
            return refresh_status_list(
                session, self.signers(issuer_code), issuer_code, uri=self.status_uri(issuer_code)
            )

    def revoke(self, principal: Principal, identifier: str, reason: str) -> None:
        """注销: valid or suspended → revoked (final)."""
        self._set_status(principal, identifier, reason, {"valid", "suspended"}, "revoked")

    def suspend(self, principal: Principal, identifier: str, reason: str) -> None:
        """Suspend a valid licence."""
        self._set_status(principal, identifier, reason, {"valid"}, "suspended")

    def resume(self, principal: Principal, identifier: str, reason: str) -> None:
        """Resume a suspended licence."""
        self._set_status(principal, identifier, reason, {"suspended"}, "valid")

    def stored(self, identifier: str) -> StoredLicence:
        """A licence version with its signed data, QR payload and document in clear (for the
        adapters that check or hand them out; callers decide who may see what)."""
        with self.db.read() as session:
            row = session.get(LicenceRow, identifier)
            if row is None:
                raise NotFound(f"no licence {identifier}")
            return StoredLicence(row, row.signed_data, row.qr_payload, row.document_pdf)

    def get(self, identifier: str) -> LicenceRow:
        """The stored licence row (adapters decide what to disclose)."""
        with self.db.read() as session:
            row = session.get(LicenceRow, identifier)
            if row is None:
                raise NotFound(f"no licence {identifier}")
            return row


def _reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise InvalidArgument.field("reason", "required")
    if len(text) > MAX_REASON or not text.isprintable():
        raise InvalidArgument.field("reason", f"at most {MAX_REASON} printable characters")
    return text


def _payload(token: str) -> dict[str, object]:
    data = json.loads(b64url_decode(token.split(".")[1]))
    assert isinstance(data, dict)
    return data
