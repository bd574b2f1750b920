"""Issuing licences and changing their status: IssueLicense, new versions, revoke/suspend/resume.

Issuance runs in three steps so that sealing the document never happens inside a write
transaction (the PDF sealer time-stamps through the CA, which writes; SQLite's ``BEGIN
IMMEDIATE`` would deadlock on a nested writer):

1. validate everything (holder active in the identity registry — citizen by resident ID
   number, code type 111, or legal person by USCC, 001 — fields, validity, the caller's
   ``licence-issuer:<dept>`` role) and, in one short transaction, check the identifiers are
   free and reserve the status-list indexes;
2. outside any transaction: sign the JWS and the offline QR payload with the department's
   seal key and, when a document maker is configured, render and seal the PDF;
3. one transaction: store the licence row(s), record the seal's use for each document
   (``SealService.record_use(..., session=...)``, action ``seal_pdf``, kind ``licence``) and
   append the audit record(s).

A failure after step 1 leaves the reserved status indexes unused. That is harmless: no licence
carries them, and an index with no licence stays ``valid`` (0) in the published list forever.

**Idempotency** (``IssueRequest.request_id``, per issuing department): the key is claimed, with
the SHA-256 of the request body and the identifier it will issue, in the step-1 transaction
(:class:`~license.models.LicenceIssueRequestRow`, primary key ``(issuer_code, request_id)``) and
marked complete in the step-3 one. A repeat with the same body gets the licence issued under
the key (nothing new: no licence, seal use, status index or audit record); with another body it
gets ALREADY_EXISTS. The body is hashed as issuance reads it (:func:`request_sha256`), so a
re-encoding of the same request is the same request. Concurrent duplicates collide on the
primary key, so only one claim — and one status index — commits; the others wait briefly
(``request_wait``, 2 s: they wait in a thread of the shared ``run_sync`` pool) for the claimant
to finish and answer its licence, and otherwise raise :class:`IssuanceInProgress`
(UNAVAILABLE: retry with the same key). A claimant that fails releases its claim (a duplicate
waiting for it then issues; a release the database refused is retried in the background). A
claim records the claiming process (its :mod:`govtrust.lease` member id) and a random token:
once that process is gone from the cluster (killed: its membership expires within seconds), or
the claim is older than ``claim_timeout`` (a claimant that was no member), a retry takes the
claim over with a new token, and the old claimant's completing write, which checks its token
under the claim row's lock, is refused — a slow claimant never lands a second licence. The
claim is taken before the identifier is checked free, and a duplicate that finds its explicit
``serial`` issued meanwhile looks at the key again: when the claimant of the key completed it
with the same body (between the duplicate's read and its claim), the duplicate answers that
licence rather than ALREADY_EXISTS.

**Annotations** (:meth:`LicenceService.new_version`) are stored with the new version
(:class:`~license.models.LicenceAnnotationRow`) and returned with every version of the chain
they lead to (:attr:`StoredLicence.annotations`).

Signed data, QR payload and document are encrypted at rest (:mod:`license.vault`);
:meth:`LicenceService.stored` returns them in clear. Signing keys come from ``signers``: a
callable from the issuing department's USCC to its :class:`LicenceSigner` (in production
:class:`license.departments.DepartmentSealSigners`, the department's official seal).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.db import Database, as_utc, is_connection_fault
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from govtrust.lease import Fence, StaleFence, member_gone, this_member
from govtrust.principal import LICENCE_ISSUER_PREFIX, Principal
from hsm.atrest import DEFAULT_SCHEME
from idp.identifiers import InvalidIdentifier, normalise, parse_uscc
from idp.registry import IdentityRegistry
from idp.types import IdentityRef, IdentityStatus, LegalPerson
from license.catalogue import LicenceType, get_type, validate_fields, validate_validity
from license.days import licence_day
from license.departments import DOCUMENT_KIND
from license.identifiers import build_identifier, parse_identifier
from license.models import (
    LicenceAnnotationRow,
    LicenceIssueRequestRow,
    LicenceRow,
    LicenceStatusListRow,
)
from license.qr import encode_payload
from license.records import LicenceRecord
from license.signed_data import (
    HOLDER_RESIDENT_ID,
    HOLDER_USCC,
    LicenceMetadata,
    sign_licence,
)
from license.signer import LicenceSigner, unverified_payload
from license.status_list import DEFAULT_TTL as STATUS_LIST_TTL
from license.status_list import allocate_index, refresh_status_list
from license.vault import (
    DOCUMENT,
    OFD_DOCUMENT,
    QR_PAYLOAD,
    SIGNED_DATA,
    KeyDeriver,
    LicenceVault,
)

if TYPE_CHECKING:
    from license.bulk_issuance import RowOutcome, SourceRow
    from license.document import LicenceFiles
    from seal.lifecycle import SealService, Use, UseContext

# The registry's own reads need a verifier; issuance reads on the department's behalf.
_REGISTRY_READER = Principal(
    kind="system", subject="license-issuance", roles=frozenset({"verifier"})
)
MAX_REASON = 1000
MAX_REQUEST_ID = 128
# How long a duplicate waits for the claimant: briefly, since it waits in a thread of the shared
# ``run_sync`` pool; then it answers IssuanceInProgress (UNAVAILABLE) and the caller retries.
REQUEST_WAIT = timedelta(seconds=2)
CLAIM_TIMEOUT = timedelta(minutes=10)  # after which a pending claim may be taken over
_RELEASE_TRIES = 120  # a release the database refused is retried every 0.5 s for a minute
_RELEASE_PAUSE_SECONDS = 0.5


@dataclass(frozen=True)
class IssueRequest:
    """What a department submits to issue a licence.

    ``holder_name``, when given, must be the registry's name of the holder (compared after
    NFKC normalisation and whitespace folding, so full-width brackets match); the licence always
    carries the registry's name. ``issue_date`` must be empty or today; ``valid_from`` defaults
    to the issue date. ``request_id`` is the department's idempotency key (see the module doc).
    """

    type_code: str
    issuer_code: str
    issuer_name: str
    holder_code_type: str  # 111 resident ID number, 001 USCC
    holder_code: str
    fields: Mapping[str, object]
    valid_from: date | None = None  # None: the issue date
    valid_until: date | None = None
    number: str = ""  # ZZBH; defaults to the serial
    serial: str = ""  # defaults to <year><random 10 digits>
    holder_name: str = ""  # CZZT as the department knows it; empty: the registry's
    issue_date: date | None = None  # must be None or today
    request_id: str = ""  # idempotency key, per issuing department


class IssuanceInProgress(Unavailable):
    """A duplicate of a request whose idempotency key another call is still issuing under: the
    caller retries with the same ``request_id`` (UNAVAILABLE over gRPC) and gets its licence."""

    reason = "REQUEST_IN_PROGRESS"


def request_sha256(request: IssueRequest, *, document: bool) -> str:
    """SHA-256 (hex) of what an IssueLicense request asks for: what a repeat with the same
    ``request_id`` must match. Hashed as issuance reads it, so re-encodings of the same request
    match: surrounding spaces and empty optional fields do not count, the holder's code is
    normalised as the registry looks it up (NFKC, upper case: ``x`` and ``X`` are one resident
    ID number), the holder's name as it is compared (:func:`same_name`), field values as
    :func:`~license.catalogue.validate_fields` keeps them (``True`` is ``"true"``)."""
    return _body_sha256(
        request,
        document,
        holder_code=normalise(request.holder_code),
        holder_name=_folded(request.holder_name),
        fields={
            str(k): _field_text(v)
            for k, v in request.fields.items()
            if v is not None and _field_text(v)
        },
    )


def legacy_request_sha256(request: IssueRequest, *, document: bool) -> str:
    """The hash claims stored before :func:`request_sha256` normalised (the text as sent,
    stripped): a repeat still matches a claim recorded with it. Equal to the normalised hash
    whenever the request was sent normalised."""
    return _body_sha256(
        request,
        document,
        holder_code=request.holder_code.strip(),
        holder_name=request.holder_name.strip(),
        fields={
            str(k): str(v).strip()
            for k, v in request.fields.items()
            if v is not None and str(v).strip()
        },
    )


def _field_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _folded(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _body_sha256(
    request: IssueRequest,
    document: bool,
    *,
    holder_code: str,
    holder_name: str,
    fields: dict[str, str],
) -> str:
    body = {
        "type_code": request.type_code,
        "issuer_code": request.issuer_code,
        "holder_code_type": request.holder_code_type,
        "holder_code": holder_code,
        "holder_name": holder_name,
        "fields": fields,
        "valid_from": request.valid_from.isoformat() if request.valid_from else "",
        "valid_until": request.valid_until.isoformat() if request.valid_until else "",
        "issue_date": request.issue_date.isoformat() if request.issue_date else "",
        "number": request.number,
        "serial": request.serial,
        "document": document,
    }
    return hashlib.sha256(audit.canonical_json(body)).hexdigest()


def issuing_department(principal: Principal, issuer_code: str = "") -> str:
    """The department ``principal`` issues for: ``issuer_code`` when given, else the one
    department its ``licence-issuer:<USCC>`` roles name. :class:`InvalidArgument` on
    ``issuer_code`` when it is missing and the roles name none or several, or it is no USCC;
    :class:`PermissionDenied` when the caller may not issue for it."""
    if not issuer_code:
        departments = sorted(
            r.removeprefix(LICENCE_ISSUER_PREFIX)
            for r in principal.roles
            if r.startswith(LICENCE_ISSUER_PREFIX)
        )
        if len(departments) != 1:
            raise InvalidArgument.field(
                "issuer_code", "required (the caller does not issue for exactly one department)"
            )
        issuer_code = departments[0]
    try:
        parse_uscc(issuer_code, field="issuer_code")
    except InvalidIdentifier as exc:
        raise InvalidArgument(str(exc), exc.violations) from None
    if not principal.has_role(LICENCE_ISSUER_PREFIX + issuer_code):
        raise PermissionDenied(f"{principal.actor} may not issue for department {issuer_code}")
    return issuer_code


def same_name(a: str, b: str) -> bool:
    """Whether two names of a holder are the same (NFKC, whitespace folded)."""

    return _folded(a) == _folded(b)


@dataclass(frozen=True)
class Annotation:
    """An annotation (加注件): the version it produced, its text, the fields it changed (``KZ_*``
    names, ``CZZT`` for the holder's name, ``ZZYXQJZRQ`` for the end of validity), who
    (principal actor; ``annotated_by_id`` the acting citizen, if any) and when."""

    identifier: str
    text: str
    changed_fields: tuple[str, ...]
    annotated_by: str
    annotated_by_id: str
    annotated_at: datetime


@dataclass(frozen=True)
class IssuedLicence:
    """An issued licence version (``document_pdf`` / ``document_ofd`` when documents were
    made)."""

    identifier: str
    metadata: LicenceMetadata
    signed_data: str
    qr_payload: str
    status: str = "valid"
    previous: str | None = None
    document_pdf: bytes | None = None
    replayed: bool = False  # True when a repeated request_id returned an earlier licence
    document_ofd: bytes | None = None

    @property
    def document_digest(self) -> bytes | None:
        """SHA-256 of the sealed PDF, if any."""
        return hashlib.sha256(self.document_pdf).digest() if self.document_pdf else None


@dataclass(frozen=True)
class StoredLicence:
    """A stored licence version and its secrets in clear (they are encrypted at rest)."""

    row: LicenceRecord
    signed_data: str
    qr_payload: str
    document_pdf: bytes | None
    annotations: tuple[Annotation, ...] = ()  # those leading to this version, oldest first
    document_ofd: bytes | None = None


@dataclass(frozen=True)
class DocumentRequest:
    """What the document maker renders (the fields of ``license.layout.DocumentInput``)."""

    licence_type: LicenceType
    metadata: LicenceMetadata
    signed_data: str
    qr_payload: str
    verify_url: str


DocumentMaker = Callable[[DocumentRequest, "UseContext"], "LicenceFiles"]
"""Renders and seals the licence type's documents (PDF PAdES B-T, OFD GB/T 38540) with a seal
context; records nothing."""


class DepartmentSeals(Protocol):
    """The department seals a document is sealed with (``DepartmentSealSigners``)."""

    @property
    def seals(self) -> SealService: ...

    def context(self, issuer_code: str) -> UseContext: ...


@dataclass
class _Draft:
    """One licence between signing (outside a transaction) and storing."""

    request: IssueRequest
    licence_type: LicenceType
    holder_id: str
    metadata: LicenceMetadata
    signer: LicenceSigner
    signed_data: str = ""
    qr_payload: str = ""
    files: LicenceFiles | None = None
    context: UseContext | None = None

    @property
    def document(self) -> bytes | None:
        """The sealed PDF, if one was made."""
        return self.files.pdf if self.files is not None else None

    @property
    def ofd(self) -> bytes | None:
        """The sealed OFD, if one was made."""
        return self.files.ofd.ofd if self.files is not None and self.files.ofd else None


class _Prepared(NamedTuple):
    request: IssueRequest
    licence_type: LicenceType
    fields: dict[str, str]
    valid_from: date
    valid_until: date | None
    holder: tuple[str, str, str]  # identity id, registry name, normalised code
    serial: str


@dataclass(frozen=True)
class _Claim:
    """The idempotency key a single issuance claims, with this call's random ``token`` (the
    fence its completing write checks); ``takeover``: the abandoned claim's (identifier, token)
    it replaces."""

    request_id: str
    sha256: str
    takeover: tuple[str, str] | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16))


class _ClaimTaken(Exception):
    """Another call holds (or just completed) the idempotency key: look at it again."""


class LicenceService:
    """Issuance and status changes over one database, registry and set of signers.

    ``master_key`` derives the at-rest keys of the licence secrets, written under
    ``at_rest_scheme`` (``aes-256-gcm`` or ``sm4-gcm``). ``documents`` (with
    ``seals``, the department seals) makes the sealed PDF at issuance; without it no document
    is made. ``verify_url`` is the public page of an identifier (printed in the document).
    """

    def __init__(
        self,
        db: Database,
        registry: IdentityRegistry,
        signers: Callable[[str], LicenceSigner],
        *,
        master_key: KeyDeriver,
        at_rest_scheme: str = DEFAULT_SCHEME,
        status_uri: Callable[[str], str] = lambda issuer: f"/licence/status/{issuer}",
        verify_url: Callable[[str], str] = lambda ident: f"/verify/license/{ident}",
        documents: DocumentMaker | None = None,
        seals: DepartmentSeals | None = None,
        clock: Callable[[], datetime] | None = None,
        request_wait: timedelta = REQUEST_WAIT,
        claim_timeout: timedelta = CLAIM_TIMEOUT,
        member: Callable[[], str] = this_member,
    ) -> None:
        if (documents is None) != (seals is None):
            raise ValueError("documents and seals go together")
        self.db = db
        self.registry = registry
        self.signers = signers
        self.vault = LicenceVault(master_key, at_rest_scheme)
        self.status_uri = status_uri
        self.verify_url = verify_url
        self.documents = documents
        self.seals = seals
        self._clock = clock or (lambda: datetime.now(UTC))
        self.request_wait = request_wait
        self.claim_timeout = claim_timeout
        self.member = member

    # --- checks -------------------------------------------------------------------------

    @staticmethod
    def _authorise(principal: Principal, licence_type: LicenceType, issuer_code: str) -> None:
        if not principal.has_role(LICENCE_ISSUER_PREFIX + issuer_code):
            raise PermissionDenied(f"{principal.actor} may not issue for department {issuer_code}")
        if issuer_code not in licence_type.issuing_departments:
            raise PermissionDenied(
                f"department {issuer_code} may not issue licence type {licence_type.type_code}"
            )

    def _known_holders(self, requests: Iterable[IssueRequest]) -> dict[str, LegalPerson]:
        """The legal persons holding ``requests`` (USCC holders), looked up in one go; a code
        left out is looked up (and refused) row by row."""
        codes = {r.holder_code for r in requests if r.holder_code_type == HOLDER_USCC}
        if not codes:
            return {}
        return self.registry.legal_persons_by_uscc(_REGISTRY_READER, codes)

    def _holder(
        self,
        licence_type: LicenceType,
        code_type: str,
        code: str,
        name: str = "",
        known: Mapping[str, LegalPerson] | None = None,
    ) -> tuple[str, str, str]:
        """(identity id, holder name, normalised code) of an active holder; ``name``, when
        given, must be the registry's (see :func:`same_name`). ``known``: legal persons looked
        up already (:meth:`~idp.registry.IdentityRegistry.legal_persons_by_uscc`), by code."""
        if code_type not in licence_type.holder_code_types:
            allowed = ", ".join(licence_type.holder_code_types)
            raise InvalidArgument.field(
                "holder_code_type", f"this licence type is held by code types {allowed}"
            )
        if code_type == HOLDER_USCC:
            lp = (known or {}).get(code) or self.registry.get_legal_person(
                _REGISTRY_READER, IdentityRef(uscc=code)
            )
            identity = (lp.id, lp.name, lp.uscc, lp.status)
        elif code_type == HOLDER_RESIDENT_ID:
            ref = IdentityRef(resident_id_number=code)
            citizen = self.registry.get_citizen(_REGISTRY_READER, ref)
            number = self.registry.parse_resident_id(code, "holder_code").number
            identity = (citizen.id, citizen.name, number, citizen.status)
        else:
            raise InvalidArgument.field("holder_code_type", "must be 111 or 001")
        if name.strip() and not same_name(name, identity[1]):
            raise InvalidArgument.field(
                "holder_name", "does not match the name registered for this holder"
            )
        if identity[3] != IdentityStatus.ACTIVE:
            raise FailedPrecondition(f"the holder is {identity[3]}, not active")
        return identity[0], identity[1], identity[2]

    # --- issue --------------------------------------------------------------------------

    def issue(
        self, principal: Principal, request: IssueRequest, *, document: bool = True
    ) -> IssuedLicence:
        """IssueLicense: validate, reserve, sign (and seal the document), store and audit.

        With ``request.request_id``, idempotent per issuing department (see the module doc):
        the licence already issued under the key comes back with ``replayed`` set."""
        if not request.request_id:
            return self.issue_many(principal, [request], document=document)[0]
        request_id = _request_id(request.request_id)
        if not principal.has_role(LICENCE_ISSUER_PREFIX + request.issuer_code):
            raise PermissionDenied(
                f"{principal.actor} may not issue for department {request.issuer_code}"
            )
        digest = request_sha256(request, document=document)
        matches = {digest, legacy_request_sha256(request, document=document)}
        deadline = time.monotonic() + self.request_wait.total_seconds()
        pause = 0.02
        while True:
            claim, abandoned = self._read_claim(request.issuer_code, request_id)
            takeover: tuple[str, str] | None = None
            if claim is not None:
                if claim.request_sha256 not in matches:
                    raise _reused(request.issuer_code, request_id, claim.identifier)
                if claim.completed_at is not None:
                    return self._replayed(claim.identifier)
                if not abandoned:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _in_progress(request_id)
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, 0.5)
                    continue
                # the claimant died (or is cut off): issue in its place; its late write, if it
                # is only slow, is refused by the new claim token
                takeover = (claim.identifier, claim.claim_token)
            try:
                return self.issue_many(
                    principal,
                    [request],
                    document=document,
                    claim=_Claim(request_id, digest, takeover),
                )[0]
            except _ClaimTaken:
                if time.monotonic() < deadline:
                    continue  # look at the key again
                claim, _ = self._read_claim(request.issuer_code, request_id)
                if claim is None or claim.completed_at is None:
                    raise _in_progress(request_id) from None
            except AlreadyExists:
                # The identifier (an explicit serial) exists: issued meanwhile under this very
                # key by a claimant that completed between our read and our claim, or that we
                # took over while it was slow rather than crashed? Then that is our licence.
                claim, _ = self._read_claim(request.issuer_code, request_id)
                if claim is None or claim.completed_at is None:
                    raise
            if claim.request_sha256 not in matches:
                raise _reused(request.issuer_code, request_id, claim.identifier)
            return self._replayed(claim.identifier)

    def _read_claim(
        self, issuer_code: str, request_id: str
    ) -> tuple[LicenceIssueRequestRow | None, bool]:
        """The key's claim row, and whether a pending one is abandoned: its holder process is
        gone from the cluster (:func:`govtrust.lease.member_gone`: within the membership's few
        seconds of a kill -9) or it is older than ``claim_timeout`` (a holder that was no
        member)."""
        with self.db.read() as session:
            claim = session.get(LicenceIssueRequestRow, (issuer_code, request_id))
            abandoned = False
            if claim is not None:
                session.expunge(claim)
                if claim.completed_at is None:
                    aged = self._clock() - as_utc(claim.created_at) >= self.claim_timeout
                    abandoned = aged or member_gone(session, claim.holder)
        return claim, abandoned

    def _replayed(self, identifier: str) -> IssuedLicence:
        stored = self.stored(identifier)
        return IssuedLicence(
            identifier,
            LicenceMetadata.from_json(unverified_payload(stored.signed_data)),
            stored.signed_data,
            stored.qr_payload,
            status=stored.row.status,
            previous=stored.row.previous_identifier,
            document_pdf=stored.document_pdf,
            document_ofd=stored.document_ofd,
            replayed=True,
        )

    def issue_many(
        self,
        principal: Principal,
        requests: Sequence[IssueRequest],
        *,
        document: bool = True,
        claim: _Claim | None = None,
    ) -> list[IssuedLicence]:
        """Issue several licences (all or none), one audit record each.

        Every request is validated first (errors name the request: ``requests[3].fields.KZ_MC``
        when there is more than one). ``document=False`` (or no document maker) issues the
        signed data and QR payload only. Batching amortises the commits and the audit lock.
        Idempotency keys are for single requests (:meth:`issue`); a batch is refused one.
        """
        if claim is None:
            for i, r in enumerate(requests):
                if r.request_id:
                    raise InvalidArgument.field(
                        f"requests[{i}].request_id" if len(requests) > 1 else "request_id",
                        "idempotency keys are honoured by single issuance (issue) only",
                    )
        types: dict[str, LicenceType] = {}
        prepared = [
            self._prepare(principal, r, i, len(requests), types) for i, r in enumerate(requests)
        ]
        now = self._clock()
        per_issuer: dict[str, int] = {}
        for request in requests:
            per_issuer[request.issuer_code] = per_issuer.get(request.issuer_code, 0) + 1
        signers = {issuer: self.signers(issuer) for issuer in per_issuer}
        contexts = {}
        if document and self.documents is not None and self.seals is not None:
            contexts = {issuer: self.seals.context(issuer) for issuer in per_issuer}
        # Step 1: identifiers free, status indexes reserved (a short transaction).
        allow = self.registry.uscc_allow_list
        idents = [
            str(build_identifier(p.licence_type.type_code, p.request.issuer_code, p.serial, 1,
                                 allow_list=allow))
            for p in prepared
        ]  # fmt: skip
        duplicates = {i for i in idents if idents.count(i) > 1}
        if duplicates:
            raise AlreadyExists(f"the batch issues {sorted(duplicates)[0]} twice")
        try:
            with self.db.transaction() as session:
                if claim is not None:  # first: a key completed meanwhile answers its licence
                    self._claim(session, principal, requests[0].issuer_code, claim, idents[0], now)
                self._check_free(session, idents)
                next_index = {
                    issuer: allocate_index(session, issuer, count)
                    for issuer, count in sorted(per_issuer.items())
                }
        except IntegrityError:
            if claim is None:
                raise
            raise _ClaimTaken from None  # a concurrent duplicate claimed the key first
        except BaseException:
            # the claim's COMMIT may have landed although the connection died on it: free it
            # (by its token; in the background until the database answers), as a later failure
            if claim is not None:
                self._release(requests[0].issuer_code, claim)
            raise
        try:
            return self._sign_and_store(
                principal, prepared, idents, next_index, signers, contexts, now, claim
            )
        except BaseException:
            if claim is not None:
                self._release(requests[0].issuer_code, claim)
            raise

    def _claim(
        self,
        session: Session,
        principal: Principal,
        issuer_code: str,
        claim: _Claim,
        identifier: str,
        now: datetime,
    ) -> None:
        """Claim an idempotency key in the step-1 transaction (or take over a stale claim)."""
        row = session.get(
            LicenceIssueRequestRow, (issuer_code, claim.request_id), with_for_update=True
        )
        if row is None:
            if claim.takeover is not None:
                raise _ClaimTaken  # released meanwhile: look again
            session.add(
                LicenceIssueRequestRow(
                    issuer_code=issuer_code,
                    request_id=claim.request_id,
                    request_sha256=claim.sha256,
                    identifier=identifier,
                    actor=principal.actor[:200],
                    created_at=now,
                    completed_at=None,
                    holder=self.member()[:200],
                    claim_token=claim.token,
                )
            )
            session.flush()
            return
        if (
            claim.takeover is None
            or (row.identifier, row.claim_token) != claim.takeover
            or row.completed_at
        ):
            raise _ClaimTaken  # completed or taken over by another call meanwhile
        row.identifier = identifier
        row.actor = principal.actor[:200]
        row.created_at = now
        row.holder = self.member()[:200]
        row.claim_token = claim.token

    def _release(self, issuer_code: str, claim: _Claim, *, tries: int = 1) -> None:
        """Give up this call's pending claim after a failure, if it is still this call's.

        When the database cannot be reached (the failure was the database going away), the
        release is tried again in the background every half second for up to a minute: this
        process is alive, so its claim would otherwise stay pending (and a retry wait) until
        ``claim_timeout``. A claim left behind by a process that dies is taken over once the
        process is gone from the cluster."""
        try:
            with self.db.transaction() as session:
                row = session.get(
                    LicenceIssueRequestRow, (issuer_code, claim.request_id), with_for_update=True
                )
                if row is not None and row.claim_token == claim.token and not row.completed_at:
                    session.delete(row)
        except Exception as exc:  # noqa: BLE001 - the original error is what the caller needs
            if is_connection_fault(exc) and tries < _RELEASE_TRIES:
                retry = threading.Timer(
                    _RELEASE_PAUSE_SECONDS,
                    self._release,
                    (issuer_code, claim),
                    {"tries": tries + 1},
                )
                retry.daemon = True
                retry.start()

    def _sign_and_store(
        self,
        principal: Principal,
        prepared: Sequence[_Prepared],
        idents: Sequence[str],
        next_index: dict[str, int],
        signers: Mapping[str, LicenceSigner],
        contexts: Mapping[str, UseContext],
        now: datetime,
        claim: _Claim | None,
    ) -> list[IssuedLicence]:
        """Steps 2 and 3 of :meth:`issue_many`."""
        # Step 2: sign and seal outside any transaction.
        drafts: list[_Draft] = []
        for (request, licence_type, fields, valid_from, valid_until, holder, serial), ident in zip(
            prepared, idents, strict=True
        ):
            status_index = next_index[request.issuer_code]
            next_index[request.issuer_code] += 1
            metadata = LicenceMetadata(
                name=licence_type.name,
                type_code=licence_type.type_code,
                number=request.number or serial,
                identifier=ident,
                issuer_name=request.issuer_name,
                issuer_code=request.issuer_code,
                issue_date=licence_day(now),
                holder_name=holder[1],
                holder_code=holder[2],
                holder_code_type=request.holder_code_type,
                valid_from=valid_from,
                valid_until=valid_until,
                fields=fields,
                status_index=status_index,
                status_uri=self.status_uri(request.issuer_code),
            )
            draft = _Draft(request, licence_type, holder[0], metadata, signers[request.issuer_code])
            self._sign(draft, contexts.get(request.issuer_code))
            drafts.append(draft)
        # Step 3: one transaction for the rows, the seal uses and the audit records.
        try:
            with self.db.transaction() as session:
                self._check_free(session, idents)
                if claim is not None:
                    self._complete(session, drafts[0].request.issuer_code, claim, idents[0], now)
                for draft in drafts:
                    self._store(session, principal, draft, now)
                    audit.append(
                        session,
                        actor=principal.actor,
                        action="licence.issue",
                        target=draft.metadata.identifier,
                        details={
                            "type": draft.licence_type.type_code,
                            "holder": draft.holder_id,
                            "document_sha256": _hex_digest(draft.document),
                            "ofd_sha256": _hex_digest(draft.ofd),
                        },
                    )
        except IntegrityError:
            raise AlreadyExists(f"a licence {idents[0]} was issued meanwhile") from None
        return [_issued(d) for d in drafts]

    @staticmethod
    def _complete(
        session: Session, issuer_code: str, claim: _Claim, identifier: str, now: datetime
    ) -> None:
        """Mark the claim complete in the step-3 transaction, if it is still this call's."""
        row = session.get(
            LicenceIssueRequestRow, (issuer_code, claim.request_id), with_for_update=True
        )
        if (
            row is None
            or row.identifier != identifier
            or row.claim_token != claim.token
            or row.completed_at is not None
        ):
            raise _ClaimTaken  # taken over meanwhile: the other call's licence counts
        row.completed_at = now

    @staticmethod
    def _check_free(session: Session, idents: Sequence[str]) -> None:
        for ident in idents:
            if session.get(LicenceRow, ident) is not None:
                serial = parse_identifier(ident, check_uscc=False).serial
                raise AlreadyExists(f"a licence {ident} exists (serial {serial})")

    def _prepare(
        self,
        principal: Principal,
        request: IssueRequest,
        index: int,
        count: int,
        types: dict[str, LicenceType],
        holders: Mapping[str, LegalPerson] | None = None,
    ) -> _Prepared:
        try:
            today = licence_day(self._clock())
            if request.issue_date is not None and request.issue_date != today:
                raise InvalidArgument.field("issue_date", "must be empty or today")
            valid_from = request.valid_from or today
            licence_type = types.get(request.type_code)
            if licence_type is None:
                with self.db.read() as session:
                    licence_type = types[request.type_code] = get_type(session, request.type_code)
            self._authorise(principal, licence_type, request.issuer_code)
            fields = validate_fields(licence_type, request.fields)
            valid_until = validate_validity(licence_type, valid_from, request.valid_until)
            holder = self._holder(
                licence_type,
                request.holder_code_type,
                request.holder_code,
                request.holder_name,
                holders,
            )
        except InvalidArgument as exc:
            if count == 1:
                raise
            raise InvalidArgument(
                f"requests[{index}]: {exc.message}",
                [
                    FieldViolation(f"requests[{index}].{v.field}", v.description)
                    for v in exc.violations
                ],
            ) from None
        year = self._clock().year
        serial = request.serial or f"{year}{secrets.randbelow(10**10):010d}"
        return _Prepared(request, licence_type, fields, valid_from, valid_until, holder, serial)

    def _sign(self, draft: _Draft, context: UseContext | None) -> None:
        """JWS, QR payload and (with a seal context) the sealed document — no transaction."""
        draft.signed_data = sign_licence(draft.signer, draft.metadata)
        draft.qr_payload = encode_payload(draft.signer, draft.metadata)
        if context is not None and self.documents is not None:
            draft.context = context
            draft.files = self.documents(
                DocumentRequest(
                    draft.licence_type,
                    draft.metadata,
                    draft.signed_data,
                    draft.qr_payload,
                    self.verify_url(draft.metadata.identifier),
                ),
                context,
            )

    def _store(self, session: Session, principal: Principal, draft: _Draft, now: datetime) -> None:
        """Add the licence row (secrets encrypted) and record the document's seal use."""
        session.add(LicenceRow(**self._row_values(draft, now)))
        session.flush()
        if draft.context is None or self.seals is None:
            return
        for use in self._uses(draft):
            self.seals.seals.record_use(principal, draft.context, use, session=session)

    def _row_values(self, draft: _Draft, now: datetime) -> dict[str, Any]:
        """The ``licences`` row of a signed draft (its secrets encrypted)."""
        metadata = draft.metadata
        ident = parse_identifier(metadata.identifier, check_uscc=False)
        assert metadata.status_index is not None
        vault = self.vault
        return {
            "identifier": metadata.identifier,
            "type_code": metadata.type_code,
            "type_revision": draft.licence_type.revision,
            "issuer_code": metadata.issuer_code,
            "serial": ident.serial,
            "version": ident.version,
            "licence_number": metadata.number,
            "holder_identity_id": draft.holder_id,
            "holder_code_type": metadata.holder_code_type,
            "status": "valid",
            "status_reason": "",
            "status_index": metadata.status_index,
            "valid_from": metadata.valid_from,
            "valid_until": metadata.valid_until,
            "issued_at": now,
            "previous_identifier": metadata.previous,
            "superseded_by": None,
            "signing_key_id": draft.signer.key.key_id,
            "signed_data": vault.seal_text(draft.signed_data, SIGNED_DATA, metadata.identifier),
            "qr_payload": vault.seal_text(draft.qr_payload, QR_PAYLOAD, metadata.identifier),
            "document_pdf": (
                vault.seal(draft.document, DOCUMENT, metadata.identifier)
                if draft.document is not None
                else None
            ),
            "document_ofd": (
                vault.seal(draft.ofd, OFD_DOCUMENT, metadata.identifier)
                if draft.ofd is not None
                else None
            ),
            "updated_at": now,
        }

    @staticmethod
    def _uses(draft: _Draft) -> list[Use]:
        """The seal uses of a draft's sealed documents (none without documents)."""
        from seal.lifecycle import Use

        if draft.files is None:
            return []
        reason = f"licence {draft.metadata.identifier}"
        uses = []
        if draft.files.pdf is not None:
            digest = hashlib.sha256(draft.files.pdf).digest()
            uses.append(Use("seal_pdf", DOCUMENT_KIND, "sha256", digest, reason=reason))
        if draft.files.ofd is not None:
            sealed = draft.files.ofd
            uses.append(
                Use("seal_ofd", DOCUMENT_KIND, sealed.digest_algorithm, sealed.data_hash,
                    reason=reason)
            )  # fmt: skip
        return uses

    def issue_rows(
        self, principal: Principal, rows: Sequence[SourceRow], *, document: bool = True
    ) -> list[RowOutcome]:
        """Bulk import: issue each row on its own, idempotent per source key, one outcome per
        row in order (:mod:`license.bulk_issuance`)."""
        from license.bulk_issuance import issue_rows

        return issue_rows(self, principal, rows, document=document)

    # --- versions and status ------------------------------------------------------------

    def _current(self, session: Session, principal: Principal, identifier: str) -> LicenceRow:
        parse_identifier(identifier, check_uscc=False)
        row = session.get(LicenceRow, identifier, with_for_update=True)
        if row is None:
            raise NotFound(f"no licence {identifier}")
        if not principal.has_role(LICENCE_ISSUER_PREFIX + row.issuer_code):
            raise PermissionDenied(f"{principal.actor} is not the issuer of {identifier}")
        return row

    @staticmethod
    def _changeable(row: LicenceRow) -> None:
        if row.superseded_by is not None:
            raise FailedPrecondition(f"{row.identifier} is superseded by {row.superseded_by}")
        if row.status == "revoked":
            raise FailedPrecondition(f"{row.identifier} is revoked")

    def new_version(
        self,
        principal: Principal,
        identifier: str,
        *,
        fields: Mapping[str, object],
        reason: str,
        valid_until: date | None = None,
        holder_name: str = "",
        document: bool = True,
    ) -> IssuedLicence:
        """A changed licence (加注/变更): version N+1 linked to N; N is marked superseded.

        Same three steps as issuance (the old version is re-checked in the final transaction,
        so a concurrent change or revocation wins and this one fails, changing nothing)."""
        reason = _reason(reason)
        holder_name = holder_name.strip()
        if len(holder_name) > 200 or (holder_name and not holder_name.isprintable()):
            raise InvalidArgument.field("holder_name", "at most 200 printable characters")
        now = self._clock()
        with self.db.transaction() as session:
            old = self._current(session, principal, identifier)
            self._changeable(old)
            licence_type = get_type(session, old.type_code)
            previous = LicenceMetadata.from_json(
                unverified_payload(self.vault.open_text(old.signed_data, SIGNED_DATA, identifier))
            )
            new_fields = validate_fields(licence_type, {**previous.fields, **fields})
            end = validate_validity(
                licence_type, previous.valid_from, valid_until or previous.valid_until
            )
            issuer, holder_id, version = old.issuer_code, old.holder_identity_id, old.version
            status_index = allocate_index(session, issuer)
        ident = parse_identifier(identifier, check_uscc=False).with_version(version + 1)
        metadata = LicenceMetadata(
            **{
                **previous.__dict__,
                "identifier": str(ident),
                "issue_date": licence_day(now),
                "valid_until": end,
                "fields": new_fields,
                "holder_name": holder_name or previous.holder_name,
                "status_index": status_index,
                "previous": identifier,
            }
        )
        draft = _Draft(
            IssueRequest(
                licence_type.type_code, issuer, metadata.issuer_name,
                metadata.holder_code_type, metadata.holder_code, new_fields, metadata.valid_from,
            ),
            licence_type, holder_id, metadata, self.signers(issuer),
        )  # fmt: skip
        context = None
        if document and self.documents is not None and self.seals is not None:
            context = self.seals.context(issuer)
        self._sign(draft, context)
        changed = sorted(k for k in new_fields if previous.fields.get(k) != new_fields[k])
        noted = list(changed)
        if metadata.holder_name != previous.holder_name:
            noted.append("CZZT")
        if metadata.valid_until != previous.valid_until:
            noted.append("ZZYXQJZRQ")
        try:
            with self.db.transaction() as session:
                old = self._current(session, principal, identifier)
                self._changeable(old)  # a concurrent annotation or revocation wins
                self._store(session, principal, draft, now)
                old.superseded_by = draft.metadata.identifier
                old.status = "revoked"
                old.status_reason = f"superseded by {draft.metadata.identifier}: {reason}"
                old.updated_at = now
                session.add(
                    LicenceAnnotationRow(
                        identifier=draft.metadata.identifier,
                        previous_identifier=identifier,
                        issuer_code=issuer,
                        type_code=licence_type.type_code,
                        serial=ident.serial,
                        version=ident.version,
                        text=reason,
                        changed_fields=json.dumps(noted, ensure_ascii=False),
                        annotated_by=principal.actor[:200],
                        annotated_by_id=principal.citizen_id or "",
                        annotated_at=now,
                    )
                )
                self._refresh(session, issuer)
                audit.append(
                    session,
                    actor=principal.actor,
                    action="licence.new_version",
                    target=draft.metadata.identifier,
                    details={
                        "previous": identifier,
                        "reason": reason,
                        "changed_fields": changed,
                        "document_sha256": _hex_digest(draft.document),
                        "ofd_sha256": _hex_digest(draft.ofd),
                    },
                )
        except IntegrityError:
            raise AlreadyExists(f"{draft.metadata.identifier} was issued meanwhile") from None
        return _issued(draft)

    def _set_status(
        self, principal: Principal, identifier: str, reason: str, allowed: set[str], new: str
    ) -> None:
        reason = _reason(reason)
        with self.db.transaction() as session:
            row = self._current(session, principal, identifier)
            if row.status not in allowed or row.superseded_by is not None:
                raise FailedPrecondition(f"cannot go from {row.status} to {new}")
            old = row.status
            row.status = new
            row.status_reason = reason
            row.updated_at = self._clock()
            self._refresh(session, row.issuer_code)
            audit.append(
                session,
                actor=principal.actor,
                action=f"licence.status.{new}",
                target=identifier,
                details={"from": old, "reason": reason},
            )

    def _refresh(self, session: Session, issuer_code: str) -> None:
        """Re-sign the issuer's status list in the same transaction as the change."""
        session.flush()
        refresh_status_list(
            session, self.signers(issuer_code), issuer_code, uri=self.status_uri(issuer_code)
        )

    def status_list_token(self, issuer_code: str) -> str:
        """The issuer's signed status list: the cached token while it is younger than its
        ``ttl`` (every status change re-signs it at once), else signed anew — a list signed
        once and never again would expire a day later and offline verifiers would reject it.
        If the department cannot sign now (its seal is suspended) a cached token is served."""
        cached: str | None = None
        with self.db.read() as session:
            row = session.get(LicenceStatusListRow, issuer_code)
            if row is not None and row.token:
                cached = row.token
                issued = row.token_issued_at
                if issued is not None and self._clock() - as_utc(issued) < STATUS_LIST_TTL:
                    return cached
        try:
            with self.db.transaction() as session:
                return refresh_status_list(
                    session,
                    self.signers(issuer_code),
                    issuer_code,
                    uri=self.status_uri(issuer_code),
                )
        except FailedPrecondition:
            if cached is None:
                raise
            return cached

    def refresh_status_lists(self, fence: Fence | None = None) -> list[str]:
        """The cluster job (once per cluster per period): re-sign every issuer's status list
        signed more than half its ``ttl`` ago, so that a list is re-signed on schedule rather
        than by the first caller after it aged, and offline verifiers always find one valid for
        at least half a ttl. ``fence``: the job's lease, checked in each re-signing transaction.
        A department that cannot sign now (its seal suspended) is skipped; its cached list is
        served. Returns the issuers re-signed."""
        horizon = self._clock() - STATUS_LIST_TTL / 2
        with self.db.read() as session:
            due = list(
                session.scalars(
                    select(LicenceStatusListRow.issuer_code).where(
                        (LicenceStatusListRow.token_issued_at.is_(None))
                        | (LicenceStatusListRow.token_issued_at < horizon)
                    )
                )
            )
        done: list[str] = []
        for issuer_code in due:
            try:
                with self.db.transaction() as session:
                    if fence is not None:
                        fence.check(session)
                    refresh_status_list(
                        session,
                        self.signers(issuer_code),
                        issuer_code,
                        uri=self.status_uri(issuer_code),
                    )
            except StaleFence:
                raise
            except FailedPrecondition:
                continue
            done.append(issuer_code)
        return done

    def revoke(self, principal: Principal, identifier: str, reason: str) -> None:
        """注销: valid or suspended → revoked (final)."""
        self._set_status(principal, identifier, reason, {"valid", "suspended"}, "revoked")

    def suspend(self, principal: Principal, identifier: str, reason: str) -> None:
        """Suspend a valid licence."""
        self._set_status(principal, identifier, reason, {"valid"}, "suspended")

    def resume(self, principal: Principal, identifier: str, reason: str) -> None:
        """Resume a suspended licence."""
        self._set_status(principal, identifier, reason, {"suspended"}, "valid")

    def opened(self, row: LicenceRow, annotations: Sequence[Annotation] = ()) -> StoredLicence:
        """A stored row with its secrets decrypted (and the ``annotations`` given, see
        :meth:`annotations`)."""
        ident = row.identifier
        vault = self.vault
        return StoredLicence(
            row,
            vault.open_text(row.signed_data, SIGNED_DATA, ident),
            vault.open_text(row.qr_payload, QR_PAYLOAD, ident),
            vault.open(row.document_pdf, DOCUMENT, ident) if row.document_pdf else None,
            tuple(annotations),
            vault.open(row.document_ofd, OFD_DOCUMENT, ident) if row.document_ofd else None,
        )

    @staticmethod
    def annotations(
        session: Session, rows: Iterable[LicenceRow]
    ) -> dict[str, tuple[Annotation, ...]]:
        """The annotations leading to each version of ``rows`` (oldest first), by identifier;
        one query for all rows (none when every row is a first version)."""
        later = [r for r in rows if r.version > 1]
        if not later:
            return {}
        found = session.scalars(
            select(LicenceAnnotationRow)
            .where(
                LicenceAnnotationRow.issuer_code.in_({r.issuer_code for r in later}),
                LicenceAnnotationRow.serial.in_({r.serial for r in later}),
            )
            .order_by(LicenceAnnotationRow.version)
        ).all()
        out: dict[str, tuple[Annotation, ...]] = {}
        for row in later:
            out[row.identifier] = tuple(
                Annotation(
                    a.identifier,
                    a.text,
                    tuple(json.loads(a.changed_fields)),
                    a.annotated_by,
                    a.annotated_by_id,
                    as_utc(a.annotated_at),
                )
                for a in found
                if (a.issuer_code, a.type_code, a.serial) == (row.issuer_code, row.type_code,
                                                              row.serial)
                and a.version <= row.version
            )  # fmt: skip
        return out

    def stored(self, identifier: str) -> StoredLicence:
        """A licence version with its signed data, QR payload and document in clear (for the
        adapters that check or hand them out; callers decide who may see what)."""
        with self.db.read() as session:
            row = session.get(LicenceRow, identifier)
            if row is None:
                raise NotFound(f"no licence {identifier}")
            return self.opened(row, self.annotations(session, [row]).get(identifier, ()))

    def get(self, identifier: str) -> LicenceRecord:
        """The registered licence version ``identifier`` as its readers see it (no secrets; see
        :meth:`stored` for its signed data, QR payload and documents in clear). Raises
        ``NotFound``."""
        with self.db.read() as session:
            row = session.get(LicenceRow, identifier)
            if row is None:
                raise NotFound(f"no licence {identifier}")
            return row


def _issued(draft: _Draft) -> IssuedLicence:
    return IssuedLicence(
        draft.metadata.identifier,
        draft.metadata,
        draft.signed_data,
        draft.qr_payload,
        previous=draft.metadata.previous,
        document_pdf=draft.document,
        document_ofd=draft.ofd,
    )


def _reused(issuer_code: str, request_id: str, identifier: str) -> AlreadyExists:
    return AlreadyExists(
        f"request_id {request_id} of department {issuer_code} was used for a different request "
        f"(licence {identifier}); use a new request_id for a new licence"
    )


def _in_progress(request_id: str) -> IssuanceInProgress:
    return IssuanceInProgress(
        f"request_id {request_id} is still being issued by another call; retry with the same "
        "request_id to get its licence"
    )


def _request_id(text: str) -> str:
    """A checked idempotency key: 1-128 printable ASCII characters, no spaces."""
    if len(text) > MAX_REQUEST_ID or not all("!" <= c <= "~" for c in text):
        raise InvalidArgument.field(
            "request_id", f"at most {MAX_REQUEST_ID} printable ASCII characters without spaces"
        )
    return text


def _hex_digest(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data else ""


def _reason(reason: str) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise InvalidArgument.field("reason", "required")
    if len(text) > MAX_REASON or not text.isprintable():
        raise InvalidArgument.field("reason", f"at most {MAX_REASON} printable characters")
    return text
