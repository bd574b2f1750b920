"""Status lists: bit layout, compression, signing, verification and index allocation."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govtrust.db import Database
from govtrust.principal import SYSTEM
from hsm.soft import SoftKeyStore
from license import catalogue
from license.errors import LicenceVerificationFailed, Reason
from license.models import LicenceRow
from license.signer import LicenceSigner, b64url, b64url_decode
from license.status_list import (
    MIN_ENTRIES,
    LicenceStatus,
    StatusList,
    allocate_index,
    build_status_list,
    refresh_status_list,
    sign_status_list,
    verify_status_list,
)
from tests.license.conftest import DEPT_USCC, OTHER_USCC, MiniCa, make_ca, make_signer, same

URI = "https://gov.example/licence/status/" + DEPT_USCC


def test_bit_layout_matches_the_draft() -> None:
    """Token Status List example: index 0 in the least significant bits of byte 0."""
    statuses = StatusList(12)
    statuses.set(0, LicenceStatus.REVOKED)
    statuses.set(1, LicenceStatus.SUSPENDED)
    statuses.set(3, LicenceStatus.REVOKED)
    statuses.set(4, LicenceStatus.SUSPENDED)
    raw = zlib.decompress(b64url_decode(statuses.to_json()["lst"]))
    assert raw[0] == 0b01_00_10_01
    assert raw[1] == 0b00_00_00_10
    assert statuses.get(2) is LicenceStatus.VALID
    with pytest.raises(IndexError):
        statuses.get(statuses.size)


@given(st.dictionaries(st.integers(0, 4095), st.sampled_from(list(LicenceStatus))))
def test_round_trip(entries: dict[int, LicenceStatus]) -> None:
    statuses = StatusList(4096)
    for index, status in entries.items():
        statuses.set(index, status)
    again = StatusList.from_json(json.loads(json.dumps(statuses.to_json())))
    for index in range(4096):
        assert again.get(index) == entries.get(index, LicenceStatus.VALID)


def test_large_list_is_small() -> None:
    statuses = StatusList(100_000)
    for index in range(0, 100_000, 997):
        statuses.set(index, LicenceStatus.REVOKED)
    assert len(statuses.to_json()["lst"]) < 1000


def test_decompression_bomb_and_bad_input_rejected() -> None:
    bomb = b64url(zlib.compress(b"\x00" * (1 << 23)))
    for bad in ({"bits": 2, "lst": bomb}, {"bits": 1, "lst": ""}, {"bits": 2, "lst": "!!"}):
        with pytest.raises(ValueError):
            StatusList.from_json(bad)


def test_signed_status_list_verifies(signer: LicenceSigner, test_ca: MiniCa) -> None:
    statuses = StatusList(MIN_ENTRIES)
    statuses.set(5, LicenceStatus.REVOKED)
    token = sign_status_list(signer, statuses, uri=URI)
    verified = verify_status_list(token, [test_ca.root], uri=URI, issuer_code=DEPT_USCC)
    assert verified.status(5) is LicenceStatus.REVOKED
    assert verified.status(6) is LicenceStatus.VALID
    assert verified.issuer_code == DEPT_USCC
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_status_list(token, [make_ca("x").root])
    assert info.value.reason is Reason.UNTRUSTED_CHAIN
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as wrong:
        verify_status_list(token, [test_ca.root], issuer_code=OTHER_USCC)
    assert wrong.value.reason is Reason.ISSUER_MISMATCH
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as sub:
        verify_status_list(token, [test_ca.root], uri=URI + "x")
    assert sub.value.reason is Reason.MALFORMED


def test_tampered_status_list(signer: LicenceSigner, test_ca: MiniCa) -> None:
    statuses = StatusList(MIN_ENTRIES)
    statuses.set(5, LicenceStatus.REVOKED)
    header, payload, signature = sign_status_list(signer, statuses, uri=URI).split(".")
    data = json.loads(b64url_decode(payload))
    data["status_list"] = StatusList(MIN_ENTRIES).to_json()  # "un-revoke" everything
    forged = f"{header}.{b64url(json.dumps(data).encode())}.{signature}"
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_status_list(forged, [test_ca.root])
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_expired_status_list(signer: LicenceSigner, test_ca: MiniCa) -> None:
    token = sign_status_list(
        signer, StatusList(8), uri=URI, now=datetime.now(UTC) - timedelta(days=2)
    )
    with same(signer.keystore), pytest.raises(LicenceVerificationFailed) as info:
        verify_status_list(token, [test_ca.root])
    assert info.value.reason is Reason.STALE_STATUS_LIST


def _licence(identifier: str, index: int, status: str) -> LicenceRow:
    now = datetime.now(UTC)
    return LicenceRow(
        identifier=identifier,
        type_code=catalogue.BUSINESS_LICENCE_CODE,
        issuer_code=catalogue.EXAMPLE_ISSUER,
        serial=identifier,
        version=1,
        licence_number="n",
        holder_identity_id="h",
        holder_code_type="001",
        status=status,
        status_reason="",
        status_index=index,
        valid_from=date(2024, 1, 1),
        valid_until=None,
        issued_at=now,
        signing_key_id="k",
        signed_data="jws",
        qr_payload="GT1:",
        updated_at=now,
    )


def test_allocation_and_build_from_database(database: Database) -> None:
    issuer = catalogue.EXAMPLE_ISSUER
    with database.transaction() as session:
        catalogue.seed_catalogue(session, SYSTEM)
        indexes = [allocate_index(session, issuer) for _ in range(3)]
    with database.transaction() as session:
        indexes.append(allocate_index(session, issuer))
        indexes.append(allocate_index(session, DEPT_USCC))
    assert indexes == [0, 1, 2, 3, 0]
    with database.transaction() as session:
        session.add_all(
            [_licence("a", 0, "valid"), _licence("b", 1, "revoked"), _licence("c", 2, "suspended")]
        )
    with database.read() as session:
        statuses = build_status_list(session, issuer)
    assert statuses.size == MIN_ENTRIES
    assert [statuses.get(i) for i in range(4)] == [
        LicenceStatus.VALID,
        LicenceStatus.REVOKED,
        LicenceStatus.SUSPENDED,
        LicenceStatus.VALID,
    ]


def test_refresh_caches_token(sqlite_db: Database, keystore: SoftKeyStore, test_ca: MiniCa) -> None:
    signer = make_signer(keystore, test_ca, uscc=catalogue.EXAMPLE_ISSUER)
    with sqlite_db.transaction() as session:
        token = refresh_status_list(session, signer, catalogue.EXAMPLE_ISSUER, uri=URI)
    verified = verify_status_list(token, [test_ca.root], issuer_code=catalogue.EXAMPLE_ISSUER)
    assert verified.statuses.size == MIN_ENTRIES


def test_block_allocation(database: Database) -> None:
    with database.transaction() as session:
        assert allocate_index(session, DEPT_USCC, 5) == 0
        assert allocate_index(session, DEPT_USCC) == 5
        assert allocate_index(session, DEPT_USCC, 2) == 6
        assert allocate_index(session, DEPT_USCC) == 8
