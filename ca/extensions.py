"""ASN.1 types and builders for the extensions our profiles use beyond asn1crypto's catalogue.

* GM/T 0015-2012 IdentifyCode (1.2.156.10260.4.1.1): ``CHOICE { residenterCardNumber [0]
  PrintableString, militaryOfficerCardNumber [1] UTF8String, passportNumber [2]
  PrintableString }``. We issue EXPLICIT tagging (the standard leaves the style open) and
  accept both when parsing.
* qcStatements (RFC 3739 / ETSI EN 319 412-5) carrying the EN 319 412-1 semantics identifier
  in an ``id-qcs-pkixQCSyntax-v2`` statement.
* The seal id extension (an IA5String under the configured OID arc).
* id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): NULL.
"""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto import core, x509

IDENTIFY_CODE_OID = "1.2.156.10260.4.1.1"
OCSP_NOCHECK_OID = "1.3.6.1.5.5.7.48.1.5"
QC_STATEMENTS_OID = "1.3.6.1.5.5.7.1.3"
QCS_PKIX_SYNTAX_V2_OID = "1.3.6.1.5.5.7.11.2"
SEMANTICS_NATURAL_PERSON = "0.4.0.194121.1.1"
SEMANTICS_LEGAL_PERSON = "0.4.0.194121.1.2"
QC_TYPE_ESEAL = "0.4.0.1862.1.6.2"


class IdentifyCode(core.Choice):  # type: ignore[misc]
    """GM/T 0015 IdentifyCode, EXPLICIT tags."""

    _alternatives = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("residenter_card_number", core.PrintableString, {"explicit": 0}),
        ("military_officer_card_number", core.UTF8String, {"explicit": 1}),
        ("passport_number", core.PrintableString, {"explicit": 2}),
    ]


class IdentifyCodeImplicit(core.Choice):  # type: ignore[misc]
    """GM/T 0015 IdentifyCode as some issuers encode it (IMPLICIT tags); parsing only."""

    _alternatives = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("residenter_card_number", core.PrintableString, {"implicit": 0}),
        ("military_officer_card_number", core.UTF8String, {"implicit": 1}),
        ("passport_number", core.PrintableString, {"implicit": 2}),
    ]


class NameRegistrationAuthorities(core.SequenceOf):  # type: ignore[misc]
    """SEQUENCE OF GeneralName."""

    _child_spec = x509.GeneralName


class SemanticsInformation(core.Sequence):  # type: ignore[misc]
    """RFC 3739 SemanticsInformation."""

    _fields = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("semantics_identifier", core.ObjectIdentifier, {"optional": True}),
        ("name_registration_authorities", NameRegistrationAuthorities, {"optional": True}),
    ]


class QcStatement(core.Sequence):  # type: ignore[misc]
    """RFC 3739 QCStatement (statementInfo kept as ANY)."""

    _fields = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("statement_id", core.ObjectIdentifier),
        ("statement_info", core.Any, {"optional": True}),
    ]


class QcStatements(core.SequenceOf):  # type: ignore[misc]
    """RFC 3739 QCStatements."""

    _child_spec = QcStatement


def identify_code_value(id_number: str) -> bytes:
    """DER of IdentifyCode with the resident ID number (residenterCardNumber, EXPLICIT [0])."""
    encoded: bytes = IdentifyCode(name="residenter_card_number", value=id_number).dump()
    return encoded


def salted_identity_hash(id_number: str, salt: bytes) -> str:
    """Upper-case hex SHA-256 of salt || ID number: a privacy-preserving IdentifyCode value."""
    return hashlib.sha256(salt + id_number.encode("ascii")).hexdigest().upper()


def parse_identify_code(der: bytes) -> str:
    """The residenterCardNumber (or other alternative) of an IdentifyCode, either tag style."""
    for spec in (IdentifyCode, IdentifyCodeImplicit):
        try:
            parsed: Any = spec.load(der)
            return str(parsed.native)
        except (ValueError, TypeError):
            continue
    raise ValueError("not a GM/T 0015 IdentifyCode")


def qc_statements_value(semantics_identifier: str, qc_types: tuple[str, ...] = ()) -> bytes:
    """DER of QCStatements with a pkixQCSyntax-v2 semantics identifier (and optional QcType)."""
    statements = [
        QcStatement(
            {
                "statement_id": QCS_PKIX_SYNTAX_V2_OID,
                "statement_info": SemanticsInformation(
                    {"semantics_identifier": semantics_identifier}
                ),
            }
        )
    ]
    if qc_types:
        statements.append(
            QcStatement(
                {
                    "statement_id": "0.4.0.1862.1.6",
                    "statement_info": core.SequenceOf(
                        [core.ObjectIdentifier(t) for t in qc_types], spec=core.ObjectIdentifier
                    ),
                }
            )
        )
    encoded: bytes = QcStatements(statements).dump()
    return encoded


def seal_id_value(seal_id: str) -> bytes:
    """DER of the seal id extension value (IA5String)."""
    encoded: bytes = core.IA5String(seal_id).dump()
    return encoded


def raw_extension(oid: str, value_der: bytes, *, critical: bool = False) -> x509.Extension:
    """An extension whose value asn1crypto does not know, from its DER."""
    return x509.Extension(
        {"extn_id": oid, "critical": critical, "extn_value": core.ParsableOctetString(value_der)}
    )
