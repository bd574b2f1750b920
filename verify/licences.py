"""VerifyLicense: a licence checked by identifier, signed data, sealed PDF or OFD or QR payload.

Every form goes through the licence domain's own checks (:mod:`license.checking`,
:mod:`license.document_check`, :mod:`license.ofd_check`), so this service answers exactly what
the public verification
page and an offline verifier answer, and the report adds what a business system needs:

* ``license`` — the licence facts (identifier, type, version, status and where it came from,
  issuer, holder with a masked resident ID, validity window), whether the presented data is the
  registry's record (``matches_registry``) and the latest version when superseded;
* ``signatures`` — the licence's own signature (JWS for signed data and identifier, COSE_Sign1
  for the QR payload) with the signing certificate judged by the shared certificate verifier,
  and for a document every seal signature as :mod:`verify.pdf` (PAdES) or :mod:`verify.ofd`
  (an OFD's GB/T 38540 signatures) reports it (``document`` too).

Status comes from the issuer's signed status list (``LicenceService.status_list_token`` checked
with ``verify_status_list``), the same list offline verifiers cache. A department seal
certificate revoked *after* issuance does not void the licences it signed (the licence's own
status is what counts, as in :mod:`license.document_check`): the certificate's revocation is
reported in ``signatures[0].certificate`` and as a warning, never as a reason.

An identifier that is malformed is InvalidArgument (the caller's mistake); one that is well
formed but unknown is a report (INVALID, LICENSE_NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from cryptography import x509

from govtrust.errors import FailedPrecondition, InvalidArgument, NotFound
from license.checking import LicenceCheck, State, Verdict
from license.days import licence_day
from license.errors import LicenceVerificationFailed
from license.verification import LicenceForm, LicenceVerifier
from verify.report import (
    CertificatePurpose,
    CertificateReport,
    EvidenceKind,
    LicenseReport,
    LicenseStatus,
    Reason,
    ReasonCode,
    ReportOptions,
    RevocationStatus,
    SignatureFormat,
    SignatureReport,
    StatusSource,
    VerificationReport,
    build_report,
    tr,
    verdict_of,
)

if TYPE_CHECKING:
    from govtrust.principal import Principal
    from license.issuance import StoredLicence
    from license.records import LicenceRecord
    from license.runtime import LicenceRuntime
    from verify.service import Verified, VerifyContext

_EVIDENCE_KIND: dict[str, EvidenceKind] = {
    "identifier": EvidenceKind.LICENSE_IDENTIFIER,
    "signed_data": EvidenceKind.LICENSE_SIGNED_DATA,
    "document": EvidenceKind.LICENSE_DOCUMENT,
    "qr_payload": EvidenceKind.LICENSE_QR_PAYLOAD,
}

_FORMAT: dict[str, SignatureFormat] = {
    "identifier": SignatureFormat.JWS,
    "signed_data": SignatureFormat.JWS,
    "document": SignatureFormat.PADES,
    "qr_payload": SignatureFormat.COSE_SIGN1,
}

# licence-domain reason names → report codes
_CODES: dict[str, ReasonCode] = {
    "MALFORMED": ReasonCode.FORMAT_ERROR,
    "UNSUPPORTED_ALGORITHM": ReasonCode.SIGNATURE_INVALID,
    "MISSING_CHAIN": ReasonCode.UNKNOWN_ISSUER,
    "UNTRUSTED_CHAIN": ReasonCode.CHAIN_INVALID,
    "UNKNOWN_KEY": ReasonCode.UNKNOWN_ISSUER,
    "CERTIFICATE_EXPIRED": ReasonCode.CERTIFICATE_EXPIRED,
    "WRONG_CERTIFICATE": ReasonCode.KEY_USAGE_MISMATCH,
    "BAD_SIGNATURE": ReasonCode.SIGNATURE_INVALID,
    "ISSUER_MISMATCH": ReasonCode.LICENSE_MISMATCH,
    "STALE_STATUS_LIST": ReasonCode.REVOCATION_UNKNOWN,
    "STATUS_UNKNOWN": ReasonCode.REVOCATION_UNKNOWN,
    "REVOKED": ReasonCode.LICENSE_REVOKED,
    "SUSPENDED": ReasonCode.LICENSE_SUSPENDED,
    "EXPIRED": ReasonCode.LICENSE_EXPIRED,
    # no dedicated code for "validity has not started": the closest is outside the window
    "NOT_YET_VALID": ReasonCode.LICENSE_EXPIRED,
    "PDF_UNSEALED": ReasonCode.NO_SIGNATURE,
    "PDF_SIGNATURE_INVALID": ReasonCode.SIGNATURE_INVALID,
    "PDF_UNTRUSTED": ReasonCode.UNKNOWN_ISSUER,
    "PDF_TIMESTAMP_INVALID": ReasonCode.TIMESTAMP_INVALID,
    "PDF_MODIFIED": ReasonCode.DISALLOWED_MODIFICATION,
    "PDF_SIGNER_MISMATCH": ReasonCode.LICENSE_MISMATCH,
    "OFD_UNSEALED": ReasonCode.NO_SIGNATURE,
    "OFD_SIGNATURE_INVALID": ReasonCode.SIGNATURE_INVALID,
    "OFD_UNTRUSTED": ReasonCode.UNKNOWN_ISSUER,
    "OFD_TIMESTAMP_INVALID": ReasonCode.TIMESTAMP_INVALID,
    "OFD_MODIFIED": ReasonCode.DISALLOWED_MODIFICATION,
    "OFD_SIGNER_MISMATCH": ReasonCode.LICENSE_MISMATCH,
    "QR_MISMATCH": ReasonCode.LICENSE_MISMATCH,
}
_STATUS_REASONS = frozenset({"REVOKED", "SUSPENDED", "EXPIRED", "NOT_YET_VALID", "STATUS_UNKNOWN"})
_STATE: dict[State, LicenseStatus | None] = {
    State.VALID: LicenseStatus.VALID,
    State.REVOKED: LicenseStatus.REVOKED,
    State.SUSPENDED: LicenseStatus.SUSPENDED,
    State.EXPIRED: LicenseStatus.EXPIRED,
    State.NOT_YET_VALID: LicenseStatus.NOT_YET_VALID,
    State.UNKNOWN: None,
}
_MESSAGES: dict[str, tuple[str, str]] = {
    "REVOKED": ("证照已被注销", "the licence is revoked"),
    "SUSPENDED": ("证照已被暂停", "the licence is suspended"),
    "EXPIRED": ("证照已超过有效期", "the licence is past its validity window"),
    "NOT_YET_VALID": ("证照尚未到有效期起始日", "the licence's validity has not started yet"),
    "STATUS_UNKNOWN": (
        "无法从颁发机构的状态列表获得证照状态",
        "the licence's status cannot be read from the issuer's status list",
    ),
}


@dataclass(frozen=True)
class LicenceCheckRequest:
    """A VerifyLicense request in domain terms."""

    form: LicenceForm
    value: str | bytes
    at_time: datetime | None = None
    options: ReportOptions = field(default_factory=ReportOptions)


def _reasons(check: LicenceCheck, locale: str) -> tuple[list[Reason], list[Reason]]:
    """(signature reasons, status reasons) of a licence-domain check."""
    if check.verdict is Verdict.VALID:
        return [], []
    names = check.reasons
    if check.state is State.UNKNOWN and names and names[0] not in _STATUS_REASONS:
        # a signature / document failure: (name, message)
        code = _CODES.get(names[0], ReasonCode.SIGNATURE_INVALID)
        message = " ".join(names[1:]) or names[0]
        return [Reason(code, message)], []
    status: list[Reason] = []
    for name in names:
        zh, en = _MESSAGES.get(name, (name, name))
        status.append(Reason(_CODES.get(name, ReasonCode.REVOCATION_UNKNOWN), tr(locale, zh, en)))
    return [], status


def _mask(code: str, code_type: str) -> str:
    """A resident ID number masked as everywhere else (``1101**********002X``)."""
    if code_type == "111" and len(code) == 18:
        return code[:4] + "*" * 10 + code[-4:]
    return code


def _stored_row(runtime: LicenceRuntime, identifier: str) -> LicenceRecord | None:
    """The registered version ``identifier``, or None when there is none (or no identifier)."""
    if not identifier:
        return None
    try:
        return runtime.service.get(identifier)
    except NotFound:
        return None


def _opened(runtime: LicenceRuntime, row: LicenceRecord) -> StoredLicence:
    """The registered version ``row`` with its signed data, QR payload and documents in clear."""
    return runtime.service.stored(row.identifier)


def verify_licence(
    context: VerifyContext,
    runtime: LicenceRuntime,
    form: LicenceForm,
    value: str | bytes,
    *,
    at: datetime | None = None,
    options: ReportOptions | None = None,
) -> VerificationReport:
    """The report of one licence presented in ``form`` (see the module docstring)."""
    options = options or ReportOptions()
    locale = options.locale
    if form not in _EVIDENCE_KIND:
        raise InvalidArgument.field("evidence", "one of identifier, signed_data, document or qr")
    if not value:
        raise InvalidArgument.field(f"evidence.{form}", "required")
    checked_at = context.now()
    moment = at or checked_at
    today: date = licence_day(moment)  # licence dates are Beijing calendar days
    raw = value if isinstance(value, bytes) else value.encode()
    roots = runtime.roots
    kind = _EVIDENCE_KIND[form]

    def report(
        *,
        check: LicenceCheck | None,
        facts: LicenseReport,
        signatures: Sequence[SignatureReport] = (),
        reasons: Sequence[Reason] = (),
        warnings: Sequence[Reason] = (),
        document: VerificationReport | None = None,
    ) -> VerificationReport:
        return build_report(
            evidence_kind=kind,
            evidence=raw,
            options=options,
            checked_at=checked_at,
            validation_time=moment,
            signatures=signatures,
            document=document.document if document is not None else None,
            license=facts,
            reasons=reasons,
            warnings=[*warnings, *(document.warnings if document is not None else ())],
        )

    if form == "document":
        from verify.pdf import check_size

        assert isinstance(value, bytes)
        check_size(len(value), context.config.max_pdf_bytes)
    verifier = LicenceVerifier(runtime.service, runtime.roots, runtime.trust_list)
    try:
        checked = verifier.check(form, value, today=today)
    except NotFound:  # a well-formed identifier (a malformed one raised) not registered here
        assert isinstance(value, str)
        return report(
            check=None,
            facts=LicenseReport(identifier=value, status_source=StatusSource.REGISTRY),
            reasons=[
                Reason(
                    ReasonCode.LICENSE_NOT_FOUND,
                    tr(locale, f"登记簿中没有证照 {value}", f"no licence {value} is registered"),
                    "license",
                )
            ],
        )
    check, signed_data = checked.check, checked.signed_data
    stored_signed = checked.stored.signed_data if checked.stored is not None else ""
    fmt = _FORMAT[form]

    signature_reasons, status_reasons = _reasons(check, locale)
    warnings: list[Reason] = []
    row = _stored_row(runtime, check.identifier)
    superseded = row is not None and bool(row.superseded_by)
    if superseded:
        # a replaced version is "revoked" in the status list; the registry says why
        status_reasons = [r for r in status_reasons if r.code is not ReasonCode.LICENSE_REVOKED]
    if row is not None and not stored_signed and form != "qr_payload":
        try:
            stored_signed = _opened(runtime, row).signed_data
        except Exception:  # noqa: BLE001 - a record we cannot open does not match anything
            stored_signed = ""

    # licence facts: the signed metadata when the signature verified, else what the check read
    facts = _facts(check, signed_data, roots, row, runtime, form)
    matches = False
    if row is not None:
        if form == "qr_payload":
            matches = _stored_qr(runtime, row.identifier) == value
        else:
            matches = bool(signed_data) and stored_signed == signed_data
    registry_reasons: list[Reason] = []
    if check.identifier and not signature_reasons:
        if row is None:
            registry_reasons.append(
                Reason(
                    ReasonCode.LICENSE_NOT_FOUND,
                    tr(
                        locale,
                        f"签名有效，但登记簿中没有证照 {check.identifier}",
                        f"the signature verifies but no licence {check.identifier} is registered",
                    ),
                    "license",
                )
            )
        elif not matches:
            registry_reasons.append(
                Reason(
                    ReasonCode.LICENSE_MISMATCH,
                    tr(
                        locale,
                        "出示的证照数据与登记簿的记录不一致",
                        "the presented licence data differs from the registry's record",
                    ),
                    "license",
                )
            )
        if row is not None and row.superseded_by:
            registry_reasons.append(
                Reason(
                    ReasonCode.LICENSE_SUPERSEDED,
                    tr(
                        locale,
                        f"证照已被新版本 {row.superseded_by} 取代",
                        f"the licence was replaced by {row.superseded_by}",
                    ),
                    "license",
                )
            )
    facts = LicenseReport(
        **{
            **facts.__dict__,
            "matches_registry": matches,
            "status": LicenseStatus.SUPERSEDED
            if superseded and facts.status in (LicenseStatus.VALID, LicenseStatus.REVOKED)
            else facts.status,
        }
    )

    signatures: list[SignatureReport] = []
    document: VerificationReport | None = None
    if form == "document":
        assert isinstance(value, bytes)
        if checked.document_format == "ofd":
            from verify.ofd import verify_ofd

            document = verify_ofd(context, value, at=at, options=options)
        else:
            from verify.pdf import verify_pdf

            document = verify_pdf(
                context,
                value,
                at=at,
                options=options,
                evidence_kind=EvidenceKind.LICENSE_DOCUMENT,
            )
        signatures = list(document.signatures)
        # the licence's own rules decide (a seal revoked later does not void the licence)
        signatures = [_licence_rules(s, signature_reasons) for s in signatures]
    else:
        cert_report, cert_warnings = _signer_report(
            context, check, signed_data, roots, runtime, form, moment, locale
        )
        warnings += cert_warnings
        signatures.append(
            SignatureReport(
                index=0,
                format=fmt,
                verdict=verdict_of(signature_reasons),
                reasons=tuple(signature_reasons),
                certificate=cert_report,
                intact=not signature_reasons,
                signature_valid=not signature_reasons,
                signature_algorithm=_alg(signed_data, form),
            )
        )
    if form == "document" and signature_reasons:
        reasons = [r.under("license") for r in signature_reasons]
    else:
        reasons = []
    reasons += [r.under("license") for r in status_reasons] + registry_reasons
    return report(
        check=check,
        facts=facts,
        signatures=signatures,
        reasons=reasons,
        warnings=warnings,
        document=document,
    )


def _licence_rules(signature: SignatureReport, failures: Sequence[Reason]) -> SignatureReport:
    """A licence document's signature (PAdES, or an OFD's SES_Signature) judged by the licence
    rules: the seal's later
    revocation (a warning in the PDF report) never voids it; the document check's failures
    (if any) are the licence's reasons, reported at the top."""
    kept = tuple(
        r
        for r in signature.reasons
        if r.code not in (ReasonCode.REVOCATION_UNKNOWN, ReasonCode.NO_TRUSTED_TIME)
    )
    from dataclasses import replace

    return replace(signature, reasons=kept, verdict=verdict_of(kept))


def _facts(
    check: LicenceCheck,
    signed_data: str,
    roots: Sequence[x509.Certificate],
    row: LicenceRecord | None,
    runtime: LicenceRuntime,
    form: str,
) -> LicenseReport:
    status = _STATE[check.state]
    source = StatusSource.STATUS_LIST if status is not None else StatusSource.NONE
    metadata = None
    if signed_data:
        from license.signed_data import verify_licence as verify_signed

        try:
            metadata = verify_signed(signed_data, roots).metadata
        except LicenceVerificationFailed:
            metadata = None
    if metadata is None and row is not None and form != "qr_payload":
        try:
            from license.signed_data import verify_licence as verify_signed

            metadata = verify_signed(_opened(runtime, row).signed_data, roots).metadata
        except Exception:  # noqa: BLE001 - facts are best effort when the data is bad
            metadata = None
    identifier = check.identifier or (metadata.identifier if metadata else "")
    parts = identifier.split(".") if identifier else []
    version = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else 0
    if metadata is not None:
        return LicenseReport(
            identifier=metadata.identifier,
            type_code=metadata.type_code,
            type_name=metadata.name,
            version=version,
            status=status,
            status_source=source,
            status_reason=(row.status_reason or "") if row is not None else "",
            latest_identifier=row.superseded_by or "" if row is not None else "",
            issuer_name=metadata.issuer_name,
            issuer_code=metadata.issuer_code,
            holder_name=metadata.holder_name,
            holder_masked_code=_mask(metadata.holder_code, metadata.holder_code_type),
            valid_from=metadata.valid_from.isoformat(),
            valid_until=metadata.valid_until.isoformat() if metadata.valid_until else "",
        )
    return LicenseReport(
        identifier=identifier,
        type_code=row.type_code if row is not None else "",
        type_name=check.name,
        version=version,
        status=status,
        status_source=source,
        status_reason=(row.status_reason or "") if row is not None else "",
        latest_identifier=(row.superseded_by or "") if row is not None else "",
        issuer_code=check.issuer_code,
        holder_name=check.holder_name,
        valid_until=check.valid_until.isoformat() if check.valid_until else "",
    )


def _signer_report(
    context: VerifyContext,
    check: LicenceCheck,
    signed_data: str,
    roots: Sequence[x509.Certificate],
    runtime: LicenceRuntime,
    form: str,
    moment: datetime,
    locale: str,
) -> tuple[CertificateReport | None, list[Reason]]:
    """The signing certificate as the certificate verifier sees it (revocation as a warning)."""
    leaf: x509.Certificate | None = None
    chain: Sequence[x509.Certificate] = ()
    try:
        if signed_data:
            from license.signed_data import verify_licence as verify_signed

            verified = verify_signed(signed_data, roots)
            leaf, chain = verified.signer, verified.chain[1:]
        elif form == "qr_payload" and check.identifier:
            from license.qr import decode_payload

            qr_value = _stored_qr(runtime, check.identifier)
            if qr_value:
                leaf = decode_payload(qr_value, runtime.trust_list()).signer.certificate
    except (LicenceVerificationFailed, ValueError):
        leaf = None
    if leaf is None:
        return None, []
    report = context.certificates.verify(
        leaf,
        intermediates=list(chain),
        at=moment,
        purpose=CertificatePurpose.DOCUMENT_SIGNING,
        locale=locale,
    )
    warnings: list[Reason] = []
    now = report.revocation_now
    if now is not None and now.status in (RevocationStatus.REVOKED, RevocationStatus.ON_HOLD):
        warnings.append(
            Reason(
                ReasonCode.CERTIFICATE_REVOKED
                if now.status is RevocationStatus.REVOKED
                else ReasonCode.CERTIFICATE_ON_HOLD,
                tr(
                    locale,
                    "颁发机构的签名证书已被吊销或冻结；已颁发的证照以其自身状态为准",
                    "the issuer's signing certificate is revoked or on hold; licences it "
                    "signed stand on their own status",
                ),
                "signatures[0].certificate",
            )
        )
    return report, warnings


def _stored_qr(runtime: LicenceRuntime, identifier: str) -> str:
    row = _stored_row(runtime, identifier)
    if row is None:
        return ""
    try:
        return _opened(runtime, row).qr_payload
    except Exception:  # noqa: BLE001 - no stored payload to read the signer from
        return ""


def _alg(signed_data: str, form: str) -> str:
    import base64
    import json

    if not signed_data:
        return "ES256" if form == "qr_payload" else ""
    try:
        header = signed_data.split(".", 1)[0]
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        return str(json.loads(decoded).get("alg", ""))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ""


def runtime_of(context: VerifyContext) -> LicenceRuntime:
    """The platform's licence runtime (FailedPrecondition without a platform)."""
    if context.platform is None:
        raise FailedPrecondition("no licence service configured for verification")
    from license.runtime import runtime_for

    return runtime_for(context.platform)


def verify_licence_check(
    context: VerifyContext,
    principal: Principal,
    request: LicenceCheckRequest,
    *,
    runtime: LicenceRuntime | None = None,
) -> Verified:
    """VerifyLicense: the report, signed when asked for, and the audit record (hashes only);
    role ``verifier``."""
    principal.require_role("verifier")
    runtime = runtime or runtime_of(context)
    report = verify_licence(
        context,
        runtime,
        request.form,
        request.value,
        at=request.at_time,
        options=request.options,
    )
    return context.complete(principal, "license", report, request.options)
