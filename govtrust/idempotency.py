"""Retries never duplicate: one request ledger for every mutating call that carries a
``request_id``.

A client that loses the acknowledgement of a call retries it with the same ``request_id``. The
ledger (table ``request_ledger``, owned here) is keyed by ``(operation, principal, request_id)``
— the RPC's full name, the caller's actor and the caller's key — and holds the SHA-256 of the
request (the request with its ``request_id`` cleared, as the transport serialises it
deterministically) and, once the call has succeeded, its answer, encrypted at rest (answers
carry personal data). So:

* a retry with the same key and the same request gets the first answer back, and nothing is
  done again (no certificate, seal use, audit record or row);
* the same key with another request is refused (:class:`RequestIdReused`, ALREADY_EXISTS) and
  changes nothing;
* concurrent duplicates collide on the primary key: one claims the key and acts; the others
  wait up to ``wait`` seconds for its answer, then get :class:`RequestInProgress`
  (UNAVAILABLE: retry with the same key).

A claim is taken in a short transaction of its own before the call runs, and the answer stored
in another after it. What ties the claim to the effect *in the effect's transaction* is the
audit record every state change writes there (DESIGN "Security model"): while the claim is
held its random token is bound (:func:`govtrust.audit.bind_claim`) and every record appended
carries it. A claim left pending by a process that died is therefore decided without guessing
once it is ``stale_after`` old: no record carries its token → the effect never committed and a
retry takes the claim over and acts; a record carries it → the effect committed but the answer
was lost, and it is never acted on again. The retry then gets the answer rebuilt from the effect
where the operation's adapter can (:meth:`RequestLedger.wait_for_answer`'s ``rebuild``: the
records carrying the token name each object acted on, and the owning package's read functions
give its state — the answer as the objects stand at the retry; a sealing call's document or
signature is re-produced from the retry's request and bound to the use its lost call recorded),
stored as the key's answer from then on; otherwise it is refused with
:class:`RequestOutcomeUnknown`, which names those objects so the client can look the result up.
A call that fails releases its claim (so a retry acts afresh), unless its effect was recorded;
a call cancelled while its work still runs on a thread releases it once that work has ended
(:meth:`RequestLedger.abandon_after`), never while the effect may still commit.

Licence issuance (``IssueLicense``) keeps its own ledger (``licence_issue_requests``), which
stores the licence identifier in the licence's own transaction; it predates this one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

from sqlalchemy import BigInteger, DateTime, Index, LargeBinary, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from govtrust import audit
from govtrust.db import Base, Database, as_utc, is_connection_fault
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    GovtrustError,
    InvalidArgument,
    PreconditionViolation,
    Unavailable,
)
from govtrust.lease import member_gone, member_has_sessions, this_member

log = logging.getLogger("govtrust.idempotency")

MAX_REQUEST_ID = 128
PENDING = "pending"
DONE = "done"
DEFAULT_WAIT_SECONDS = 2.0  # how long a duplicate waits for the claimant's answer
DEFAULT_STALE_SECONDS = 300.0  # a pending claim older than this belongs to a dead claimant
_POLL_SECONDS = 0.02


class RequestLedgerRow(Base):
    """One ``request_id`` of one caller for one operation, and its answer once there is one."""

    __tablename__ = "request_ledger"
    __table_args__ = (Index("ix_request_ledger_claim_token", "claim_token"),)

    operation: Mapped[str] = mapped_column(String(200), primary_key=True)
    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(MAX_REQUEST_ID), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | done
    claim_token: Mapped[str] = mapped_column(String(64))
    audit_seq: Mapped[int] = mapped_column(BigInteger)  # the audit head when claimed
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    response: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    # the claiming process (govtrust.lease member id; "" when it is no member)
    holder: Mapped[str] = mapped_column(String(200), server_default="", default="")


class ResponseCipher(Protocol):
    """Encrypts stored answers (:class:`hsm.atrest.AtRestCipher` is one)."""

    def encrypt(self, plain: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, aad: bytes, what: str = "value") -> bytes: ...


class RequestIdReused(AlreadyExists):
    """The ``request_id`` was used by this caller for a different request."""


class RequestInProgress(Unavailable):
    """Another call with the same ``request_id`` is still running: retry with the same key."""


class ClaimTakenOver(Unavailable):
    """The call's claim on its ``request_id`` was taken over by a retry (its process was
    presumed dead: cut off from the cluster and the database) before its effect was written:
    nothing was written, and the retry acts instead (:func:`held_claims`)."""

    reason = "REQUEST_TAKEN_OVER"

    def __init__(self) -> None:
        super().__init__(
            "this call's request_id was taken over by a retry while the call was cut off from the"
            " database: nothing was written; the retry's answer is the one that counts"
        )


HELD_CLAIMS_SQL = "SELECT claim_token FROM request_ledger WHERE claim_token = ANY(%s) FOR SHARE"
""":func:`held_claims` for a psycopg (driver-level) writer: the tokens of ``%s`` (a list) that
still hold their keys, each key's row locked until the writer's transaction ends."""


def held_claims(session: Session, tokens: Sequence[str]) -> frozenset[str]:
    """Which of the claim ``tokens`` still hold their keys, read in the caller's write
    transaction and kept so until it ends (PostgreSQL: the ledger rows locked ``FOR SHARE``, so
    a takeover waits for the transaction and then sees its effect; SQLite: the write lock).

    A writer that may write a claimed call's effect late — after its connection died, in a
    transaction of its own (the CA's group commit writes a batch again when the first COMMIT's
    fate was unknown) — writes only the effects whose claims it still holds: a claim taken over
    in the meantime belongs to the retry, which acts instead (:class:`ClaimTakenOver`)."""
    if not tokens:
        return frozenset()
    rows = session.execute(
        select(RequestLedgerRow.claim_token)
        .where(RequestLedgerRow.claim_token.in_(tokens))
        .with_for_update(read=True)
    )
    return frozenset(rows.scalars())


class RequestOutcomeUnknown(FailedPrecondition):
    """The call under this ``request_id`` took effect but its answer was lost (its process
    ended between the two) and cannot be rebuilt: look the result up rather than act again.
    ``effects`` are what the call recorded (one violation each: type ``TOOK_EFFECT``, subject
    the object, description the action); ``token`` is its claim's."""

    def __init__(self, key: RequestKey, token: str, effects: Sequence[audit.ClaimEffect]) -> None:
        named = "; ".join(f"{e.action} on {e.target}" for e in effects)
        super().__init__(
            f"the call with request_id {key.request_id} took effect but its answer was lost; look "
            "the result up (a new request_id would act again)"
            + (f": it recorded {named}" if named else ""),
            [PreconditionViolation("TOOK_EFFECT", e.target, e.action) for e in effects],
        )
        self.key = key
        self.token = token
        self.effects = tuple(effects)


Rebuild = Callable[[Sequence[audit.ClaimEffect]], bytes | None]
"""An operation's answer rebuilt from what its call recorded (its serialised response), or None
when the effects do not determine it. For an operation whose answer is not kept anywhere (a
sealed document, a signature) the hook is made per retry from its request: it re-produces the
answer bound to the recorded effect (:func:`govtrust.rpc.answers.redone_by`); the ledger treats
both alike."""


@dataclass(frozen=True)
class RequestKey:
    """What a ``request_id`` is unique within: the operation and the calling principal."""

    operation: str
    principal: str
    request_id: str

    @property
    def aad(self) -> bytes:
        """Associated data binding a stored answer to its key (a copied answer does not open)."""
        return f"request_ledger\0{self.operation}\0{self.principal}\0{self.request_id}".encode()


class Begun(Enum):
    """What :meth:`RequestLedger.begin` found besides a claim or an answer."""

    BUSY = "busy"  # another call holds the key


@dataclass(frozen=True)
class Claim:
    """A held claim: the key and the token its audit records carry."""

    key: RequestKey
    token: str


@contextlib.contextmanager
def acting_on(claim: Claim) -> Iterator[None]:
    """Run the claimed call: every audit record it appends (in this context, and in the threads
    ``run_sync`` starts from it) carries the claim's token."""
    previous = audit.bind_claim(claim.token)
    try:
        yield
    finally:
        audit.reset_claim(previous)


def request_digest(body: bytes) -> str:
    """The SHA-256 (hex) of a request's canonical bytes."""
    return hashlib.sha256(body).hexdigest()


def check_request_id(request_id: str) -> str:
    """``request_id`` if it is 1..128 printable ASCII characters without spaces, else
    ``InvalidArgument`` on the field ``request_id``."""
    if not (
        0 < len(request_id) <= MAX_REQUEST_ID
        and request_id.isascii()
        and request_id.isprintable()
        and " " not in request_id
    ):
        raise InvalidArgument.field(
            "request_id", f"at most {MAX_REQUEST_ID} printable ASCII characters without spaces"
        )
    return request_id


class RequestLedger:
    """Claims, answers and replays of idempotency keys over one database (one per platform)."""

    def __init__(
        self,
        db: Database,
        cipher: ResponseCipher,
        *,
        wait: float = DEFAULT_WAIT_SECONDS,
        stale_after: float = DEFAULT_STALE_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        member: Callable[[], str] = this_member,
    ) -> None:
        self.db = db
        self.member = member
        self.cipher = cipher
        self.wait = wait
        self.stale_after = timedelta(seconds=stale_after)
        self.clock = clock

    def begin(self, key: RequestKey, digest: str) -> Claim | bytes | Begun:
        """Claim ``key`` for a request of ``digest``: a :class:`Claim` (act, then
        :meth:`finish` or :meth:`abandon`), the first call's answer (bytes: replay it), or
        ``Begun.BUSY`` (another call holds the key). Raises :class:`RequestIdReused` for a
        different request under the key, :class:`RequestOutcomeUnknown` when a dead claimant's
        effect was committed without its answer."""
        for _ in range(2):  # a concurrent claim may win the insert: read it once more
            try:
                return self._begin_once(key, digest)
            except IntegrityError:
                continue
        return Begun.BUSY

    def _begin_once(self, key: RequestKey, digest: str) -> Claim | bytes | Begun:
        made: list[Claim] = []
        try:
            return self._begin_in_transaction(key, digest, made)
        except Exception as exc:
            # A claim whose COMMIT met a dying connection may have landed all the same: this
            # process is alive, so nobody would take it over for ``stale_after``. Free it once
            # the database answers (it did nothing: no audit record carries its token).
            if made and is_connection_fault(exc):
                _later(self._abandon, (made[0],), 1)
            raise

    def _begin_in_transaction(
        self, key: RequestKey, digest: str, made: list[Claim]
    ) -> Claim | bytes | Begun:
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(
                RequestLedgerRow,
                (key.operation, key.principal, key.request_id),
                with_for_update=True,
            )
            if row is None:
                claim = Claim(key, secrets.token_hex(16))
                made.append(claim)
                session.add(self._new_row(session, claim, digest, now))
                session.flush()
                return claim
            if row.request_sha256 != digest:
                raise RequestIdReused(
                    f"request_id {key.request_id} was already used for a different "
                    f"{key.operation.rsplit('.', 1)[-1]} request; use a new request_id for a new "
                    "request"
                )
            if row.state == DONE:
                if row.response is None:
                    raise _outcome_unknown(session, key, row)
                return self.cipher.decrypt(row.response, key.aad, "stored answer")
            if not self._abandoned(session, row, now):
                return Begun.BUSY
            if audit.claim_recorded(session, row.claim_token, row.audit_seq):
                raise _outcome_unknown(session, key, row)
            claim = Claim(key, secrets.token_hex(16))  # the dead claimant did nothing: take over
            made.append(claim)
            row.claim_token, row.claimed_at = claim.token, now
            row.audit_seq = audit.head_seq(session)
            row.holder = self.member()[:200]
            return claim

    def _abandoned(self, session: Session, row: RequestLedgerRow, now: datetime) -> bool:
        """Whether a pending claim's claimant is dead: its process is gone from the cluster
        (membership expired: seconds after a kill -9) and no database session of it is left
        (so no transaction of it can still commit: a partitioned process keeps its sessions
        until the partition heals or TCP keepalives end them); or the claim is ``stale_after``
        old (a claimant that was no member)."""
        if now - as_utc(row.claimed_at) >= self.stale_after:
            return True
        return member_gone(session, row.holder) and not member_has_sessions(session, row.holder)

    def _new_row(
        self, session: Session, claim: Claim, digest: str, now: datetime
    ) -> RequestLedgerRow:
        key = claim.key
        return RequestLedgerRow(
            operation=key.operation,
            principal=key.principal,
            request_id=key.request_id,
            request_sha256=digest,
            state=PENDING,
            claim_token=claim.token,
            audit_seq=audit.head_seq(session),
            claimed_at=now,
            holder=self.member()[:200],
        )

    def wait_for_answer(
        self, key: RequestKey, digest: str, rebuild: Rebuild | None = None
    ) -> Claim | bytes:
        """:meth:`begin` until the key is answered or free, for up to ``wait`` seconds (a
        duplicate of a running call); then :class:`RequestInProgress`. When a call under the
        key took effect but its answer was lost, the answer ``rebuild`` makes of its effects
        (stored as the key's answer), or :class:`RequestOutcomeUnknown` when there is none."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                begun = self.begin(key, digest)
            except RequestOutcomeUnknown as lost:
                return self._rebuilt(lost, rebuild)
            if begun is not Begun.BUSY:
                return begun
            if time.monotonic() >= deadline:
                raise RequestInProgress(
                    f"request_id {key.request_id} is still being handled by another call; retry "
                    "with the same request_id to get its answer"
                )
            time.sleep(_POLL_SECONDS)

    def _rebuilt(self, lost: RequestOutcomeUnknown, rebuild: Rebuild | None) -> bytes:
        """The answer ``rebuild`` makes of ``lost``'s effects, stored under the key while the
        row still holds the lost call's token; else ``lost`` raised. A domain refusal while
        rebuilding (the object is gone, the caller may no longer read it) leaves the outcome
        unknown; a database fault propagates (retryable)."""
        if rebuild is None or not lost.effects:
            raise lost
        try:
            answer = rebuild(lost.effects)
        except GovtrustError as exc:
            if isinstance(exc, Unavailable):
                raise
            raise lost from None
        if answer is None:
            raise lost
        return self._settle(lost.key, lost.token, answer)

    def _settle(self, key: RequestKey, token: str, response: bytes) -> bytes:
        """Store ``response`` as the answer of the call whose claim ``token`` took effect, if
        the key still holds that claim and no answer; the key's answer from then on (the one a
        concurrent retry stored first, when there is one: a re-produced signature differs
        from call to call, and every retry gets the same one)."""
        with self.db.transaction() as session:
            row = session.get(
                RequestLedgerRow,
                (key.operation, key.principal, key.request_id),
                with_for_update=True,
            )
            if row is None or row.claim_token != token:
                return response
            if row.response is not None:
                return self.cipher.decrypt(row.response, key.aad, "stored answer")
            row.state, row.completed_at = DONE, self.clock()
            row.response = self.cipher.encrypt(response, key.aad)
            return response

    def finish(self, claim: Claim, response: bytes) -> None:
        """Store the answer of the claimed call (a retry gets it back from now on). When the
        database cannot be reached, it is stored in the background once it can (see
        :func:`_later`) and the error raised (the caller answers UNAVAILABLE; the retry gets
        the answer)."""
        _or_later(self._finish, claim, response)

    def _finish(self, claim: Claim, response: bytes) -> None:
        key = claim.key
        with self.db.transaction() as session:
            row = session.get(
                RequestLedgerRow,
                (key.operation, key.principal, key.request_id),
                with_for_update=True,
            )
            if row is None or row.claim_token != claim.token:
                return  # taken over meanwhile (the claimant was presumed dead): keep theirs
            row.state, row.completed_at = DONE, self.clock()
            row.response = self.cipher.encrypt(response, key.aad)

    def abandon(self, claim: Claim) -> None:
        """The claimed call failed: free the key for a retry, unless its effect was recorded
        (then the key stays answered with "outcome unknown": acting again could duplicate).
        When the database cannot be reached (often the very failure), in the background once it
        can: this process is alive, so its claim would otherwise hold the key for
        ``stale_after``."""
        _or_later(self._abandon, claim)

    def abandon_after(self, claim: Claim, work: Sequence[Future[object]]) -> None:
        """:meth:`abandon` once every future of ``work`` is done — on the thread that ends the
        last — not before: the call was cancelled while that work still ran, and freeing the
        key first would let a retry act while the first effect may still commit."""
        remaining = [len(work)]
        lock = threading.Lock()

        def one_done(_future: Future[object]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                try:
                    self.abandon(claim)
                except Exception:  # retried in the background, or left to the age bound
                    log.warning("releasing a cancelled call's claim failed", exc_info=True)

        if not work:
            self.abandon(claim)
            return
        for future in work:
            future.add_done_callback(one_done)

    def _abandon(self, claim: Claim) -> None:
        key = claim.key
        with self.db.transaction() as session:
            row = session.get(
                RequestLedgerRow,
                (key.operation, key.principal, key.request_id),
                with_for_update=True,
            )
            if row is None or row.claim_token != claim.token:
                return
            if audit.claim_recorded(session, claim.token, row.audit_seq):
                row.state, row.completed_at = DONE, self.clock()
                return
            session.execute(
                delete(RequestLedgerRow).where(
                    RequestLedgerRow.operation == key.operation,
                    RequestLedgerRow.principal == key.principal,
                    RequestLedgerRow.request_id == key.request_id,
                )
            )

    def count(self, operation: str | None = None) -> int:
        """How many keys the ledger holds (for one operation); for operators and tests."""
        with self.db.read() as session:
            query = select(RequestLedgerRow.request_id)
            if operation is not None:
                query = query.where(RequestLedgerRow.operation == operation)
            return len(session.scalars(query).all())

    def forget_before(self, moment: datetime) -> int:
        """Delete the answered keys completed before ``moment`` (retention: a client retries
        within minutes, not days); how many were deleted."""
        with self.db.transaction() as session:
            result = session.execute(
                delete(RequestLedgerRow).where(
                    RequestLedgerRow.state == DONE, RequestLedgerRow.completed_at < moment
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)


LATER_TRIES = 120
LATER_PAUSE_SECONDS = 0.5


def _or_later(step: Callable[..., None], *args: object) -> None:
    """Run ``step`` now; on a database connection fault, run it again in the background every
    ``LATER_PAUSE_SECONDS`` (for up to a minute) until it gets through, and raise the fault.
    The steps check the claim's token under its row lock, so a late run changes nothing once
    another call took the key over."""
    try:
        step(*args)
    except Exception as exc:
        if is_connection_fault(exc):
            _later(step, args, 1)
        raise


def _later(step: Callable[..., None], args: tuple[object, ...], tries: int) -> None:
    def attempt() -> None:
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - retried, or left to the age bound
            if is_connection_fault(exc) and tries < LATER_TRIES:
                _later(step, args, tries + 1)

    timer = threading.Timer(LATER_PAUSE_SECONDS, attempt)
    timer.daemon = True
    timer.start()


def _outcome_unknown(
    session: Session, key: RequestKey, row: RequestLedgerRow
) -> RequestOutcomeUnknown:
    return RequestOutcomeUnknown(
        key, row.claim_token, audit.claim_effects(session, row.claim_token, row.audit_seq)
    )
