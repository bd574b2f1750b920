"""Issuing many licences in one call, each row on its own (存量证照电子化: bulk import).

:meth:`LicenceService.issue_rows <license.issuance.LicenceService.issue_rows>` takes rows, each
a department's **source key** (the paper licence's number in the old register, say) and an
:class:`~license.issuance.IssueRequest`, and answers one :class:`RowOutcome` per row, in order:
the identifier issued, the identifier an earlier import already issued for the key
(``existing``), or the specific reason the row was refused. A refused row changes nothing and
does not stop the others.

The three steps of :mod:`license.issuance` run once per call, not per row:

1. one read of the keys already imported (``licence_sources``), then every other row validated
   (type, the caller's right, fields, validity, holder active in the registry) and each
   department's active seal looked up once; in one short transaction the identifiers are checked
   free and the status indexes reserved;
2. outside any transaction: each row signed (JWS, QR payload), its documents rendered and sealed
   at B-T;
3. one transaction for all: the licence rows, the seal's uses, the audit records and the source
   keys. The source key is stored with its licence, so a row is issued exactly once whatever
   happens: a crash before step 3 commits leaves nothing (but unused status indexes, harmless), a
   crash after leaves every row of the call issued and their keys recorded.

A concurrent import of the same key collides on the primary key in step 3: the call then looks
at the keys again and stores the rows that are still new (the others answer ``existing``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.tsa_ledger import DeferredRecords, deferring, submit_together
from govtrust import audit
from govtrust.errors import (
    FailedPrecondition,
    GovtrustError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from govtrust.principal import Principal
from idp.types import LegalPerson
from license.catalogue import LicenceType, get_type
from license.identifiers import build_identifier
from license.models import LicenceRow, LicenceSourceRow
from license.signed_data import LicenceMetadata
from license.status_list import allocate_index

if TYPE_CHECKING:
    from license.issuance import IssueRequest, LicenceService, _Draft, _Prepared
    from license.signer import LicenceSigner
    from seal.lifecycle import Use, UseContext

MAX_SOURCE_KEY = 128
SIGN_THREADS = 2
_SIGNERS = ThreadPoolExecutor(SIGN_THREADS, thread_name_prefix="licence-bulk-sign")
_PREPARERS = ThreadPoolExecutor(4, thread_name_prefix="licence-bulk-check")
STORE_ATTEMPTS = 3

# Reasons a row is refused (RowOutcome.reason).
MALFORMED = "MALFORMED_ROW"  # the reader could not read the row (license.bulk)
DUPLICATE = "DUPLICATE_SOURCE_KEY"  # the key came earlier in the same input
INVALID = "INVALID_ARGUMENT"  # a field, date, code or name is wrong
UNKNOWN_TYPE = "UNKNOWN_TYPE"  # the type is not in the catalogue
NOT_AUTHORISED = "NOT_AUTHORISED"  # the caller may not issue for the department or type
HOLDER_NOT_FOUND = "HOLDER_NOT_FOUND"  # no such holder in the identity registry
HOLDER_NOT_ACTIVE = "HOLDER_NOT_ACTIVE"
NO_ACTIVE_SEAL = "NO_ACTIVE_SEAL"  # the department has no active official seal
IDENTIFIER_TAKEN = "IDENTIFIER_TAKEN"  # the row's explicit serial is issued already
SOURCE_KEY_REUSED = "SOURCE_KEY_REUSED"  # the key was imported with another body
SEALING_FAILED = "SEALING_FAILED"  # signing or sealing the row failed
REASONS = (
    MALFORMED, DUPLICATE, INVALID, UNKNOWN_TYPE, NOT_AUTHORISED, HOLDER_NOT_FOUND,
    HOLDER_NOT_ACTIVE, NO_ACTIVE_SEAL, IDENTIFIER_TAKEN, SOURCE_KEY_REUSED, SEALING_FAILED,
)  # fmt: skip


@dataclass(frozen=True)
class SourceRow:
    """One row of a bulk import: the department's source key and what to issue for it."""

    source_key: str
    request: IssueRequest


@dataclass(frozen=True)
class RowOutcome:
    """What became of one row: ``identifier`` (issued now, or ``existing``: by an earlier
    import), or ``reason`` (one of :data:`REASONS`) and ``message`` when it was refused."""

    source_key: str
    identifier: str = ""
    existing: bool = False
    reason: str = ""
    message: str = ""

    @property
    def issued(self) -> bool:
        """Whether the row has its licence (now or earlier)."""
        return bool(self.identifier)

    @property
    def status(self) -> str:
        """``issued``, ``existing`` or ``refused``."""
        if not self.identifier:
            return "refused"
        return "existing" if self.existing else "issued"


def refused(source_key: str, reason: str, message: str) -> RowOutcome:
    """A refusal of one row."""
    return RowOutcome(source_key, reason=reason, message=message)


def check_source_key(text: str) -> str:
    """A source key as stored: 1-128 printable characters, no surrounding spaces;
    :class:`InvalidArgument` otherwise."""
    if not text or text != text.strip() or len(text) > MAX_SOURCE_KEY or not text.isprintable():
        raise InvalidArgument.field(
            "source_key", f"1-{MAX_SOURCE_KEY} printable characters, no surrounding spaces"
        )
    return text


class StreamedImport:
    """A bulk import that arrives in chunks (a gRPC stream): a source key the stream sent
    before is refused as a duplicate, across chunks; each chunk is issued through
    :func:`issue_rows` in at most two calls (rows with documents, rows without)."""

    def __init__(self, service: LicenceService, principal: Principal) -> None:
        self._service = service
        self._principal = principal
        self._seen: set[tuple[str, str]] = set()

    def issue_chunk(
        self, rows: Sequence[tuple[int, SourceRow | RowOutcome, bool]]
    ) -> list[tuple[int, RowOutcome]]:
        """Each ``(position, row or its refusal, with document)`` answered as
        ``(position, outcome)``: the refusals first, then the issued batches."""
        out: list[tuple[int, RowOutcome]] = []
        batches: dict[bool, list[tuple[int, SourceRow]]] = {True: [], False: []}
        for position, row, document in rows:
            if isinstance(row, RowOutcome):
                out.append((position, row))
                continue
            scope = (row.request.issuer_code, row.source_key)
            if scope in self._seen:
                message = f"source key {row.source_key} came earlier in the stream"
                out.append((position, refused(row.source_key, DUPLICATE, message)))
                continue
            self._seen.add(scope)
            batches[document].append((position, row))
        for document, batch in batches.items():
            if batch:
                outcomes = self._service.issue_rows(
                    self._principal, [row for _, row in batch], document=document
                )
                out += [(i, o) for (i, _), o in zip(batch, outcomes, strict=True)]
        return out


def _message(exc: GovtrustError) -> str:
    parts = [exc.message]
    parts += [f"{v.field}: {v.description}" for v in getattr(exc, "violations", [])]
    return "; ".join(dict.fromkeys(p for p in parts if p))


@dataclass
class _Pending:
    """A row that passed validation, between step 1 and step 3."""

    position: int
    key: str
    digest: str
    prepared: _Prepared
    identifier: str = ""
    draft: _Draft | None = None
    tokens: DeferredRecords | None = None  # its time-stamp tokens' records (step 2)


def issue_rows(
    service: LicenceService,
    principal: Principal,
    rows: Sequence[SourceRow],
    *,
    document: bool = True,
) -> list[RowOutcome]:
    """Issue ``rows`` one outcome each, in order (see the module doc)."""
    from license.issuance import request_sha256

    outcomes: list[RowOutcome | None] = [None] * len(rows)
    seen: set[tuple[str, str]] = set()
    digests: dict[int, str] = {}
    for i, row in enumerate(rows):
        try:
            check_source_key(row.source_key)
        except InvalidArgument as exc:
            outcomes[i] = refused(row.source_key, MALFORMED, _message(exc))
            continue
        scope = (row.request.issuer_code, row.source_key)
        if scope in seen:
            outcomes[i] = refused(
                row.source_key, DUPLICATE, f"source key {row.source_key} came earlier in the input"
            )
            continue
        seen.add(scope)
        digests[i] = request_sha256(row.request, document=document)
    _answer_imported(service, rows, digests, outcomes)

    # Step 1a: validate every remaining row; each department's signer and seal once.
    now = service._clock()
    types: dict[str, LicenceType] = {}
    departments: dict[str, tuple[LicenceSigner, UseContext | None] | GovtrustError] = {}
    # The rows' look-ups (type, registry, seal) are mostly database round trips: overlapped.
    pending: list[_Pending] = []
    candidates = [i for i in range(len(rows)) if outcomes[i] is None]
    holders = service._known_holders(rows[i].request for i in candidates)
    lookups = threading.Lock()
    checked = _PREPARERS.map(
        lambda i: _prepare(
            service, principal, rows[i], types, departments, document, holders, lookups
        ),
        candidates,
    )
    for i, prepared_or_refusal in zip(candidates, checked, strict=True):
        if isinstance(prepared_or_refusal, RowOutcome):
            outcomes[i] = prepared_or_refusal
        else:
            pending.append(_Pending(i, rows[i].source_key, digests[i], prepared_or_refusal))
    # Step 1b: identifiers free, status indexes reserved.
    pending = _reserve(service, pending, outcomes, departments, now)
    # Step 2: sign and seal outside any transaction.
    # The time-stamp tokens' records are held back, not committed one by one: the chunk's
    # tokens are queued together, share one of the ledger's commits, and every one is checked
    # recorded before step 3.
    ready: list[_Pending] = []
    signed = _SIGNERS.map(lambda item: _sign(service, item, departments), pending)
    for item, outcome in zip(pending, signed, strict=True):
        if isinstance(outcome, DeferredRecords):
            ready.append(item)
            item.tokens = outcome
        else:
            outcomes[item.position] = outcome
    submit_together(item.tokens for item in ready if item.tokens is not None)
    for item in list(ready):
        assert item.tokens is not None
        error = item.tokens.wait()
        if error is not None:
            ready.remove(item)
            outcomes[item.position] = refused(
                item.key, SEALING_FAILED, f"its time-stamp could not be recorded: {error}"
            )
    # Step 3: one transaction for the licences, seal uses, audit records and source keys.
    for _ in range(STORE_ATTEMPTS):
        if not ready:
            break
        try:
            _store(service, principal, ready, now)
        except IntegrityError:
            # A concurrent import stored some of these keys (or serials) first: look again.
            still = _answer_imported(service, rows, {p.position: p.digest for p in ready}, outcomes)
            ready = [p for p in ready if p.position in still]
            ready = _still_free(service, ready, outcomes)
            continue
        for item in ready:
            outcomes[item.position] = RowOutcome(item.key, identifier=item.identifier)
        ready = []
    for item in ready:
        outcomes[item.position] = refused(
            item.key, IDENTIFIER_TAKEN, "issued concurrently by another import; import it again"
        )
    return [o if o is not None else refused(rows[i].source_key, INVALID, "not issued")
            for i, o in enumerate(outcomes)]  # fmt: skip


def _answer_imported(
    service: LicenceService,
    rows: Sequence[SourceRow],
    digests: dict[int, str],
    outcomes: list[RowOutcome | None],
) -> set[int]:
    """Answer the rows whose key an earlier import issued (or refuse a reuse with another body);
    the positions of ``digests`` still new."""
    by_issuer: dict[str, list[int]] = {}
    for i in digests:
        by_issuer.setdefault(rows[i].request.issuer_code, []).append(i)
    found: dict[tuple[str, str], tuple[str, str]] = {}
    if by_issuer:
        with service.db.read() as session:
            for issuer, positions in by_issuer.items():
                keys = [rows[i].source_key for i in positions]
                for start in range(0, len(keys), 500):
                    for key, ident, digest in session.execute(
                        select(
                            LicenceSourceRow.source_key,
                            LicenceSourceRow.identifier,
                            LicenceSourceRow.request_sha256,
                        ).where(
                            LicenceSourceRow.issuer_code == issuer,
                            LicenceSourceRow.source_key.in_(keys[start : start + 500]),
                        )
                    ):
                        found[(issuer, key)] = (ident, digest)
    new: set[int] = set()
    for i, digest in digests.items():
        row = rows[i]
        hit = found.get((row.request.issuer_code, row.source_key))
        if hit is None:
            new.add(i)
        elif hit[1] == digest:
            outcomes[i] = RowOutcome(row.source_key, identifier=hit[0], existing=True)
        else:
            outcomes[i] = refused(
                row.source_key,
                SOURCE_KEY_REUSED,
                f"source key {row.source_key} was imported with different content (licence "
                f"{hit[0]}); give the row a new source key for a new licence",
            )
    return new


def _department(
    service: LicenceService, issuer: str, document: bool
) -> tuple[LicenceSigner, UseContext | None] | GovtrustError:
    try:
        signer = service.signers(issuer)
        context = None
        if document and service.documents is not None and service.seals is not None:
            context = service.seals.context(issuer)
    except GovtrustError as exc:
        return exc
    return signer, context


def _prepare(
    service: LicenceService,
    principal: Principal,
    row: SourceRow,
    types: dict[str, LicenceType],
    departments: dict[str, tuple[LicenceSigner, UseContext | None] | GovtrustError],
    document: bool,
    holders: Mapping[str, LegalPerson],
    lookups: threading.Lock,
) -> _Prepared | RowOutcome:
    key, request = row.source_key, row.request
    if request.request_id:
        return refused(key, INVALID, "request_id: bulk rows are keyed by their source key")
    if request.type_code not in types:
        with lookups:  # once per type and call, not once per checking thread
            try:
                if request.type_code not in types:
                    with service.db.read() as session:
                        types[request.type_code] = get_type(session, request.type_code)
            except NotFound as exc:
                return refused(key, UNKNOWN_TYPE, exc.message)
            except InvalidArgument as exc:
                return refused(key, INVALID, _message(exc))
    try:
        prepared = service._prepare(principal, request, 0, 1, types, holders)
    except InvalidArgument as exc:
        return refused(key, INVALID, _message(exc))
    except PermissionDenied as exc:
        return refused(key, NOT_AUTHORISED, exc.message)
    except NotFound as exc:
        return refused(key, HOLDER_NOT_FOUND, exc.message)
    except FailedPrecondition as exc:
        return refused(key, HOLDER_NOT_ACTIVE, exc.message)
    issuer = request.issuer_code
    if issuer not in departments:
        with lookups:  # its signer and seal read once per call, not once per checking thread
            if issuer not in departments:
                departments[issuer] = _department(service, issuer, document)
    department = departments[issuer]
    if isinstance(department, GovtrustError):
        reason = NO_ACTIVE_SEAL if isinstance(department, FailedPrecondition) else INVALID
        return refused(key, reason, department.message)
    return prepared


def _reserve(
    service: LicenceService,
    pending: list[_Pending],
    outcomes: list[RowOutcome | None],
    departments: dict[str, tuple[LicenceSigner, UseContext | None] | GovtrustError],
    now: datetime,
) -> list[_Pending]:
    """Identifiers built and checked free; the status indexes of the rows left reserved."""
    allow = service.registry.uscc_allow_list
    taken_in_input: set[str] = set()
    kept: list[_Pending] = []
    for item in pending:
        p = item.prepared
        item.identifier = str(
            build_identifier(
                p.licence_type.type_code, p.request.issuer_code, p.serial, 1, allow_list=allow
            )
        )
        if item.identifier in taken_in_input:
            outcomes[item.position] = refused(
                item.key, IDENTIFIER_TAKEN, f"serial {p.serial} came earlier in the input"
            )
            continue
        taken_in_input.add(item.identifier)
        kept.append(item)
    if not kept:
        return kept
    with service.db.transaction() as session:
        existing = _issued_identifiers(session, [p.identifier for p in kept])
        free = []
        for item in kept:
            if item.identifier in existing:
                outcomes[item.position] = refused(
                    item.key,
                    IDENTIFIER_TAKEN,
                    f"a licence {item.identifier} exists (serial {item.prepared.serial})",
                )
            else:
                free.append(item)
        per_issuer: dict[str, list[_Pending]] = {}
        for item in free:
            per_issuer.setdefault(item.prepared.request.issuer_code, []).append(item)
        for issuer, items in sorted(per_issuer.items()):
            first = allocate_index(session, issuer, len(items))
            for offset, item in enumerate(items):
                department = departments[issuer]
                assert not isinstance(department, GovtrustError)
                item.draft = _new_draft(service, item, department[0], first + offset, now)
    return free


def _issued_identifiers(session: Session, identifiers: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(identifiers), 500):
        found.update(
            session.scalars(
                select(LicenceRow.identifier).where(
                    LicenceRow.identifier.in_(identifiers[start : start + 500])
                )
            )
        )
    return found


def _still_free(
    service: LicenceService, ready: list[_Pending], outcomes: list[RowOutcome | None]
) -> list[_Pending]:
    with service.db.read() as session:
        existing = _issued_identifiers(session, [p.identifier for p in ready])
    kept = []
    for item in ready:
        if item.identifier in existing:
            outcomes[item.position] = refused(
                item.key, IDENTIFIER_TAKEN, f"a licence {item.identifier} was issued meanwhile"
            )
        else:
            kept.append(item)
    return kept


def _new_draft(
    service: LicenceService,
    item: _Pending,
    signer: LicenceSigner,
    status_index: int,
    now: datetime,
) -> _Draft:
    from license.days import licence_day
    from license.issuance import _Draft

    request, licence_type, fields, valid_from, valid_until, holder, serial = item.prepared
    metadata = LicenceMetadata(
        name=licence_type.name,
        type_code=licence_type.type_code,
        number=request.number or serial,
        identifier=item.identifier,
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
        status_uri=service.status_uri(request.issuer_code),
    )
    return _Draft(request, licence_type, holder[0], metadata, signer)


def _sign(
    service: LicenceService,
    item: _Pending,
    departments: dict[str, tuple[LicenceSigner, UseContext | None] | GovtrustError],
) -> RowOutcome | DeferredRecords:
    """Sign and seal one row (no transaction); a refusal if that fails for this row, else its
    time-stamp tokens, whose records the caller must wait for before storing the row."""
    assert item.draft is not None
    department = departments[item.prepared.request.issuer_code]
    assert not isinstance(department, GovtrustError)
    tokens = DeferredRecords()
    try:
        with deferring(tokens):
            service._sign(item.draft, department[1])
    except GovtrustError as exc:
        return refused(item.key, SEALING_FAILED, _message(exc))
    return tokens


def _store(
    service: LicenceService, principal: Principal, ready: Sequence[_Pending], now: datetime
) -> None:
    """Step 3 for every row of ``ready``: one short transaction of multi-row statements — the
    licence rows, each department seal's uses (one increment of its history, so the seal's row
    is locked once), the audit records (one chain lock) and the source keys."""
    from license.issuance import _hex_digest

    drafts = [item.draft for item in ready if item.draft is not None]
    assert len(drafts) == len(ready)
    uses: dict[str, tuple[UseContext, list[Use]]] = {}
    if service.seals is not None:
        for draft in drafts:
            if draft.context is not None:
                found = service._uses(draft)
                if found:
                    uses.setdefault(draft.context.seal.id, (draft.context, []))[1].extend(found)
    rows = [service._row_values(draft, now) for draft in drafts]  # encrypted before the lock
    entries = [
        audit.Entry(
            principal.actor,
            "licence.issue",
            draft.metadata.identifier,
            audit.canonical_json(
                {
                    "type": draft.licence_type.type_code,
                    "holder": draft.holder_id,
                    "source_key": item.key,
                    "document_sha256": _hex_digest(draft.document),
                    "ofd_sha256": _hex_digest(draft.ofd),
                }
            ).decode(),
        )
        for item, draft in zip(ready, drafts, strict=True)
    ]
    with service.db.transaction() as session:
        # Core statements (the tables'): the ORM's bulk insert handles each row's dict again
        session.execute(insert(cast(Table, LicenceRow.__table__)), rows)
        if service.seals is not None:
            for context, seal_uses in uses.values():
                service.seals.seals.record_uses(principal, context, seal_uses, session)
        audit.append_many(session, entries)
        session.execute(
            insert(cast(Table, LicenceSourceRow.__table__)),
            [
                {
                    "issuer_code": item.prepared.request.issuer_code,
                    "source_key": item.key,
                    "identifier": item.identifier,
                    "request_sha256": item.digest,
                    "imported_by": principal.actor[:200],
                    "imported_at": now,
                }
                for item in ready
            ],
        )
