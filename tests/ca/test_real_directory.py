"""CA issuance against the real identity registry (issue #23 item 5): the subject directory is
:class:`idp.ca_directory.RegistryDirectory` over a registry holding the people, as the server
wires it, instead of the in-memory stand-in the other CA tests use. Subjects come from the
registry (decrypted there), by registry id and by number; inactive subjects and applicants who
hold no ``certificate.apply`` are refused, and a refusal issues nothing. SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509
from sqlalchemy import func, select

from ca.extensions import IDENTIFY_CODE_OID, parse_identify_code
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from ca.models import CaCertificate
from govtrust.errors import FailedPrecondition, NotFound
from tests.ca.conftest import (
    CITIZEN_ID_NUMBER,
    OPERATOR,
    USCC,
    RegistryCa,
    assert_verifies_and_lints,
    make_csr,
    write_chain,
)
from tests.unchanged import unchanged


def _attrs(der: bytes) -> dict[str, str]:
    cert = x509.Certificate.load(der)
    return {k: str(v) for k, v in cert.subject.native.items()}


def _issued(ca: RegistryCa) -> int:
    with ca.registry.db.read() as session:
        return session.scalar(select(func.count()).select_from(CaCertificate)) or 0


def test_citizen_legal_person_and_service_certificates_verify_and_lint_clean(
    registry_ca: RegistryCa, tmp_path: Path
) -> None:
    authority = registry_ca.authority
    operator = OPERATOR.__class__(
        OPERATOR.kind, OPERATOR.subject, OPERATOR.roles, citizen_id=registry_ca.rep_id
    )
    chain = write_chain(authority, tmp_path / "chain")
    subjects = {
        "citizen": SubjectSpec(identity=registry_ca.rep_id),
        "legal-person": SubjectSpec(identity=USCC),
        "service": SubjectSpec(service=ServiceSubject("bizsys-01", ("approval.example.gov.cn",))),
    }
    for profile, subject in subjects.items():
        issued = authority.issue(operator, IssueRequest(profile, subject, csr=make_csr()))
        assert_verifies_and_lints(chain, tmp_path, profile, issued.certificate.der)


@pytest.mark.parametrize("by", ["registry id", "resident ID number"])
def test_the_subject_comes_from_the_registry_not_the_csr(registry_ca: RegistryCa, by: str) -> None:
    ref = registry_ca.rep_id if by == "registry id" else CITIZEN_ID_NUMBER
    issued = registry_ca.authority.issue(
        OPERATOR, IssueRequest("citizen", SubjectSpec(identity=ref), csr=make_csr(cn="Mallory"))
    )
    attrs = _attrs(issued.certificate.der)
    assert attrs["common_name"] == "张三"
    assert attrs["serial_number"] == f"IDCCN-{CITIZEN_ID_NUMBER}"
    assert attrs["surname"] == "张" and attrs["given_name"] == "三"
    assert issued.certificate.identity_id == registry_ca.rep_id
    cert = x509.Certificate.load(issued.certificate.der)
    extension = next(
        e for e in cert["tbs_certificate"]["extensions"] if e["extn_id"].dotted == IDENTIFY_CODE_OID
    )
    assert parse_identify_code(extension["extn_value"].contents) == CITIZEN_ID_NUMBER


def test_a_compound_surname_from_the_registry(registry_ca: RegistryCa) -> None:
    issued = registry_ca.authority.issue(
        OPERATOR,
        IssueRequest("citizen", SubjectSpec(identity=registry_ca.ouyang_id), csr=make_csr()),
    )
    attrs = _attrs(issued.certificate.der)
    assert attrs["common_name"] == "欧阳修"
    assert attrs["surname"] + attrs["given_name"] == "欧阳修"


@pytest.mark.parametrize("applicant", ["representative", "agent with certificate.apply"])
def test_a_legal_person_certificate_for_an_authorised_applicant(
    registry_ca: RegistryCa, applicant: str
) -> None:
    person = registry_ca.rep_id if applicant == "representative" else registry_ca.agent_id
    issued = registry_ca.authority.issue(
        OPERATOR,
        IssueRequest(
            "legal-person", SubjectSpec(identity=USCC), csr=make_csr(cn="Evil"), applicant=person
        ),
    )
    attrs = _attrs(issued.certificate.der)
    assert attrs["organization_identifier"] == f"NTRCN-{USCC}"
    assert attrs["organization_name"] == "福州示例科技有限公司"


def test_refusals_from_the_registry_issue_nothing(registry_ca: RegistryCa) -> None:
    authority = registry_ca.authority
    before = _issued(registry_ca)
    refusals = [
        (IssueRequest("citizen", SubjectSpec(identity=registry_ca.gone_id), csr=make_csr()),
         FailedPrecondition, "not active"),
        (IssueRequest("citizen", SubjectSpec(identity="cit_nobody"), csr=make_csr()),
         NotFound, "no citizen"),
        (IssueRequest("legal-person", SubjectSpec(identity=USCC), csr=make_csr(),
                      applicant=registry_ca.outsider_id),
         FailedPrecondition, "certificate.apply"),
        (IssueRequest("legal-person", SubjectSpec(identity=USCC), csr=make_csr(),
                      applicant=registry_ca.gone_id),
         FailedPrecondition, "not active"),
    ]  # fmt: skip
    for request, error, text in refusals:
        with (
            unchanged(authority.ctx.db, authority.ctx.keystore),
            pytest.raises(error, match=text),
        ):
            authority.issue(OPERATOR, request)
    assert _issued(registry_ca) == before
