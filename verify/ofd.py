"""VerifyOfd: every seal signature of an OFD document (GB/T 33190, signatures laid out as
GM/T 0099, values GB/T 38540 SES_Signature) checked and reported (issue 17 item 4).

For each signature, in the order of the signature list (a ``Type="Sign"`` signature, a CMS
SignedData over Signature.xml, is checked the same way but as VerifySealSignature judges a CMS
signature: no SESeal, the seal, if any, named by its signer's seal certificate):

* the technical check of :func:`seal.ofd.validation.check_ofd`: every referenced file's SM3
  (changed, removed), files added after signing, Signature.xml against the SES_Signature's
  dataHash, the signer's signature value, the embedded seal (maker signature, certificate list,
  Seal.esl), SignatureMethod and the stamps' pages — each problem a reason naming the file;
* then, as VerifySealSignature judges an SES_Signature (:func:`verify.seal_signatures.
  judge_signature`): the time-stamp over the signature value (our SM2 TSA's SM3 token), the
  signer's certificate up to the SM2 root at the trusted time (else the request's time), the
  seal maker's certificate, the seal in the registry (its ``esID``) at the signing time and now,
  and who applied it (the ``seal_ofd`` use whose digest is the dataHash).

Time rules are VerifySealSignature's: a seal revoked after a time-stamped signing leaves the
signature VALID with a warning; one revoked before it makes it INVALID; without a time-stamp a
revoked seal is INDETERMINATE (NO_TRUSTED_TIME). The document is VALID only when every signature
is; an unsigned document is INVALID (NO_SIGNATURE).

Bad input, as VerifyPdf: an empty input is InvalidArgument, one over the document size limit
(``GOVTRUST_VERIFY_MAX_OFD_BYTES``, 64 MiB by default, set as VerifyPdf's) or past the
package limits (entries, inflated bytes, compression ratio: a zip bomb) ResourceExhausted,
both before anything is recorded; anything else wrong with the bytes (not a zip, truncated,
an unsafe entry name, XML with a DTD, a signature list that cannot be read) is an INVALID
report (FORMAT_ERROR) naming the defect, audited like every report.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509

from govtrust.budget import checkpoint
from govtrust.errors import InvalidArgument
from seal.errors import OfdMalformed
from seal.ofd.validation import SIGN_TYPE, FindingKind, SignatureCheck, check_ofd
from verify.pdf import check_size
from verify.report import (
    Digest,
    DocumentReport,
    EvidenceKind,
    Reason,
    ReasonCode,
    ReportOptions,
    SignatureFormat,
    SignatureReport,
    Verdict,
    VerificationReport,
    build_report,
    tr,
)
from verify.seal_signatures import (
    SES_ALGORITHMS,
    SignatureParts,
    judge_signature,
    maker_untrusted,
)

if TYPE_CHECKING:
    from govtrust.principal import Principal
    from verify.service import Verified, VerifyContext

_CODES = {
    FindingKind.FORMAT: ReasonCode.FORMAT_ERROR,
    FindingKind.INTEGRITY: ReasonCode.DIGEST_MISMATCH,
    FindingKind.SIGNATURE: ReasonCode.SIGNATURE_INVALID,
    FindingKind.SEAL: ReasonCode.SEAL_STRUCTURE_INVALID,
}


@dataclass(frozen=True)
class OfdCheck:
    """A VerifyOfd request in domain terms."""

    ofd: bytes
    at_time: datetime | None = None
    options: ReportOptions = field(default_factory=ReportOptions)
    filename: str = ""


def _parts(ctx: VerifyContext, check: SignatureCheck, locale: str) -> SignatureParts:
    """The technical check of one signature as VerifySealSignature's evaluation takes it."""
    reasons = [
        Reason(
            _CODES[finding.kind],
            tr(locale, finding.message_zh, finding.message),
            "seal" if finding.kind is FindingKind.SEAL else "",
        )
        for finding in check.findings
    ]
    signer: x509.Certificate | None = None
    if check.signer_certificate:
        try:
            signer = ctx.certificates.parse(check.signer_certificate)
        except ValueError:
            reasons.append(
                Reason(
                    ReasonCode.FORMAT_ERROR,
                    tr(locale, "签署者证书无法解析", "the signer's certificate does not parse"),
                )
            )
    structure: Verdict | None = None
    if check.seal_der is not None:
        structure = Verdict.INVALID if check.seal_problems else Verdict.VALID
        if structure is Verdict.VALID and check.maker_certificate:
            untrusted = maker_untrusted(ctx, check.maker_certificate, locale)
            if untrusted is not None:
                structure = Verdict.INDETERMINATE
                reasons.append(untrusted)
    algorithm = check.signature_algorithm
    seal_id = check.seal_id
    fmt = SignatureFormat.SES_SIGNATURE
    if check.type == SIGN_TYPE:  # a CMS signature: the seal, if any, is its certificate's
        fmt = SignatureFormat.CMS
        if signer is not None:
            from verify.certificates import seal_id_of

            seal_id = seal_id_of(signer, ctx.authority.ctx.config.oid_arc)
    return SignatureParts(
        fmt=fmt,
        intact=check.intact,
        signature_valid=check.signature_valid,
        signer=signer,
        extra_certs=[],
        digest_algorithm=check.digest_algorithm,
        signature_algorithm=SES_ALGORITHMS.get(algorithm, ("", algorithm))[1],
        claimed_time=check.claimed_time,
        token=check.time_stamp_token,
        signature_value=check.signature_value,
        seal_id=seal_id,
        seal_structure=structure,
        data_hash=check.data_hash,
        reasons=reasons,
    )


def verify_ofd(
    ctx: VerifyContext,
    ofd: bytes,
    *,
    at: datetime | None = None,
    options: ReportOptions | None = None,
) -> VerificationReport:
    """The report of every signature of ``ofd`` (see the module docstring). Raises
    InvalidArgument for an empty input, ResourceExhausted over the size or package limits;
    anything else wrong with the bytes is reported, not raised."""
    options = options or ReportOptions()
    if not ofd:
        raise InvalidArgument.field("ofd", "required")
    check_size(len(ofd), ctx.config.max_ofd_bytes, "ofd")
    checked_at = ctx.now()
    now = at or checked_at
    locale = options.locale
    digest = Digest.sha256(ofd)  # the document's and the evidence's, computed once
    document = DocumentReport(size_bytes=len(ofd), digest=digest)

    def report(
        *,
        reasons: list[Reason] | None = None,
        signatures: list[SignatureReport] | None = None,
        warnings: list[Reason] | None = None,
        validation_time: datetime = now,
    ) -> VerificationReport:
        return build_report(
            evidence_kind=EvidenceKind.OFD,
            evidence=ofd,
            evidence_digest=digest,
            options=options,
            checked_at=checked_at,
            validation_time=validation_time,
            document=document,
            signatures=signatures or [],
            reasons=reasons or [],
            warnings=warnings or [],
        )

    try:
        result = check_ofd(ofd)
    except OfdMalformed as exc:
        return report(
            reasons=[
                Reason(
                    ReasonCode.FORMAT_ERROR,
                    tr(locale, f"不是有效的 OFD 文档：{exc}", f"not a valid OFD document: {exc}"),
                    "document",
                )
            ]
        )
    document = dataclasses.replace(
        document, page_count=result.page_count, signature_count=len(result.signatures)
    )
    if not result.signed:
        return report(
            reasons=[
                Reason(
                    ReasonCode.NO_SIGNATURE,
                    tr(locale, "文档没有签章", "the document carries no signature"),
                    "document",
                )
            ]
        )
    signatures: list[SignatureReport] = []
    warnings: list[Reason] = []
    times: list[datetime] = []
    for check in result.signatures:
        checkpoint()
        signature, validation_time, notes = judge_signature(
            ctx,
            _parts(ctx, check, locale),
            index=check.index,
            at_time=at,
            locale=locale,
            now=now,
        )
        signatures.append(
            dataclasses.replace(signature, field_name=check.signature_file, pages=check.pages)
        )
        warnings += notes
        times.append(validation_time)
    return report(
        signatures=signatures,
        warnings=warnings,
        validation_time=times[0] if len(times) == 1 else now,
    )


def verify_ofd_check(ctx: VerifyContext, principal: Principal, check: OfdCheck) -> Verified:
    """VerifyOfd: the report, signed when asked for, and the audit record (hashes only) of who
    checked it (role ``verifier``)."""
    principal.require_role("verifier")
    report = verify_ofd(ctx, check.ofd, at=check.at_time, options=check.options)
    extra = (
        {"filename_sha256": hashlib.sha256(check.filename.encode()).hexdigest()}
        if check.filename
        else None
    )
    return ctx.complete(principal, "ofd", report, check.options, extra=extra)
