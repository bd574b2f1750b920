"""IssueLicense idempotency (``request_id``) and the holder-name check, in the domain and over
gRPC (both backends): a repeat returns the licence already issued and changes nothing, a reused
key with another body is refused, concurrent duplicates issue once, and a bad request changes
nothing."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from govtrust.audit import AuditRecord
from govtrust.db import Database
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from govtrust.lease import Membership, member_gone
from govtrust.v1 import license_pb2
from license import catalogue
from license.issuance import (
    REQUEST_WAIT,
    IssuanceInProgress,
    IssuedLicence,
    LicenceService,
    legacy_request_sha256,
    request_sha256,
    same_name,
)
from license.models import LicenceIssueRequestRow, LicenceRow, LicenceStatusListRow
from license.qr import TrustList
from tests.license.test_access import _refused
from tests.license.test_catalogue import GOOD_BL
from tests.license.test_grpc import Handle, violations, world  # noqa: F401
from tests.license.test_grpc import _issue as grpc_issue
from tests.license.test_issuance import (  # noqa: F401
    COMPANY,
    DEPT,
    ISSUER,
    OTHER_DEPT,
    _request,
    setup,
)
from tests.license.test_production import DEPT as PROD_DEPT
from tests.license.test_production import Prod, prod  # noqa: F401
from tests.unchanged import unchanged

Setup = tuple[LicenceService, TrustList]


def _state(db: Database) -> tuple[Any, ...]:
    """Licences, claims, the next status index and the audit length: what a refused or replayed
    call must leave as it was."""
    with db.read() as session:
        licences = sorted(
            (r.identifier, r.status, r.status_index) for r in session.scalars(select(LicenceRow))
        )
        claims = sorted(
            (c.issuer_code, c.request_id, c.identifier, c.completed_at is not None)
            for c in session.scalars(select(LicenceIssueRequestRow))
        )
        lists = sorted(
            (r.issuer_code, r.next_index) for r in session.scalars(select(LicenceStatusListRow))
        )
        records = session.scalar(select(func.count()).select_from(AuditRecord))
    return licences, claims, lists, records


# --- idempotency (domain) -------------------------------------------------------------------


def test_a_repeated_request_returns_the_licence_already_issued(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    first = service.issue(DEPT, _request(request_id="req-0001"))
    assert not first.replayed
    with unchanged(service.db):
        again = service.issue(DEPT, _request(request_id="req-0001"))
        assert again.replayed and again.identifier == first.identifier
        assert again.signed_data == first.signed_data and again.qr_payload == first.qr_payload
        assert again.metadata == first.metadata
    # the same body sent slightly differently (spaces, an empty optional field) is the same
    spaced = _request(request_id="req-0001", fields={k: f" {v} " for k, v in GOOD_BL.items()})
    assert service.issue(DEPT, spaced).identifier == first.identifier
    # another department's key space is its own; another key is another licence
    other = service.issue(DEPT, _request(request_id="req-0002"))
    assert other.identifier != first.identifier and not other.replayed
    # a revoked licence is still what the key issued
    service.revoke(DEPT, first.identifier, "注销")
    replay = service.issue(DEPT, _request(request_id="req-0001"))
    assert replay.identifier == first.identifier and replay.status == "revoked"


def test_the_same_key_with_another_body_is_refused(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    first = service.issue(DEPT, _request(request_id="req-1"))
    with unchanged(service.db):
        changed = [
            _request(request_id="req-1", fields={**GOOD_BL, "KZ_ZCZB": "200万元"}),
            _request(request_id="req-1", valid_from=date(2016, 1, 1)),
            _request(request_id="req-1", number="另一个编号"),
        ]
        for request in changed:
            with pytest.raises(AlreadyExists) as info:
                service.issue(DEPT, request)
            assert "req-1" in info.value.message and first.identifier in info.value.message
            assert "different request" in info.value.message
        with pytest.raises(AlreadyExists):
            service.issue(DEPT, _request(request_id="req-1"), document=False)  # skip_document


def test_bad_keys_and_callers_change_nothing(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    service.issue(DEPT, _request(request_id="ok"))
    with unchanged(service.db):
        for bad in ("has space", "x" * 129, "中文", "tab\t"):
            with pytest.raises(InvalidArgument) as info:
                service.issue(DEPT, _request(request_id=bad))
            assert info.value.violations[0].field == "request_id"
        with pytest.raises(InvalidArgument) as batch:
            service.issue_many(DEPT, [_request(request_id="a"), _request()])
        assert batch.value.violations[0].field == "requests[0].request_id"
        with pytest.raises(PermissionDenied):
            service.issue(OTHER_DEPT, _request(request_id="ok"))
        with pytest.raises(InvalidArgument) as invalid:  # validated before the key is claimed
            service.issue(DEPT, _request(request_id="new", fields={**GOOD_BL, "KZ_CLRQ": "x"}))
        assert invalid.value.violations[0].field == "fields.KZ_CLRQ"


def test_concurrent_duplicates_issue_once(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    before = _state(service.db)
    count = 4
    barrier = threading.Barrier(count)
    results: list[IssuedLicence | BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(service.issue(DEPT, _request(request_id="concurrent-1")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, IssuedLicence) for r in results), results
    issued = [r for r in results if isinstance(r, IssuedLicence)]
    assert len(issued) == count and len({r.identifier for r in issued}) == 1
    assert sum(not r.replayed for r in issued) == 1
    licences, claims, lists, records = _state(service.db)
    assert len(licences) == len(before[0]) + 1 and len(claims) == 1 and claims[0][3]
    assert records == before[3] + 1
    assert dict(lists)[ISSUER] == dict(before[2]).get(ISSUER, 0) + 1  # one status index


def test_concurrent_duplicates_with_different_bodies(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    barrier = threading.Barrier(2)
    results: list[IssuedLicence | BaseException] = []

    def run(capital: str) -> None:
        barrier.wait()
        try:
            request = _request(request_id="k", fields={**GOOD_BL, "KZ_ZCZB": capital})
            results.append(service.issue(DEPT, request))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in ("100万元", "200万元")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["AlreadyExists", "IssuedLicence"], results
    with service.db.read() as session:
        assert session.scalar(select(func.count()).select_from(LicenceRow)) == 1


def test_a_pending_claim_makes_a_duplicate_wait_then_answer(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    service.request_wait = timedelta(seconds=0.3)
    request = _request(request_id="pending")
    now = datetime.now(UTC)
    with service.db.transaction() as session:
        session.add(
            LicenceIssueRequestRow(
                issuer_code=ISSUER, request_id="pending",
                request_sha256=request_sha256(request, document=True),
                identifier="1.2.156.3005.2.x", actor="service:other-replica", created_at=now,
                completed_at=None,
            )
        )  # fmt: skip
    with unchanged(service.db):
        with pytest.raises(IssuanceInProgress) as info:
            service.issue(DEPT, request)
        assert isinstance(info.value, Unavailable)  # UNAVAILABLE: retry with the same key
        assert "still being issued" in info.value.message and "retry" in info.value.message
    # a claim left by a crashed claimant is taken over once it is stale
    with service.db.transaction() as session:
        row = session.get(LicenceIssueRequestRow, (ISSUER, "pending"))
        assert row is not None
        row.created_at = now - service.claim_timeout - timedelta(seconds=1)
    taken = service.issue(DEPT, request)
    assert not taken.replayed
    with service.db.read() as session:
        row = session.get(LicenceIssueRequestRow, (ISSUER, "pending"))
        assert row is not None and row.identifier == taken.identifier and row.completed_at
    assert service.issue(DEPT, request).identifier == taken.identifier


def _pending_claim(service: LicenceService, request_id: str, request: Any) -> None:
    with service.db.transaction() as session:
        session.add(
            LicenceIssueRequestRow(
                issuer_code=ISSUER, request_id=request_id,
                request_sha256=request_sha256(request, document=True),
                identifier="1.2.156.3005.2.x", actor="service:other-replica",
                created_at=datetime.now(UTC), completed_at=None,
            )
        )  # fmt: skip


def test_a_duplicate_waits_briefly_not_in_the_shared_pool(setup: Setup) -> None:  # noqa: F811
    """The wait happens in a thread of the shared ``run_sync`` pool: at most 2 s by default,
    then a retryable answer (not 30 s of a pool thread)."""
    service, _ = setup
    assert timedelta(0) < REQUEST_WAIT <= timedelta(seconds=2)
    assert service.request_wait == REQUEST_WAIT
    request = _request(request_id="slow-claimant")
    _pending_claim(service, "slow-claimant", request)
    with unchanged(service.db):  # its snapshots are not timed
        started = time.monotonic()
        with pytest.raises(IssuanceInProgress):
            service.issue(DEPT, request)
        waited = time.monotonic() - started
    assert waited < REQUEST_WAIT.total_seconds() + 1.5


def _serial() -> str:
    return f"{datetime.now(UTC).year}{secrets.randbelow(10**10):010d}"


def test_a_duplicate_whose_claimant_completes_before_its_claim_replays(
    setup: Setup,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With an explicit serial: the duplicate reads "no claim", then the claimant completes,
    then the duplicate's step 1 runs — it answers the claimant's licence (not ALREADY_EXISTS
    because the identifier is taken)."""
    service, _ = setup
    request = _request(request_id="race-read-claim", serial=_serial())
    real = service.issue_many
    claimant: list[IssuedLicence] = []

    def interleaved(*args: Any, **kwargs: Any) -> list[IssuedLicence]:
        if not claimant:  # the duplicate has read "no claim": the claimant runs to the end now
            claimant.extend(real(*args, **kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "issue_many", interleaved)
    duplicate = service.issue(DEPT, request)
    assert claimant and not claimant[0].replayed
    assert duplicate.replayed and duplicate.identifier == claimant[0].identifier
    licences, claims, _lists, _records = _state(service.db)
    assert len(licences) == 1 and claims == [
        (ISSUER, "race-read-claim", duplicate.identifier, True)
    ]


@pytest.mark.parametrize("explicit_serial", [True, False])
def test_a_claim_of_a_process_gone_from_the_cluster_is_taken_over_and_its_late_write_refused(
    setup: Setup,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    explicit_serial: bool,
) -> None:
    """Replica A claims a key and stalls while signing (killed, or cut off); its cluster
    membership expires. A retry on replica B takes the claim over at once (not after the
    10-minute age bound) and issues. When A resumes, its completing write is refused by the
    claim token B replaced (with an explicit serial both calls build the same identifier, so
    the identifier alone could not tell them apart): A answers B's licence; one licence, one
    claim, B's. Sequenced with events, not timing."""
    service, _ = setup
    serial = _serial() if explicit_serial else ""
    request = _request(request_id=f"gone-{explicit_serial}", serial=serial)
    a = Membership(service.db, ttl_seconds=0.2, holder="host-a:100:aa")
    b = Membership(service.db, ttl_seconds=60, holder="host-b:200:bb")
    a.renew()
    b.renew()
    real_sign = service._sign
    a_signing, a_may_finish = threading.Event(), threading.Event()
    a_thread: list[threading.Thread] = []
    outcome: list[IssuedLicence | BaseException] = []

    def member() -> str:
        return a.holder if threading.current_thread() is a_thread[0] else b.holder

    def sign(draft: Any, context: Any) -> None:
        if threading.current_thread() is a_thread[0]:
            a_signing.set()
            assert a_may_finish.wait(60)
        real_sign(draft, context)

    def claimant() -> None:
        try:
            outcome.append(service.issue(DEPT, request))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    monkeypatch.setattr(service, "_sign", sign)
    monkeypatch.setattr(service, "member", member)
    a_thread.append(threading.Thread(target=claimant))
    a_thread[0].start()
    try:
        assert a_signing.wait(60)  # A claimed and stalls: it stops renewing
        with service.db.read() as session:
            row = session.get(LicenceIssueRequestRow, (ISSUER, request.request_id))
            assert row is not None and row.holder == a.holder and len(row.claim_token) == 32
            a_token = row.claim_token
        deadline = time.monotonic() + 10
        while True:  # A's membership expires on the database's clock
            with service.db.read() as session:
                if member_gone(session, a.holder):
                    break
            assert time.monotonic() < deadline, "A's membership never expired"
            time.sleep(0.05)
        with service.db.read() as session:
            assert not member_gone(session, b.holder)
        # B takes over at once: A's claim is minutes younger than claim_timeout
        assert service.claim_timeout >= timedelta(minutes=5)
        taken = service.issue(DEPT, request)
    finally:
        a_may_finish.set()
        a_thread[0].join(60)
    assert not taken.replayed
    assert len(outcome) == 1 and isinstance(outcome[0], IssuedLicence), outcome
    assert outcome[0].replayed and outcome[0].identifier == taken.identifier
    licences, claims, _lists, _records = _state(service.db)
    assert [ident for ident, _status, _index in licences] == [taken.identifier]
    assert claims == [(ISSUER, request.request_id, taken.identifier, True)]
    with service.db.read() as session:
        row = session.get(LicenceIssueRequestRow, (ISSUER, request.request_id))
        assert row is not None and row.holder == b.holder and row.claim_token != a_token
        audited = session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "licence.issue", AuditRecord.target == taken.identifier)
        )
    assert audited == 1


def test_a_claim_of_a_live_process_is_not_taken_over(setup: Setup) -> None:  # noqa: F811
    """A pending claim whose holder still renews its membership makes a duplicate wait, then
    UNAVAILABLE (retry), and changes nothing; once the holder left the cluster (a clean stop
    removes its row), the claim is taken over."""
    service, _ = setup
    service.request_wait = timedelta(seconds=0.3)
    request = _request(request_id="live-holder")
    live = Membership(service.db, ttl_seconds=60, holder="host-c:300:cc")
    live.renew()
    with service.db.transaction() as session:
        session.add(
            LicenceIssueRequestRow(
                issuer_code=ISSUER, request_id="live-holder",
                request_sha256=request_sha256(request, document=True),
                identifier="1.2.156.3005.2.x", actor="service:other-replica",
                created_at=datetime.now(UTC), completed_at=None, holder=live.holder,
                claim_token="c" * 32,
            )
        )  # fmt: skip
    with unchanged(service.db), pytest.raises(IssuanceInProgress):
        service.issue(DEPT, request)
    live.leave()
    taken = service.issue(DEPT, request)
    assert not taken.replayed
    assert service.issue(DEPT, request).identifier == taken.identifier


def test_an_explicit_serial_taken_by_another_request_is_still_refused(
    setup: Setup,  # noqa: F811
) -> None:
    service, _ = setup
    serial = _serial()
    service.issue(DEPT, _request(serial=serial))  # no key
    with unchanged(service.db), pytest.raises(AlreadyExists) as info:
        service.issue(DEPT, _request(request_id="late", serial=serial))
    assert f"serial {serial}" in info.value.message
    with service.db.read() as session:
        assert session.get(LicenceIssueRequestRow, (ISSUER, "late")) is None


def test_the_request_hash_is_of_the_request_as_issuance_reads_it(
    setup: Setup,  # noqa: F811
) -> None:
    def digest(**changes: Any) -> str:
        return request_sha256(_request(**changes), document=True)

    base = digest()
    citizen = "11010519491231002X"
    assert digest(holder_code_type="111", holder_code=citizen) == digest(
        holder_code_type="111", holder_code=citizen.lower()
    )
    assert digest(holder_code=COMPANY.lower()) == base
    assert digest(holder_code=f"  {COMPANY}\u3000") == base
    full_width = COMPANY.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    assert digest(holder_code=full_width) == base
    assert digest(holder_name="示例（福州） 有限公司") == digest(holder_name="示例(福州)  有限公司")
    assert digest(fields={**GOOD_BL, "KZ_X": True}) == digest(fields={**GOOD_BL, "KZ_X": "true"})
    assert digest(fields={**GOOD_BL, "KZ_X": False}) != digest(fields={**GOOD_BL, "KZ_X": "true"})
    assert digest(fields={**GOOD_BL, "KZ_N": 3}) == digest(fields={**GOOD_BL, "KZ_N": " 3 "})
    # what changes the licence still changes the hash
    assert digest(holder_code="91350100M000100Y44") != base
    assert digest(fields={**GOOD_BL, "KZ_ZCZB": "200万元"}) != base
    assert request_sha256(_request(), document=False) != base
    # a request sent normalised hashes as before the normalisation
    assert legacy_request_sha256(_request(), document=True) == base


def test_a_re_encoded_repeat_is_the_same_request(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    first = service.issue(DEPT, _request(request_id="enc-1"))
    with unchanged(service.db):
        again = service.issue(
            DEPT, _request(request_id="enc-1", holder_code=f" {COMPANY.lower()} ")
        )
        assert again.replayed and again.identifier == first.identifier


def test_a_claim_hashed_before_normalisation_still_matches(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    request = _request(request_id="legacy-1", holder_code=COMPANY.lower())
    first = service.issue(DEPT, request)
    with service.db.transaction() as session:  # as a claim recorded by the previous release
        row = session.get(LicenceIssueRequestRow, (ISSUER, "legacy-1"))
        assert row is not None
        assert row.request_sha256 != legacy_request_sha256(request, document=True)
        row.request_sha256 = legacy_request_sha256(request, document=True)
    assert service.issue(DEPT, request).identifier == first.identifier
    with unchanged(service.db), pytest.raises(AlreadyExists):
        service.issue(DEPT, _request(request_id="legacy-1", number="另一个编号"))


def test_a_failed_issuance_releases_its_key(
    setup: Setup,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _ = setup

    def broken(*_args: object) -> None:
        raise FailedPrecondition("the department's official seal is suspended")

    with monkeypatch.context() as patch:
        patch.setattr(service, "_sign", broken)  # fails after the key is claimed
        # by design the failed issuance keeps the status index it reserved (here the list's
        # first, so the list's row is created); no claim, licence, key or audit record stays
        with (
            unchanged(service.db, allow=["licence_status_lists"]),
            pytest.raises(FailedPrecondition),
        ):
            service.issue(DEPT, _request(request_id="retry-me"))
    with service.db.read() as session:
        assert session.get(LicenceIssueRequestRow, (ISSUER, "retry-me")) is None
        assert session.scalar(select(func.count()).select_from(LicenceRow)) == 0
    issued = service.issue(DEPT, _request(request_id="retry-me"))
    assert not issued.replayed and service.issue(DEPT, _request(request_id="retry-me")).replayed


# --- holder name (domain) -------------------------------------------------------------------


def test_holder_name_must_match_the_registry(setup: Setup) -> None:  # noqa: F811
    service, _ = setup
    ok = service.issue(DEPT, _request(holder_name="福州示例科技有限公司"))
    assert ok.metadata.holder_name == "福州示例科技有限公司"
    spaced = service.issue(DEPT, _request(holder_name=" 福州示例科技有限公司\u3000"))
    assert spaced.metadata.holder_name == "福州示例科技有限公司"
    with unchanged(service.db):
        with pytest.raises(InvalidArgument) as info:
            service.issue(DEPT, _request(holder_name="福州别的科技有限公司"))
        assert info.value.violations[0].field == "holder_name"
        assert "registered" in info.value.violations[0].description
        assert "福州示例" not in info.value.message  # the registry's name is not disclosed


def test_same_name_folds_widths_and_spaces() -> None:
    assert same_name("示例（福州）有限公司", "示例(福州)有限公司")
    assert same_name(" Example  Ltd ", "Example Ltd")
    assert not same_name("示例公司", "示列公司")


# --- over gRPC ------------------------------------------------------------------------------


def test_grpc_request_id_and_holder_name(world: Handle, database: Database) -> None:  # noqa: F811
    first = grpc_issue(world, request_id="amr-2026-0001")
    again = grpc_issue(world, request_id="amr-2026-0001")
    assert again == first
    with unchanged(database):
        reused = world.fails(
            "IssueLicense",
            license_pb2.IssueLicenseRequest(
                type_code=catalogue.BUSINESS_LICENCE_CODE, issuer_code=ISSUER,
                holder=license_pb2.LicenseHolder(
                    code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code="91350100M000100Y43"
                ),
                fields={**GOOD_BL, "KZ_ZCZB": "999万元"}, valid_from="2015-06-01",
                request_id="amr-2026-0001",
            ),
        )  # fmt: skip
        assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "amr-2026-0001" in reused.details() and first.identifier in reused.details()
        wrong_name = world.fails(
            "IssueLicense",
            license_pb2.IssueLicenseRequest(
                type_code=catalogue.BUSINESS_LICENCE_CODE, issuer_code=ISSUER,
                holder=license_pb2.LicenseHolder(
                    code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code="91350100M000100Y43",
                    name="别的公司",
                ),
                fields=GOOD_BL, valid_from="2015-06-01",
            ),
        )  # fmt: skip
        assert wrong_name.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "holder.name" in violations(wrong_name)
        bad_key = world.fails(
            "IssueLicense",
            license_pb2.IssueLicenseRequest(
                type_code=catalogue.BUSINESS_LICENCE_CODE, issuer_code=ISSUER,
                holder=license_pb2.LicenseHolder(
                    code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code="91350100M000100Y43"
                ),
                fields=GOOD_BL, request_id="no spaces please",
            ),
        )  # fmt: skip
        assert "request_id" in violations(bad_key)
        yesterday = world.fails(
            "IssueLicense",
            license_pb2.IssueLicenseRequest(
                type_code=catalogue.BUSINESS_LICENCE_CODE, issuer_code=ISSUER,
                holder=license_pb2.LicenseHolder(
                    code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code="91350100M000100Y43"
                ),
                fields=GOOD_BL, issue_date="2001-01-01",
            ),
        )  # fmt: skip
        assert "issue_date" in violations(yesterday)
    named = grpc_issue(
        world,
        holder=license_pb2.LicenseHolder(
            code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code="91350100M000100Y43",
            name="福州示例科技有限公司",
        ),
    )  # fmt: skip
    assert named.metadata.czzt == "福州示例科技有限公司"


def test_grpc_a_duplicate_of_a_request_in_progress_is_unavailable(
    world: Handle,  # noqa: F811
    database: Database,
) -> None:
    """After a brief wait, UNAVAILABLE ("still being issued; retry") rather than a pool thread
    held for 30 s; once the claimant is done the same call answers its licence."""
    domain = _request(request_id="in-progress-1")
    with database.transaction() as session:
        session.add(
            LicenceIssueRequestRow(
                issuer_code=ISSUER, request_id="in-progress-1",
                request_sha256=request_sha256(domain, document=True),
                identifier="1.2.156.3005.2.x", actor="service:other-replica",
                created_at=datetime.now(UTC), completed_at=None,
            )
        )  # fmt: skip
    request = license_pb2.IssueLicenseRequest(
        type_code=catalogue.BUSINESS_LICENCE_CODE, issuer_code=ISSUER,
        holder=license_pb2.LicenseHolder(
            code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=COMPANY
        ),
        fields=GOOD_BL, valid_from="2015-06-01", request_id="in-progress-1",
    )  # fmt: skip
    started = time.monotonic()
    busy = world.fails("IssueLicense", request)
    assert time.monotonic() - started < REQUEST_WAIT.total_seconds() + 5
    assert busy.code() == grpc.StatusCode.UNAVAILABLE
    assert "still being issued" in busy.details() and "retry" in busy.details()
    with database.transaction() as session:  # the claimant gave up (released its claim)
        row = session.get(LicenceIssueRequestRow, (ISSUER, "in-progress-1"))
        assert row is not None
        session.delete(row)
    issued = world.call("IssueLicense", request).license
    assert world.call("IssueLicense", request).license == issued


def test_production_repeat_uses_the_seal_once(prod: Prod) -> None:  # noqa: F811
    first = prod.issue(request_id="sealed-1")
    with unchanged(prod.platform.db):
        again = prod.issue(request_id="sealed-1")
        assert again.identifier == first.identifier
        assert again.document_digest == first.document_digest and first.document_digest.value
        assert again.status_list_index == first.status_list_index
    events, _ = prod.runtime.seals.service.history(prod.seal.id, include_uses=True)
    assert len([e for e in events if e.action == "seal_pdf"]) == 1
    changed = license_pb2.IssueLicenseRequest(
        type_code=first.metadata.zzlxdm,
        holder=license_pb2.LicenseHolder(
            code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=first.metadata.czztdm
        ),
        fields=GOOD_BL, valid_from="2015-06-01", request_id="sealed-1", skip_document=True,
    )  # fmt: skip
    _refused(prod, "IssueLicense", changed, PROD_DEPT, grpc.StatusCode.ALREADY_EXISTS)
