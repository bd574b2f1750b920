"""VerifySealSignature: CMS and GB/T 38540 SES_Signature made by the real seal service, tampered
data, a seal revoked after (time-stamped) signing and a signature made after revocation."""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from govtrust.errors import InvalidArgument
from seal import structures
from seal.signdata import DataRequest, SignData
from seal.signing import CaTimeStamper, SealKey, signer_for
from seal.types import SealKind, SealStatus
from tests.seal.conftest import FILING, World
from tests.unchanged import Snapshot, unchanged
from tests.verify.conftest import VERIFIER
from verify.report import (
    DigestAlgorithm,
    ReasonCode,
    ReportOptions,
    SignatureFormat,
    SigningTimeSource,
    Verdict,
    VerificationReport,
)
from verify.seal_signatures import SealSignatureCheck, verify_seal_signature
from verify.service import VerifyContext

DATA = "合同编号 2026-001：双方同意……".encode()


def _same(vworld: World) -> AbstractContextManager[Snapshot]:
    """A refused verification stores nothing: no audit record, no row, no key."""
    return unchanged(vworld.db, vworld.keystore)


def verify(ctx: VerifyContext, signature: bytes, **kwargs: Any) -> VerificationReport:
    verified = verify_seal_signature(
        ctx, VERIFIER, SealSignatureCheck(signature, options=ReportOptions(locale="en"), **kwargs)
    )
    verified.audited.result(timeout=30)
    return verified.report


def sign(world: World, seal_id: str, *, ses: bool, timestamp: bool = True) -> bytes:
    result = SignData(world.service).sign(
        world.rep, DataRequest(seal_id, data=DATA, ses=ses, timestamp=timestamp)
    )
    return result.signature


@pytest.mark.parametrize("ses", [False, True], ids=["cms", "ses"])
def test_valid_signature_names_the_seal(vworld: World, ctx: VerifyContext, ses: bool) -> None:
    seal = vworld.active_seal(SealKind.CONTRACT)
    signature = sign(vworld, seal.id, ses=ses)
    report = verify(ctx, signature, data=DATA)
    assert report.verdict is Verdict.VALID, report.reasons
    [sig] = report.signatures
    assert sig.format is (SignatureFormat.SES_SIGNATURE if ses else SignatureFormat.CMS)
    assert sig.intact and sig.signature_valid
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
    assert sig.timestamp.tsa_certificate is not None and sig.timestamp.tsa_certificate.trusted
    assert sig.digest_algorithm is DigestAlgorithm.SHA256
    assert sig.certificate is not None and sig.certificate.trusted
    assert sig.certificate.seal_id == seal.id
    assert sig.seal is not None
    assert sig.seal.seal_id == seal.id and sig.seal.kind is SealKind.CONTRACT
    assert sig.seal.status_now is SealStatus.ACTIVE
    assert sig.seal.status_at_signing_time is SealStatus.ACTIVE
    assert sig.seal.owner is not None and sig.seal.owner.id == vworld.company_id
    assert sig.seal.applied_by is not None and sig.seal.applied_by.id == vworld.rep.citizen_id
    if ses:
        assert sig.seal.seal_structure_verdict is Verdict.VALID
    # by digest instead of data
    digest = (DigestAlgorithm.SHA256, hashlib.sha256(DATA).digest())
    assert verify(ctx, signature, digest=digest).verdict is Verdict.VALID
    assert report.evidence_digest is not None
    assert report.evidence_digest.value == hashlib.sha256(signature).digest()


def test_sm2_ses_signature_with_sm3_time_stamp(vworld: World, ctx: VerifyContext) -> None:
    """An SM2 seal's SES_Signature (SM2-with-SM3, SM3 dataHash) time-stamped by our SM2 TSA."""
    from tests.seal.test_sm2_seals import _active

    seal = _active(vworld, "sm2")
    signature = sign(vworld, seal.id, ses=True)
    sm3 = (DigestAlgorithm.SM3, hashlib.new("sm3", DATA).digest())
    for report in (verify(ctx, signature, data=DATA), verify(ctx, signature, digest=sm3)):
        assert report.verdict is Verdict.VALID, report.reasons
        [sig] = report.signatures
        assert sig.signature_algorithm == "SM2-with-SM3"
        assert sig.digest_algorithm is DigestAlgorithm.SM3
        assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
        assert sig.certificate is not None and sig.certificate.trusted
        assert "sm2-root" in [c.issuer_ca for c in sig.certificate.chain]
    tampered = verify(ctx, signature, data=DATA + b"!")
    assert tampered.verdict is Verdict.INVALID
    assert ReasonCode.DIGEST_MISMATCH in {r.code for r in tampered.reasons}


@pytest.mark.parametrize("ses", [False, True], ids=["cms", "ses"])
def test_tampered_data_is_invalid(vworld: World, ctx: VerifyContext, ses: bool) -> None:
    seal = vworld.active_seal()
    signature = sign(vworld, seal.id, ses=ses, timestamp=False)
    report = verify(ctx, signature, data=DATA + b" (amended)")
    assert report.verdict is Verdict.INVALID
    assert [r.code for r in report.reasons] == [ReasonCode.DIGEST_MISMATCH]
    assert report.reasons[0].subject == "signatures[0]"
    assert not report.signatures[0].intact and report.signatures[0].signature_valid
    # SES carries the signer's claimed timeInfo; pyHanko's detached CMS has no signing-time
    expected = SigningTimeSource.CLAIMED if ses else SigningTimeSource.NONE
    assert report.signatures[0].signing_time_source is expected
    assert report.signatures[0].signature_algorithm == "ecdsa-with-SHA256"


def test_tampered_signature_value_is_invalid(vworld: World, ctx: VerifyContext) -> None:
    seal = vworld.active_seal()
    signature = bytearray(sign(vworld, seal.id, ses=True, timestamp=False))
    # flip one digit of the TBS_Sign's time (inside the signed part) – still parses. Locate the
    # encoded time itself: a "Z" byte can also occur earlier, e.g. as a length octet.
    from seal import structures

    parsed = structures.SesSignature.load(bytes(signature))
    time_der = parsed["to_sign"]["time_info"].dump()
    start = bytes(signature).find(time_der)
    assert start > 0
    at = start + len(time_der) - 2  # the last seconds digit, before the "Z"
    signature[at] = ord("1") if signature[at] != ord("1") else ord("2")
    report = verify(ctx, bytes(signature), data=DATA)
    assert report.verdict is Verdict.INVALID
    assert ReasonCode.SIGNATURE_INVALID in [r.code for r in report.reasons]


def test_seal_revoked_after_time_stamped_signing_is_valid_with_a_warning(
    vworld: World, ctx: VerifyContext
) -> None:
    seal = vworld.active_seal()
    cms_signature = sign(vworld, seal.id, ses=False)
    ses_signature = sign(vworld, seal.id, ses=True)
    plain = sign(vworld, seal.id, ses=False, timestamp=False)
    # the TSA's genTime is whole seconds with 1 s accuracy, the CA's revocation time whole
    # seconds: the revocation is provably later only once the clock passed genTime + 2 s
    wait_past(_now().replace(microsecond=0) + timedelta(seconds=2))
    vworld.service.revoke(FILING, seal.id, "company dissolved")
    for signature in (cms_signature, ses_signature):
        report = verify(ctx, signature, data=DATA)
        assert report.verdict is Verdict.VALID, report.reasons
        codes = {w.code for w in report.warnings}
        assert ReasonCode.CERTIFICATE_REVOKED in codes and ReasonCode.SEAL_NOT_ACTIVE in codes
        sig = report.signatures[0]
        assert sig.seal is not None
        assert sig.seal.status_at_signing_time is SealStatus.ACTIVE
        assert sig.seal.status_now is SealStatus.REVOKED
        assert "Warning" in report.summary
    # without a time-stamp nothing proves the signature predates the revocation
    report = verify(ctx, plain, data=DATA)
    assert report.verdict is Verdict.INDETERMINATE
    assert ReasonCode.NO_TRUSTED_TIME in [r.code for r in report.reasons]


@pytest.mark.parametrize("ses", [False, True], ids=["cms", "ses"])
def test_signature_made_after_revocation_is_invalid(
    vworld: World, ctx: VerifyContext, ses: bool
) -> None:
    seal = vworld.active_seal()
    use = vworld.service.authorise_use(vworld.rep, seal.id, "")
    vworld.service.revoke(FILING, seal.id, "key compromised")
    wait_past(_now().replace(microsecond=0) + timedelta(seconds=2))  # past the accuracy window
    stamper = CaTimeStamper(vworld.service.authority)
    digest = hashlib.sha256(DATA).digest()
    if ses:
        assert use.seal.seal_structure is not None
        signature = structures.build_signature(
            structures.SignatureRequest(use.seal.seal_structure, digest, "", _now()),
            vworld.keystore,
            use.key_id,
            use.scheme,
            use.certificate_der,
            timestamp=stamper.token_for,
        )
    else:
        key = SealKey(use.key_id, use.certificate_der, tuple(vworld.service.authority.chain()))
        content = asyncio.run(
            signer_for(vworld.keystore, key).async_sign(digest, "sha256", timestamper=stamper)
        )
        signature = content.dump()
    report = verify(ctx, signature, data=DATA)
    assert report.verdict is Verdict.INVALID
    codes = [r.code for r in report.reasons]
    assert ReasonCode.CERTIFICATE_REVOKED in codes and ReasonCode.SEAL_NOT_ACTIVE in codes
    assert report.signatures[0].seal is not None
    assert report.signatures[0].seal.status_at_signing_time is SealStatus.REVOKED


def _now() -> datetime:
    return datetime.now(UTC)


def wait_past(moment: datetime) -> None:
    """Let the wall clock pass ``moment`` (time-stamp and revocation times are wall-clock)."""
    while (delta := (moment - _now()).total_seconds()) > 0:
        time.sleep(delta + 0.01)


@pytest.mark.parametrize(
    ("signature", "fmt"),
    [
        (b"", None),
        (b"garbage bytes", None),
        (b"\x30\x03\x02\x01\x01", SignatureFormat.CMS),
        (b"\x30\x03\x02\x01\x01", SignatureFormat.SES_SIGNATURE),
    ],
)
def test_garbage_signature_is_invalid_argument(
    vworld: World, ctx: VerifyContext, signature: bytes, fmt: SignatureFormat | None
) -> None:
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify_seal_signature(ctx, VERIFIER, SealSignatureCheck(signature, format=fmt, data=DATA))
    assert info.value.violations[0].field == "signature"


def test_content_must_be_data_xor_a_well_sized_digest(vworld: World, ctx: VerifyContext) -> None:
    seal = vworld.active_seal()
    signature = sign(vworld, seal.id, ses=False, timestamp=False)
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify_seal_signature(ctx, VERIFIER, SealSignatureCheck(signature))
    assert info.value.violations[0].field == "content"
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify_seal_signature(
            ctx,
            VERIFIER,
            SealSignatureCheck(signature, digest=(DigestAlgorithm.SHA256, b"short")),
        )
    assert info.value.violations[0].field == "digest.value"
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify_seal_signature(
            ctx,
            VERIFIER,
            SealSignatureCheck(signature, digest=(DigestAlgorithm.SHA384, bytes(48))),
        )
    assert info.value.violations[0].field == "digest.algorithm"


def test_malformed_attributes_inside_a_parsable_cms_are_invalid_argument(
    vworld: World, ctx: VerifyContext
) -> None:
    """asn1crypto parses lazily: attributes broken below the outer structure must still come
    back INVALID_ARGUMENT naming the signature, not an internal error."""
    from asn1crypto import cms

    seal = vworld.active_seal()
    content = cms.ContentInfo.load(sign(vworld, seal.id, ses=False, timestamp=True))
    signer = content["content"]["signer_infos"][0]
    unsigned = signer["unsigned_attrs"]
    assert unsigned.native is not None  # the time-stamp token
    unsigned[0]["values"] = []  # an attribute with no value
    with _same(vworld), pytest.raises(InvalidArgument) as info:
        verify(ctx, content.dump(force=True), data=DATA)
    assert info.value.violations[0].field == "signature"
