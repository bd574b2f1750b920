"""The licence catalogue (证照目录): licence types, their ``KZ_*`` field schema and validity rules.

A :class:`LicenceType` is a frozen value; :func:`validate_fields` checks the type-specific
fields a department submits and raises one :class:`InvalidArgument` whose violations name each
bad field (``fields.KZ_MC``). Storage helpers (:func:`define_type`, :func:`get_type`,
:func:`list_types`, :func:`seed_catalogue`) keep the rows of :class:`LicenceTypeRow`.

Types have revisions: :func:`define_type` with ``replace`` stores a changed definition as the
next revision (an identical one changes nothing); every revision is kept
(:class:`LicenceTypeRevisionRow`) and each licence records the revision it was issued under.

The two seeded types (营业执照, 统一社会信用代码证书) carry their usual fields. Their type codes
are built from *placeholder* authority USCCs with correct GB 32100 check characters, not the
real codes of SAMR or the 机构编制 authority: replace them from the national catalogue when it
is loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from govtrust import audit
from govtrust.audit import canonical_json
from govtrust.db import as_utc
from govtrust.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from govtrust.principal import Principal
from idp.identifiers import InvalidIdentifier, parse_resident_id, parse_uscc
from license.identifiers import TYPE_CODE_LENGTH, InvalidLicenceIdentifier, check_type_code
from license.models import LicenceTypeRevisionRow, LicenceTypeRow

FIELD_NAME = re.compile(r"KZ_[A-Z0-9_]{1,40}")
HOLDER_CODE_TYPES = frozenset({"111", "001"})  # resident ID number, USCC (GB/T 36903)
MAX_FIELD_LENGTH = 4000
MAX_YEARS = 100
MAX_DAYS = 36500


class FieldType(StrEnum):
    """How a ``KZ_*`` value is checked (values are strings in the signed data)."""

    STRING = "string"
    DATE = "date"  # YYYY-MM-DD
    INTEGER = "integer"
    DECIMAL = "decimal"
    USCC = "uscc"
    RESIDENT_ID = "resident_id"
    ENUM = "enum"  # one of FieldSpec.allowed_values
    BOOLEAN = "boolean"  # "true" or "false"


BOOLEAN_VALUES = ("true", "false")
MAX_ALLOWED_VALUES = 200


@dataclass(frozen=True)
class FieldSpec:
    """One type-specific field: ``name`` (``KZ_*``), labels (Chinese, English), type, required,
    format regex; ``allowed_values`` lists the values of an ``ENUM`` field (and only then)."""

    name: str
    label: str
    type: FieldType = FieldType.STRING
    required: bool = True
    format: str | None = None  # a regular expression the whole value must match
    max_length: int = 500
    public: bool = False  # shown on the public verification page
    label_en: str = ""
    allowed_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidityRule:
    """Validity window rules: the default and the maximum length, each in whole years (the same
    calendar date N years later; 29 February → 28 February) or in days (N days later), not
    both; whether 长期 (no end date) is allowed."""

    default_years: int | None = None
    max_years: int | None = None
    long_term_allowed: bool = True
    default_days: int | None = None
    max_days: int | None = None

    def default_end(self, start: date) -> date | None:
        """The default end of a window starting at ``start`` (None: no default length)."""
        return _end(start, self.default_years, self.default_days)

    def max_end(self, start: date) -> date | None:
        """The latest end of a window starting at ``start`` (None: no maximum)."""
        return _end(start, self.max_years, self.max_days)

    @property
    def max_text(self) -> str:
        return f"{self.max_years} years" if self.max_years is not None else f"{self.max_days} days"


def _end(start: date, years: int | None, days: int | None) -> date | None:
    if years is not None:
        return _add_years(start, years)
    if days is not None:
        return start + timedelta(days=days)
    return None


DOCUMENT_FORMATS = ("pdf", "ofd")
"""The licence document formats: PDF sealed PAdES, OFD sealed GB/T 38540."""


@dataclass(frozen=True)
class LicenceType:
    """A licence type of the catalogue."""

    type_code: str
    name: str
    name_en: str
    defining_authority: str
    issuing_departments: tuple[str, ...]
    holder_code_types: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    validity: ValidityRule = ValidityRule()
    layout: Mapping[str, Any] = field(default_factory=dict)
    document_formats: tuple[str, ...] = ("pdf",)
    """The files a licence of this type is issued as: ``pdf`` (PAdES), ``ofd`` (GB/T 38540)."""
    # Set by storage, not part of the definition (equality ignores them):
    revision: int = field(default=1, compare=False)
    created_at: datetime | None = field(default=None, compare=False)  # of this revision

    @property
    def defining_authority_code(self) -> str:
        return self.type_code[:18]

    def field_spec(self, name: str) -> FieldSpec | None:
        """The spec of field ``name`` (None if the type has no such field)."""
        return next((f for f in self.fields if f.name == name), None)


# --- validation ---------------------------------------------------------------------------------


def type_violations(licence_type: LicenceType) -> list[FieldViolation]:
    """Everything wrong with a licence type definition (empty when it is well-formed)."""
    out: list[FieldViolation] = []
    try:
        check_type_code(licence_type.type_code, ())
    except InvalidLicenceIdentifier as exc:
        out.append(FieldViolation("type_code", exc.violations[0].description))
    if not licence_type.name.strip():
        out.append(FieldViolation("name", "must not be empty"))
    formats = licence_type.document_formats
    if (
        not formats
        or len(set(formats)) != len(formats)
        or not set(formats) <= set(DOCUMENT_FORMATS)
    ):
        out.append(
            FieldViolation("document_formats", "one or both of pdf and ofd, each at most once")
        )
    if not licence_type.defining_authority.strip():
        out.append(FieldViolation("defining_authority", "must not be empty"))
    if not licence_type.issuing_departments:
        out.append(FieldViolation("issuing_departments", "at least one department is needed"))
    for i, dept in enumerate(licence_type.issuing_departments):
        try:
            parse_uscc(dept, field=f"issuing_departments[{i}]")
        except InvalidIdentifier as exc:
            out.extend(exc.violations)
    if not licence_type.holder_code_types or not set(licence_type.holder_code_types) <= set(
        HOLDER_CODE_TYPES
    ):
        out.append(FieldViolation("holder_code_types", "must be a non-empty subset of 111, 001"))
    seen: set[str] = set()
    for i, spec in enumerate(licence_type.fields):
        where = f"fields[{i}]"
        if not FIELD_NAME.fullmatch(spec.name):
            out.append(FieldViolation(f"{where}.name", "must match KZ_[A-Z0-9_]+"))
        if spec.name in seen:
            out.append(FieldViolation(f"{where}.name", f"duplicate field {spec.name}"))
        seen.add(spec.name)
        if spec.format is not None:
            try:
                re.compile(spec.format)
            except re.error as exc:
                out.append(FieldViolation(f"{where}.format", f"not a regular expression: {exc}"))
        if not 1 <= spec.max_length <= MAX_FIELD_LENGTH:
            out.append(FieldViolation(f"{where}.max_length", f"must be 1-{MAX_FIELD_LENGTH}"))
        if len(spec.label_en) > 200 or not spec.label_en.isprintable():
            out.append(FieldViolation(f"{where}.label_en", "at most 200 printable characters"))
        out.extend(_allowed_values_violations(spec, where))
    rule = licence_type.validity
    for name in ("default_years", "max_years"):
        years = getattr(rule, name)
        if years is not None and (not isinstance(years, int) or not 1 <= years <= MAX_YEARS):
            out.append(FieldViolation(f"validity.{name}", f"must be 1-{MAX_YEARS} years"))
    for name in ("default_days", "max_days"):
        days = getattr(rule, name)
        if days is not None and (not isinstance(days, int) or not 1 <= days <= MAX_DAYS):
            out.append(FieldViolation(f"validity.{name}", f"must be 1-{MAX_DAYS} days"))
    for what in ("default", "max"):
        if getattr(rule, f"{what}_years") is not None and getattr(rule, f"{what}_days") is not None:
            out.append(
                FieldViolation(
                    f"validity.{what}_days", f"give {what}_years or {what}_days, not both"
                )
            )
    if not out:
        start = date(2001, 1, 1)
        default, latest = rule.default_end(start), rule.max_end(start)
        if default is not None and latest is not None and default > latest:
            out.append(FieldViolation("validity.default_days", "longer than the maximum"))
    return out


def _allowed_values_violations(spec: FieldSpec, where: str) -> list[FieldViolation]:
    """What is wrong with the ``allowed_values`` of a field spec (only ENUM fields have them)."""
    values = spec.allowed_values
    if spec.type is not FieldType.ENUM:
        if values:
            return [FieldViolation(f"{where}.allowed_values", "only enum fields have values")]
        return []
    if not values:
        return [FieldViolation(f"{where}.allowed_values", "an enum field needs its values")]
    if len(values) > MAX_ALLOWED_VALUES:
        return [FieldViolation(f"{where}.allowed_values", f"at most {MAX_ALLOWED_VALUES} values")]
    out: list[FieldViolation] = []
    for i, value in enumerate(values):
        if not value or value != value.strip() or not value.isprintable():
            out.append(
                FieldViolation(
                    f"{where}.allowed_values[{i}]",
                    "must be non-empty printable text without surrounding spaces",
                )
            )
        elif len(value) > spec.max_length:
            out.append(
                FieldViolation(
                    f"{where}.allowed_values[{i}]", f"longer than max_length {spec.max_length}"
                )
            )
        elif values.index(value) != i:
            out.append(FieldViolation(f"{where}.allowed_values[{i}]", f"duplicate value {value}"))
    return out


def _check_value(spec: FieldSpec, value: str) -> str | None:
    """Why ``value`` does not fit ``spec`` (None when it fits)."""
    if len(value) > spec.max_length:
        return f"must be at most {spec.max_length} characters"
    if any(not c.isprintable() for c in value.replace("\n", "")):
        return "must not contain control characters"
    if spec.type is FieldType.DATE:
        try:
            date.fromisoformat(value)
        except ValueError:
            return "must be a date YYYY-MM-DD"
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return "must be a date YYYY-MM-DD"
    elif spec.type is FieldType.INTEGER:
        if not re.fullmatch(r"-?\d{1,18}", value):
            return "must be an integer"
    elif spec.type is FieldType.DECIMAL:
        try:
            number = Decimal(value)
        except InvalidOperation:
            return "must be a decimal number"
        if not number.is_finite() or not re.fullmatch(r"-?\d{1,18}(\.\d{1,6})?", value):
            return "must be a decimal number like 100.50"
    elif spec.type is FieldType.USCC:
        try:
            parse_uscc(value)
        except InvalidIdentifier as exc:
            return f"not a valid USCC ({exc.why})"
    elif spec.type is FieldType.RESIDENT_ID:
        try:
            parse_resident_id(value)
        except InvalidIdentifier as exc:
            return f"not a valid resident ID number ({exc.why})"
    elif spec.type is FieldType.ENUM:
        if value not in spec.allowed_values:
            return f"must be one of {', '.join(spec.allowed_values)}"
    elif spec.type is FieldType.BOOLEAN and value not in BOOLEAN_VALUES:
        return "must be true or false"
    if spec.format is not None and not re.fullmatch(spec.format, value):
        return "does not match the format of the licence type"
    return None


def validate_fields(licence_type: LicenceType, fields: Mapping[str, object]) -> dict[str, str]:
    """Check submitted ``KZ_*`` fields against the type's schema; return them normalised.

    Values are stripped strings; empty optional fields are dropped. Raises one
    :class:`InvalidArgument` listing every violation as ``fields.<name>``.
    """
    violations: list[FieldViolation] = []
    known = {spec.name for spec in licence_type.fields}
    for name in fields:
        if name not in known:
            violations.append(
                FieldViolation(f"fields.{name}", f"not a field of licence type {licence_type.name}")
            )
    out: dict[str, str] = {}
    for spec in licence_type.fields:
        raw = fields.get(spec.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if spec.required:
                violations.append(FieldViolation(f"fields.{spec.name}", "is required"))
            continue
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            violations.append(FieldViolation(f"fields.{spec.name}", "must be a string"))
            continue
        value = str(raw).strip()
        why = _check_value(spec, value)
        if why is not None:
            violations.append(FieldViolation(f"fields.{spec.name}", why))
            continue
        out[spec.name] = value
    if violations:
        names = ", ".join(v.field for v in violations)
        raise InvalidArgument(f"invalid licence fields: {names}", violations)
    return out


def validate_validity(
    licence_type: LicenceType, valid_from: date, valid_until: date | None
) -> date | None:
    """Check a validity window against the type's rules; return the (defaulted) end date.

    ``valid_until=None`` means 长期 (long term) unless the type has a default length.
    """
    rule = licence_type.validity
    if valid_until is None:
        valid_until = rule.default_end(valid_from)
        if valid_until is None:
            if not rule.long_term_allowed:
                raise InvalidArgument.field("valid_until", "this licence type needs an end date")
            return None
    if valid_until < valid_from:
        raise InvalidArgument.field("valid_until", "must not be before valid_from")
    latest = rule.max_end(valid_from)
    if latest is not None and valid_until > latest:
        raise InvalidArgument.field("valid_until", f"must be within {rule.max_text} of valid_from")
    return valid_until


def _add_years(start: date, years: int) -> date:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return start.replace(year=start.year + years, day=28)


# --- storage ------------------------------------------------------------------------------------


def _spec_from_json(data: Mapping[str, Any]) -> FieldSpec:
    return FieldSpec(
        name=data["name"],
        label=data["label"],
        type=FieldType(data["type"]),
        required=bool(data["required"]),
        format=data.get("format"),
        max_length=int(data["max_length"]),
        public=bool(data.get("public", False)),
        label_en=str(data.get("label_en") or ""),
        allowed_values=_strings(data.get("allowed_values") or ()),
    )


def _strings(values: object) -> tuple[str, ...]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise TypeError("allowed_values must be a list of strings")
    return tuple(values)


def type_from_row(row: LicenceTypeRow | LicenceTypeRevisionRow) -> LicenceType:
    """The :class:`LicenceType` a row stores (the current revision, or one revision)."""
    validity = json.loads(row.validity)
    stamp = row.updated_at if isinstance(row, LicenceTypeRow) else row.created_at
    return LicenceType(
        type_code=row.type_code,
        name=row.name,
        name_en=row.name_en,
        defining_authority=row.defining_authority,
        issuing_departments=tuple(json.loads(row.issuing_departments)),
        holder_code_types=tuple(json.loads(row.holder_code_types)),
        fields=tuple(_spec_from_json(f) for f in json.loads(row.field_schema)),
        validity=ValidityRule(**validity),
        layout=json.loads(row.layout),
        document_formats=tuple(row.document_formats.split(",")),
        revision=row.revision,
        created_at=as_utc(stamp),
    )


def _row_values(licence_type: LicenceType) -> dict[str, Any]:
    return {
        "name": licence_type.name,
        "name_en": licence_type.name_en,
        "defining_authority": licence_type.defining_authority,
        "defining_authority_code": licence_type.defining_authority_code,
        "issuing_departments": canonical_json(list(licence_type.issuing_departments)).decode(),
        "holder_code_types": canonical_json(list(licence_type.holder_code_types)).decode(),
        "field_schema": canonical_json([asdict(f) for f in licence_type.fields]).decode(),
        "validity": canonical_json(asdict(licence_type.validity)).decode(),
        "layout": canonical_json(dict(licence_type.layout)).decode(),
        "document_formats": ",".join(licence_type.document_formats),
    }


def type_to_json(licence_type: LicenceType) -> dict[str, Any]:
    """The whole type as JSON-ready data (what ``govtrust license types --json`` prints and
    ``--define`` reads back)."""
    return {
        "type_code": licence_type.type_code,
        "revision": licence_type.revision,
        "name": licence_type.name,
        "name_en": licence_type.name_en,
        "defining_authority": licence_type.defining_authority,
        "issuing_departments": list(licence_type.issuing_departments),
        "holder_code_types": list(licence_type.holder_code_types),
        "fields": [asdict(f) for f in licence_type.fields],
        "validity": asdict(licence_type.validity),
        "layout": dict(licence_type.layout),
        "document_formats": list(licence_type.document_formats),
    }


def type_from_json(data: object) -> LicenceType:
    """A :class:`LicenceType` from :func:`type_to_json`'s shape; :class:`InvalidArgument`
    naming the part that is missing or of the wrong kind (the values themselves are checked
    by :func:`define_type`). ``revision`` is ignored: storing sets it."""
    if not isinstance(data, Mapping):
        raise InvalidArgument.field("type", "must be a JSON object")

    def text(key: str, *, required: bool = True) -> str:
        value = data.get(key, None if required else "")
        if not isinstance(value, str):
            raise InvalidArgument.field(key, "must be a string")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument.field(key, "must be a list of strings")
        return tuple(value)

    raw_fields = data.get("fields")
    if not isinstance(raw_fields, list):
        raise InvalidArgument.field("fields", "must be a list of field specs")
    specs = []
    for index, item in enumerate(raw_fields):
        try:
            if not isinstance(item, Mapping):
                raise TypeError("not an object")
            specs.append(
                _spec_from_json({"required": True, "max_length": 500, "type": "string", **item})
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument.field(f"fields[{index}]", f"bad field spec ({exc})") from None
    validity = data.get("validity", {})
    layout = data.get("layout", {})
    if not isinstance(validity, Mapping) or not isinstance(layout, Mapping):
        raise InvalidArgument.field("validity", "validity and layout must be JSON objects")
    try:
        rule = ValidityRule(**validity)
    except TypeError as exc:
        raise InvalidArgument.field("validity", f"unknown or missing rule ({exc})") from None
    return LicenceType(
        type_code=text("type_code"),
        name=text("name"),
        name_en=text("name_en", required=False),
        defining_authority=text("defining_authority"),
        issuing_departments=strings("issuing_departments"),
        holder_code_types=strings("holder_code_types"),
        fields=tuple(specs),
        validity=rule,
        layout=dict(layout),
        document_formats=strings("document_formats") if "document_formats" in data else ("pdf",),
    )


def define_type(
    session: Session, principal: Principal, licence_type: LicenceType, *, replace: bool = False
) -> LicenceType:
    """Add (or with ``replace`` revise) a licence type, audited in the caller's transaction;
    returns the type as stored (with its revision and when it was defined).

    A new type is revision 1; a replaced one gets the next revision, unless the definition is
    unchanged (then nothing is written). Needs the ``admin`` role. Raises
    :class:`InvalidArgument` naming each bad part.
    """
    principal.require_role("admin")
    violations = type_violations(licence_type)
    if violations:
        raise InvalidArgument("invalid licence type", violations)
    now = datetime.now(UTC)
    row = session.get(LicenceTypeRow, licence_type.type_code, with_for_update=True)
    if row is not None and not replace:
        raise AlreadyExists(f"licence type {licence_type.type_code} exists")
    values = _row_values(licence_type)
    if row is None:
        row = LicenceTypeRow(type_code=licence_type.type_code, created_at=now, revision=1)
        session.add(row)
    elif all(getattr(row, key) == value for key, value in values.items()):
        return type_from_row(row)  # the same definition: no new revision
    else:
        row.revision += 1
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = now
    session.flush()
    session.add(
        LicenceTypeRevisionRow(
            type_code=licence_type.type_code,
            revision=row.revision,
            defined_by=principal.actor[:200],
            created_at=now,
            **values,
        )
    )
    session.flush()
    audit.append(
        session,
        actor=principal.actor,
        action="licence.type.define",
        target=licence_type.type_code,
        details={"name": licence_type.name, "replace": replace, "revision": row.revision},
    )
    return type_from_row(row)


def get_type(session: Session, type_code: str, revision: int = 0) -> LicenceType:
    """The licence type with ``type_code`` — its current revision, or ``revision`` (from 1);
    :class:`NotFound` otherwise."""
    if len(type_code) != TYPE_CODE_LENGTH:
        raise InvalidArgument.field("type_code", f"must be {TYPE_CODE_LENGTH} characters")
    if revision < 0:
        raise InvalidArgument.field("revision", "must not be negative")
    row = session.get(LicenceTypeRow, type_code)
    if row is None:
        raise NotFound(f"licence type {type_code} is not in the catalogue")
    if revision == 0 or revision == row.revision:
        return type_from_row(row)
    old = session.get(LicenceTypeRevisionRow, (type_code, revision))
    if old is None:
        raise NotFound(f"licence type {type_code} has no revision {revision}")
    return type_from_row(old)


def list_types(session: Session) -> list[LicenceType]:
    """Every licence type, by type code."""
    rows = session.scalars(select(LicenceTypeRow).order_by(LicenceTypeRow.type_code))
    return [type_from_row(r) for r in rows]


# --- seed ---------------------------------------------------------------------------------------

# Placeholder USCCs with valid GB 32100 check characters (see the module docstring).
SAMR_CODE = "11100000MB0143028R"  # 国家市场监督管理总局 (placeholder)
SCOPSR_CODE = "11100000000019713D"  # 中央机构编制委员会办公室 (placeholder)
EXAMPLE_ISSUER = "11430100MB12345675"  # a city market-regulation bureau (placeholder)

BUSINESS_LICENCE_CODE = SAMR_CODE + "001"
USCC_CERTIFICATE_CODE = SCOPSR_CODE + "001"

_DATE_OR_LONG = r"\d{4}-\d{2}-\d{2}(至(\d{4}-\d{2}-\d{2}|长期))?|长期"


def business_licence(issuers: Sequence[str]) -> LicenceType:
    """营业执照 (business licence, SAMR), with the fields printed on the licence."""
    return LicenceType(
        type_code=BUSINESS_LICENCE_CODE,
        name="营业执照",
        name_en="Business licence",
        defining_authority="国家市场监督管理总局",
        issuing_departments=tuple(issuers),
        holder_code_types=("001",),
        fields=(
            FieldSpec("KZ_TYSHXYDM", "统一社会信用代码", FieldType.USCC, public=True,
                      label_en="Unified social credit code"),
            FieldSpec("KZ_MC", "名称", max_length=200, public=True, label_en="Name"),
            FieldSpec("KZ_LX", "类型", max_length=100, public=True, label_en="Type"),
            FieldSpec("KZ_FDDBR", "法定代表人", max_length=100, public=True,
                      label_en="Legal representative"),
            FieldSpec("KZ_ZCZB", "注册资本", format=r"[0-9.]+(万|亿)?元(人民币)?", max_length=50,
                      label_en="Registered capital"),
            FieldSpec("KZ_CLRQ", "成立日期", FieldType.DATE, public=True,
                      label_en="Date of establishment"),
            FieldSpec("KZ_YYQX", "营业期限", format=_DATE_OR_LONG, max_length=40,
                      label_en="Term of operation"),
            FieldSpec("KZ_ZS", "住所", max_length=300, label_en="Domicile"),
            FieldSpec("KZ_JYFW", "经营范围", max_length=4000, label_en="Business scope"),
            FieldSpec("KZ_DJJG", "登记机关", max_length=200, public=True,
                      label_en="Registration authority"),
        ),
        validity=ValidityRule(default_years=None, max_years=None, long_term_allowed=True),
        layout={
            "page": "A4-landscape",
            "title": "营业执照",
            "rows": [["KZ_TYSHXYDM"], ["KZ_MC", "KZ_ZCZB"], ["KZ_LX", "KZ_CLRQ"],
                     ["KZ_FDDBR", "KZ_YYQX"], ["KZ_JYFW", "KZ_ZS"], ["KZ_DJJG"]],
            "seal": "bottom-right",
            "qr": "top-right",
        },
    )  # fmt: skip


def uscc_certificate(issuers: Sequence[str]) -> LicenceType:
    """统一社会信用代码证书 (for 机关, 事业单位 and other non-enterprise bodies)."""
    return LicenceType(
        type_code=USCC_CERTIFICATE_CODE,
        name="统一社会信用代码证书",
        name_en="Unified social credit code certificate",
        defining_authority="中央机构编制委员会办公室",
        issuing_departments=tuple(issuers),
        holder_code_types=("001",),
        fields=(
            FieldSpec("KZ_TYSHXYDM", "统一社会信用代码", FieldType.USCC, public=True,
                      label_en="Unified social credit code"),
            FieldSpec("KZ_JGMC", "机构名称", max_length=200, public=True,
                      label_en="Name of the institution"),
            FieldSpec("KZ_JGLX", "机构类型", max_length=100, public=True,
                      label_en="Type of institution"),
            FieldSpec("KZ_FZR", "负责人", max_length=100, public=True, label_en="Person in charge"),
            FieldSpec("KZ_JGDZ", "机构地址", max_length=300, label_en="Address"),
            FieldSpec("KZ_BFJG", "颁发机关", max_length=200, public=True,
                      label_en="Issuing authority"),
            FieldSpec("KZ_BZ", "备注", required=False, max_length=500, label_en="Remarks"),
        ),
        validity=ValidityRule(default_years=5, max_years=5, long_term_allowed=False),
        layout={
            "page": "A4-portrait",
            "title": "统一社会信用代码证书",
            "rows": [["KZ_TYSHXYDM"], ["KZ_JGMC"], ["KZ_JGLX"], ["KZ_FZR"], ["KZ_JGDZ"],
                     ["KZ_BFJG"], ["KZ_BZ"]],
            "seal": "bottom-right",
            "qr": "bottom-left",
        },
    )  # fmt: skip


def seed_catalogue(
    session: Session, principal: Principal, issuers: Iterable[str] = (EXAMPLE_ISSUER,)
) -> list[LicenceType]:
    """Define the two seeded types if absent (idempotent); returns the types now present."""
    depts = tuple(issuers)
    for licence_type in (business_licence(depts), uscc_certificate(depts)):
        if session.get(LicenceTypeRow, licence_type.type_code) is None:
            define_type(session, principal, licence_type)
    return list_types(session)
