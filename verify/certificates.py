"""VerifyCertificate: path to a trust anchor, validity at a time, revocation, purpose, identity.

* Path building: from the leaf up, by issuer name (and authority/subject key identifier), over
  our CA hierarchy, the configured external anchors and the caller's intermediates; every link's
  signature is checked (``verify_directly_issued_by``) and every issuer must be a CA. No path →
  UNKNOWN_ISSUER (INDETERMINATE); a link that fails → CHAIN_INVALID (INVALID).
* Validity of every certificate of the path at the validation time (default now).
* Revocation of every non-anchor certificate: ours from our own status store (the CA's status
  look-up, :class:`ca.status.CertificateStatusLookup`, joined with the registry's identity
  fragment: one point query, so a revocation is visible at once), other
  issuers' by OCSP (AIA) and then CRL (CDP), fetched with a short timeout. Whatever cannot be
  obtained makes the answer INDETERMINATE with a reason saying what was tried.
* Key usage / EKU for the requested purpose; the identity the certificate names.

Caches (bounded, thread-safe; a lock only around mutation): parsed certificates by the SHA-256
of their DER, built paths and their static analysis by leaf + intermediates fingerprints,
verified signature links, remote OCSP / CRL answers until their ``nextUpdate`` (failures for a
few seconds), and settled checks (:func:`settled_key`). No cache is keyed on a request's bytes:
keys are digests, so an entry's key stays small whatever a caller sends. Registry status and
identity status are read on every call: they are what a revocation changes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
)

from ca.path import (
    BuiltPath,
    PathProblem,
    build_path,
    signature_verifies,
    signed_by,
)
from ca.status import CertificateStatusLookup
from govtrust.errors import InvalidArgument
from govtrust.fastsql import PointReader
from govtrust.principal import Principal
from idp.identity_status import IdentityLookup, identity_join
from idp.types import IdentityKind, IdentityStatus, IdentitySummary
from verify.report import (
    CertificateProfile,
    CertificatePurpose,
    CertificateReport,
    CertificateSummary,
    EvidenceKind,
    Reason,
    ReasonCode,
    ReportFormat,
    ReportOptions,
    RevocationCheck,
    RevocationReasonCode,
    RevocationReport,
    RevocationStatus,
    StatusSource,
    VerificationReport,
    build_report,
    new_report_id,
    restamped,
    tr,
    verdict_of,
)

if TYPE_CHECKING:
    from verify.service import Verified, VerifyContext

MAX_PATH_LENGTH = 8
MAX_CERTIFICATE_BYTES = 64 * 1024
MAX_INTERMEDIATES = 16
MAX_FETCH_BYTES = 8 * 1024 * 1024
FAILURE_TTL_SECONDS = 5.0
NO_NEXT_UPDATE_TTL = timedelta(minutes=5)
DOCUMENT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
IDENTIFY_CODE_OID = x509.ObjectIdentifier("1.2.156.10260.4.1.1")
QC_STATEMENTS_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.3")
ORGANIZATION_IDENTIFIER_OID = x509.ObjectIdentifier("2.5.4.97")
_TLS_ONLY_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.OCSP_SIGNING,
        ExtendedKeyUsageOID.TIME_STAMPING,
        ExtendedKeyUsageOID.CODE_SIGNING,
    }
)
_ROLE_PROFILE = {
    "root": CertificateProfile.ROOT_CA,
    "issuing": CertificateProfile.ISSUING_CA,
    "ocsp": CertificateProfile.OCSP_RESPONDER,
    "tsa": CertificateProfile.TSA,
}
_REASON_NAMES = {
    RevocationReasonCode.UNSPECIFIED: ("未指明", "unspecified"),
    RevocationReasonCode.KEY_COMPROMISE: ("密钥泄露", "key compromise"),
    RevocationReasonCode.CA_COMPROMISE: ("CA 泄露", "CA compromise"),
    RevocationReasonCode.AFFILIATION_CHANGED: ("隶属关系变更", "affiliation changed"),
    RevocationReasonCode.SUPERSEDED: ("已被取代", "superseded"),
    RevocationReasonCode.CESSATION_OF_OPERATION: ("停止运营", "cessation of operation"),
    RevocationReasonCode.CERTIFICATE_HOLD: ("证书冻结", "certificate hold"),
    RevocationReasonCode.REMOVE_FROM_CRL: ("从 CRL 移除", "remove from CRL"),
    RevocationReasonCode.PRIVILEGE_WITHDRAWN: ("权限撤回", "privilege withdrawn"),
    RevocationReasonCode.AA_COMPROMISE: ("AA 泄露", "AA compromise"),
}
_X509_REASONS = {
    x509.ReasonFlags.unspecified: RevocationReasonCode.UNSPECIFIED,
    x509.ReasonFlags.key_compromise: RevocationReasonCode.KEY_COMPROMISE,
    x509.ReasonFlags.ca_compromise: RevocationReasonCode.CA_COMPROMISE,
    x509.ReasonFlags.affiliation_changed: RevocationReasonCode.AFFILIATION_CHANGED,
    x509.ReasonFlags.superseded: RevocationReasonCode.SUPERSEDED,
    x509.ReasonFlags.cessation_of_operation: RevocationReasonCode.CESSATION_OF_OPERATION,
    x509.ReasonFlags.certificate_hold: RevocationReasonCode.CERTIFICATE_HOLD,
    x509.ReasonFlags.remove_from_crl: RevocationReasonCode.REMOVE_FROM_CRL,
    x509.ReasonFlags.privilege_withdrawn: RevocationReasonCode.PRIVILEGE_WITHDRAWN,
    x509.ReasonFlags.aa_compromise: RevocationReasonCode.AA_COMPROMISE,
}

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class NeedsIo(Exception):
    """Raised by an ``offline`` check that would need the database or the network (the caller
    then runs it in the thread pool instead of inline on the event loop)."""


# --- request --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateCheck:
    """A VerifyCertificate request in domain terms."""

    certificate: bytes
    intermediates: tuple[bytes, ...] = ()
    at_time: datetime | None = None
    purpose: CertificatePurpose | None = None
    revocation_check: RevocationCheck = RevocationCheck.DEFAULT
    options: ReportOptions = field(default_factory=ReportOptions)


def _revoked(reason: RevocationReasonCode, source: StatusSource, **facts: Any) -> RevocationReport:
    """A revoked — or, for certificateHold, on-hold — status from a CRL entry or OCSP answer."""
    status = (
        RevocationStatus.ON_HOLD
        if reason is RevocationReasonCode.CERTIFICATE_HOLD
        else RevocationStatus.REVOKED
    )
    return RevocationReport(status, source, reason=reason, **facts)


def load_certificate(
    data: bytes, field_name: str = "certificate"
) -> tuple[x509.Certificate, bytes]:
    """Parse a DER or PEM certificate; InvalidArgument naming ``field_name`` when it is not one.

    Returns the certificate and its DER encoding.
    """
    if not data:
        raise InvalidArgument.field(field_name, "required")
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise InvalidArgument.field(field_name, f"larger than {MAX_CERTIFICATE_BYTES} bytes")
    try:
        if b"-----BEGIN " in data[:4096]:  # PEM, possibly after explanatory text (RFC 7468)
            cert = x509.load_pem_x509_certificate(data)
            return cert, cert.public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data), data
    except ValueError as exc:
        raise InvalidArgument.field(
            field_name, f"not a DER or PEM X.509 certificate ({exc})"
        ) from None


# --- static analysis (cached per leaf + intermediates + purpose) ------------------------------


@dataclass(frozen=True)
class _Path:
    """A built path (leaf first) and what never changes about it."""

    certificates: tuple[x509.Certificate, ...]
    summaries: tuple[CertificateSummary, ...]
    trusted: bool
    failure: tuple[ReasonCode, str, str, int] | None  # code, zh, en, index into the path
    ours: tuple[bool, ...]  # issued by our hierarchy (the leaf) / part of it (CAs)
    trust: object = None  # the trust material it was built against (stale once replaced)


@dataclass(frozen=True)
class Settled:
    """A check whose outcome, while the trust material stays the same, depends only on the
    validation time (within ``not_before``..``not_after``, the path's common validity) and on
    our status store's row for the leaf: everything else (path, signatures, purpose, summaries)
    was decided once. ``row`` is the row it was decided with (None: the leaf is one of our own
    CAs, good by construction, nothing to read); a call may reuse ``report`` — re-stamped with
    its own times — only after reading the row again and finding it equal and not revoked or
    on hold. ``template`` is the whole report built from it (set by :func:`verify_certificate`).
    """

    trust: object
    fingerprint: str
    needs_row: bool
    row: tuple[Any, ...] | None
    not_before: datetime
    not_after: datetime
    report: CertificateReport
    template: Any = None


@dataclass(frozen=True)
class _Remote:
    """A remote revocation answer (or failure) and when it stops being usable (epoch secs)."""

    report: RevocationReport | None
    error: str
    expires: float


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


class _TrustMaterial(NamedTuple):
    """Candidate issuers by subject, anchor fingerprints and our own CAs, built together."""

    pool: dict[bytes, list[x509.Certificate]]
    anchors: frozenset[str]
    ours: dict[str, tuple[str, str, str]]  # fingerprint -> name, role, parent


class CertificateVerifier:
    """Certificate validation with the caches described in the module docstring."""

    def __init__(
        self,
        ctx: VerifyContext,
        *,
        fetch: Callable[[str, bytes | None, float], bytes] | None = None,
    ) -> None:
        self.ctx = ctx
        size = ctx.config.cache_size
        self._parsed: LruCache[bytes, x509.Certificate] = LruCache(size)
        self._paths: LruCache[tuple[str, ...], _Path] = LruCache(size)
        self._links: LruCache[tuple[str, str], bool] = LruCache(size * 2)
        self._summaries: LruCache[str, CertificateSummary] = LruCache(size)
        self._remote: LruCache[tuple[str, ...], _Remote] = LruCache(size)
        self._crls: LruCache[str, tuple[x509.CertificateRevocationList, float]] = LruCache(64)
        self._rows: LruCache[str, tuple[tuple[Any, ...] | None, float]] = LruCache(size * 4)
        self._static: LruCache[tuple[str, str], tuple[tuple[str, str] | None, str]] = LruCache(size)
        self._settled: LruCache[tuple[Any, ...], Settled] = LruCache(size)
        self._fetch = fetch or http_fetch
        self._reader = PointReader(ctx.db.engine)
        self._status = CertificateStatusLookup(
            self._reader, identity_join("c.identity_id")
        ).row  # the CA's status row with the registry's identity columns: one point read
        self._identities = IdentityLookup(self._reader)
        self._lock = threading.Lock()
        self._trusted: _TrustMaterial | None = None  # replaced whole, read once per use

    # --- trust material -----------------------------------------------------------------------

    def parse(self, der: bytes) -> x509.Certificate:
        """A parsed certificate (cached by the SHA-256 of its DER: the DER may come from a
        request, up to 64 KB); ValueError when it is not one."""
        key = hashlib.sha256(der).digest()
        cert = self._parsed.get(key)
        if cert is None:
            cert = x509.load_der_x509_certificate(der)
            self._parsed.put(key, cert)
        return cert

    def _trust(self) -> _TrustMaterial:
        trusted = self._trusted
        if trusted is not None:
            return trusted
        with self._lock:
            if self._trusted is None:
                by_subject: dict[bytes, list[x509.Certificate]] = {}
                anchors: set[str] = set()
                ours: dict[str, tuple[str, str, str]] = {}
                for issuer in self.ctx.authority.hierarchy.issuers.values():
                    cert = self.parse(issuer.der)
                    fp = _fingerprint(cert)
                    ours[fp] = (issuer.name, issuer.role, issuer.parent or "")
                    if issuer.role in ("root", "issuing"):
                        by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
                    if issuer.role == "root":
                        anchors.add(fp)
                for cert in self.ctx.external_anchors:
                    by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
                    anchors.add(_fingerprint(cert))
                self._trusted = _TrustMaterial(by_subject, frozenset(anchors), ours)
            return self._trusted

    @property
    def reader(self) -> PointReader:
        """The private point-read connections (shared with the token verifier)."""
        return self._reader

    def identity(self, identity_id: str) -> IdentitySummary | None:
        """The registry's summary of an identity (read fresh: its status matters)."""
        return self._identities.summary(identity_id)

    def warm(self) -> None:
        """Build the trust material now (our hierarchy and the external anchors)."""
        self._trust()

    def close(self) -> None:
        """Close the private point-read connections."""
        self._reader.close()

    def invalidate(self) -> None:
        """Forget every cache (after a change of trust anchors or hierarchy). Results built
        against the old trust material are never used again, even by a check running
        concurrently: each remembers the material it was built with."""
        with self._lock:
            self._trusted = None
        for cache in (
            self._paths,
            self._links,
            self._summaries,
            self._remote,
            self._crls,
            self._static,
            self._rows,
            self._settled,
        ):
            cache.clear()

    # --- path building --------------------------------------------------------------------------

    def _linked(self, child: x509.Certificate, issuer: x509.Certificate) -> bool:
        key = (_fingerprint(child), _fingerprint(issuer))
        known = self._links.get(key)
        if known is None:
            known = signed_by(child, issuer)
            self._links.put(key, known)
        return known

    def _path(
        self, leaf: x509.Certificate, extra: Sequence[x509.Certificate], leaf_fp: str = ""
    ) -> _Path:
        key = (leaf_fp or _fingerprint(leaf), *(_fingerprint(c) for c in extra))
        trust = self._trust()
        cached = self._paths.get(key)
        if cached is not None and cached.trust is trust:
            return cached
        pool, anchors, ours = trust
        extra_by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in extra:
            extra_by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
        built_path = build_path(
            leaf,
            lambda current: (
                pool.get(current.issuer.public_bytes(), [])
                + extra_by_subject.get(current.issuer.public_bytes(), [])
            ),
            is_anchor=lambda current: _fingerprint(current) in anchors,
            linked=self._linked,
            max_length=MAX_PATH_LENGTH,
        )
        path = list(built_path.certificates)
        failure = _failure(built_path)
        trusted = built_path.trusted
        summaries = []
        our_flags = []
        leaf_issuer = ours.get(_fingerprint(path[1])) if len(path) > 1 else None
        for i, cert in enumerate(path):
            fp = _fingerprint(cert)
            if fp in ours:
                _name, role, parent = ours[fp]
                summaries.append(self._summary(cert, _ROLE_PROFILE.get(role), parent))
                our_flags.append(True)
            elif i == 0 and leaf_issuer is not None and leaf_issuer[1] == "issuing":
                summaries.append(self._summary(cert, None, leaf_issuer[0]))
                our_flags.append(True)
            else:
                summaries.append(self._summary(cert, None, ""))
                our_flags.append(False)
        built = _Path(
            tuple(path),
            tuple(summaries),
            trusted,
            failure,
            tuple(our_flags),
            trust,
        )
        self._paths.put(key, built)
        return built

    def _summary(
        self, cert: x509.Certificate, profile: CertificateProfile | None, issuer_ca: str
    ) -> CertificateSummary:
        fp = _fingerprint(cert)
        cached = self._summaries.get(fp)
        if cached is None or cached.profile is not profile or cached.issuer_ca != issuer_ca:
            cached = CertificateSummary.of(cert, profile=profile, issuer_ca=issuer_ca, der=b"")
            self._summaries.put(fp, cached)
        return cached

    # --- the check ------------------------------------------------------------------------------

    def verify(
        self,
        certificate: x509.Certificate | bytes,
        *,
        intermediates: Sequence[x509.Certificate | bytes] = (),
        at: datetime | None = None,
        purpose: CertificatePurpose | None = None,
        revocation: RevocationCheck = RevocationCheck.DEFAULT,
        locale: str = "zh-CN",
        now: datetime | None = None,
        offline: bool = False,
    ) -> CertificateReport:
        """Validate ``certificate`` at ``at`` (default now) for ``purpose``.

        ``intermediates`` help path building. Bytes are DER or PEM; InvalidArgument when they
        are not certificates (field ``certificate`` / ``intermediates[i]``). With ``offline``,
        raise :class:`NeedsIo` instead of reading a remote database or the network (a SQLite
        point read is a local file read and is done; everything else needed is cached: the
        check is CPU and may run on the event loop).
        """
        return self.check(
            certificate,
            intermediates=intermediates,
            at=at,
            purpose=purpose,
            revocation=revocation,
            locale=locale,
            now=now,
            offline=offline,
        )[0]

    def recall(
        self, key: tuple[Any, ...], at: datetime, offline: bool = False
    ) -> tuple[Settled, tuple[Any, ...] | None] | None:
        """The settled check remembered under ``key`` if it still applies at ``at``: built
        against the current trust material, ``at`` within the path's validity, and our status
        store's row for the leaf — read now, as every check does — unchanged and neither
        revoked nor on hold. Returns it with the row just read, or None (check in full)."""
        settled = self._settled.get(key)
        if (
            settled is None
            or settled.trust is not self._trusted
            or not settled.not_before <= at <= settled.not_after
        ):
            return None
        row = self._registry_row(settled.fingerprint, offline) if settled.needs_row else None
        if row != settled.row:
            return None
        return settled, row

    def remember(self, key: tuple[Any, ...], settled: Settled) -> None:
        """Keep a settled check (see :meth:`recall`)."""
        self._settled.put(key, settled)

    def check(
        self,
        certificate: x509.Certificate | bytes,
        *,
        intermediates: Sequence[x509.Certificate | bytes] = (),
        at: datetime | None = None,
        purpose: CertificatePurpose | None = None,
        revocation: RevocationCheck = RevocationCheck.DEFAULT,
        locale: str = "zh-CN",
        now: datetime | None = None,
        offline: bool = False,
    ) -> tuple[CertificateReport, Settled | None]:
        """:meth:`verify`, and the :class:`Settled` form of the check when its outcome depends
        only on the time and our status store's row (None otherwise: an external issuer, a
        remote revocation source, a revoked or held leaf, a certificate outside its validity)."""
        if isinstance(certificate, bytes):
            certificate, der = load_certificate(certificate)
        else:
            der = certificate.public_bytes(Encoding.DER)
        extra: list[x509.Certificate] = []
        if len(intermediates) > MAX_INTERMEDIATES:
            raise InvalidArgument.field("intermediates", f"at most {MAX_INTERMEDIATES}")
        for i, item in enumerate(intermediates):
            extra.append(
                load_certificate(item, f"intermediates[{i}]")[0]
                if isinstance(item, bytes)
                else item
            )
        now = now or self.ctx.now()
        at = at or now
        path = self._path(certificate, extra, hashlib.sha256(der).hexdigest())
        reasons: list[Reason] = []

        def add(code: ReasonCode, zh: str, en: str, index: int | None = None) -> None:
            subject = "" if index is None else f"chain[{index}]"
            reasons.append(Reason(code, tr(locale, zh, en), subject))

        if path.failure is not None:
            code, zh, en, index = path.failure
            add(code, zh, en, index)
        elif not path.trusted:
            top = path.certificates[-1]
            add(
                ReasonCode.UNKNOWN_ISSUER,
                f"无法构建到受信任根的证书路径：未知的签发者 {top.issuer.rfc4514_string()}",
                f"no path to a trust anchor: unknown issuer {top.issuer.rfc4514_string()}",
                len(path.certificates) - 1,
            )
        within = True
        not_before, not_after = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        for i, cert in enumerate(path.certificates):
            not_before = max(not_before, cert.not_valid_before_utc)
            not_after = min(not_after, cert.not_valid_after_utc)
            if at < cert.not_valid_before_utc:
                within = False
                add(
                    ReasonCode.CERTIFICATE_NOT_YET_VALID,
                    f"证书 {cert.subject.rfc4514_string()} 在 {_fmt(at)} 尚未生效"
                    f"（生效时间 {_fmt(cert.not_valid_before_utc)}）",
                    f"{cert.subject.rfc4514_string()} was not yet valid at {_fmt(at)} "
                    f"(valid from {_fmt(cert.not_valid_before_utc)})",
                    i,
                )
            elif at > cert.not_valid_after_utc:
                within = False
                add(
                    ReasonCode.CERTIFICATE_EXPIRED,
                    f"证书 {cert.subject.rfc4514_string()} 在 {_fmt(at)} 已过期"
                    f"（有效期至 {_fmt(cert.not_valid_after_utc)}）",
                    f"{cert.subject.rfc4514_string()} had expired at {_fmt(at)} "
                    f"(valid until {_fmt(cert.not_valid_after_utc)})",
                    i,
                )
        purpose_ok = True
        static_key = (path.summaries[0].fingerprint_sha256, purpose.value if purpose else "")
        static = self._static.get(static_key)
        if static is None:  # what never changes for this certificate and purpose
            arc = self.ctx.authority.ctx.config.oid_arc
            static = (
                purpose_problem(certificate, purpose, arc) if purpose is not None else None,
                seal_id_of(certificate, arc),
            )
            self._static.put(static_key, static)
        if purpose is not None:
            problem = static[0]
            if problem is not None:
                purpose_ok = False
                add(ReasonCode.KEY_USAGE_MISMATCH, problem[0], problem[1], 0)

        # revocation: the leaf's status feeds the report; the CAs' problems become reasons
        leaf_row: tuple[Any, ...] | None = None
        at_time: RevocationReport | None = None
        current: RevocationReport | None = None
        ours = path.trust.ours if isinstance(path.trust, _TrustMaterial) else {}
        leaf_is_ca = path.summaries[0].fingerprint_sha256 in ours
        # settles when every status came from our own store (or our CAs, good by construction)
        settles = (
            path.trusted
            and within
            and all(s.fingerprint_sha256 in ours for s in path.summaries[1:-1])
            and (leaf_is_ca or revocation in (RevocationCheck.DEFAULT, RevocationCheck.REGISTRY))
        )
        if path.trusted:
            for i in range(len(path.certificates) - 1):
                cert, issuer = path.certificates[i], path.certificates[i + 1]
                status_at, status_now, row, why = self._revocation(
                    cert,
                    issuer,
                    path.ours[i],
                    revocation,
                    at,
                    now,
                    locale,
                    offline,
                    path.summaries[i].fingerprint_sha256,
                )
                if i == 0:
                    at_time, current, leaf_row = status_at, status_now, row
                self._revocation_reasons(cert, i, status_at, status_now, why, locale, add)
        identity: IdentitySummary | None = None
        seal_id = ""
        if leaf_row is not None:
            identity, seal_id = _identity_of(leaf_row)
            if identity is not None and identity.status is not IdentityStatus.ACTIVE:
                add(
                    ReasonCode.IDENTITY_NOT_ACTIVE,
                    f"证书所标识的主体 {identity.display_name} 当前状态为"
                    f"{'已暂停' if identity.status is IdentityStatus.SUSPENDED else '已注销'}",
                    f"the identity named, {identity.display_name}, is {identity.status.value}",
                )
        if not seal_id:
            seal_id = static[1]
        leaf_summary = path.summaries[0]
        if leaf_row is not None and leaf_row[1]:
            leaf_summary = _with_profile(leaf_summary, leaf_row[1])
        leaf_summary = CertificateSummary(
            **{**leaf_summary.__dict__, "der": der}  # the leaf carries its DER
        )
        report = CertificateReport(
            verdict=verdict_of(reasons),
            reasons=tuple(reasons),
            certificate=leaf_summary,
            chain=path.summaries if path.trusted else (),
            trusted=path.trusted,
            validation_time=at,
            within_validity_period=within,
            purpose_allowed=purpose_ok,
            revocation_at_validation_time=at_time,
            revocation_now=current,
            identity=identity,
            seal_id=seal_id,
        )
        if settles and not leaf_is_ca:
            settles = (
                path.ours[0]
                and leaf_row is not None
                and leaf_row[2] not in ("revoked", "suspended")
                and at_time is not None
                and at_time.source is StatusSource.REGISTRY
                and at_time.status is RevocationStatus.GOOD
            )
        if not settles:
            return report, None
        return report, Settled(
            path.trust,
            path.summaries[0].fingerprint_sha256,
            not leaf_is_ca,
            leaf_row,
            not_before,
            not_after,
            report,
        )

    def _revocation_reasons(
        self,
        cert: x509.Certificate,
        index: int,
        status_at: RevocationReport,
        status_now: RevocationReport,
        why: str,
        locale: str,
        add: Callable[..., None],
    ) -> None:
        if status_at.status is RevocationStatus.GOOD:
            return
        name = cert.subject.rfc4514_string()
        if status_at.status is RevocationStatus.REVOKED:
            reason = status_at.reason or RevocationReasonCode.UNSPECIFIED
            zh_reason, en_reason = _REASON_NAMES[reason]
            add(
                ReasonCode.CERTIFICATE_REVOKED,
                f"证书 {name} 已于 {_fmt(status_at.revoked_at)} 被吊销（原因：{zh_reason}）",
                f"{name} was revoked at {_fmt(status_at.revoked_at)} (reason: {en_reason})",
                index,
            )
        elif status_at.status is RevocationStatus.ON_HOLD:
            add(
                ReasonCode.CERTIFICATE_ON_HOLD,
                f"证书 {name} 自 {_fmt(status_at.revoked_at)} 起处于冻结（暂停）状态",
                f"{name} has been on hold (suspended) since {_fmt(status_at.revoked_at)}",
                index,
            )
        elif status_at.status is RevocationStatus.UNKNOWN:
            add(
                ReasonCode.REVOCATION_UNKNOWN,
                f"无法获得证书 {name} 的吊销状态：{why}",
                f"no revocation information for {name}: {why}",
                index,
            )

    # --- revocation -----------------------------------------------------------------------------

    def _revocation(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        ours: bool,
        mode: RevocationCheck,
        at: datetime,
        now: datetime,
        locale: str,
        offline: bool = False,
        fp: str = "",
    ) -> tuple[RevocationReport, RevocationReport, tuple[Any, ...] | None, str]:
        """(status at ``at``, status now, our registry row for the leaf, why unknown)."""
        fp = fp or _fingerprint(cert)
        if fp in self._trust().ours:  # a CA of our own hierarchy: listed in our status store
            good = RevocationReport(RevocationStatus.GOOD, StatusSource.REGISTRY, status_time=now)
            return good, good, None, ""
        row: tuple[Any, ...] | None = None
        if ours:
            row = self._registry_row(fp, offline)
        tried: list[str] = []
        if ours and mode in (RevocationCheck.DEFAULT, RevocationCheck.REGISTRY):
            if row is not None:
                return (*_registry_status(row, at, now), row, "")
            tried.append(tr(locale, "本 CA 的状态库中没有该证书", "not in our CA's status store"))
        elif mode is RevocationCheck.REGISTRY:
            tried.append(tr(locale, "不是本 CA 签发的证书", "not issued by our CA"))
        if mode in (RevocationCheck.DEFAULT, RevocationCheck.OCSP):
            for url in _urls(cert, "ocsp"):
                remote = self._ocsp(cert, issuer, url, now, offline)
                if remote.report is not None:
                    return (*_remote_status(remote.report, at, now), row, "")
                tried.append(f"OCSP {url}: {remote.error}")
            if mode is RevocationCheck.OCSP and not tried:
                tried.append(tr(locale, "证书中没有 OCSP 地址", "no OCSP URL in the certificate"))
        if mode in (RevocationCheck.DEFAULT, RevocationCheck.CRL):
            for url in _urls(cert, "crl"):
                remote = self._crl_status(cert, issuer, url, now, offline)
                if remote.report is not None:
                    return (*_remote_status(remote.report, at, now), row, "")
                tried.append(f"CRL {url}: {remote.error}")
            if mode is RevocationCheck.CRL and not tried:
                tried.append(tr(locale, "证书中没有 CRL 分发点", "no CRL distribution point"))
        if not tried:
            tried.append(
                tr(
                    locale,
                    "证书中没有 OCSP 地址或 CRL 分发点",
                    "no OCSP URL or CRL distribution point",
                )
            )
        unknown = RevocationReport(RevocationStatus.UNKNOWN, StatusSource.NONE, status_time=now)
        return unknown, unknown, row, "; ".join(tried)

    def _registry_row(self, fingerprint: str, offline: bool) -> tuple[Any, ...] | None:
        """Our status store's row (with the identity), read fresh — or, only when configured
        (``status_cache_seconds`` > 0, an explicit trade-off), reused for that long. Offline
        checks read it too when it is a local SQLite file read (NeedsIo for a server)."""
        ttl = self.ctx.config.status_cache_seconds
        moment = time.monotonic()
        if ttl > 0:
            hit = self._rows.get(fingerprint)
            if hit is not None and moment - hit[1] < ttl:
                return hit[0]
        if offline and not self._reader.is_local:
            raise NeedsIo
        row = self._status(fingerprint)
        if ttl > 0:
            self._rows.put(fingerprint, (row, moment))
        return row

    def _ocsp(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        url: str,
        now: datetime,
        offline: bool = False,
    ) -> _Remote:
        key = ("ocsp", url, _fingerprint(issuer), str(cert.serial_number))
        cached = self._remote.get(key)
        if cached is not None and cached.expires > time.time():
            return cached
        if offline:
            raise NeedsIo
        result = self._fetch_ocsp(cert, issuer, url, now)
        self._remote.put(key, result)
        return result

    def _fetch_ocsp(
        self, cert: x509.Certificate, issuer: x509.Certificate, url: str, now: datetime
    ) -> _Remote:
        def failed(error: str) -> _Remote:
            return _Remote(None, error, time.time() + FAILURE_TTL_SECONDS)

        request = (
            ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303 - CertID hash per RFC 5019
        )
        request_der = request.public_bytes(Encoding.DER)
        # RFC 6960 A.1: GET (cacheable by proxies) when the encoded request is small, else POST
        encoded = urllib.parse.quote(base64.b64encode(request_der).decode("ascii"), safe="")
        get_url = f"{url.rstrip('/')}/{encoded}"
        try:
            if len(encoded) <= 255:
                body = self._fetch(get_url, None, self.ctx.config.fetch_timeout_seconds)
            else:
                body = self._fetch(url, request_der, self.ctx.config.fetch_timeout_seconds)
        except FetchError as exc:
            return failed(str(exc))
        try:
            response = ocsp.load_der_ocsp_response(body)
        except ValueError:
            return failed("the responder's answer is not an OCSP response")
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return failed(f"responder answered {response.response_status.name}")
        if not _ocsp_signed_by(response, issuer):
            return failed("the OCSP response is not signed by the issuer or its responder")
        single = next(
            (r for r in response.responses if r.serial_number == cert.serial_number), None
        )
        if single is None:
            return failed("the OCSP response is about another certificate")
        this_update = single.this_update_utc
        next_update = single.next_update_utc
        if next_update is not None and next_update < now:
            return failed(f"the OCSP response is stale (nextUpdate {_fmt(next_update)})")
        if this_update > now + timedelta(minutes=5):
            return failed("the OCSP response's thisUpdate lies in the future")
        status = single.certificate_status
        report: RevocationReport
        if status is ocsp.OCSPCertStatus.GOOD:
            report = RevocationReport(
                RevocationStatus.GOOD,
                StatusSource.OCSP,
                status_time=now,
                this_update=this_update,
                next_update=next_update,
            )
        elif status is ocsp.OCSPCertStatus.REVOKED:
            reason = (
                _X509_REASONS.get(single.revocation_reason, RevocationReasonCode.UNSPECIFIED)
                if single.revocation_reason
                else RevocationReasonCode.UNSPECIFIED
            )
            report = _revoked(
                reason,
                StatusSource.OCSP,
                status_time=now,
                revoked_at=single.revocation_time_utc,
                this_update=this_update,
                next_update=next_update,
            )
        else:
            return failed("the responder does not know the certificate (unknown)")
        expires = (next_update or (now + NO_NEXT_UPDATE_TTL)).timestamp()
        return _Remote(report, "", expires)

    def _crl_status(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        url: str,
        now: datetime,
        offline: bool = False,
    ) -> _Remote:
        key = ("crl-failure", url)
        failure = self._remote.get(key)
        if failure is not None and failure.expires > time.time():
            return failure
        entry = self._crls.get(url)
        if entry is None or entry[1] <= time.time():
            if offline:
                raise NeedsIo
            loaded = self._load_crl(url, issuer, now)
            if isinstance(loaded, str):
                result = _Remote(None, loaded, time.time() + FAILURE_TTL_SECONDS)
                self._remote.put(key, result)
                return result
            entry = loaded
            self._crls.put(url, entry)
        crl = entry[0]
        if crl.issuer != issuer.subject or not _crl_signed_by(crl, issuer):
            return _Remote(None, "the CRL is not signed by the issuer", time.time())
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        this_update, next_update = crl.last_update_utc, crl.next_update_utc
        if revoked is None:
            report = RevocationReport(
                RevocationStatus.GOOD,
                StatusSource.CRL,
                status_time=now,
                this_update=this_update,
                next_update=next_update,
            )
        else:
            reason = RevocationReasonCode.UNSPECIFIED
            invalidity: datetime | None = None
            for ext in revoked.extensions:
                if isinstance(ext.value, x509.CRLReason):
                    reason = _X509_REASONS.get(ext.value.reason, RevocationReasonCode.UNSPECIFIED)
                elif isinstance(ext.value, x509.InvalidityDate):
                    invalidity = ext.value.invalidity_date_utc
            report = _revoked(
                reason,
                StatusSource.CRL,
                status_time=now,
                revoked_at=revoked.revocation_date_utc,
                invalidity_date=invalidity,
                this_update=this_update,
                next_update=next_update,
            )
        return _Remote(report, "", entry[1])

    def _load_crl(
        self, url: str, issuer: x509.Certificate, now: datetime
    ) -> tuple[x509.CertificateRevocationList, float] | str:
        try:
            body = self._fetch(url, None, self.ctx.config.fetch_timeout_seconds)
        except FetchError as exc:
            return str(exc)
        try:
            crl = (
                x509.load_pem_x509_crl(body)
                if body.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_crl(body)
            )
        except ValueError:
            return "not a CRL"
        if crl.issuer != issuer.subject or not _crl_signed_by(crl, issuer):
            return "the CRL is not signed by the certificate's issuer"
        next_update = crl.next_update_utc
        if next_update is not None and next_update < now:
            return f"the CRL is stale (nextUpdate {_fmt(next_update)})"
        return crl, (next_update or (now + NO_NEXT_UPDATE_TTL)).timestamp()


# --- helpers ------------------------------------------------------------------------------------


class FetchError(Exception):
    """A revocation source could not be fetched (message says why)."""


def http_fetch(url: str, body: bytes | None, timeout: float) -> bytes:
    """GET (or POST an OCSP request to) ``url`` with a short timeout; FetchError on failure."""
    if not url.startswith(("http://", "https://")):
        raise FetchError("only http(s) URLs are fetched")
    headers = {"Content-Type": "application/ocsp-request"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            data: bytes = answer.read(MAX_FETCH_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"unreachable ({reason})") from None
    if len(data) > MAX_FETCH_BYTES:
        raise FetchError("answer too large")
    return data


def _fmt(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _failure(built: BuiltPath) -> tuple[ReasonCode, str, str, int] | None:
    """The reason (code, zh, en, index into the path) for a path's problem, or None."""
    if built.problem is None:
        return None
    name = built.certificates[built.index].subject.rfc4514_string()
    if built.problem is PathProblem.BAD_SIGNATURE:
        zh = f"证书 {name} 的签名无法用其签发者的公钥验证"
        en = f"the signature of {name} does not verify with its issuer's key"
    elif built.problem is PathProblem.NOT_CA:
        zh, en = f"签发者 {name} 不是 CA 证书", f"the issuer {name} is not a CA certificate"
    else:  # PathProblem.PATH_LENGTH
        zh, en = (
            f"CA {name} 的路径长度约束被违反",
            f"the path length constraint of {name} is violated",
        )
    return (ReasonCode.CHAIN_INVALID, zh, en, built.index)


def _with_profile(summary: CertificateSummary, profile: str) -> CertificateSummary:
    try:
        value = CertificateProfile(profile)
    except ValueError:
        return summary
    return CertificateSummary(**{**summary.__dict__, "profile": value})


def _urls(cert: x509.Certificate, kind: str) -> list[str]:
    urls: list[str] = []
    try:
        if kind == "ocsp":
            aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            urls = [
                d.access_location.value
                for d in aia
                if d.access_method == AuthorityInformationAccessOID.OCSP
                and isinstance(d.access_location, x509.UniformResourceIdentifier)
            ]
        else:
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            for point in cdp:
                for name in point.full_name or ():
                    if isinstance(name, x509.UniformResourceIdentifier):
                        urls.append(name.value)
    except x509.ExtensionNotFound:
        return []
    return [u for u in urls if u.startswith(("http://", "https://"))][:3]


def _ocsp_signed_by(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
    """The response is signed by the issuer itself or by a responder it delegated to."""
    signers: list[x509.Certificate] = [issuer]
    for cert in response.certificates:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        if not signed_by(cert, issuer):
            continue
        signers.append(cert)
    for signer in signers:
        if response.responder_name is not None and response.responder_name != signer.subject:
            continue
        if response.responder_key_hash is not None:
            digest = x509.SubjectKeyIdentifier.from_public_key(signer.public_key()).digest
            if digest != response.responder_key_hash:
                continue
        if signature_verifies(
            signer.public_key(),
            response.signature,
            response.tbs_response_bytes,
            response.signature_hash_algorithm,
        ):
            return True
    return False


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    return signature_verifies(
        issuer.public_key(), crl.signature, crl.tbs_certlist_bytes, crl.signature_hash_algorithm
    )


def _registry_status(
    row: tuple[Any, ...], at: datetime, now: datetime
) -> tuple[RevocationReport, RevocationReport]:
    status = row[2]
    revoked_at = _aware(row[3])
    reason_code = row[4]
    invalidity = _aware(row[5])
    changed_at = _aware(row[6])
    good_at = RevocationReport(RevocationStatus.GOOD, StatusSource.REGISTRY, status_time=at)
    if status == "revoked":
        try:
            reason = RevocationReasonCode(int(reason_code or 0))
        except ValueError:
            reason = RevocationReasonCode.UNSPECIFIED
        effective = revoked_at or changed_at or now
        if invalidity is not None and invalidity < effective:
            effective = invalidity  # the compromise began earlier: judge from then
        revoked_now = RevocationReport(
            RevocationStatus.REVOKED,
            StatusSource.REGISTRY,
            status_time=now,
            revoked_at=revoked_at or effective,
            reason=reason,
            invalidity_date=invalidity,
        )
        at_report = (
            RevocationReport(
                RevocationStatus.REVOKED,
                StatusSource.REGISTRY,
                status_time=at,
                revoked_at=revoked_at or effective,
                reason=reason,
                invalidity_date=invalidity,
            )
            if effective <= at
            else good_at
        )
        return at_report, revoked_now
    if status == "suspended":
        since = changed_at or revoked_at or now
        hold_now = RevocationReport(
            RevocationStatus.ON_HOLD,
            StatusSource.REGISTRY,
            status_time=now,
            revoked_at=since,
            reason=RevocationReasonCode.CERTIFICATE_HOLD,
        )
        hold_at = (
            RevocationReport(
                RevocationStatus.ON_HOLD,
                StatusSource.REGISTRY,
                status_time=at,
                revoked_at=since,
                reason=RevocationReasonCode.CERTIFICATE_HOLD,
            )
            if since <= at
            else good_at
        )
        return hold_at, hold_now
    return good_at, RevocationReport(RevocationStatus.GOOD, StatusSource.REGISTRY, status_time=now)


def _remote_status(
    report: RevocationReport, at: datetime, now: datetime
) -> tuple[RevocationReport, RevocationReport]:
    current = RevocationReport(**{**report.__dict__, "status_time": now})
    if report.status is RevocationStatus.GOOD:
        return RevocationReport(**{**report.__dict__, "status_time": at}), current
    effective = report.revoked_at or now
    if report.invalidity_date is not None and report.invalidity_date < effective:
        effective = report.invalidity_date
    if effective <= at:
        return RevocationReport(**{**report.__dict__, "status_time": at}), current
    good = RevocationReport(
        RevocationStatus.GOOD,
        report.source,
        status_time=at,
        this_update=report.this_update,
        next_update=report.next_update,
    )
    return good, current


def _identity_of(row: tuple[Any, ...]) -> tuple[IdentitySummary | None, str]:
    seal_id = row[8] or ""
    if row[10] is None:
        return None, seal_id
    try:
        identity = IdentitySummary(
            id=row[10],
            kind=IdentityKind(row[11]),
            display_name=row[12],
            masked_identifier=row[13],
            status=IdentityStatus(row[14]),
            assurance_level=int(row[15] or 0),
        )
    except ValueError:
        return None, seal_id
    return identity, seal_id


def seal_id_of(cert: x509.Certificate, oid_arc: str) -> str:
    """The seal id carried in a seal certificate's extension ('' when none)."""
    from asn1crypto import core

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(f"{oid_arc}.3.1"))
    except x509.ExtensionNotFound:
        return ""
    raw = ext.value
    if not isinstance(raw, x509.UnrecognizedExtension):
        return ""
    try:
        return str(core.IA5String.load(raw.value).native)
    except (ValueError, TypeError):
        return ""


@dataclass(frozen=True)
class NamedIdentity:
    """The identity a certificate names, from its own fields (registry or not)."""

    kind: str  # citizen | legal-person | seal | service | ""
    identifier: str  # resident ID number, USCC, seal id or system id
    name: str


def named_identity(cert: x509.Certificate, oid_arc: str) -> NamedIdentity:
    """Citizen (serialNumber ``IDCCN-`` or GM/T 0015 IdentifyCode), legal person
    (organizationIdentifier ``NTRCN-``), seal (seal id extension) or service (CN)."""
    subject = cert.subject
    cn = _attr(subject, NameOID.COMMON_NAME)
    seal_id = seal_id_of(cert, oid_arc)
    org_id = _attr(subject, ORGANIZATION_IDENTIFIER_OID)
    if seal_id:
        return NamedIdentity("seal", seal_id, cn)
    serial = _attr(subject, NameOID.SERIAL_NUMBER)
    if serial.startswith("IDCCN-"):
        return NamedIdentity("citizen", serial.removeprefix("IDCCN-"), cn)
    code = _identify_code(cert)
    if code:
        return NamedIdentity("citizen", code, cn)
    if org_id.startswith("NTRCN-"):
        return NamedIdentity("legal-person", org_id.removeprefix("NTRCN-"), cn)
    return NamedIdentity("service" if cn else "", cn, cn)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _identify_code(cert: x509.Certificate) -> str:
    from asn1crypto import core

    try:
        ext = cert.extensions.get_extension_for_oid(IDENTIFY_CODE_OID)
    except x509.ExtensionNotFound:
        return ""
    raw = ext.value
    if not isinstance(raw, x509.UnrecognizedExtension):
        return ""
    try:
        parsed = core.Asn1Value.load(raw.value)
        if parsed.tag == 0:  # [0] residenterCardNumber, EXPLICIT or IMPLICIT
            contents = parsed.contents
            if parsed.method == 1:  # constructed: EXPLICIT wrapping a PrintableString
                return str(core.PrintableString.load(contents).native)
            return str(contents.decode("ascii"))
    except (ValueError, TypeError, UnicodeDecodeError):
        return ""
    return ""


def purpose_problem(
    cert: x509.Certificate, purpose: CertificatePurpose, oid_arc: str
) -> tuple[str, str] | None:
    """Why key usage / EKU do not allow ``purpose`` (zh, en), or None when they do."""
    try:
        ku: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    try:
        eku_ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        eku: set[x509.ObjectIdentifier] | None = set(eku_ext.value)
        eku_critical = eku_ext.critical
    except x509.ExtensionNotFound:
        eku, eku_critical = None, False
    anyeku = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

    def has_eku(*wanted: x509.ObjectIdentifier) -> bool:
        return eku is None or anyeku in eku or any(w in eku for w in wanted)

    label = purpose.value.replace("_", " ")
    if purpose is CertificatePurpose.CLIENT_AUTH:
        ok = (ku is None or ku.digital_signature or ku.key_agreement) and has_eku(
            ExtendedKeyUsageOID.CLIENT_AUTH
        )
    elif purpose is CertificatePurpose.SERVER_AUTH:
        ok = (
            ku is None or ku.digital_signature or ku.key_encipherment or ku.key_agreement
        ) and has_eku(ExtendedKeyUsageOID.SERVER_AUTH)
    elif purpose in (CertificatePurpose.DOCUMENT_SIGNING, CertificatePurpose.SEAL):
        ok = (ku is None or (ku.digital_signature and ku.content_commitment)) and (
            eku is None or anyeku in eku or not eku <= _TLS_ONLY_EKUS
        )
        if ok and purpose is CertificatePurpose.SEAL and not seal_id_of(cert, oid_arc):
            return (
                "证书不是电子印章证书（缺少印章标识扩展）",
                "not an e-seal certificate (no seal id extension)",
            )
    elif purpose is CertificatePurpose.TIME_STAMPING:
        ok = eku == {ExtendedKeyUsageOID.TIME_STAMPING} and eku_critical
    else:  # OCSP signing
        ok = (
            (ku is None or ku.digital_signature)
            and eku is not None
            and (ExtendedKeyUsageOID.OCSP_SIGNING in eku)
        )
    if ok:
        return None
    usage = _usage_text(ku, eku)
    return (
        f"密钥用途 / 扩展密钥用途（{usage}）不允许用于 {label}",
        f"key usage / extended key usage ({usage}) do not allow {label}",
    )


def _usage_text(ku: x509.KeyUsage | None, eku: Iterable[x509.ObjectIdentifier] | None) -> str:
    parts: list[str] = []
    if ku is not None:
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ):
            if getattr(ku, name):
                parts.append(name)
    if eku is not None:
        parts += [getattr(o, "_name", o.dotted_string) for o in eku]
    return ", ".join(parts) or "-"


# --- the RPC's domain function -----------------------------------------------------------------


def verify_certificate(
    ctx: VerifyContext, principal: Principal, check: CertificateCheck, *, offline: bool = False
) -> Verified:
    """VerifyCertificate: validate, report, sign when asked, audit (role ``verifier``).

    A check whose outcome was settled before (see :class:`Settled`: same certificate,
    intermediates, purpose, revocation mode and locale, same trust material, the validation
    time within the path's validity, and our status store's row — read again now — unchanged)
    reuses that report with this call's id, times and reference; anything else is checked in
    full. With ``offline``, :class:`NeedsIo` when the check (or signing the report) would touch
    a remote database or the network; nothing has been recorded then."""
    principal.require_role("verifier")
    options = check.options
    if offline and options.report_format is ReportFormat.SIGNED_JSON:
        raise NeedsIo  # the key store may be remote (HSM)
    verifier = ctx.certificates
    now = ctx.now()
    at = check.at_time or now
    locale = options.locale
    key = settled_key(check, locale)
    recalled = verifier.recall(key, at, offline)
    if recalled is not None:
        settled = recalled[0]
        template: VerificationReport = settled.template
        return ctx.complete(
            principal,
            "certificate",
            restamp_certificate_report(template, settled.needs_row, now, at, options.reference),
            options,
            extra={"fingerprint": settled.fingerprint},
            template=template,
        )
    cert, der = load_certificate(check.certificate)
    report, settles = verifier.check(
        cert,
        intermediates=check.intermediates,
        at=at,
        purpose=check.purpose,
        revocation=check.revocation_check,
        locale=locale,
        now=now,
        offline=offline,
    )
    warnings: list[Reason] = []
    current = report.revocation_now
    at_time = report.revocation_at_validation_time
    if (
        current is not None
        and at_time is not None
        and current.status in (RevocationStatus.REVOKED, RevocationStatus.ON_HOLD)
        and at_time.status is RevocationStatus.GOOD
    ):
        warnings.append(
            Reason(
                ReasonCode.CERTIFICATE_REVOKED
                if current.status is RevocationStatus.REVOKED
                else ReasonCode.CERTIFICATE_ON_HOLD,
                tr(
                    locale,
                    f"证书在验证时间之后（{_fmt(current.revoked_at)}）被吊销或冻结",
                    f"the certificate was revoked or put on hold after the validation time "
                    f"(at {_fmt(current.revoked_at)})",
                ),
                "certificate",
            )
        )
    result = build_report(
        evidence_kind=EvidenceKind.CERTIFICATE,
        evidence=der,
        options=options,
        checked_at=now,
        validation_time=report.validation_time,
        certificate=report,
        warnings=warnings,
    )
    if settles is not None and not warnings:
        verifier.remember(key, dataclasses.replace(settles, template=result))
    return ctx.complete(
        principal,
        "certificate",
        result,
        options,
        extra={"fingerprint": hashlib.sha256(der).hexdigest()},
    )


def settled_key(check: CertificateCheck, locale: str) -> tuple[Any, ...]:
    """The key a settled check is remembered under: SHA-256 of the certificate as supplied,
    one SHA-256 over the supplied intermediates' SHA-256s (in order: the first candidate that
    links is the one a path takes), the purpose, the revocation mode and the locale.

    Digests, never the bytes: a request may carry up to 16 intermediates of 64 KB that the path
    never uses, and a key holding them would make every entry of the cache that large. The
    digests are of the bytes as supplied (DER or PEM), so finding an entry parses nothing;
    equal bytes always give the same check, and the same certificate sent in another encoding
    is merely another (small) entry. A key is about 300 bytes whatever the request's size."""
    chained = hashlib.sha256()
    for item in check.intermediates:
        chained.update(hashlib.sha256(item).digest())  # fixed-size parts: no ambiguity
    return (
        hashlib.sha256(check.certificate).digest(),
        len(check.intermediates),
        chained.digest(),
        check.purpose,
        check.revocation_check,
        locale,
    )


def restamp_certificate_report(
    template: VerificationReport,
    leaf_from_store: bool,
    now: datetime,
    at: datetime,
    reference: str,
) -> VerificationReport:
    """A settled report (see :class:`Settled`) for a new call: a fresh report id, this call's
    check and validation times and reference; the statuses — good, from our own store — dated
    as a full check dates them (the leaf's at the validation time when read from the store, our
    CAs' now)."""
    cert = template.certificate
    assert cert is not None
    good_now = RevocationReport(RevocationStatus.GOOD, StatusSource.REGISTRY, status_time=now)
    good_at = (
        RevocationReport(RevocationStatus.GOOD, StatusSource.REGISTRY, status_time=at)
        if leaf_from_store
        else good_now
    )
    has_status = cert.revocation_at_validation_time is not None
    return restamped(
        template,
        report_id=new_report_id(),
        checked_at=now,
        validation_time=at,
        reference=reference,
        certificate=restamped(
            cert,
            validation_time=at,
            revocation_at_validation_time=good_at if has_status else None,
            revocation_now=good_now if has_status else None,
        ),
    )
