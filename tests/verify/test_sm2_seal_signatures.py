"""VerifySealSignature with SM2 seals (issue 16 item 5): a GB/T 38540 SES_Signature made by an
SM2 seal is checked fully — SM2-with-SM3 signature and SM3 dataHash, the SESeal's maker
signature, the signer's chain to the SM2 root, the SM2 time-stamp, the seal's status now and at
signing time — and the report names the algorithms."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from govtrust.errors import InvalidArgument
from seal.signdata import DataRequest, SignData
from seal.types import SealStatus
from tests.seal.conftest import FILING, World
from tests.seal.test_sm2_seals import _active
from tests.unchanged import unchanged
from tests.verify.test_seal_signatures import DATA, _now, verify, wait_past
from verify.report import DigestAlgorithm, ReasonCode, SigningTimeSource, Verdict
from verify.service import VerifyContext


def _sign(world: World, seal_id: str, *, timestamp: bool = True) -> bytes:
    result = SignData(world.service).sign(
        world.rep, DataRequest(seal_id, data=DATA, ses=True, timestamp=timestamp)
    )
    return result.signature


def test_sm2_ses_signature_valid_with_sm2_chain_and_time_stamp(
    vworld: World, ctx: VerifyContext
) -> None:
    seal = _active(vworld, "sm2")
    report = verify(ctx, _sign(vworld, seal.id), data=DATA)
    assert report.verdict is Verdict.VALID, report.reasons
    [sig] = report.signatures
    assert sig.digest_algorithm is DigestAlgorithm.SM3
    assert sig.signature_algorithm == "SM2-with-SM3"
    assert sig.intact and sig.signature_valid
    assert sig.signing_time_source is SigningTimeSource.TIMESTAMP
    assert sig.timestamp is not None and sig.timestamp.verdict is Verdict.VALID
    assert sig.timestamp.tsa_certificate is not None and sig.timestamp.tsa_certificate.trusted
    assert sig.certificate is not None and sig.certificate.trusted
    assert sig.certificate.seal_id == seal.id
    assert sig.seal is not None and sig.seal.seal_structure_verdict is Verdict.VALID
    assert sig.seal.status_at_signing_time is SealStatus.ACTIVE

    # by digest: the SM3 digest is accepted, the data's SHA-256 does not match an SM3 dataHash
    by_digest = verify(
        ctx, _sign(vworld, seal.id), digest=(DigestAlgorithm.SM3, hashlib.new("sm3", DATA).digest())
    )
    assert by_digest.verdict is Verdict.VALID, by_digest.reasons
    signature = _sign(vworld, seal.id)
    sha256 = (DigestAlgorithm.SHA256, hashlib.sha256(DATA).digest())
    # a SHA-256 digest for an SM3 dataHash: refused naming SM3, nothing stored
    with unchanged(vworld.db, vworld.keystore), pytest.raises(InvalidArgument, match="sm3"):
        verify(ctx, signature, digest=sha256)


def test_sm2_seal_revoked_after_time_stamped_signing_stays_valid(
    vworld: World, ctx: VerifyContext
) -> None:
    seal = _active(vworld, "sm2")
    stamped = _sign(vworld, seal.id)
    unstamped = _sign(vworld, seal.id, timestamp=False)
    # genTime and the revocation time are whole seconds (genTime ± 1 s): revoke provably later
    wait_past(_now().replace(microsecond=0) + timedelta(seconds=2))
    vworld.service.revoke(FILING, seal.id, "closed")
    kept = verify(ctx, stamped, data=DATA)
    assert kept.verdict is Verdict.VALID, kept.reasons
    [sig] = kept.signatures
    assert sig.seal is not None and sig.seal.status_now is SealStatus.REVOKED
    # without a trusted time the revoked signer cannot be judged VALID
    assert verify(ctx, unstamped, data=DATA).verdict is not Verdict.VALID


def test_tampered_data_under_an_sm2_seal_is_invalid(vworld: World, ctx: VerifyContext) -> None:
    seal = _active(vworld, "sm2")
    report = verify(ctx, _sign(vworld, seal.id), data=DATA + b"!")
    assert report.verdict is Verdict.INVALID
    assert ReasonCode.DIGEST_MISMATCH in {r.code for r in report.reasons}
