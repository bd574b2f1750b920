"""Licences and certificates for the console's self-service tests (HTTP and browser): the
issuing department with its active official seal, the company's business licence (with its
sealed PDF), the agent's own permit (no document), and a stranger citizen in the population
base data (assurance 2) with a password and, on request, a citizen certificate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ca.authority import authority_for
from ca.issuance import IssueRequest as CertRequest
from ca.issuance import SubjectSpec
from govtrust.principal import SYSTEM, Principal
from idp.basedata import import_population
from idp.oidc.factory import provider_for
from idp.types import IdentityRef
from license import catalogue
from license.issuance import IssueRequest
from license.runtime import runtime_for
from tests.console.conftest import PASSWORD, USCC, ConsoleEnv
from tests.license.conftest import ISSUER, active_official_seal
from tests.license.test_catalogue import GOOD_BL
from tests.license.test_production import PERMIT, PERMIT_CODE
from tests.seal.conftest import REGISTRAR, resident_id

DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{ISSUER}"}))
ADMIN = Principal("user", "admin", frozenset({"admin"}))
CA_OPERATOR = Principal("user", "ca-op", frozenset({"ca-operator"}))
VERIFIER = Principal("service", "tax-bureau-system", frozenset({"verifier"}))
STRANGER_NUMBER = resident_id("11010519950101001")


@dataclass(frozen=True)
class Licences:
    """What :func:`issue_licences` issued: the company's business licence (with its PDF) and
    the agent's own permit (no document); a stranger citizen with a password."""

    company_licence: str
    agent_permit: str
    stranger_id: str


def issue_licences(env: ConsoleEnv) -> Licences:
    """The department, its active official seal, and the licences the console shows."""
    platform = env.platform
    with platform.db.transaction() as session:
        catalogue.seed_catalogue(session, SYSTEM)
        catalogue.define_type(session, ADMIN, PERMIT)
    runtime = runtime_for(platform)
    registry = runtime.service.registry
    head = registry.register_citizen(
        REGISTRAR, name="赵局长", id_number=resident_id("11010519700101001")
    )
    dept = registry.register_legal_person(
        REGISTRAR, uscc=ISSUER, name="测试市市场监督管理局",
        legal_representative=IdentityRef(id=head.id),
    )  # fmt: skip
    active_official_seal(
        runtime, Principal("user", "director", frozenset(), citizen_id=head.id), dept.id
    )
    runtime.invalidate_trust_list()
    company = runtime.service.issue(
        DEPT,
        IssueRequest(
            type_code=catalogue.BUSINESS_LICENCE_CODE,
            issuer_code=ISSUER,
            issuer_name="测试市市场监督管理局",
            holder_code_type="001",
            holder_code=USCC,
            fields=GOOD_BL,
            valid_from=date(2015, 6, 1),
        ),
    )
    permit = runtime.service.issue(
        DEPT,
        IssueRequest(
            type_code=PERMIT_CODE,
            issuer_code=ISSUER,
            issuer_name="测试市市场监督管理局",
            holder_code_type="111",
            holder_code=env.agent_number,
            fields={"KZ_XM": "李四", "KZ_SFZH": env.agent_number, "KZ_LB": "食品从业"},
        ),
        document=False,
    )
    # the stranger is in the population base data (assurance 2: a citizen certificate needs it)
    import_population(
        platform.db,
        registry.codec,
        f"name,id_number\n孙八,{STRANGER_NUMBER}\n",
        principal=REGISTRAR,
    )
    stranger = registry.register_citizen(REGISTRAR, name="孙八", id_number=STRANGER_NUMBER)
    provider_for(platform).passwords.set_password(
        REGISTRAR, identity_id=stranger.id, login_name="stranger", password=PASSWORD
    )
    return Licences(company.identifier, permit.identifier, stranger.id)


def stranger_certificate(env: ConsoleEnv, licences: Licences) -> str:
    """A citizen certificate of the stranger (key in the store); its SHA-256 fingerprint."""
    issued = authority_for(env.platform).issue(
        CA_OPERATOR,
        CertRequest(
            profile="citizen",
            subject=SubjectSpec(identity=licences.stranger_id),
            generate_key_algorithm="ec-p256",
        ),
    )
    return str(issued.certificate.fingerprint_sha256)
