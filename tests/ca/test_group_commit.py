"""The issuance write path: group commit (batches, failure isolation, unknown commit outcomes,
lost connections), the intake threads the gRPC servicer uses, and OCSP answers right after
issuance. Runs on SQLite and PostgreSQL (the connection tests on PostgreSQL only)."""

from __future__ import annotations

import contextvars
import threading
from datetime import datetime
from typing import Any

import psycopg
import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509 as cx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text

from ca import issuance
from ca.authority import CertificateAuthority
from ca.issuance import IssueRequest, Prepared, ServiceSubject, SubjectSpec
from ca.models import CaCertificate, CaOcspResponse
from ca.store import GroupCommitter, PendingIssue, _CommitOutcomeUnknown
from govtrust.audit import AuditRecord, verify_chain
from govtrust.db import Database, as_utc
from govtrust.errors import InvalidArgument
from tests.ca.conftest import OPERATOR, make_csr
from tests.conftest import PG_ADMIN_URL

SERVICE = SubjectSpec(service=ServiceSubject("bizsys-01", ("approval.example.gov.cn",)))


def _request() -> IssueRequest:
    return IssueRequest("service", SERVICE, csr=make_csr())


def _ocsp_status(authority: CertificateAuthority, row: CaCertificate) -> str:
    ca = authority.hierarchy.ca(row.issuer)
    request = asn1_ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {
                        "req_cert": {
                            "hash_algorithm": {"algorithm": "sha1"},
                            "issuer_name_hash": ca.name_hash["sha1"],
                            "issuer_key_hash": ca.key_hash["sha1"],
                            "serial_number": int(row.serial, 16),
                        }
                    }
                ]
            }
        }
    )
    response = asn1_ocsp.OCSPResponse.load(authority.ocsp(request.dump()))
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
    with pytest.raises(type(prepared[1].pending.error)):
        prepared[1].finish(ctx)
    assert _count(ctx.db, CaCertificate) == 2
    with ctx.db.read() as session:
        assert verify_chain(session).ok
        assert session.get(CaCertificate, "x" * 32) is None


def test_finish_before_commit_is_refused(authority: CertificateAuthority) -> None:
    prepared = issuance.prepare(authority.ctx, OPERATOR, _request())
    with pytest.raises(RuntimeError):
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
    """A connection lost after COMMIT was sent: items that were stored succeed, the others
    are written again (one by one)."""
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
