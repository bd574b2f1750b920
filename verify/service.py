"""The verification service's shared context: trust anchors, caches, report signer, audit.

One :class:`VerifyContext` per platform and process (:func:`context_for`), shared by every
verifier (certificates, seal signatures, tokens, PDFs, licences), the gRPC servicer and the CLI.
It is safe under concurrent use: the lazily built parts are created under a lock, the caches
are thread-safe, and nothing here changes state except the audit log.

* ``trust_anchors`` — our root(s) plus external anchors from a PEM bundle
  (``GOVTRUST_VERIFY_TRUST_ANCHORS``);
* ``certificates`` — the :class:`verify.certificates.CertificateVerifier` (path building,
  validity, revocation with caches, purpose, identity);
* ``report_signer`` — signs reports with the service's own ``service``-profile certificate
  (system id ``govtrust-verification-service``, key in the key store), issued on first need;
* ``finish`` — signs a report when asked; ``audit`` — records who checked what, hashes only,
  group-committed so that a busy verifier does not serialise on the audit chain.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from govtrust import audit
from govtrust.config import Settings, section_config
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from govtrust.platform import Component
from govtrust.principal import Principal
from verify.report import (
    ReportFormat,
    ReportOptions,
    ReportSigner,
    SignedReport,
    VerificationReport,
)

if TYPE_CHECKING:
    from ca.authority import CertificateAuthority
    from govtrust.platform import Platform
    from hsm.keystore import KeyStore
    from idp.oidc.provider import Provider
    from seal.lifecycle import SealService
    from verify.certificates import CertificateVerifier

SERVICE_SYSTEM_ID = "govtrust-verification-service"
# our status store is read on every check by default, so that a revocation — in any worker —
# shows in the very next answer; > 0 trades that for fewer reads (an operator's explicit choice)
DEFAULT_STATUS_CACHE_SECONDS = 0.0
SIGNER_RENEW_MARGIN = timedelta(days=7)


@dataclass(frozen=True)
class VerifyConfig:
    """Settings of the verification service: the ``verify`` section (``[verify]`` in the TOML
    file, ``GOVTRUST_VERIFY_<FIELD>`` in the environment)."""

    trust_anchors: str = ""  # path of a PEM bundle of external trust anchors
    fetch_timeout_seconds: float = 3.0  # OCSP / CRL fetches
    max_pdf_bytes: int = 64 * 1024 * 1024  # VerifyPdf / VerifyPdfStream size limit
    max_ofd_bytes: int = 64 * 1024 * 1024  # VerifyOfd size limit (the zipped package)
    cache_size: int = 4096  # parsed certificates, paths and OCSP/CRL answers kept per process
    # how long our status store's answers are reused (0, the default: read on every check, so
    # a revocation is visible at once; a few tenths of a second would match the bound the CA's
    # OCSP cache gives other workers' revocations, if an operator prefers fewer reads)
    status_cache_seconds: float = DEFAULT_STATUS_CACHE_SECONDS
    audit_batch_size: int = 256  # audit records committed together at most
    audit_linger_ms: float = 2.0  # how long the audit writer waits for more checks to batch
    # the least time between the starts of two audit commits: under load one commit (whose
    # fixed cost, ~1 ms of CPU, dwarfs a record's) then carries every check of the interval
    audit_interval_ms: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings | None) -> VerifyConfig:
        """Defaults, then the ``verify`` section of ``settings`` (``[verify]`` in the TOML
        file, ``GOVTRUST_VERIFY_<FIELD>`` in the environment)."""
        return section_config(cls, settings, "verify")


def load_pem_bundle(path: str | Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (FailedPrecondition when unreadable or empty)."""
    try:
        data = Path(path).read_bytes()
        certs = x509.load_pem_x509_certificates(data)
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"trust anchor bundle {path}: {exc}") from None
    return certs


@dataclass(frozen=True)
class Verified:
    """A finished verification: the report, its signed JSON when asked for, and the audit
    record's commit (adapters ``await asyncio.wrap_future(audited)``; sync callers
    ``audited.result()``) — the answer goes out only once who-checked-what is recorded."""

    report: VerificationReport
    signed: SignedReport | None
    audited: Future[None]
    # the settled report this one re-stamps (same content but ids, times and reference), so
    # that adapters may reuse its conversion; None for a report checked in full
    template: VerificationReport | None = None


class AuditWriter:
    """Group-commits verification audit records: ``submit`` queues one and returns a future
    that completes when the record is committed (one transaction per batch, in order; checks
    queued together by one caller share one record, see :func:`_grouped`).

    A batch is committed ``linger_ms`` after its first record arrived, but no sooner than
    ``interval_ms`` after the previous commit began (at once when ``batch_size`` records are
    waiting): a lone check waits only the linger, while under load the commits — each costing
    far more than the records in it — come at most every interval, however many checks
    arrive. Submitting wakes the writer only when it is idle or the batch has filled: between
    commits the writer sleeps until one of those or its deadline, never polling."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 256,
        linger_ms: float = 2.0,
        interval_ms: float = 0.0,
    ) -> None:
        self.db = db
        self.batch_size = max(1, batch_size)
        self.linger = max(0.0, linger_ms) / 1000
        self.interval = max(0.0, interval_ms) / 1000
        self._last_commit = 0.0
        self._pending: collections.deque[tuple[dict[str, Any], Future[None]]] = collections.deque()
        self._idle = False  # the writer waits for a first record (and must be woken)
        self._wake = threading.Event()
        self._full = threading.Event()  # set by the submit that fills a lingering batch
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self, *, actor: str, action: str, target: str, outcome: str, details: dict[str, Any]
    ) -> Future[None]:
        """Queue a record; the future completes once it is committed (or fails with the error)."""
        future: Future[None] = Future()
        record = {
            "actor": actor[:256],
            "action": action,
            "target": target[:256],
            "outcome": outcome,
            "details": details,
        }
        pending = self._pending
        pending.append((record, future))
        if len(pending) >= self.batch_size and not self._full.is_set():
            self._full.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()
        elif self._idle:  # read after appending; the writer sets it before looking again
            self._wake.set()
        return future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="govtrust-verify-audit", daemon=True
                )
                self._thread.start()

    def _next_batch(self) -> list[tuple[dict[str, Any], Future[None]]]:
        """Wait for a first record, then for the batch's time; take up to ``batch_size``."""
        pending = self._pending
        while not pending:
            self._idle = True
            if not pending:  # looked at again after announcing: no wake-up is lost
                self._wake.wait()
            self._wake.clear()
            self._idle = False
        # linger a moment so that concurrent checks share one transaction (and one record)
        deadline = max(time.monotonic() + self.linger, self._last_commit + self.interval)
        self._full.clear()  # before looking: a submit that fills the batch after this sets it
        while len(pending) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._full.wait(remaining)
            self._full.clear()
        count = min(len(pending), self.batch_size)
        return [pending.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            error: Exception | None = None
            self._last_commit = time.monotonic()
            try:
                with self.db.transaction() as session:
                    for record in _grouped([record for record, _ in batch]):
                        audit.append(session, **record)
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                error = exc
            for _, future in batch:
                # A waiter may have given up (its call was cancelled): setting a cancelled
                # future raises, and must not end this thread with the others unanswered.
                with contextlib.suppress(InvalidStateError):
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)


def _grouped(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One audit record per (actor, action) of a batch, as the CA's group commit does: a lone
    check keeps its own record (target = its evidence digest); several become one record whose
    details list every check (report id, evidence digest, verdict) — all of them, hashes only."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["actor"], record["action"]), []).append(record)
    out: list[dict[str, Any]] = []
    for (actor, action), items in groups.items():
        if len(items) == 1:
            out.append(items[0])
            continue
        outcomes = sorted({item["outcome"] for item in items})
        out.append(
            {
                "actor": actor,
                "action": action,
                "target": f"batch:{len(items)}",
                "outcome": outcomes[0] if len(outcomes) == 1 else "mixed",
                "details": {"checks": [item["details"] for item in items]},
            }
        )
    return out


class VerifyContext:
    """Everything the verifiers of one process share (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        keystore: KeyStore,
        authority: CertificateAuthority | None = None,
        *,
        config: VerifyConfig | None = None,
        platform: Platform | None = None,
        clock: Callable[[], datetime] | None = None,
        seals: SealService | None = None,
        provider: Provider | None = None,
    ) -> None:
        self.db = db
        self._seals = seals
        self._provider = provider
        self.keystore = keystore
        self._authority = authority
        self.config = config or VerifyConfig()
        self.platform = platform
        self._clock = clock
        self._lock = threading.RLock()
        self._certificates: CertificateVerifier | None = None
        self._signer: ReportSigner | None = None
        self._external: list[x509.Certificate] | None = None
        self.auditor = AuditWriter(
            db,
            batch_size=self.config.audit_batch_size,
            linger_ms=self.config.audit_linger_ms,
            interval_ms=self.config.audit_interval_ms,
        )

    def warm(self) -> None:
        """Load what every call needs (at server start): the CA hierarchy, the trust anchors,
        and the report signer's certificate (issued now if there is none yet)."""
        self.certificates.warm()
        self.report_signer  # noqa: B018 - found or issued now, not on the first signed report

    def close(self) -> None:
        """Release the verifiers' private database connections."""
        if self._certificates is not None:
            self._certificates.close()

    # --- time ---------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The current time (UTC); tests may install a clock."""
        return self._clock() if self._clock is not None else datetime.now(UTC)

    @property
    def authority(self) -> CertificateAuthority:
        """Our certificate authority (its hierarchy, status store and TSA)."""
        if self._authority is None:
            with self._lock:
                if self._authority is None:
                    if self.platform is None:
                        raise FailedPrecondition("no certificate authority configured")
                    from ca.authority import authority_for

                    self._authority = authority_for(self.platform)
        return self._authority

    # --- the services verified against ---------------------------------------------------------

    @property
    def seals(self) -> SealService:
        """The seal service (seal records and their history)."""
        if self._seals is None:
            with self._lock:
                if self._seals is None:
                    if self.platform is None:
                        raise FailedPrecondition("no seal service configured for verification")
                    from seal.runtime import runtime_for

                    self._seals = runtime_for(self.platform).service
        return self._seals

    @property
    def provider(self) -> Provider:
        """Our OIDC provider (its signing keys, issuer and token store)."""
        if self._provider is None:
            with self._lock:
                if self._provider is None:
                    if self.platform is None:
                        raise FailedPrecondition("no identity provider configured for verification")
                    from idp.oidc.factory import provider_for

                    self._provider = provider_for(self.platform)
        return self._provider

    # --- trust --------------------------------------------------------------------------------

    @property
    def our_roots(self) -> list[x509.Certificate]:
        """Our CA's root certificate(s)."""
        return [self.certificates.parse(i.der) for i in self.authority.chain("root")]

    @property
    def external_anchors(self) -> list[x509.Certificate]:
        """Configured external trust anchors (loaded once)."""
        with self._lock:
            if self._external is None:
                path = self.config.trust_anchors
                self._external = load_pem_bundle(path) if path else []
            return self._external

    @property
    def trust_anchors(self) -> list[x509.Certificate]:
        """Our roots and the external anchors."""
        return self.our_roots + self.external_anchors

    @property
    def certificates(self) -> CertificateVerifier:
        """The certificate verifier with its caches."""
        verifier = self._certificates
        if verifier is None:
            with self._lock:
                if self._certificates is None:
                    from verify.certificates import CertificateVerifier

                    self._certificates = CertificateVerifier(self)
                verifier = self._certificates
        return verifier

    # --- the report signer --------------------------------------------------------------------

    @property
    def report_signer(self) -> ReportSigner:
        """The service's report signer (its certificate found or issued on first use)."""
        signer = self._signer
        if signer is not None and signer.chain[0].not_valid_after_utc - SIGNER_RENEW_MARGIN > (
            self.now()
        ):
            return signer
        with self._lock:
            if self._signer is None or self._signer is signer:
                self._signer = self._load_or_issue_signer()
            return self._signer

    def _load_or_issue_signer(self) -> ReportSigner:
        from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
        from ca.status import active_service_certificates
        from hsm.keystore import KeyRef
        from license.signer import LicenceSigner

        horizon = self.now() + SIGNER_RENEW_MARGIN
        rows = active_service_certificates(self.db, SERVICE_SYSTEM_ID)
        chain_tail = [
            x509.load_der_x509_certificate(i.der)
            for i in self.authority.issuing_chain("service")
            if i.role != "root"
        ]
        for row in rows:
            cert = x509.load_der_x509_certificate(row.der)
            if cert.not_valid_after_utc <= horizon or row.key_id is None:
                continue
            try:
                key: KeyRef = self.keystore.get(row.key_id)
            except Exception:  # noqa: BLE001, S112 - a lost key: issue a new certificate
                continue
            return ReportSigner(LicenceSigner(self.keystore, key, (cert, *chain_tail)))
        system = Principal("system", "verify-service", frozenset({"ca-operator"}))
        issued = self.authority.issue(
            system,
            IssueRequest(
                profile="service",
                subject=SubjectSpec(service=ServiceSubject(SERVICE_SYSTEM_ID)),
                generate_key_algorithm="ec-p256",
            ),
        )
        assert issued.key is not None
        cert = x509.load_der_x509_certificate(issued.certificate.der)
        return ReportSigner(LicenceSigner(self.keystore, issued.key, (cert, *chain_tail)))

    # --- finishing a call ---------------------------------------------------------------------

    def finish(
        self, report: VerificationReport, options: ReportOptions
    ) -> tuple[VerificationReport, SignedReport | None]:
        """The report and, when ``options`` ask for it, the report as signed JSON."""
        if options.report_format is ReportFormat.SIGNED_JSON:
            return report, self.report_signer.sign(report)
        return report, None

    def complete(
        self,
        principal: Principal,
        action: str,
        report: VerificationReport,
        options: ReportOptions,
        *,
        extra: Mapping[str, str] | None = None,
        template: VerificationReport | None = None,
    ) -> Verified:
        """The end of every verify call: sign when asked, and queue the audit record."""
        report, signed = self.finish(report, options)
        return Verified(
            report, signed, self.audit(principal, action, report, extra=extra), template
        )

    def audit(
        self,
        principal: Principal,
        action: str,
        report: VerificationReport,
        *,
        extra: Mapping[str, str] | None = None,
    ) -> Future[None]:
        """Record who checked what (``verify.<action>``): the evidence's SHA-256, the verdict and
        the report id, never the evidence itself. Returns a future done once committed."""
        digest = report.evidence_digest.value.hex() if report.evidence_digest else ""
        details: dict[str, Any] = {
            "report_id": report.report_id,
            "verdict": report.verdict.value,
            "evidence_kind": report.evidence_kind.value if report.evidence_kind else "",
            "evidence_sha256": digest,
        }
        if report.reference:
            details["reference_sha256"] = _sha256_hex(report.reference.encode())
        details.update(extra or {})
        return self.auditor.submit(
            actor=principal.actor,
            action=f"verify.{action}",
            target=f"sha256:{digest}",
            outcome=report.verdict.value,
            details=details,
        )


def _sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


VERIFY_CONTEXT: Component[VerifyContext] = Component("the verification context")


def context_for(platform: Platform, *, config: VerifyConfig | None = None) -> VerifyContext:
    """The platform's verification context (built once; ``config`` applies to that build, the
    ``verify`` settings section otherwise)."""
    return platform.components.get(
        VERIFY_CONTEXT,
        lambda: VerifyContext(
            platform.db,
            platform.keystore,
            config=config or VerifyConfig.from_settings(platform.settings),
            platform=platform,
        ),
    )


def audit_token_check(platform: Platform) -> audit.TokenCheck:
    """Checks an audit checkpoint's time-stamp as the verification service checks any: signed
    by our TSA's certificate (EKU timeStamping, chained to our roots, valid at genTime, not
    revoked). ``None`` when valid, else what is wrong."""

    def check(token: bytes, signature: bytes) -> str | None:
        from verify.report import Verdict
        from verify.seal_signatures import verify_timestamp

        report = verify_timestamp(
            context_for(platform), token, signature, "en", now=datetime.now(UTC)
        )
        if report.verdict is Verdict.VALID:
            return None
        return "; ".join(r.message for r in report.reasons) or report.verdict.value

    return check
