"""The seal system's port onto the certificate authority.

The seal lifecycle needs a handful of CA operations — issue a seal certificate with a key
generated in the key store, hold / release / revoke it, time-stamp, answer OCSP, the chain — and
asks a :class:`SealAuthority` for them. :class:`CaSealAuthority` implements it over
:class:`ca.authority.CertificateAuthority` (``ca`` never imports ``seal``). The CA acts for the
seal service under a derived system principal that names the human caller, so the CA's own
audit records say who asked.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from asn1crypto import x509
from sqlalchemy import select

from ca.authority import CertificateAuthority
from ca.config import sm2_name
from ca.directory import CitizenRecord, LegalPersonRecord, SealRecord, SubjectDirectory
from ca.issuance import IssueRequest, SubjectSpec, certificate_end
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from govtrust.principal import Principal
from seal.models import SealRow
from seal.types import SealStatus

CA_NAME = "seal"
_DEAD = {SealStatus.REJECTED.value, SealStatus.REVOKED.value, SealStatus.DESTROYED.value}


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the CA issued with a key generated in the key store."""

    certificate_id: str
    der: bytes
    key_id: str
    key_algorithm: str


class SealAuthority(Protocol):
    """CA operations the seal lifecycle and sealing need."""

    def issue_seal_certificate(
        self, principal: Principal, record: SealRecord, algorithm: str, validity_days: int
    ) -> IssuedCertificate:
        """Generate a key in the key store and certify it for the seal."""
        ...

    def issue_maker_certificate(self, algorithm: str, validity_days: int) -> IssuedCertificate:
        """Generate a key for the seal-making unit and certify it (its organisation certificate,
        the legal-person profile with the unit's USCC)."""
        ...

    def maker_certificate_end(self, validity_days: int) -> datetime:
        """When a maker certificate issued now for ``validity_days`` would end (the CA caps it
        at its own end); nothing is issued."""
        ...

    def certificate_status(self, certificate_der: bytes) -> str:
        """The CA's status of a certificate it issued (active, suspended, revoked, …)."""
        ...

    def hold(self, principal: Principal, certificate_id: str, comment: str) -> None:
        """Put the certificate on hold (certificateHold)."""
        ...

    def release(self, principal: Principal, certificate_id: str, comment: str) -> None:
        """Remove a hold."""
        ...

    def revoke(self, principal: Principal, certificate_id: str, reason: int, comment: str) -> None:
        """Revoke (idempotent: an already revoked certificate is left as it is)."""
        ...

    def chain(self, *, sm2: bool = False) -> list[bytes]:
        """DER certificates of the seal CA and its parents, issuing CA first, root last (the
        SM2 seal CA's with ``sm2``)."""
        ...

    def timestamp(self, request_der: bytes, *, sm2: bool = False) -> bytes:
        """An RFC 3161 TimeStampResp for a DER TimeStampReq (from the SM2 TSA with ``sm2``)."""
        ...

    def require_sm2(self) -> None:
        """Raise :class:`hsm.errors.Sm2NotAvailable` (FAILED_PRECONDITION, naming what is
        missing) when the CA cannot issue SM2 certificates (a key store without SM2)."""
        ...

    def ocsp(self, request_der: bytes) -> bytes:
        """A DER OCSP response for a DER OCSP request."""
        ...

    def crl(self) -> bytes:
        """The seal CA's current full CRL (DER)."""
        ...


@dataclass(frozen=True)
class MakerIdentity:
    """The seal-making unit (印章制作单位): the organisation whose certificate signs SESeals."""

    name: str
    uscc: str

    def record(self) -> LegalPersonRecord:
        """The unit as a legal person of the CA's directory (when the registry lacks it)."""
        return LegalPersonRecord(f"seal-maker/{self.uscc}", self.uscc, self.name)


# A development default; a deployment sets its seal-making unit (GOVTRUST_SEAL_MAKER_NAME,
# GOVTRUST_SEAL_MAKER_USCC). The code is a valid GB 32100 code assigned to no one we know of.
DEFAULT_MAKER = MakerIdentity("govtrust 印章制作单位", "91110000MA01GT0R3Y")


def acting_for(principal: Principal) -> Principal:
    """The principal the seal service uses towards the CA on behalf of ``principal``."""
    return Principal("system", f"seal-service/{principal.actor}"[:250], frozenset({"seal-maker"}))


class SealDirectory:
    """A :class:`ca.directory.SubjectDirectory` that answers ``seal()`` from the seal tables
    (plus seals being made right now) and delegates everything else to ``inner``."""

    def __init__(
        self, inner: SubjectDirectory, db: Database, maker: MakerIdentity = DEFAULT_MAKER
    ) -> None:
        self.inner = inner
        self.db = db
        self.maker = maker
        self._pending: dict[str, SealRecord] = {}
        self._lock = threading.Lock()

    def citizen(self, ref: str) -> CitizenRecord | None:
        return self.inner.citizen(ref)

    def legal_person(self, ref: str) -> LegalPersonRecord | None:
        found = self.inner.legal_person(ref)
        if found is None and ref in (self.maker.uscc, self.maker.record().id):
            return self.maker.record()
        return found

    def may_apply_for(self, legal_person_id: str, citizen_id: str) -> bool:
        return self.inner.may_apply_for(legal_person_id, citizen_id)

    def seal(self, seal_id: str) -> SealRecord | None:
        with self._lock:
            pending = self._pending.get(seal_id)
        if pending is not None:
            return pending
        with self.db.read() as session:
            row = session.scalar(select(SealRow).where(SealRow.id == seal_id))
        if row is None:
            return self.inner.seal(seal_id)
        return SealRecord(
            row.id,
            row.owner_id,
            row.owner_uscc,
            row.owner_name,
            row.name,
            row.kind,
            row.status not in _DEAD,
        )

    def pending(self, record: SealRecord) -> None:
        """Announce a seal that is being made (its row is written after the certificate)."""
        with self._lock:
            self._pending[record.seal_id] = record

    def done(self, seal_id: str) -> None:
        """Forget a pending seal."""
        with self._lock:
            self._pending.pop(seal_id, None)


class CaSealAuthority:
    """:class:`SealAuthority` over the in-process certificate authority."""

    def __init__(
        self, authority: CertificateAuthority, db: Database, maker: MakerIdentity = DEFAULT_MAKER
    ) -> None:
        self.authority = authority
        self.maker = maker
        ctx = authority.ctx
        if isinstance(ctx.directory, SealDirectory):
            self.directory = ctx.directory
            self.directory.maker = maker
        else:
            self.directory = SealDirectory(ctx.directory, db, maker)
            ctx.directory = self.directory

    def issue_seal_certificate(
        self, principal: Principal, record: SealRecord, algorithm: str, validity_days: int
    ) -> IssuedCertificate:
        self.directory.pending(record)
        try:
            issued = self.authority.issue(
                acting_for(principal),
                IssueRequest(
                    profile="seal",
                    subject=SubjectSpec(seal_id=record.seal_id),
                    generate_key_algorithm=algorithm,
                    validity_days=validity_days,
                ),
            )
        finally:
            self.directory.done(record.seal_id)
        assert issued.key is not None
        row = issued.certificate
        return IssuedCertificate(row.id, row.der, issued.key.key_id, row.key_algorithm)

    def issue_maker_certificate(self, algorithm: str, validity_days: int) -> IssuedCertificate:
        system = Principal("system", "seal-service", frozenset({"ca-operator"}))
        issued = self.authority.issue(
            system,
            IssueRequest(
                profile="legal-person",
                subject=SubjectSpec(identity=self.maker.uscc),
                generate_key_algorithm=algorithm,
                validity_days=validity_days,
            ),
        )
        assert issued.key is not None
        row = issued.certificate
        return IssuedCertificate(row.id, row.der, issued.key.key_id, row.key_algorithm)

    def maker_certificate_end(self, validity_days: int) -> datetime:
        return certificate_end(self.authority.ctx, "legal-person", validity_days)

    def certificate_status(self, certificate_der: bytes) -> str:
        fingerprint = hashlib.sha256(certificate_der).hexdigest()
        return str(self.authority.find(fingerprint=fingerprint).status)

    def hold(self, principal: Principal, certificate_id: str, comment: str) -> None:
        self.authority.suspend(acting_for(principal), certificate_id, comment[:1000])

    def release(self, principal: Principal, certificate_id: str, comment: str) -> None:
        self.authority.resume(acting_for(principal), certificate_id, comment[:1000])

    def revoke(self, principal: Principal, certificate_id: str, reason: int, comment: str) -> None:
        if self.authority.get(certificate_id).status == "revoked":
            return
        try:
            self.authority.revoke(
                acting_for(principal), certificate_id, reason=reason, comment=comment[:1000]
            )
        except FailedPrecondition:
            if self.authority.get(certificate_id).status != "revoked":
                raise

    def chain(self, *, sm2: bool = False) -> list[bytes]:
        name = sm2_name(CA_NAME) if sm2 else CA_NAME
        return [issuer.der for issuer in self.authority.issuing_chain(name)]

    def timestamp(self, request_der: bytes, *, sm2: bool = False) -> bytes:
        return self.authority.timestamp(request_der, sm2=sm2).der

    def require_sm2(self) -> None:
        self.authority.ctx.hierarchy.ca(sm2_name(CA_NAME))

    def ocsp(self, request_der: bytes) -> bytes:
        return self.authority.ocsp(request_der)

    def crl(self) -> bytes:
        return self.authority.crl(CA_NAME).der

    def hierarchy_certificates(self) -> list[bytes]:
        """Every certificate of the CA hierarchy (root, issuing CAs, responders, TSA)."""
        return [issuer.der for issuer in self.authority.hierarchy.issuers.values()]

    def chain_crls(self) -> list[bytes]:
        """Delta CRLs and the CRLs of the root and of the TSA's CA (B-LT validation material)."""
        result = []
        for name in ("root", CA_NAME, "service"):
            for delta in (False, True):
                if name == CA_NAME and not delta:
                    continue  # crl() gives it
                try:
                    result.append(self.authority.crl(name, delta=delta).der)
                except Exception:  # noqa: BLE001, S112 - optional material
                    continue
        return result

    def root(self) -> x509.Certificate:
        """The root certificate."""
        return x509.Certificate.load(self.chain()[-1])
