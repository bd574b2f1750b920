"""The certificate authority's front door: one object the adapters (gRPC, HTTP, CLI) call.

It holds the :class:`~ca.context.CaContext` (bootstrapping the hierarchy on first use) and
delegates to the step modules: issuance, revocation, CRL, OCSP, TSA. ``authority_for(platform)``
gives the platform's instance (a :data:`AUTHORITY` component); the wiring defines the
registry-backed :class:`~ca.directory.SubjectDirectory` as :data:`SUBJECT_DIRECTORY`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from ca import crl, health, issuance, kmc, ocsp, recovery, revocation, tsa
from ca.config import CaConfig
from ca.context import CaContext
from ca.csr import parse_csr
from ca.directory import SubjectDirectory
from ca.hierarchy import Hierarchy, Issuer, bootstrap
from ca.models import CaCertificate
from ca.records import CertificateRecord
from govtrust.db import Database
from govtrust.errors import FailedPrecondition, InvalidArgument, PreconditionViolation
from govtrust.lease import Fence
from govtrust.platform import Component
from govtrust.principal import Principal
from hsm.keystore import KeyStore

if TYPE_CHECKING:
    from govtrust.config import Settings
    from govtrust.platform import Platform

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class ListFilter:
    """Filters of :meth:`CertificateAuthority.list` (AND-combined; None matches everything)."""

    identity_id: str | None = None
    profile: str | None = None
    status: str | None = None  # active | suspended | revoked | expired
    issuer: str | None = None
    seal_id: str | None = None
    expiring_before: datetime | None = None


def effective_status(row: CertificateRecord, moment: datetime | None = None) -> str:
    """``active``, ``suspended``, ``revoked`` or ``expired`` (active past notAfter)."""
    moment = moment or datetime.now(UTC)
    not_after = row.not_after if row.not_after.tzinfo else row.not_after.replace(tzinfo=UTC)
    if row.status == "active" and not_after <= moment:
        return "expired"
    return row.status


@dataclass(frozen=True)
class IssuedSystemCertificate:
    """What the CA knows of a certificate it issued to a system (a service identity)."""

    serial: str
    issuer: str
    system_id: str
    status: str  # effective: active | suspended | revoked | expired


def issued_system_certificate(
    db: Database, fingerprint_sha256: str
) -> IssuedSystemCertificate | None:
    """The system certificate with this SHA-256 fingerprint, if this CA issued one (the CA's own
    look-up, so that other packages never read ``ca_certificates``)."""
    with db.read() as session:
        row = session.scalar(
            select(CaCertificate).where(CaCertificate.fingerprint_sha256 == fingerprint_sha256)
        )
        if row is None or not row.system_id:
            return None
        return IssuedSystemCertificate(
            serial=row.serial,
            issuer=row.issuer,
            system_id=row.system_id,
            status=effective_status(row),
        )


class CertificateAuthority:
    """Issue, renew, look up, change status; CRLs, OCSP and time-stamps."""

    def __init__(self, ctx: CaContext) -> None:
        self.ctx = ctx

    @classmethod
    def open(
        cls,
        db: Database,
        keystore: KeyStore,
        config: CaConfig,
        directory: SubjectDirectory,
    ) -> CertificateAuthority:
        """Bootstrap (or load) the hierarchy and return a ready authority."""
        hierarchy = bootstrap(db, keystore, config)
        return cls(CaContext(db, keystore, config, directory, hierarchy))

    @property
    def hierarchy(self) -> Hierarchy:
        """The loaded CA hierarchy."""
        return self.ctx.hierarchy

    # --- issuance --------------------------------------------------------------------------

    def issue(self, principal: Principal, request: issuance.IssueRequest) -> issuance.Issued:
        """Issue a certificate (from a CSR or with a key generated in the key store)."""
        return issuance.issue(self.ctx, principal, request)

    def prepare_issue(
        self, principal: Principal, request: issuance.IssueRequest
    ) -> issuance.Prepared:
        """Every step of :meth:`issue` but the commit: submit ``result.pending`` to
        ``ctx.committer`` and call ``result.finish(ctx)`` when it is done (for adapters that
        await the commit without holding a thread)."""
        return issuance.prepare(self.ctx, principal, request)

    def renew(
        self,
        principal: Principal,
        previous: CertificateRecord,
        *,
        csr: bytes | None = None,
        generate_key_algorithm: str | None = None,
        validity_days: int = 0,
        revoke_previous: bool = False,
    ) -> issuance.Issued:
        """Renew ``previous``; optionally revoke it (superseded) once the new one exists.

        A signing certificate with a KMC encryption certificate is renewed with a new SM2 key and
        re-keys its pair: a fresh encryption certificate and escrowed key for the new signing
        certificate (``Issued.encryption``); the old pair stays until revoked (revoking the old
        signing certificate revokes its pair). An encryption certificate is never renewed alone.
        """
        paired = self._check_pair_renewal(previous, csr, generate_key_algorithm)
        stored = previous if isinstance(previous, CaCertificate) else self.get(previous.id)
        issued = issuance.renew(
            self.ctx,
            principal,
            stored,
            csr=csr,
            generate_key_algorithm=generate_key_algorithm,
            validity_days=validity_days,
        )
        if paired:
            pair = kmc.issue_encryption_pair(self.ctx, principal, issued.certificate.id)
            issued = issuance.Issued(pair.signing, issued.key, pair)
        if revoke_previous and previous.status in ("active", "suspended"):
            self.revoke(principal, previous.id, reason=4, comment="superseded by renewal")
        return issued

    def _check_pair_renewal(
        self, previous: CertificateRecord, csr: bytes | None, generate_key_algorithm: str | None
    ) -> bool:
        """Whether renewing ``previous`` re-keys an encryption pair; refuses what cannot."""
        previous = self.get(previous.id)  # its pairing as stored now
        target = f"certificate/{previous.issuer}/{previous.serial}"
        if kmc.is_encryption_profile(previous.profile):
            raise FailedPrecondition(
                "an encryption certificate is renewed with its signing certificate",
                [PreconditionViolation("PAIR", target, "renew the paired signing certificate")],
            )
        if previous.paired_with is None:
            return False
        if csr is None and generate_key_algorithm is None:
            raise InvalidArgument.field(
                "key_algorithm",
                "a signing certificate with an encryption pair is renewed with a new key "
                "(renewal re-keys both): send a CSR or a key algorithm",
            )
        algorithm = parse_csr(csr).key_algorithm if csr is not None else str(generate_key_algorithm)
        if algorithm != "sm2":
            raise InvalidArgument.field(
                "csr" if csr is not None else "key_algorithm",
                f"the new key is {algorithm}: a signing certificate with an encryption pair "
                "stays SM2 (the key envelope is encrypted to it)",
            )
        return True

    # --- key management centre -------------------------------------------------------------

    def issue_encryption_pair(
        self, principal: Principal, signing_certificate_id: str, *, validity_days: int = 0
    ) -> kmc.EncryptionPair:
        """Issue the encryption certificate paired with an SM2 signing certificate, its key
        escrowed, and return the key enveloped to the signing key (:mod:`ca.kmc`)."""
        return kmc.issue_encryption_pair(
            self.ctx, principal, signing_certificate_id, validity_days=validity_days
        )

    def request_key_recovery(
        self,
        principal: Principal,
        certificate_id: str,
        *,
        legal_basis: str,
        recipient_certificate_id: str,
    ) -> recovery.Recovery:
        """Open a dual-control recovery of an escrowed key (:mod:`ca.recovery`)."""
        return recovery.request(
            self.ctx,
            principal,
            certificate_id,
            legal_basis=legal_basis,
            recipient_certificate_id=recipient_certificate_id,
        )

    def key_recovery(self, principal: Principal, recovery_id: str) -> recovery.Recovery:
        """One recovery request as it stands (:func:`ca.recovery.get`)."""
        return recovery.get(self.ctx, principal, recovery_id)

    def approve_key_recovery(self, principal: Principal, recovery_id: str) -> recovery.Recovery:
        """One officer's approval (two distinct ``key-recovery`` officers are needed)."""
        return recovery.approve(self.ctx, principal, recovery_id)

    def deliver_recovered_key(
        self, principal: Principal, recovery_id: str
    ) -> tuple[recovery.Recovery, bytes]:
        """The approved recovery's key, enveloped to the named recipient certificate."""
        return recovery.deliver(self.ctx, principal, recovery_id)

    # --- look-up ---------------------------------------------------------------------------

    def find(self, *, serial: str | None = None, fingerprint: str | None = None) -> CaCertificate:
        """One certificate by serial (hex) or SHA-256 fingerprint."""
        return issuance.find(self.ctx, serial=serial, fingerprint=fingerprint)

    def get(self, certificate_id: str) -> CaCertificate:
        """One certificate by its row id (after a status change)."""
        with self.ctx.db.read() as session:
            row = session.get(CaCertificate, certificate_id)
        if row is None:
            from govtrust.errors import NotFound

            raise NotFound("no such certificate")
        return row

    def list_certificates(
        self, filters: ListFilter, *, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[CaCertificate], str]:
        """Certificates matching ``filters``, newest first; returns (page, next page token)."""
        if page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        query = select(CaCertificate)
        moment = datetime.now(UTC)
        if filters.identity_id:
            query = query.where(CaCertificate.identity_id == filters.identity_id)
        if filters.profile:
            query = query.where(CaCertificate.profile == filters.profile)
        if filters.issuer:
            query = query.where(CaCertificate.issuer == filters.issuer)
        if filters.seal_id:
            query = query.where(CaCertificate.seal_id == filters.seal_id)
        if filters.expiring_before:
            query = query.where(CaCertificate.not_after < filters.expiring_before)
        if filters.status == "expired":
            query = query.where(CaCertificate.status == "active", CaCertificate.not_after <= moment)
        elif filters.status == "active":
            query = query.where(CaCertificate.status == "active", CaCertificate.not_after > moment)
        elif filters.status:
            query = query.where(CaCertificate.status == filters.status)
        if page_token:
            issued_at, row_id = _decode_token(page_token)
            query = query.where(
                or_(
                    CaCertificate.issued_at < issued_at,
                    and_(CaCertificate.issued_at == issued_at, CaCertificate.id < row_id),
                )
            )
        query = query.order_by(CaCertificate.issued_at.desc(), CaCertificate.id.desc())
        with self.ctx.db.read() as session:
            rows = list(session.scalars(query.limit(size + 1)))
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_token = _encode_token(last.issued_at, last.id)
        return rows, next_token

    @staticmethod
    def authorise_read(principal: Principal, row: CertificateRecord | None = None) -> None:
        """Reads need ``verifier`` or an issuing role, or the certificate's own subject."""
        if (
            row is not None
            and row.identity_id is not None
            and row.identity_id
            in (
                principal.citizen_id,
                principal.legal_person_id,
            )
        ):
            return
        principal.require_role("verifier", *issuance.SEAL_ROLES)

    # --- status ----------------------------------------------------------------------------

    def revoke(
        self,
        principal: Principal,
        certificate_id: str,
        *,
        reason: int | str = 0,
        invalidity_date: datetime | None = None,
        comment: str = "",
    ) -> CaCertificate:
        """Revoke with an RFC 5280 reason."""
        code = revocation.parse_reason(reason)
        change = revocation.StatusChange("revoke", code, invalidity_date, comment)
        return revocation.change_status(self.ctx, principal, certificate_id, change)

    def suspend(
        self, principal: Principal, certificate_id: str, comment: str = ""
    ) -> CaCertificate:
        """Put a certificate on hold (certificateHold)."""
        change = revocation.StatusChange("suspend", comment=comment)
        return revocation.change_status(self.ctx, principal, certificate_id, change)

    def resume(self, principal: Principal, certificate_id: str, comment: str = "") -> CaCertificate:
        """Release a hold."""
        change = revocation.StatusChange("resume", comment=comment)
        return revocation.change_status(self.ctx, principal, certificate_id, change)

    # --- publication -----------------------------------------------------------------------

    def crl(self, ca: str, *, delta: bool = False) -> crl.CrlInfo:
        """The current full (or delta) CRL of ``ca``."""
        return crl.current(self.ctx, ca, delta=delta)

    def freshness(self, principal: Principal) -> list[health.CaFreshness]:
        """Each CA's newest CRLs and stored OCSP responses, overdue ones marked (``ca-operator``;
        read-only: nothing is rebuilt)."""
        principal.require_role("ca-operator")
        return health.freshness(self.ctx)

    def ocsp(self, request: bytes) -> bytes:
        """Answer a DER OCSP request (never raises)."""
        return ocsp.respond(self.ctx, request)

    def timestamp(self, request: bytes, *, sm2: bool = False) -> tsa.TsaResult:
        """Answer a DER RFC 3161 request (never raises on bad input); ``sm2``: the SM2 TSA."""
        return tsa.respond(self.ctx, request, sm2=sm2)

    def timestamp_nowait(
        self,
        request: bytes,
        on_result: Callable[[tsa.TsaResult], object],
        *,
        sm2: bool = False,
    ) -> None:
        """:meth:`timestamp` handing the result to ``on_result`` once the token is recorded
        (:func:`ca.tsa.respond_nowait`: at once for a rejection, else from the ledger's
        thread; it must not block)."""
        tsa.respond_nowait(self.ctx, request, on_result, sm2=sm2)

    def refresh(self, fence: Fence | None = None) -> dict[str, int]:
        """The scheduled job (run every few minutes, once per cluster): re-sign OCSP responses
        nearing nextUpdate and republish full and delta CRLs that aged or fell behind a status
        change. ``fence``: the cluster job's lease, checked first (a stale leader allocates no
        CRL number) and again where each result is stored."""
        if fence is not None:
            with self.ctx.db.transaction() as session:
                fence.check(session)
        refreshed = ocsp.refresh_due(self.ctx, fence=fence)
        numbers: dict[str, int] = {"ocsp_refreshed": refreshed}
        for name in self.hierarchy.ca_names():
            numbers[f"crl:{name}"] = crl.current(self.ctx, name, fence=fence).crl_number
            delta = crl.current(self.ctx, name, delta=True, fence=fence)
            numbers[f"delta-crl:{name}"] = delta.crl_number
        return numbers

    def chain(self, ca: str | None = None, *, include_responders: bool = False) -> list[Issuer]:
        """The hierarchy (root first): one CA and its parents, or everything."""
        hierarchy = self.ctx.hierarchy
        if ca:
            hierarchy.ca(ca)
            return list(reversed(hierarchy.chain(ca)))
        result = [hierarchy.get(name) for name in hierarchy.ca_names()]
        if include_responders:
            result += [i for i in hierarchy.issuers.values() if i.role in ("ocsp", "tsa")]
        return result

    def issuing_chain(self, ca: str) -> list[Issuer]:
        """``ca`` and its parents, issuing CA first, root last."""
        return self.ctx.hierarchy.chain(ca)


def _encode_token(issued_at: datetime, row_id: str) -> str:
    moment = issued_at if issued_at.tzinfo else issued_at.replace(tzinfo=UTC)
    return base64.urlsafe_b64encode(f"{moment.isoformat()}|{row_id}".encode()).decode()


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        moment, row_id = text.split("|", 1)
        return datetime.fromisoformat(moment), row_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument.field("page_token", "not a token this service issued") from None


# --- the process's authority --------------------------------------------------------------------

AUTHORITY: Component[CertificateAuthority] = Component("the certificate authority")
# Who may hold which certificate: the wiring defines it (the identity registry's directory,
# idp.ca_directory); a CA without one refuses to start rather than issue unchecked.
SUBJECT_DIRECTORY: Component[SubjectDirectory] = Component("the CA's subject directory")


def ca_config(settings: Settings) -> CaConfig:
    """The CA's settings: its ``ca`` section, under the platform's own URLs and per-profile key
    algorithms. Raises ``ConfigError`` on a bad value (the server asks before it migrates)."""
    urls = {"public_base_url": settings.effective_public_base_url}
    if settings.crl_base_url:
        urls["crl_base_url"] = settings.crl_base_url
    if settings.ca_key_algorithms:
        urls["profile_key_algorithms"] = ",".join(settings.ca_key_algorithms)
    return CaConfig.from_settings(settings, **urls)


def authority_for(platform: Platform) -> CertificateAuthority:
    """The platform's authority (bootstrapped on first call). Raises
    :class:`~govtrust.platform.ComponentMissing` when the wiring defined no
    :data:`SUBJECT_DIRECTORY`."""
    return platform.components.get(AUTHORITY, lambda: _open(platform))


def _open(platform: Platform) -> CertificateAuthority:
    directory = platform.components.get(SUBJECT_DIRECTORY)
    config = ca_config(platform.settings)
    return CertificateAuthority.open(platform.db, platform.keystore, config, directory)
