"""gRPC adapter of ``govtrust.v1.CertificateService`` over the certificate authority.

Thin by design: each method converts the request into domain values, calls the authority with the
call's principal in the ``run_sync`` pool, and converts the result; domain errors propagate to the
platform interceptor, which maps them to status codes. Authorisation lives in the domain:
issuing and status changes need ``ca-operator`` (seal roles for seal certificates); reads need
``verifier``, an issuing role, or the certificate's own subject; the CA chain and CRLs are public.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509 as cx

from ca.authority import CertificateAuthority, ListFilter, authority_for, effective_status
from ca.crl import CrlInfo
from ca.hierarchy import Issuer
from ca.intake import IssueIntake
from ca.issuance import Issued, IssueRequest, Prepared, ServiceSubject, SubjectSpec
from ca.records import CertificateRecord
from ca.recovery import Recovery
from govtrust.audit import ClaimEffect
from govtrust.db import as_utc
from govtrust.errors import InvalidArgument
from govtrust.rpc.answers import acted_on, rebuilt_from
from govtrust.rpc.context import current_principal
from govtrust.rpc.convert import time_in, timestamp_pb
from govtrust.rpc.offload import driven_inline, run_sync, wait_for_future
from govtrust.v1 import certificate_pb2, certificate_pb2_grpc, common_pb2
from hsm.keystore import KeyRef

if TYPE_CHECKING:
    from govtrust.platform import Platform

PROFILES: dict[int, str] = {
    common_pb2.CERTIFICATE_PROFILE_CITIZEN: "citizen",
    common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON: "legal-person",
    common_pb2.CERTIFICATE_PROFILE_SEAL: "seal",
    common_pb2.CERTIFICATE_PROFILE_SERVICE: "service",
}
PROFILE_ENUMS: dict[str, common_pb2.CertificateProfile.ValueType] = {
    **{name: common_pb2.CertificateProfile.ValueType(value) for value, name in PROFILES.items()},
    # shown, never requested: encryption certificates come only from IssueEncryptionPair
    "citizen-encryption": common_pb2.CERTIFICATE_PROFILE_CITIZEN_ENCRYPTION,
    "legal-person-encryption": common_pb2.CERTIFICATE_PROFILE_LEGAL_PERSON_ENCRYPTION,
}
ROLE_ENUMS = {
    "root": common_pb2.CERTIFICATE_PROFILE_ROOT_CA,
    "issuing": common_pb2.CERTIFICATE_PROFILE_ISSUING_CA,
    "ocsp": common_pb2.CERTIFICATE_PROFILE_OCSP_RESPONDER,
    "tsa": common_pb2.CERTIFICATE_PROFILE_TSA,
}
KEY_ALGORITHMS: dict[int, str] = {
    common_pb2.KEY_ALGORITHM_EC_P256: "ec-p256",
    common_pb2.KEY_ALGORITHM_EC_P384: "ec-p384",
    common_pb2.KEY_ALGORITHM_RSA_2048: "rsa-2048",
    common_pb2.KEY_ALGORITHM_RSA_3072: "rsa-3072",
    common_pb2.KEY_ALGORITHM_SM2: "sm2",
}
KEY_ALGORITHM_ENUMS: dict[str, common_pb2.KeyAlgorithm.ValueType] = {
    name: common_pb2.KeyAlgorithm.ValueType(value) for value, name in KEY_ALGORITHMS.items()
}
STATUS_ENUMS = {
    "active": certificate_pb2.CERTIFICATE_STATUS_ACTIVE,
    "suspended": certificate_pb2.CERTIFICATE_STATUS_SUSPENDED,
    "revoked": certificate_pb2.CERTIFICATE_STATUS_REVOKED,
    "expired": certificate_pb2.CERTIFICATE_STATUS_EXPIRED,
}
STATUS_NAMES: dict[int, str] = {value: name for name, value in STATUS_ENUMS.items()}
KIND_ENUMS = {
    "citizen": common_pb2.IDENTITY_KIND_CITIZEN,
    "legal-person": common_pb2.IDENTITY_KIND_LEGAL_PERSON,
    "seal": common_pb2.IDENTITY_KIND_LEGAL_PERSON,
}


# --- conversions ------------------------------------------------------------------------------


def profile_in(value: int, field: str = "profile") -> str:
    """The domain profile name of a ``CertificateProfile`` (end-entity profiles only)."""
    try:
        return PROFILES[value]
    except KeyError:
        raise InvalidArgument.field(
            field, "choose citizen, legal-person, seal or service"
        ) from None


def _identity_ref(message: common_pb2.IdentityRef, field: str) -> str:
    which = message.WhichOneof("ref")
    if which in ("id", "resident_id_number", "uscc"):
        value: str = getattr(message, which)
        if value:
            return value
    raise InvalidArgument.field(field, "give an identity id, resident ID number or USCC")


def subject_in(message: certificate_pb2.CertificateSubject) -> SubjectSpec:
    """The domain subject of a ``CertificateSubject``."""
    which = message.WhichOneof("subject")
    if which == "identity":
        return SubjectSpec(identity=_identity_ref(message.identity, "subject.identity"))
    if which == "seal_id":
        return SubjectSpec(seal_id=message.seal_id)
    if which == "service":
        service = message.service
        return SubjectSpec(
            service=ServiceSubject(
                service.system_id, tuple(service.dns_names), tuple(service.ip_addresses)
            )
        )
    raise InvalidArgument.field("subject", "give an identity, a seal_id or a service")


def _key_algorithm_in(value: int, field: str) -> str | None:
    if value == common_pb2.KEY_ALGORITHM_UNSPECIFIED:
        return None
    try:
        return KEY_ALGORITHMS[value]
    except KeyError:
        raise InvalidArgument.field(
            field, "this key store cannot generate that algorithm"
        ) from None


def _applicant_in(message: Any) -> str | None:
    if not message.HasField("applicant"):
        return None
    return _identity_ref(message.applicant, "applicant")


def summary_pb(
    der: bytes, *, profile: str = "", issuer_ca: str = ""
) -> common_pb2.CertificateSummary:
    """A ``CertificateSummary`` of a DER certificate."""
    cert = cx.load_der_x509_certificate(der)
    from cryptography.hazmat.primitives import hashes

    return common_pb2.CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=f"{cert.serial_number:X}",
        not_before=timestamp_pb(cert.not_valid_before_utc),
        not_after=timestamp_pb(cert.not_valid_after_utc),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        profile=PROFILE_ENUMS.get(profile, common_pb2.CERTIFICATE_PROFILE_UNSPECIFIED),
        issuer_ca=issuer_ca,
        der=der,
    )


def key_pb(ref: KeyRef | None) -> certificate_pb2.KeyReference | None:
    """A key reference (never key material)."""
    if ref is None:
        return None
    return certificate_pb2.KeyReference(
        key_id=ref.key_id,
        algorithm=KEY_ALGORITHM_ENUMS.get(
            ref.algorithm.value, common_pb2.KEY_ALGORITHM_UNSPECIFIED
        ),
        public_key=ref.public_key_der,
    )


_issuer_texts: dict[bytes, str] = {}


def _tlv_end(data: bytes, start: int) -> tuple[int, int]:
    """(start of contents, end) of the DER element at ``start``."""
    length = data[start + 1]
    offset = start + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    return offset, offset + length


def _issuer_name_der(tbs: bytes) -> bytes:
    """The issuer Name's DER inside a TBSCertificate (version, serial, signature, issuer)."""
    position, _ = _tlv_end(tbs, 0)  # into the TBSCertificate SEQUENCE
    if tbs[position] == 0xA0:  # [0] version
        position = _tlv_end(tbs, position)[1]
    position = _tlv_end(tbs, position)[1]  # serialNumber
    position = _tlv_end(tbs, position)[1]  # signature AlgorithmIdentifier
    return tbs[position : _tlv_end(tbs, position)[1]]


def _fill_summary(target: common_pb2.CertificateSummary, row: CertificateRecord) -> None:
    """``summary_pb(row.der, ...)`` written in place: the names are read from the DER, the
    rest comes from the row, which holds the same values (serial, validity, fingerprint) —
    no second fingerprint, no message copy."""
    cert = cx.load_der_x509_certificate(row.der)
    target.subject = cert.subject.rfc4514_string()
    issuer_der = _issuer_name_der(cert.tbs_certificate_bytes)
    issuer = _issuer_texts.get(issuer_der)
    if issuer is None:  # a handful of issuers: format each name once per process
        issuer = cert.issuer.rfc4514_string()
        if len(_issuer_texts) < 256:
            _issuer_texts[issuer_der] = issuer
    target.issuer = issuer
    target.serial_number = row.serial
    target.not_before.FromDatetime(as_utc(row.not_before))
    target.not_after.FromDatetime(as_utc(row.not_after))
    target.fingerprint_sha256 = row.fingerprint_sha256
    target.profile = PROFILE_ENUMS.get(row.profile, common_pb2.CERTIFICATE_PROFILE_UNSPECIFIED)
    target.issuer_ca = row.issuer
    target.der = row.der


def certificate_pb(
    row: CertificateRecord, key: KeyRef | None = None
) -> certificate_pb2.Certificate:
    """The ``Certificate`` message of a stored certificate."""
    message = certificate_pb2.Certificate(
        status=STATUS_ENUMS[effective_status(row)],
        seal_id=row.seal_id or "",
        system_id=row.system_id or "",
        key_algorithm=KEY_ALGORITHM_ENUMS.get(
            row.key_algorithm, common_pb2.KEY_ALGORITHM_UNSPECIFIED
        ),
        revocation_reason=common_pb2.RevocationReason.ValueType(row.revocation_reason or 0),
        status_comment=row.status_comment or "",
    )
    _fill_summary(message.summary, row)
    message.issued_at.FromDatetime(as_utc(row.issued_at))
    if row.revoked_at is not None:
        message.revoked_at.FromDatetime(as_utc(row.revoked_at))
    if row.invalidity_date is not None:
        message.invalidity_date.FromDatetime(as_utc(row.invalidity_date))
    if row.identity_id:
        message.identity.id = row.identity_id
        message.identity.kind = KIND_ENUMS.get(
            row.subject_kind, common_pb2.IDENTITY_KIND_UNSPECIFIED
        )
    reference = key_pb(key)
    if reference is not None:
        message.key.CopyFrom(reference)
    elif row.key_id:
        message.key.key_id = row.key_id
    return message


@functools.lru_cache(maxsize=64)
def _ca_summary_pb(der: bytes, issuer_ca: str) -> common_pb2.CertificateSummary:
    # CA certificates are few and never change: parse and format each once per process.
    # Callers copy the message into theirs (repeated-field construction copies).
    return summary_pb(der, issuer_ca=issuer_ca)


def chain_pb(authority: CertificateAuthority, ca: str) -> list[common_pb2.CertificateSummary]:
    """The issuing chain of ``ca`` (issuing CA first, root last)."""
    return [_ca_summary_pb(i.der, i.parent or "") for i in authority.issuing_chain(ca)]


def ca_certificate_pb(
    authority: CertificateAuthority, issuer: Issuer
) -> certificate_pb2.CaCertificate:
    """A ``CaCertificate`` of our hierarchy."""
    config = authority.ctx.config
    is_ca = issuer.role in ("root", "issuing")
    return certificate_pb2.CaCertificate(
        name=issuer.name,
        role=ROLE_ENUMS[issuer.role],
        certificate=summary_pb(issuer.der, issuer_ca=issuer.parent or ""),
        parent=issuer.parent or "",
        crl_url=config.crl_url(issuer.name) if is_ca else "",
        ocsp_url=config.ocsp_url() if issuer.role == "issuing" else "",
    )


def crl_pb(info: CrlInfo) -> certificate_pb2.GetCrlResponse:
    """A ``GetCrlResponse``."""
    return certificate_pb2.GetCrlResponse(
        crl=info.der,
        crl_number=info.crl_number,
        base_crl_number=info.base_crl_number or 0,
        this_update=timestamp_pb(info.this_update),
        next_update=timestamp_pb(info.next_update),
        entry_count=info.entry_count,
    )


class _LoopInbox:
    """Results posted from other threads, delivered to their futures on one event loop with
    one wake-up per burst (``call_soon_threadsafe`` only when none is pending)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: list[tuple[asyncio.Future[Prepared], Prepared | None, BaseException | None]]
        self._items = []
        self._lock = threading.Lock()
        self._scheduled = False

    def post(
        self,
        future: asyncio.Future[Prepared],
        value: Prepared | None,
        error: BaseException | None,
    ) -> None:
        with self._lock:
            self._items.append((future, value, error))
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for future, value, error in items:
            if future.done():  # the call was cancelled meanwhile
                continue
            if error is not None:
                future.set_exception(error)
            else:
                assert value is not None
                future.set_result(value)


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopInbox] = (
    weakref.WeakKeyDictionary()
)


def issued_on_loop(intake: IssueIntake, prepare: Callable[[], Prepared]) -> Awaitable[Prepared]:
    """Hand ``prepare`` to the CA's intake; the future resolves on the running loop once the
    certificate is committed (or fails with the error that stopped it). Driven inline (the
    synchronous transport), the wait blocks the call's own thread instead."""
    if driven_inline():
        waited: Future[Prepared] = Future()

        def settle(prepared: Prepared | None, error: BaseException | None) -> None:
            if error is not None:
                waited.set_exception(error)
            else:
                waited.set_result(prepared)  # type: ignore[arg-type]

        intake.submit(prepare, settle)
        return wait_for_future(waited)
    loop = asyncio.get_running_loop()
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = _LoopInbox(loop)
    future: asyncio.Future[Prepared] = loop.create_future()

    def done(prepared: Prepared | None, error: BaseException | None) -> None:
        inbox.post(future, prepared, error)

    intake.submit(prepare, done)
    return future


# --- answers rebuilt from a recorded effect (govtrust.rpc.answers) -------------------------------


def _acted_on(
    servicer: CertificateServicer, effects: Sequence[ClaimEffect], action: str
) -> CertificateRecord | None:
    """The certificate (as it stands now) the one ``action`` among ``effects`` acted on."""
    target = acted_on(effects, action, "certificate/")
    if target is None:
        return None
    return servicer._ca().find(serial=target.rpartition("/")[2])


def _issued_again(
    servicer: CertificateServicer, effects: Sequence[ClaimEffect]
) -> certificate_pb2.IssueCertificateResponse | None:
    row = _acted_on(servicer, effects, "ca.issue")
    if row is None:
        return None
    return certificate_pb2.IssueCertificateResponse(
        certificate=certificate_pb(row), chain=chain_pb(servicer._ca(), row.issuer)
    )


def _key_of(servicer: CertificateServicer, row: CertificateRecord) -> KeyRef | None:
    """The reference of a certificate's key generated in the key store (None for a CSR's)."""
    return servicer._ca().ctx.keystore.get(row.key_id) if row.key_id else None


def _generated_again(
    servicer: CertificateServicer, effects: Sequence[ClaimEffect]
) -> certificate_pb2.GenerateKeyAndIssueResponse | None:
    row = _acted_on(servicer, effects, "ca.issue")
    key = None if row is None else _key_of(servicer, row)
    if row is None or key is None:
        return None
    return certificate_pb2.GenerateKeyAndIssueResponse(
        certificate=certificate_pb(row, key),
        key=key_pb(key),
        chain=chain_pb(servicer._ca(), row.issuer),
    )


def _renewed_again(
    servicer: CertificateServicer, effects: Sequence[ClaimEffect]
) -> certificate_pb2.RenewCertificateResponse | None:
    """A lost renewal's answer: the new certificate and the previous one — not when the renewal
    also made an encryption pair (its key envelope is not stored)."""
    row = _acted_on(servicer, effects, "ca.renew")
    if row is None or row.paired_with is not None or row.renewed_from is None:
        return None
    key = _key_of(servicer, row)
    return certificate_pb2.RenewCertificateResponse(
        certificate=certificate_pb(row, key),
        key=key_pb(key),
        previous=certificate_pb(servicer._ca().get(row.renewed_from)),
    )


def _status_again(action: str, response: Callable[..., Any]) -> Callable[..., Any]:
    """The rebuilder of a status change: the certificate after it (None when the change also
    moved its paired certificate: two effects of ``action``, which one was asked is unknown)."""

    def rebuild(servicer: CertificateServicer, effects: Sequence[ClaimEffect]) -> Any:
        row = _acted_on(servicer, effects, action)
        return None if row is None else response(certificate=certificate_pb(row))

    return rebuild


def _recovery_after(action: str, response: Callable[..., Any]) -> Callable[..., Any]:
    """The rebuilder of a key recovery step's lost answer: ``response`` with the recovery its
    one ``action`` record names, as it stands now (read as the caller). Not for delivery: its
    answer is the key envelope, which is never stored."""

    def rebuild(servicer: CertificateServicer, effects: Sequence[ClaimEffect]) -> Any:
        recovery_id = acted_on(effects, action, "key-recovery/")
        if recovery_id is None:
            return None
        found = servicer._ca().key_recovery(current_principal(), recovery_id)
        return response(recovery=key_recovery_pb(found))

    return rebuild


# --- the servicer -----------------------------------------------------------------------------


class CertificateServicer(certificate_pb2_grpc.CertificateServiceServicer):
    """``govtrust.v1.CertificateService`` over the process's certificate authority."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._authority: CertificateAuthority | None = None

    def _ca(self) -> CertificateAuthority:
        if self._authority is None:
            self._authority = authority_for(self._platform)
        return self._authority

    def _find(self, ref: certificate_pb2.CertificateRef) -> CertificateRecord:
        which = ref.WhichOneof("ref")
        if which == "serial_number":
            return self._ca().find(serial=ref.serial_number)
        if which == "fingerprint_sha256":
            return self._ca().find(fingerprint=ref.fingerprint_sha256)
        raise InvalidArgument.field("certificate", "give a serial number or a fingerprint")

    @rebuilt_from(_issued_again)
    async def IssueCertificate(
        self,
        request: certificate_pb2.IssueCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.IssueCertificateResponse:
        principal = current_principal()
        authority = self._authority
        if authority is None:  # opened (bootstrapped) off the event loop, once
            authority = await run_sync(self._ca)

        def prepare() -> Prepared:
            if not request.csr:
                raise InvalidArgument.field(
                    "csr", "is empty (use GenerateKeyAndIssue for keys generated in the key store)"
                )
            domain = IssueRequest(
                profile=profile_in(request.profile),
                subject=subject_in(request.subject),
                csr=request.csr,
                validity_days=request.validity_days,
                hash_identity_number=request.hash_identity_number,
                applicant=_applicant_in(request),
            )
            return authority.prepare_issue(principal, domain)

        # Checked, built and signed by the CA's intake threads, then group-committed; the
        # future resolves only once the certificate is stored (see ca.intake). A commit whose
        # outcome could not be learnt fails with CommitOutcomeUnknown: UNAVAILABLE.
        prepared = await issued_on_loop(authority.ctx.intake, prepare)
        issued = prepared.finish(authority.ctx)  # publishes the OCSP response to the cache
        return certificate_pb2.IssueCertificateResponse(
            certificate=certificate_pb(issued.certificate),
            chain=chain_pb(authority, issued.certificate.issuer),
        )

    @rebuilt_from(_generated_again)
    async def GenerateKeyAndIssue(
        self,
        request: certificate_pb2.GenerateKeyAndIssueRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.GenerateKeyAndIssueResponse:
        principal = current_principal()

        def run() -> certificate_pb2.GenerateKeyAndIssueResponse:
            profile = profile_in(request.profile)
            algorithm = _key_algorithm_in(request.key_algorithm, "key_algorithm")
            domain = IssueRequest(
                profile=profile,
                subject=subject_in(request.subject),
                generate_key_algorithm=algorithm,
                validity_days=request.validity_days,
                hash_identity_number=request.hash_identity_number,
                applicant=_applicant_in(request),
            )
            issued: Issued = self._ca().issue(principal, domain)
            return certificate_pb2.GenerateKeyAndIssueResponse(
                certificate=certificate_pb(issued.certificate, issued.key),
                key=key_pb(issued.key),
                chain=chain_pb(self._ca(), issued.certificate.issuer),
            )

        return await run_sync(run)

    @rebuilt_from(_renewed_again)
    async def RenewCertificate(
        self,
        request: certificate_pb2.RenewCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.RenewCertificateResponse:
        principal = current_principal()

        def run() -> certificate_pb2.RenewCertificateResponse:
            previous = self._find(request.certificate)
            which = request.WhichOneof("new_key")
            csr = request.csr if which == "csr" else None
            algorithm = (
                _key_algorithm_in(request.generate_key_algorithm, "generate_key_algorithm")
                if which == "generate_key_algorithm"
                else None
            )
            if which == "generate_key_algorithm" and algorithm is None:
                raise InvalidArgument.field("generate_key_algorithm", "choose an algorithm")
            issued = self._ca().renew(
                principal,
                previous,
                csr=csr,
                generate_key_algorithm=algorithm,
                validity_days=request.validity_days,
                revoke_previous=request.revoke_previous,
            )
            response = certificate_pb2.RenewCertificateResponse(
                certificate=certificate_pb(issued.certificate, issued.key),
                key=key_pb(issued.key),
                previous=certificate_pb(self._ca().get(previous.id)),
            )
            if issued.encryption is not None:
                pair = issued.encryption
                response.certificate.paired_serial_number = pair.encryption.serial
                response.encryption_certificate.CopyFrom(_paired_pb(pair.encryption, pair.signing))
                response.key_envelope = pair.envelope
            return response

        return await run_sync(run)

    async def GetCertificate(
        self,
        request: certificate_pb2.GetCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.GetCertificateResponse:
        principal = current_principal()

        def run() -> certificate_pb2.GetCertificateResponse:
            row = self._find(request.certificate)
            self._ca().authorise_read(principal, row)
            message = certificate_pb(row)
            if row.paired_with is not None:
                message.paired_serial_number = self._ca().get(row.paired_with).serial
            return certificate_pb2.GetCertificateResponse(
                certificate=message, chain=chain_pb(self._ca(), row.issuer)
            )

        return await run_sync(run)

    async def ListCertificates(
        self,
        request: certificate_pb2.ListCertificatesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.ListCertificatesResponse:
        principal = current_principal()

        def run() -> certificate_pb2.ListCertificatesResponse:
            identity = (
                _identity_ref(request.identity, "identity")
                if request.HasField("identity")
                else None
            )
            if identity is None or identity not in (
                principal.citizen_id,
                principal.legal_person_id,
            ):
                self._ca().authorise_read(principal)
            status = None
            if request.status:
                status = STATUS_NAMES.get(request.status)
                if status is None:
                    raise InvalidArgument.field("status", "unknown certificate status")
            filters = ListFilter(
                identity_id=identity,
                profile=profile_in(request.profile) if request.profile else None,
                status=status,
                issuer=request.issuer_ca or None,
                seal_id=request.seal_id or None,
                expiring_before=time_in(request, "expiring_before"),
            )
            rows, token = self._ca().list_certificates(
                filters, page_size=request.page_size, page_token=request.page_token
            )
            return certificate_pb2.ListCertificatesResponse(
                certificates=[certificate_pb(r) for r in rows], next_page_token=token
            )

        return await run_sync(run)

    async def _status(self, request: Any, operation: str) -> CertificateRecord:
        principal = current_principal()

        def run() -> CertificateRecord:
            row = self._find(request.certificate)
            ca = self._ca()
            if operation == "revoke":
                if request.reason in (
                    common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD,
                    common_pb2.REVOCATION_REASON_REMOVE_FROM_CRL,
                ):
                    raise InvalidArgument.field(
                        "reason", "use SuspendCertificate / ResumeCertificate for holds"
                    )
                return ca.revoke(
                    principal,
                    row.id,
                    reason=request.reason,
                    invalidity_date=time_in(request, "invalidity_date"),
                    comment=request.comment,
                )
            if operation == "suspend":
                return ca.suspend(principal, row.id, request.comment)
            return ca.resume(principal, row.id, request.comment)

        return await run_sync(run)

    @rebuilt_from(_status_again("ca.revoke", certificate_pb2.RevokeCertificateResponse))
    async def RevokeCertificate(
        self,
        request: certificate_pb2.RevokeCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.RevokeCertificateResponse:
        row = await self._status(request, "revoke")
        return certificate_pb2.RevokeCertificateResponse(certificate=certificate_pb(row))

    @rebuilt_from(_status_again("ca.suspend", certificate_pb2.SuspendCertificateResponse))
    async def SuspendCertificate(
        self,
        request: certificate_pb2.SuspendCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.SuspendCertificateResponse:
        row = await self._status(request, "suspend")
        return certificate_pb2.SuspendCertificateResponse(certificate=certificate_pb(row))

    @rebuilt_from(_status_again("ca.resume", certificate_pb2.ResumeCertificateResponse))
    async def ResumeCertificate(
        self,
        request: certificate_pb2.ResumeCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.ResumeCertificateResponse:
        row = await self._status(request, "resume")
        return certificate_pb2.ResumeCertificateResponse(certificate=certificate_pb(row))

    async def GetCaChain(
        self,
        request: certificate_pb2.GetCaChainRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.GetCaChainResponse:
        def run() -> certificate_pb2.GetCaChainResponse:
            ca = self._ca()
            issuers = ca.chain(request.ca or None, include_responders=request.include_responders)
            return certificate_pb2.GetCaChainResponse(
                certificates=[ca_certificate_pb(ca, i) for i in issuers]
            )

        return await run_sync(run)

    async def GetCrl(
        self, request: certificate_pb2.GetCrlRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> certificate_pb2.GetCrlResponse:
        if not request.ca:
            raise InvalidArgument.field(
                "ca", "name a CA: root, citizen, legal-person, seal, service"
            )
        info = await run_sync(lambda: self._ca().crl(request.ca, delta=request.delta))
        return crl_pb(info)

    # --- key management centre ---------------------------------------------------------------

    async def IssueEncryptionPair(
        self,
        request: certificate_pb2.IssueEncryptionPairRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.IssueEncryptionPairResponse:
        principal = current_principal()

        def run() -> certificate_pb2.IssueEncryptionPairResponse:
            signing = self._find_field(request.signing_certificate, "signing_certificate")
            pair = self._ca().issue_encryption_pair(
                principal, signing.id, validity_days=request.validity_days
            )
            return certificate_pb2.IssueEncryptionPairResponse(
                signing_certificate=_paired_pb(pair.signing, pair.encryption),
                encryption_certificate=_paired_pb(pair.encryption, pair.signing),
                key_envelope=pair.envelope,
            )

        return await run_sync(run)

    @rebuilt_from(
        _recovery_after("ca.kmc.recovery.request", certificate_pb2.RequestKeyRecoveryResponse)
    )
    async def RequestKeyRecovery(
        self,
        request: certificate_pb2.RequestKeyRecoveryRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.RequestKeyRecoveryResponse:
        principal = current_principal()

        def run() -> certificate_pb2.RequestKeyRecoveryResponse:
            certificate = self._find_field(request.certificate, "certificate")
            recipient = self._find_field(request.recipient_certificate, "recipient_certificate")
            found = self._ca().request_key_recovery(
                principal,
                certificate.id,
                legal_basis=request.legal_basis,
                recipient_certificate_id=recipient.id,
            )
            return certificate_pb2.RequestKeyRecoveryResponse(recovery=key_recovery_pb(found))

        return await run_sync(run)

    @rebuilt_from(
        _recovery_after("ca.kmc.recovery.approve", certificate_pb2.ApproveKeyRecoveryResponse)
    )
    async def ApproveKeyRecovery(
        self,
        request: certificate_pb2.ApproveKeyRecoveryRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.ApproveKeyRecoveryResponse:
        principal = current_principal()

        def run() -> certificate_pb2.ApproveKeyRecoveryResponse:
            found = self._ca().approve_key_recovery(principal, _recovery_id(request.recovery_id))
            return certificate_pb2.ApproveKeyRecoveryResponse(recovery=key_recovery_pb(found))

        return await run_sync(run)

    async def DeliverRecoveredKey(
        self,
        request: certificate_pb2.DeliverRecoveredKeyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> certificate_pb2.DeliverRecoveredKeyResponse:
        principal = current_principal()

        def run() -> certificate_pb2.DeliverRecoveredKeyResponse:
            found, envelope = self._ca().deliver_recovered_key(
                principal, _recovery_id(request.recovery_id)
            )
            return certificate_pb2.DeliverRecoveredKeyResponse(
                recovery=key_recovery_pb(found), key_envelope=envelope
            )

        return await run_sync(run)

    def _find_field(self, ref: certificate_pb2.CertificateRef, field: str) -> CertificateRecord:
        """:meth:`_find`, an unnamed certificate reported under ``field``."""
        if ref.WhichOneof("ref") is None:
            raise InvalidArgument.field(field, "give a serial number or a fingerprint")
        return self._find(ref)


_RECOVERY_STATUS = {
    "pending": certificate_pb2.KEY_RECOVERY_STATUS_PENDING,
    "approved": certificate_pb2.KEY_RECOVERY_STATUS_APPROVED,
    "delivered": certificate_pb2.KEY_RECOVERY_STATUS_DELIVERED,
}


def _recovery_id(value: str) -> str:
    if not value or len(value) > 64:
        raise InvalidArgument.field("recovery_id", "the id of a key recovery request is required")
    return value


def _paired_pb(row: CertificateRecord, partner: CertificateRecord) -> certificate_pb2.Certificate:
    message = certificate_pb(row)
    message.paired_serial_number = partner.serial
    return message


def key_recovery_pb(found: Recovery) -> certificate_pb2.KeyRecovery:
    """The ``KeyRecovery`` message of a recovery request."""
    record = found.record
    message = certificate_pb2.KeyRecovery(
        recovery_id=record.id,
        status=_RECOVERY_STATUS.get(record.status, certificate_pb2.KEY_RECOVERY_STATUS_UNSPECIFIED),
        legal_basis=record.legal_basis,
        requested_by=record.requested_by,
        approvers=[a for a in (record.first_approver, record.second_approver) if a],
    )
    _fill_summary(message.certificate, found.certificate)
    _fill_summary(message.recipient, found.recipient)
    message.requested_at.FromDatetime(as_utc(record.requested_at))
    if record.delivered_at is not None:
        message.delivered_at.FromDatetime(as_utc(record.delivered_at))
    return message


def servicer(platform: Platform) -> certificate_pb2_grpc.CertificateServiceServicer:
    """The CertificateService servicer for ``platform`` (the server's factory)."""
    return CertificateServicer(platform)
