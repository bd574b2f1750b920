"""Lawful recovery of an escrowed encryption key, under dual control (GB/T 25056, GM/T 0014).

    request (ca-operator or key-recovery: legal basis, recipient certificate)
      → approve (a key-recovery officer, not the requester)
      → approve (another key-recovery officer, not the requester, not the first approver)
      → deliver (the key as a GM/T 0009 SM2EnvelopedKey to the recipient certificate's key)

``key-recovery`` is an explicit role: ``admin`` does not imply it
(:data:`govtrust.principal.EXPLICIT_ROLES`), so no single administrator can recover a key.
Officers are told apart by their audit actor (``kind:subject``). Every step is one transaction
with its audit record; every refusal changes nothing. A destroyed escrowed key cannot be asked
for (nor delivered, if it was destroyed after the request). A request delivers once.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from asn1crypto import x509
from sqlalchemy.orm import Session

from ca.context import CaContext
from ca.issuance import ISSUE_ROLES
from ca.models import CaCertificate, CaKeyRecovery
from ca.signing import now
from govtrust import audit
from govtrust.db import as_utc
from govtrust.errors import FailedPrecondition, InvalidArgument, NotFound, PreconditionViolation
from govtrust.principal import Principal
from hsm.keystore import KeyAlgorithm

RECOVERY_ROLE = "key-recovery"
REQUEST_ROLES = (*ISSUE_ROLES, RECOVERY_ROLE)
MAX_LEGAL_BASIS = 2000


@dataclass(frozen=True)
class Recovery:
    """A recovery request as stored, with the certificates it names."""

    record: CaKeyRecovery
    certificate: CaCertificate
    recipient: CaCertificate

    @property
    def approvals(self) -> int:
        """How many distinct officers have approved (0, 1 or 2)."""
        return sum(a is not None for a in (self.record.first_approver, self.record.second_approver))


def _target(row: CaCertificate) -> str:
    return f"certificate/{row.issuer}/{row.serial}"


def _refuse(message: str, subject: str, kind: str = "STATE") -> FailedPrecondition:
    return FailedPrecondition(message, [PreconditionViolation(kind, subject, message)])


def _certificate(session: Session, certificate_id: str, field: str) -> CaCertificate:
    row = session.get(CaCertificate, certificate_id) if certificate_id else None
    if row is None:
        raise NotFound(f"no such certificate ({field})")
    return row


def _check_recipient(row: CaCertificate) -> None:
    field = "recipient_certificate"
    if row.key_algorithm != KeyAlgorithm.SM2.value:
        raise InvalidArgument.field(
            field, f"the recipient's key is {row.key_algorithm}: the envelope needs an SM2 key"
        )
    if row.status != "active" or as_utc(row.not_after) <= now():
        state = row.status if row.status != "active" else "expired"
        raise _refuse(f"the recipient certificate is {state}", _target(row))


def _check_escrowed(ctx: CaContext, row: CaCertificate) -> str:
    if row.escrow_key_id is None:
        raise InvalidArgument.field(
            "certificate", "not an encryption certificate with an escrowed key"
        )
    ctx.keystore.get(row.escrow_key_id)  # KeyDestroyed / KeyNotFound
    return row.escrow_key_id


def request(
    ctx: CaContext,
    principal: Principal,
    certificate_id: str,
    *,
    legal_basis: str,
    recipient_certificate_id: str,
) -> Recovery:
    """Open a recovery of the escrowed key of encryption certificate ``certificate_id``."""
    principal.require_role(*REQUEST_ROLES)
    basis = (legal_basis or "").strip()
    if not basis:
        raise InvalidArgument.field(
            "legal_basis", "a recovery names its legal basis (statute, order or case number)"
        )
    if len(basis) > MAX_LEGAL_BASIS:
        raise InvalidArgument.field("legal_basis", f"at most {MAX_LEGAL_BASIS} characters")
    with ctx.db.read() as session:
        certificate = _certificate(session, certificate_id, "certificate")
        recipient = _certificate(session, recipient_certificate_id, "recipient_certificate")
    escrow_key_id = _check_escrowed(ctx, certificate)
    _check_recipient(recipient)
    moment = now()
    record = CaKeyRecovery(
        id=uuid.uuid4().hex,
        certificate_id=certificate.id,
        escrow_key_id=escrow_key_id,
        legal_basis=basis,
        recipient_certificate_id=recipient.id,
        requested_by=principal.actor,
        requested_at=moment,
        status="pending",
    )
    with ctx.db.transaction() as session:
        session.add(record)
        session.flush()
        audit.append(
            session,
            actor=principal.actor,
            action="ca.kmc.recovery.request",
            target=f"key-recovery/{record.id}",
            details={
                "certificate": _target(certificate),
                "escrow_key_id": escrow_key_id,
                "legal_basis": basis,
                "recipient": _target(recipient),
            },
        )
    return Recovery(record, certificate, recipient)


def _load(ctx: CaContext, recovery_id: str) -> Recovery:
    with ctx.db.read() as session:
        record = session.get(CaKeyRecovery, recovery_id) if recovery_id else None
        if record is None:
            raise NotFound("no such key recovery")
        certificate = _certificate(session, record.certificate_id, "certificate")
        recipient = _certificate(session, record.recipient_certificate_id, "recipient")
    return Recovery(record, certificate, recipient)


def get(ctx: CaContext, principal: Principal, recovery_id: str) -> Recovery:
    """One recovery request as it stands now, to those who may request, approve or deliver
    recoveries (it carries no key: the envelope is never stored)."""
    principal.require_role(*REQUEST_ROLES)
    return _load(ctx, recovery_id)


def approve(ctx: CaContext, principal: Principal, recovery_id: str) -> Recovery:
    """Record one ``key-recovery`` officer's approval; the second distinct one approves it."""
    principal.require_role(RECOVERY_ROLE)
    found = _load(ctx, recovery_id)
    subject = f"key-recovery/{recovery_id}"
    _check_escrowed(ctx, found.certificate)
    with ctx.db.transaction() as session:
        record = session.get(CaKeyRecovery, recovery_id, with_for_update=True)
        assert record is not None
        if record.status != "pending":
            raise _refuse(f"the key recovery is already {record.status}", subject)
        if record.requested_by == principal.actor:
            raise _refuse(
                "the officer who requested a key recovery cannot approve it", subject, "DUTIES"
            )
        if record.first_approver == principal.actor:
            raise _refuse(
                "the same officer cannot approve a key recovery twice: a second, distinct "
                "key-recovery officer must approve",
                subject,
                "DUTIES",
            )
        moment = now()
        if record.first_approver is None:
            record.first_approver, record.first_approved_at = principal.actor, moment
        else:
            record.second_approver, record.second_approved_at = principal.actor, moment
            record.status = "approved"
        audit.append(
            session,
            actor=principal.actor,
            action="ca.kmc.recovery.approve",
            target=subject,
            details={
                "certificate": _target(found.certificate),
                "approval": 1 if record.second_approver is None else 2,
                "status": record.status,
            },
        )
    return Recovery(record, found.certificate, found.recipient)


def deliver(ctx: CaContext, principal: Principal, recovery_id: str) -> tuple[Recovery, bytes]:
    """The escrowed key of an approved recovery, as a GM/T 0009 envelope to the recipient."""
    principal.require_role(*REQUEST_ROLES)
    found = _load(ctx, recovery_id)
    subject = f"key-recovery/{recovery_id}"
    record = found.record
    if record.status != "approved":
        approvals = found.approvals
        if record.status == "pending":
            raise _refuse(
                f"a key recovery needs two distinct approvals before delivery; it has {approvals}",
                subject,
                "DUAL_CONTROL",
            )
        raise _refuse(f"the key recovery is already {record.status}", subject)
    _check_recipient(found.recipient)
    recipient_key = bytes(x509.Certificate.load(found.recipient.der).public_key.dump())
    envelope = ctx.keystore.export_enveloped(record.escrow_key_id, recipient_key)
    with ctx.db.transaction() as session:
        locked = session.get(CaKeyRecovery, recovery_id, with_for_update=True)
        assert locked is not None
        if locked.status != "approved":
            raise _refuse(f"the key recovery is already {locked.status}", subject)
        locked.status = "delivered"
        locked.delivered_by, locked.delivered_at = principal.actor, now()
        audit.append(
            session,
            actor=principal.actor,
            action="ca.kmc.recovery.deliver",
            target=subject,
            details={
                "certificate": _target(found.certificate),
                "recipient": _target(found.recipient),
                "envelope_sha256": hashlib.sha256(envelope).hexdigest(),
            },
        )
    return Recovery(locked, found.certificate, found.recipient), envelope
