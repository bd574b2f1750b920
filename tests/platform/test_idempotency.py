"""Retries never duplicate (issue #20 item 4): every mutating RPC with a ``request_id`` goes
through the request ledger (:mod:`govtrust.idempotency`).

The whole gRPC stack of a serving process (the production servicer table, the interceptor with
its access rules and ledger) over a real platform, on SQLite and PostgreSQL. For each family —
identity registration, certificate issuance, seal transitions and sealing — a retry with the
same key returns the first answer (same id, serial, signature) and changes nothing at all (no
row of any table, no key); the same key with another request is ALREADY_EXISTS and changes
nothing; and on PostgreSQL concurrent duplicates act exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from asn1crypto import cms, x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import load_der_x509_certificate
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import func, select

from ca.authority import authority_for
from ca.models import CaCertificate
from govtrust.api.access import RPC_ACCESS, SELF_KEYED_METHODS
from govtrust.audit import head_seq, records_about, verify_chain
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.errors import NotFound, PermissionDenied, Unauthenticated
from govtrust.idempotency import (
    Begun,
    Claim,
    RequestKey,
    RequestLedger,
    RequestLedgerRow,
    RequestOutcomeUnknown,
    acting_on,
    request_digest,
)
from govtrust.lease import Membership
from govtrust.observability.metrics import get_metrics
from govtrust.platform import Platform, request_ledger
from govtrust.principal import Principal
from govtrust.rpc import interceptors
from govtrust.rpc.access import gate
from govtrust.rpc.auth import Authenticator, set_token_resolver
from govtrust.rpc.interceptors import GovtrustInterceptor
from govtrust.server.adapters import SERVICERS
from govtrust.server.services import build_servicers
from govtrust.server.wiring import define_components
from govtrust.v1 import (
    certificate_pb2,
    certificate_pb2_grpc,
    common_pb2,
    identity_pb2,
    identity_pb2_grpc,
    seal_pb2,
    seal_pb2_grpc,
)
from hsm import MasterKey, SoftKeyStore
from idp.basedata import import_population
from idp.runtime import identity_registry_for
from seal.errors import SealNotFound
from seal.models import SealEventRow, SealRow
from seal.ofd import model as ofd
from seal.ofd.package import read_package
from seal.ofd.writer import write_document
from seal.runtime import runtime_for
from seal.structures import verify_signature
from seal.types import USE_ACTIONS
from seal.usage import SealUsage
from tests.ca.conftest import make_csr
from tests.seal import gbt38540
from tests.seal.conftest import (
    FILING,
    MAKER,
    REGISTRAR,
    REVIEWER,
    USCC,
    one_page_pdf,
    resident_id,
)
from tests.unchanged import unchanged

OPERATOR = Principal("user", "operator", frozenset({"ca-operator"}))
ADMIN = Principal("user", "admin", frozenset({"admin", "identity-registrar"}))


@dataclass
class Stack:
    """The served stubs, the platform under them, and a token per principal."""

    platform: Platform
    identity: identity_pb2_grpc.IdentityServiceStub
    certificates: certificate_pb2_grpc.CertificateServiceStub
    seals: seal_pb2_grpc.SealServiceStub
    tokens: dict[str, Principal]
    interceptor: GovtrustInterceptor
    loop: asyncio.AbstractEventLoop

    def meta(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        token = secrets.token_urlsafe(16)
        self.tokens[token] = principal
        return (("authorization", f"Bearer {token}"),)

    def unchanged(self) -> Any:
        return unchanged(self.platform.db, self.platform.keystore)

    def ledger_rows(self) -> int:
        with self.platform.db.read() as session:
            return int(session.scalar(select(func.count()).select_from(RequestLedgerRow)) or 0)


@pytest.fixture
def stack(database: Database, tmp_path: Path) -> Iterator[Stack]:
    master = MasterKey.generate()
    store = SoftKeyStore(database, master)
    platform = Platform(
        settings=Settings(data_dir=tmp_path), db=database, master_key=master, keystore=store
    )
    define_components(platform)
    tokens: dict[str, Principal] = {}

    def resolve(_platform: object, token: str) -> Principal:
        if token not in tokens:
            raise Unauthenticated("unknown test token")
        return tokens[token]

    set_token_resolver(resolve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="idempotency-grpc", daemon=True)
    thread.start()

    interceptor = GovtrustInterceptor(
        Authenticator(platform, trust_insecure_loopback=False),
        get_metrics(),
        authorise=gate(RPC_ACCESS),
        ledger=request_ledger(platform),
        self_keyed=SELF_KEYED_METHODS,
    )

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=[interceptor])
        for binding in build_servicers(platform, SERVICERS):
            binding.add_to_server(binding.servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Stack(
            platform,
            identity_pb2_grpc.IdentityServiceStub(channel),
            certificate_pb2_grpc.CertificateServiceStub(channel),
            seal_pb2_grpc.SealServiceStub(channel),
            tokens,
            interceptor,
            loop,
        )
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        set_token_resolver(None)
        platform.close()


def _citizen(stack: Stack, name: str, first17: str, request_id: str = "") -> str:
    return stack.identity.RegisterCitizen(
        identity_pb2.RegisterCitizenRequest(
            name=name, id_number=resident_id(first17), request_id=request_id
        ),
        metadata=stack.meta(REGISTRAR),
    ).citizen.id


def _company(stack: Stack) -> tuple[str, Principal]:
    rep_id = _citizen(stack, "张三", "11010519491231002")
    company = stack.identity.RegisterLegalPerson(
        identity_pb2.RegisterLegalPersonRequest(
            uscc=USCC,
            name="福州示例科技有限公司",
            legal_representative=common_pb2.IdentityRef(id=rep_id),
        ),
        metadata=stack.meta(REGISTRAR),
    ).legal_person
    return company.id, Principal("user", "rep", frozenset(), citizen_id=rep_id)


def _refused(code: grpc.StatusCode, call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    return info.value


# --- identity registration ------------------------------------------------------------------


def test_identity_registration_retry_answers_the_first_and_registers_once(stack: Stack) -> None:
    request = identity_pb2.RegisterCitizenRequest(
        name="李四", id_number=resident_id("11010519800101001"), request_id="reg-1"
    )
    first = stack.identity.RegisterCitizen(request, metadata=stack.meta(REGISTRAR))
    with stack.unchanged():  # the retry writes nothing: no identity, audit record or key
        again = stack.identity.RegisterCitizen(request, metadata=stack.meta(REGISTRAR))
    assert again == first and again.citizen.id == first.citizen.id

    other = identity_pb2.RegisterCitizenRequest(
        name="王五", id_number=resident_id("11010519900101003"), request_id="reg-1"
    )
    with stack.unchanged():
        error = _refused(
            grpc.StatusCode.ALREADY_EXISTS,
            lambda: stack.identity.RegisterCitizen(other, metadata=stack.meta(REGISTRAR)),
        )
    assert "reg-1" in (error.details() or "")

    # the key is per caller: another registrar's reg-1 is its own request
    second_registrar = Principal("user", "registrar-2", frozenset({"identity-registrar"}))
    other_person = stack.identity.RegisterCitizen(other, metadata=stack.meta(second_registrar))
    assert other_person.citizen.id != first.citizen.id

    # agent grants: the same
    company_id, rep = _company(stack)
    grant = identity_pb2.GrantAgentRequest(
        legal_person=common_pb2.IdentityRef(id=company_id),
        agent=common_pb2.IdentityRef(id=first.citizen.id),
        scopes=["seal.use"],
        request_id="grant-1",
    )
    granted = stack.identity.GrantAgent(grant, metadata=stack.meta(rep))
    with stack.unchanged():
        assert stack.identity.GrantAgent(grant, metadata=stack.meta(rep)) == granted


def test_a_failed_call_frees_its_key(stack: Stack) -> None:
    """A refusal (bad input) leaves no claim behind: the corrected retry under the same key acts."""
    bad = identity_pb2.RegisterCitizenRequest(name="李四", id_number="123", request_id="fix-1")
    with stack.unchanged():
        _refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stack.identity.RegisterCitizen(bad, metadata=stack.meta(REGISTRAR)),
        )
    good = identity_pb2.RegisterCitizenRequest(
        name="李四", id_number=resident_id("11010519800101001"), request_id="fix-1"
    )
    assert stack.identity.RegisterCitizen(good, metadata=stack.meta(REGISTRAR)).citizen.id
    assert stack.ledger_rows() == 1


def test_a_call_a_drain_ended_acts_once_and_its_retry_gets_the_answer(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain's grace ends while a registration runs, after its effect committed: the client
    is answered UNAVAILABLE at once; the work is not cut off, so the key stays claimed (a retry
    meanwhile is told "in progress", never acts), then holds the answer: the retry gets it and
    the citizen is registered once."""
    registry = identity_registry_for(stack.platform)
    register = registry.register_citizen
    committed, release = threading.Event(), threading.Event()

    def slow_register(*args: Any, **kwargs: Any) -> Any:
        registered = register(*args, **kwargs)
        committed.set()
        assert release.wait(30)
        return registered

    monkeypatch.setattr(registry, "register_citizen", slow_register)
    monkeypatch.setattr(request_ledger(stack.platform), "wait", 0.2)
    request = identity_pb2.RegisterCitizenRequest(
        name="李四", id_number=resident_id("11010519800101001"), request_id="drained-1"
    )
    first: Any = stack.identity.RegisterCitizen.future(request, metadata=stack.meta(REGISTRAR))
    try:
        assert committed.wait(30)
        ended = asyncio.run_coroutine_threadsafe(stack.interceptor.end_running(), stack.loop)
        assert ended.result(30) == 1
        error = cast(grpc.Call, first.exception(30))
        assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        assert error.details() == "the server is shutting down; retry"

        with stack.unchanged():  # the work still runs: the retry waits, then "in progress"
            busy = _refused(
                grpc.StatusCode.UNAVAILABLE,
                lambda: stack.identity.RegisterCitizen(request, metadata=stack.meta(REGISTRAR)),
            )
        assert "still being handled" in (busy.details() or "")
    finally:
        release.set()
    idle = asyncio.run_coroutine_threadsafe(stack.interceptor.wait_idle(30), stack.loop)
    assert idle.result(40)
    with stack.unchanged():  # the answer the ended call stored: nothing is done again
        again = stack.identity.RegisterCitizen(request, metadata=stack.meta(REGISTRAR))
    assert again.citizen.id
    with stack.platform.db.read() as session:
        row = session.get(
            RequestLedgerRow,
            ("govtrust.v1.IdentityService.RegisterCitizen", REGISTRAR.actor, "drained-1"),
        )
        assert row is not None and row.state == "done" and row.response is not None


def test_a_cancelled_call_keeps_its_key_until_its_work_has_ended(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's deadline passes while a registration's thread still works (grpc.aio
    cancels the call's task; the thread cannot be stopped): the key is not freed then — a
    retry could act while the first registration may still commit — but keeps the work's
    answer once it has ended: the retry gets it, registering once. A drain meanwhile waits for
    that work too (else the process could exit before the answer is stored)."""
    registry = identity_registry_for(stack.platform)
    register = registry.register_citizen
    ledger = request_ledger(stack.platform)
    entered, release, stored = threading.Event(), threading.Event(), threading.Event()

    def late_register(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return register(*args, **kwargs)  # commits after the call was cancelled

    finish = ledger.finish

    def noted_finish(claim: Claim, response: bytes) -> None:
        finish(claim, response)
        stored.set()

    monkeypatch.setattr(registry, "register_citizen", late_register)
    monkeypatch.setattr(ledger, "finish", noted_finish)
    request = identity_pb2.RegisterCitizenRequest(
        name="李四", id_number=resident_id("11010519800101001"), request_id="cancelled-1"
    )
    try:
        first: Any = stack.identity.RegisterCitizen.future(
            request, metadata=stack.meta(REGISTRAR), timeout=1.0
        )
        assert entered.wait(30)
        error = cast(grpc.Call, first.exception(30))
        assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        idle = asyncio.run_coroutine_threadsafe(stack.interceptor.wait_idle(0.5), stack.loop)
        assert not idle.result(30)  # the call has ended, its work not: a drain waits for it
        assert _pending_keys(stack) == {"cancelled-1"}  # ... and it keeps the key claimed
    finally:
        release.set()
    idle = asyncio.run_coroutine_threadsafe(stack.interceptor.wait_idle(30), stack.loop)
    assert idle.result(40)
    assert stored.is_set()  # the late work's answer, stored before the drain saw it idle
    monkeypatch.setattr(registry, "register_citizen", register)
    with stack.unchanged():
        again = stack.identity.RegisterCitizen(request, metadata=stack.meta(REGISTRAR))
    assert again.citizen.id  # the first registration's citizen; nothing registered again


async def _once_settled(ledger: RequestLedger, key: RequestKey, digest: str) -> Claim | bytes:
    """What a retry finds once the key is no longer held (the late settlement done; 30 s)."""
    deadline = time.monotonic() + 30
    while (found := await asyncio.to_thread(ledger.begin, key, digest)) is Begun.BUSY:
        assert time.monotonic() < deadline, f"{key.request_id} is still held"
        await asyncio.sleep(0.05)
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("turns", range(6))
async def test_a_cancel_that_arrives_after_the_work_answered_keeps_the_answer(
    stack: Stack, turns: int
) -> None:
    """The work returns its answer and the call is cancelled before it resumes (its deadline
    passed in between, ``turns`` turns of the loop after the answer): the answer is still
    stored under the key, so a retry is answered with it — not freed, not "outcome unknown"."""
    ledger = request_ledger(stack.platform)
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", f"answered-then-cancelled-{turns}")
    claim = _claim(stack, key, digest)
    answer = common_pb2.VerificationReport(report_id=f"late-{turns}")
    ready = asyncio.get_running_loop().create_future()

    async def work() -> Any:
        return await ready

    call = asyncio.ensure_future(interceptors._settled_by_its_work(ledger, claim, work()))
    await asyncio.sleep(0)  # the call waits for its work
    ready.set_result(answer)
    for _ in range(turns):
        await asyncio.sleep(0)
    if call.done():  # answered before the cancellation came: nothing to settle late
        assert call.result() == answer
        return
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await _once_settled(ledger, key, digest) == answer.SerializeToString(deterministic=True)


@pytest.mark.asyncio
async def test_a_claim_taken_for_a_call_that_has_gone_is_freed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry waits behind the key's holder and is cancelled meanwhile (its deadline); its
    thread goes on waiting and takes the key once the holder frees it — for nobody. That
    claim is freed at once: the next retry acts, instead of reading "in progress" until the
    claim goes stale."""
    platform = stack.platform
    ledger = RequestLedger(platform.db, request_ledger(platform).cipher, wait=30)
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "waited-then-cancelled")
    holder = _claim(stack, key, digest)
    taken = threading.Event()
    wait_for_answer = ledger.wait_for_answer

    def noted_wait(*args: Any) -> Claim | bytes:
        found = wait_for_answer(*args)
        taken.set()
        return found

    monkeypatch.setattr(ledger, "wait_for_answer", noted_wait)
    waiting = asyncio.ensure_future(interceptors._claimed(ledger, key, digest, None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.to_thread(ledger.abandon, holder)  # the holder failed: the key is free ...
    assert await asyncio.to_thread(taken.wait, 30)  # ... the gone call's thread took it ...
    assert isinstance(await _once_settled(ledger, key, digest), Claim)  # ... and freed it


def test_a_malformed_request_id_is_refused(stack: Stack) -> None:
    request = identity_pb2.RegisterCitizenRequest(
        name="李四", id_number=resident_id("11010519800101001"), request_id="has space"
    )
    with stack.unchanged():
        error = _refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stack.identity.RegisterCitizen(request, metadata=stack.meta(REGISTRAR)),
        )
    assert "request_id" in (error.details() or "")


# --- certificates ---------------------------------------------------------------------------


def _assured_citizen(stack: Stack) -> str:
    """A citizen the population base data confirm (assurance 2: the CA may certify them)."""
    number = resident_id("11010519800101001")
    registry = identity_registry_for(stack.platform)
    import_population(
        stack.platform.db, registry.codec, f"name,id_number\n李四,{number}\n", principal=REGISTRAR
    )
    return _citizen(stack, "李四", "11010519800101001")


def test_certificate_issuance_retry_returns_the_same_serial(stack: Stack) -> None:
    citizen_id = _assured_citizen(stack)
    request = certificate_pb2.IssueCertificateRequest(
        csr=make_csr(),
        profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
        subject=certificate_pb2.CertificateSubject(identity=common_pb2.IdentityRef(id=citizen_id)),
        request_id="cert-1",
    )
    first = stack.certificates.IssueCertificate(request, metadata=stack.meta(OPERATOR))
    with stack.unchanged():
        again = stack.certificates.IssueCertificate(request, metadata=stack.meta(OPERATOR))
    assert again.certificate.summary.serial_number == first.certificate.summary.serial_number
    assert again == first

    other = certificate_pb2.IssueCertificateRequest()
    other.CopyFrom(request)
    other.csr = make_csr()
    with stack.unchanged():
        _refused(
            grpc.StatusCode.ALREADY_EXISTS,
            lambda: stack.certificates.IssueCertificate(other, metadata=stack.meta(OPERATOR)),
        )
    with stack.platform.db.read() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(CaCertificate)
                .where(CaCertificate.profile == "citizen")
            )
            == 1
        )

    # a status change: the retry answers the suspension, it does not fail as "already held"
    ref = certificate_pb2.CertificateRef(serial_number=first.certificate.summary.serial_number)
    hold = certificate_pb2.SuspendCertificateRequest(
        certificate=ref, comment="lost", request_id="hold-1"
    )
    held = stack.certificates.SuspendCertificate(hold, metadata=stack.meta(OPERATOR))
    with stack.unchanged():
        assert stack.certificates.SuspendCertificate(hold, metadata=stack.meta(OPERATOR)) == held


# --- seals: transitions and sealing ---------------------------------------------------------


def _active_seal(stack: Stack, company_id: str, rep: Principal) -> tuple[str, list[Any]]:
    """Drive a contract seal to ACTIVE, each step with a key and retried once; the answers."""
    seal = stack.seals
    steps: list[tuple[Any, Any, Principal]] = []
    apply = seal_pb2.ApplySealRequest(
        owner=common_pb2.IdentityRef(id=company_id),
        kind=common_pb2.SEAL_KIND_CONTRACT,
        reason="contracts",
        request_id="apply-1",
    )
    applied = seal.ApplySeal(apply, metadata=stack.meta(rep))
    seal_id = applied.seal.id
    steps = [
        (
            seal.ReviewSeal,
            seal_pb2.ReviewSealRequest(
                seal_id=seal_id,
                decision=seal_pb2.REVIEW_DECISION_APPROVE,
                reason="ok",
                request_id="review-1",
            ),
            REVIEWER,
        ),
        (seal.MakeSeal, seal_pb2.MakeSealRequest(seal_id=seal_id, request_id="make-1"), MAKER),
        (seal.FileSeal, seal_pb2.FileSealRequest(seal_id=seal_id, request_id="file-1"), FILING),
        (seal.IssueSeal, seal_pb2.IssueSealRequest(seal_id=seal_id, request_id="issue-1"), FILING),
    ]
    answers: list[Any] = [applied]
    with stack.unchanged():
        assert seal.ApplySeal(apply, metadata=stack.meta(rep)) == applied
    for method, request, principal in steps:
        answer = method(request, metadata=stack.meta(principal))
        with stack.unchanged():  # a retry after the transition: the same answer, nothing new
            assert method(request, metadata=stack.meta(principal)) == answer
        answers.append(answer)
    return seal_id, answers


def test_seal_transitions_and_sealing_retry_once(stack: Stack) -> None:
    company_id, rep = _company(stack)
    seal_id, answers = _active_seal(stack, company_id, rep)
    assert answers[-1].seal.status == common_pb2.SEAL_STATUS_ACTIVE
    # the made seal's key and certificate were made once
    assert (
        answers[2].seal.certificate.der
        == stack.seals.GetSeal(
            seal_pb2.GetSealRequest(seal_id=seal_id), metadata=stack.meta(FILING)
        ).seal.certificate.der
    )

    sign = seal_pb2.SignDataRequest(seal_id=seal_id, data=b"contract body", request_id="sign-1")
    signed = stack.seals.SignData(sign, metadata=stack.meta(rep))
    with stack.unchanged():  # no second seal use, no second audit record
        again = stack.seals.SignData(sign, metadata=stack.meta(rep))
    assert again.signature == signed.signature and again.event == signed.event

    other = seal_pb2.SignDataRequest(seal_id=seal_id, data=b"another body", request_id="sign-1")
    with stack.unchanged():
        _refused(
            grpc.StatusCode.ALREADY_EXISTS,
            lambda: stack.seals.SignData(other, metadata=stack.meta(rep)),
        )

    suspend = seal_pb2.SuspendSealRequest(
        seal_id=seal_id,
        cause=seal_pb2.SUSPENSION_CAUSE_LOSS,
        reason="lost",
        request_id="suspend-1",
    )
    suspended = stack.seals.SuspendSeal(suspend, metadata=stack.meta(FILING))
    with stack.unchanged():
        assert stack.seals.SuspendSeal(suspend, metadata=stack.meta(FILING)) == suspended
    with stack.platform.db.read() as session:
        assert verify_chain(session).ok


def test_a_call_past_its_deadline_keeps_its_key_until_its_work_has_ended(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client gives up (deadline) while the call's work still runs in a thread: the key
    stays claimed until the work ends (a retry meanwhile is told "in progress" and does
    nothing), and then holds the work's answer — one use, not two. (Freed when the call was
    cancelled, a retry acted beside the late work: a signature recorded twice in the soak.)"""
    company_id, rep = _company(stack)
    seal_id, _ = _active_seal(stack, company_id, rep)
    entered, release = threading.Event(), threading.Event()
    original = SealUsage.record_use
    calls: list[int] = []

    def slow_first(self: SealUsage, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first call's work is held up past its client's deadline
            entered.set()
            assert release.wait(60)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SealUsage, "record_use", slow_first)

    def uses() -> int:
        with stack.platform.db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(SealEventRow)
                    .where(SealEventRow.seal_id == seal_id, SealEventRow.action == "sign_data")
                )
                or 0
            )

    before = uses()
    sign = seal_pb2.SignDataRequest(seal_id=seal_id, data=b"slow body", request_id="slow-1")
    metadata = stack.meta(rep)
    _refused(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        lambda: stack.seals.SignData(sign, metadata=metadata, timeout=1.0),
    )
    assert entered.wait(30)
    try:
        with stack.unchanged():  # the work still runs: the key is still its own
            _refused(
                grpc.StatusCode.UNAVAILABLE,
                lambda: stack.seals.SignData(sign, metadata=metadata, timeout=30),
            )
    finally:
        release.set()
    deadline = time.monotonic() + 30
    answer: seal_pb2.SignDataResponse | None = None
    while answer is None:  # the late work's answer is stored once it has ended
        try:
            answer = stack.seals.SignData(sign, metadata=metadata, timeout=30)
        except grpc.RpcError as error:  # "in progress" until then
            code = error.code()
        if answer is None:
            assert code == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() < deadline, "the late work's answer was never stored"
    assert uses() == before + 1 and len(calls) == 1
    with stack.unchanged():
        assert stack.seals.SignData(sign, metadata=metadata, timeout=30) == answer


# --- the ledger's decisions about dead claimants --------------------------------------------


def _claim(stack: Stack, key: RequestKey, digest: str) -> Claim:
    ledger = request_ledger(stack.platform)
    begun = ledger.begin(key, digest)
    assert isinstance(begun, Claim)
    return begun


def test_a_dead_claimants_claim_is_taken_over_only_when_it_did_nothing(stack: Stack) -> None:
    platform = stack.platform
    digest = request_digest(b"body")
    # claimed, then the process died before acting: after stale_after, a retry takes it over
    idle = RequestKey("govtrust.v1.X.Y", "user:a", "idle-1")
    _claim(stack, idle, digest)
    now = request_ledger(platform)
    later = RequestLedger(
        platform.db, now.cipher, clock=lambda: datetime.now(UTC) + timedelta(hours=1)
    )
    assert isinstance(later.begin(idle, digest), Claim)

    # claimed, acted (its audit record carries the claim), died before storing the answer:
    # the retry is refused, never acted on again
    acted = RequestKey("govtrust.v1.X.Y", "user:a", "acted-1")
    claim = _claim(stack, acted, digest)
    from govtrust import audit

    with acting_on(claim), platform.db.transaction() as session:
        audit.append(session, actor="user:a", action="test.effect", target="t/1")
    with stack.unchanged(), pytest.raises(RequestOutcomeUnknown):
        later.begin(acted, digest)


def test_a_claim_of_a_process_gone_from_the_cluster_is_taken_over_at_once(stack: Stack) -> None:
    """Replica A claims a key and is killed: once its cluster membership is gone and (on
    PostgreSQL) none of its database sessions is left, a retry on replica B takes the claim over
    at once, not after ``stale_after``. While A renews its membership, or still has a session
    open (a partitioned host, whose transaction might yet commit), the retry is BUSY. A's late
    answer then changes nothing."""
    platform = stack.platform
    cipher = request_ledger(platform).cipher
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "gone-1")
    a = Membership(platform.db, ttl_seconds=60, holder=f"test-a-{secrets.token_hex(4)}")
    a.renew()
    ledger_a = RequestLedger(platform.db, cipher, member=lambda: a.holder)
    ledger_b = RequestLedger(platform.db, cipher, member=lambda: "test-b")
    assert ledger_b.stale_after >= timedelta(minutes=1)
    claim = ledger_a.begin(key, digest)
    assert isinstance(claim, Claim)
    assert ledger_b.begin(key, digest) is Begun.BUSY  # A is alive
    postgresql = platform.db.engine.dialect.name == "postgresql"
    a_session = None
    if postgresql:  # a session of A stays open (application_name = its member id)
        a_db = Database(platform.db.url + f"?application_name={a.holder}")
        a_session = a_db.engine.connect()
    try:
        a.leave()  # stands for the expiry of a killed process's membership
        if postgresql:
            assert ledger_b.begin(key, digest) is Begun.BUSY  # its session might still commit
    finally:
        if a_session is not None:
            a_session.close()
            a_db.dispose()
    taken = ledger_b.begin(key, digest)
    assert isinstance(taken, Claim) and taken.token != claim.token
    ledger_a.finish(claim, b"late answer of A")  # refused by the token: B's claim stands
    with platform.db.read() as session:
        row = session.get(RequestLedgerRow, (key.operation, key.principal, key.request_id))
        assert row is not None and row.state == "pending" and row.holder == "test-b"
        assert row.claim_token == taken.token and row.response is None


def test_an_abandon_the_database_refused_is_retried_in_the_background(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that failed because the database went away cannot free its key then; the ledger
    frees it as soon as the database answers again (a live claimant's key would otherwise be
    BUSY for ``stale_after``)."""
    from sqlalchemy import exc

    ledger = request_ledger(stack.platform)
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "abandon-later")
    claim = _claim(stack, key, digest)
    real = ledger._abandon
    failures = [exc.DisconnectionError("the database went away")]

    def flaky(c: Claim) -> None:
        if failures:
            raise failures.pop()
        real(c)

    monkeypatch.setattr(ledger, "_abandon", flaky)
    # the ledger row is the subject (freed in the background); nothing else may change
    with (
        unchanged(stack.platform.db, allow=["request_ledger"]),
        pytest.raises(exc.DisconnectionError),
    ):
        ledger.abandon(claim)
    assert ledger.begin(key, digest) is Begun.BUSY
    deadline = time.monotonic() + 10
    while (begun := ledger.begin(key, digest)) is Begun.BUSY:
        assert time.monotonic() < deadline, "the key was never freed"
        time.sleep(0.05)
    assert isinstance(begun, Claim)


def test_a_claim_whose_commit_met_a_dying_connection_is_freed_once_the_database_answers(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's COMMIT landed but the connection died on its answer (the caller saw a
    connection fault, UNAVAILABLE): the claimant is alive, so nobody would take the key over for
    ``stale_after``; the ledger frees it in the background instead, and the retry acts."""
    from sqlalchemy import exc

    ledger = request_ledger(stack.platform)
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "commit-unknown")
    real = ledger._begin_in_transaction

    def committed_then_lost(*args: Any) -> Any:
        real(*args)  # the claim is stored
        raise exc.DisconnectionError("the connection died on the COMMIT's answer")

    monkeypatch.setattr(ledger, "_begin_in_transaction", committed_then_lost)
    # the claim stored (and freed in the background) is the subject; nothing else may change
    with (
        unchanged(stack.platform.db, allow=["request_ledger"]),
        pytest.raises(exc.DisconnectionError),
    ):
        ledger.begin(key, digest)
    monkeypatch.undo()
    deadline = time.monotonic() + 10
    while (begun := ledger.begin(key, digest)) is Begun.BUSY:
        assert time.monotonic() < deadline, "the key was never freed"
        time.sleep(0.05)
    assert isinstance(begun, Claim)


# --- concurrency (PostgreSQL) ---------------------------------------------------------------


@pytest.mark.postgresql_only
def test_concurrent_duplicates_act_once(stack: Stack, database_url: str) -> None:
    citizen_id = _assured_citizen(stack)
    request = certificate_pb2.IssueCertificateRequest(
        csr=make_csr(),
        profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
        subject=certificate_pb2.CertificateSubject(identity=common_pb2.IdentityRef(id=citizen_id)),
        request_id="race-1",
    )
    metadata = stack.meta(OPERATOR)
    barrier = threading.Barrier(6)

    def call(_index: int) -> str:
        barrier.wait()
        try:
            answer = stack.certificates.IssueCertificate(request, metadata=metadata)
        except grpc.RpcError as error:  # a duplicate that waited out the claimant: retryable
            return f"error:{error.code().name}"
        return str(answer.certificate.summary.serial_number)

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(call, range(6)))
    serials = [s for s in outcomes if not s.startswith("error:")]
    assert set(outcomes) - set(serials) <= {"error:UNAVAILABLE"}, outcomes
    assert serials and len(set(serials)) == 1
    with stack.platform.db.read() as session:
        count = session.scalar(
            select(func.count())
            .select_from(CaCertificate)
            .where(CaCertificate.profile == "citizen")
        )
    assert count == 1
    # and a late retry still gets that one certificate
    again = stack.certificates.IssueCertificate(request, metadata=metadata)
    assert again.certificate.summary.serial_number == serials[0]


# --- answers lost after the effect: rebuilt from it -----------------------------------------


@contextlib.contextmanager
def _killed_before_answering(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The calls in the block run on a replica killed after each call's effect committed and
    before its answer was stored: the answer is dropped (the claim stays pending, held by the
    replica), and the replica's cluster membership is gone afterwards (as after a kill -9)."""
    ledger = request_ledger(stack.platform)
    replica = Membership(stack.platform.db, ttl_seconds=60, holder=f"dead-{secrets.token_hex(4)}")
    replica.renew()
    with monkeypatch.context() as patch:
        patch.setattr(ledger, "member", lambda: replica.holder)
        patch.setattr(ledger, "finish", lambda claim, response: None)
        yield
    replica.leave()


def _pending_keys(stack: Stack) -> set[str]:
    with stack.platform.db.read() as session:
        return set(
            session.scalars(
                select(RequestLedgerRow.request_id).where(RequestLedgerRow.state == "pending")
            )
        )


def _lost_then_rebuilt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any]
) -> Any:
    """``call`` once with its answer lost, then retried: the retry's answer equals the first,
    it does nothing again (only the ledger row takes the rebuilt answer), and a further retry
    gets the stored answer. Returns the answer."""
    before = _pending_keys(stack)
    with _killed_before_answering(stack, monkeypatch):
        first = call()
    with stack.platform.db.read() as session:
        pending = [
            row
            for row in session.scalars(
                select(RequestLedgerRow).where(RequestLedgerRow.state == "pending")
            )
            if row.request_id not in before
        ]
    assert len(pending) == 1 and pending[0].response is None  # the answer was never stored
    with unchanged(stack.platform.db, stack.platform.keystore, allow=["request_ledger"]):
        again = call()
    assert again == first
    with stack.platform.db.read() as session:
        row = session.get(
            RequestLedgerRow, (pending[0].operation, pending[0].principal, pending[0].request_id)
        )
        assert row is not None and row.state == "done" and row.response is not None
    with stack.unchanged():
        assert call() == first
    return first


def test_lost_registration_answers_are_rebuilt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = identity_pb2.RegisterCitizenRequest(
        name="李四", id_number=resident_id("11010519800101001"), request_id="lost-reg-1"
    )
    meta = stack.meta(REGISTRAR)
    citizen = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.identity.RegisterCitizen(request, metadata=meta)
    ).citizen
    assert citizen.id

    company = identity_pb2.RegisterLegalPersonRequest(
        uscc=USCC,
        name="福州示例科技有限公司",
        legal_representative=common_pb2.IdentityRef(id=citizen.id),
        request_id="lost-reg-2",
    )
    registered = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.identity.RegisterLegalPerson(company, metadata=meta)
    )
    assert registered.legal_person.id

    staff = identity_pb2.RegisterStaffRequest(
        name="赵六",
        department_code="FZ-SCJG",
        department_name="市场监督管理局",
        employee_number="E001",
        roles=["seal-reviewer"],
        citizen=common_pb2.IdentityRef(id=citizen.id),
        request_id="lost-reg-3",
    )
    admin = stack.meta(ADMIN)
    assert _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.identity.RegisterStaff(staff, metadata=admin)
    ).staff.id

    # service identities: registration and every change
    service_calls: list[tuple[Any, Any]] = [
        (
            stack.identity.RegisterServiceIdentity,
            identity_pb2.RegisterServiceIdentityRequest(
                name="tax.portal", roles=["verifier"], request_id="lost-svc-1"
            ),
        ),
        (
            stack.identity.UpdateServiceIdentityRoles,
            identity_pb2.UpdateServiceIdentityRolesRequest(
                name="tax.portal", roles=["verifier", "licence-issuer:tax"], request_id="lost-svc-2"
            ),
        ),
        (
            stack.identity.DisableServiceIdentity,
            identity_pb2.DisableServiceIdentityRequest(
                name="tax.portal", reason="retired", request_id="lost-svc-3"
            ),
        ),
        (
            stack.identity.EnableServiceIdentity,
            identity_pb2.EnableServiceIdentityRequest(
                name="tax.portal", reason="back", request_id="lost-svc-4"
            ),
        ),
    ]
    answers = [
        _lost_then_rebuilt(stack, monkeypatch, functools.partial(method, request, metadata=admin))
        for method, request in service_calls
    ]
    assert [a.service_identity.name for a in answers] == ["tax.portal"] * 4
    assert list(answers[1].service_identity.roles) == ["licence-issuer:tax", "verifier"]


def test_lost_certificate_answers_are_rebuilt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    citizen_id = _assured_citizen(stack)
    subject = certificate_pb2.CertificateSubject(identity=common_pb2.IdentityRef(id=citizen_id))
    meta = stack.meta(OPERATOR)
    issue = certificate_pb2.IssueCertificateRequest(
        csr=make_csr(),
        profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
        subject=subject,
        request_id="lost-cert-1",
    )
    issued = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.certificates.IssueCertificate(issue, metadata=meta)
    )
    generate = certificate_pb2.GenerateKeyAndIssueRequest(
        profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN, subject=subject, request_id="lost-cert-2"
    )
    generated = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.certificates.GenerateKeyAndIssue(generate, metadata=meta)
    )
    assert generated.key.public_key and generated.certificate.key.key_id == generated.key.key_id
    with stack.platform.db.read() as session:  # one certificate each, no second issuance
        assert (
            session.scalar(
                select(func.count())
                .select_from(CaCertificate)
                .where(CaCertificate.profile == "citizen")
            )
            == 2
        )

    ref = certificate_pb2.CertificateRef(serial_number=issued.certificate.summary.serial_number)
    held = _lost_then_rebuilt(
        stack,
        monkeypatch,
        lambda: stack.certificates.SuspendCertificate(
            certificate_pb2.SuspendCertificateRequest(
                certificate=ref, comment="lost", request_id="lost-hold"
            ),
            metadata=meta,
        ),
    )
    assert held.certificate.status == certificate_pb2.CERTIFICATE_STATUS_SUSPENDED
    resumed = _lost_then_rebuilt(
        stack,
        monkeypatch,
        lambda: stack.certificates.ResumeCertificate(
            certificate_pb2.ResumeCertificateRequest(
                certificate=ref, comment="found", request_id="lost-resume"
            ),
            metadata=meta,
        ),
    )
    assert resumed.certificate.status == certificate_pb2.CERTIFICATE_STATUS_ACTIVE
    revoked = _lost_then_rebuilt(
        stack,
        monkeypatch,
        lambda: stack.certificates.RevokeCertificate(
            certificate_pb2.RevokeCertificateRequest(
                certificate=ref,
                reason=common_pb2.REVOCATION_REASON_KEY_COMPROMISE,
                request_id="lost-revoke",
            ),
            metadata=meta,
        ),
    )
    assert revoked.certificate.status == certificate_pb2.CERTIFICATE_STATUS_REVOKED

    # renewals: the generated key's certificate with a CSR, then that one with a new key
    serial = generated.certificate.summary.serial_number
    for request_id, new_key in (
        ("lost-renew-1", {"csr": make_csr()}),
        (
            "lost-renew-2",
            {"generate_key_algorithm": common_pb2.KEY_ALGORITHM_EC_P256, "revoke_previous": True},
        ),
    ):
        renew = certificate_pb2.RenewCertificateRequest(
            certificate=certificate_pb2.CertificateRef(serial_number=serial),
            request_id=request_id,
            **new_key,
        )
        renewed = _lost_then_rebuilt(
            stack,
            monkeypatch,
            functools.partial(stack.certificates.RenewCertificate, renew, metadata=meta),
        )
        assert renewed.previous.summary.serial_number == serial
        serial = renewed.certificate.summary.serial_number
    assert renewed.key.public_key
    assert renewed.previous.status == certificate_pb2.CERTIFICATE_STATUS_REVOKED


def test_lost_seal_transition_answers_are_rebuilt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    company_id, rep = _company(stack)
    apply = seal_pb2.ApplySealRequest(
        owner=common_pb2.IdentityRef(id=company_id),
        kind=common_pb2.SEAL_KIND_CONTRACT,
        reason="contracts",
        request_id="lost-apply",
    )
    rep_meta = stack.meta(rep)
    seal_id = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.seals.ApplySeal(apply, metadata=rep_meta)
    ).seal.id
    seals = stack.seals
    steps: list[tuple[Any, Any, Principal, int]] = [
        (
            seals.ReviewSeal,
            seal_pb2.ReviewSealRequest(
                seal_id=seal_id,
                decision=seal_pb2.REVIEW_DECISION_APPROVE,
                reason="ok",
                request_id="l-review",
            ),
            REVIEWER,
            common_pb2.SEAL_STATUS_APPROVED,
        ),
        (
            seals.MakeSeal,
            seal_pb2.MakeSealRequest(seal_id=seal_id, request_id="l-make"),
            MAKER,
            common_pb2.SEAL_STATUS_MADE,
        ),
        (
            seals.FileSeal,
            seal_pb2.FileSealRequest(seal_id=seal_id, request_id="l-file"),
            FILING,
            common_pb2.SEAL_STATUS_FILED,
        ),
        (
            seals.IssueSeal,
            seal_pb2.IssueSealRequest(seal_id=seal_id, request_id="l-issue"),
            FILING,
            common_pb2.SEAL_STATUS_ACTIVE,
        ),
    ]
    for method, request, principal, status in steps:
        meta = stack.meta(principal)
        answer = _lost_then_rebuilt(
            stack,
            monkeypatch,
            functools.partial(method, request, metadata=meta),
        )
        assert answer.seal.id == seal_id and answer.seal.status == status

    # the filing office's suspension, resumption, revocation and destruction
    steps = [
        (
            seals.SuspendSeal,
            seal_pb2.SuspendSealRequest(
                seal_id=seal_id,
                cause=seal_pb2.SUSPENSION_CAUSE_LOSS,
                reason="lost",
                request_id="l-suspend",
            ),
            FILING,
            common_pb2.SEAL_STATUS_SUSPENDED,
        ),
        (
            seals.ResumeSeal,
            seal_pb2.ResumeSealRequest(seal_id=seal_id, reason="found", request_id="l-resume"),
            FILING,
            common_pb2.SEAL_STATUS_ACTIVE,
        ),
        (
            seals.RevokeSeal,
            seal_pb2.RevokeSealRequest(seal_id=seal_id, reason="closed", request_id="l-revoke"),
            FILING,
            common_pb2.SEAL_STATUS_REVOKED,
        ),
        (
            seals.DestroySeal,
            seal_pb2.DestroySealRequest(seal_id=seal_id, reason="done", request_id="l-destroy"),
            FILING,
            common_pb2.SEAL_STATUS_DESTROYED,
        ),
    ]
    for method, request, principal, status in steps:
        meta = stack.meta(principal)
        answer = _lost_then_rebuilt(
            stack,
            monkeypatch,
            functools.partial(method, request, metadata=meta),
        )
        assert answer.seal.status == status
    with stack.platform.db.read() as session:
        assert verify_chain(session).ok


def _took_effect(error: grpc.RpcError) -> list[tuple[str, str, str]]:
    """The ``TOOK_EFFECT`` precondition violations of an "outcome unknown" refusal."""
    status = rpc_status.from_call(cast(grpc.Call, error))
    assert status is not None
    failures = [
        error_details_pb2.PreconditionFailure.FromString(d.value)
        for d in status.details
        if d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR)
    ]
    return [(v.type, v.subject, v.description) for f in failures for v in f.violations]


def test_lost_key_recovery_answers_are_rebuilt_but_a_lost_delivery_is_named(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    citizen_id = _assured_citizen(stack)
    operator = stack.meta(OPERATOR)
    signing, recipient = (
        stack.certificates.GenerateKeyAndIssue(
            certificate_pb2.GenerateKeyAndIssueRequest(
                profile=common_pb2.CERTIFICATE_PROFILE_CITIZEN,
                subject=certificate_pb2.CertificateSubject(
                    identity=common_pb2.IdentityRef(id=citizen_id)
                ),
                key_algorithm=common_pb2.KEY_ALGORITHM_SM2,
            ),
            metadata=operator,
        ).certificate.summary.serial_number
        for _ in range(2)
    )
    pair = stack.certificates.IssueEncryptionPair(
        certificate_pb2.IssueEncryptionPairRequest(
            signing_certificate=certificate_pb2.CertificateRef(serial_number=signing)
        ),
        metadata=operator,
    )
    encryption = pair.encryption_certificate.summary.serial_number
    request = certificate_pb2.RequestKeyRecoveryRequest(
        certificate=certificate_pb2.CertificateRef(serial_number=encryption),
        legal_basis="court order 7",
        recipient_certificate=certificate_pb2.CertificateRef(serial_number=recipient),
        request_id="lost-recovery",
    )
    opened = _lost_then_rebuilt(
        stack,
        monkeypatch,
        lambda: stack.certificates.RequestKeyRecovery(request, metadata=operator),
    ).recovery
    assert opened.recovery_id and opened.status == certificate_pb2.KEY_RECOVERY_STATUS_PENDING
    assert opened.certificate.serial_number == encryption
    assert opened.recipient.serial_number == recipient
    for officer, approvers, status in (
        ("officer-1", 1, certificate_pb2.KEY_RECOVERY_STATUS_PENDING),
        ("officer-2", 2, certificate_pb2.KEY_RECOVERY_STATUS_APPROVED),
    ):
        meta = stack.meta(Principal("user", officer, frozenset({"key-recovery"})))
        approve = certificate_pb2.ApproveKeyRecoveryRequest(
            recovery_id=opened.recovery_id, request_id=f"lost-approve-{officer}"
        )
        approved = _lost_then_rebuilt(
            stack,
            monkeypatch,
            functools.partial(stack.certificates.ApproveKeyRecovery, approve, metadata=meta),
        ).recovery
        assert approved.recovery_id == opened.recovery_id and approved.status == status
        assert len(approved.approvers) == approvers

    authority = authority_for(stack.platform)
    with stack.unchanged():
        with pytest.raises(PermissionDenied):
            authority.key_recovery(MAKER, opened.recovery_id)
        with pytest.raises(NotFound, match="no such key recovery"):
            authority.key_recovery(OPERATOR, "nope")

    # the delivered key envelope is not stored: its lost answer is named, never made again
    deliver = certificate_pb2.DeliverRecoveredKeyRequest(
        recovery_id=opened.recovery_id, request_id="lost-deliver"
    )
    with _killed_before_answering(stack, monkeypatch):
        assert stack.certificates.DeliverRecoveredKey(deliver, metadata=operator).key_envelope
    with stack.unchanged():
        error = _refused(
            grpc.StatusCode.FAILED_PRECONDITION,
            lambda: stack.certificates.DeliverRecoveredKey(deliver, metadata=operator),
        )
    assert "took effect but its answer was lost" in (error.details() or "")
    assert _took_effect(error) == [
        ("TOOK_EFFECT", f"key-recovery/{opened.recovery_id}", "ca.kmc.recovery.deliver")
    ]


def test_lost_seal_grant_and_remake_answers_are_rebuilt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    company_id, rep = _company(stack)
    seal_id, _ = _active_seal(stack, company_id, rep)
    rep_meta = stack.meta(rep)
    grants = []
    for n, first17 in enumerate(("11010519900101003", "11010519910202004")):
        grantee = _citizen(stack, "王五", first17)
        request = seal_pb2.GrantSealUseRequest(
            seal_id=seal_id,
            grantee=common_pb2.IdentityRef(id=grantee),
            document_kinds=["contract"],
            request_id=f"lost-grant-{n}",
        )
        granted = _lost_then_rebuilt(
            stack,
            monkeypatch,
            functools.partial(stack.seals.GrantSealUse, request, metadata=rep_meta),
        ).grant
        assert granted.seal_id == seal_id and granted.grantee.id == grantee
        assert granted.status == common_pb2.GRANT_STATUS_ACTIVE
        assert list(granted.document_kinds) == ["contract"]
        grants.append(granted)
    assert grants[0].id != grants[1].id
    # two answers lost before either is retried (the older grant revoked, a third granted):
    # each rebuilt answer names its own call's grant, though the seal's newest event is not it
    revoke = seal_pb2.RevokeSealUseRequest(
        grant_id=grants[0].id, reason="left the company", request_id="lost-ungrant"
    )
    third = seal_pb2.GrantSealUseRequest(
        seal_id=seal_id,
        grantee=common_pb2.IdentityRef(id=grants[1].grantee.id),
        request_id="lost-grant-2",
    )
    calls: list[Callable[[], Any]] = [
        functools.partial(stack.seals.RevokeSealUse, revoke, metadata=rep_meta),
        functools.partial(stack.seals.GrantSealUse, third, metadata=rep_meta),
    ]
    with _killed_before_answering(stack, monkeypatch):
        firsts = [call() for call in calls]
    with unchanged(stack.platform.db, stack.platform.keystore, allow=["request_ledger"]):
        assert [call() for call in calls] == firsts
    with stack.unchanged():
        assert [call() for call in calls] == firsts
    revoked, granted = firsts[0].grant, firsts[1].grant
    assert revoked.id == grants[0].id and revoked.status == common_pb2.GRANT_STATUS_REVOKED
    assert revoked.revoke_reason == "left the company"
    assert granted.id not in (grants[0].id, grants[1].id) and not granted.document_kinds
    with stack.unchanged(), pytest.raises(SealNotFound, match="recorded no grant"):
        runtime_for(stack.platform).service.grant_recorded(seal_id, 1)  # not a grant's record

    remake = seal_pb2.RemakeSealRequest(
        seal_id=seal_id,
        cause=seal_pb2.REMAKE_CAUSE_LOSS,
        reason="lost",
        request_id="lost-remake",
    )
    maker = stack.meta(MAKER)
    remade = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.seals.RemakeSeal(remake, metadata=maker)
    )
    assert remade.old_seal.id == seal_id
    assert remade.old_seal.status == common_pb2.SEAL_STATUS_REVOKED
    assert remade.old_seal.replaced_by_seal_id == remade.new_seal.id
    assert remade.new_seal.replaces_seal_id == seal_id
    assert remade.new_seal.status == common_pb2.SEAL_STATUS_MADE
    with stack.platform.db.read() as session:
        assert verify_chain(session).ok


def test_lost_agent_grant_and_status_answers_are_rebuilt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    company_id, rep = _company(stack)
    agent_id = _citizen(stack, "王五", "11010519900101003")
    rep_meta = stack.meta(rep)
    grant = identity_pb2.GrantAgentRequest(
        legal_person=common_pb2.IdentityRef(id=company_id),
        agent=common_pb2.IdentityRef(id=agent_id),
        scopes=["seal.use", "seal.apply"],
        request_id="lost-agent",
    )
    granted = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.identity.GrantAgent(grant, metadata=rep_meta)
    ).grant
    assert granted.id and granted.agent.id == agent_id
    assert list(granted.scopes) == ["seal.apply", "seal.use"]
    assert granted.status == common_pb2.GRANT_STATUS_ACTIVE
    revoke = identity_pb2.RevokeAgentRequest(
        grant_id=granted.id, reason="no longer employed", request_id="lost-unagent"
    )
    revoked = _lost_then_rebuilt(
        stack, monkeypatch, lambda: stack.identity.RevokeAgent(revoke, metadata=rep_meta)
    ).grant
    assert revoked.id == granted.id and revoked.status == common_pb2.GRANT_STATUS_REVOKED

    # status changes of a citizen, then the cancellation of a legal person holding an active
    # seal: its listener's records (the revoked seal, its certificate) are not the answer
    seal_id, _ = _active_seal(stack, company_id, rep)
    registrar = stack.meta(REGISTRAR)
    changes = [
        (
            agent_id,
            identity_pb2.IDENTITY_STATUS_ACTION_SUSPEND,
            common_pb2.IDENTITY_STATUS_SUSPENDED,
        ),
        (
            agent_id,
            identity_pb2.IDENTITY_STATUS_ACTION_REINSTATE,
            common_pb2.IDENTITY_STATUS_ACTIVE,
        ),
        (
            company_id,
            identity_pb2.IDENTITY_STATUS_ACTION_CANCEL,
            common_pb2.IDENTITY_STATUS_CANCELLED,
        ),
    ]
    for n, (identity, action, status) in enumerate(changes):
        request = identity_pb2.UpdateIdentityStatusRequest(
            identity=common_pb2.IdentityRef(id=identity),
            action=action,
            reason="by order",
            request_id=f"lost-status-{n}",
        )
        changed = _lost_then_rebuilt(
            stack,
            monkeypatch,
            functools.partial(stack.identity.UpdateIdentityStatus, request, metadata=registrar),
        ).identity
        assert changed.id == identity and changed.status == status
    assert (
        stack.seals.GetSeal(
            seal_pb2.GetSealRequest(seal_id=seal_id), metadata=stack.meta(FILING)
        ).seal.status
        == common_pb2.SEAL_STATUS_REVOKED
    )


# --- sealing answers lost after the use: re-produced bound to it ----------------------------


def _uses(stack: Stack, seal_id: str) -> list[Any]:
    """The seal's use events and its history length (the use count)."""
    with stack.platform.db.read() as session:
        events = list(
            session.scalars(
                select(SealEventRow)
                .where(SealEventRow.seal_id == seal_id, SealEventRow.action.in_(USE_ACTIONS))
                .order_by(SealEventRow.sequence)
            )
        )
        length = session.scalar(select(SealRow.history_length).where(SealRow.id == seal_id))
    return [(e.sequence, e.action, e.digest, e.audit_seq) for e in events] + [length]


def _lost_then_reproduced(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    seal_id: str,
    call: Callable[[], Any],
    meanwhile: Callable[[], object] = lambda: None,
) -> tuple[Any, Any]:
    """``call`` once with its answer lost on a replica that then left the cluster, and retried:
    the retry's answer is a new document or signature bound to the lost call's use — the same
    event, no second use (no event, no count), one ``seal.reproduce`` audit record naming it —
    and a further retry gets that answer back, changing nothing. (lost answer, retry's)."""
    with _killed_before_answering(stack, monkeypatch):
        lost = call()
    meanwhile()
    uses = _uses(stack, seal_id)
    with stack.platform.db.read() as session:
        head = head_seq(session)
    again = call()
    assert _uses(stack, seal_id) == uses  # the same use: no event, no count
    assert again.event == lost.event
    with stack.platform.db.read() as session:
        after = [r for r in records_about(session, [f"seal/{seal_id}"]) if r.seq > head]
    assert [(r.action, r.details["use_sequence"], r.details["use_audit_seq"]) for r in after] == [
        ("seal.reproduce", lost.event.sequence, int(lost.event.audit_record_id))
    ]
    with stack.unchanged():
        assert call() == again
    return lost, again


def _pyhanko_valid(stack: Stack, pdf: bytes) -> Any:
    chain = runtime_for(stack.platform).service.authority.chain()
    (signature,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    status = validate_pdf_signature(
        signature,
        ValidationContext(
            trust_roots=[x509.Certificate.load(chain[-1])],
            other_certs=[x509.Certificate.load(c) for c in chain[:-1]],
            allow_fetching=False,
            revocation_mode="soft-fail",
        ),
    )
    assert status.intact and status.valid and status.trusted, status
    return status


def _ofd_document() -> ofd.Document:
    """A one-page OFD with a red square (no font: the seal is what is checked)."""
    square = ofd.Path(ofd.Box(20, 60, 30, 30), ofd.rectangles([(0, 0, 30, 30)]), fill=(255, 0, 0))
    info = ofd.DocumentInfo(doc_id="0f1e2d", creation_date="2026-12-07", creator="govtrust")
    return ofd.Document(info, 210, 297, (ofd.Page(objects=(square,)),), (), ())


def test_lost_sealing_answers_are_reproduced_bound_to_the_recorded_use(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    company_id, rep = _company(stack)
    seal_id, _ = _active_seal(stack, company_id, rep)
    meta = stack.meta(rep)
    seals = stack.seals

    # SealPdf: a valid PAdES signature (pyHanko) on the same document, the same use
    document = one_page_pdf()
    pdf = seal_pb2.SealPdfRequest(
        seal_id=seal_id,
        pdf=document,
        placement=seal_pb2.SealPlacement(position=seal_pb2.PagePosition(page=1, x_mm=90, y_mm=90)),
        document_kind="contract",
        reason="licence",
        request_id="lost-pdf",
    )
    lost, again = _lost_then_reproduced(
        stack, monkeypatch, seal_id, lambda: seals.SealPdf(pdf, metadata=meta)
    )
    assert again.sealed_pdf != lost.sealed_pdf and again.sealed_pdf.startswith(document)
    assert again.document_digest == lost.document_digest
    assert again.event.document_digest.value == hashlib.sha256(document).digest()
    status = _pyhanko_valid(stack, again.sealed_pdf)
    assert status.timestamp_validity is not None and status.timestamp_validity.valid

    # SealOfd: Signature.xml byte for byte the lost one (the recorded signing time), so the
    # dataHash is the use's digest; a new signature value, checked by the independent parser
    ofd = seal_pb2.SealOfdRequest(
        seal_id=seal_id,
        ofd=write_document(_ofd_document()),
        placement=seal_pb2.SealPlacement(position=seal_pb2.PagePosition(page=1, x_mm=60, y_mm=60)),
        request_id="lost-ofd",
    )
    lost, again = _lost_then_reproduced(
        stack, monkeypatch, seal_id, lambda: seals.SealOfd(ofd, metadata=meta)
    )
    old, new = read_package(lost.sealed_ofd), read_package(again.sealed_ofd)
    signature_file = again.signature_file.lstrip("/")
    signed_value = signature_file.replace("Signature.xml", "SignedValue.dat")
    assert new.files[signature_file] == old.files[signature_file]
    assert new.files[signed_value] != old.files[signed_value]
    assert again.data_hash == lost.data_hash == again.event.document_digest
    assert again.signing_time == lost.signing_time
    ses = gbt38540.parse_signature(new.files[signed_value])
    assert ses.data_hash == lost.data_hash.value and ses.time_stamp is not None
    assert verify_signature(new.files[signed_value]).data_hash == ses.data_hash

    # SignData, CMS with a time-stamp and SES_Signature: signatures over the same data
    cms_sign = seal_pb2.SignDataRequest(
        seal_id=seal_id, data=b"licence 42", timestamp=True, request_id="lost-cms"
    )
    lost, again = _lost_then_reproduced(
        stack, monkeypatch, seal_id, lambda: seals.SignData(cms_sign, metadata=meta)
    )
    assert again.signature != lost.signature and again.data_digest == lost.data_digest
    info = cms.ContentInfo.load(again.signature)["content"]["signer_infos"][0]
    assert info["unsigned_attrs"][0]["type"].native == "signature_time_stamp_token"
    made = seals.GetSeal(seal_pb2.GetSealRequest(seal_id=seal_id), metadata=meta).seal
    cms_key = made.pdf_certificate.der or made.certificate.der  # an SM2 seal's P-256 key
    public = load_der_x509_certificate(cms_key).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(  # over the signed attributes, whose message digest is the data's
        info["signature"].native,
        info["signed_attrs"].dump(force=False).replace(b"\xa0", b"\x31", 1),
        ec.ECDSA(hashes.SHA256()),
    )
    digests = [
        a["values"][0].native for a in info["signed_attrs"] if a["type"].native == "message_digest"
    ]
    assert digests == [hashlib.sha256(b"licence 42").digest()]
    ses_sign = seal_pb2.SignDataRequest(
        seal_id=seal_id,
        data=b"licence 43",
        format=common_pb2.SIGNATURE_FORMAT_SES_SIGNATURE,
        request_id="lost-ses",
    )
    other = seal_pb2.SignDataRequest(seal_id=seal_id, data=b"licence 44", request_id="lost-ses")

    def another_request() -> None:
        """The same request_id with another request is refused before and after the
        re-production, and changes nothing."""
        with stack.unchanged():
            _refused(grpc.StatusCode.ALREADY_EXISTS, lambda: seals.SignData(other, metadata=meta))

    lost, again = _lost_then_reproduced(
        stack,
        monkeypatch,
        seal_id,
        lambda: seals.SignData(ses_sign, metadata=meta),
        meanwhile=another_request,
    )
    assert again.signature != lost.signature
    assert verify_signature(again.signature, data=b"licence 43").data_hash == (
        again.data_digest.value
    )
    another_request()
    with stack.platform.db.read() as session:
        assert verify_chain(session).ok


def test_a_lost_sealing_answer_is_not_reproduced_once_the_seal_is_suspended(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making the signature again signs with the seal's key: a seal suspended since is not
    used again — the retry is refused naming the recorded use, and nothing is written."""
    company_id, rep = _company(stack)
    seal_id, _ = _active_seal(stack, company_id, rep)
    meta = stack.meta(rep)
    sign = seal_pb2.SignDataRequest(seal_id=seal_id, data=b"contract body", request_id="l-sign")
    with _killed_before_answering(stack, monkeypatch):
        stack.seals.SignData(sign, metadata=meta)
    stack.seals.SuspendSeal(
        seal_pb2.SuspendSealRequest(seal_id=seal_id, reason="lost"),
        metadata=stack.meta(FILING),
    )
    with stack.unchanged():
        error = _refused(
            grpc.StatusCode.FAILED_PRECONDITION,
            lambda: stack.seals.SignData(sign, metadata=meta),
        )
    assert "took effect but its answer was lost" in (error.details() or "")
    assert f"seal.sign_data on seal/{seal_id}" in (error.details() or "")
    assert _took_effect(error) == [("TOOK_EFFECT", f"seal/{seal_id}", "seal.sign_data")]


def test_a_taken_over_claims_late_abandon_changes_nothing(stack: Stack) -> None:
    """A claimant presumed dead (stale) whose call then fails: its late abandon must not free
    the key the retry took over (nor mark it answered)."""
    platform = stack.platform
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "late-abandon")
    first = _claim(stack, key, digest)
    later = RequestLedger(
        platform.db,
        request_ledger(platform).cipher,
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )
    taken = later.begin(key, digest)
    assert isinstance(taken, Claim) and taken.token != first.token
    with unchanged(platform.db):
        request_ledger(platform).abandon(first)
        request_ledger(platform).finish(first, b"late answer")
    later.finish(taken, b"the answer")
    assert later.begin(key, digest) == b"the answer"


def test_a_rebuild_that_cannot_answer_leaves_the_outcome_unknown(stack: Stack) -> None:
    """A rebuilder that finds no answer (None), or is refused by the domain (the object is
    gone), leaves the key "outcome unknown" naming the effect; a database outage while
    rebuilding stays retryable; an answer is stored once and replayed."""
    from govtrust import audit
    from govtrust.errors import Unavailable

    platform = stack.platform
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "rebuild-1")
    claim = _claim(stack, key, digest)
    with acting_on(claim), platform.db.transaction() as session:
        audit.append(session, actor="user:a", action="test.effect", target="t/1")
        audit.append(session, actor="user:a", action="test.other", target="t/2", outcome="failed")
    ledger = RequestLedger(
        platform.db,
        request_ledger(platform).cipher,
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )

    def refused(_effects: object) -> bytes:
        raise NotFound("no such thing")

    def outage(_effects: object) -> bytes:
        raise Unavailable("the database went away")

    for rebuild in (None, lambda _effects: None, refused):
        with stack.unchanged(), pytest.raises(RequestOutcomeUnknown) as info:
            ledger.wait_for_answer(key, digest, rebuild)
        assert [(e.action, e.target, e.outcome) for e in info.value.effects] == [
            ("test.effect", "t/1", "ok"),
            ("test.other", "t/2", "failed"),
        ]
        assert "took effect but its answer was lost" in info.value.message
        assert "test.effect on t/1" in info.value.message
    with stack.unchanged(), pytest.raises(Unavailable):
        ledger.wait_for_answer(key, digest, outage)
    seen: list[object] = []

    def answer(effects: object) -> bytes:
        seen.append(effects)
        return b"rebuilt"

    assert ledger.wait_for_answer(key, digest, answer) == b"rebuilt"
    assert ledger.wait_for_answer(key, digest, answer) == b"rebuilt"
    assert len(seen) == 1  # the second retry got the stored answer


def test_concurrent_reproductions_answer_the_one_stored_first(stack: Stack) -> None:
    """Two retries that both re-produce a lost answer (a signature differs each time) both
    answer the one stored first: every retry of a key gets the same answer."""
    from govtrust import audit

    platform = stack.platform
    digest = request_digest(b"body")
    key = RequestKey("govtrust.v1.X.Y", "user:a", "redo-1")
    claim = _claim(stack, key, digest)
    with acting_on(claim), platform.db.transaction() as session:
        audit.append(session, actor="user:a", action="test.effect", target="t/1")
    ledger = RequestLedger(
        platform.db,
        request_ledger(platform).cipher,
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )

    def slower(_effects: object) -> bytes:
        # while this retry signs, another one re-produces and stores its own answer
        assert ledger.wait_for_answer(key, digest, lambda _e: b"signature 2") == b"signature 2"
        return b"signature 1"

    assert ledger.wait_for_answer(key, digest, slower) == b"signature 2"
    assert ledger.begin(key, digest) == b"signature 2"
