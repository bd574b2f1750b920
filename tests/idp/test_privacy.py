"""Personal data at rest and in logs: only ciphertexts, blind indexes and masked forms."""

from __future__ import annotations

import logging

import grpc
import pytest
from sqlalchemy import select

from govtrust.observability.logs import JsonFormatter
from govtrust.schema import metadata
from govtrust.v1 import common_pb2, identity_pb2
from hsm.master import MasterKey
from idp.basedata import import_legal_persons, import_population
from idp.models import CitizenRow
from idp.pii import (
    PURPOSE_ID_NUMBER,
    PURPOSE_PHONE,
    PiiCodec,
    PiiError,
    mask_id_number,
    mask_phone,
)
from tests.idp.conftest import REGISTRAR, VERIFIER, GrpcHandle
from tests.idp.helpers import resident_id, uscc
from tests.unchanged import unchanged

pb = identity_pb2
PHONES = ["13812345678", "15900001111", "18611112222"]
NUMBERS = [resident_id(n) for n in range(1, 4)] + [resident_id(7), resident_id(8)]


def test_masking() -> None:
    assert mask_id_number("11010519491231002X") == "1101**********002X"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("") == ""


@pytest.mark.parametrize("scheme", ["aes-256-gcm", "sm4-gcm"])
def test_codec_round_trip_and_binding(scheme: str) -> None:
    codec = PiiCodec.from_master_key(MasterKey.generate(), scheme)
    blob = codec.encrypt("11010519491231002X", PURPOSE_ID_NUMBER)
    assert blob[0] == {"aes-256-gcm": 1, "sm4-gcm": 2}[scheme]
    assert b"11010519491231002X" not in blob
    assert codec.decrypt(blob, PURPOSE_ID_NUMBER) == "11010519491231002X"
    assert codec.encrypt("x", PURPOSE_PHONE) != codec.encrypt("x", PURPOSE_PHONE)  # fresh nonce
    with pytest.raises(PiiError):
        codec.decrypt(blob, PURPOSE_PHONE)  # bound to its column
    with pytest.raises(PiiError):
        PiiCodec.from_master_key(MasterKey.generate()).decrypt(blob, PURPOSE_ID_NUMBER)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(PiiError):
        codec.decrypt(tampered, PURPOSE_ID_NUMBER)
    index = codec.blind_index("11010519491231002X", PURPOSE_ID_NUMBER)
    assert index == codec.blind_index("11010519491231002X", PURPOSE_ID_NUMBER)
    assert index != codec.blind_index("11010519491231002X", PURPOSE_PHONE)
    assert "keys hidden" in repr(codec)


def populate(server: GrpcHandle) -> None:
    """Every kind of write that touches an ID number or a phone, successful or not."""
    platform = server.platform
    codec = PiiCodec.from_master_key(platform.master_key)
    import_population(
        platform.db,
        codec,
        f"name,id_number\n张一,{NUMBERS[0]}\n张八,{NUMBERS[4]}\n",
        principal=REGISTRAR,
    )
    citizens = []
    for i, phone in enumerate(PHONES):
        response = server.call(
            "RegisterCitizen",
            pb.RegisterCitizenRequest(name=f"张{i}", id_number=NUMBERS[i], phone=phone),
        )
        citizens.append(response.citizen)
    import_legal_persons(
        platform.db,
        codec,
        f"uscc,name,legal_representative_id_number\n{uscc(1)},某公司,{NUMBERS[0]}\n",
        principal=REGISTRAR,
    )
    server.call(
        "RegisterLegalPerson",
        pb.RegisterLegalPersonRequest(
            uscc=uscc(1),
            name="某公司",
            legal_representative=common_pb2.IdentityRef(resident_id_number=NUMBERS[0]),
        ),
    )
    server.call(
        "RegisterStaff",
        pb.RegisterStaffRequest(
            name="职员",
            department_code="D1",
            employee_number="E1",
            phone=PHONES[0],
            citizen=common_pb2.IdentityRef(resident_id_number=NUMBERS[1]),
        ),
    )
    server.call(
        "GrantAgent",
        pb.GrantAgentRequest(
            legal_person=common_pb2.IdentityRef(uscc=uscc(1)),
            agent=common_pb2.IdentityRef(resident_id_number=NUMBERS[2]),
            scopes=["seal.use"],
        ),
    )
    server.call(
        "UpdateIdentityStatus",
        pb.UpdateIdentityStatusRequest(
            identity=common_pb2.IdentityRef(resident_id_number=NUMBERS[1]),
            action=pb.IDENTITY_STATUS_ACTION_SUSPEND,
            reason="lost card",
        ),
    )
    for number in NUMBERS:
        server.call("CheckCitizen", pb.CheckCitizenRequest(name="张0", id_number=number), VERIFIER)
    server.call(
        "CheckLegalPerson",
        pb.CheckLegalPersonRequest(uscc=uscc(1), name="某公司", citizen_id_number=NUMBERS[2]),
        VERIFIER,
    )
    with unchanged(server.platform.db), pytest.raises(grpc.RpcError):  # duplicate: no leak either
        server.call("RegisterCitizen", pb.RegisterCitizenRequest(name="x", id_number=NUMBERS[0]))
    with unchanged(server.platform.db), pytest.raises(grpc.RpcError):  # bad check digit
        server.call(
            "RegisterCitizen",
            pb.RegisterCitizenRequest(name="x", id_number=_broken(NUMBERS[3]), phone=PHONES[2]),
        )


def _secrets() -> list[str]:
    return NUMBERS + [n[:17] for n in NUMBERS] + PHONES


def test_database_holds_no_plaintext_id_number_or_phone(grpc_server: GrpcHandle) -> None:
    populate(grpc_server)
    db = grpc_server.platform.db
    scanned_cells = 0
    needles = _secrets()
    with db.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    if value is None:
                        continue
                    scanned_cells += 1
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    text = (
                        value.decode("latin-1")
                        if isinstance(value, bytes | bytearray)
                        else str(value)
                    )
                    for needle in needles:
                        assert needle not in text, f"{table.name}.{column.name} holds plaintext"
    assert scanned_cells > 100
    # ... and the ciphertexts are real: they decrypt with the registry's key.
    codec = PiiCodec.from_master_key(grpc_server.platform.master_key)
    with db.read() as session:
        stored = session.scalars(select(CitizenRow)).all()
        decrypted = {codec.decrypt(c.id_number_enc, PURPOSE_ID_NUMBER) for c in stored}
        phones = {codec.decrypt(c.phone_enc, PURPOSE_PHONE) for c in stored if c.phone_enc}
    assert decrypted == set(NUMBERS[:3])
    assert phones == set(PHONES)


def test_logs_hold_only_masked_forms(
    grpc_server: GrpcHandle, caplog: pytest.LogCaptureFixture
) -> None:
    formatter = JsonFormatter()
    with caplog.at_level(logging.DEBUG):
        populate(grpc_server)
    assert caplog.records, "expected log records (access lines, registrations)"
    lines = [formatter.format(record) for record in caplog.records]
    for line in lines:
        for needle in _secrets():
            assert needle not in line, line
    assert any(mask_id_number(NUMBERS[0]) in line for line in lines)


def _broken(number: str) -> str:
    """``number`` with a wrong check digit."""
    return number[:-1] + ("1" if number[-1] != "1" else "2")
