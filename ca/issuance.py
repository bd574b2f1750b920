"""Issuance as an explicit, checked sequence (as in Let's Encrypt's Boulder).

    validate request → check identity → build TBS → lint → sign in the key store → store
    → publish status (pre-produce the OCSP response)

Each step is a function; :func:`issue` runs them in order and nothing is stored unless every
step passed. Variants: from a CSR (proof of possession checked), with a key generated in the
key store (the result holds a key reference, never key material), renewal (same subject, new
key or — for server-side keys — the same key) and re-key.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from asn1crypto import keys, x509
from sqlalchemy import select
from sqlalchemy.orm.instrumentation import manager_of_class

from ca import ocsp
from ca.builder import (
    build_certificate,
    encode_name,
    name_text,
    profile_extensions,
    random_serial,
    san_extension,
    serial_hex,
    status_extensions,
)
from ca.config import CaConfig
from ca.context import CaContext
from ca.csr import key_algorithm_of, parse_csr
from ca.extensions import (
    IDENTIFY_CODE_OID,
    QC_STATEMENTS_OID,
    identify_code_value,
    qc_statements_value,
    raw_extension,
    salted_identity_hash,
    seal_id_value,
)
from ca.hierarchy import Issuer
from ca.lint import lint_plan, require_clean
from ca.models import CaCertificate
from ca.profiles import Profile, get_profile, issuer_for, seal_id_oid
from ca.signing import now
from ca.store import CommitOutcomeUnknown, PendingIssue
from govtrust import audit
from govtrust.errors import FailedPrecondition, InvalidArgument, NotFound, PreconditionViolation
from govtrust.principal import Principal
from hsm.keystore import KeyAlgorithm, KeyRef, parse_algorithm

if TYPE_CHECKING:
    from ca.kmc import EncryptionPair

log = logging.getLogger("govtrust.ca.issuance")

ISSUE_ROLES = ("ca-operator",)
SEAL_ROLES = ("ca-operator", "seal-maker", "seal-filing", "seal-reviewer")
_SYSTEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
BACKDATE = timedelta(minutes=1)


@dataclass(frozen=True)
class ServiceSubject:
    """A business system (or our own endpoint) asking for a TLS certificate."""

    system_id: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubjectSpec:
    """Who the certificate is for: exactly one of identity, seal id or service."""

    identity: str | None = None  # registry id, resident ID number or USCC
    seal_id: str | None = None
    service: ServiceSubject | None = None


@dataclass(frozen=True)
class IssueRequest:
    """A request to issue a certificate (from a CSR, or with a key generated in the store)."""

    profile: str
    subject: SubjectSpec
    csr: bytes | None = None
    generate_key_algorithm: str | None = None
    validity_days: int = 0
    hash_identity_number: bool = False
    applicant: str | None = None  # citizen acting for a legal person (else the caller's)


@dataclass(frozen=True)
class Issued:
    """An issued certificate's stored row and, for server-side keys, the key reference; a renewal
    that re-keyed a KMC pair also carries the new pair (:class:`ca.kmc.EncryptionPair`)."""

    certificate: CaCertificate
    key: KeyRef | None = None
    encryption: EncryptionPair | None = None


@dataclass
class _Subject:
    """Step 2's result: the subject record (template values) and where the row points."""

    values: dict[str, str]
    kind: str
    identity_id: str | None = None
    seal_id: str | None = None
    system_id: str | None = None
    id_number: str | None = None
    service: ServiceSubject | None = None
    salt: bytes | None = None


@dataclass
class _Key:
    spki_der: bytes
    algorithm: KeyAlgorithm
    key_id: bytes | None = None  # subjectKeyIdentifier, when already known
    ref: KeyRef | None = None

    @property
    def family(self) -> str:
        return "rsa" if self.algorithm.value.startswith("rsa") else "ec"


# --- step 1: validate -------------------------------------------------------------------------


def authorise(principal: Principal, profile: Profile) -> None:
    """Only ``ca-operator`` issues and changes status (the seal roles too, for seal profiles)."""
    principal.require_role(*(SEAL_ROLES if profile.name == "seal" else ISSUE_ROLES))


def _validate_subject_shape(profile: Profile, subject: SubjectSpec) -> None:
    given = [
        n
        for n, v in (
            ("identity", subject.identity),
            ("seal_id", subject.seal_id),
            ("service", subject.service),
        )
        if v
    ]
    if len(given) != 1:
        raise InvalidArgument.field("subject", "give exactly one of identity, seal_id or service")
    wanted = {
        "citizen": "identity",
        "legal-person": "identity",
        "seal": "seal_id",
        "service": "service",
    }[profile.subject_kind]
    if given[0] != wanted:
        raise InvalidArgument.field(
            f"subject.{given[0]}", f"the {profile.name} profile needs subject.{wanted}"
        )


def _validate_key(ctx: CaContext, profile: Profile, request: IssueRequest) -> _Key:
    if request.csr is not None and request.generate_key_algorithm is not None:
        raise InvalidArgument.field("csr", "give a CSR or a key algorithm to generate, not both")
    if request.csr is not None:
        parsed = parse_csr(request.csr)
        if parsed.key_algorithm not in profile.key_algorithms:
            raise InvalidArgument.field(
                "csr", f"{parsed.key_algorithm} keys are not allowed in the {profile.name} profile"
            )
        return _Key(parsed.spki_der, parsed.key_algorithm, parsed.key_id)
    algorithm = parse_algorithm(
        request.generate_key_algorithm
        or ctx.config.default_key_algorithm(profile.name, profile.default_key_algorithm)
    )
    if algorithm not in profile.key_algorithms:
        raise InvalidArgument.field(
            "key_algorithm", f"{algorithm} keys are not allowed in the {profile.name} profile"
        )
    return _Key(b"", algorithm)  # generated after all checks pass


def is_system_id(value: str) -> bool:
    """Whether ``value`` is a valid business-system id (the CN of a service certificate)."""
    return bool(_SYSTEM_ID.match(value or ""))


def _validate_service(service: ServiceSubject) -> None:
    if not is_system_id(service.system_id):
        raise InvalidArgument.field(
            "subject.service.system_id", "1-64 characters of A-Z a-z 0-9 . _ : - expected"
        )
    for index, name in enumerate(service.dns_names):
        labels = name.rstrip(".").split(".")
        if name.startswith("*."):
            labels = labels[1:]
        if len(name) > 253 or not labels or not all(_DNS_LABEL.match(lb) for lb in labels):
            raise InvalidArgument.field(
                f"subject.service.dns_names[{index}]", f"{name!r} is not a DNS name"
            )
    for index, address in enumerate(service.ip_addresses):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidArgument.field(
                f"subject.service.ip_addresses[{index}]", f"{address!r} is not an IP address"
            ) from None


# --- step 2: check identity -------------------------------------------------------------------


def _inactive(subject: str, what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{what} is not active", [PreconditionViolation("STATE", subject, f"{what} is not active")]
    )


def check_identity(
    ctx: CaContext,
    profile: Profile,
    request: IssueRequest,
    principal: Principal,
    *,
    renewal: bool = False,
) -> _Subject:
    """Resolve the subject in the registry; check it is active, assured enough and applied for.

    A renewal without a named applicant relies on the original application (the subject must
    still be active); when an applicant is named or the caller is a citizen, it is checked."""
    subject = request.subject
    directory = ctx.directory
    if profile.subject_kind == "citizen":
        assert subject.identity is not None
        citizen = directory.citizen(subject.identity)
        if citizen is None:
            raise NotFound(f"no citizen {subject.identity!r} in the registry")
        if not citizen.active:
            raise _inactive(f"identity/{citizen.id}", "the citizen")
        if citizen.assurance < profile.min_assurance:
            raise FailedPrecondition(
                f"the citizen's assurance level {citizen.assurance} is below the "
                f"{profile.min_assurance} the {profile.name} profile needs",
                [PreconditionViolation("ASSURANCE", f"identity/{citizen.id}", "too low")],
            )
        surname, given_name = citizen.name_parts()
        values = {
            "name": citizen.name,
            "id_number": citizen.id_number,
            "surname": surname,
            "given_name": given_name,
        }
        salt = None
        if request.hash_identity_number:
            salt = os.urandom(ctx.config.identity_hash_salt_bytes)
            values["identity_hash"] = salted_identity_hash(citizen.id_number, salt)
        return _Subject(
            values, "citizen", identity_id=citizen.id, id_number=citizen.id_number, salt=salt
        )
    if profile.subject_kind == "legal-person":
        assert subject.identity is not None
        company = directory.legal_person(subject.identity)
        if company is None:
            raise NotFound(f"no legal person {subject.identity!r} in the registry")
        if not company.active:
            raise _inactive(f"identity/{company.id}", "the legal person")
        if company.assurance < profile.min_assurance:
            raise FailedPrecondition(
                f"the legal person's assurance level {company.assurance} is below "
                f"{profile.min_assurance}",
                [PreconditionViolation("ASSURANCE", f"identity/{company.id}", "too low")],
            )
        applicant = request.applicant or principal.citizen_id
        # Renewals rely on the original application; in-process system jobs (never a network
        # caller) issue the platform's own organisation certificates, e.g. the seal maker's.
        if applicant is None and (renewal or principal.kind == "system"):
            return _Subject(
                {"name": company.name, "uscc": company.uscc}, "legal-person", identity_id=company.id
            )
        if applicant is None:
            raise InvalidArgument.field(
                "applicant", "a legal-person certificate needs the applying citizen"
            )
        person = directory.citizen(applicant)
        if person is None or not person.active:
            raise _inactive(f"identity/{applicant}", "the applicant")
        if not directory.may_apply_for(company.id, person.id):
            raise FailedPrecondition(
                "the applicant is neither the legal representative nor an agent holding "
                "certificate.apply",
                [
                    PreconditionViolation(
                        "AUTHORISATION", f"identity/{company.id}", "applicant not authorised"
                    )
                ],
            )
        return _Subject(
            {"name": company.name, "uscc": company.uscc}, "legal-person", identity_id=company.id
        )
    if profile.subject_kind == "seal":
        assert subject.seal_id is not None
        seal = directory.seal(subject.seal_id)
        if seal is None:
            raise NotFound(f"no seal {subject.seal_id!r}")
        if not seal.active:
            raise _inactive(f"seal/{seal.seal_id}", "the seal")
        owner = directory.legal_person(seal.owner_id)
        if owner is not None and not owner.active:
            raise _inactive(f"identity/{owner.id}", "the seal's owner")
        return _Subject(
            {
                "owner_name": seal.owner_name,
                "owner_uscc": seal.owner_uscc,
                "seal_name": seal.seal_name,
                "seal_kind": seal.seal_kind,
                "seal_id": seal.seal_id,
            },
            "seal",
            identity_id=seal.owner_id,
            seal_id=seal.seal_id,
        )
    service = subject.service
    assert service is not None
    _validate_service(service)
    return _Subject(
        {"system_id": service.system_id}, "service", system_id=service.system_id, service=service
    )


# --- step 3: build TBS ------------------------------------------------------------------------


def _subject_attributes(profile: Profile, subject: _Subject, hashed: bool) -> list[tuple[str, str]]:
    rules = profile.subject_hashed if hashed and profile.subject_hashed else profile.subject
    rendered = [(attr, template.format(**subject.values)) for attr, template in rules]
    return [(attr, value) for attr, value in rendered if value.strip()]


@functools.lru_cache(maxsize=64)
def _qc_extension(semantics: str, qc_types: tuple[str, ...]) -> bytes:
    encoded: bytes = raw_extension(
        QC_STATEMENTS_OID, qc_statements_value(semantics, qc_types)
    ).dump()
    return encoded


def _subject_extensions(
    ctx: CaContext, profile: Profile, subject: _Subject, hashed: bool
) -> list[bytes]:
    result: list[bytes] = []
    if profile.identify_code and subject.id_number:
        value = subject.values["identity_hash"] if hashed else subject.id_number
        result.append(raw_extension(IDENTIFY_CODE_OID, identify_code_value(value)).dump())
    if profile.semantics_identifier and not hashed:
        result.append(_qc_extension(profile.semantics_identifier, profile.qc_types))
    if profile.seal_id_extension and subject.seal_id:
        result.append(
            raw_extension(seal_id_oid(ctx.config.oid_arc), seal_id_value(subject.seal_id)).dump()
        )
    if profile.subject_alt_names and subject.service is not None:
        service = subject.service
        if service.dns_names or service.ip_addresses:
            result.append(san_extension(service.dns_names, service.ip_addresses))
    return result


@functools.lru_cache(maxsize=256)
def _static_extensions(profile: Profile, config: CaConfig, issuer: str, key_family: str) -> bytes:
    """DER of the extensions that depend only on profile, CA and key family (cached)."""
    parts = [*profile_extensions(profile, config, key_family), *status_extensions(config, issuer)]
    return b"".join(e.dump() for e in parts)


def validity_window(
    ca: Issuer, validity_days: int, moment: datetime | None = None
) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of a certificate ``ca`` issues at ``moment`` (default: now) for
    ``validity_days``: backdated by :data:`BACKDATE`, never past the CA's own end."""
    not_before = (moment or now()) - BACKDATE
    return not_before, min(not_before + timedelta(days=validity_days), ca.not_after)


def certificate_end(ctx: CaContext, profile_name: str, validity_days: int = 0) -> datetime:
    """The notAfter a certificate of the profile issued now for ``validity_days`` (0: the
    profile's default) would have; nothing is issued (a caller decides whether a fresh
    certificate would serve longer than the one it holds)."""
    profile = get_profile(profile_name)
    ca = ctx.hierarchy.ca(profile.issuer)
    return validity_window(ca, profile.validity_days(validity_days))[1]


def _build_and_sign(
    ctx: CaContext,
    profile: Profile,
    ca: Issuer,
    subject: _Subject,
    key: _Key,
    validity_days: int,
    hashed: bool,
) -> tuple[bytes, str, int, datetime, datetime]:
    """Steps 3-5: build the TBS, lint it, sign it through the key store.

    Returns (DER, subject text, serial, notBefore, notAfter). The built-in lint runs on what
    goes into the TBS (microseconds); pkilint checks the encodings of every profile in tests.
    """
    serial = random_serial()
    ca_not_after = ca.not_after
    not_before, not_after = validity_window(ca, validity_days)
    attributes = _subject_attributes(profile, subject, hashed)
    require_clean(
        lint_plan(
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            issuer_not_before=ca.not_before,
            issuer_not_after=ca_not_after,
            attributes=attributes,
            has_san=bool(
                subject.service and (subject.service.dns_names or subject.service.ip_addresses)
            ),
        ),
        f"profile/{profile.name}",
    )
    extensions: list[x509.Extension | bytes] = [
        _static_extensions(profile, ctx.config, ca.name, key.family),
        *_subject_extensions(ctx, profile, subject, hashed),
    ]
    der = build_certificate(
        signer=ca.key,
        issuer_name=ca.subject_der,
        issuer_key_id=ca.key_id,
        subject=encode_name(attributes),
        spki=key.spki_der,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
        ski_value=key.key_id,
    )
    return der, name_text(attributes), serial, not_before, not_after


# --- steps 6-7: store and publish ---------------------------------------------------------------


@dataclass(eq=False)
class Prepared:
    """An issuance that passed every check and is signed, with its pre-produced OCSP
    response, waiting to be committed (steps 1-5 done, 6-7 pending)."""

    row: CaCertificate
    pending: PendingIssue
    key: KeyRef | None = None

    def finish(self, ctx: CaContext) -> Issued:
        """After the commit: publish the OCSP response to the cache and return the result, or
        raise why the commit failed (destroying a key generated for it, unless the certificate
        may be stored after all: :class:`CommitOutcomeUnknown`)."""
        if not self.pending.done:
            raise RuntimeError("finish() before the commit finished")
        if self.pending.error is not None:
            _discard_key(ctx, self.key, self.pending.error)
            raise self.pending.error
        ocsp_row = self.pending.ocsp
        ctx.ocsp_cache.put(
            self.row.issuer,
            int(self.row.serial, 16),
            ocsp_row["der"],
            ocsp.refresh_at(ctx, ocsp_row["next_update"]),
            None,
        )
        return Issued(self.row, self.key)


def _pending(
    ctx: CaContext,
    principal: Principal,
    row: CaCertificate,
    values: dict[str, object],
    action: str,
    extra_audit: dict[str, object],
    previous: CaCertificate | None = None,
) -> PendingIssue:
    """Step 7 before commit: pre-produce the OCSP response (signed before any lock is taken)
    and assemble what the group commit writes in one transaction (certificate, response and
    audit record)."""
    ca = ctx.hierarchy.ca(row.issuer)
    this_update = now()
    response_der, next_update = ocsp.produce(
        ctx, ca, int(row.serial, 16), ocsp.CertState("good"), this_update=this_update
    )
    return PendingIssue(
        certificate=values,
        ocsp={
            "certificate_id": row.id,
            "der": response_der,
            "this_update": this_update,
            "next_update": next_update,
        },
        actor=principal.actor,
        action=action,
        # With the caller's idempotency claim: this thread may not be the one that commits.
        details=audit.with_claim({"profile": row.profile, "subject": row.subject, **extra_audit}),
        renewed_from=previous.id if previous is not None else None,
    )


def _commit(ctx: CaContext, prepared: Prepared) -> Issued:
    """Steps 6-7: commit (group commit: concurrent issuances share one transaction), then
    publish the response to the cache."""
    try:
        ctx.committer.submit(prepared.pending)
    except BaseException as error:
        _discard_key(ctx, prepared.key, error)
        raise
    return prepared.finish(ctx)


def _discard_key(ctx: CaContext, key: KeyRef | None, error: BaseException) -> None:
    """Destroy a key generated for an issuance that failed — but not when the certificate may
    be stored (unknown commit outcome): its holder would be left with a certificate whose key
    is gone. Such a key stays in the key store, unreferenced if the certificate is not."""
    if key is None:
        return
    if isinstance(error, CommitOutcomeUnknown):
        log.warning("kept key %s: its certificate may have been stored", key.key_id)
        return
    ctx.keystore.destroy(key)


def issue(
    ctx: CaContext,
    principal: Principal,
    request: IssueRequest,
    *,
    renewed_from: CaCertificate | None = None,
    action: str = "ca.issue",
) -> Issued:
    """Run the whole issuance sequence; nothing is stored unless every step passes."""
    return _commit(ctx, prepare(ctx, principal, request, renewed_from=renewed_from, action=action))


def prepare(
    ctx: CaContext,
    principal: Principal,
    request: IssueRequest,
    *,
    renewed_from: CaCertificate | None = None,
    action: str = "ca.issue",
) -> Prepared:
    """Steps 1-5 and the OCSP response of step 7: everything but the commit. Submit
    ``result.pending`` to ``ctx.committer`` and call ``result.finish(ctx)`` once it is done
    (:func:`issue` does both)."""
    # 1. validate the request
    profile = get_profile(request.profile)
    authorise(principal, profile)
    _validate_subject_shape(profile, request.subject)
    validity_days = profile.validity_days(request.validity_days)
    if request.hash_identity_number and not profile.identify_code:
        raise InvalidArgument.field(
            "hash_identity_number", f"the {profile.name} profile carries no ID number"
        )
    key = _validate_key(ctx, profile, request)
    # 2. check the identity in the registry
    subject = check_identity(ctx, profile, request, principal, renewal=renewed_from is not None)
    ca = ctx.hierarchy.ca(issuer_for(profile, key.algorithm))
    # server-side key generation happens only once the request is known to be acceptable
    if request.csr is None:
        label = f"cert/{profile.name}/{subject.identity_id or subject.seal_id or subject.system_id}"
        key.ref = ctx.keystore.generate(label[:255], key.algorithm)
        key.spki_der = key.ref.public_key_der
    try:
        # 3-5. build TBS, lint, sign
        signed = _build_and_sign(
            ctx, profile, ca, subject, key, validity_days, request.hash_identity_number
        )
        row, values = _certificate_row(
            profile,
            ca,
            subject,
            signed,
            key_algorithm=key.algorithm.value,
            key_id=key.ref.key_id if key.ref else None,
            renewed_from=renewed_from,
        )
        # 7 (before 6). pre-produce the OCSP response; 6-7 are committed together
        pending = _pending(
            ctx,
            principal,
            row,
            values,
            action,
            {"key_generated": key.ref is not None},
            renewed_from,
        )
    except BaseException:
        if key.ref is not None:
            ctx.keystore.destroy(key.ref)
        raise
    return Prepared(row, pending, key.ref)


def _certificate_row(
    profile: Profile,
    ca: Issuer,
    subject: _Subject,
    signed: tuple[bytes, str, int, datetime, datetime],
    *,
    key_algorithm: str,
    key_id: str | None,
    renewed_from: CaCertificate | None,
) -> tuple[CaCertificate, dict[str, object]]:
    """The stored record of a freshly signed certificate (active from now), as an ORM object
    and as the column values the group commit inserts."""
    der, name, serial, not_before, not_after = signed
    issued = now()
    values: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "issuer": ca.name,
        "serial": serial_hex(serial),
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
        "profile": profile.name,
        "subject_kind": subject.kind,
        "identity_id": subject.identity_id,
        "seal_id": subject.seal_id,
        "system_id": subject.system_id,
        "subject": name,
        "der": der,
        "key_algorithm": key_algorithm,
        "key_id": key_id,
        "identity_salt": subject.salt.hex() if subject.salt else None,
        "not_before": not_before,
        "not_after": not_after,
        "issued_at": issued,
        "status": "active",
        "revoked_at": None,
        "revocation_reason": None,
        "invalidity_date": None,
        "status_comment": None,
        "status_changed_at": issued,
        "status_epoch": 0,
        "resumed_at": None,
        "renewed_from": renewed_from.id if renewed_from else None,
        "renewed_by": None,
    }
    row = _new_row()  # a transient ORM object filled directly: the instrumented constructor
    row.__dict__.update(values)  # costs ~40 µs per certificate for 26 attribute events
    return row, values


_new_row = manager_of_class(CaCertificate).new_instance


def reissue_same_key(
    ctx: CaContext, principal: Principal, previous: CaCertificate, validity_days: int
) -> Issued:
    """Renewal without a new key: re-certify the existing server-side key."""
    if previous.key_id is None:
        raise FailedPrecondition(
            "renewing without a new key needs a key held in our key store; send a CSR",
            [PreconditionViolation("KEY", f"certificate/{previous.serial}", "client-held key")],
        )
    profile = get_profile(previous.profile)
    authorise(principal, profile)
    days = profile.validity_days(validity_days)
    ref = ctx.keystore.get(previous.key_id)
    spki = keys.PublicKeyInfo.load(ref.public_key_der)
    algorithm = key_algorithm_of(spki, "key")
    request = _request_like(previous, csr=None)
    subject = check_identity(ctx, profile, request, principal, renewal=True)
    ca = ctx.hierarchy.ca(issuer_for(profile, algorithm))
    hashed = previous.identity_salt is not None
    signed = _build_and_sign(
        ctx, profile, ca, subject, _Key(ref.public_key_der, algorithm), days, hashed
    )
    row, values = _certificate_row(
        profile,
        ca,
        subject,
        signed,
        key_algorithm=ref.algorithm.value,
        key_id=ref.key_id,
        renewed_from=previous,
    )
    pending = _pending(
        ctx, principal, row, values, "ca.renew", {"renewed_from": previous.serial}, previous
    )
    return _commit(ctx, Prepared(row, pending))  # the key stays: it is the previous one


def _request_like(
    previous: CaCertificate,
    *,
    csr: bytes | None,
    algorithm: str | None = None,
    validity_days: int = 0,
) -> IssueRequest:
    """An issue request for the same profile and subject as ``previous``."""
    if previous.subject_kind == "seal":
        subject = SubjectSpec(seal_id=previous.seal_id)
    elif previous.subject_kind == "service":
        cert = x509.Certificate.load(previous.der)
        dns: tuple[str, ...] = ()
        ips: tuple[str, ...] = ()
        san = cert.subject_alt_name_value
        if san is not None:
            dns = tuple(n.native for n in san if n.name == "dns_name")
            ips = tuple(n.native for n in san if n.name == "ip_address")
        subject = SubjectSpec(service=ServiceSubject(previous.system_id or "", dns, ips))
    else:
        subject = SubjectSpec(identity=previous.identity_id)
    return IssueRequest(
        profile=previous.profile,
        subject=subject,
        csr=csr,
        generate_key_algorithm=algorithm,
        validity_days=validity_days,
        hash_identity_number=previous.identity_salt is not None,
    )


def renew(
    ctx: CaContext,
    principal: Principal,
    previous: CaCertificate,
    *,
    csr: bytes | None = None,
    generate_key_algorithm: str | None = None,
    validity_days: int = 0,
    applicant: str | None = None,
) -> Issued:
    """Renew (same subject) with a new key from a CSR, a re-key in the store, or the same key."""
    if previous.status == "revoked":
        raise FailedPrecondition(
            "a revoked certificate cannot be renewed",
            [PreconditionViolation("STATE", f"certificate/{previous.serial}", "revoked")],
        )
    if previous.renewed_by is not None:
        raise FailedPrecondition(
            "this certificate has already been renewed",
            [PreconditionViolation("STATE", f"certificate/{previous.serial}", "renewed")],
        )
    if csr is None and generate_key_algorithm is None:
        return reissue_same_key(ctx, principal, previous, validity_days)
    request = _request_like(
        previous, csr=csr, algorithm=generate_key_algorithm, validity_days=validity_days
    )
    if applicant is not None:
        request = IssueRequest(**{**request.__dict__, "applicant": applicant})
    return issue(ctx, principal, request, renewed_from=previous, action="ca.renew")


def find(
    ctx: CaContext,
    *,
    serial: str | None = None,
    fingerprint: str | None = None,
    issuer: str | None = None,
) -> CaCertificate:
    """One certificate by serial (hex, any case, optional colons) or SHA-256 fingerprint."""
    with ctx.db.read() as session:
        query = select(CaCertificate)
        if serial:
            normalised = serial.replace(":", "").strip().upper().lstrip("0") or "0"
            if not re.fullmatch(r"[0-9A-F]{1,40}", normalised):
                raise InvalidArgument.field("serial_number", "hexadecimal expected")
            query = query.where(CaCertificate.serial == normalised)
        elif fingerprint:
            value = fingerprint.replace(":", "").strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", value):
                raise InvalidArgument.field("fingerprint_sha256", "64 hexadecimal digits expected")
            query = query.where(CaCertificate.fingerprint_sha256 == value)
        else:
            raise InvalidArgument.field("certificate", "give a serial number or a fingerprint")
        if issuer:
            query = query.where(CaCertificate.issuer == issuer)
        rows = list(session.scalars(query.limit(2)))
    if not rows:
        raise NotFound("no such certificate")
    if len(rows) > 1:
        raise InvalidArgument.field(
            "certificate", "serial number is ambiguous; use the fingerprint"
        )
    return rows[0]
