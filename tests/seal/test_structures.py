"""GB/T 38540 structures: SESeal signed by the maker, SES_Signature by the seal; round trips,
tamper detection."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from asn1crypto import tsp

from seal.errors import SealStructureError
from seal.signing import CaTimeStamper
from seal.structures import (
    SealContent,
    SeSeal,
    SesSignature,
    SignatureRequest,
    build_seal,
    build_signature,
    parse_seal,
    verify_seal,
    verify_signature,
)
from seal.types import SealKind
from tests.seal.conftest import World
from tests.unchanged import unchanged


def test_made_seal_carries_a_verifiable_sesal(world: World) -> None:
    seal = world.active_seal(SealKind.OFFICIAL)
    assert seal.seal_structure is not None and seal.certificate_der is not None
    parsed = verify_seal(seal.seal_structure)
    assert parsed.seal_id == seal.id and parsed.name == seal.name and parsed.kind_code == 1
    assert parsed.certificates == (seal.certificate_der,)
    assert parsed.picture_type == "PNG" and parsed.picture.startswith(b"\x89PNG")
    assert (parsed.width_mm, parsed.height_mm) == (42, 42)
    assert parsed.algorithm == "1.2.840.10045.4.3.2"
    maker = world.service.maker()
    assert parsed.maker_certificate == maker.certificate_der
    # header and DER are exactly what the standard says
    raw = SeSeal.load(seal.seal_structure)
    assert raw["e_seal_info"]["header"].native == {"id": "ES", "version": 4, "vid": "govtrust"}
    assert raw.dump(force=True) == seal.seal_structure


def test_tampered_seal_is_rejected(world: World) -> None:
    maker = world.service.maker()
    now = datetime.now(UTC)
    content = SealContent(
        "1234567890123456",
        2,
        "测试合同专用章",
        (b"\x30\x03\x02\x01\x01",),
        now,
        now,
        now,
        b"\x89PNG fake",
        42,
        42,
    )
    der = build_seal(content, maker)
    assert parse_seal(der).name == "测试合同专用章"
    verify_seal(der)
    tampered = der.replace("测试".encode(), "伪造".encode())
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(SealStructureError, match="does not verify"),
    ):
        verify_seal(tampered)
    with unchanged(world.db, world.keystore), pytest.raises(SealStructureError):
        verify_seal(b"\x30\x00")
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(SealStructureError, match="not trusted"),
    ):
        verify_seal(der, trusted_makers=(b"other",))


def test_ses_signature_round_trip_and_tamper(world: World) -> None:
    seal = world.active_seal()
    context = world.service.authorise_use(world.rep, seal.id, "contract")
    data = "合同正文".encode()
    assert seal.seal_structure is not None
    der = build_signature(
        SignatureRequest(
            seal.seal_structure, hashlib.sha256(data).digest(), "contract-001", datetime.now(UTC)
        ),
        world.keystore,
        context.key_id,
        context.scheme,
        context.certificate_der,
        timestamp=CaTimeStamper(world.seal_authority).token_for,
    )
    parsed = verify_signature(der, data=data)
    assert parsed.property_info == "contract-001" and parsed.seal.seal_id == seal.id
    assert parsed.time_stamp_token is not None
    with unchanged(world.db, world.keystore), pytest.raises(SealStructureError, match="dataHash"):
        verify_signature(der, data=b"other data")
    body = SesSignature.load(der)
    tbs = body["to_sign"]
    forged = SesSignature(
        {
            "to_sign": {
                **{k: tbs[k] for k in ("version", "eseal", "time_info", "property_info")},
                "data_hash": hashlib.sha256(b"forged").digest(),
            },
            "cert": body["cert"],
            "signature_alg_id": body["signature_alg_id"],
            "signature": body["signature"],
        }
    ).dump()
    with (
        unchanged(world.db, world.keystore),
        pytest.raises(SealStructureError, match="does not verify"),
    ):
        verify_signature(forged)
    assert tsp.TimeStampResp  # the token is an RFC 3161 ContentInfo
