"""Checking a licence: signature, then status (status list) and validity window → one report.

Works offline for the QR path (trust list + cached status lists) and for signed data (roots +
status lists). The report is structured, not a boolean: a verdict (``VALID``, ``INVALID``,
``INDETERMINATE``), the licence's state and every reason for a non-valid verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from cryptography import x509

from license.days import licence_day
from license.errors import LicenceVerificationFailed
from license.qr import TrustList, decode_payload
from license.signed_data import VerifiedLicence, verify_licence
from license.status_list import LicenceStatus, VerifiedStatusList


class Verdict(StrEnum):
    """Overall or per-part answer: the one verdict enum (``verify.report`` re-exports it).

    The member *name* (``VALID``) is the licence wire form (public JSON, ``govtrust license
    check``, report summaries) and, behind ``VERDICT_``, the proto value name; the *value*
    (``valid``) is what verification reports write to the audit log.
    """

    VALID = "valid"
    INVALID = "invalid"
    INDETERMINATE = "indeterminate"


class State(StrEnum):
    """What the licence is, as far as the checks could tell."""

    VALID = "valid"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNKNOWN = "unknown"  # signature failed, or no status list


@dataclass(frozen=True)
class LicenceCheck:
    """The report of one check."""

    verdict: Verdict
    state: State
    reasons: tuple[str, ...]
    identifier: str = ""
    name: str = ""
    holder_name: str = ""
    issuer_code: str = ""
    valid_until: date | None = None
    signer: str = ""  # the signing certificate's subject


def failed_check(exc: LicenceVerificationFailed) -> LicenceCheck:
    """The report of evidence whose signature or structure did not verify."""
    return LicenceCheck(Verdict.INVALID, State.UNKNOWN, (exc.reason.value, exc.message))


def _state(
    *,
    issuer_code: str,
    index: int | None,
    valid_from: date,
    valid_until: date | None,
    status_lists: Mapping[str, VerifiedStatusList],
    today: date,
) -> tuple[Verdict, State, tuple[str, ...]]:
    if today < valid_from:
        return Verdict.INVALID, State.NOT_YET_VALID, ("NOT_YET_VALID",)
    if valid_until is not None and today > valid_until:
        return Verdict.INVALID, State.EXPIRED, ("EXPIRED",)
    status_list = status_lists.get(issuer_code)
    if index is None or status_list is None or status_list.issuer_code != issuer_code:
        return Verdict.INDETERMINATE, State.UNKNOWN, ("STATUS_UNKNOWN",)
    try:
        status = status_list.status(index)
    except (IndexError, ValueError):
        return Verdict.INDETERMINATE, State.UNKNOWN, ("STATUS_UNKNOWN",)
    if status is LicenceStatus.REVOKED:
        return Verdict.INVALID, State.REVOKED, ("REVOKED",)
    if status is LicenceStatus.SUSPENDED:
        return Verdict.INVALID, State.SUSPENDED, ("SUSPENDED",)
    return Verdict.VALID, State.VALID, ()


def check_qr(
    text: str,
    trust: TrustList,
    status_lists: Mapping[str, VerifiedStatusList],
    *,
    today: date | None = None,
) -> LicenceCheck:
    """Check an offline QR payload with a trust list and verified status lists (by issuer)."""
    try:
        qr = decode_payload(text, trust)
    except LicenceVerificationFailed as exc:
        return failed_check(exc)
    issuer_code = qr.identifier.split(".")[-4]
    verdict, state, reasons = _state(
        issuer_code=issuer_code,
        index=qr.status_index,
        valid_from=qr.valid_from,
        valid_until=qr.valid_until,
        status_lists=status_lists,
        today=today or licence_day(),
    )
    return LicenceCheck(
        verdict, state, reasons, qr.identifier, qr.name, qr.holder_name, issuer_code,
        qr.valid_until, qr.signer.certificate.subject.rfc4514_string(),
    )  # fmt: skip


def check_signed_data(
    token: str,
    roots: Sequence[x509.Certificate],
    status_lists: Mapping[str, VerifiedStatusList],
    *,
    today: date | None = None,
) -> LicenceCheck:
    """Check signed licence data (JWS) with the roots and verified status lists (by issuer)."""
    try:
        verified = verify_licence(token, roots)
    except LicenceVerificationFailed as exc:
        return failed_check(exc)
    return check_verified(verified, status_lists, today=today)


def check_verified(
    verified: VerifiedLicence,
    status_lists: Mapping[str, VerifiedStatusList],
    *,
    today: date | None = None,
) -> LicenceCheck:
    """The report of signed data already verified (status list and validity window)."""
    meta = verified.metadata
    verdict, state, reasons = _state(
        issuer_code=meta.issuer_code,
        index=meta.status_index,
        valid_from=meta.valid_from,
        valid_until=meta.valid_until,
        status_lists=status_lists,
        today=today or licence_day(),
    )
    return LicenceCheck(
        verdict, state, reasons, meta.identifier, meta.name, meta.holder_name, meta.issuer_code,
        meta.valid_until, verified.signer.subject.rfc4514_string(),
    )  # fmt: skip
