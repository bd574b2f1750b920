"""gRPC adapter of ``govtrust.v1.LicenseService`` over :mod:`license`.

Thin by design, like :mod:`govtrust.api.seal`: each method converts the request, calls the
domain with the caller's principal in the ``run_sync`` pool and converts the result; domain
errors propagate to the platform interceptor (INVALID_ARGUMENT with field violations,
NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED, UNAVAILABLE). Every RPC is implemented.

* Catalogue: :mod:`license.catalogue`. Issuance, annotation (a new version) and status changes:
  :class:`license.issuance.LicenceService` — in production (:func:`servicer`, over
  :func:`license.runtime.runtime_for`) signed with the issuing department's official seal, the
  PDF sealed at PAdES B-T unless ``skip_document``, the seal's use recorded with the licence.
* Reads, lists and access grants (every access audited): :class:`license.access.LicenceAccess`.
* VerifyLicense: the one licence verification, :class:`license.verification.LicenceVerifier`
  (signed data and identifier against the CA roots, QR payloads against the runtime's trust
  list, PDFs by their seal and embedded data); the status from the issuer's signed status list;
  audited as ``licence.verify`` (the evidence's SHA-256, the verdict, the caller).

Mapping notes:

* IssueLicense: ``request_id`` is an idempotency key per issuing department (a repeat with the
  same body answers the licence already issued; another body, ALREADY_EXISTS; a duplicate of a
  request still being issued by another call, after a wait of at most 2 s, UNAVAILABLE with
  reason ``REQUEST_IN_PROGRESS`` — retry with the same key; see :mod:`license.issuance`);
  ``holder.name``, when given, must match the registry's name (INVALID_ARGUMENT on
  ``holder.name``); ``issue_date`` must be empty or today.
* Validity lengths: ``default_days``/``max_days`` that are multiples of 365 are kept as whole
  years (the same calendar date N years later), others as days.
* ``License.annotations``: ``annotated_by`` carries the principal (``display_name``, e.g.
  ``service:amr-system``) and, when a person acted, their citizen id (``id``).
* Types have revisions (DefineLicenseType on an existing code makes the next one unless the
  definition is unchanged); GetLicenseType reads any revision; licences report theirs.

Known gaps of the mapping:

* ``LicenseType.public_metadata_fields`` is not stored (the public page shows a fixed set of
  metadata) and issuing departments are returned by code only (no names);
* ``LicenseMetadata.zzqzsj``/``zzqzmc`` (signing time, seal name) are not recorded;
* signed JSON verification reports are not offered.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509

from govtrust.api.identity import parse_ref
from govtrust.errors import (
    FailedPrecondition,
    FieldViolation,
    GovtrustError,
    InvalidArgument,
    PermissionDenied,
)
from govtrust.principal import Principal
from govtrust.rpc.context import current_principal
from govtrust.rpc.convert import time_in, timestamp_pb
from govtrust.rpc.offload import run_sync
from govtrust.v1 import common_pb2, license_pb2, license_pb2_grpc
from idp.identifiers import InvalidIdentifier, parse_uscc
from license import bulk_issuance, catalogue
from license.access import GrantState, GrantView, LicenceAccess, page_bounds
from license.bulk_issuance import RowOutcome, SourceRow
from license.catalogue import FieldSpec, FieldType, LicenceType, ValidityRule
from license.checking import LicenceCheck, State, Verdict
from license.days import licence_day
from license.issuance import (
    IssuedLicence,
    IssueRequest,
    LicenceService,
    StoredLicence,
    issuing_department,
)
from license.qr import TrustList
from license.records import EffectiveStatus, effective_status
from license.signed_data import HOLDER_RESIDENT_ID, HOLDER_USCC, LicenceMetadata
from license.signer import unverified_payload
from license.status_list import BITS
from license.verification import LicenceForm, LicenceVerifier
from seal.owners import RegistryOwners

if TYPE_CHECKING:
    from govtrust.platform import Platform

DAYS_PER_YEAR = 365

_FIELD_TYPE = {
    FieldType.STRING: license_pb2.FIELD_TYPE_STRING,
    FieldType.DATE: license_pb2.FIELD_TYPE_DATE,
    FieldType.INTEGER: license_pb2.FIELD_TYPE_INTEGER,
    FieldType.DECIMAL: license_pb2.FIELD_TYPE_DECIMAL,
    FieldType.USCC: license_pb2.FIELD_TYPE_USCC,
    FieldType.RESIDENT_ID: license_pb2.FIELD_TYPE_RESIDENT_ID,
    FieldType.ENUM: license_pb2.FIELD_TYPE_ENUM,
    FieldType.BOOLEAN: license_pb2.FIELD_TYPE_BOOLEAN,
}
_FIELD_TYPE_IN = {
    license_pb2.FIELD_TYPE_UNSPECIFIED: FieldType.STRING,
    license_pb2.FIELD_TYPE_STRING: FieldType.STRING,
    license_pb2.FIELD_TYPE_DATE: FieldType.DATE,
    license_pb2.FIELD_TYPE_INTEGER: FieldType.INTEGER,
    license_pb2.FIELD_TYPE_DECIMAL: FieldType.DECIMAL,
    license_pb2.FIELD_TYPE_ENUM: FieldType.ENUM,
    license_pb2.FIELD_TYPE_BOOLEAN: FieldType.BOOLEAN,
    license_pb2.FIELD_TYPE_USCC: FieldType.USCC,
    license_pb2.FIELD_TYPE_RESIDENT_ID: FieldType.RESIDENT_ID,
}
_HOLDER = {HOLDER_USCC: license_pb2.HOLDER_CODE_TYPE_USCC, HOLDER_RESIDENT_ID: 111}
_FORMAT = {
    "pdf": license_pb2.LICENSE_DOCUMENT_FORMAT_PDF,
    "ofd": license_pb2.LICENSE_DOCUMENT_FORMAT_OFD,
}
_FORMAT_IN = {v: k for k, v in _FORMAT.items()}
MEDIA_TYPES = {"pdf": "application/pdf", "ofd": "application/ofd"}
"""The media type of each licence document format (OFD: as GB/T 33190 implementations use)."""
_HOLDER_IN = {v: k for k, v in _HOLDER.items()}
_STATUS = {
    EffectiveStatus.VALID: common_pb2.LICENSE_STATUS_VALID,
    EffectiveStatus.SUSPENDED: common_pb2.LICENSE_STATUS_SUSPENDED,
    EffectiveStatus.REVOKED: common_pb2.LICENSE_STATUS_REVOKED,
    EffectiveStatus.SUPERSEDED: common_pb2.LICENSE_STATUS_SUPERSEDED,
    EffectiveStatus.EXPIRED: common_pb2.LICENSE_STATUS_EXPIRED,
    EffectiveStatus.NOT_YET_VALID: common_pb2.LICENSE_STATUS_NOT_YET_VALID,
}
_STATUS_FILTER = {
    common_pb2.LICENSE_STATUS_UNSPECIFIED: "",
    common_pb2.LICENSE_STATUS_VALID: "valid",
    common_pb2.LICENSE_STATUS_SUSPENDED: "suspended",
    common_pb2.LICENSE_STATUS_REVOKED: "revoked",
    common_pb2.LICENSE_STATUS_SUPERSEDED: "superseded",
    common_pb2.LICENSE_STATUS_EXPIRED: "expired",
}
_EVIDENCE_KIND = {
    "identifier": common_pb2.EVIDENCE_KIND_LICENSE_IDENTIFIER,
    "signed_data": common_pb2.EVIDENCE_KIND_LICENSE_SIGNED_DATA,
    "qr_payload": common_pb2.EVIDENCE_KIND_LICENSE_QR_PAYLOAD,
    "document": common_pb2.EVIDENCE_KIND_LICENSE_DOCUMENT,
}
_GRANT_STATUS = {
    GrantState.ACTIVE: common_pb2.GRANT_STATUS_ACTIVE,
    GrantState.NOT_YET_VALID: common_pb2.GRANT_STATUS_NOT_YET_VALID,
    GrantState.EXPIRED: common_pb2.GRANT_STATUS_EXPIRED,
    GrantState.REVOKED: common_pb2.GRANT_STATUS_REVOKED,
}


def _date_in(field: str, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument.field(field, "must be a date YYYY-MM-DD") from None


def _length_in(field: str, days: int) -> tuple[int | None, int | None]:
    """(years, days) of a validity length in days: multiples of 365 are whole years."""
    if days == 0:
        return None, None
    if days < 0:
        raise InvalidArgument.field(field, "must not be negative (0: none)")
    if days % DAYS_PER_YEAR == 0:
        return days // DAYS_PER_YEAR, None
    return None, days


def _length_pb(years: int | None, days: int | None) -> int:
    return days if days is not None else (years or 0) * DAYS_PER_YEAR


# --- catalogue ----------------------------------------------------------------------------------


def type_pb(licence_type: LicenceType) -> license_pb2.LicenseType:
    """The protobuf of a licence type (validity lengths in days, whole years as 365 each)."""
    rule = licence_type.validity
    return license_pb2.LicenseType(
        type_code=licence_type.type_code,
        name=licence_type.name,
        name_en=licence_type.name_en,
        defining_authority=license_pb2.Department(
            code=licence_type.defining_authority_code, name=licence_type.defining_authority
        ),
        issuing_departments=[
            license_pb2.Department(code=code) for code in licence_type.issuing_departments
        ],
        holder_code_types=[_HOLDER[c] for c in licence_type.holder_code_types],  # type: ignore[misc]
        fields=[
            license_pb2.FieldDefinition(
                name=spec.name,
                label=spec.label,
                label_en=spec.label_en,
                value_type=_FIELD_TYPE[spec.type],
                required=spec.required,
                pattern=spec.format or "",
                max_length=spec.max_length,
                allowed_values=list(spec.allowed_values),
                public=spec.public,
            )
            for spec in licence_type.fields
        ],
        validity=license_pb2.ValidityRule(
            default_days=_length_pb(rule.default_years, rule.default_days),
            max_days=_length_pb(rule.max_years, rule.max_days),
            long_term_allowed=rule.long_term_allowed,
        ),
        layout_json=json.dumps(dict(licence_type.layout), ensure_ascii=False, sort_keys=True),
        revision=licence_type.revision,
        created_at=timestamp_pb(licence_type.created_at),
        document_formats=[_FORMAT[f] for f in licence_type.document_formats],
    )


def type_in(message: license_pb2.LicenseType) -> LicenceType:
    """The domain licence type of a request (the domain validates the rest)."""
    violations: list[FieldViolation] = []
    prefix = "license_type"
    holder_types: list[str] = []
    for i, code in enumerate(message.holder_code_types):
        if code not in _HOLDER_IN:
            violations.append(FieldViolation(f"{prefix}.holder_code_types[{i}]", "001 or 111"))
        else:
            holder_types.append(_HOLDER_IN[code])
    fields: list[FieldSpec] = []
    for i, item in enumerate(message.fields):
        if item.value_type not in _FIELD_TYPE_IN:
            violations.append(
                FieldViolation(f"{prefix}.fields[{i}].value_type", "not a known field type")
            )
            continue
        fields.append(
            FieldSpec(
                name=item.name,
                label=item.label or item.name,
                type=_FIELD_TYPE_IN[item.value_type],
                required=item.required,
                format=item.pattern or None,
                max_length=item.max_length or catalogue.MAX_FIELD_LENGTH,
                public=item.public,
                label_en=item.label_en,
                allowed_values=tuple(item.allowed_values),
            )
        )
    layout: dict[str, Any] = {}
    if message.layout_json:
        try:
            parsed = json.loads(message.layout_json)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            violations.append(FieldViolation(f"{prefix}.layout_json", "must be a JSON object"))
        else:
            layout = parsed
    formats: list[str] = []
    for i, value in enumerate(message.document_formats):
        if value not in _FORMAT_IN:
            violations.append(FieldViolation(f"{prefix}.document_formats[{i}]", "PDF or OFD"))
        else:
            formats.append(_FORMAT_IN[value])
    rule = message.validity
    try:
        default = _length_in(f"{prefix}.validity.default_days", rule.default_days)
        longest = _length_in(f"{prefix}.validity.max_days", rule.max_days)
        validity = ValidityRule(
            default_years=default[0],
            default_days=default[1],
            max_years=longest[0],
            max_days=longest[1],
            long_term_allowed=rule.long_term_allowed,
        )
    except InvalidArgument as exc:
        violations.extend(exc.violations)
        validity = ValidityRule()
    if violations:
        raise InvalidArgument("invalid licence type", violations)
    return LicenceType(
        type_code=message.type_code,
        name=message.name,
        name_en=message.name_en,
        defining_authority=message.defining_authority.name,
        issuing_departments=tuple(d.code for d in message.issuing_departments),
        holder_code_types=tuple(holder_types),
        fields=tuple(fields),
        validity=validity,
        layout=layout,
        document_formats=tuple(formats) or ("pdf",),
    )


# --- licences ----------------------------------------------------------------------------------


def metadata_pb(meta: LicenceMetadata) -> license_pb2.LicenseMetadata:
    """The protobuf of licence metadata (the signing time and seal name are not recorded)."""
    return license_pb2.LicenseMetadata(
        zzmc=meta.name,
        zzlxdm=meta.type_code,
        zzbh=meta.number,
        zzbs=meta.identifier,
        zzbfjg=meta.issuer_name,
        zzbfjgdm=meta.issuer_code,
        zzbfrq=meta.issue_date.isoformat(),
        czzt=meta.holder_name,
        czztdm=meta.holder_code,
        czztdmlx=meta.holder_code_type,
        zzyxqqsrq=meta.valid_from.isoformat(),
        zzyxqjzrq=meta.valid_until.isoformat() if meta.valid_until else "",
        zzqzr=meta.issuer_name,
        kz=dict(meta.fields),
    )


def licence_pb(stored: StoredLicence, verify_url: str = "") -> license_pb2.License:
    """The protobuf of a stored licence version (for its issuer, holder or grantee)."""
    row = stored.row
    meta = LicenceMetadata.from_json(unverified_payload(stored.signed_data))
    status = _STATUS[effective_status(row, _today())]
    kind = (
        common_pb2.IDENTITY_KIND_LEGAL_PERSON
        if row.holder_code_type == HOLDER_USCC
        else common_pb2.IDENTITY_KIND_CITIZEN
    )
    digest, ofd_digest = (
        common_pb2.Digest(
            algorithm=common_pb2.DIGEST_ALGORITHM_SHA256, value=hashlib.sha256(document).digest()
        )
        if document
        else None
        for document in (stored.document_pdf, stored.document_ofd)
    )
    return license_pb2.License(
        identifier=row.identifier,
        version=row.version,
        serial=row.serial,
        metadata=metadata_pb(meta),
        status=status,
        status_reason=row.status_reason,
        holder=common_pb2.IdentitySummary(
            id=row.holder_identity_id,
            kind=kind,
            display_name=meta.holder_name,
        ),
        type_revision=row.type_revision,
        signed_data=stored.signed_data,
        qr_payload=stored.qr_payload,
        verification_url=verify_url,
        document_digest=digest,
        ofd_document_digest=ofd_digest,
        status_list_index=row.status_index,
        previous_identifier=row.previous_identifier or "",
        next_identifier=row.superseded_by or "",
        annotations=[
            license_pb2.Annotation(
                identifier=note.identifier,
                text=note.text,
                changed_fields=list(note.changed_fields),
                annotated_by=common_pb2.IdentitySummary(
                    id=note.annotated_by_id, display_name=note.annotated_by
                ),
                annotated_at=timestamp_pb(note.annotated_at),
            )
            for note in stored.annotations
        ],
        issued_at=timestamp_pb(row.issued_at),
        updated_at=timestamp_pb(row.updated_at),
    )


def grant_pb(view: GrantView) -> license_pb2.LicenseAccessGrant:
    """The protobuf of an access grant (never the code)."""
    return license_pb2.LicenseAccessGrant(
        id=view.id,
        identifier=view.identifier,
        grantee=(
            common_pb2.IdentitySummary(id=view.grantee_id, display_name=view.grantee_name)
            if view.grantee_id
            else None
        ),
        grantee_name=view.grantee_name,
        purpose=view.purpose,
        valid_from=timestamp_pb(view.valid_from),
        valid_until=timestamp_pb(view.valid_until),
        status=_GRANT_STATUS[view.state],
        granted_by=common_pb2.IdentitySummary(id=view.granted_by_id)
        if view.granted_by_id
        else None,
        granted_at=timestamp_pb(view.granted_at),
        revoked_at=timestamp_pb(view.revoked_at),
        access_count=view.access_count,
    )


def _today() -> date:
    return licence_day()  # licence dates are Beijing calendar days


# Domain field names of IssueRequest → the request's field paths.
_ISSUE_FIELDS = {
    "holder_code_type": "holder.code_type",
    "holder_code": "holder.code",
    "holder_name": "holder.name",
}


def _request_fields(exc: InvalidArgument) -> InvalidArgument:
    """``exc`` with its violations named as the IssueLicense request's fields."""
    if not any(v.field in _ISSUE_FIELDS for v in exc.violations):
        return exc
    renamed = [
        FieldViolation(_ISSUE_FIELDS.get(v.field, v.field), v.description) for v in exc.violations
    ]
    message = exc.message
    for old, new in _ISSUE_FIELDS.items():
        if message.startswith(old + ":"):
            message = new + message[len(old) :]
    return InvalidArgument(message, renamed)


# --- verification -------------------------------------------------------------------------------

_VERDICT = {
    Verdict.VALID: common_pb2.VERDICT_VALID,
    Verdict.INVALID: common_pb2.VERDICT_INVALID,
    Verdict.INDETERMINATE: common_pb2.VERDICT_INDETERMINATE,
}
_REASON = {
    "MALFORMED": common_pb2.REASON_CODE_FORMAT_ERROR,
    "UNSUPPORTED_ALGORITHM": common_pb2.REASON_CODE_SIGNATURE_INVALID,
    "MISSING_CHAIN": common_pb2.REASON_CODE_UNKNOWN_ISSUER,
    "UNTRUSTED_CHAIN": common_pb2.REASON_CODE_CHAIN_INVALID,
    "UNKNOWN_KEY": common_pb2.REASON_CODE_UNKNOWN_ISSUER,
    "CERTIFICATE_EXPIRED": common_pb2.REASON_CODE_CERTIFICATE_EXPIRED,
    "WRONG_CERTIFICATE": common_pb2.REASON_CODE_KEY_USAGE_MISMATCH,
    "BAD_SIGNATURE": common_pb2.REASON_CODE_SIGNATURE_INVALID,
    "ISSUER_MISMATCH": common_pb2.REASON_CODE_LICENSE_MISMATCH,
    "STALE_STATUS_LIST": common_pb2.REASON_CODE_REVOCATION_UNKNOWN,
    "STATUS_UNKNOWN": common_pb2.REASON_CODE_REVOCATION_UNKNOWN,
    "REVOKED": common_pb2.REASON_CODE_LICENSE_REVOKED,
    "SUSPENDED": common_pb2.REASON_CODE_LICENSE_SUSPENDED,
    "EXPIRED": common_pb2.REASON_CODE_LICENSE_EXPIRED,
    "NOT_YET_VALID": common_pb2.REASON_CODE_UNSPECIFIED,  # no dedicated code in the contract
    # the sealed document's checks (license.document_check, license.ofd_check)
    **{
        f"{kind}_{name}": code
        for kind in ("PDF", "OFD")
        for name, code in (
            ("UNSEALED", common_pb2.REASON_CODE_NO_SIGNATURE),
            ("SIGNATURE_INVALID", common_pb2.REASON_CODE_SIGNATURE_INVALID),
            ("UNTRUSTED", common_pb2.REASON_CODE_UNKNOWN_ISSUER),
            ("TIMESTAMP_INVALID", common_pb2.REASON_CODE_TIMESTAMP_INVALID),
            ("MODIFIED", common_pb2.REASON_CODE_DISALLOWED_MODIFICATION),
            ("SIGNER_MISMATCH", common_pb2.REASON_CODE_LICENSE_MISMATCH),
        )
    },
    "QR_MISMATCH": common_pb2.REASON_CODE_LICENSE_MISMATCH,
}
_STATE = {
    State.VALID: common_pb2.LICENSE_STATUS_VALID,
    State.REVOKED: common_pb2.LICENSE_STATUS_REVOKED,
    State.SUSPENDED: common_pb2.LICENSE_STATUS_SUSPENDED,
    State.EXPIRED: common_pb2.LICENSE_STATUS_EXPIRED,
    State.NOT_YET_VALID: common_pb2.LICENSE_STATUS_NOT_YET_VALID,
    State.UNKNOWN: common_pb2.LICENSE_STATUS_UNSPECIFIED,
}


def _reasons(check: LicenceCheck) -> list[common_pb2.Reason]:
    """Domain reasons → contract reasons (a signature failure is ``(code, message)``)."""
    if check.state is State.UNKNOWN and check.verdict is Verdict.INVALID:
        code, message = check.reasons[0], " ".join(check.reasons[1:])
        return [
            common_pb2.Reason(
                code=_REASON.get(code, common_pb2.REASON_CODE_UNSPECIFIED), message=message or code
            )
        ]
    return [
        common_pb2.Reason(code=_REASON.get(r, common_pb2.REASON_CODE_UNSPECIFIED), message=r)
        for r in check.reasons
    ]


# --- bulk issuance ------------------------------------------------------------------------------

BULK_CHUNK = 100
"""IssueLicenses rows per :meth:`LicenceService.issue_rows` call (one store transaction)."""
_BULK_STATUS = {
    "issued": license_pb2.BULK_ISSUE_STATUS_ISSUED,
    "existing": license_pb2.BULK_ISSUE_STATUS_EXISTING,
    "refused": license_pb2.BULK_ISSUE_STATUS_REFUSED,
}
# A row whose message cannot become a request: why (else MALFORMED_ROW).
_BULK_REFUSAL: dict[type[GovtrustError], str] = {
    PermissionDenied: bulk_issuance.NOT_AUTHORISED,  # not the caller's department
    FailedPrecondition: bulk_issuance.NO_ACTIVE_SEAL,  # the department's signer
}


def _bulk_pb(index: int, outcome: RowOutcome) -> license_pb2.IssueLicensesResponse:
    return license_pb2.IssueLicensesResponse(
        index=index,
        source_key=outcome.source_key,
        status=_BULK_STATUS[outcome.status],
        identifier=outcome.identifier,
        reason=outcome.reason,
        message=outcome.message,
    )


class LicenseServicer(license_pb2_grpc.LicenseServiceServicer):
    """``govtrust.v1.LicenseService`` over a :class:`LicenceService`.

    ``roots`` (the CA roots) check signed data and status lists; ``trust`` gives the roots
    plus the known department signing chains (for QR payloads; a callable is asked on each
    check, so a refreshed trust list applies). ``verify_url`` names the public page.
    """

    def __init__(
        self,
        service: LicenceService,
        *,
        roots: Sequence[x509.Certificate],
        trust: TrustList | Callable[[], TrustList] | None = None,
        verify_url: Callable[[str], str] | None = None,
        access: LicenceAccess | None = None,
    ) -> None:
        if not roots:
            raise ValueError("the licence servicer needs the CA roots")
        self.service = service
        self.roots = tuple(roots)
        fixed = trust if trust is not None else TrustList(self.roots)
        self._trust: Callable[[], TrustList] = fixed if callable(fixed) else (lambda: fixed)
        self.verify_url = verify_url or service.verify_url
        self.access = access or LicenceAccess(service, RegistryOwners(service.registry))

    def _pb(self, stored: StoredLicence) -> license_pb2.License:
        return licence_pb(stored, self.verify_url(stored.row.identifier))

    # --- helpers (run in the pool) --------------------------------------------------------------

    def _get_type(self, type_code: str, revision: int = 0) -> LicenceType:
        with self.service.db.read() as session:
            return catalogue.get_type(session, type_code, revision)

    def _list_types(self, issuer_code: str) -> list[LicenceType]:
        with self.service.db.read() as session:
            types = catalogue.list_types(session)
        if issuer_code:
            types = [t for t in types if issuer_code in t.issuing_departments]
        return types

    def _define(self, principal: Principal, licence_type: LicenceType) -> LicenceType:
        with self.service.db.transaction() as session:  # a new type, or its next revision
            return catalogue.define_type(session, principal, licence_type, replace=True)

    def _read(
        self,
        principal: Principal,
        identifier: str,
        access_code: str,
        what: str,
        document_format: str = "",
    ) -> StoredLicence:
        if not identifier:
            raise InvalidArgument.field("identifier", "required")
        return self.access.read(
            principal, identifier, access_code, what=what, document_format=document_format
        ).licence

    def _change(
        self,
        change: Callable[[Principal, str, str], None],
        principal: Principal,
        identifier: str,
        reason: str,
    ) -> StoredLicence:
        if not identifier:
            raise InvalidArgument.field("identifier", "required")
        change(principal, identifier, reason)
        return self.service.stored(identifier)

    def _issue_request(
        self,
        principal: Principal,
        request: license_pb2.IssueLicenseRequest,
        names: dict[str, str] | None = None,
    ) -> IssueRequest:
        """The domain request of an IssueLicense message (the department's signer named;
        ``names`` caches the departments' names over a stream's rows)."""
        issue_date = _date_in("issue_date", request.issue_date)
        valid_from = _date_in("valid_from", request.valid_from)
        valid_until = _date_in("valid_until", request.valid_until)
        if request.holder.code_type not in _HOLDER_IN:
            raise InvalidArgument.field("holder.code_type", "001 (USCC) or 111 (resident ID)")
        if not request.holder.code:
            raise InvalidArgument.field("holder.code", "required")
        issuer_code = issuing_department(principal, request.issuer_code)
        names = {} if names is None else names
        if issuer_code not in names:
            names[issuer_code] = self.service.signers(issuer_code).organisation or issuer_code
        return IssueRequest(
            type_code=request.type_code,
            issuer_code=issuer_code,
            issuer_name=names[issuer_code],
            holder_code_type=_HOLDER_IN[request.holder.code_type],
            holder_code=request.holder.code,
            fields=dict(request.fields),
            valid_from=valid_from,
            valid_until=valid_until,
            number=request.license_number,
            serial=request.serial,
            holder_name=request.holder.name,
            issue_date=issue_date,
            request_id=request.request_id,
        )

    def _issue(
        self, principal: Principal, request: license_pb2.IssueLicenseRequest
    ) -> StoredLicence:
        issue = self._issue_request(principal, request)
        try:
            issued: IssuedLicence = self.service.issue(
                principal, issue, document=not request.skip_document
            )
        except InvalidArgument as exc:
            raise _request_fields(exc) from None
        return self.service.stored(issued.identifier)

    def _issue_rows(
        self,
        principal: Principal,
        rows: Sequence[tuple[int, license_pb2.IssueLicensesRequest]],
        stream: bulk_issuance.StreamedImport,
    ) -> list[license_pb2.IssueLicensesResponse]:
        """One chunk of IssueLicenses: each row converted (a row that cannot be is refused as
        malformed), then handed to the stream's import."""
        parsed: list[tuple[int, SourceRow | RowOutcome, bool]] = []
        names: dict[str, str] = {}
        for index, message in rows:
            document = not message.license.skip_document
            try:
                key = bulk_issuance.check_source_key(message.source_key)
                issue = self._issue_request(principal, message.license, names)
            except GovtrustError as exc:
                reason = _BULK_REFUSAL.get(type(exc), bulk_issuance.MALFORMED)
                if isinstance(exc, InvalidArgument):
                    exc = _request_fields(exc)
                refusal = bulk_issuance.refused(message.source_key, reason, exc.message)
                parsed.append((index, refusal, document))
                continue
            parsed.append((index, SourceRow(key, issue), document))
        return [_bulk_pb(i, outcome) for i, outcome in stream.issue_chunk(parsed)]

    def _annotate(
        self, principal: Principal, request: license_pb2.AnnotateLicenseRequest
    ) -> tuple[StoredLicence, StoredLicence]:
        if not request.identifier:
            raise InvalidArgument.field("identifier", "required")
        issued = self.service.new_version(
            principal,
            request.identifier,
            fields=dict(request.fields),
            reason=request.text,
            valid_until=_date_in("valid_until", request.valid_until),
            holder_name=request.holder_name,
            document=not request.skip_document,
        )
        return self.service.stored(issued.identifier), self.service.stored(request.identifier)

    def _list(
        self, principal: Principal, request: license_pb2.ListLicensesRequest
    ) -> tuple[list[StoredLicence], str]:
        holder = request.holder.WhichOneof("ref")
        if (holder is None) == (not request.issuer_code):
            raise InvalidArgument.field(
                "holder", "exactly one of holder or issuer_code is required"
            )
        if request.status not in _STATUS_FILTER:
            raise InvalidArgument.field("status", "not a status licences can be listed by")
        options: dict[str, Any] = {
            "type_code": request.type_code,
            "status": _STATUS_FILTER[request.status],
            "include_superseded": request.include_superseded,
            "page_size": request.page_size,
            "page_token": request.page_token,
        }
        if request.issuer_code:
            return self.access.list_for_issuer(principal, request.issuer_code, **options)
        return self.access.list_for_holder(principal, parse_ref(request.holder), **options)

    def _grant(
        self, principal: Principal, request: license_pb2.GrantLicenseAccessRequest
    ) -> tuple[GrantView, str]:
        if not request.identifier:
            raise InvalidArgument.field("identifier", "required")
        grantee = parse_ref(request.grantee) if request.HasField("grantee") else None
        return self.access.grant(
            principal,
            request.identifier,
            grantee=grantee,
            grantee_name=request.grantee_name,
            purpose=request.purpose,
            valid_from=time_in(request, "valid_from"),
            valid_until=time_in(request, "valid_until"),
        )

    def _status_list(self, issuer_code: str) -> str:
        try:
            parse_uscc(issuer_code, field="issuer_code")
        except InvalidIdentifier as exc:
            raise InvalidArgument(str(exc), exc.violations) from None
        return self.service.status_list_token(issuer_code)

    # --- catalogue ------------------------------------------------------------------------------

    async def DefineLicenseType(
        self,
        request: license_pb2.DefineLicenseTypeRequest,
        context: Any,
    ) -> license_pb2.DefineLicenseTypeResponse:
        licence_type = type_in(request.license_type)
        defined = await run_sync(self._define, current_principal(), licence_type)
        return license_pb2.DefineLicenseTypeResponse(license_type=type_pb(defined))

    async def GetLicenseType(
        self,
        request: license_pb2.GetLicenseTypeRequest,
        context: Any,
    ) -> license_pb2.GetLicenseTypeResponse:
        current_principal()
        licence_type = await run_sync(self._get_type, request.type_code, request.revision)
        return license_pb2.GetLicenseTypeResponse(license_type=type_pb(licence_type))

    async def ListLicenseTypes(
        self,
        request: license_pb2.ListLicenseTypesRequest,
        context: Any,
    ) -> license_pb2.ListLicenseTypesResponse:
        current_principal()
        size, offset = page_bounds(request.page_size, request.page_token)
        types = await run_sync(self._list_types, request.issuer_code)
        page = types[offset : offset + size]
        token = str(offset + size) if offset + size < len(types) else ""
        return license_pb2.ListLicenseTypesResponse(
            license_types=[type_pb(t) for t in page], next_page_token=token
        )

    # --- licences -------------------------------------------------------------------------------

    async def IssueLicense(
        self,
        request: license_pb2.IssueLicenseRequest,
        context: Any,
    ) -> license_pb2.IssueLicenseResponse:
        """Signed data, offline QR payload and (unless ``skip_document``) the sealed PDF."""
        stored = await run_sync(self._issue, current_principal(), request)
        return license_pb2.IssueLicenseResponse(license=self._pb(stored))

    async def IssueLicenses(
        self,
        request_iterator: AsyncIterator[license_pb2.IssueLicensesRequest],
        context: Any,
    ) -> AsyncIterator[license_pb2.IssueLicensesResponse]:
        """Bulk issuance: rows in chunks of :data:`BULK_CHUNK` through
        :meth:`LicenceService.issue_rows`, one response per row."""
        principal = current_principal()
        stream = bulk_issuance.StreamedImport(self.service, principal)
        chunk: list[tuple[int, license_pb2.IssueLicensesRequest]] = []
        index = 0
        async for message in request_iterator:
            chunk.append((index, message))
            index += 1
            if len(chunk) >= BULK_CHUNK:
                for response in await run_sync(self._issue_rows, principal, chunk, stream):
                    yield response
                chunk = []
        if chunk:
            for response in await run_sync(self._issue_rows, principal, chunk, stream):
                yield response

    async def GetLicense(
        self,
        request: license_pb2.GetLicenseRequest,
        context: Any,
    ) -> license_pb2.GetLicenseResponse:
        stored = await run_sync(
            self._read, current_principal(), request.identifier, request.access_code, "licence"
        )
        return license_pb2.GetLicenseResponse(license=self._pb(stored))

    async def ListLicenses(
        self,
        request: license_pb2.ListLicensesRequest,
        context: Any,
    ) -> license_pb2.ListLicensesResponse:
        items, token = await run_sync(self._list, current_principal(), request)
        return license_pb2.ListLicensesResponse(
            licenses=[self._pb(s) for s in items], next_page_token=token
        )

    async def AnnotateLicense(
        self,
        request: license_pb2.AnnotateLicenseRequest,
        context: Any,
    ) -> license_pb2.AnnotateLicenseResponse:
        new, previous = await run_sync(self._annotate, current_principal(), request)
        return license_pb2.AnnotateLicenseResponse(
            license=self._pb(new), previous=self._pb(previous)
        )

    async def RevokeLicense(
        self,
        request: license_pb2.RevokeLicenseRequest,
        context: Any,
    ) -> license_pb2.RevokeLicenseResponse:
        stored = await run_sync(
            self._change, self.service.revoke, current_principal(), request.identifier,
            request.reason,
        )  # fmt: skip
        return license_pb2.RevokeLicenseResponse(license=self._pb(stored))

    async def SuspendLicense(
        self,
        request: license_pb2.SuspendLicenseRequest,
        context: Any,
    ) -> license_pb2.SuspendLicenseResponse:
        stored = await run_sync(
            self._change, self.service.suspend, current_principal(), request.identifier,
            request.reason,
        )  # fmt: skip
        return license_pb2.SuspendLicenseResponse(license=self._pb(stored))

    async def ResumeLicense(
        self,
        request: license_pb2.ResumeLicenseRequest,
        context: Any,
    ) -> license_pb2.ResumeLicenseResponse:
        stored = await run_sync(
            self._change, self.service.resume, current_principal(), request.identifier,
            request.reason,
        )  # fmt: skip
        return license_pb2.ResumeLicenseResponse(license=self._pb(stored))

    async def GrantLicenseAccess(
        self,
        request: license_pb2.GrantLicenseAccessRequest,
        context: Any,
    ) -> license_pb2.GrantLicenseAccessResponse:
        view, code = await run_sync(self._grant, current_principal(), request)
        return license_pb2.GrantLicenseAccessResponse(grant=grant_pb(view), access_code=code)

    async def RevokeLicenseAccess(
        self,
        request: license_pb2.RevokeLicenseAccessRequest,
        context: Any,
    ) -> license_pb2.RevokeLicenseAccessResponse:
        view = await run_sync(
            self.access.revoke_grant, current_principal(), request.grant_id, request.reason
        )
        return license_pb2.RevokeLicenseAccessResponse(grant=grant_pb(view))

    async def GetLicenseDocument(
        self,
        request: license_pb2.GetLicenseDocumentRequest,
        context: Any,
    ) -> license_pb2.GetLicenseDocumentResponse:
        if request.format and request.format not in _FORMAT_IN:
            raise InvalidArgument.field("format", "PDF or OFD")
        wanted = _FORMAT_IN.get(request.format, "")
        stored = await run_sync(
            self._read,
            current_principal(),
            request.identifier,
            request.access_code,
            "document",
            wanted,
        )
        fmt = wanted or ("pdf" if stored.document_pdf is not None else "ofd")
        document = (stored.document_pdf if fmt == "pdf" else stored.document_ofd) or b""
        return license_pb2.GetLicenseDocumentResponse(
            document=document,
            media_type=MEDIA_TYPES[fmt],
            filename=f"{stored.row.identifier}.{fmt}",
            digest=common_pb2.Digest(
                algorithm=common_pb2.DIGEST_ALGORITHM_SHA256,
                value=hashlib.sha256(document).digest(),
            ),
        )

    async def GetStatusList(
        self,
        request: license_pb2.GetStatusListRequest,
        context: Any,
    ) -> license_pb2.GetStatusListResponse:
        current_principal()
        token = await run_sync(self._status_list, request.issuer_code)
        claims = unverified_payload(token)
        return license_pb2.GetStatusListResponse(
            status_list_token=token,
            uri=self.service.status_uri(request.issuer_code),
            bits=BITS,
            issued_at=timestamp_pb(datetime.fromtimestamp(int(claims["iat"]), UTC)),
            expires_at=timestamp_pb(datetime.fromtimestamp(int(claims["exp"]), UTC)),
        )

    def _verify(
        self, principal: Principal, kind: str, evidence: str | bytes, today: date, report_id: str
    ) -> LicenceCheck:
        verifier = LicenceVerifier(self.service, self.roots, self._trust)
        # the evidence oneof's field names are the licence forms; audited (licence.verify)
        checked = verifier.check_for(
            principal, cast(LicenceForm, kind), evidence, today=today, report_id=report_id
        )
        return checked.check

    async def VerifyLicense(
        self,
        request: license_pb2.LicenseServiceVerifyLicenseRequest,
        context: Any,
    ) -> license_pb2.LicenseServiceVerifyLicenseResponse:
        """By signed data, QR payload, sealed PDF or OFD or identifier (the stored signed data is
        checked); the status comes from the issuer's cached signed status list, as an offline
        verifier's."""
        principal = current_principal()
        kind = request.evidence.WhichOneof("evidence")
        if kind is None:
            raise InvalidArgument.field(
                "evidence", "one of identifier, signed_data, document or qr_payload is required"
            )
        if request.report_options.report_format == common_pb2.REPORT_FORMAT_SIGNED_JSON:
            raise InvalidArgument.field(
                "report_options.report_format", "signed JSON reports are not offered yet"
            )
        evidence: str | bytes = getattr(request.evidence, kind)
        if not evidence:
            raise InvalidArgument.field(f"evidence.{kind}", "required")
        raw = evidence if isinstance(evidence, bytes) else evidence.encode()
        checked_at = datetime.now(UTC)
        at = time_in(request, "at_time") or checked_at
        report_id = str(uuid.uuid4())
        check = await run_sync(self._verify, principal, kind, evidence, licence_day(at), report_id)
        report = common_pb2.VerificationReport(
            report_id=report_id,
            verdict=_VERDICT[check.verdict],
            reasons=_reasons(check),
            summary=f"{check.verdict.name}: {', '.join(check.reasons[:1]) or 'ok'}",
            evidence_kind=_EVIDENCE_KIND[kind],
            evidence_digest=common_pb2.Digest(
                algorithm=common_pb2.DIGEST_ALGORITHM_SHA256,
                value=hashlib.sha256(raw).digest(),
            ),
            checked_at=timestamp_pb(checked_at),
            validation_time=timestamp_pb(at),
            license=common_pb2.LicenseReport(
                identifier=check.identifier,
                type_code=check.identifier.split(".")[5] if check.identifier else "",
                type_name=check.name,
                status=_STATE[check.state],
                status_source=common_pb2.STATUS_SOURCE_STATUS_LIST,
                issuer_code=check.issuer_code,
                holder_name=check.holder_name,
                valid_until=check.valid_until.isoformat() if check.valid_until else "",
            ),
            verifier="govtrust",
            reference=request.report_options.reference,
        )
        return license_pb2.LicenseServiceVerifyLicenseResponse(report=report)


def servicer(platform: Platform) -> license_pb2_grpc.LicenseServiceServicer:
    """The LicenseService servicer for a platform: the shared licence runtime's service
    (department official seals, sealed PDFs), the CA roots and its refreshed trust list."""
    from license.runtime import runtime_for

    runtime = runtime_for(platform)
    return LicenseServicer(
        runtime.service,
        roots=runtime.roots,
        trust=runtime.trust_list,
        verify_url=runtime.verify_url,
        access=LicenceAccess(runtime.service, RegistryOwners(runtime.service.registry)),
    )
