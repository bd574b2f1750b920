"""gRPC adapter of ``govtrust.v1.LicenseService`` over :mod:`license` (catalogue, issuance).

Thin by design, like :mod:`govtrust.api.seal`: each method converts the request, calls the
domain with the caller's principal in the ``run_sync`` pool and converts the result; domain
errors propagate to the platform interceptor (INVALID_ARGUMENT with field violations,
NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED).

Implemented: DefineLicenseType, GetLicenseType, ListLicenseTypes, IssueLicense (when the
servicer has signers), GetLicense, RevokeLicense, SuspendLicense, ResumeLicense, GetStatusList,
VerifyLicense (signed data and QR payload evidence, when the servicer has the CA roots; the
status comes from the issuer's stored signed status list). The other RPCs answer UNIMPLEMENTED
(generated base class): ListLicenses, AnnotateLicense, Grant/RevokeLicenseAccess,
GetLicenseDocument.

Known gaps of the mapping (the domain has no such notion yet):

* licence types have no revisions: every type is revision 1, ``created_at`` is unset;
* validity is kept in whole years: ``ValidityRule.default_days``/``max_days`` are multiples of
  365 on output and must be on input; field types ``USCC`` and ``RESIDENT_ID`` are reported as
  ``FIELD_TYPE_STRING`` (with their checks still applied at issuance), and ``FIELD_TYPE_ENUM`` /
  ``FIELD_TYPE_BOOLEAN`` are refused on input; ``label_en`` is not stored;
* IssueLicense produces the signed data and the QR payload only: the sealed PDF document is not
  built yet, so ``document_digest`` is unset whatever ``skip_document`` says; ``issue_date``
  must be empty or today; ``request_id`` (idempotency) is not honoured; ``holder.name`` is
  not compared with the registry (the registry's name is used);
* GetLicense answers the issuing department and a citizen holder; agents and access grants
  (``access_code``) are not supported yet (PERMISSION_DENIED).

Signing keys: :class:`~license.issuance.LicenceService` takes ``signers``, a callable from the
issuing department's USCC to a :class:`~license.jws.LicenceSigner` (key-store key + certificate
chain). The seal service offers no clean way to obtain that for a department: a seal's key id
is not part of :class:`seal.types.SealView`, and the only path to it,
``SealService.authorise_use``, needs a *citizen* principal holding a use grant (or being the
representative/agent) for a given seal id, whereas IssueLicense is called by a department's
business system (``licence-issuer:<dept>``) and the domain asks for a signer by USCC alone.
Until the seal service exposes "the department's active official seal as a signer", the
production :func:`servicer` has no signers: IssueLicense stays UNIMPLEMENTED and operations
that must re-sign the status list (revoke, suspend, resume, a first GetStatusList) fail with
FAILED_PRECONDITION naming the missing key. Likewise the production servicer is given no CA
roots or department chains (the QR trust list), so its VerifyLicense answers UNIMPLEMENTED.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from google.protobuf.timestamp_pb2 import Timestamp

from govtrust.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from govtrust.principal import LICENCE_ISSUER_PREFIX, Principal
from govtrust.rpc.context import current_principal
from govtrust.rpc.offload import run_sync
from govtrust.v1 import common_pb2, license_pb2, license_pb2_grpc
from idp.identifiers import InvalidIdentifier, parse_uscc
from license import catalogue
from license.catalogue import FieldSpec, FieldType, LicenceType, ValidityRule
from license.checking import LicenceCheck, State, Verdict, check_qr, check_signed_data
from license.errors import LicenceVerificationFailed
from license.identifiers import parse_identifier
from license.issuance import IssuedLicence, IssueRequest, LicenceService
from license.jws import LicenceSigner, b64url_decode
from license.models import LicenceRow, LicenceTypeRow
from license.qr import TrustList
from license.signed_data import HOLDER_RESIDENT_ID, HOLDER_USCC, LicenceMetadata
from license.status_list import BITS, VerifiedStatusList, verify_status_list

if TYPE_CHECKING:
    from govtrust.platform import Platform

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DAYS_PER_YEAR = 365

_FIELD_TYPE = {
    FieldType.STRING: license_pb2.FIELD_TYPE_STRING,
    FieldType.DATE: license_pb2.FIELD_TYPE_DATE,
    FieldType.INTEGER: license_pb2.FIELD_TYPE_INTEGER,
    FieldType.DECIMAL: license_pb2.FIELD_TYPE_DECIMAL,
    FieldType.USCC: license_pb2.FIELD_TYPE_STRING,
    FieldType.RESIDENT_ID: license_pb2.FIELD_TYPE_STRING,
}
_FIELD_TYPE_IN = {
    license_pb2.FIELD_TYPE_UNSPECIFIED: FieldType.STRING,
    license_pb2.FIELD_TYPE_STRING: FieldType.STRING,
    license_pb2.FIELD_TYPE_DATE: FieldType.DATE,
    license_pb2.FIELD_TYPE_INTEGER: FieldType.INTEGER,
    license_pb2.FIELD_TYPE_DECIMAL: FieldType.DECIMAL,
}
_HOLDER = {HOLDER_USCC: license_pb2.HOLDER_CODE_TYPE_USCC, HOLDER_RESIDENT_ID: 111}
_HOLDER_IN = {v: k for k, v in _HOLDER.items()}
_STATUS = {
    "valid": common_pb2.LICENSE_STATUS_VALID,
    "suspended": common_pb2.LICENSE_STATUS_SUSPENDED,
    "revoked": common_pb2.LICENSE_STATUS_REVOKED,
}


def _ts(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    if moment.tzinfo is None:  # SQLite returns naive UTC
        moment = moment.replace(tzinfo=UTC)
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _date_in(field: str, text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument.field(field, "must be a date YYYY-MM-DD") from None


def _years_in(field: str, days: int) -> int | None:
    if days == 0:
        return None
    if days < 0 or days % DAYS_PER_YEAR:
        raise InvalidArgument.field(
            field, f"must be a whole number of years ({DAYS_PER_YEAR} days)"
        )
    return days // DAYS_PER_YEAR


def _page(page_size: int, page_token: str) -> tuple[int, int]:
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return size, 0
    if not page_token.isdigit() or len(page_token) > 9:
        raise InvalidArgument.field("page_token", "not a token from a previous response")
    return size, int(page_token)


# --- catalogue ----------------------------------------------------------------------------------


def type_pb(licence_type: LicenceType) -> license_pb2.LicenseType:
    """The protobuf of a licence type (revision 1: the domain keeps no revisions)."""
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
                value_type=_FIELD_TYPE[spec.type],
                required=spec.required,
                pattern=spec.format or "",
                max_length=spec.max_length,
                public=spec.public,
            )
            for spec in licence_type.fields
        ],
        validity=license_pb2.ValidityRule(
            default_days=(rule.default_years or 0) * DAYS_PER_YEAR,
            max_days=(rule.max_years or 0) * DAYS_PER_YEAR,
            long_term_allowed=rule.long_term_allowed,
        ),
        layout_json=json.dumps(dict(licence_type.layout), ensure_ascii=False, sort_keys=True),
        revision=1,
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
                FieldViolation(f"{prefix}.fields[{i}].value_type", "not supported yet")
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
    rule = message.validity
    try:
        validity = ValidityRule(
            default_years=_years_in(f"{prefix}.validity.default_days", rule.default_days),
            max_years=_years_in(f"{prefix}.validity.max_days", rule.max_days),
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
    )


# --- licences ----------------------------------------------------------------------------------


def _payload(token: str) -> dict[str, Any]:
    data = json.loads(b64url_decode(token.split(".")[1]))
    assert isinstance(data, dict)
    return data


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


def licence_pb(row: LicenceRow) -> license_pb2.License:
    """The protobuf of a stored licence version (for its issuer or holder: unmasked)."""
    meta = LicenceMetadata.from_json(_payload(row.signed_data))
    if row.superseded_by is not None:
        status = common_pb2.LICENSE_STATUS_SUPERSEDED
    elif row.status == "valid" and row.valid_until is not None and row.valid_until < _today():
        status = common_pb2.LICENSE_STATUS_EXPIRED
    elif row.status == "valid" and row.valid_from > _today():
        status = common_pb2.LICENSE_STATUS_NOT_YET_VALID
    else:
        status = _STATUS.get(row.status, common_pb2.LICENSE_STATUS_UNSPECIFIED)
    kind = (
        common_pb2.IDENTITY_KIND_LEGAL_PERSON
        if row.holder_code_type == HOLDER_USCC
        else common_pb2.IDENTITY_KIND_CITIZEN
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
        type_revision=1,
        signed_data=row.signed_data,
        qr_payload=row.qr_payload,
        status_list_index=row.status_index,
        previous_identifier=row.previous_identifier or "",
        next_identifier=row.superseded_by or "",
        issued_at=_ts(row.issued_at),
        updated_at=_ts(row.updated_at),
    )


def _today() -> date:
    return datetime.now(UTC).date()


def _missing_signer(issuer_code: str) -> LicenceSigner:
    raise FailedPrecondition(
        f"no licence signing key for department {issuer_code}: the seal service does not yet "
        "provide a department's seal key and certificate chain for licence signing"
    )


def _organisation(signer: LicenceSigner) -> str:
    names = signer.chain[0].subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else ""


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


class _StoredStatusLists(Mapping[str, VerifiedStatusList]):
    """The issuers' cached signed status lists (signed on first use), verified against the roots
    on look-up; a list that cannot be signed or does not verify is absent (STATUS_UNKNOWN)."""

    def __init__(self, service: LicenceService, roots: Sequence[x509.Certificate]) -> None:
        self.service = service
        self.roots = roots

    def __getitem__(self, issuer_code: str) -> VerifiedStatusList:
        try:
            token = self.service.status_list_token(issuer_code)
            return verify_status_list(token, self.roots, issuer_code=issuer_code)
        except (FailedPrecondition, LicenceVerificationFailed):
            raise KeyError(issuer_code) from None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class LicenseServicer(license_pb2_grpc.LicenseServiceServicer):
    """``govtrust.v1.LicenseService`` over a :class:`LicenceService`.

    ``issuing`` says whether the service's signers are real; without them IssueLicense answers
    UNIMPLEMENTED (see the module docstring). ``roots`` (the CA roots) and ``trust`` (the
    roots plus the known department signing chains, for QR payloads) serve VerifyLicense,
    which answers UNIMPLEMENTED without roots.
    """

    def __init__(
        self,
        service: LicenceService,
        *,
        issuing: bool = True,
        roots: Sequence[x509.Certificate] = (),
        trust: TrustList | None = None,
    ) -> None:
        self.service = service
        self.issuing = issuing
        self.roots = tuple(roots)
        self.trust = trust if trust is not None else TrustList(self.roots)

    # --- helpers (run in the pool) --------------------------------------------------------------

    def _get_type(self, type_code: str) -> LicenceType:
        with self.service.db.read() as session:
            return catalogue.get_type(session, type_code)

    def _list_types(self, issuer_code: str) -> list[LicenceType]:
        with self.service.db.read() as session:
            types = catalogue.list_types(session)
        if issuer_code:
            types = [t for t in types if issuer_code in t.issuing_departments]
        return types

    def _define(self, principal: Principal, licence_type: LicenceType) -> LicenceType:
        principal.require_role("admin")
        with self.service.db.transaction() as session:
            exists = session.get(LicenceTypeRow, licence_type.type_code) is not None
            return catalogue.define_type(session, principal, licence_type, replace=exists)

    def _readable(self, principal: Principal, identifier: str) -> LicenceRow:
        parse_identifier(identifier, check_uscc=False)
        row = self.service.get(identifier)
        issuer = principal.has_role(LICENCE_ISSUER_PREFIX + row.issuer_code)
        holder = principal.citizen_id is not None and principal.citizen_id == (
            row.holder_identity_id
        )
        if not (issuer or holder):
            raise PermissionDenied(f"{principal.actor} may not read licence {identifier}")
        return row

    def _change(
        self,
        change: Callable[[Principal, str, str], None],
        principal: Principal,
        identifier: str,
        reason: str,
    ) -> LicenceRow:
        if not identifier:
            raise InvalidArgument.field("identifier", "required")
        change(principal, identifier, reason)
        return self.service.get(identifier)

    def _issuer_of(self, principal: Principal, issuer_code: str) -> str:
        if issuer_code:
            return issuer_code
        depts = sorted(
            r.removeprefix(LICENCE_ISSUER_PREFIX)
            for r in principal.roles
            if r.startswith(LICENCE_ISSUER_PREFIX)
        )
        if len(depts) != 1:
            raise InvalidArgument.field(
                "issuer_code", "required (the caller does not issue for exactly one department)"
            )
        return depts[0]

    def _issue(self, principal: Principal, request: license_pb2.IssueLicenseRequest) -> LicenceRow:
        today = _today()
        issue_date = _date_in("issue_date", request.issue_date)
        if issue_date is not None and issue_date != today:
            raise InvalidArgument.field("issue_date", "must be empty or today")
        valid_from = _date_in("valid_from", request.valid_from) or today
        valid_until = _date_in("valid_until", request.valid_until)
        if request.holder.code_type not in _HOLDER_IN:
            raise InvalidArgument.field("holder.code_type", "001 (USCC) or 111 (resident ID)")
        if not request.holder.code:
            raise InvalidArgument.field("holder.code", "required")
        issuer_code = self._issuer_of(principal, request.issuer_code)
        try:
            parse_uscc(issuer_code, field="issuer_code")
        except InvalidIdentifier as exc:
            raise InvalidArgument(str(exc), exc.violations) from None
        if not principal.has_role(LICENCE_ISSUER_PREFIX + issuer_code):
            raise PermissionDenied(f"{principal.actor} may not issue for department {issuer_code}")
        signer = self.service.signers(issuer_code)
        issued: IssuedLicence = self.service.issue(
            principal,
            IssueRequest(
                type_code=request.type_code,
                issuer_code=issuer_code,
                issuer_name=_organisation(signer) or issuer_code,
                holder_code_type=_HOLDER_IN[request.holder.code_type],
                holder_code=request.holder.code,
                fields=dict(request.fields),
                valid_from=valid_from,
                valid_until=valid_until,
                number=request.license_number,
                serial=request.serial,
            ),
        )
        return self.service.get(issued.identifier)

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
        if request.revision < 0:
            raise InvalidArgument.field("revision", "must not be negative")
        licence_type = await run_sync(self._get_type, request.type_code)
        if request.revision > 1:
            raise NotFound(f"licence type {request.type_code} has no revision {request.revision}")
        return license_pb2.GetLicenseTypeResponse(license_type=type_pb(licence_type))

    async def ListLicenseTypes(
        self,
        request: license_pb2.ListLicenseTypesRequest,
        context: Any,
    ) -> license_pb2.ListLicenseTypesResponse:
        current_principal()
        size, offset = _page(request.page_size, request.page_token)
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
        """Signed data and offline QR payload; the sealed PDF is not built yet (no digest)."""
        if not self.issuing:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "IssueLicense needs the departments' licence signing keys, which the seal "
                "service does not provide yet",
            )
        row = await run_sync(self._issue, current_principal(), request)
        return license_pb2.IssueLicenseResponse(license=licence_pb(row))

    async def GetLicense(
        self,
        request: license_pb2.GetLicenseRequest,
        context: Any,
    ) -> license_pb2.GetLicenseResponse:
        if request.access_code:
            raise PermissionDenied("access grants are not supported yet")
        row = await run_sync(self._readable, current_principal(), request.identifier)
        return license_pb2.GetLicenseResponse(license=licence_pb(row))

    async def RevokeLicense(
        self,
        request: license_pb2.RevokeLicenseRequest,
        context: Any,
    ) -> license_pb2.RevokeLicenseResponse:
        row = await run_sync(
            self._change, self.service.revoke, current_principal(), request.identifier,
            request.reason,
        )  # fmt: skip
        return license_pb2.RevokeLicenseResponse(license=licence_pb(row))

    async def SuspendLicense(
        self,
        request: license_pb2.SuspendLicenseRequest,
        context: Any,
    ) -> license_pb2.SuspendLicenseResponse:
        row = await run_sync(
            self._change, self.service.suspend, current_principal(), request.identifier,
            request.reason,
        )  # fmt: skip
        return license_pb2.SuspendLicenseResponse(license=licence_pb(row))

    async def ResumeLicense(
        self,
        request: license_pb2.ResumeLicenseRequest,
        context: Any,
    ) -> license_pb2.ResumeLicenseResponse:
        row = await run_sync(
            self._change, self.service.resume, current_principal(), request.identifier,
            request.reason,
        )  # fmt: skip
        return license_pb2.ResumeLicenseResponse(license=licence_pb(row))

    async def GetStatusList(
        self,
        request: license_pb2.GetStatusListRequest,
        context: Any,
    ) -> license_pb2.GetStatusListResponse:
        current_principal()
        token = await run_sync(self._status_list, request.issuer_code)
        claims = _payload(token)
        return license_pb2.GetStatusListResponse(
            status_list_token=token,
            uri=self.service.status_uri(request.issuer_code),
            bits=BITS,
            issued_at=_ts(datetime.fromtimestamp(int(claims["iat"]), UTC)),
            expires_at=_ts(datetime.fromtimestamp(int(claims["exp"]), UTC)),
        )

    def _verify(self, kind: str, evidence: str, today: date) -> LicenceCheck:
        lists = _StoredStatusLists(self.service, self.roots)
        if kind == "signed_data":
            return check_signed_data(evidence, self.roots, lists, today=today)
        return check_qr(evidence, self.trust, lists, today=today)

    async def VerifyLicense(
        self,
        request: license_pb2.LicenseServiceVerifyLicenseRequest,
        context: Any,
    ) -> license_pb2.LicenseServiceVerifyLicenseResponse:
        """Signed data and QR payload only (identifier and PDF evidence: UNIMPLEMENTED); the
        status comes from the issuer's cached signed status list, as an offline verifier's."""
        current_principal()
        kind = request.evidence.WhichOneof("evidence")
        if kind is None:
            raise InvalidArgument.field("evidence", "one of signed_data or qr_payload is required")
        if not self.roots or kind not in ("signed_data", "qr_payload"):
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"VerifyLicense by {kind} is not available yet"
                if self.roots
                else "VerifyLicense needs the CA roots, which this server is not given yet",
            )
        if request.report_options.report_format == common_pb2.REPORT_FORMAT_SIGNED_JSON:
            raise InvalidArgument.field(
                "report_options.report_format", "signed JSON reports are not offered yet"
            )
        text: str = getattr(request.evidence, kind)
        if not text:
            raise InvalidArgument.field(f"evidence.{kind}", "required")
        checked_at = datetime.now(UTC)
        at = request.at_time.ToDatetime(tzinfo=UTC) if request.HasField("at_time") else checked_at
        check = await run_sync(self._verify, kind, text, at.date())
        report = common_pb2.VerificationReport(
            report_id=str(uuid.uuid4()),
            verdict=_VERDICT[check.verdict],
            reasons=_reasons(check),
            summary=f"{check.verdict.value}: {', '.join(check.reasons[:1]) or 'ok'}",
            evidence_kind=(
                common_pb2.EVIDENCE_KIND_LICENSE_SIGNED_DATA
                if kind == "signed_data"
                else common_pb2.EVIDENCE_KIND_LICENSE_QR_PAYLOAD
            ),
            evidence_digest=common_pb2.Digest(
                algorithm=common_pb2.DIGEST_ALGORITHM_SHA256,
                value=hashlib.sha256(text.encode()).digest(),
            ),
            checked_at=_ts(checked_at),
            validation_time=_ts(at),
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
    """The LicenseService servicer for a platform.

    No licence signers yet (see the module docstring): IssueLicense answers UNIMPLEMENTED.
    """
    from idp.registry import IdentityRegistry

    registry = IdentityRegistry.open(
        platform.db, platform.master_key, data_dir=platform.settings.data_dir
    )
    return LicenseServicer(LicenceService(platform.db, registry, _missing_signer), issuing=False)
