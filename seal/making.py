"""Making a seal: its key in the key store, its certificate from the seal CA, its picture and
the GB/T 38540 SESeal signed by the seal maker (:mod:`seal.maker`); and re-making one (a new
seal, new key and certificate, replacing the old one, which is revoked).

The certificate is issued and the key generated before the seal's own transaction; when that
transaction fails, the compensation revokes the certificate and destroys the key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ca.directory import SealRecord
from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from hsm.keystore import KeyAlgorithm, KeyStore, parse_algorithm
from seal import images, structures, transitions
from seal.authority import IssuedCertificate, SealAuthority
from seal.errors import MakerCertificateTooShort
from seal.executor import (
    REVOCATION_CESSATION,
    REVOCATION_KEY_COMPROMISE,
    REVOCATION_SUPERSEDED,
    Executor,
    reason_text,
)
from seal.maker import current_maker, maker_end
from seal.maker import not_after as maker_not_after
from seal.models import REASON_LENGTH, SealRow
from seal.types import SealKind, SealShape, SealStatus, SealView
from seal.views import load, view

log = logging.getLogger("govtrust.seal")

S = SealStatus
DEFAULT_VALIDITY = timedelta(days=3 * 365)
# The key of an SM2 seal's PAdES certificate: international PDF validators cannot check SM2.
PDF_KEY_ALGORITHM = KeyAlgorithm.EC_P256.value
MAX_VALIDITY = timedelta(days=5 * 365)


@dataclass(frozen=True)
class Making:
    """MakeSeal's options (0 / None: the kind's defaults)."""

    key_algorithm: str = ""
    shape: SealShape | None = None
    width_mm: int = 0
    height_mm: int = 0
    reason: str = ""


def certificate_ids(row: SealRow) -> list[str]:
    """The seal's certificates at the CA: its own and (an SM2 seal) its PAdES one."""
    return [c for c in (row.certificate_id, row.pdf_certificate_id) if c]


def key_ids(row: SealRow) -> list[str]:
    """The seal's keys in the key store: its own and (an SM2 seal) its PAdES one."""
    return [k for k in (row.key_id, row.pdf_key_id) if k]


def new_seal_id() -> str:
    """A new 电子印章编码: 16 digits (IA5 for esID)."""
    return f"{uuid.uuid4().int % 10**16:016d}"


class SealMaking:
    """MakeSeal and RemakeSeal over one database, key store and seal CA."""

    def __init__(
        self,
        db: Database,
        keystore: KeyStore,
        authority: SealAuthority,
        executor: Executor,
        clock: Callable[[], datetime],
        default_key_algorithm: str,
    ) -> None:
        self.db = db
        self.keystore = keystore
        self.authority = authority
        self.executor = executor
        self.now = clock
        self.default_key_algorithm = default_key_algorithm

    def maker(
        self, covering: datetime | None = None, seal_algorithm: str = "ec-p256"
    ) -> structures.Maker:
        """The seal maker's key and certificate for seals of ``seal_algorithm`` (the SM2
        maker for SM2 seals), valid through ``covering`` when it can be (issued on first use,
        rotated when too short: :mod:`seal.maker`)."""
        return current_maker(
            self.db, self.keystore, self.authority, self.now(), covering, seal_algorithm
        )

    def make(self, principal: Principal, seal_id: str, making: Making) -> SealView:
        """MakeSeal (→ made): key in the key store, seal certificate from the seal CA, picture,
        and the GB/T 38540 SESeal signed by the maker."""
        reason = reason_text(making.reason, required=False)
        with self.db.read() as session:
            row = load(session, seal_id)
            role = self.executor.authorise(session, principal, "make", row)
        transitions.check_state(row.id, row.status, "make")
        return self.make_into(principal, row, making, reason, role, "make")

    def make_into(
        self,
        principal: Principal,
        row: SealRow,
        making: Making,
        reason: str,
        role: str,
        operation: str,
        *,
        replaces: SealRow | None = None,
        remake_cause: str = "",
    ) -> SealView:
        """Make ``row`` (or, given ``replaces``, the new seal re-making it) and store it; the
        certificate and key are revoked and destroyed when the seal's transaction fails."""
        algorithm = parse_algorithm(
            making.key_algorithm or row.key_algorithm or self.default_key_algorithm
        ).value
        sm2 = algorithm == KeyAlgorithm.SM2.value
        if sm2:
            self.authority.require_sm2()  # FAILED_PRECONDITION before anything is issued
        design = images.SealDesign(
            SealKind(row.kind),
            row.name,
            row.business_number,
            row.taxpayer_number,
            code=row.id,
            shape=making.shape or SealShape(row.shape),
            width_mm=making.width_mm or (row.width_mm if making.shape is None else 0),
            height_mm=making.height_mm or (row.height_mm if making.shape is None else 0),
        )
        width, height = design.size_mm()
        picture = images.render_png(design, dpi=300)
        now = self.now()
        valid_until = as_utc(row.valid_until) if row.valid_until else now + DEFAULT_VALIDITY
        days = max(1, (valid_until - now).days + 1)
        # refused before any change: the maker is neither issued nor rotated when it cannot cover
        maker_ends = maker_end(self.db, self.authority, now, valid_until, algorithm)
        if maker_ends < valid_until:
            raise MakerCertificateTooShort.of(
                row.id, valid_until.isoformat(), maker_ends.isoformat()
            )
        maker = self.maker(covering=valid_until, seal_algorithm=algorithm)
        if maker_not_after(maker.certificate_der) < valid_until:  # a concurrent rotation
            raise MakerCertificateTooShort.of(
                row.id, valid_until.isoformat(), maker_not_after(maker.certificate_der).isoformat()
            )
        record_ = SealRecord(
            row.id, row.owner_id, row.owner_uscc or "", row.owner_name, row.name, row.kind, True
        )
        validity = min(days, MAX_VALIDITY.days)
        issued = self.authority.issue_seal_certificate(principal, record_, algorithm, validity)
        made: list[IssuedCertificate] = [issued]
        try:
            # an SM2 seal also holds a P-256 key and certificate for PAdES (one lifecycle)
            pdf = (
                self.authority.issue_seal_certificate(
                    principal, record_, PDF_KEY_ALGORITHM, validity
                )
                if sm2
                else None
            )
            if pdf is not None:
                made.append(pdf)
            valid_end = min(valid_until, *(maker_not_after(c.der) for c in made))
            structure = structures.build_seal(
                structures.SealContent(
                    seal_id=row.id,
                    kind_code=SealKind(row.kind).code,
                    name=row.name,
                    certificates=(issued.der,),
                    created=now,
                    valid_start=now,
                    valid_end=valid_end,
                    picture_png=picture,
                    width_mm=width,
                    height_mm=height,
                ),
                maker,
            )
            with self.db.transaction() as session:
                current = row if replaces is not None else load(session, row.id, lock=True)
                if replaces is None:
                    transitions.check_state(current.id, current.status, operation)
                current.key_algorithm = algorithm
                current.key_id = issued.key_id
                current.certificate_id = issued.certificate_id
                current.certificate_der = issued.der
                current.seal_structure = structure
                current.pdf_key_id = pdf.key_id if pdf is not None else None
                current.pdf_certificate_id = pdf.certificate_id if pdf is not None else None
                current.pdf_certificate_der = pdf.der if pdf is not None else None
                current.shape = design.resolved_shape().value
                current.width_mm, current.height_mm = width, height
                current.valid_from, current.valid_until = now, valid_end
                current.made_at = now
                if replaces is not None:
                    self.remake_old(
                        session, principal, replaces, current, role, reason, remake_cause, now
                    )
                    session.add(current)
                    session.flush()
                # the new seal of a re-making is approved → made too, recorded as ``remake``
                # from no earlier state (it has no history yet)
                self.executor.step(
                    session,
                    current,
                    principal,
                    "make",
                    role,
                    reason,
                    now,
                    action=operation,
                    from_status="" if replaces is not None else None,
                    related_id=replaces.id if replaces is not None else "",
                    details={
                        "certificate_id": issued.certificate_id,
                        "key_algorithm": algorithm,
                        **({"pdf_certificate_id": pdf.certificate_id} if pdf is not None else {}),
                    },
                )
                return view(current)
        except BaseException:
            for certificate in made:
                try:
                    self.authority.revoke(
                        principal,
                        certificate.certificate_id,
                        REVOCATION_CESSATION,
                        "seal making did not complete",
                    )
                finally:
                    self.keystore.destroy(certificate.key_id)
            raise

    def remake(
        self,
        principal: Principal,
        seal_id: str,
        cause: str,
        reason: str,
        *,
        key_algorithm: str = "",
        name: str = "",
    ) -> tuple[SealView, SealView]:
        """RemakeSeal: a new seal (new key and certificate, → made) replaces the old one, which
        is revoked (keyCompromise when the cause is key compromise, else superseded)."""
        reason = reason_text(reason, required=True)
        if len(name) > 40:
            raise InvalidArgument.field("name", "at most 40 characters")
        with self.db.read() as session:
            old = load(session, seal_id)
            role = self.executor.authorise(session, principal, "remake", old)
        transitions.check_state(old.id, old.status, "remake")
        now = self.now()
        new = SealRow(
            id=new_seal_id(),
            owner_id=old.owner_id,
            owner_kind=old.owner_kind,
            owner_name=old.owner_name,
            owner_uscc=old.owner_uscc,
            kind=old.kind,
            name=name.strip() or old.name,
            business_number=old.business_number,
            taxpayer_number=old.taxpayer_number,
            named_person_id=old.named_person_id,
            named_person_name=old.named_person_name,
            status=S.APPROVED.value,
            status_reason="",
            shape=old.shape,
            width_mm=old.width_mm,
            height_mm=old.height_mm,
            valid_until=old.valid_until,
            applicant_id=old.applicant_id,
            applicant_actor=old.applicant_actor,
            apply_reason=old.apply_reason,
            applied_at=old.applied_at,
            reviewed_at=old.reviewed_at,
            updated_at=now,
            history_length=0,
            replaces_seal_id=old.id,
            key_algorithm=old.key_algorithm,
            official_owner=None,
            business_slot=None,
        )
        images.layout(images.SealDesign(SealKind(new.kind), new.name))
        making = Making(key_algorithm=key_algorithm, reason=reason)
        return self._remake(principal, old, new, making, reason, role, cause)

    def _remake(
        self,
        principal: Principal,
        old: SealRow,
        new: SealRow,
        making: Making,
        reason: str,
        role: str,
        cause: str,
    ) -> tuple[SealView, SealView]:
        made = self.make_into(
            principal, new, making, reason, role, "remake", replaces=old, remake_cause=cause
        )
        code = REVOCATION_KEY_COMPROMISE if cause == "key_compromise" else REVOCATION_SUPERSEDED
        self.revoke_certificates(
            principal, [(old.id, c) for c in certificate_ids(old)], code, f"re-made: {reason}"
        )
        with self.db.read() as session:
            return view(load(session, old.id)), made

    def revoke_certificates(
        self, principal: Principal, certificates: Sequence[tuple[str, str]], code: int, text: str
    ) -> list[str]:
        """Revoke at the CA the certificates (``(seal id, certificate id)``) of seals already
        revoked in the database (after that commit: nothing to undo). A certificate the CA does
        not revoke is left pending, visibly: an audit record ``seal.certificate_revocation_pending``
        (outcome ``failed``) names the seal, the certificate and the error, for the operator to
        revoke it at the CA (docs/seals.md). The certificate ids left pending."""
        pending: list[str] = []
        for seal_id, certificate_id in certificates:
            try:
                self.authority.revoke(principal, certificate_id, code, text)
            except Exception as exc:
                log.exception("revoking seal certificate %s failed", certificate_id)
                pending.append(certificate_id)
                with self.db.transaction() as session:
                    audit.append(
                        session,
                        actor=principal.actor,
                        action="seal.certificate_revocation_pending",
                        target=f"seal/{seal_id}",
                        outcome="failed",
                        details={
                            "certificate_id": certificate_id,
                            "revocation_reason": code,
                            "reason": text,
                            "error": str(exc)[:REASON_LENGTH],
                        },
                    )
        return pending

    def remake_old(
        self,
        session: Session,
        principal: Principal,
        old: SealRow,
        new: SealRow,
        role: str,
        reason: str,
        cause: str,
        now: datetime,
    ) -> None:
        current = load(session, old.id, lock=True)
        slot_official, slot_business = current.official_owner, current.business_slot

        def replaced(seal: SealRow, moment: datetime) -> None:
            seal.replaced_by_seal_id = new.id
            seal.revoked_at = moment

        # the event's flush releases the official / business slot before the new seal takes it
        self.executor.step(
            session,
            current,
            principal,
            "remake",
            role,
            reason,
            now,
            apply=replaced,
            related_id=new.id,
            details={"cause": cause, "replaced_by": new.id},
        )
        new.official_owner, new.business_slot = slot_official, slot_business
