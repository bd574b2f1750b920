"""The issuance write path: group commit (batches, failure isolation, unknown commit outcomes,
lost connections), the intake threads the gRPC servicer uses, and OCSP answers right after
issuance. Runs on SQLite and PostgreSQL (the connection tests on PostgreSQL only)."""

from __future__ import annotations

import contextvars
import threading
import time
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import pytest
from cryptography import x509 as cx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text, update

from ca import issuance, store
from ca.authority import CertificateAuthority
from ca.intake import IssueIntake
from ca.issuance import IssueRequest, Prepared, ServiceSubject, SubjectSpec
from ca.models import CaCertificate, CaOcspResponse
from ca.store import GroupCommitter, PendingIssue, _CommitOutcomeUnknown
from govtrust import audit
from govtrust.audit import PG_AUDIT_LOCK, AuditRecord, Finding, verify_chain
from govtrust.db import CONNECT_TIMEOUT_SECONDS, Database, as_utc
from govtrust.errors import InvalidArgument
from govtrust.idempotency import ClaimTakenOver, RequestLedgerRow
from hsm import MasterKey
from hsm.audit_key import AuditChainKey
from tests.ca.conftest import OPERATOR, make_csr, ocsp_query
from tests.conftest import PG_ADMIN_URL
from tests.unchanged import unchanged

SERVICE = SubjectSpec(service=ServiceSubject("bizsys-01", ("approval.example.gov.cn",)))


def _request() -> IssueRequest:
    return IssueRequest("service", SERVICE, csr=make_csr())


def _ocsp_status(authority: CertificateAuthority, row: CaCertificate) -> str:
    response = ocsp_query(authority, row)
    basic = response.basic_ocsp_response
    responder = authority.hierarchy.responder(row.issuer)
    public = cx.load_der_x509_certificate(responder.der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(  # signed by the CA's delegated responder
        basic["signature"].native,
        basic["tbs_response_data"].dump(),
        ec.ECDSA(cx.load_der_x509_certificate(responder.der).signature_hash_algorithm),  # type: ignore[arg-type]
    )
    single = basic["tbs_response_data"]["responses"][0]
    name: str = single["cert_status"].name
    return name


def _wait_all(committer: GroupCommitter, items: list[PendingIssue]) -> None:
    finished = threading.Semaphore(0)
    for item in items:
        item.on_done = lambda _item: finished.release()
    committer.submit_many(items)
    for _ in items:
        assert finished.acquire(timeout=60)


def _count(db: Database, model: Any) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_concurrent_issuances_are_all_stored_audited_and_answered(
    authority: CertificateAuthority,
) -> None:
    issued: list[CaCertificate] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                issued.append(authority.issue(OPERATOR, _request()).certificate)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert len(issued) == 30
    db = authority.ctx.db
    assert _count(db, CaCertificate) == 30
    assert _count(db, CaOcspResponse) == 30
    with db.read() as session:
        assert verify_chain(session).ok
        details = " ".join(
            session.scalars(select(AuditRecord.details).where(AuditRecord.action == "ca.issue"))
        )
    for row in issued:
        assert f"certificate/service/{row.serial}" in details
        assert _ocsp_status(authority, row) == "good"  # from the cache, at once
    authority.ctx.ocsp_cache.invalidate()
    for row in issued[:5]:
        assert _ocsp_status(authority, row) == "good"  # from the stored response


def test_a_bad_item_fails_alone(authority: CertificateAuthority) -> None:
    ctx = authority.ctx
    prepared = [issuance.prepare(ctx, OPERATOR, _request()) for _ in range(3)]
    prepared[1].pending.certificate["issuer"] = "no-such-ca"  # foreign key violation
    prepared[1].pending.certificate["id"] = prepared[1].pending.ocsp["certificate_id"] = "x" * 32
    _wait_all(ctx.committer, [p.pending for p in prepared])
    assert prepared[0].pending.error is None and prepared[2].pending.error is None
    assert prepared[1].pending.error is not None
    # the batch committed its two good items beside the bad one (the counts below); finishing
    # the bad one stores nothing more
    with unchanged(ctx.db, ctx.keystore), pytest.raises(type(prepared[1].pending.error)):
        prepared[1].finish(ctx)
    assert _count(ctx.db, CaCertificate) == 2
    with ctx.db.read() as session:
        assert verify_chain(session).ok
        assert session.get(CaCertificate, "x" * 32) is None


def test_finish_before_commit_is_refused(authority: CertificateAuthority) -> None:
    prepared = issuance.prepare(authority.ctx, OPERATOR, _request())
    with unchanged(authority.ctx.db, authority.ctx.keystore), pytest.raises(RuntimeError):
        prepared.finish(authority.ctx)
    assert _count(authority.ctx.db, CaCertificate) == 0


def test_intake_runs_in_the_callers_context_and_reports_after_commit(
    authority: CertificateAuthority,
) -> None:
    ctx = authority.ctx
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="")
    seen: list[str] = []
    results: list[tuple[Prepared | None, BaseException | None, bool]] = []
    finished = threading.Semaphore(0)

    def good() -> Prepared:
        seen.append(marker.get())
        return issuance.prepare(ctx, OPERATOR, _request())

    def bad() -> Prepared:
        return issuance.prepare(ctx, OPERATOR, IssueRequest("service", SERVICE, csr=b"junk"))

    def done(prepared: Prepared | None, error: BaseException | None) -> None:
        stored = False
        if prepared is not None:
            with ctx.db.read() as session:
                stored = session.get(CaCertificate, prepared.row.id) is not None
        results.append((prepared, error, stored))
        finished.release()

    token = marker.set("request-1")
    try:
        ctx.intake.submit(good, done)
        ctx.intake.submit(bad, done)
    finally:
        marker.reset(token)
    for _ in range(2):
        assert finished.acquire(timeout=60)
    assert seen == ["request-1"]
    ok = [r for r in results if r[0] is not None]
    failed = [r for r in results if r[1] is not None]
    assert len(ok) == 1 and ok[0][2], "reported only once stored"
    assert len(failed) == 1 and isinstance(failed[0][1], InvalidArgument)
    prepared = ok[0][0]
    assert prepared is not None
    issued = prepared.finish(ctx)
    assert _ocsp_status(authority, issued.certificate) == "good"
    assert _count(ctx.db, CaCertificate) == 1


@pytest.mark.postgresql_only
def test_unknown_commit_outcome_is_resolved_by_looking(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection lost after COMMIT was sent: a batch that was stored succeeds, one that
    was not is written again."""
    ctx = authority.ctx
    committer = ctx.committer
    original = committer._write_postgres
    calls = {"n": 0}

    def lost_after_commit(batch: list[PendingIssue]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            original(batch)  # committed, then "the connection broke"
        if calls["n"] <= 2:
            raise _CommitOutcomeUnknown("lost") from psycopg.OperationalError("lost")
        original(batch)

    monkeypatch.setattr(committer, "_write_postgres", lost_after_commit)
    stored = [issuance.prepare(ctx, OPERATOR, _request()) for _ in range(2)]
    _wait_all(committer, [p.pending for p in stored])  # committed: found, no error
    assert all(p.pending.error is None for p in stored)
    lost = [issuance.prepare(ctx, OPERATOR, _request()) for _ in range(2)]
    _wait_all(committer, [p.pending for p in lost])  # not committed: retried one by one
    assert all(p.pending.error is None for p in lost)
    assert _count(ctx.db, CaCertificate) == 4
    with ctx.db.read() as session:
        assert verify_chain(session).ok


def _terminate_backends(db: Database) -> int:
    name = db.engine.url.database
    with psycopg.connect(
        PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgresql_only
def test_issuance_survives_dropped_database_connections(authority: CertificateAuthority) -> None:
    """Pooled connections killed by the server (restart, pg_terminate_backend) are noticed
    on checkout and replaced: nothing fails afterwards (no per-checkout ping any more)."""
    db = authority.ctx.db
    authority.issue(OPERATOR, _request())
    with db.read() as session:
        session.execute(text("SELECT 1"))
    assert _terminate_backends(db) >= 1
    issued = authority.issue(OPERATOR, _request())  # the committer's connection was killed
    with db.read() as session:  # so was every pooled one
        assert session.get(CaCertificate, issued.certificate.id) is not None
    assert _count(db, CaCertificate) == 2


@pytest.mark.postgresql_only
def test_commit_retries_once_when_the_connection_drops_before_commit(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = authority.ctx
    committer = ctx.committer
    original = committer._write_postgres
    calls = {"n": 0}

    def dropped_once(batch: list[PendingIssue]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        original(batch)

    monkeypatch.setattr(committer, "_write_postgres", dropped_once)
    issued = authority.issue(OPERATOR, _request())
    assert calls["n"] == 2
    assert _ocsp_status(authority, issued.certificate) == "good"


def test_certificate_message_matches_a_parse_of_the_der(authority: CertificateAuthority) -> None:
    """``certificate_pb`` fills the summary from the row; it must say what parsing says, for
    a fresh row and for one read back from the database (naive datetimes on SQLite)."""
    from govtrust.api.certificate import certificate_pb, summary_pb

    fresh = authority.issue(OPERATOR, _request()).certificate
    stored = authority.get(fresh.id)
    for row in (fresh, stored):
        parsed = summary_pb(row.der, profile=row.profile, issuer_ca=row.issuer)
        assert certificate_pb(row).summary == parsed
    message = certificate_pb(stored)
    assert message.issued_at.seconds == int(fresh.issued_at.timestamp())
    assert not message.HasField("revoked_at") and not message.HasField("invalidity_date")
    revoked = authority.revoke(OPERATOR, fresh.id, reason=1, comment="key compromise")
    message = certificate_pb(revoked)
    assert message.HasField("revoked_at") and message.revocation_reason == 1


def test_the_returned_row_is_the_stored_row(authority: CertificateAuthority) -> None:
    fresh = authority.issue(OPERATOR, _request()).certificate
    stored = authority.get(fresh.id)
    for column in CaCertificate.__table__.columns:
        mine, theirs = getattr(fresh, column.key), getattr(stored, column.key)
        if isinstance(mine, datetime):  # SQLite hands back naive UTC
            assert as_utc(mine) == as_utc(theirs), column.key
        else:
            assert mine == theirs, column.key


# --- unknown commit outcomes, lost databases and the intake threads ---------------------------


def _generated_key_request() -> IssueRequest:
    return IssueRequest("service", SERVICE, generate_key_algorithm="ec-p256")


def _spy_destroy(authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    destroyed: list[Any] = []
    original = authority.ctx.keystore.destroy

    def destroy(ref: Any) -> None:
        destroyed.append(ref)
        original(ref)

    monkeypatch.setattr(authority.ctx.keystore, "destroy", destroy)
    return destroyed


@pytest.mark.postgresql_only
def test_the_look_up_waits_for_a_commit_still_in_flight(authority: CertificateAuthority) -> None:
    """After a lost connection the old backend may still be committing: the look-up takes the
    audit chain's lock first, so it sees the outcome instead of a snapshot from before it."""
    ctx = authority.ctx
    item = issuance.prepare(ctx, OPERATOR, _request()).pending
    url = ctx.db.engine.url.render_as_string(hide_password=False)
    answers: list[bool] = []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as old:
        old.execute("SELECT pg_advisory_xact_lock(%s)", (PG_AUDIT_LOCK,))
        old.execute(store._CERT_SQL, tuple([item.certificate[c] for c in store._CERT_INSERT]))
        old.execute(store._OCSP_SQL, tuple([item.ocsp[c] for c in store._OCSP_COLUMNS]))
        looking = threading.Thread(target=lambda: answers.append(ctx.committer._stored([item])))
        looking.start()
        looking.join(1.0)
        assert looking.is_alive(), "the look-up must wait for the lock"
        old.commit()  # the "lost" transaction finishes its commit
    looking.join(30)
    assert answers == [True]


def test_a_rewrite_that_finds_its_own_row_counts_as_stored(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown outcome, the look-up says "not stored" (stale), the rewrite hits the unique key
    on the certificate id: the original commit landed, so the issuance succeeded and the
    generated key is kept."""
    ctx = authority.ctx
    committer = ctx.committer
    original = committer._write
    calls = {"n": 0}

    def committed_then_lost(batch: list[PendingIssue]) -> None:
        calls["n"] += 1
        original(batch)
        if calls["n"] == 1:
            raise _CommitOutcomeUnknown("lost") from psycopg.OperationalError("lost")

    monkeypatch.setattr(committer, "_write", committed_then_lost)
    monkeypatch.setattr(committer, "_stored", lambda *_args: False)
    destroyed = _spy_destroy(authority, monkeypatch)
    issued = authority.issue(OPERATOR, _generated_key_request())
    assert issued.key is not None and not destroyed
    calls["n"] = 0
    batch = [issuance.prepare(ctx, OPERATOR, _request()) for _ in range(3)]
    _wait_all(committer, [p.pending for p in batch])
    assert [p.pending.error for p in batch] == [None, None, None]
    assert _count(ctx.db, CaCertificate) == 4
    with ctx.db.read() as session:
        assert verify_chain(session).ok


def test_an_unresolved_commit_outcome_is_unavailable_and_keeps_the_key(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown outcome and the database still unreachable for the look-up: the caller gets
    CommitOutcomeUnknown (UNAVAILABLE) and the generated key is not destroyed — the
    certificate may be stored."""
    from govtrust.rpc.status import classify

    committer = authority.ctx.committer

    def lost(_batch: list[PendingIssue]) -> None:
        raise _CommitOutcomeUnknown("lost") from psycopg.OperationalError("lost")

    def down(*_args: object) -> bool:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(committer, "_write", lost)
    monkeypatch.setattr(committer, "_stored", down)
    destroyed = _spy_destroy(authority, monkeypatch)
    keys = len(authority.ctx.keystore.list())
    # the generated key is kept on purpose (the certificate may be stored): its row in
    # hsm_keys is the one change; no certificate, OCSP response or audit record is written
    with (
        unchanged(authority.ctx.db, allow=["hsm_keys"]),
        pytest.raises(store.CommitOutcomeUnknown) as info,
    ):
        authority.issue(OPERATOR, _generated_key_request())
    assert not destroyed and len(authority.ctx.keystore.list()) == keys + 1
    mapped = classify(info.value)
    assert mapped.code.name == "UNAVAILABLE" and "may" in mapped.message
    assert mapped.reason == "COMMIT_OUTCOME_UNKNOWN"
    prepared = issuance.prepare(authority.ctx, OPERATOR, _generated_key_request())
    _wait_all(committer, [prepared.pending])
    with (
        unchanged(authority.ctx.db, authority.ctx.keystore),
        pytest.raises(store.CommitOutcomeUnknown),
    ):
        prepared.finish(authority.ctx)
    assert not destroyed


@pytest.mark.postgresql_only
def test_a_lost_database_fails_the_whole_batch_without_item_retries(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disconnect that the single retry did not cure fails the batch at once: no look-up and
    no rewrite per item (each would wait for a connection of its own)."""
    ctx = authority.ctx
    committer = ctx.committer
    writes = {"n": 0}
    lookups = {"n": 0}

    def down(_batch: list[PendingIssue]) -> None:
        writes["n"] += 1
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    def stored(*_args: object) -> bool:
        lookups["n"] += 1
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(committer, "_write_postgres", down)
    monkeypatch.setattr(committer, "_stored", stored)
    batch = [issuance.prepare(ctx, OPERATOR, _request()) for _ in range(5)]
    _wait_all(committer, [p.pending for p in batch])
    assert writes["n"] == 2 and lookups["n"] == 0  # the batch and its one retry
    assert all(isinstance(p.pending.error, psycopg.OperationalError) for p in batch)

    def lost(_batch: list[PendingIssue]) -> None:
        writes["n"] += 1
        raise _CommitOutcomeUnknown("lost") from psycopg.OperationalError("lost")

    monkeypatch.setattr(committer, "_write_postgres", lost)
    writes["n"] = 0
    batch = [issuance.prepare(ctx, OPERATOR, _request()) for _ in range(5)]
    _wait_all(committer, [p.pending for p in batch])
    assert writes["n"] == 1 and lookups["n"] == 1  # one look-up for the whole batch
    assert all(isinstance(p.pending.error, store.CommitOutcomeUnknown) for p in batch)


@pytest.mark.postgresql_only
def test_postgresql_connections_time_out(database: Database) -> None:
    connection = database.engine.raw_connection()
    try:
        driver = connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        assert driver.info.get_parameters()["connect_timeout"] == str(CONNECT_TIMEOUT_SECONDS)
    finally:
        connection.close()
    url = database.engine.url.update_query_dict({"connect_timeout": "3"})
    own = Database(url.render_as_string(hide_password=False))
    try:
        connection = own.engine.raw_connection()
        driver = connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        assert driver.info.get_parameters()["connect_timeout"] == "3"  # the URL's wins
        connection.close()
    finally:
        own.dispose()


class _NoCommitter:
    def submit_many(self, items: list[PendingIssue]) -> None:
        raise AssertionError("nothing should reach the group commit")


def test_an_intake_thread_that_cannot_start_does_not_wedge_the_intake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    intake = IssueIntake(cast(GroupCommitter, _NoCommitter()), threads=2)
    results: list[BaseException | None] = []
    finished = threading.Semaphore(0)

    def prepare() -> Prepared:
        raise InvalidArgument("prepared")

    def done(_prepared: Prepared | None, error: BaseException | None) -> None:
        results.append(error)
        finished.release()

    def cannot_start(_self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", cannot_start)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                intake.submit(prepare, done)
    assert intake._running == 0 and not intake._queue
    intake.submit(prepare, done)
    assert finished.acquire(timeout=30), "the intake is wedged"
    assert len(results) == 1 and isinstance(results[0], InvalidArgument)


@pytest.mark.parametrize("threads", [1, 4])
def test_intake_threads_share_a_queue(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each intake thread takes its share of what is queued (a slow key store keeps every
    thread busy); with one thread a round takes everything (the largest commit batches)."""
    intake = IssueIntake(cast(GroupCommitter, _NoCommitter()), threads=threads)
    rounds: list[int] = []
    workers: set[int] = set()
    finished = threading.Semaphore(0)
    original = intake._round

    def counted(jobs: list[Any]) -> None:
        rounds.append(len(jobs))
        original(jobs)

    monkeypatch.setattr(intake, "_round", counted)

    def prepare() -> Prepared:
        workers.add(threading.get_ident())
        time.sleep(0.2)  # a slow device
        raise InvalidArgument("prepared")

    def done(_prepared: Prepared | None, _error: BaseException | None) -> None:
        finished.release()

    with intake._cond:  # queue everything before any thread takes a round
        for _ in range(8):
            intake.submit(prepare, done)
    for _ in range(8):
        assert finished.acquire(timeout=30)
    assert sum(rounds) == 8
    if threads == 1:
        assert rounds == [8] and len(workers) == 1
    else:
        assert max(rounds) == 2 and len(workers) == threads


def test_group_commit_keys_its_audit_records(authority: CertificateAuthority) -> None:
    """The batch writer (driver pipeline on PostgreSQL, ORM on SQLite) MACs its records with the
    chain key like every other writer, so the keyed chain verifies across both."""
    db = authority.ctx.db
    key = AuditChainKey(MasterKey.generate())
    audit.install_chain_key(db, key)
    for _ in range(3):
        authority.issue(OPERATOR, _request())
    with db.read() as session:
        schemes = list(
            session.scalars(select(AuditRecord.scheme).where(AuditRecord.action == "ca.issue"))
        )
        report = verify_chain(session, key)
        other = verify_chain(session, AuditChainKey(MasterKey.generate()))
    assert schemes and set(schemes) == {key.scheme}
    assert report.ok and report.legacy_records > 0  # the bootstrap ran before the key
    assert other.finding is Finding.REWRITTEN


def _ledger_row(db: Database, token: str) -> None:
    """A pending request-ledger claim with ``token`` (as :class:`RequestLedger.begin` makes)."""
    with db.transaction() as session:
        session.add(
            RequestLedgerRow(
                operation="govtrust.v1.CertificateService.IssueCertificate",
                principal="user:operator",
                request_id=f"request-{token}",
                request_sha256="0" * 64,
                state="pending",
                claim_token=token,
                audit_seq=0,
                claimed_at=datetime.now(UTC),
                holder="",
            )
        )


def _prepared_under(authority: CertificateAuthority, token: str | None) -> Prepared:
    """An issuance prepared by a call acting under the claim ``token`` (None: no claim)."""
    bound = audit.bind_claim(token)
    try:
        return issuance.prepare(authority.ctx, OPERATOR, _request())
    finally:
        audit.reset_claim(bound)


def _audited_tokens(db: Database) -> str:
    with db.read() as session:
        return " ".join(session.scalars(select(AuditRecord.details)))


def test_items_whose_claims_were_taken_over_are_not_written(
    authority: CertificateAuthority,
) -> None:
    """A claimed issuance is written only while its claim holds its key: one taken over by a
    retry (the call's process was presumed dead) fails ClaimTakenOver with nothing written,
    and the rest of its batch is written as usual."""
    ctx = authority.ctx
    _ledger_row(ctx.db, "held-claim")
    held = _prepared_under(authority, "held-claim")
    taken = _prepared_under(authority, "taken-over-claim")  # its key holds another token now
    free = _prepared_under(authority, None)
    _wait_all(ctx.committer, [held.pending, taken.pending, free.pending])
    assert held.pending.error is None and free.pending.error is None
    assert isinstance(taken.pending.error, ClaimTakenOver)
    with ctx.db.read() as session:
        stored = set(session.scalars(select(CaCertificate.id)))
        assert verify_chain(session).ok
    assert stored == {held.pending.certificate["id"], free.pending.certificate["id"]}
    assert "taken-over-claim" not in _audited_tokens(ctx.db)
    assert "held-claim" in _audited_tokens(ctx.db)


def test_a_rewrite_after_a_lost_commit_writes_nothing_once_a_retry_took_the_claim_over(
    authority: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's duplicate: a partitioned host's COMMIT is lost (not stored), a retry on
    another host takes the key over and issues; when the first host can ask again, its batch
    is not there and it would write it again — it must not: the claim is no longer its own."""
    ctx = authority.ctx
    committer = ctx.committer
    _ledger_row(ctx.db, "partitioned-claim")
    original = committer._write
    calls = {"n": 0}

    def lost_then_taken_over(batch: list[PendingIssue]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # COMMIT lost, not stored; meanwhile a retry takes the key over
            with ctx.db.transaction() as session:
                session.execute(
                    update(RequestLedgerRow)
                    .where(RequestLedgerRow.claim_token == "partitioned-claim")
                    .values(claim_token="the-retrys-claim")
                )
            raise _CommitOutcomeUnknown("lost") from psycopg.OperationalError("lost")
        original(batch)

    monkeypatch.setattr(committer, "_write", lost_then_taken_over)
    cut_off = _prepared_under(authority, "partitioned-claim")
    before = _count(ctx.db, CaCertificate)
    _wait_all(committer, [cut_off.pending])
    assert isinstance(cut_off.pending.error, ClaimTakenOver)
    assert calls["n"] == 2  # looked, not stored, tried again: fenced off
    assert _count(ctx.db, CaCertificate) == before
    assert "partitioned-claim" not in _audited_tokens(ctx.db)
