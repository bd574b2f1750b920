"""The shared verification report model (VerifyService): every verifier in ``verify/`` builds one.

These frozen dataclasses mirror ``VerificationReport`` and its parts in
``proto/govtrust/v1/common.proto`` field for field, without importing protobuf (domain code
stays transport-free; ``govtrust/api/verify.py`` converts with ``report_to_pb``). Enum members
carry the proto value name without its prefix (``Verdict.VALID`` ↔ ``VERDICT_VALID``).

:meth:`VerificationReport.to_json` is exactly the proto3 JSON mapping of the report (field names
as in the proto, enums by name, timestamps RFC 3339, bytes base64, int64 as strings, defaults
omitted), so the signed JSON (:class:`ReportSigner`) and the proto message carry the same content.

Rules every verifier follows (issue #8, DESIGN.md "Verification answers"):

* a part's verdict follows from its reasons (:func:`verdict_of`): no reason → VALID; any reason
  whose code means "checked and fails" → INVALID; otherwise (something could not be checked)
  → INDETERMINATE. Never VALID when something was not checked;
* the overall verdict combines the parts (:func:`combine`): INVALID if any part is INVALID,
  else INDETERMINATE if any is INDETERMINATE (or there are no parts), else VALID;
* human texts come in ``zh-CN`` (default) or ``en`` (:func:`normalize_locale`, :func:`tr`).
"""

# ruff: noqa: S105 - reason and token-kind names are not passwords

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, IntEnum, StrEnum
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from ca.path import key_algorithm_name, signature_algorithm_name
from govtrust.audit import canonical_json
from govtrust.errors import InvalidArgument
from idp.types import IdentityKind, IdentityStatus, IdentitySummary
from license.checking import Verdict as Verdict  # the one verdict enum, re-exported
from seal.types import SealKind, SealStatus

VERIFIER = "govtrust/1.0.0"
REPORT_JWS_TYPE = "govtrust-verification-report+jws"

# --- enumerations (names = proto value names without the prefix) ---------------------------


class ReasonCode(StrEnum):
    """Machine-readable reason for a non-VALID verdict or a warning (proto ``ReasonCode``)."""

    FORMAT_ERROR = "format_error"
    NO_SIGNATURE = "no_signature"
    DIGEST_MISMATCH = "digest_mismatch"
    SIGNATURE_INVALID = "signature_invalid"
    DISALLOWED_MODIFICATION = "disallowed_modification"
    PARTIAL_COVERAGE = "partial_coverage"
    UNKNOWN_ISSUER = "unknown_issuer"
    CHAIN_INVALID = "chain_invalid"
    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    CERTIFICATE_REVOKED = "certificate_revoked"
    CERTIFICATE_ON_HOLD = "certificate_on_hold"
    REVOCATION_UNKNOWN = "revocation_unknown"
    KEY_USAGE_MISMATCH = "key_usage_mismatch"
    TIMESTAMP_INVALID = "timestamp_invalid"
    NO_TRUSTED_TIME = "no_trusted_time"
    SEAL_NOT_ACTIVE = "seal_not_active"
    SEAL_STRUCTURE_INVALID = "seal_structure_invalid"
    IDENTITY_NOT_ACTIVE = "identity_not_active"
    LICENSE_NOT_FOUND = "license_not_found"
    LICENSE_REVOKED = "license_revoked"
    LICENSE_SUSPENDED = "license_suspended"
    LICENSE_EXPIRED = "license_expired"
    LICENSE_SUPERSEDED = "license_superseded"
    LICENSE_MISMATCH = "license_mismatch"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_ISSUER_MISMATCH = "token_issuer_mismatch"
    TOKEN_AUDIENCE_MISMATCH = "token_audience_mismatch"
    TOKEN_ALGORITHM_REJECTED = "token_algorithm_rejected"
    TOKEN_UNKNOWN_KEY = "token_unknown_key"
    TOKEN_REVOKED = "token_revoked"


# Codes meaning "could not be checked" (→ INDETERMINATE); every other code means "checked and
# fails" (→ INVALID). A hold is temporary (ETSI EN 319 102-1: TRY_LATER), hence indeterminate.
INDETERMINATE_CODES = frozenset(
    {
        ReasonCode.UNKNOWN_ISSUER,
        ReasonCode.REVOCATION_UNKNOWN,
        ReasonCode.NO_TRUSTED_TIME,
        ReasonCode.CERTIFICATE_ON_HOLD,
    }
)


class StatusSource(StrEnum):
    """Where status information came from."""

    REGISTRY = "registry"
    OCSP = "ocsp"
    CRL = "crl"
    STATUS_LIST = "status_list"
    EMBEDDED = "embedded"
    NONE = "none"


class RevocationStatus(StrEnum):
    """Revocation status of a certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    ON_HOLD = "on_hold"
    UNKNOWN = "unknown"


class RevocationReasonCode(IntEnum):
    """RFC 5280 CRLReason (values = RFC codes = proto values)."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10


class CertificateProfile(StrEnum):
    """Our certificate profiles (values = the CA's profile / role names)."""

    CITIZEN = "citizen"
    LEGAL_PERSON = "legal-person"
    SEAL = "seal"
    SERVICE = "service"
    ROOT_CA = "root"
    ISSUING_CA = "issuing"
    OCSP_RESPONDER = "ocsp"
    TSA = "tsa"


class CertificatePurpose(StrEnum):
    """What a certificate is to be checked for."""

    CLIENT_AUTH = "client_auth"
    SERVER_AUTH = "server_auth"
    DOCUMENT_SIGNING = "document_signing"
    SEAL = "seal"
    TIME_STAMPING = "time_stamping"
    OCSP_SIGNING = "ocsp_signing"


class RevocationCheck(StrEnum):
    """How revocation is checked (``DEFAULT``: registry for ours, then OCSP, then CRL)."""

    DEFAULT = "default"
    REGISTRY = "registry"
    OCSP = "ocsp"
    CRL = "crl"


class SignatureFormat(StrEnum):
    """Signature container formats."""

    PADES = "pades"
    CMS = "cms"
    SES_SIGNATURE = "ses_signature"
    JWS = "jws"
    COSE_SIGN1 = "cose_sign1"
    JWT = "jwt"


class SigningTimeSource(StrEnum):
    """Where a signing time comes from."""

    TIMESTAMP = "timestamp"
    CLAIMED = "claimed"
    NONE = "none"


class Coverage(StrEnum):
    """How much of a PDF a signature covers."""

    ENTIRE_FILE = "entire_file"
    ENTIRE_REVISION = "entire_revision"
    PARTIAL = "partial"


class ModificationLevel(StrEnum):
    """The most significant change to a PDF after a signature."""

    NONE = "none"
    LTA_UPDATES = "lta_updates"
    FORM_FILLING = "form_filling"
    ANNOTATIONS = "annotations"
    OTHER = "other"


class PadesLevel(StrEnum):
    """PAdES baseline level reached."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


class DigestAlgorithm(StrEnum):
    """Digest algorithms (values = ``hashlib`` names)."""

    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"
    SM3 = "sm3"


class EvidenceKind(StrEnum):
    """What a report is about."""

    CERTIFICATE = "certificate"
    PDF = "pdf"
    LICENSE_IDENTIFIER = "license_identifier"
    LICENSE_SIGNED_DATA = "license_signed_data"
    LICENSE_DOCUMENT = "license_document"
    LICENSE_QR_PAYLOAD = "license_qr_payload"
    SEAL_SIGNATURE = "seal_signature"
    TOKEN = "token"
    OFD = "ofd"


class TokenKind(StrEnum):
    """Kinds of token of our identity provider."""

    ID_TOKEN = "id_token"
    ACCESS_TOKEN = "access_token"
    REFRESH_TOKEN = "refresh_token"


class LicenseStatus(StrEnum):
    """Status of an e-licence."""

    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    NOT_YET_VALID = "not_yet_valid"


class ReportFormat(StrEnum):
    """Forms in which a report is returned."""

    PROTO = "proto"
    SIGNED_JSON = "signed_json"


# proto enum prefix of each enum class (used by to_json and by the adapter).
PROTO_ENUM_PREFIX: dict[type[Enum], str] = {
    Verdict: "VERDICT_",
    ReasonCode: "REASON_CODE_",
    StatusSource: "STATUS_SOURCE_",
    RevocationStatus: "REVOCATION_STATUS_",
    RevocationReasonCode: "REVOCATION_REASON_",
    CertificateProfile: "CERTIFICATE_PROFILE_",
    CertificatePurpose: "CERTIFICATE_PURPOSE_",
    RevocationCheck: "REVOCATION_CHECK_",
    SignatureFormat: "SIGNATURE_FORMAT_",
    SigningTimeSource: "SIGNING_TIME_SOURCE_",
    Coverage: "COVERAGE_",
    ModificationLevel: "MODIFICATION_LEVEL_",
    PadesLevel: "PADES_LEVEL_",
    DigestAlgorithm: "DIGEST_ALGORITHM_",
    EvidenceKind: "EVIDENCE_KIND_",
    TokenKind: "TOKEN_KIND_",
    LicenseStatus: "LICENSE_STATUS_",
    ReportFormat: "REPORT_FORMAT_",
    IdentityKind: "IDENTITY_KIND_",
    IdentityStatus: "IDENTITY_STATUS_",
    SealKind: "SEAL_KIND_",
    SealStatus: "SEAL_STATUS_",
}


def proto_enum_name(member: Enum) -> str:
    """The proto value name of a domain enum member (``Verdict.VALID`` → ``VERDICT_VALID``)."""
    return PROTO_ENUM_PREFIX[type(member)] + member.name


# --- locale -----------------------------------------------------------------------------------

LOCALES = ("zh-CN", "en")


def normalize_locale(locale: str, *, field_name: str = "report_options.locale") -> str:
    """``zh-CN`` (default, also ``zh``, ``zh-Hans``) or ``en`` (``en-*``); else InvalidArgument."""
    text = (locale or "").strip()
    lowered = text.lower().replace("_", "-")
    if lowered in ("", "zh", "zh-cn", "zh-hans", "zh-hans-cn"):
        return "zh-CN"
    if lowered == "en" or lowered.startswith("en-"):
        return "en"
    raise InvalidArgument.field(field_name, f"unsupported locale {text!r}: use zh-CN or en")


def tr(locale: str, zh: str, en: str) -> str:
    """Pick the text for ``locale`` (an already normalised locale)."""
    return en if locale == "en" else zh


# --- report parts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """One reason behind a verdict or a warning: ``subject`` is a path into the report."""

    code: ReasonCode
    message: str
    subject: str = ""

    @property
    def verdict(self) -> Verdict:
        """INDETERMINATE for "could not be checked" codes, INVALID for the rest."""
        return Verdict.INDETERMINATE if self.code in INDETERMINATE_CODES else Verdict.INVALID

    def under(self, prefix: str) -> Reason:
        """The same reason with ``prefix`` prepended to its subject (``signatures[0].`` …)."""
        if not prefix:
            return self
        subject = f"{prefix}.{self.subject}" if self.subject else prefix
        return dataclasses.replace(self, subject=subject)


def verdict_of(reasons: Iterable[Reason]) -> Verdict:
    """VALID with no reasons, INVALID if any reason is a failure, else INDETERMINATE."""
    verdict = Verdict.VALID
    for reason in reasons:
        if reason.verdict is Verdict.INVALID:
            return Verdict.INVALID
        verdict = Verdict.INDETERMINATE
    return verdict


def combine(verdicts: Iterable[Verdict | None]) -> Verdict:
    """Overall verdict: INVALID if any part is; else INDETERMINATE if any part is, or a part is
    missing (None), or there are no parts at all; VALID only when every part is VALID."""
    seen = False
    result = Verdict.VALID
    for verdict in verdicts:
        seen = True
        if verdict is Verdict.INVALID:
            return Verdict.INVALID
        if verdict is not Verdict.VALID:
            result = Verdict.INDETERMINATE
    return result if seen else Verdict.INDETERMINATE


@dataclass(frozen=True)
class Digest:
    """A digest of some data."""

    algorithm: DigestAlgorithm
    value: bytes

    @classmethod
    def sha256(cls, data: bytes) -> Digest:
        """SHA-256 of ``data``."""
        return cls(DigestAlgorithm.SHA256, hashlib.sha256(data).digest())


@dataclass(frozen=True)
class CertificateSummary:
    """A compact description of one X.509 certificate."""

    subject: str
    issuer: str
    serial_number: str  # upper-case hex
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str  # lower-case hex
    profile: CertificateProfile | None = None
    issuer_ca: str = ""
    der: bytes = b""
    signature_algorithm: str = ""  # the issuer's signature, e.g. SM3withSM2, ecdsa-with-SHA256
    public_key_algorithm: str = ""  # the subject's key, e.g. SM2, EC P-256, RSA 2048

    @classmethod
    def of(
        cls,
        certificate: x509.Certificate,
        *,
        profile: CertificateProfile | None = None,
        issuer_ca: str = "",
        der: bytes | None = None,
    ) -> CertificateSummary:
        """Summarise a parsed certificate."""
        return cls(
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            serial_number=f"{certificate.serial_number:X}",
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
            profile=profile,
            issuer_ca=issuer_ca,
            der=der if der is not None else certificate.public_bytes(Encoding.DER),
            signature_algorithm=signature_algorithm_name(certificate),
            public_key_algorithm=key_algorithm_name(certificate),
        )


@dataclass(frozen=True)
class RevocationReport:
    """The revocation status of one certificate at one point in time."""

    status: RevocationStatus
    source: StatusSource
    status_time: datetime | None = None
    revoked_at: datetime | None = None
    reason: RevocationReasonCode | None = None
    invalidity_date: datetime | None = None
    this_update: datetime | None = None
    next_update: datetime | None = None


@dataclass(frozen=True)
class CertificateReport:
    """Validation of one certificate: path, validity, purpose, revocation, identity named."""

    verdict: Verdict
    reasons: tuple[Reason, ...] = ()
    certificate: CertificateSummary | None = None
    chain: tuple[CertificateSummary, ...] = ()  # leaf first, ending with the trust anchor
    trusted: bool = False
    validation_time: datetime | None = None
    within_validity_period: bool = False
    purpose_allowed: bool = False
    revocation_at_validation_time: RevocationReport | None = None
    revocation_now: RevocationReport | None = None
    identity: IdentitySummary | None = None
    seal_id: str = ""


@dataclass(frozen=True)
class TimestampReport:
    """Validation of an RFC 3161 time-stamp token."""

    verdict: Verdict
    reasons: tuple[Reason, ...] = ()
    time: datetime | None = None
    tsa_certificate: CertificateReport | None = None
    policy_oid: str = ""
    serial_number: str = ""


@dataclass(frozen=True)
class SealReport:
    """The e-seal behind a signature, as known to the seal registry."""

    seal_id: str
    kind: SealKind | None = None
    name: str = ""
    owner: IdentitySummary | None = None
    status_at_signing_time: SealStatus | None = None
    status_now: SealStatus | None = None
    applied_by: IdentitySummary | None = None
    seal_structure_verdict: Verdict | None = None


@dataclass(frozen=True)
class SignatureReport:
    """Validation of one signature (PDF, CMS/SES, JWS/JWT, COSE)."""

    index: int
    format: SignatureFormat
    verdict: Verdict
    reasons: tuple[Reason, ...] = ()
    field_name: str = ""
    signer: IdentitySummary | None = None
    certificate: CertificateReport | None = None
    seal: SealReport | None = None
    signing_time: datetime | None = None
    signing_time_source: SigningTimeSource | None = None
    timestamp: TimestampReport | None = None
    intact: bool = False
    signature_valid: bool = False
    coverage: Coverage | None = None
    modification_level: ModificationLevel | None = None
    pades_level: PadesLevel | None = None
    digest_algorithm: DigestAlgorithm | None = None
    signature_algorithm: str = ""
    pages: tuple[int, ...] = ()
    reason: str = ""
    location: str = ""


@dataclass(frozen=True)
class DocumentReport:
    """Document-level facts about a verified PDF."""

    size_bytes: int = field(default=0, metadata={"int64": True})
    digest: Digest | None = None
    page_count: int = 0
    revision_count: int = 0
    signature_count: int = 0
    unsigned_changes_after_last_signature: bool = False


@dataclass(frozen=True)
class LicenseReport:
    """Licence-level facts in a licence verification."""

    identifier: str = ""
    type_code: str = ""
    type_name: str = ""
    version: int = 0
    status: LicenseStatus | None = None
    status_source: StatusSource | None = None
    status_reason: str = ""
    latest_identifier: str = ""
    issuer_name: str = ""
    issuer_code: str = ""
    holder_name: str = ""
    holder_masked_code: str = ""
    valid_from: str = ""
    valid_until: str = ""
    disclosed_fields: Mapping[str, str] = field(default_factory=dict)
    matches_registry: bool = False


@dataclass(frozen=True)
class TokenReport:
    """Token-level facts in a token verification."""

    kind: TokenKind | None = None
    algorithm: str = ""
    key_id: str = ""
    issuer: str = ""
    subject: str = ""
    audience: tuple[str, ...] = ()
    client_id: str = ""
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    not_before: datetime | None = None
    auth_time: datetime | None = None
    acr: str = ""
    amr: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    revoked: bool = False
    identity: IdentitySummary | None = None
    acting_for: IdentitySummary | None = None


@dataclass(frozen=True)
class ReportOptions:
    """How a report is produced: signed JSON or not, locale (normalised), caller's reference."""

    report_format: ReportFormat = ReportFormat.PROTO
    locale: str = "zh-CN"
    reference: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "locale", normalize_locale(self.locale))
        if len(self.reference) > 256:
            raise InvalidArgument.field("report_options.reference", "at most 256 characters")


@dataclass(frozen=True)
class VerificationReport:
    """The structured answer of every verify call."""

    report_id: str
    verdict: Verdict
    reasons: tuple[Reason, ...] = ()
    warnings: tuple[Reason, ...] = ()
    summary: str = ""
    evidence_kind: EvidenceKind | None = None
    evidence_digest: Digest | None = None
    checked_at: datetime | None = None
    validation_time: datetime | None = None
    signatures: tuple[SignatureReport, ...] = ()
    certificate: CertificateReport | None = None
    document: DocumentReport | None = None
    license: LicenseReport | None = None
    token: TokenReport | None = None
    verifier: str = VERIFIER
    reference: str = ""

    def to_json(self) -> dict[str, Any]:
        """The proto3 JSON mapping of the report (``MessageToDict`` with proto field names)."""
        return _message_json(self)

    def canonical_json(self) -> bytes:
        """:meth:`to_json` as canonical JSON bytes (sorted keys, no spaces, UTF-8)."""
        return canonical_json(self.to_json())


@dataclass(frozen=True)
class SignedReport:
    """A report as signed JSON: compact JWS, its decoded payload, the signer's DER certificate."""

    jws: str
    json: str
    signer_certificate: bytes


# --- building a report --------------------------------------------------------------------------


_ID_PREFIX = uuid.uuid4().hex[:16]  # random per process
_ID_COUNTER = itertools.count(1)


_T = TypeVar("_T")


def restamped(value: _T, **changes: Any) -> _T:
    """A copy of a frozen report dataclass with some fields replaced by values of their types,
    without ``dataclasses.replace``'s re-validation (for re-stamping ids and times on the hot
    path; the fields changed must already hold what ``__init__`` would have stored)."""
    copy = object.__new__(type(value))
    state = copy.__dict__
    state.update(value.__dict__)
    state.update(changes)
    return copy


def new_report_id() -> str:
    """A fresh report id: 64 random bits per process and a counter, UUID-formatted (unique
    without reading the system's random source on every check)."""
    value = f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def build_report(
    *,
    evidence_kind: EvidenceKind,
    evidence: bytes,
    options: ReportOptions,
    checked_at: datetime,
    validation_time: datetime | None = None,
    signatures: Sequence[SignatureReport] = (),
    certificate: CertificateReport | None = None,
    document: DocumentReport | None = None,
    license: LicenseReport | None = None,
    token: TokenReport | None = None,
    reasons: Sequence[Reason] = (),
    warnings: Sequence[Reason] = (),
    verdict: Verdict | None = None,
    evidence_digest: Digest | None = None,
) -> VerificationReport:
    """Assemble the report: overall verdict, reasons and the localised summary
    (``evidence_digest``: the SHA-256 of ``evidence`` when the caller has it already).

    The overall verdict is :func:`combine` of the parts' verdicts and of ``reasons`` (report
    level reasons, e.g. "no signature"), unless ``verdict`` is given. The parts' reasons are
    gathered into the report's reasons with their subject path.
    """
    parts: list[Verdict | None] = []
    gathered: list[Reason] = list(reasons)
    for i, signature in enumerate(signatures):
        parts.append(signature.verdict)
        gathered += [r.under(f"signatures[{i}]") for r in signature.reasons]
    if certificate is not None:
        parts.append(certificate.verdict)
        gathered += [r.under("certificate") for r in certificate.reasons]
    if reasons:
        parts.append(verdict_of(reasons))
    if verdict is None:
        verdict = combine(parts)
    report = VerificationReport(
        report_id=new_report_id(),
        verdict=verdict,
        reasons=tuple(unique_reasons(gathered)) if verdict is not Verdict.VALID else (),
        warnings=tuple(warnings),
        evidence_kind=evidence_kind,
        evidence_digest=evidence_digest or Digest.sha256(evidence),
        checked_at=checked_at,
        validation_time=validation_time or checked_at,
        signatures=tuple(signatures),
        certificate=certificate,
        document=document,
        license=license,
        token=token,
        reference=options.reference,
    )
    return dataclasses.replace(report, summary=summarize(report, options.locale))


def unique_reasons(reasons: Iterable[Reason]) -> list[Reason]:
    """``reasons`` without repeats, in first-seen order."""
    return list(dict.fromkeys(reasons))


# --- human-readable summary ------------------------------------------------------------------

_VERDICT_TEXT = {
    Verdict.VALID: ("有效", "VALID"),
    Verdict.INVALID: ("无效", "INVALID"),
    Verdict.INDETERMINATE: ("无法确定", "INDETERMINATE"),
}
_EVIDENCE_TEXT = {
    EvidenceKind.CERTIFICATE: ("证书", "certificate"),
    EvidenceKind.PDF: ("PDF 文档", "PDF document"),
    EvidenceKind.LICENSE_IDENTIFIER: ("电子证照（标识）", "licence (identifier)"),
    EvidenceKind.LICENSE_SIGNED_DATA: ("电子证照（签名数据）", "licence (signed data)"),
    EvidenceKind.LICENSE_DOCUMENT: ("电子证照（文件）", "licence (document)"),
    EvidenceKind.LICENSE_QR_PAYLOAD: ("电子证照（二维码）", "licence (QR payload)"),
    EvidenceKind.SEAL_SIGNATURE: ("电子签章签名", "seal signature"),
    EvidenceKind.TOKEN: ("令牌", "token"),
    EvidenceKind.OFD: ("OFD 文档", "OFD document"),
}


def verdict_text(verdict: Verdict, locale: str) -> str:
    """The verdict in words."""
    zh, en = _VERDICT_TEXT[verdict]
    return tr(locale, zh, en)


def summarize(report: VerificationReport, locale: str) -> str:
    """A short human-readable summary: what was checked, the verdict, the subject, the reasons."""
    kind = (
        _EVIDENCE_TEXT.get(report.evidence_kind, ("对象", "object"))
        if report.evidence_kind
        else ("对象", "object")
    )
    what = tr(locale, kind[0], kind[1])
    lines = [
        tr(
            locale,
            f"{what}验证结果：{verdict_text(report.verdict, locale)}。",
            f"{what[:1].upper()}{what[1:]} verification result: "
            f"{verdict_text(report.verdict, locale)}.",
        )
    ]
    cert = report.certificate
    if cert is not None and cert.certificate is not None:
        lines.append(
            tr(
                locale,
                f"证书主体：{cert.certificate.subject}；签发者：{cert.certificate.issuer}；"
                f"序列号：{cert.certificate.serial_number}。",
                f"Certificate subject: {cert.certificate.subject}; issuer: "
                f"{cert.certificate.issuer}; serial: {cert.certificate.serial_number}.",
            )
        )
        if cert.identity is not None:
            lines.append(
                tr(
                    locale,
                    f"证书标识的主体：{cert.identity.display_name}（{cert.identity.masked_identifier}）。",
                    f"Identity named: {cert.identity.display_name} "
                    f"({cert.identity.masked_identifier}).",
                )
            )
    if report.signatures:
        lines.append(
            tr(
                locale,
                f"签名数：{len(report.signatures)}。",
                f"Signatures: {len(report.signatures)}.",
            )
        )
        for i, sig in enumerate(report.signatures):
            who = ""
            if sig.seal is not None:
                who = sig.seal.name or sig.seal.seal_id
            elif sig.signer is not None:
                who = sig.signer.display_name
            elif sig.certificate is not None and sig.certificate.certificate is not None:
                who = sig.certificate.certificate.subject
            lines.append(
                tr(
                    locale,
                    f"签名 {i + 1}（{who or '未知签署者'}）：{verdict_text(sig.verdict, locale)}。",
                    f"Signature {i + 1} ({who or 'unknown signer'}): "
                    f"{verdict_text(sig.verdict, locale)}.",
                )
            )
    if report.license is not None and report.license.identifier:
        lines.append(
            tr(
                locale,
                f"证照标识：{report.license.identifier}。",
                f"Licence: {report.license.identifier}.",
            )
        )
    if report.token is not None and report.token.identity is not None:
        ident = report.token.identity
        lines.append(
            tr(
                locale,
                f"令牌主体：{ident.display_name}（{ident.masked_identifier}）。",
                f"Token identity: {ident.display_name} ({ident.masked_identifier}).",
            )
        )
    for reason in report.reasons:
        lines.append(tr(locale, f"原因：{reason.message}", f"Reason: {reason.message}"))
    for warning in report.warnings:
        lines.append(tr(locale, f"提示：{warning.message}", f"Warning: {warning.message}"))
    return "\n".join(lines)


# --- proto3 JSON mapping -------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """A timestamp as the proto3 JSON mapping prints it (UTC, 0/3/6 fraction digits, ``Z``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micro = moment.microsecond
    if micro == 0:
        return text + "Z"
    if micro % 1000 == 0:
        return f"{text}.{micro // 1000:03d}Z"
    return f"{text}.{micro:06d}Z"


def _value_json(value: Any, *, int64: bool = False) -> Any:
    if isinstance(value, Enum):
        if isinstance(value, RevocationReasonCode):
            return proto_enum_name(value)
        return proto_enum_name(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if int64 else value
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, IdentitySummary):
        return _identity_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _message_json(value)
    raise TypeError(f"cannot map {type(value).__name__} to JSON")


def _identity_json(identity: IdentitySummary) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if identity.id:
        out["id"] = identity.id
    out["kind"] = proto_enum_name(identity.kind)
    if identity.display_name:
        out["display_name"] = identity.display_name
    if identity.masked_identifier:
        out["masked_identifier"] = identity.masked_identifier
    out["status"] = proto_enum_name(identity.status)
    if 1 <= identity.assurance_level <= 3:
        out["assurance_level"] = f"ASSURANCE_LEVEL_{identity.assurance_level}"
    return out


def _is_default(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, RevocationReasonCode):
        return value is RevocationReasonCode.UNSPECIFIED
    if isinstance(value, Enum):
        return False
    if isinstance(value, (int, str, bytes, tuple, list, dict)) and not isinstance(value, bool):
        return not value
    if isinstance(value, Mapping):
        return not value
    return False


def _message_json(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if _is_default(value):
            continue
        int64 = bool(f.metadata.get("int64"))
        if isinstance(value, (tuple, list)):
            out[f.name] = [_value_json(v, int64=int64) for v in value]
        elif isinstance(value, Mapping):
            out[f.name] = {str(k): _value_json(v) for k, v in value.items()}
        else:
            out[f.name] = _value_json(value, int64=int64)
    return out


# --- signed JSON ---------------------------------------------------------------------------------


class ReportSigner:
    """Signs reports as compact JWS (canonical-JSON payload, ``x5c`` chain) through the key store.

    ``signer`` is a :class:`license.signer.LicenceSigner` (a key-store key plus its certificate
    chain, leaf first), reused here because it is exactly "a key in the store with a chain".
    """

    def __init__(self, signer: Any) -> None:
        from license.signer import LicenceSigner

        if not isinstance(signer, LicenceSigner):
            raise TypeError("ReportSigner needs a license.signer.LicenceSigner")
        self._signer = signer
        self.certificate_der = signer.chain[0].public_bytes(Encoding.DER)

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The signing certificate's chain, leaf first."""
        chain: tuple[x509.Certificate, ...] = self._signer.chain
        return chain

    def sign(self, report: VerificationReport) -> SignedReport:
        """The report as signed JSON."""
        from license.signer import sign_compact

        payload = report.to_json()
        jws = sign_compact(self._signer, payload, typ=REPORT_JWS_TYPE)
        return SignedReport(
            jws=jws,
            json=canonical_json(payload).decode("utf-8"),
            signer_certificate=self.certificate_der,
        )


def verify_signed_report(
    jws: str, roots: Sequence[x509.Certificate], *, at: datetime | None = None
) -> dict[str, Any]:
    """Check a signed report (chain to ``roots``, signature) and return its JSON payload.

    Raises :class:`license.errors.LicenceVerificationFailed` when it does not verify.
    """
    from license.signer import verify_compact

    verified = verify_compact(jws, roots, typ=REPORT_JWS_TYPE, at=at, until_leaf_expiry=at is None)
    return verified.payload
