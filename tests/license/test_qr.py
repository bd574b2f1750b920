"""Offline QR payload: size, round trip with only the root, tampering, unknown keys, decoding."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import cbor2
import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from govtrust.db import Database
from govtrust.migrate import upgrade_to_head
from hsm.master import MasterKey
from hsm.soft import SoftKeyStore
from license.base45 import ALPHABET, b45decode, b45encode
from license.errors import LicenceVerificationFailed, Reason
from license.qr import (
    PREFIX,
    TrustList,
    decode_payload,
    encode_payload,
    export_trust_list,
    kid_of,
)
from license.qr_symbol import render_png, render_svg
from license.signer import LicenceSigner
from tests.license.conftest import (
    OTHER_USCC,
    MiniCa,
    make_ca,
    make_signer,
    same,
    sample_metadata,
)

QR_ALPHANUMERIC = set(ALPHABET)


def _trust(ca: MiniCa, *signers: LicenceSigner) -> TrustList:
    return TrustList.load([ca.root], export_trust_list(s.chain for s in signers), strict=True)


def _rewrap(text: str, mutate: object) -> str:
    raw = zlib.decompress(b45decode(text[len(PREFIX) :]))
    tag = cbor2.loads(raw)
    parts = list(tag.value)
    mutate(parts)  # type: ignore[operator]
    return PREFIX + b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, parts))))


def test_base45_rfc9285_vectors() -> None:
    assert b45encode(b"AB") == "BB8"
    assert b45encode(b"Hello!!") == "%69 VD92EX0"
    assert b45encode(b"base-45") == "UJCLQE7W581"
    assert b45decode("QED8WEX0") == b"ietf!"
    for bad in ("GGW", "A", "ZZZ", "aa"):
        with pytest.raises(ValueError):
            b45decode(bad)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_base45_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


def test_round_trip_with_only_root_and_trust_list(signer: LicenceSigner, test_ca: MiniCa) -> None:
    meta = sample_metadata()
    text = encode_payload(signer, meta)
    assert text.startswith(PREFIX)
    assert set(text) <= QR_ALPHANUMERIC
    assert len(text) <= 600, len(text)
    result = decode_payload(text, _trust(test_ca, signer))
    assert result.identifier == meta.identifier
    assert result.holder_name == meta.holder_name
    assert result.holder_code == meta.holder_code
    assert result.holder_code_type == "001"
    assert result.issue_date == meta.issue_date
    assert result.valid_until is None
    assert result.status_index == 7
    assert result.matches(meta)
    assert not result.matches(sample_metadata(holder_name="别人"))
    assert result.signer.kid == kid_of(signer.chain[0])


def test_long_fields_still_fit(signer: LicenceSigner, test_ca: MiniCa) -> None:
    meta = sample_metadata(
        holder_name="湖南省长沙市岳麓区某某某某某某科技发展有限责任公司第一分公司",
        valid_until=date(2043, 5, 3),
    )
    text = encode_payload(signer, meta)
    assert len(text) <= 600, len(text)
    assert decode_payload(text, _trust(test_ca, signer)).valid_until == date(2043, 5, 3)


def test_tampered_claim_is_bad_signature(signer: LicenceSigner, test_ca: MiniCa) -> None:
    text = encode_payload(signer, sample_metadata())

    def change_holder(parts: list[object]) -> None:
        claims = cbor2.loads(parts[2])  # type: ignore[arg-type]
        claims[3] = "另一家公司"
        parts[2] = cbor2.dumps(claims)

    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(_rewrap(text, change_holder), _trust(test_ca, signer))
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_unknown_key(keystore: SoftKeyStore, signer: LicenceSigner, test_ca: MiniCa) -> None:
    other = make_signer(keystore, test_ca)
    text = encode_payload(other, sample_metadata())
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(text, _trust(test_ca, signer))
    assert info.value.reason is Reason.UNKNOWN_KEY


def test_trust_list_drops_chains_not_under_the_root(
    keystore: SoftKeyStore, signer: LicenceSigner, test_ca: MiniCa
) -> None:
    rogue = make_signer(keystore, make_ca("rogue"))
    document = export_trust_list([signer.chain, rogue.chain])
    trust = TrustList.load([test_ca.root], document)
    assert len(trust) == 1
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        TrustList.load([test_ca.root], document, strict=True)
    assert info.value.reason is Reason.UNTRUSTED_CHAIN
    with same(keystore), pytest.raises(LicenceVerificationFailed) as bad:
        decode_payload(encode_payload(rogue, sample_metadata()), trust)
    assert bad.value.reason is Reason.UNKNOWN_KEY


def test_other_organisation_key_is_issuer_mismatch(keystore: SoftKeyStore, test_ca: MiniCa) -> None:
    impostor = make_signer(keystore, test_ca, uscc=OTHER_USCC)
    text = encode_payload(impostor, sample_metadata())
    with same(keystore), pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(text, _trust(test_ca, impostor))
    assert info.value.reason is Reason.ISSUER_MISMATCH


def test_issued_outside_certificate_validity(signer: LicenceSigner, test_ca: MiniCa) -> None:
    text = encode_payload(signer, sample_metadata(issue_date=date(2001, 1, 1)))
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(text, _trust(test_ca, signer))
    assert info.value.reason is Reason.CERTIFICATE_EXPIRED


def test_expired_seal_certificate_still_verifies_old_licences(
    keystore: SoftKeyStore, test_ca: MiniCa
) -> None:
    start = datetime.now(UTC) - timedelta(days=100)
    old = make_signer(keystore, test_ca, not_before=start, days=30)
    meta = sample_metadata(issue_date=(start + timedelta(days=5)).date())
    assert decode_payload(encode_payload(old, meta), _trust(test_ca, old)).identifier


@pytest.mark.parametrize(
    "text",
    [
        "",
        "HC1:ABC",
        PREFIX,
        PREFIX + "A",
        PREFIX + "abc",
        PREFIX + b45encode(b"not zlib"),
        PREFIX + b45encode(zlib.compress(b"\xff\xff")),
        PREFIX + b45encode(zlib.compress(cbor2.dumps([1, 2, 3]))),
        PREFIX + b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b""])))),
        PREFIX + b45encode(zlib.compress(b"\x00" * 100_000)),
        PREFIX + "A" * 5000,
    ],
)
def test_malformed_payloads(signer: LicenceSigner, test_ca: MiniCa, text: str) -> None:
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(text, _trust(test_ca, signer))
    assert info.value.reason is Reason.MALFORMED


def test_wrong_alg_in_header(signer: LicenceSigner, test_ca: MiniCa) -> None:
    text = encode_payload(signer, sample_metadata())

    def set_alg(parts: list[object]) -> None:
        header = cbor2.loads(parts[0])  # type: ignore[arg-type]
        header[1] = -257
        parts[0] = cbor2.dumps(header)

    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        decode_payload(_rewrap(text, set_alg), _trust(test_ca, signer))
    assert info.value.reason is Reason.UNSUPPORTED_ALGORITHM


def test_rendered_qr_decodes_back(signer: LicenceSigner, test_ca: MiniCa) -> None:
    text = encode_payload(signer, sample_metadata())
    image = Image.open(io.BytesIO(render_png(text, scale=4)))
    found = zxingcpp.read_barcodes(image)
    assert [b.text for b in found] == [text]
    assert decode_payload(found[0].text, _trust(test_ca, signer)).identifier
    assert render_svg(text).startswith("<svg")


@pytest.fixture(scope="module")
def fixed_qr(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, TrustList, SoftKeyStore]]:
    """One payload and trust list (and the key store that signed it) shared by the property
    test's examples."""
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('qr') / 'qr.db'}")
    upgrade_to_head(db.engine)
    store = SoftKeyStore(db, MasterKey.generate())
    ca = make_ca()
    signer = make_signer(store, ca)
    yield encode_payload(signer, sample_metadata()), _trust(ca, signer), store
    store.close()
    db.dispose()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_single_character_change_of_the_qr_text_is_caught(
    fixed_qr: tuple[str, TrustList, SoftKeyStore], data: st.DataObject
) -> None:
    text, trust, _ = fixed_qr
    position = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from(ALPHABET + "a").filter(lambda c: c != text[position]))
    changed = text[:position] + replacement + text[position + 1 :]
    try:
        decode_payload(changed, trust)
    except LicenceVerificationFailed:
        return
    # Accepted only if the change touched nothing but the padding bits of the final deflate
    # byte, which carry no data: what was signed and what it says are exactly the original.
    original = zlib.decompress(b45decode(text[len(PREFIX) :]))
    assert zlib.decompress(b45decode(changed[len(PREFIX) :])) == original


def test_unsigned_header_content_is_refused(
    fixed_qr: tuple[str, TrustList, SoftKeyStore],
) -> None:
    text, trust, store = fixed_qr
    cose = cbor2.loads(zlib.decompress(b45decode(text[len(PREFIX) :])))
    value = list(cose.value if isinstance(cose, cbor2.CBORTag) else cose)
    value[1] = {4: b"forged-kid"}  # the unprotected header is outside the signature
    forged = PREFIX + b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, value)), 9))
    with same(store), pytest.raises(LicenceVerificationFailed, match="unprotected header"):
        decode_payload(forged, trust)
