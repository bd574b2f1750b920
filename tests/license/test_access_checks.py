"""The holder's views of a licence (both backends): its access grants
(:meth:`LicenceAccess.list_grants`, audited) and who checked it (:meth:`LicenceAccess.checks`:
reads by the issuer or a grantee's code, and the verification service's VerifyLicense matched
by the evidence's SHA-256, from the audit chain through :func:`govtrust.audit.records_about`);
refused to anyone else with nothing changed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from govtrust import audit
from govtrust.errors import NotFound, PermissionDenied
from govtrust.principal import Principal
from license.access import LicenceAccess
from license.identifiers import build_identifier, parse_identifier
from seal.owners import RegistryOwners
from tests.license.test_production import DEPT, Prod, prod  # noqa: F401
from tests.unchanged import unchanged

VERIFIER = Principal("service", "tax-bureau-system", frozenset({"verifier"}))


def _access(p: Prod) -> LicenceAccess:
    return LicenceAccess(p.runtime.service, RegistryOwners(p.runtime.service.registry))


def _verify(p: Prod, form: str, value: str | bytes) -> None:
    from verify.licences import LicenceCheckRequest, verify_licence_check
    from verify.service import context_for

    done = verify_licence_check(
        context_for(p.platform),
        VERIFIER,
        LicenceCheckRequest(form=form, value=value),  # type: ignore[arg-type]
    )
    done.audited.result(timeout=30)


def test_grants_and_who_checked_for_the_holder(prod: Prod) -> None:  # noqa: F811
    access = _access(prod)
    permit = prod.issue_permit()
    other = prod.issue_permit(skip_document=True)
    identifier = permit.identifier
    until = datetime.now(UTC) + timedelta(days=10)
    view, code = access.grant(
        prod.holder, identifier, grantee=None, grantee_name="某某银行", purpose="开户",
        valid_from=None, valid_until=until,
    )  # fmt: skip
    assert [g.id for g in access.list_grants(prod.holder, identifier)] == [view.id]
    assert access.list_grants(prod.holder, other.identifier) == []

    reader = Principal("service", "bank-intake", frozenset())
    access.read(reader, identifier, code, what="document")
    access.read(DEPT, identifier, what="licence")  # the issuing department
    access.read(prod.holder, identifier, what="licence")  # the holder's own read: not a check
    document = access.read(prod.holder, identifier, what="document").licence.document_pdf
    assert document is not None
    _verify(prod, "document", document)
    _verify(prod, "identifier", identifier)
    _verify(prod, "identifier", other.identifier)  # another licence: not this one's check

    checks = access.checks(prod.holder, identifier)
    assert [(c.how, c.role, c.actor) for c in checks] == [
        ("verify", "verifier", VERIFIER.actor),
        ("verify", "verifier", VERIFIER.actor),
        ("read", "issuer", DEPT.actor),
        ("read", "grantee", reader.actor),
    ]
    assert checks[0].evidence_sha256 == hashlib.sha256(identifier.encode()).hexdigest()
    assert checks[1].evidence_sha256 == hashlib.sha256(document).hexdigest()
    assert checks[3].grantee_name == "某某银行" and checks[3].grant_id == view.id
    assert checks[3].evidence == "document"
    assert all(code not in repr(c) for c in checks)
    assert [c.actor for c in access.checks(prod.holder, other.identifier)] == [VERIFIER.actor]
    with prod.platform.db.read() as session:
        listed = audit.records_about(session, [identifier], actions=["licence.access.list"])
    assert [r.details["count"] for r in listed] == [1]


def test_only_the_holder_sees_grants_and_checks(prod: Prod) -> None:  # noqa: F811
    access = _access(prod)
    permit = prod.issue_permit(skip_document=True)
    company = prod.issue(skip_document=True)
    for who in (prod.stranger, DEPT, prod.rep):
        with unchanged(prod.platform.db), pytest.raises(PermissionDenied):
            access.list_grants(who, permit.identifier)
        with unchanged(prod.platform.db), pytest.raises(PermissionDenied):
            access.checks(who, permit.identifier)
    with unchanged(prod.platform.db), pytest.raises(PermissionDenied):
        access.checks(prod.seal_agent, company.identifier)  # seal.use only
    assert access.checks(prod.agent, company.identifier) == []  # licence.apply agent
    unknown = str(next_version(permit.identifier))
    with unchanged(prod.platform.db), pytest.raises(NotFound):
        access.checks(prod.holder, unknown)
    with unchanged(prod.platform.db), pytest.raises(NotFound):
        access.list_grants(prod.holder, unknown)


def next_version(identifier: str) -> str:
    """The identifier of the (not issued) next version of ``identifier``."""
    parts = parse_identifier(identifier, check_uscc=False)
    return str(build_identifier(parts.type_code, parts.issuer_code, parts.serial, 2))


def test_license_service_verify_license_is_recorded_and_listed(prod: Prod) -> None:  # noqa: F811
    """LicenseService.VerifyLicense by an authenticated caller appends ``licence.verify``
    (hashes only) and the holder's "who checked" lists it; the anonymous public check (the
    verifier's plain ``check``) records nothing."""
    from govtrust.v1 import license_pb2
    from license.verification import VERIFY_ACTION, LicenceVerifier

    access = _access(prod)
    permit = prod.issue_permit()
    other = prod.issue_permit(skip_document=True)
    identifier = permit.identifier
    document = access.read(prod.holder, identifier, what="document").licence.document_pdf
    assert document is not None
    department = Principal("service", "social-security-system", frozenset())
    reports = [
        prod.call(
            "VerifyLicense",
            license_pb2.LicenseServiceVerifyLicenseRequest(
                evidence=license_pb2.LicenseEvidence(**evidence)
            ),
            department,
        ).report  # type: ignore[attr-defined]
        for evidence in (
            {"document": document},
            {"identifier": identifier},
            {"identifier": other.identifier},  # another licence: not this one's check
        )
    ]
    pdf_sha = hashlib.sha256(document).hexdigest()
    with prod.platform.db.read() as session:
        recorded = audit.records_about(session, [f"sha256:{pdf_sha}"], actions=[VERIFY_ACTION])
    assert len(recorded) == 1
    record = recorded[0]
    assert record.actor == department.actor and record.outcome == "valid"
    assert record.details == {
        "report_id": reports[0].report_id,
        "verdict": "valid",
        "evidence_kind": "license_document",
        "evidence_sha256": pdf_sha,
    }
    assert identifier not in repr(record.details)  # hashes only

    checks = access.checks(prod.holder, identifier)
    assert [(c.how, c.role, c.actor, c.evidence, c.outcome) for c in checks] == [
        ("verify", "verifier", department.actor, "license_identifier", "valid"),
        ("verify", "verifier", department.actor, "license_document", "valid"),
    ]
    assert checks[0].evidence_sha256 == hashlib.sha256(identifier.encode()).hexdigest()
    assert checks[1].evidence_sha256 == pdf_sha
    assert [c.actor for c in access.checks(prod.holder, other.identifier)] == [department.actor]

    verifier = LicenceVerifier(prod.runtime.service, prod.runtime.roots)
    with unchanged(prod.platform.db):  # the public page's check: no caller, no record
        assert verifier.check("identifier", identifier).check.verdict.value == "valid"
