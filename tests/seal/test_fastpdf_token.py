"""Reading the time-stamp token back in the seal's fast path: straight off the DER for the
usual shape, through asn1crypto for anything else, with the same checks either way."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from asn1crypto import algos, cms, core, tsp

from seal import fastpdf
from seal.fastpdf import Unsupported, _granted_token, timestamp_request, timestamp_token
from tests.seal.conftest import World

SIGNATURE = b"\x30\x44" + bytes(range(70))


def _response(
    *,
    nonce: int | None,
    imprint: bytes,
    gen_time: datetime,
    status: str = "granted",
) -> bytes:
    """A TimeStampResp of that shape (the token unsigned: the fast path reads, never verifies)."""
    info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": "1.2.3.4",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": imprint,
            },
            "serial_number": 12345,
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "nonce": nonce,
        }
    )
    token = cms.ContentInfo(
        {
            "content_type": "signed_data",
            "content": cms.SignedData(
                {
                    "version": "v3",
                    "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                    "encap_content_info": {
                        "content_type": "tst_info",
                        "content": core.ParsableOctetString(info.dump()),
                    },
                    "signer_infos": [],
                }
            ),
        }
    )
    if status != "granted":  # a rejection carries no token
        return b"\x30\x05\x30\x03\x02\x01\x02"
    return bytes(
        tsp.TimeStampResp({"status": {"status": status}, "time_stamp_token": token}).dump()
    )


GOOD = hashlib.sha256(SIGNATURE).digest()
WHOLE = datetime(2026, 12, 6, 20, 50, 7, tzinfo=UTC)


def _slow(response: bytes, nonce: int) -> tuple[bytes, datetime]:
    parsed = tsp.TimeStampResp.load(response)
    token = parsed["time_stamp_token"]
    info = token["content"]["encap_content_info"]["content"].parsed
    assert info["nonce"].native == nonce
    return bytes(token.dump()), info["gen_time"].native


def test_the_usual_token_is_read_straight_off_its_der() -> None:
    response = _response(nonce=77, imprint=GOOD, gen_time=WHOLE)
    fast = _granted_token(response, 77, SIGNATURE)
    assert fast is not None
    assert fast == _slow(response, 77) == (fast[0], WHOLE)
    assert timestamp_token(response, 77, SIGNATURE) == fast


def test_a_fractional_gen_time_is_read_by_asn1crypto() -> None:
    moment = datetime(2026, 12, 6, 20, 50, 7, 250000, tzinfo=UTC)
    response = _response(nonce=5, imprint=GOOD, gen_time=moment)
    assert _granted_token(response, 5, SIGNATURE) is None
    assert timestamp_token(response, 5, SIGNATURE) == _slow(response, 5)
    assert timestamp_token(response, 5, SIGNATURE)[1] == moment


@pytest.mark.parametrize(
    ("nonce", "imprint", "status"),
    [
        (78, GOOD, "granted"),  # another request's nonce
        (None, GOOD, "granted"),  # no nonce echoed
        (77, hashlib.sha256(b"other").digest(), "granted"),  # another imprint
        (77, GOOD, "rejection"),
    ],
)
def test_a_token_for_another_request_or_a_refusal_is_unsupported(
    nonce: int | None, imprint: bytes, status: str
) -> None:
    response = _response(nonce=nonce, imprint=imprint, gen_time=WHOLE, status=status)
    assert _granted_token(response, 77, SIGNATURE) is None
    # asn1crypto's TimeStampResp wants a token: a rejection is a ValueError there, as before
    with pytest.raises(Unsupported if status == "granted" else ValueError):
        timestamp_token(response, 77, SIGNATURE)


def test_truncated_or_padded_responses_are_left_to_asn1crypto() -> None:
    """The fast reading declines what does not fit exactly; asn1crypto decides as before (a
    truncated response does not parse; trailing bytes it ignores)."""
    response = _response(nonce=77, imprint=GOOD, gen_time=WHOLE)
    for truncated in (response[:-1], response[:40]):
        assert _granted_token(truncated, 77, SIGNATURE) is None
        with pytest.raises(ValueError):
            timestamp_token(truncated, 77, SIGNATURE)
    padded = response + b"\x00"
    assert _granted_token(padded, 77, SIGNATURE) is None
    assert timestamp_token(padded, 77, SIGNATURE) == _slow(response, 77)


def test_our_tsa_s_token_is_read_the_fast_way(world: World) -> None:
    request, nonce = timestamp_request(SIGNATURE)
    answer = world.authority.timestamp(request).der
    fast = _granted_token(answer, nonce, SIGNATURE)
    assert fast is not None
    assert fast == _slow(answer, nonce)
    assert fastpdf.timestamp_token(answer, nonce, SIGNATURE) == fast
