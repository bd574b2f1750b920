"""VerifySealSignature: a detached CMS SignedData or a GB/T 38540 SES_Signature over data or its
digest → integrity, signature, the seal behind it (status now and at signing time), the signer's
certificate at the signing time, and the signature time-stamp.

Signing time: a time-stamp token that verifies (imprint over the signature value, TSA chain to
our roots, critical EKU timeStamping) is *trusted*; the signer's own claim (CMS signing-time, SES
``timeInfo``) is not. The certificate and the seal are judged at the trusted time when there is
one, else at the request's time (now); a signer revoked since but claiming an earlier time is
INDETERMINATE (NO_TRUSTED_TIME), never VALID.

:func:`verify_timestamp` is shared with the PDF verifier, and the seal's facts (kind, name, owner,
status history) are the PDF verifier's cached ones (:func:`seal_facts`), so VerifyOfd and
VerifySealSignature read a seal's registry entry as VerifyPdf does: once per status epoch, not
once or twice per signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from ca.cms_check import (
    DIGESTS,
    HASHES,
    TokenUnreadable,
    check_signer,
    check_token,
    hash_of,
    load_signed_data,
    signing_time,
    time_stamp_token,
)
from ca.path import public_key_of, signature_verifies
from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from hsm.errors import InvalidSm2PublicKey
from seal.types import USE_ACTIONS
from seal.uses import SealUseLookup
from verify.report import (
    CertificatePurpose,
    CertificateReport,
    DigestAlgorithm,
    EvidenceKind,
    Reason,
    ReasonCode,
    ReportOptions,
    RevocationStatus,
    SealReport,
    SignatureFormat,
    SignatureReport,
    SigningTimeSource,
    TimestampReport,
    Verdict,
    build_report,
    combine,
    tr,
    unique_reasons,
    verdict_of,
)

if TYPE_CHECKING:
    from verify.pdf import SealFacts
    from verify.service import Verified, VerifyContext

MAX_SIGNATURE_BYTES = 1024 * 1024
MAX_DATA_BYTES = 64 * 1024 * 1024
_DIGEST_SIZES = {
    DigestAlgorithm.SHA256: 32,
    DigestAlgorithm.SHA384: 48,
    DigestAlgorithm.SHA512: 64,
    DigestAlgorithm.SM3: 32,
}
SES_ALGORITHMS = {
    "1.2.840.10045.4.3.2": ("sha256", "ecdsa-with-SHA256"),
    "1.2.840.10045.4.3.3": ("sha384", "ecdsa-with-SHA384"),
    "1.2.840.113549.1.1.11": ("sha256", "sha256WithRSAEncryption"),
    "1.2.840.113549.1.1.12": ("sha384", "sha384WithRSAEncryption"),
    "1.2.156.10197.1.501": ("sm3", "SM2-with-SM3"),
}


@dataclass(frozen=True)
class SealSignatureCheck:
    """A VerifySealSignature request in domain terms (exactly one of ``data`` and ``digest``)."""

    signature: bytes
    format: SignatureFormat | None = None
    data: bytes | None = None
    digest: tuple[DigestAlgorithm, bytes] | None = None
    at_time: datetime | None = None
    options: ReportOptions = field(default_factory=ReportOptions)


# --- time-stamps ---------------------------------------------------------------------------------


def verify_timestamp(
    ctx: VerifyContext, token_der: bytes, imprinted: bytes, locale: str, *, now: datetime
) -> TimestampReport:
    """Check an RFC 3161 TimeStampToken over ``imprinted`` (its message imprint), its signature
    and its TSA's certificate (critical EKU timeStamping, chain to our roots, at genTime)."""
    return _verify_timestamp(ctx, token_der, imprinted, locale, now=now)[0]


def _verify_timestamp(
    ctx: VerifyContext, token_der: bytes, imprinted: bytes, locale: str, *, now: datetime
) -> tuple[TimestampReport, timedelta]:
    """:func:`verify_timestamp` and the token's :func:`timestamp_slack` (read from the same
    parse; zero when the token does not parse)."""
    reasons: list[Reason] = []

    def bad(zh: str, en: str) -> tuple[TimestampReport, timedelta]:
        report = TimestampReport(
            Verdict.INVALID, (Reason(ReasonCode.TIMESTAMP_INVALID, tr(locale, zh, en)),)
        )
        return report, timedelta(0)

    tsa_candidates = [
        ctx.certificates.parse(i.der)
        for i in ctx.authority.hierarchy.issuers.values()
        if i.role == "tsa"
    ]
    try:
        token = check_token(token_der, imprinted, tsa_candidates)
    except TokenUnreadable:
        return bad("时间戳无法解析", "the time-stamp token does not parse")
    gen_time, policy, serial = token.gen_time, token.policy_oid, token.serial_number
    check = token.signer
    if not token.imprint_matches:
        reasons.append(
            Reason(
                ReasonCode.TIMESTAMP_INVALID,
                tr(
                    locale,
                    "时间戳的消息摘要与签名值不符",
                    "the time-stamp's imprint does not match the signature",
                ),
            )
        )
    if not token.content_digest_matches:
        reasons.append(
            Reason(
                ReasonCode.TIMESTAMP_INVALID,
                tr(locale, "时间戳内容摘要不符", "the time-stamp's content digest does not match"),
            )
        )
    if not check.signature_valid:
        reasons.append(
            Reason(
                ReasonCode.TIMESTAMP_INVALID,
                tr(
                    locale,
                    f"时间戳签名无效（{check.problem or '签名不符'}）",
                    f"the time-stamp's signature does not verify ({check.problem or 'mismatch'})",
                ),
            )
        )
    tsa_report: CertificateReport | None = None
    if check.certificate is not None:
        tsa_report = ctx.certificates.verify(
            check.certificate,
            at=gen_time,
            purpose=CertificatePurpose.TIME_STAMPING,
            locale=locale,
            now=now,
        )
        reasons += [
            Reason(
                ReasonCode.TIMESTAMP_INVALID if r.verdict is Verdict.INVALID else r.code,
                tr(locale, f"时间戳机构证书：{r.message}", f"TSA certificate: {r.message}"),
                f"tsa_certificate.{r.subject}" if r.subject else "tsa_certificate",
            )
            for r in tsa_report.reasons
        ]
    report = TimestampReport(
        verdict=verdict_of(reasons),
        reasons=tuple(reasons),
        time=gen_time,
        tsa_certificate=tsa_report,
        policy_oid=policy,
        serial_number=serial,
    )
    return report, timestamp_slack(token.info, gen_time)


def timestamp_slack(info: tsp.TSTInfo, gen_time: datetime | None) -> timedelta:
    """How much later than genTime the signed data may have been made: the token's accuracy,
    else one second when genTime carries no fraction (a whole-second clock). Shared by the
    PDF and the seal-signature verifiers so both judge revocation against the same time."""
    try:
        accuracy = info["accuracy"]
        if accuracy.native:
            parts = accuracy.native
            return timedelta(
                seconds=parts.get("seconds") or 0,
                milliseconds=parts.get("millis") or 0,
                microseconds=parts.get("micros") or 0,
            )
    except (KeyError, ValueError, TypeError, AttributeError):
        pass
    if gen_time is not None and gen_time.microsecond == 0:
        return timedelta(seconds=1)
    return timedelta(0)


# --- the seal behind a signature -----------------------------------------------------------------


def seal_facts(ctx: VerifyContext, seal_id: str) -> SealFacts | None:
    """The seal's kind, name, owner and status history as the PDF verifier caches them
    (:meth:`verify.pdf.PdfVerifier.seal_facts`; None: unknown seal or no seal registry)."""
    from verify.pdf import verifier_for

    return verifier_for(ctx).seal_facts(seal_id)


def seal_report(
    ctx: VerifyContext,
    seal_id: str,
    signing_time: datetime | None,
    *,
    digest: bytes | None = None,
    structure_verdict: Verdict | None = None,
) -> SealReport | None:
    """The seal as the registry knows it: kind, name, owner, status now and at ``signing_time``
    (from its history), and who applied it (the seal-use record with this ``digest``)."""
    facts = seal_facts(ctx, seal_id)
    if facts is None:
        return None
    applied_by = None
    if digest:
        lookup = SealUseLookup(ctx.certificates.reader)
        applied_by = lookup.applied_by(seal_id, (digest,), USE_ACTIONS)
    return SealReport(
        seal_id=facts.seal_id,
        kind=facts.kind,
        name=facts.name,
        owner=facts.owner,
        status_at_signing_time=facts.status_at(signing_time) if signing_time else None,
        status_now=facts.status_now,
        applied_by=applied_by,
        seal_structure_verdict=structure_verdict,
    )


# --- the RPC's domain function -------------------------------------------------------------------


@dataclass
class SignatureParts:
    """What the format-specific parsing (CMS, SES_Signature, an OFD's signature) hands to the
    common evaluation, :func:`judge_signature`."""

    fmt: SignatureFormat
    intact: bool
    signature_valid: bool
    signer: x509.Certificate | None
    extra_certs: list[x509.Certificate]
    digest_algorithm: str
    signature_algorithm: str
    claimed_time: datetime | None
    token: bytes | None
    signature_value: bytes
    seal_id: str
    seal_structure: Verdict | None
    data_hash: bytes
    reasons: list[Reason]


def _content_digest(check: SealSignatureCheck, algorithm: str) -> bytes | None:
    """The digest of the signed content under ``algorithm`` (None when it cannot be computed)."""
    if check.data is not None:
        return hashlib.new(algorithm, check.data).digest()
    assert check.digest is not None
    given_algorithm, value = check.digest
    if given_algorithm.value != algorithm:
        raise InvalidArgument.field(
            "digest.algorithm", f"the signature uses {algorithm}; send the data or its {algorithm}"
        )
    return value


def _parse_cms(ctx: VerifyContext, check: SealSignatureCheck, locale: str) -> SignatureParts:
    try:
        signed_data, signer_info = load_signed_data(check.signature)
        if signed_data["encap_content_info"]["content"].native is not None:
            raise ValueError("not a detached signature")
        certs = [
            x509.load_der_x509_certificate(c.chosen.dump())
            for c in signed_data["certificates"] or []
            if c.name == "certificate"
        ]
        # asn1crypto parses lazily: malformed signed or unsigned attributes surface here.
        result = check_signer(signed_data, signer_info)
        claimed_time = signing_time(result.signed_attrs)
        token = time_stamp_token(signer_info)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidArgument.field("signature", f"not a detached CMS SignedData: {exc}") from None
    reasons: list[Reason] = []
    expected = (
        _content_digest(check, result.digest_algorithm)
        if result.digest_algorithm in HASHES
        else None
    )
    intact = expected is not None and result.message_digest == expected
    if not intact:
        reasons.append(
            Reason(
                ReasonCode.DIGEST_MISMATCH,
                tr(
                    locale,
                    "签名数据的摘要不符：数据在签名后被改动",
                    "the signed data's digest does not match: changed after signing",
                ),
            )
        )
    if not result.signature_valid:
        reasons.append(
            Reason(
                ReasonCode.SIGNATURE_INVALID,
                tr(
                    locale,
                    f"签名值无效（{result.problem or '验证失败'}）",
                    f"the signature value does not verify ({result.problem or 'mismatch'})",
                ),
            )
        )
    seal_id = ""
    if result.certificate is not None:
        from verify.certificates import seal_id_of

        seal_id = seal_id_of(result.certificate, ctx.authority.ctx.config.oid_arc)
    return SignatureParts(
        SignatureFormat.CMS,
        intact,
        result.signature_valid,
        result.certificate,
        certs,
        result.digest_algorithm,
        result.signature_algorithm,
        claimed_time,
        token,
        signer_info["signature"].native,
        seal_id,
        None,
        result.message_digest or b"",
        reasons,
    )


def _parse_ses(ctx: VerifyContext, check: SealSignatureCheck, locale: str) -> SignatureParts:
    from seal import structures
    from seal.errors import SealStructureError

    try:
        sig = structures.SesSignature.load(check.signature, strict=True)
        tbs = sig["to_sign"]
        signer_der = sig["cert"].native
        oid = sig["signature_alg_id"].dotted
        value = sig["signature"].native
        seal_der = tbs["eseal"].dump()
        data_hash = tbs["data_hash"].native
        claimed = tbs["time_info"].native
        token = sig["time_stamp"].native if sig["time_stamp"].native is not None else None
        tbs_bytes = tbs.dump()
        if tbs["version"].native != structures.SES_VERSION:
            raise ValueError("not version 4")
        signer = x509.load_der_x509_certificate(signer_der)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgument.field("signature", f"not a DER SES_Signature: {exc}") from None
    if isinstance(claimed, datetime) and claimed.tzinfo is None:
        claimed = claimed.replace(tzinfo=UTC)
    reasons: list[Reason] = []
    structure_verdict = Verdict.VALID
    seal_id = ""
    try:
        parsed = structures.verify_seal(seal_der)
        seal_id = parsed.seal_id
        untrusted = maker_untrusted(ctx, parsed.maker_certificate, locale)
        if untrusted is not None:
            structure_verdict = Verdict.INDETERMINATE
            reasons.append(untrusted)
        if signer_der not in parsed.certificates:
            raise SealStructureError.bad("the signer's certificate is not in the seal's cert list")
    except SealStructureError as exc:
        structure_verdict = Verdict.INVALID
        reasons.append(
            Reason(
                ReasonCode.SEAL_STRUCTURE_INVALID,
                tr(locale, f"印章结构无效：{exc}", f"the seal structure is invalid: {exc}"),
                "seal",
            )
        )
    digest_name, algorithm_name = SES_ALGORITHMS.get(oid, ("", oid))
    try:
        public_key = public_key_of(signer)
    except (ValueError, UnsupportedAlgorithm, InvalidSm2PublicKey):
        public_key = None
    valid = (
        digest_name in DIGESTS
        and public_key is not None
        and signature_verifies(public_key, value, tbs_bytes, hash_of(digest_name))
    )
    if not valid:
        reasons.append(
            Reason(
                ReasonCode.SIGNATURE_INVALID,
                tr(
                    locale,
                    "签名值无效" if digest_name in DIGESTS else f"不支持的签名算法 {oid}",
                    "the signature value does not verify"
                    if digest_name in DIGESTS
                    else f"unsupported signature algorithm {oid}",
                ),
            )
        )
    expected = _content_digest(check, digest_name or "sha256")
    intact = expected is not None and expected == data_hash
    if not intact:
        reasons.append(
            Reason(
                ReasonCode.DIGEST_MISMATCH,
                tr(
                    locale,
                    "数据摘要与 dataHash 不符：数据在签名后被改动",
                    "the data does not match dataHash: changed after signing",
                ),
            )
        )
    return SignatureParts(
        SignatureFormat.SES_SIGNATURE,
        intact,
        valid,
        signer,
        [],
        digest_name,
        algorithm_name,
        claimed,
        token,
        value,
        seal_id,
        structure_verdict,
        data_hash,
        reasons,
    )


def maker_untrusted(ctx: VerifyContext, maker_der: bytes, locale: str) -> Reason | None:
    """UNKNOWN_ISSUER (about ``seal``) when the seal maker's certificate does not chain to our
    roots; None when it does."""
    maker = ctx.certificates.verify(maker_der, locale=locale)
    if maker.trusted:
        return None
    return Reason(
        ReasonCode.UNKNOWN_ISSUER,
        tr(locale, "印章制作者的证书不受信任", "the seal maker's certificate is not trusted"),
        "seal",
    )


def _detect(data: bytes) -> SignatureFormat:
    """CMS ContentInfo starts with the signedData OID; anything else is tried as SES."""
    try:
        content = cms.ContentInfo.load(data)
        if content["content_type"].native == "signed_data":
            return SignatureFormat.CMS
    except (ValueError, TypeError, KeyError):
        pass
    return SignatureFormat.SES_SIGNATURE


def verify_seal_signature(
    ctx: VerifyContext, principal: Principal, check: SealSignatureCheck
) -> Verified:
    """VerifySealSignature (role ``verifier``)."""
    principal.require_role("verifier")
    if not check.signature:
        raise InvalidArgument.field("signature", "required")
    if len(check.signature) > MAX_SIGNATURE_BYTES:
        raise InvalidArgument.field("signature", f"larger than {MAX_SIGNATURE_BYTES} bytes")
    if (check.data is None) == (check.digest is None):
        raise InvalidArgument.field("content", "give exactly one of data and digest")
    if check.data is not None and len(check.data) > MAX_DATA_BYTES:
        raise InvalidArgument.field("data", "too large; send its digest instead")
    if check.digest is not None and len(check.digest[1]) != _DIGEST_SIZES[check.digest[0]]:
        raise InvalidArgument.field(
            "digest.value",
            f"a {check.digest[0].value} digest has {_DIGEST_SIZES[check.digest[0]]} bytes",
        )
    locale = check.options.locale
    now = ctx.now()
    fmt = check.format or _detect(check.signature)
    parts = (
        _parse_cms(ctx, check, locale)
        if fmt is SignatureFormat.CMS
        else _parse_ses(ctx, check, locale)
    )
    signature, validation_time, warnings = judge_signature(
        ctx, parts, index=0, at_time=check.at_time, locale=locale, now=now
    )
    report = build_report(
        evidence_kind=EvidenceKind.SEAL_SIGNATURE,
        evidence=check.signature,
        options=check.options,
        checked_at=now,
        validation_time=validation_time,
        signatures=[signature],
        warnings=warnings,
    )
    return ctx.complete(principal, "seal_signature", report, check.options)


def judge_signature(
    ctx: VerifyContext,
    parts: SignatureParts,
    *,
    index: int,
    at_time: datetime | None,
    locale: str,
    now: datetime,
) -> tuple[SignatureReport, datetime, list[Reason]]:
    """One signature's report from its parsed ``parts`` (shared by VerifySealSignature and
    VerifyOfd): the time-stamp, the signer's certificate at the trusted time (else ``at_time``
    or now), the seal behind it then and now, and the verdict. Returns the report, the
    validation time and the warnings (subjects under ``signatures[index]``)."""
    reasons = list(parts.reasons)
    warnings: list[Reason] = []

    timestamp: TimestampReport | None = None
    proven: datetime | None = None  # the signature provably existed at this time
    if parts.token is not None:
        timestamp, slack = _verify_timestamp(
            ctx, parts.token, parts.signature_value, locale, now=now
        )
        if timestamp.verdict is Verdict.VALID and timestamp.time is not None:
            proven = timestamp.time + slack
        else:
            reasons += [r.under("timestamp") for r in timestamp.reasons]
    validation_time = proven or at_time or now
    source = (
        SigningTimeSource.TIMESTAMP
        if proven
        else SigningTimeSource.CLAIMED
        if parts.claimed_time
        else SigningTimeSource.NONE
    )

    cert_report: CertificateReport | None = None
    if parts.signer is not None:
        purpose = CertificatePurpose.SEAL if parts.seal_id else CertificatePurpose.DOCUMENT_SIGNING
        cert_report = ctx.certificates.verify(
            parts.signer,
            intermediates=parts.extra_certs,
            at=validation_time,
            purpose=purpose,
            locale=locale,
            now=now,
        )
        cert_report = _judge_revocation(
            cert_report, parts.claimed_time, proven, locale, warnings, index=index
        )
        reasons += [r.under("certificate") for r in cert_report.reasons]

    seal: SealReport | None = None
    if parts.seal_id:
        seal = seal_report(
            ctx,
            parts.seal_id,
            proven or parts.claimed_time,
            digest=parts.data_hash or None,
            structure_verdict=parts.seal_structure,
        )
        facts = seal_facts(ctx, parts.seal_id) if seal is not None else None
        if seal is not None and facts is not None:
            claimed_status = facts.status_at(parts.claimed_time) if parts.claimed_time else None
            _judge_seal(seal, proven, claimed_status, locale, reasons, warnings, index=index)
    verdict = combine(
        [verdict_of(reasons), cert_report.verdict if cert_report else Verdict.INDETERMINATE]
    )
    if cert_report is None:
        reasons.append(
            Reason(
                ReasonCode.FORMAT_ERROR,
                tr(locale, "签名中没有签署者证书", "the signature carries no signer certificate"),
            )
        )
        verdict = combine([verdict, verdict_of(reasons)])
    signature = SignatureReport(
        index=index,
        format=parts.fmt,
        verdict=verdict,
        reasons=tuple(unique_reasons(reasons)),
        signer=cert_report.identity if cert_report else None,
        certificate=cert_report,
        seal=seal,
        signing_time=timestamp.time if proven and timestamp else parts.claimed_time,
        signing_time_source=source,
        timestamp=timestamp,
        intact=parts.intact,
        signature_valid=parts.signature_valid,
        digest_algorithm=DigestAlgorithm(parts.digest_algorithm)
        if parts.digest_algorithm in {d.value for d in DigestAlgorithm}
        else None,
        signature_algorithm=parts.signature_algorithm,
    )
    return signature, validation_time, warnings


def _judge_revocation(
    report: CertificateReport,
    claimed: datetime | None,
    proven: datetime | None,
    locale: str,
    warnings: list[Reason],
    *,
    index: int = 0,
) -> CertificateReport:
    """The signer's certificate at the signing time.

    Good at the proven time (time-stamp) but revoked or on hold now → VALID with a warning.
    Revoked at the validation time (the proven time, else now): INVALID when the signer claims
    a later signing time, or claims none while a time-stamp shows the signature appeared only
    after; NO_TRUSTED_TIME (INDETERMINATE) when it claims an earlier time that nothing proves,
    or there is no time at all.
    """
    at = report.revocation_at_validation_time
    current = report.revocation_now
    if at is None or current is None:
        return report
    revoked_states = (RevocationStatus.REVOKED, RevocationStatus.ON_HOLD)
    if (
        proven is not None
        and at.status is RevocationStatus.GOOD
        and current.status in revoked_states
    ):
        warnings.append(
            Reason(
                ReasonCode.CERTIFICATE_REVOKED
                if current.status is RevocationStatus.REVOKED
                else ReasonCode.CERTIFICATE_ON_HOLD,
                tr(
                    locale,
                    "签署者证书在签名（有时间戳证明）之后被吊销或冻结，签名仍然有效",
                    "the signer's certificate was revoked or put on hold after the "
                    "time-stamped signing time; the signature stays valid",
                ),
                f"signatures[{index}].certificate",
            )
        )
        return report
    if (
        at.status in revoked_states
        and at.revoked_at is not None
        and (
            (claimed is None and proven is None)
            or (claimed is not None and claimed < at.revoked_at)
        )
    ):
        reasons = [
            r
            for r in report.reasons
            if r.code not in (ReasonCode.CERTIFICATE_REVOKED, ReasonCode.CERTIFICATE_ON_HOLD)
        ]
        reasons.append(
            Reason(
                ReasonCode.NO_TRUSTED_TIME,
                tr(
                    locale,
                    f"签署者证书已于 {_fmt(at.revoked_at)} 被吊销或冻结；"
                    "没有时间戳证明签名早于此时间",
                    f"the signer's certificate was revoked or put on hold at "
                    f"{_fmt(at.revoked_at)}; nothing proves the signature was made before",
                ),
                "chain[0]",
            )
        )
        return replace(report, reasons=tuple(reasons), verdict=verdict_of(reasons))
    return report


def _fmt(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _status(status: Any, default: str) -> str:
    return str(status.value) if status is not None else default


def _judge_seal(
    seal: SealReport,
    proven: datetime | None,
    claimed_status: Any,
    locale: str,
    reasons: list[Reason],
    warnings: list[Reason],
    *,
    index: int = 0,
) -> None:
    """The seal at the signing time: active at the proven time (or, without a time-stamp, now)
    → fine (a warning if no longer active). Otherwise INDETERMINATE (NO_TRUSTED_TIME) when it
    was active at the signer's claimed time, or there is no time at all; else INVALID."""
    from seal.types import SealStatus

    active = SealStatus.ACTIVE
    status = seal.status_at_signing_time if proven is not None else seal.status_now
    if status is active:
        if seal.status_now is not active:
            warnings.append(
                Reason(
                    ReasonCode.SEAL_NOT_ACTIVE,
                    tr(
                        locale,
                        f"印章在签章之后状态变为 {_status(seal.status_now, '?')}",
                        f"the seal became {_status(seal.status_now, '?')} after signing",
                    ),
                    f"signatures[{index}].seal",
                )
            )
        return
    if claimed_status is active or (proven is None and claimed_status is None):
        reasons.append(
            Reason(
                ReasonCode.NO_TRUSTED_TIME,
                tr(
                    locale,
                    f"印章状态为 {_status(status, '未启用')}；签名声称的时间印章有效，"
                    "但没有时间戳证明签名早于状态变化",
                    f"the seal is {_status(status, 'not issued')}; it was active at the claimed "
                    "signing time, but nothing proves the signature was made then",
                ),
                "seal",
            )
        )
        return
    reasons.append(
        Reason(
            ReasonCode.SEAL_NOT_ACTIVE,
            tr(
                locale,
                f"签章时印章状态为 {_status(status, '未启用')}",
                f"the seal was {_status(status, 'not issued')} when it was applied",
            ),
            "seal",
        )
    )
