"""gRPC adapter of ``govtrust.v1.VerifyService``: certificates, seal signatures and tokens here;
VerifyPdf, VerifyPdfStream, VerifyOfd and VerifyLicense come from :class:`DocumentRpcs`.

Thin by design: each method converts the request (bad input → INVALID_ARGUMENT with the field),
runs the domain verifier with the caller's principal (role ``verifier``) — VerifyCertificate
inline when it needs no remote I/O, everything else in the ``run_sync`` pool — waits for the
audit record of who checked what to commit, and converts the report. ``report_to_pb`` /
``signed_pb`` / ``options_in`` are shared with the document RPCs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from govtrust.api.verify_documents import DocumentRpcs
from govtrust.errors import InvalidArgument
from govtrust.rpc.context import current_principal
from govtrust.rpc.convert import time_in
from govtrust.rpc.offload import driven_inline, run_sync
from govtrust.v1 import common_pb2, verify_pb2, verify_pb2_grpc
from idp.types import IdentitySummary
from verify.report import (
    CertificatePurpose,
    CertificateSummary,
    DigestAlgorithm,
    ReportFormat,
    ReportOptions,
    RevocationCheck,
    RevocationReasonCode,
    SignatureFormat,
    SignedReport,
    TokenKind,
    VerificationReport,
    proto_enum_name,
    restamped,
)
from verify.service import VerifyContext, context_for

if TYPE_CHECKING:
    from govtrust.platform import Platform
    from verify.service import Verified

_FORMAT_IN = {
    common_pb2.REPORT_FORMAT_UNSPECIFIED: ReportFormat.PROTO,
    common_pb2.REPORT_FORMAT_PROTO: ReportFormat.PROTO,
    common_pb2.REPORT_FORMAT_SIGNED_JSON: ReportFormat.SIGNED_JSON,
}
_PURPOSE_IN: dict[int, CertificatePurpose | None] = {
    verify_pb2.CERTIFICATE_PURPOSE_UNSPECIFIED: None,
    **{
        verify_pb2.CertificatePurpose.Value(f"CERTIFICATE_PURPOSE_{p.name}"): p
        for p in CertificatePurpose
    },
}
_REVOCATION_IN = {
    verify_pb2.REVOCATION_CHECK_UNSPECIFIED: RevocationCheck.DEFAULT,
    verify_pb2.REVOCATION_CHECK_REGISTRY: RevocationCheck.REGISTRY,
    verify_pb2.REVOCATION_CHECK_OCSP: RevocationCheck.OCSP,
    verify_pb2.REVOCATION_CHECK_CRL: RevocationCheck.CRL,
}
_SIG_FORMAT_IN: dict[int, SignatureFormat | None] = {
    common_pb2.SIGNATURE_FORMAT_UNSPECIFIED: None,
    common_pb2.SIGNATURE_FORMAT_CMS: SignatureFormat.CMS,
    common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE: SignatureFormat.SES_SIGNATURE,
}
_TOKEN_KIND_IN: dict[int, TokenKind | None] = {
    common_pb2.TOKEN_KIND_UNSPECIFIED: None,
    common_pb2.TOKEN_KIND_ID_TOKEN: TokenKind.ID_TOKEN,
    common_pb2.TOKEN_KIND_ACCESS_TOKEN: TokenKind.ACCESS_TOKEN,
    common_pb2.TOKEN_KIND_REFRESH_TOKEN: TokenKind.REFRESH_TOKEN,
}
_DIGEST_IN = {
    common_pb2.DIGEST_ALGORITHM_SHA256: DigestAlgorithm.SHA256,
    common_pb2.DIGEST_ALGORITHM_SHA384: DigestAlgorithm.SHA384,
    common_pb2.DIGEST_ALGORITHM_SHA512: DigestAlgorithm.SHA512,
    common_pb2.DIGEST_ALGORITHM_SM3: DigestAlgorithm.SM3,
}


# --- conversions shared with the document RPCs ---------------------------------------------


def report_to_pb(report: VerificationReport) -> common_pb2.VerificationReport:
    """The ``VerificationReport`` message of a domain report.

    A reflective copy, field by field (the dataclasses mirror the messages' field names), so
    the message carries exactly what :meth:`VerificationReport.to_json` — the signed JSON —
    carries; a test compares the two for a report with every field set.
    """
    message = common_pb2.VerificationReport()
    _fill(report, message)
    return message


def report_to_pb_via_json(report: VerificationReport) -> common_pb2.VerificationReport:
    """The same message through the proto3 JSON mapping (reference implementation)."""
    message = common_pb2.VerificationReport()
    json_format.ParseDict(report.to_json(), message)
    return message


_ENUM_NUMBERS: dict[tuple[str, Enum], int] = {}
_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _enum_number(message: Any, name: str, member: Enum) -> int:
    key = (f"{message.DESCRIPTOR.full_name}.{name}", member)
    number = _ENUM_NUMBERS.get(key)
    if number is None:
        enum_type = message.DESCRIPTOR.fields_by_name[name].enum_type
        number = enum_type.values_by_name[proto_enum_name(member)].number
        _ENUM_NUMBERS[key] = number
    return number


def _fields_of(cls: type) -> tuple[tuple[str, bool], ...]:
    plan = _FIELDS.get(cls)
    if plan is None:
        plan = tuple((f.name, bool(f.metadata.get("int64"))) for f in dataclasses.fields(cls))
        _FIELDS[cls] = plan
    return plan


def _identity(identity: IdentitySummary, message: Any) -> None:
    message.id = identity.id
    message.kind = _enum_number(message, "kind", identity.kind)
    message.display_name = identity.display_name
    message.masked_identifier = identity.masked_identifier
    message.status = _enum_number(message, "status", identity.status)
    if 1 <= identity.assurance_level <= 3:
        message.assurance_level = identity.assurance_level


_SUMMARIES: dict[CertificateSummary, bytes] = {}


def _fill(obj: Any, message: Any) -> None:
    if type(obj) is CertificateSummary:  # the same chains recur: reuse their encoding
        blob = _SUMMARIES.get(obj)
        if blob is None:
            scratch = common_pb2.CertificateSummary()
            _fill_fields(obj, scratch)
            blob = scratch.SerializeToString()
            if len(_SUMMARIES) >= 4096:
                _SUMMARIES.clear()
            _SUMMARIES[obj] = blob
        message.MergeFromString(blob)
        return
    _fill_fields(obj, message)


def _fill_fields(obj: Any, message: Any) -> None:
    for name, _int64 in _fields_of(type(obj)):
        value = getattr(obj, name)
        if (
            value is None
            or value is False
            or (
                isinstance(value, (str, bytes, tuple, int))
                and not isinstance(value, Enum)
                and not value
            )
        ):
            continue
        if isinstance(value, Enum):
            if isinstance(value, RevocationReasonCode):
                setattr(message, name, int(value))
            else:
                setattr(message, name, _enum_number(message, name, value))
        elif isinstance(value, datetime):
            getattr(message, name).FromDatetime(value.astimezone(UTC))
        elif isinstance(value, IdentitySummary):
            _identity(value, getattr(message, name))
        elif isinstance(value, tuple):
            target = getattr(message, name)
            if value and dataclasses.is_dataclass(value[0]):
                for item in value:
                    _fill(item, target.add())
            else:
                target.extend(value)
        elif isinstance(value, Mapping):
            if value:
                getattr(message, name).update(value)
        elif dataclasses.is_dataclass(value):
            child = getattr(message, name)
            child.SetInParent()
            _fill(value, child)
        else:
            setattr(message, name, value)


def signed_pb(signed: SignedReport | None) -> common_pb2.SignedReport | None:
    """The ``SignedReport`` message, or None when not asked for."""
    if signed is None:
        return None
    return common_pb2.SignedReport(
        jws=signed.jws, json=signed.json, signer_certificate=signed.signer_certificate
    )


def options_in(message: common_pb2.ReportOptions, field: str = "report_options") -> ReportOptions:
    """Domain report options from the request's ``ReportOptions``."""
    report_format = _FORMAT_IN.get(message.report_format)
    if report_format is None:
        raise InvalidArgument.field(f"{field}.report_format", "unknown report format")
    try:
        return ReportOptions(report_format, message.locale, message.reference)
    except InvalidArgument:
        raise
    except ValueError as exc:  # pragma: no cover - ReportOptions raises InvalidArgument
        raise InvalidArgument.field(field, str(exc)) from None


class _Wakeups:
    """Completes, on one event loop, the waits of calls whose audit records were committed
    — one loop wake-up for all the records of a batch (``asyncio.wrap_future`` costs one
    cross-thread wake-up, a write to the loop's self-pipe, per call)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: list[tuple[asyncio.Future[None], Future[None]]] = []
        self._lock = threading.Lock()

    def done(self, waiter: asyncio.Future[None], audited: Future[None]) -> None:
        """``audited`` is done (called in the audit writer's thread, or at once)."""
        if self.loop.is_closed():  # the server is gone; nobody waits any more
            return
        with self._lock:
            first = not self._pending
            self._pending.append((waiter, audited))
        if first:
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for waiter, audited in pending:
            if waiter.done():  # the call was cancelled: it stopped waiting
                continue
            error = asyncio.CancelledError() if audited.cancelled() else audited.exception()
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


_wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = (
    weakref.WeakKeyDictionary()
)


async def finished(verified: Verified) -> Verified:
    """Wait (without holding a pool thread) until the call's audit record is committed. A
    cancelled call stops waiting but does not cancel the record: the check was made."""
    audited = verified.audited
    if audited.done() or driven_inline():  # (inline: the synchronous transport's thread waits)
        audited.result()  # raises when the record could not be written
        return verified
    loop = asyncio.get_running_loop()
    wakeups = _wakeups.get(loop)
    if wakeups is None:
        wakeups = _wakeups[loop] = _Wakeups(loop)
    waiter: asyncio.Future[None] = loop.create_future()
    audited.add_done_callback(functools.partial(wakeups.done, waiter))
    await waiter
    return verified


# --- re-stamped reports ----------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEMPLATES: dict[int, tuple[VerificationReport, bytes]] = {}


def _stamp(message: Any, moment: datetime) -> None:
    """``Timestamp.FromDatetime`` for an aware datetime, without its time-tuple round trip."""
    delta = moment - _EPOCH
    message.seconds = delta.days * 86400 + delta.seconds
    message.nanos = delta.microseconds * 1000


def _blank(template: VerificationReport) -> bytes:
    """The encoding of a settled report without what a call re-stamps (ids, times, reference)."""
    cert = template.certificate
    assert cert is not None
    at_time, current = cert.revocation_at_validation_time, cert.revocation_now
    blank = restamped(
        template,
        report_id="",
        checked_at=None,
        validation_time=None,
        reference="",
        certificate=restamped(
            cert,
            validation_time=None,
            revocation_at_validation_time=(
                None if at_time is None else restamped(at_time, status_time=None)
            ),
            revocation_now=None if current is None else restamped(current, status_time=None),
        ),
    )
    return report_to_pb(blank).SerializeToString()


def verified_report_into(message: common_pb2.VerificationReport, verified: Verified) -> None:
    """Fill ``message`` with the verified report: ``report_to_pb``, or for a re-stamped report
    (:attr:`Verified.template`) its template's cached encoding plus this call's id, times and
    reference — the same message (tested)."""
    report, template = verified.report, verified.template
    cert = report.certificate
    if template is None or cert is None:
        message.CopyFrom(report_to_pb(report))
        return
    hit = _TEMPLATES.get(id(template))
    if hit is None or hit[0] is not template:
        blob = _blank(template)
        if len(_TEMPLATES) >= 4096:
            _TEMPLATES.clear()
        _TEMPLATES[id(template)] = (template, blob)
    else:
        blob = hit[1]
    message.MergeFromString(blob)
    message.report_id = report.report_id
    if report.reference:
        message.reference = report.reference
    if report.checked_at is not None:
        _stamp(message.checked_at, report.checked_at)
    if report.validation_time is not None:
        _stamp(message.validation_time, report.validation_time)
    target = message.certificate
    if cert.validation_time is not None:
        _stamp(target.validation_time, cert.validation_time)
    if cert.revocation_at_validation_time is not None:
        status_time = cert.revocation_at_validation_time.status_time
        if status_time is not None:
            _stamp(target.revocation_at_validation_time.status_time, status_time)
    if cert.revocation_now is not None and cert.revocation_now.status_time is not None:
        _stamp(target.revocation_now.status_time, cert.revocation_now.status_time)


# --- the servicer ---------------------------------------------------------------------------


class VerifyServicer(DocumentRpcs, verify_pb2_grpc.VerifyServiceServicer):
    """VerifyService over a :class:`verify.service.VerifyContext`."""

    def __init__(self, context: VerifyContext, platform: Platform | None = None) -> None:
        self.context = context
        self.platform = platform

    async def VerifyCertificate(
        self, request: verify_pb2.VerifyCertificateRequest, context: Any
    ) -> verify_pb2.VerifyCertificateResponse:
        from verify.certificates import CertificateCheck, NeedsIo, verify_certificate

        purpose = _PURPOSE_IN.get(request.purpose, ...)
        if purpose is ...:
            raise InvalidArgument.field("purpose", "unknown certificate purpose")
        revocation = _REVOCATION_IN.get(request.revocation_check)
        if revocation is None:
            raise InvalidArgument.field("revocation_check", "unknown revocation check")
        check = CertificateCheck(
            certificate=request.certificate,
            intermediates=tuple(request.intermediates),
            at_time=time_in(request, "at_time"),
            purpose=purpose,
            revocation_check=revocation,
            options=options_in(request.report_options),
        )
        principal = current_principal()
        try:  # everything cached or local (the hot path): answer without a thread hop
            verified = verify_certificate(self.context, principal, check, offline=True)
        except NeedsIo:
            verified = await run_sync(verify_certificate, self.context, principal, check)
        verified = await finished(verified)
        response = verify_pb2.VerifyCertificateResponse()
        verified_report_into(response.report, verified)
        signed = signed_pb(verified.signed)
        if signed is not None:
            response.signed_report.CopyFrom(signed)
        return response

    async def VerifySealSignature(
        self, request: verify_pb2.VerifySealSignatureRequest, context: Any
    ) -> verify_pb2.VerifySealSignatureResponse:
        from verify.seal_signatures import SealSignatureCheck, verify_seal_signature

        fmt = _SIG_FORMAT_IN.get(request.format, ...)
        if fmt is ...:
            raise InvalidArgument.field("format", "only CMS or SES_Signature (or unset)")
        data: bytes | None = None
        digest: tuple[DigestAlgorithm, bytes] | None = None
        which = request.WhichOneof("content")
        if which == "data":
            data = request.data
        elif which == "digest":
            algorithm = _DIGEST_IN.get(request.digest.algorithm)
            if algorithm is None:
                raise InvalidArgument.field("digest.algorithm", "a digest algorithm is required")
            digest = (algorithm, request.digest.value)
        else:
            raise InvalidArgument.field("content", "give the signed data or its digest")
        check = SealSignatureCheck(
            signature=request.signature,
            format=fmt,
            data=data,
            digest=digest,
            at_time=time_in(request, "at_time"),
            options=options_in(request.report_options),
        )
        verified = await finished(
            await run_sync(verify_seal_signature, self.context, current_principal(), check)
        )
        return verify_pb2.VerifySealSignatureResponse(
            report=report_to_pb(verified.report), signed_report=signed_pb(verified.signed)
        )

    async def VerifyIdToken(
        self, request: verify_pb2.VerifyIdTokenRequest, context: Any
    ) -> verify_pb2.VerifyIdTokenResponse:
        from verify.tokens import TokenCheck, verify_token

        kind = _TOKEN_KIND_IN.get(request.kind, ...)
        if kind is ...:
            raise InvalidArgument.field("kind", "unknown token kind")
        check = TokenCheck(
            token=request.token,
            kind=kind,
            expected_audience=request.expected_audience,
            expected_nonce=request.expected_nonce,
            options=options_in(request.report_options),
        )
        verified = await finished(
            await run_sync(verify_token, self.context, current_principal(), check)
        )
        report = report_to_pb(verified.report)
        response = verify_pb2.VerifyIdTokenResponse(
            report=report, signed_report=signed_pb(verified.signed)
        )
        if report.verdict == common_pb2.VERDICT_VALID and report.token.HasField("identity"):
            response.identity.CopyFrom(report.token.identity)
        return response


def servicer(platform: Platform) -> VerifyServicer:
    """The VerifyService servicer for a platform (the context is built once per process and
    warmed here, at start: the CA hierarchy, trust anchors and the report signer's
    certificate, so that no call pays for them)."""
    context = context_for(platform)
    context.warm()
    return VerifyServicer(context, platform)
