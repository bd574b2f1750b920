"""Checking a licence PDF on its own: the PAdES seal, then the embedded signed data.

:func:`check_pdf` answers with the same :class:`~license.checking.LicenceCheck` report as the
other two paths and never raises on bad input. In order:

1. the PDF parses and carries an embedded licence (``licence.jws``) — else ``MALFORMED``;
2. it has a seal signature — else ``PDF_UNSEALED``;
3. pyHanko validates the earliest signature: digest and signature (``PDF_SIGNATURE_INVALID``),
   chain to ``roots`` (``PDF_UNTRUSTED``), a trusted RFC 3161 time-stamp (B-T,
   ``PDF_TIMESTAMP_INVALID``), and coverage: the whole file, or only DSS / document time-stamp
   updates after it (``PDF_MODIFIED`` for anything else, e.g. changed page content);
4. the embedded licence is read from the *signed revision* (an appended update cannot swap it)
   and its signed data is checked by :func:`license.checking.check_signed_data` (signature,
   issuer, status list, validity window); the PDF's signer must be the JWS signer, i.e. the
   issuing department's seal (``PDF_SIGNER_MISMATCH``); the embedded QR payload, when present,
   must verify and describe the same licence (``QR_MISMATCH``).

Untrusted input is bounded before any validation: the file's revisions and cross-reference
entries, then its signatures, against :class:`govtrust.pdf_guard.DocumentLimits` (the process's
limits unless ``limits`` is given). Over a limit, and when the running request's
:class:`govtrust.budget.Budget` is spent or cancelled, :func:`check_pdf` *raises* (a
``ResourceExhausted``: the caller asked for more work than we agree to do) instead of reporting.

Revocation of the seal certificate is not looked up: the check is offline (no fetching), like
:func:`~license.checking.check_signed_data`. The licence's own state comes from the issuer's
signed status list, which is what counts for a licence: a department seal revoked later must
not void the licences it issued before, and a withdrawn licence is revoked in the status list.
Chains are checked at the earlier of now and the seal certificate's expiry, with the time-stamp
required inside the certificate's validity (so long-term licences outlive their seal
certificate, as on the signed-data path).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from govtrust.budget import checkpoint
from govtrust.errors import ResourceExhausted
from govtrust.pdf_guard import (
    DocumentLimits,
    check_signature_count,
    reading_limits,
)
from license.checking import LicenceCheck, State, Verdict, check_verified, failed_check
from license.errors import LicenceVerificationFailed
from license.pdf_reader import EmbeddedLicence, dss_certificates, embedded_from_root, open_pdf
from license.qr import TrustList, decode_payload
from license.signed_data import verify_licence
from license.status_list import VerifiedStatusList

PDF_UNSEALED = "PDF_UNSEALED"
PDF_SIGNATURE_INVALID = "PDF_SIGNATURE_INVALID"
PDF_UNTRUSTED = "PDF_UNTRUSTED"
PDF_TIMESTAMP_INVALID = "PDF_TIMESTAMP_INVALID"
PDF_MODIFIED = "PDF_MODIFIED"
PDF_SIGNER_MISMATCH = "PDF_SIGNER_MISMATCH"
QR_MISMATCH = "QR_MISMATCH"
MALFORMED = "MALFORMED"
MAX_PDF_BYTES = 20 * 1024 * 1024
T = TypeVar("T")


def invalid(reason: str, message: str, base: LicenceCheck | None = None) -> LicenceCheck:
    """An INVALID report for ``reason``, keeping what ``base`` (the signed data's report) says
    about the licence; shared with :mod:`license.ofd_check`."""
    report = LicenceCheck(Verdict.INVALID, State.UNKNOWN, (reason, message))
    if base is None:
        return report
    # keep what the signed data says (identifier, holder, ...) so a page can name the licence
    return replace(base, verdict=Verdict.INVALID, state=State.UNKNOWN, reasons=(reason, message))


def _outside_event_loop(call: Callable[[], T]) -> T:
    """Run ``call`` here, or in a worker thread when this thread runs an event loop (pyHanko's
    synchronous validation starts one of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1) as pool:  # the budget (a contextvar) goes along
        return pool.submit(contextvars.copy_context().run, call).result()


def _pdf_problem(
    sig: Any,
    roots: Sequence[x509.Certificate],
    leaf: x509.Certificate,
    intermediates: Sequence[bytes],
) -> tuple[str, str] | None:
    """Validate the seal signature with pyHanko; (reason, message) when it fails."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    moment = min(datetime.now(UTC), leaf.not_valid_after_utc - timedelta(seconds=1))
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(r.public_bytes(Encoding.DER)) for r in roots],
        other_certs=[asn1_x509.Certificate.load(d) for d in intermediates],
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=moment,
    )
    try:
        status = _outside_event_loop(lambda: validate_pdf_signature(sig, context))
    except ResourceExhausted:
        raise  # the request's budget is spent or it was cancelled
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many types on a broken CMS
        return PDF_SIGNATURE_INVALID, f"the seal signature cannot be validated: {exc}"
    if not status.intact:
        return PDF_SIGNATURE_INVALID, "the document was altered after sealing (digest mismatch)"
    if not status.valid:
        return PDF_SIGNATURE_INVALID, "the seal signature does not verify"
    coverage = status.coverage
    level = status.modification_level
    if coverage != SignatureCoverageLevel.ENTIRE_FILE and not (
        coverage == SignatureCoverageLevel.ENTIRE_REVISION
        and level is not None
        and level <= ModificationLevel.LTA_UPDATES
    ):
        what = f"coverage {getattr(coverage, 'name', '?')}, changes {getattr(level, 'name', '?')}"
        return PDF_MODIFIED, f"the document was changed after sealing ({what})"
    if not status.trusted:
        return PDF_UNTRUSTED, "the seal certificate does not chain to a trusted root"
    stamp = status.timestamp_validity
    if stamp is None or not (stamp.intact and stamp.valid and stamp.trusted):
        return PDF_TIMESTAMP_INVALID, "no valid trusted time-stamp on the seal (PAdES B-T)"
    if not leaf.not_valid_before_utc <= stamp.timestamp <= leaf.not_valid_after_utc:
        return PDF_TIMESTAMP_INVALID, "sealed outside the seal certificate's validity"
    return None


@dataclass(frozen=True)
class CheckedPdf:
    """A licence PDF's check and the licence it carries as sealed (``embedded`` is None when
    the file holds no readable licence: then ``check`` says MALFORMED and why)."""

    check: LicenceCheck
    embedded: EmbeddedLicence | None


def check_pdf(
    pdf: bytes,
    roots: Sequence[x509.Certificate],
    status_lists: Mapping[str, VerifiedStatusList],
    *,
    today: date | None = None,
    limits: DocumentLimits | None = None,
) -> LicenceCheck:
    """Check a sealed licence PDF (see the module docstring). Bad input is reported; only a
    document over ``limits`` (DocumentTooComplex) or a spent or cancelled budget raises."""
    return check_pdf_reading(pdf, roots, status_lists, today=today, limits=limits).check


def check_pdf_reading(
    pdf: bytes,
    roots: Sequence[x509.Certificate],
    status_lists: Mapping[str, VerifiedStatusList],
    *,
    today: date | None = None,
    limits: DocumentLimits | None = None,
) -> CheckedPdf:
    """:func:`check_pdf`, also giving back the embedded licence it read from the sealed
    revision, so a caller that reports the licence's facts does not parse the file again."""
    read: list[EmbeddedLicence] = []
    try:
        check = _check(pdf, roots, status_lists, today, limits, read)
    except ResourceExhausted:
        raise
    except LicenceVerificationFailed as exc:
        check = invalid(exc.reason.value, exc.message)
    except Exception as exc:  # noqa: BLE001 - a checker reports, it does not crash
        check = invalid(MALFORMED, f"the document cannot be checked: {exc}")
    return CheckedPdf(check, read[0] if read else None)


def _check(
    pdf: bytes,
    roots: Sequence[x509.Certificate],
    status_lists: Mapping[str, VerifiedStatusList],
    today: date | None,
    limits: DocumentLimits | None,
    read: list[EmbeddedLicence],
) -> LicenceCheck:
    if len(pdf) > MAX_PDF_BYTES:
        return invalid(MALFORMED, f"a licence document is at most {MAX_PDF_BYTES} bytes")
    with reading_limits(limits):
        reader = open_pdf(pdf)  # checks the revisions and objects before anything walks them
    checkpoint()
    every = list(reader.embedded_signatures)
    check_signature_count(len(every), limits)  # document time-stamps included
    signatures = [s for s in every if s.sig_object_type == "/Sig"]
    if not signatures:
        read.append(embedded_from_root(reader.root))  # MALFORMED when it is not a licence at all
        return invalid(PDF_UNSEALED, "the licence document carries no seal")
    sig = min(signatures, key=lambda s: s.signed_revision)
    signed_root = reader.get_historical_root(sig.signed_revision)
    embedded = embedded_from_root(signed_root)
    read.append(embedded)
    try:
        verified = verify_licence(embedded.signed_data, roots)
    except LicenceVerificationFailed as exc:
        return failed_check(exc)  # the signed data itself is bad: that report says why
    report = check_verified(verified, status_lists, today=today)
    checkpoint()
    leaf = verified.signer
    intermediates = [c.public_bytes(Encoding.DER) for c in verified.chain[1:]]
    problem = _pdf_problem(sig, roots, leaf, [*intermediates, *dss_certificates(signed_root)])
    if problem is not None:
        return invalid(*problem, base=report)
    if sig.signer_cert.dump() != leaf.public_bytes(Encoding.DER):
        return invalid(
            PDF_SIGNER_MISMATCH,
            "the document is sealed by another certificate than the one that signed the licence",
            base=report,
        )
    if embedded.qr_payload:
        trust = TrustList(roots)
        trust.add(verified.chain)
        try:
            qr = decode_payload(embedded.qr_payload, trust)
        except LicenceVerificationFailed as exc:
            return invalid(
                QR_MISMATCH, f"the embedded QR payload does not verify: {exc}", base=report
            )
        if not qr.matches(verified.metadata):
            return invalid(
                QR_MISMATCH, "the embedded QR payload is of another licence", base=report
            )
    return report
