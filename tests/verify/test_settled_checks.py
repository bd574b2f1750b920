"""Settled VerifyCertificate checks (the hot path): a repeated check reuses the decided path,
purpose and report but reads our status store on every call, so a revocation, a hold, a
change of the named identity's status or of the trust material shows in the very next answer;
the re-stamped report (and its proto) equals a full check's."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from govtrust.api.verify import report_to_pb, verified_report_into
from govtrust.v1 import common_pb2, verify_pb2
from tests.seal.conftest import World
from tests.verify.conftest import OPERATOR, VERIFIER, assured_citizen, issue_citizen
from tests.verify.test_grpc import Handle, grpc_verify  # noqa: F401 - fixture
from verify.certificates import CertificateCheck, settled_key, verify_certificate
from verify.report import (
    CertificatePurpose,
    ReasonCode,
    ReportOptions,
    RevocationCheck,
    Verdict,
)
from verify.service import Verified, VerifyConfig, VerifyContext


def run(ctx: VerifyContext, certificate: bytes, **kwargs: Any) -> Verified:
    verified = verify_certificate(ctx, VERIFIER, CertificateCheck(certificate, **kwargs))
    verified.audited.result(timeout=30)
    return verified


def settled(verified: Verified) -> bool:
    """Whether the answer re-stamped a settled check (the hot path) rather than a full one."""
    return verified.template is not None


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=123456)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clocked(vworld: World) -> Iterator[tuple[VerifyContext, Clock]]:
    clock = Clock()
    context = VerifyContext(vworld.db, vworld.keystore, vworld.authority, clock=clock)
    try:
        yield context, clock
    finally:
        context.close()


def test_the_status_store_is_read_on_every_check_by_default() -> None:
    assert VerifyConfig().status_cache_seconds == 0
    assert VerifyConfig.from_settings(None).status_cache_seconds == 0


def test_a_revocation_shows_in_the_next_answer(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    first = run(ctx, issued.certificate.der)
    assert first.report.verdict is Verdict.VALID and not settled(first)
    again = run(ctx, issued.certificate.der)
    assert again.report.verdict is Verdict.VALID and settled(again)
    vworld.authority.revoke(OPERATOR, issued.certificate.id, reason=1)
    revoked = run(ctx, issued.certificate.der)
    assert revoked.report.verdict is Verdict.INVALID
    assert [r.code for r in revoked.report.reasons] == [ReasonCode.CERTIFICATE_REVOKED]
    assert not settled(run(ctx, issued.certificate.der))  # a revoked leaf never settles


def test_a_hold_and_its_release_show_at_once(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen)
    run(ctx, issued.certificate.der)
    assert settled(run(ctx, issued.certificate.der))
    vworld.authority.suspend(OPERATOR, issued.certificate.id, comment="reported lost")
    held = run(ctx, issued.certificate.der)
    assert held.report.verdict is Verdict.INDETERMINATE and not settled(held)
    vworld.authority.resume(OPERATOR, issued.certificate.id, comment="found")
    resumed = run(ctx, issued.certificate.der)
    assert resumed.report.verdict is Verdict.VALID
    assert settled(run(ctx, issued.certificate.der))


def test_the_named_identitys_status_shows_at_once(vworld: World, ctx: VerifyContext) -> None:
    from idp.types import IdentityRef, StatusAction
    from tests.seal.conftest import REGISTRAR

    user = assured_citizen(vworld, "孙八", "11010519750101007")
    issued = issue_citizen(vworld, user)
    run(ctx, issued.certificate.der)
    assert settled(run(ctx, issued.certificate.der))
    vworld.registry.update_status(
        REGISTRAR, IdentityRef(id=user), StatusAction.SUSPEND, reason="inquiry"
    )
    report = run(ctx, issued.certificate.der).report
    assert ReasonCode.IDENTITY_NOT_ACTIVE in [r.code for r in report.reasons]


def test_a_change_of_trust_material_shows_at_once(
    vworld: World, ctx: VerifyContext, citizen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = issue_citizen(vworld, citizen)
    chain = tuple(i.der for i in vworld.authority.issuing_chain("citizen") if i.role != "root")
    run(ctx, issued.certificate.der, intermediates=chain)
    assert settled(run(ctx, issued.certificate.der, intermediates=chain))
    # our root is no longer a trust anchor (e.g. withdrawn from the hierarchy) ...
    hierarchy = vworld.authority.hierarchy
    kept = {name: i for name, i in hierarchy.issuers.items() if i.role != "root"}
    monkeypatch.setattr(hierarchy, "issuers", kept)
    ctx.certificates.invalidate()
    untrusted = run(ctx, issued.certificate.der, intermediates=chain)
    assert untrusted.report.verdict is Verdict.INDETERMINATE
    assert ReasonCode.UNKNOWN_ISSUER in [r.code for r in untrusted.report.reasons]
    assert not settled(untrusted)
    # ... and back
    monkeypatch.undo()
    ctx.certificates.invalidate()
    assert run(ctx, issued.certificate.der, intermediates=chain).report.verdict is Verdict.VALID


def test_a_settled_check_made_before_an_invalidation_is_not_reused(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    """A check that finished against the old trust material (say, concurrently with the
    change) is remembered with that material and never answers again."""
    issued = issue_citizen(vworld, citizen)
    run(ctx, issued.certificate.der)
    verifier = ctx.certificates
    old = verifier._trusted
    verifier.invalidate()
    verifier.warm()
    assert verifier._trusted is not old
    key = settled_key(CertificateCheck(issued.certificate.der), "zh-CN")
    first = run(ctx, issued.certificate.der)
    assert not settled(first)
    remembered = verifier._settled.get(key)
    assert remembered is not None and remembered.trust is verifier._trusted
    verifier.remember(key, dataclasses.replace(remembered, trust=old))  # a late, stale result
    assert not settled(run(ctx, issued.certificate.der))


def test_outside_the_validity_window_the_check_is_made_in_full(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    issued = issue_citizen(vworld, citizen, validity_days=1)
    run(ctx, issued.certificate.der)
    assert settled(run(ctx, issued.certificate.der))
    later = datetime.now(UTC) + timedelta(days=3)
    expired = run(ctx, issued.certificate.der, at_time=later)
    assert expired.report.verdict is Verdict.INVALID and not settled(expired)
    assert [r.code for r in expired.report.reasons] == [ReasonCode.CERTIFICATE_EXPIRED]


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_a_settled_report_equals_a_full_check(
    vworld: World, clocked: tuple[VerifyContext, Clock], citizen: str, locale: str
) -> None:
    """Same clock, same inputs: the re-stamped report is a full check's but for its id — and
    its proto (the template's cached encoding plus this call's stamps) is ``report_to_pb``'s."""
    context, clock = clocked
    issued = issue_citizen(vworld, citizen)
    run(context, issued.certificate.der, options=ReportOptions(locale=locale))
    # a past moment inside the validity window (not the clock's: the certificate is backdated
    # by a minute from its issuance, which may come seconds after the clock was read)
    not_before = x509.load_der_x509_certificate(issued.certificate.der).not_valid_before_utc
    cases: list[dict[str, Any]] = [
        {},
        {"at_time": not_before + timedelta(seconds=30)},
        {"purpose": CertificatePurpose.CLIENT_AUTH},
        {"revocation_check": RevocationCheck.REGISTRY},
    ]
    for i, case in enumerate(cases):
        clock.now += timedelta(seconds=1, microseconds=7)
        options = ReportOptions(locale=locale, reference=f"order-{i}")
        run(context, issued.certificate.der, options=options, **case)  # settles this variant
        clock.now += timedelta(milliseconds=3)
        fast = run(context, issued.certificate.der, options=options, **case)
        assert settled(fast), case
        fresh = VerifyContext(vworld.db, vworld.keystore, vworld.authority, clock=clock)
        try:
            full = run(fresh, issued.certificate.der, options=options, **case)
        finally:
            fresh.close()
        assert not settled(full)
        assert dataclasses.replace(fast.report, report_id="") == dataclasses.replace(
            full.report, report_id=""
        ), case
        assert fast.report.report_id != full.report.report_id
        message = common_pb2.VerificationReport()
        verified_report_into(message, fast)
        assert message == report_to_pb(fast.report), case
        assert message.reference == f"order-{i}"


def test_over_grpc_a_revocation_shows_in_the_next_answer(
    vworld: World,
    grpc_verify: Handle,  # noqa: F811 - fixture
    citizen: str,
) -> None:
    issued = issue_citizen(vworld, citizen)
    request = verify_pb2.VerifyCertificateRequest(certificate=issued.certificate.der)
    for _ in range(3):  # full, then settled
        answer = grpc_verify.call("VerifyCertificate", request)
        assert answer.report.verdict == common_pb2.VERDICT_VALID
    vworld.authority.revoke(OPERATOR, issued.certificate.id, reason=1)
    answer = grpc_verify.call("VerifyCertificate", request)
    assert answer.report.verdict == common_pb2.VERDICT_INVALID
    assert [r.code for r in answer.report.reasons] == [common_pb2.REASON_CODE_CERTIFICATE_REVOKED]


# --- the settled cache's keys stay small ----------------------------------------------------


def deep_size(value: object) -> int:
    """Bytes held by ``value`` and, for tuples, by everything in it."""
    size = sys.getsizeof(value)
    if isinstance(value, tuple):
        size += sum(deep_size(item) for item in value)
    return size


def junk_intermediate(tag: int, padding: int = 60 * 1024) -> bytes:
    """A well-formed, unrelated self-signed certificate padded to about 60 KB (an unknown,
    non-critical extension): an intermediate no path to our leaves ever uses."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"junk {tag}")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), bytes([tag % 256]) * padding
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_a_settled_key_is_small_whatever_the_intermediates(
    vworld: World, ctx: VerifyContext, citizen: str
) -> None:
    """A valid leaf with 16 unused ~60 KB intermediates settles (the path ignores them), and the
    entry it is remembered under holds digests, not the ~1 MB of bytes sent: 4096 such entries
    must not cost gigabytes."""
    issued = issue_citizen(vworld, citizen)
    junk = tuple(junk_intermediate(i) for i in range(16))
    assert sum(map(len, junk)) > 16 * 60 * 1024
    run(ctx, issued.certificate.der, intermediates=junk)
    again = run(ctx, issued.certificate.der, intermediates=junk)
    assert again.report.verdict is Verdict.VALID and settled(again)
    keys = list(ctx.certificates._settled._data)
    assert keys and all(deep_size(k) < 1024 for k in keys), [deep_size(k) for k in keys]
    parsed = list(ctx.certificates._parsed._data)
    assert all(len(k) <= 64 for k in parsed)  # digests, not DER
    # other intermediates (or the same in another order) are another entry, not this one
    fewer = run(ctx, issued.certificate.der, intermediates=junk[:15])
    assert not settled(fewer)
    swapped = run(ctx, issued.certificate.der, intermediates=(junk[1], junk[0], *junk[2:]))
    assert not settled(swapped)
    assert settled(run(ctx, issued.certificate.der, intermediates=junk))


def test_settled_keys_tell_requests_apart() -> None:
    leaf, a, b = b"leaf-der", b"A" * 60_000, b"B" * 60_000
    base = settled_key(CertificateCheck(leaf, (a, b)), "zh-CN")
    assert deep_size(base) < 1024
    assert deep_size(settled_key(CertificateCheck(leaf, (a,) * 16), "zh-CN")) < 1024
    assert base == settled_key(CertificateCheck(leaf, (a, b)), "zh-CN")
    others = [
        CertificateCheck(leaf, (b, a)),
        CertificateCheck(leaf, (a,)),
        CertificateCheck(leaf, (a, b, b)),
        CertificateCheck(leaf, (a + b,)),
        CertificateCheck(leaf, ()),
        CertificateCheck(b"other-leaf", (a, b)),
        CertificateCheck(leaf, (a, b), purpose=CertificatePurpose.CLIENT_AUTH),
        CertificateCheck(leaf, (a, b), revocation_check=RevocationCheck.REGISTRY),
    ]
    keys = {settled_key(check, "zh-CN") for check in others}
    assert len(keys) == len(others) and base not in keys
    assert settled_key(CertificateCheck(leaf, (a, b)), "en") != base
