"""Certificate status changes: revoke (RFC 5280 reasons, invalidity date), suspend, resume.

The state machine (one place):

    active ──revoke──▶ revoked          active ──suspend──▶ suspended ──resume──▶ active
    suspended ──revoke──▶ revoked       revoked ──▶ (nothing)

Suspension is revocation with reason certificateHold (6); resuming removes the hold
(removeFromCRL in the next delta CRL). A signing certificate and its KMC encryption certificate
(``paired_with``, :mod:`ca.kmc`) change together in the same transaction: revoking either revokes
both; suspending or resuming the signing certificate suspends or resumes its pair; an encryption
certificate cannot be resumed while its signing certificate is on hold. Each cascaded change has
its own audit record naming the certificate that caused it. Every change re-signs the
certificate's OCSP response, bumps the status epochs (so every worker's OCSP cache and the CRL
notice at once) and writes an audit record, all in one transaction. Illegal transitions raise
``FailedPrecondition``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from ca import ocsp
from ca.context import STATUS_EPOCH, CaContext, bump_counter, issuer_epoch_name
from ca.issuance import ISSUE_ROLES, SEAL_ROLES
from ca.models import CaCertificate, CaOcspResponse
from ca.signing import now
from govtrust import audit
from govtrust.errors import FailedPrecondition, InvalidArgument, PreconditionViolation
from govtrust.principal import Principal

REASONS: dict[int, str] = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCRL",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}
CERTIFICATE_HOLD = 6
REMOVE_FROM_CRL = 8
_REVOKE_REASONS = frozenset(REASONS) - {CERTIFICATE_HOLD, REMOVE_FROM_CRL}

# (current status, operation) -> new status
TRANSITIONS: dict[tuple[str, str], str] = {
    ("active", "revoke"): "revoked",
    ("suspended", "revoke"): "revoked",
    ("active", "suspend"): "suspended",
    ("suspended", "resume"): "active",
}


@dataclass(frozen=True)
class StatusChange:
    """What to do to a certificate."""

    operation: str  # revoke | suspend | resume
    reason: int = 0
    invalidity_date: datetime | None = None
    comment: str = ""


def parse_reason(value: int | str) -> int:
    """An RFC 5280 reason code from its number or name (``keyCompromise``); only revocation
    reasons (certificateHold and removeFromCRL are what suspend/resume do)."""
    if isinstance(value, str):
        names = {v.lower(): k for k, v in REASONS.items()}
        key = value.replace("_", "").replace("-", "").lower()
        if key.isdigit():
            code = int(key)
        elif key in names:
            code = names[key]
        else:
            raise InvalidArgument.field("reason", f"unknown revocation reason {value!r}")
    else:
        code = value
    if code not in _REVOKE_REASONS:
        raise InvalidArgument.field(
            "reason", f"reason {code} is not a revocation reason (use suspend/resume for holds)"
        )
    return code


def change_status(
    ctx: CaContext, principal: Principal, certificate_id: str, change: StatusChange
) -> CaCertificate:
    """Apply one status change; the OCSP response and epochs update in the same transaction."""
    with ctx.db.read() as session:
        current = session.get(CaCertificate, certificate_id)
    if current is None:
        from govtrust.errors import NotFound

        raise NotFound("no such certificate")
    principal.require_role(*(SEAL_ROLES if current.profile == "seal" else ISSUE_ROLES))
    if change.operation == "revoke":
        parse_reason(change.reason)
    if len(change.comment) > 1000:
        raise InvalidArgument.field("comment", "at most 1000 characters")
    moment = now()
    if change.invalidity_date is not None and change.invalidity_date.astimezone(UTC) > moment:
        raise InvalidArgument.field("invalidity_date", "must not be in the future")
    with ctx.db.transaction() as session:
        row = session.get(CaCertificate, certificate_id, with_for_update=True)
        assert row is not None
        target = TRANSITIONS.get((row.status, change.operation))
        if target is None:
            raise FailedPrecondition(
                f"cannot {change.operation} a {row.status} certificate",
                [
                    PreconditionViolation(
                        "STATE",
                        f"certificate/{row.issuer}/{row.serial}",
                        f"{change.operation} is not allowed from {row.status}",
                    )
                ],
            )
        _apply(ctx, session, principal, row, target, change, moment)
        partner = _cascade(ctx, session, principal, row, change)
        if partner is not None:
            partner_target = TRANSITIONS[(partner.status, change.operation)]
            _apply(ctx, session, principal, partner, partner_target, change, moment, cause=row)
    ctx.ocsp_cache.invalidate()
    return row


def _apply(
    ctx: CaContext,
    session: Session,
    principal: Principal,
    row: CaCertificate,
    target: str,
    change: StatusChange,
    moment: datetime,
    *,
    cause: CaCertificate | None = None,
) -> None:
    """Move ``row`` to ``target``: status columns, OCSP response, epochs, audit record."""
    previous_status = row.status
    row.status = target
    row.status_changed_at = moment
    row.status_comment = change.comment or None
    if change.operation == "revoke":
        # A revoked hold keeps its original revocation time only if the reason stays a hold.
        row.revoked_at = moment
        row.revocation_reason = change.reason
        row.invalidity_date = change.invalidity_date
    elif change.operation == "suspend":
        row.revoked_at = moment
        row.revocation_reason = CERTIFICATE_HOLD
        row.invalidity_date = None
    else:
        row.revoked_at = None
        row.revocation_reason = None
        row.invalidity_date = None
        row.resumed_at = moment
    response = ocsp.preproduce(ctx, row)
    session.merge(
        CaOcspResponse(
            certificate_id=row.id,
            der=response.der,
            this_update=response.this_update,
            next_update=response.next_update,
        )
    )
    bump_counter(session, STATUS_EPOCH)
    # the issuer's epoch orders its status changes by commit (the counter row is locked until
    # this transaction ends): a CRL that read epoch E saw every change up to E (ca.crl)
    row.status_epoch = bump_counter(session, issuer_epoch_name(row.issuer))
    details: dict[str, object] = {
        "from": previous_status,
        "to": target,
        "reason": REASONS.get(row.revocation_reason or 0) if target != "active" else None,
        "comment": change.comment,
    }
    if cause is not None:
        details["paired_with"] = f"certificate/{cause.issuer}/{cause.serial}"
    audit.append(
        session,
        actor=principal.actor,
        action=f"ca.{change.operation}",
        target=f"certificate/{row.issuer}/{row.serial}",
        details=details,
    )


def _cascade(
    ctx: CaContext,
    session: Session,
    principal: Principal,
    row: CaCertificate,
    change: StatusChange,
) -> CaCertificate | None:
    """The paired certificate that changes with ``row`` (locked), or None; refuses resuming an
    encryption certificate whose signing certificate is on hold."""
    if row.paired_with is None:
        return None
    partner = session.get(CaCertificate, row.paired_with, with_for_update=True)
    if partner is None:
        return None
    signing = row.escrow_key_id is None  # the encryption certificate holds the escrowed key
    if change.operation == "resume" and not signing and partner.status == "suspended":
        raise FailedPrecondition(
            "an encryption certificate cannot be resumed while its signing certificate is on hold",
            [
                PreconditionViolation(
                    "STATE",
                    f"certificate/{partner.issuer}/{partner.serial}",
                    "the paired signing certificate is suspended",
                )
            ],
        )
    if change.operation != "revoke" and not signing:
        return None
    if (partner.status, change.operation) not in TRANSITIONS:
        return None  # already revoked, or (resume) not on hold
    principal.require_role(*(SEAL_ROLES if partner.profile == "seal" else ISSUE_ROLES))
    return partner
