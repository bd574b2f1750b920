"""The licence catalogue: seeded types, schema validation with field-named errors, storage."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from sqlalchemy import select

from govtrust.audit import AuditRecord
from govtrust.db import Database
from govtrust.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from govtrust.principal import SYSTEM, Principal
from license import catalogue
from license.catalogue import FieldSpec, FieldType, validate_fields, validate_validity
from license.identifiers import check_type_code
from tests.unchanged import unchanged

BL = catalogue.business_licence([catalogue.EXAMPLE_ISSUER])
UC = catalogue.uscc_certificate([catalogue.EXAMPLE_ISSUER])

GOOD_BL = {
    "KZ_TYSHXYDM": "91350100M000100Y43",
    "KZ_MC": "福州示例科技有限公司",
    "KZ_LX": "有限责任公司(自然人投资或控股)",
    "KZ_FDDBR": "张三",
    "KZ_ZCZB": "100万元人民币",
    "KZ_CLRQ": "2015-06-01",
    "KZ_YYQX": "2015-06-01至长期",
    "KZ_ZS": "福建省福州市鼓楼区示例路1号",
    "KZ_JYFW": "软件开发;信息技术咨询服务。",
    "KZ_DJJG": "福州市市场监督管理局",
}


def test_seed_types_are_well_formed() -> None:
    for licence_type in (BL, UC):
        assert catalogue.type_violations(licence_type) == []
        check_type_code(licence_type.type_code)
        assert len(licence_type.type_code) == 21


def test_valid_fields_are_normalised() -> None:
    fields = validate_fields(BL, {**GOOD_BL, "KZ_MC": "  福州示例科技有限公司 "})
    assert fields["KZ_MC"] == "福州示例科技有限公司"
    assert validate_fields(UC, {
        "KZ_TYSHXYDM": "11100000000013338W", "KZ_JGMC": "某机关", "KZ_JGLX": "机关",
        "KZ_FZR": "李四", "KZ_JGDZ": "北京", "KZ_BFJG": "中央编办", "KZ_BZ": "",
    }).get("KZ_BZ") is None  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        ({"KZ_MC": None}, "fields.KZ_MC", "is required"),
        ({"KZ_MC": "   "}, "fields.KZ_MC", "is required"),
        ({"KZ_TYSHXYDM": "91350100M000100Y44"}, "fields.KZ_TYSHXYDM", "USCC"),
        ({"KZ_CLRQ": "2015-02-30"}, "fields.KZ_CLRQ", "date"),
        ({"KZ_CLRQ": "20150601"}, "fields.KZ_CLRQ", "date"),
        ({"KZ_ZCZB": "一百万"}, "fields.KZ_ZCZB", "format"),
        ({"KZ_YYQX": "forever"}, "fields.KZ_YYQX", "format"),
        ({"KZ_MC": "x" * 201}, "fields.KZ_MC", "at most"),
        ({"KZ_MC": "a\x00b"}, "fields.KZ_MC", "control"),
        ({"KZ_MC": ["list"]}, "fields.KZ_MC", "string"),
        ({"KZ_UNKNOWN": "x"}, "fields.KZ_UNKNOWN", "not a field"),
    ],
)
def test_field_errors_name_the_field(change: dict[str, object], field: str, why: str) -> None:
    submitted: dict[str, object] = {**GOOD_BL, **change}
    submitted = {k: v for k, v in submitted.items() if v is not None}
    with pytest.raises(InvalidArgument) as info:
        validate_fields(BL, submitted)
    assert [v.field for v in info.value.violations] == [field]
    assert why in info.value.violations[0].description


def test_every_violation_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_fields(BL, {"KZ_CLRQ": "bad"})
    fields = {v.field for v in info.value.violations}
    assert "fields.KZ_CLRQ" in fields
    assert "fields.KZ_MC" in fields
    assert len(fields) == len(BL.fields)


def test_typed_fields() -> None:
    t = dataclasses.replace(
        BL,
        fields=(
            FieldSpec("KZ_N", "n", FieldType.INTEGER),
            FieldSpec("KZ_D", "d", FieldType.DECIMAL),
            FieldSpec("KZ_ID", "id", FieldType.RESIDENT_ID),
        ),
    )
    assert validate_fields(t, {"KZ_N": 42, "KZ_D": "1.50", "KZ_ID": "11010519491231002X"}) == {
        "KZ_N": "42", "KZ_D": "1.50", "KZ_ID": "11010519491231002X",
    }  # fmt: skip
    with pytest.raises(InvalidArgument) as info:
        validate_fields(t, {"KZ_N": "4.2", "KZ_D": "NaN", "KZ_ID": "110105194912310021"})
    assert [v.field for v in info.value.violations] == [
        "fields.KZ_N",
        "fields.KZ_D",
        "fields.KZ_ID",
    ]


def test_validity_rules() -> None:
    start = date(2024, 2, 29)
    assert validate_validity(BL, start, None) is None  # 长期
    assert validate_validity(UC, start, None) == date(2029, 2, 28)  # default 5 years
    with pytest.raises(InvalidArgument, match="within 5 years"):
        validate_validity(UC, start, date(2030, 1, 1))
    with pytest.raises(InvalidArgument, match="before"):
        validate_validity(BL, start, date(2024, 1, 1))


def test_bad_type_definitions() -> None:
    bad = dataclasses.replace(
        BL,
        type_code="11100000000013338X011",
        name=" ",
        issuing_departments=("123",),
        holder_code_types=("999",),
        fields=(FieldSpec("MC", "x"), FieldSpec("KZ_A", "a", format="("), FieldSpec("KZ_A", "b")),
    )
    fields = {v.field for v in catalogue.type_violations(bad)}
    assert {
        "type_code", "name", "issuing_departments[0]", "holder_code_types",
        "fields[0].name", "fields[1].format", "fields[2].name",
    } <= fields  # fmt: skip


def test_define_seed_get_list(database: Database) -> None:
    with database.transaction() as session:
        types = catalogue.seed_catalogue(session, SYSTEM)
        assert [t.name for t in types] == ["统一社会信用代码证书", "营业执照"]
        again = catalogue.seed_catalogue(session, SYSTEM)  # idempotent
        assert len(again) == 2
    with database.read() as session:
        assert catalogue.get_type(session, BL.type_code) == BL
        assert catalogue.get_type(session, UC.type_code) == UC
        actions = session.scalars(select(AuditRecord.action)).all()
        assert actions.count("licence.type.define") == 2
        with unchanged(database), pytest.raises(NotFound):
            catalogue.get_type(session, "11100000000013338W999")
        with unchanged(database), pytest.raises(InvalidArgument):
            catalogue.get_type(session, "short")
    with unchanged(database), database.transaction() as session, pytest.raises(AlreadyExists):
        catalogue.define_type(session, SYSTEM, BL)
    renamed = dataclasses.replace(BL, name_en="Business licence (renamed)")
    with database.transaction() as session:
        catalogue.define_type(session, SYSTEM, renamed, replace=True)
    with database.read() as session:
        assert catalogue.get_type(session, BL.type_code).name_en.endswith("(renamed)")


def test_define_needs_admin(database: Database) -> None:
    nobody = Principal(kind="user", subject="u", roles=frozenset({"verifier"}))
    with unchanged(database), database.transaction() as session, pytest.raises(PermissionDenied):
        catalogue.define_type(session, nobody, BL)


def test_type_json_round_trips_and_names_bad_parts() -> None:
    from govtrust.errors import InvalidArgument as Invalid

    for licence_type in (
        catalogue.business_licence([catalogue.EXAMPLE_ISSUER]),
        catalogue.uscc_certificate([catalogue.EXAMPLE_ISSUER]),
    ):
        assert catalogue.type_from_json(catalogue.type_to_json(licence_type)) == licence_type
    with pytest.raises(Invalid) as info:
        catalogue.type_from_json(["not", "an", "object"])
    assert info.value.violations[0].field == "type"
    data = catalogue.type_to_json(catalogue.business_licence([catalogue.EXAMPLE_ISSUER]))
    with pytest.raises(Invalid) as info:
        catalogue.type_from_json({**data, "issuing_departments": "one"})
    assert info.value.violations[0].field == "issuing_departments"


PERMIT = dataclasses.replace(
    BL,
    type_code="11100000000013338W011",
    fields=(
        FieldSpec("KZ_LB", "类别", FieldType.ENUM, label_en="Category",
                  allowed_values=("食品销售", "餐饮服务"), max_length=20, public=True),
        FieldSpec("KZ_WL", "网络经营", FieldType.BOOLEAN, label_en="Online", required=False),
    ),
)  # fmt: skip


def test_enum_and_boolean_fields() -> None:
    assert catalogue.type_violations(PERMIT) == []
    assert validate_fields(PERMIT, {"KZ_LB": " 餐饮服务 ", "KZ_WL": "true"}) == {
        "KZ_LB": "餐饮服务",
        "KZ_WL": "true",
    }
    assert validate_fields(PERMIT, {"KZ_LB": "食品销售", "KZ_WL": "false"})["KZ_WL"] == "false"
    assert "KZ_WL" not in validate_fields(PERMIT, {"KZ_LB": "食品销售"})  # optional
    with pytest.raises(InvalidArgument) as info:
        validate_fields(PERMIT, {"KZ_LB": "药品销售", "KZ_WL": "yes"})
    why = {v.field: v.description for v in info.value.violations}
    assert why == {
        "fields.KZ_LB": "must be one of 食品销售, 餐饮服务",
        "fields.KZ_WL": "must be true or false",
    }
    with pytest.raises(InvalidArgument):
        validate_fields(PERMIT, {"KZ_LB": "食品销售", "KZ_WL": "True"})


def test_bad_enum_and_label_definitions() -> None:
    bad = dataclasses.replace(
        PERMIT,
        fields=(
            FieldSpec("KZ_A", "a", FieldType.ENUM),  # no values
            FieldSpec("KZ_B", "b", FieldType.ENUM, allowed_values=("x", "x", " y", "")),
            FieldSpec("KZ_C", "c", allowed_values=("x",)),  # values on a string field
            FieldSpec("KZ_D", "d", FieldType.ENUM, max_length=2, allowed_values=("abc",)),
            FieldSpec("KZ_E", "e", label_en="bad\x00label"),
        ),
    )
    found = {v.field: v.description for v in catalogue.type_violations(bad)}
    assert found == {
        "fields[0].allowed_values": "an enum field needs its values",
        "fields[1].allowed_values[1]": "duplicate value x",
        "fields[1].allowed_values[2]": (
            "must be non-empty printable text without surrounding spaces"
        ),
        "fields[1].allowed_values[3]": (
            "must be non-empty printable text without surrounding spaces"
        ),
        "fields[2].allowed_values": "only enum fields have values",
        "fields[3].allowed_values[0]": "longer than max_length 2",
        "fields[4].label_en": "at most 200 printable characters",
    }


def test_enum_boolean_and_english_labels_are_stored(database: Database) -> None:
    with database.transaction() as session:
        catalogue.define_type(session, SYSTEM, PERMIT)
    with database.read() as session:
        stored = catalogue.get_type(session, PERMIT.type_code)
    assert stored == PERMIT
    assert stored.fields[0].label_en == "Category"
    assert stored.fields[0].allowed_values == ("食品销售", "餐饮服务")
    assert catalogue.type_from_json(catalogue.type_to_json(PERMIT)) == PERMIT
    data = catalogue.type_to_json(PERMIT)
    data["fields"][0]["allowed_values"] = "食品销售"
    with unchanged(database), pytest.raises(InvalidArgument) as info:
        catalogue.type_from_json(data)
    assert info.value.violations[0].field == "fields[0]"
    with unchanged(database), database.transaction() as session, pytest.raises(InvalidArgument):
        catalogue.define_type(
            session, SYSTEM,
            dataclasses.replace(PERMIT, fields=(FieldSpec("KZ_A", "a", FieldType.ENUM),)),
            replace=True,
        )  # fmt: skip
    with database.read() as session:
        assert catalogue.get_type(session, PERMIT.type_code) == PERMIT  # unchanged
