"""Every IdentityService RPC over a real gRPC server, on SQLite and PostgreSQL, incl. errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from govtrust.audit import AuditRecord, verify_chain
from govtrust.db import Database
from govtrust.principal import Principal
from govtrust.v1 import common_pb2, identity_pb2
from hsm import MasterKey
from idp.basedata import import_population
from idp.pii import PiiCodec
from tests.idp.conftest import (
    ADMIN,
    ALLOW_LISTED_USCC,
    NOBODY,
    REGISTRAR,
    VERIFIER,
    GrpcHandle,
    violations,
)
from tests.idp.helpers import resident_id, uscc
from tests.unchanged import unchanged

pb = identity_pb2
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def ref(**kwargs: object) -> common_pb2.IdentityRef:
    return common_pb2.IdentityRef(**kwargs)  # type: ignore[arg-type]


def register_citizen(server: GrpcHandle, n: int, name: str = "张三", phone: str = "") -> pb.Citizen:
    response = server.call(
        "RegisterCitizen",
        pb.RegisterCitizenRequest(name=name, id_number=resident_id(n), phone=phone),
    )
    citizen: pb.Citizen = response.citizen
    return citizen


def register_company(
    server: GrpcHandle, n: int, rep_id: str, name: str = "福州某某有限公司"
) -> pb.LegalPerson:
    response = server.call(
        "RegisterLegalPerson",
        pb.RegisterLegalPersonRequest(uscc=uscc(n), name=name, legal_representative=ref(id=rep_id)),
    )
    lp: pb.LegalPerson = response.legal_person
    return lp


def as_citizen(citizen_id: str) -> Principal:
    return Principal("user", f"u-{citizen_id[-6:]}", frozenset(), citizen_id=citizen_id)


def ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- RegisterCitizen ----------------------------------------------------------------------------


def test_register_citizen(grpc_server: GrpcHandle) -> None:
    citizen = register_citizen(grpc_server, 1, phone="+86 138-1234-5678")
    number = resident_id(1)
    assert citizen.id.startswith("cit_")
    assert citizen.masked_id_number == number[:4] + "*" * 10 + number[-4:]
    assert citizen.masked_phone == "138****5678"
    assert citizen.birth_date == "1980-01-01"
    assert citizen.sex == pb.SEX_MALE
    assert citizen.region_code == "350102"
    assert citizen.status == common_pb2.IDENTITY_STATUS_ACTIVE
    assert citizen.assurance_level == common_pb2.ASSURANCE_LEVEL_1
    assert citizen.assurance_source == pb.ASSURANCE_SOURCE_SELF_REGISTERED
    assert citizen.created_at.seconds > 0


def test_register_citizen_matching_base_data_gets_assurance_2(grpc_server: GrpcHandle) -> None:
    platform = grpc_server.platform
    codec = PiiCodec.from_master_key(platform.master_key)
    report = import_population(
        platform.db, codec, f"name,id_number\n李 四,{resident_id(2)}\n", principal=REGISTRAR
    )
    assert report.imported == 1
    citizen = register_citizen(grpc_server, 2, name="李 四")
    assert citizen.assurance_level == common_pb2.ASSURANCE_LEVEL_2
    assert citizen.assurance_source == pb.ASSURANCE_SOURCE_BASE_DATA
    other = register_citizen(grpc_server, 3, name="王五")
    assert other.assurance_level == common_pb2.ASSURANCE_LEVEL_1


def test_register_citizen_invalid_identifiers(grpc_server: GrpcHandle) -> None:
    good = resident_id(1)
    cases = {
        good[:-1] + ("0" if good[-1] != "0" else "1"): "check digit",
        good[:10] + "1399" + good[14:]: "birth date",
        good[:5] + "A" + good[6:]: "character not allowed",
        good[:-2]: "length",
    }
    for number, reason in cases.items():
        error = grpc_server.fails(
            "RegisterCitizen", pb.RegisterCitizenRequest(name="张三", id_number=number)
        )
        assert error.code() == INVALID
        found = violations(error)
        assert found["id_number"].startswith(reason), (number, found)
        assert number not in (error.details() or "")


def test_register_citizen_reports_every_bad_field(grpc_server: GrpcHandle) -> None:
    error = grpc_server.fails(
        "RegisterCitizen",
        pb.RegisterCitizenRequest(name=" ", id_number="123", phone="12345", email="nope"),
    )
    assert error.code() == INVALID
    assert set(violations(error)) == {"name", "id_number", "phone", "email"}


def test_register_citizen_duplicate_and_roles(grpc_server: GrpcHandle) -> None:
    register_citizen(grpc_server, 1)
    error = grpc_server.fails(
        "RegisterCitizen", pb.RegisterCitizenRequest(name="别人", id_number=resident_id(1).lower())
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    request = pb.RegisterCitizenRequest(name="张三", id_number=resident_id(5))
    assert grpc_server.fails("RegisterCitizen", request, VERIFIER).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert grpc_server.fails("RegisterCitizen", request, None).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )


# --- RegisterLegalPerson ------------------------------------------------------------------------


def test_register_legal_person(grpc_server: GrpcHandle) -> None:
    rep = register_citizen(grpc_server, 1)
    lp = register_company(grpc_server, 1, rep.id)
    assert lp.uscc == uscc(1)
    assert lp.kind == pb.LEGAL_PERSON_KIND_ENTERPRISE
    assert lp.registration_authority_code == "9"
    assert lp.institution_type_code == "1"
    assert lp.region_code == "350100"
    assert not lp.uscc_allow_listed
    assert lp.legal_representative.id == rep.id
    assert lp.legal_representative.masked_identifier == rep.masked_id_number
    assert lp.assurance_level == common_pb2.ASSURANCE_LEVEL_1


def test_register_legal_person_allow_listed_and_by_resident_number(grpc_server: GrpcHandle) -> None:
    register_citizen(grpc_server, 1)
    response = grpc_server.call(
        "RegisterLegalPerson",
        pb.RegisterLegalPersonRequest(
            uscc=ALLOW_LISTED_USCC,
            name="厦门某公司",
            legal_representative=ref(resident_id_number=resident_id(1)),
        ),
    )
    assert response.legal_person.uscc_allow_listed


def test_register_legal_person_errors(grpc_server: GrpcHandle) -> None:
    rep = register_citizen(grpc_server, 1)
    bad = uscc(2)[:-1] + ("0" if uscc(2)[-1] != "0" else "1")
    error = grpc_server.fails(
        "RegisterLegalPerson",
        pb.RegisterLegalPersonRequest(uscc=bad, name="x", legal_representative=ref(id=rep.id)),
    )
    assert error.code() == INVALID
    assert violations(error)["uscc"].startswith("check digit")
    error = grpc_server.fails(
        "RegisterLegalPerson",
        pb.RegisterLegalPersonRequest(uscc="91350100M000100I43", name="x"),
    )
    assert violations(error) == {
        "uscc": violations(error)["uscc"],
        "legal_representative": "required",
    }
    assert violations(error)["uscc"].startswith("character not allowed")
    missing = pb.RegisterLegalPersonRequest(
        uscc=uscc(3), name="x", legal_representative=ref(id="cit_nope")
    )
    assert grpc_server.fails("RegisterLegalPerson", missing).code() == grpc.StatusCode.NOT_FOUND
    register_company(grpc_server, 4, rep.id)
    duplicate = pb.RegisterLegalPersonRequest(
        uscc=uscc(4), name="again", legal_representative=ref(id=rep.id)
    )
    assert grpc_server.fails("RegisterLegalPerson", duplicate).code() == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    grpc_server.call(
        "UpdateIdentityStatus",
        pb.UpdateIdentityStatusRequest(
            identity=ref(id=rep.id), action=pb.IDENTITY_STATUS_ACTION_SUSPEND, reason="lost card"
        ),
    )
    suspended_rep = pb.RegisterLegalPersonRequest(
        uscc=uscc(5), name="x", legal_representative=ref(id=rep.id)
    )
    assert grpc_server.fails("RegisterLegalPerson", suspended_rep).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


# --- RegisterStaff / GetStaff -------------------------------------------------------------------


def staff_request(**overrides: object) -> pb.RegisterStaffRequest:
    fields: dict[str, object] = {
        "name": "赵六",
        "department_code": "FZ-SCJG",
        "department_name": "市场监督管理局",
        "employee_number": "E001",
        "roles": ["seal-reviewer", "licence-issuer:FZ-SCJG"],
        "system_accounts": [
            pb.SystemAccount(system_id="oa", mode=pb.CONNECTION_MODE_UNIFIED),
            pb.SystemAccount(
                system_id="approval", mode=pb.CONNECTION_MODE_MAPPED, local_account_id="zhao6"
            ),
        ],
        "phone": "13900001111",
    }
    fields.update(overrides)
    return pb.RegisterStaffRequest(**fields)  # type: ignore[arg-type]


def test_register_and_get_staff(grpc_server: GrpcHandle) -> None:
    citizen = register_citizen(grpc_server, 1)
    staff = grpc_server.call(
        "RegisterStaff", staff_request(citizen=ref(id=citizen.id)), ADMIN
    ).staff
    assert staff.id.startswith("stf_")
    assert list(staff.roles) == ["licence-issuer:FZ-SCJG", "seal-reviewer"]
    assert staff.masked_phone == "139****1111"
    assert staff.citizen.id == citizen.id
    got = grpc_server.call(
        "GetStaff",
        pb.GetStaffRequest(
            staff=ref(staff=common_pb2.StaffKey(department_code="FZ-SCJG", employee_number="E001"))
        ),
        VERIFIER,
    ).staff
    assert got.id == staff.id
    accounts = {a.system_id: (a.mode, a.local_account_id) for a in got.system_accounts}
    assert accounts == {
        "approval": (pb.CONNECTION_MODE_MAPPED, "zhao6"),
        "oa": (pb.CONNECTION_MODE_UNIFIED, ""),
    }
    by_id = grpc_server.call("GetStaff", pb.GetStaffRequest(staff=ref(id=staff.id)), VERIFIER)
    assert by_id.staff.employee_number == "E001"


def test_register_staff_errors(grpc_server: GrpcHandle) -> None:
    grpc_server.call("RegisterStaff", staff_request(), ADMIN)
    assert grpc_server.fails("RegisterStaff", staff_request(), ADMIN).code() == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    taken = staff_request(
        employee_number="E002",
        system_accounts=[
            pb.SystemAccount(
                system_id="approval", mode=pb.CONNECTION_MODE_MAPPED, local_account_id="zhao6"
            )
        ],
    )
    assert grpc_server.fails("RegisterStaff", taken, ADMIN).code() == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    bad = staff_request(
        employee_number="E003",
        roles=["root"],
        system_accounts=[
            pb.SystemAccount(system_id="approval", mode=pb.CONNECTION_MODE_MAPPED),
            pb.SystemAccount(system_id="oa", mode=pb.CONNECTION_MODE_UNIFIED, local_account_id="x"),
        ],
    )
    error = grpc_server.fails("RegisterStaff", bad)
    assert error.code() == INVALID
    assert set(violations(error)) == {
        "roles[0]",
        "system_accounts[0].local_account_id",
        "system_accounts[1].local_account_id",
    }
    unspecified = staff_request(
        employee_number="E004", system_accounts=[pb.SystemAccount(system_id="oa")]
    )
    assert "system_accounts[0].mode" in violations(grpc_server.fails("RegisterStaff", unspecified))
    privileged = staff_request(employee_number="E005", roles=["admin"], system_accounts=[])
    assert grpc_server.fails("RegisterStaff", privileged).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert grpc_server.call("RegisterStaff", privileged, ADMIN).staff.roles == ["admin"]
    missing = pb.GetStaffRequest(
        staff=ref(staff=common_pb2.StaffKey(department_code="FZ-SCJG", employee_number="E999"))
    )
    assert grpc_server.fails("GetStaff", missing, VERIFIER).code() == grpc.StatusCode.NOT_FOUND


def test_a_registrar_gives_no_staff_roles_by_default(grpc_server: GrpcHandle) -> None:
    """#13 item 6: staff roles become token roles, so only an admin gives them (unless the
    registrar_grantable_roles setting lists some); a refused registration stores nothing."""
    escalations = [
        ["ca-operator"],
        ["seal-reviewer"],
        ["seal-maker"],
        ["seal-filing"],
        ["verifier"],
        ["licence-issuer:OTHER-DEPT"],
        ["admin"],
        ["identity-registrar"],
    ]
    for number, roles in enumerate(escalations):
        request = staff_request(employee_number=f"X{number}", roles=roles, system_accounts=[])
        error = grpc_server.fails("RegisterStaff", request)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, roles
        assert "only an admin gives staff roles" in str(error.details())
        key = common_pb2.StaffKey(department_code="FZ-SCJG", employee_number=f"X{number}")
        lookup = pb.GetStaffRequest(staff=ref(staff=key))
        assert grpc_server.fails("GetStaff", lookup, VERIFIER).code() == (grpc.StatusCode.NOT_FOUND)
    plain = staff_request(employee_number="X99", roles=[], system_accounts=[])
    assert list(grpc_server.call("RegisterStaff", plain).staff.roles) == []


# --- GetCitizen / GetLegalPerson ----------------------------------------------------------------


def test_get_citizen(grpc_server: GrpcHandle) -> None:
    citizen = register_citizen(grpc_server, 1, phone="13812345678")
    by_number = grpc_server.call(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(resident_id_number=resident_id(1))), VERIFIER
    ).citizen
    assert by_number.id == citizen.id
    assert by_number.masked_phone == "138****5678"
    own = grpc_server.call(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(id=citizen.id)), as_citizen(citizen.id)
    )
    assert own.citizen.name == "张三"
    denied = grpc_server.fails(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(id=citizen.id)), NOBODY
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    not_found = grpc_server.fails(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(resident_id_number=resident_id(9))), VERIFIER
    )
    assert not_found.code() == grpc.StatusCode.NOT_FOUND
    wrong_kind = grpc_server.fails(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(uscc=uscc(1))), VERIFIER
    )
    assert wrong_kind.code() == INVALID
    assert "citizen.uscc" in violations(wrong_kind)
    empty = grpc_server.fails("GetCitizen", pb.GetCitizenRequest(), VERIFIER)
    assert violations(empty) == {"citizen": "required"}
    bad_number = grpc_server.fails(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(resident_id_number="1234")), VERIFIER
    )
    assert violations(bad_number)["citizen.resident_id_number"].startswith("length")


def test_get_legal_person(grpc_server: GrpcHandle) -> None:
    rep = register_citizen(grpc_server, 1)
    lp = register_company(grpc_server, 1, rep.id)
    got = grpc_server.call(
        "GetLegalPerson", pb.GetLegalPersonRequest(legal_person=ref(uscc=uscc(1))), VERIFIER
    ).legal_person
    assert got.id == lp.id
    assert got.legal_representative.display_name == "张三"
    missing = grpc_server.fails(
        "GetLegalPerson", pb.GetLegalPersonRequest(legal_person=ref(uscc=uscc(2))), VERIFIER
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    citizen_id = grpc_server.fails(
        "GetLegalPerson", pb.GetLegalPersonRequest(legal_person=ref(id=rep.id)), VERIFIER
    )
    assert citizen_id.code() == grpc.StatusCode.NOT_FOUND


# --- SearchIdentities ---------------------------------------------------------------------------


def test_search_identities(grpc_server: GrpcHandle) -> None:
    names = ["张一", "张二", "张三", "李四", "Zhang Wei"]
    citizens = [register_citizen(grpc_server, i, name=n) for i, n in enumerate(names)]
    register_company(grpc_server, 1, citizens[0].id, name="张氏集团")
    grpc_server.call("RegisterStaff", staff_request(name="张科长"), ADMIN)
    seen: list[str] = []
    token = ""
    while True:
        page = grpc_server.call(
            "SearchIdentities",
            pb.SearchIdentitiesRequest(name_prefix="张", page_size=2, page_token=token),
            VERIFIER,
        )
        assert len(page.identities) <= 2
        seen.extend(i.display_name for i in page.identities)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(["张一", "张二", "张三", "张氏集团", "张科长"])
    assert len(seen) == len(set(seen))
    only_companies = grpc_server.call(
        "SearchIdentities",
        pb.SearchIdentitiesRequest(kind=common_pb2.IDENTITY_KIND_LEGAL_PERSON),
        VERIFIER,
    )
    assert [i.display_name for i in only_companies.identities] == ["张氏集团"]
    assert only_companies.identities[0].masked_identifier == uscc(1)
    latin = grpc_server.call(
        "SearchIdentities", pb.SearchIdentitiesRequest(name_prefix="zhang"), VERIFIER
    )
    assert [i.display_name for i in latin.identities] == ["Zhang Wei"]
    staff = grpc_server.call(
        "SearchIdentities", pb.SearchIdentitiesRequest(department_code="FZ-SCJG"), VERIFIER
    )
    assert [i.masked_identifier for i in staff.identities] == ["FZ-SCJG/E001"]
    grpc_server.call(
        "UpdateIdentityStatus",
        pb.UpdateIdentityStatusRequest(
            identity=ref(id=citizens[3].id), action=pb.IDENTITY_STATUS_ACTION_SUSPEND, reason="x"
        ),
    )
    suspended = grpc_server.call(
        "SearchIdentities",
        pb.SearchIdentitiesRequest(status=common_pb2.IDENTITY_STATUS_SUSPENDED),
        VERIFIER,
    )
    assert [i.id for i in suspended.identities] == [citizens[3].id]
    first = grpc_server.call(
        "SearchIdentities", pb.SearchIdentitiesRequest(name_prefix="张", page_size=1), VERIFIER
    )
    changed_filter = pb.SearchIdentitiesRequest(name_prefix="李", page_token=first.next_page_token)
    assert "page_token" in violations(
        grpc_server.fails("SearchIdentities", changed_filter, VERIFIER)
    )
    garbage = pb.SearchIdentitiesRequest(page_token="not-a-token")
    assert "page_token" in violations(grpc_server.fails("SearchIdentities", garbage, VERIFIER))
    negative = pb.SearchIdentitiesRequest(page_size=-1)
    assert "page_size" in violations(grpc_server.fails("SearchIdentities", negative, VERIFIER))
    assert grpc_server.fails("SearchIdentities", pb.SearchIdentitiesRequest(), NOBODY).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )


# --- UpdateIdentityStatus -----------------------------------------------------------------------


def test_update_identity_status(grpc_server: GrpcHandle) -> None:
    citizen = register_citizen(grpc_server, 1)

    def change(
        action: pb.IdentityStatusAction.ValueType, reason: str = "per application"
    ) -> pb.UpdateIdentityStatusResponse:
        request = pb.UpdateIdentityStatusRequest(
            identity=ref(resident_id_number=resident_id(1)), action=action, reason=reason
        )
        response: pb.UpdateIdentityStatusResponse = grpc_server.call(
            "UpdateIdentityStatus", request
        )
        return response

    assert change(pb.IDENTITY_STATUS_ACTION_SUSPEND).identity.status == (
        common_pb2.IDENTITY_STATUS_SUSPENDED
    )
    got = grpc_server.call(
        "GetCitizen", pb.GetCitizenRequest(citizen=ref(id=citizen.id)), VERIFIER
    ).citizen
    assert got.status_reason == "per application"
    assert change(pb.IDENTITY_STATUS_ACTION_REINSTATE).identity.status == (
        common_pb2.IDENTITY_STATUS_ACTIVE
    )
    illegal = pb.UpdateIdentityStatusRequest(
        identity=ref(id=citizen.id), action=pb.IDENTITY_STATUS_ACTION_REINSTATE, reason="x"
    )
    assert grpc_server.fails("UpdateIdentityStatus", illegal).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert change(pb.IDENTITY_STATUS_ACTION_CANCEL).identity.status == (
        common_pb2.IDENTITY_STATUS_CANCELLED
    )
    again = pb.UpdateIdentityStatusRequest(
        identity=ref(id=citizen.id), action=pb.IDENTITY_STATUS_ACTION_CANCEL, reason="x"
    )
    assert grpc_server.fails("UpdateIdentityStatus", again).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    no_reason = pb.UpdateIdentityStatusRequest(
        identity=ref(id=citizen.id), action=pb.IDENTITY_STATUS_ACTION_SUSPEND
    )
    assert violations(grpc_server.fails("UpdateIdentityStatus", no_reason)) == {
        "reason": "required"
    }
    no_action = pb.UpdateIdentityStatusRequest(identity=ref(id=citizen.id), reason="x")
    assert violations(grpc_server.fails("UpdateIdentityStatus", no_action)) == {
        "action": "required"
    }
    missing = pb.UpdateIdentityStatusRequest(
        identity=ref(id="cit_missing"), action=pb.IDENTITY_STATUS_ACTION_SUSPEND, reason="x"
    )
    assert grpc_server.fails("UpdateIdentityStatus", missing).code() == grpc.StatusCode.NOT_FOUND
    assert grpc_server.fails("UpdateIdentityStatus", missing, VERIFIER).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    with grpc_server.platform.db.read() as session:
        assert verify_chain(session).ok
        actions = [r.action for r in session.query(AuditRecord).order_by(AuditRecord.seq)]
    assert actions == [
        "identity.citizen.register",
        "identity.suspend",
        "identity.reinstate",
        "identity.cancel",
    ]


# --- CheckCitizen -------------------------------------------------------------------------------


def test_check_citizen(grpc_server: GrpcHandle) -> None:
    register_citizen(grpc_server, 1, name="张三")

    def check(name: str, number: str) -> pb.CheckCitizenResponse:
        request = pb.CheckCitizenRequest(name=name, id_number=number)
        response: pb.CheckCitizenResponse = grpc_server.call("CheckCitizen", request, VERIFIER)
        return response

    match = check(" 张三 ", resident_id(1))
    assert match.result == pb.CHECK_RESULT_MATCH
    assert match.status == common_pb2.IDENTITY_STATUS_ACTIVE
    assert match.assurance_level == common_pb2.ASSURANCE_LEVEL_1
    mismatch = check("李四", resident_id(1))
    assert mismatch.result == pb.CHECK_RESULT_MISMATCH
    assert mismatch.status == common_pb2.IDENTITY_STATUS_UNSPECIFIED
    assert mismatch.assurance_level == common_pb2.ASSURANCE_LEVEL_UNSPECIFIED
    assert check("张三", resident_id(2)).result == pb.CHECK_RESULT_NOT_FOUND
    bad = grpc_server.fails(
        "CheckCitizen",
        pb.CheckCitizenRequest(name="张三", id_number=resident_id(1)[:-1] + "Y"),
        VERIFIER,
    )
    assert violations(bad)["id_number"].startswith("character not allowed")
    assert (
        grpc_server.fails(
            "CheckCitizen", pb.CheckCitizenRequest(name="张三", id_number=resident_id(1)), NOBODY
        ).code()
        == grpc.StatusCode.PERMISSION_DENIED
    )


# --- agents and CheckLegalPerson ----------------------------------------------------------------


def test_agents_and_check_legal_person(grpc_server: GrpcHandle) -> None:
    rep = register_citizen(grpc_server, 1, name="法人")
    manager = register_citizen(grpc_server, 2, name="经理")
    clerk = register_citizen(grpc_server, 3, name="办事员")
    stranger = register_citizen(grpc_server, 4, name="路人")
    lp = register_company(grpc_server, 1, rep.id, name="福州某某有限公司")

    def grant(agent_id: str, scopes: list[str], by: Principal, **kw: object) -> pb.AgentGrant:
        request = pb.GrantAgentRequest(
            legal_person=ref(uscc=uscc(1)),
            agent=ref(id=agent_id),
            scopes=scopes,
            **kw,  # type: ignore[arg-type]
        )
        response: pb.GrantAgentResponse = grpc_server.call("GrantAgent", request, by)
        return response.grant

    managing = grant(manager.id, ["agent.manage", "seal.use", "licence.apply"], as_citizen(rep.id))
    assert managing.status == common_pb2.GRANT_STATUS_ACTIVE
    assert managing.granted_by.id == rep.id
    assert list(managing.scopes) == ["agent.manage", "licence.apply", "seal.use"]
    # An agent holding agent.manage may grant scopes it holds, not others.
    clerk_grant = grant(clerk.id, ["seal.use"], as_citizen(manager.id))
    assert clerk_grant.granted_by.id == manager.id
    too_much = pb.GrantAgentRequest(
        legal_person=ref(id=lp.id), agent=ref(id=stranger.id), scopes=["certificate.apply"]
    )
    assert grpc_server.fails("GrantAgent", too_much, as_citizen(manager.id)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # Neither representative nor manager: denied.
    assert grpc_server.fails("GrantAgent", too_much, as_citizen(clerk.id)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert grpc_server.fails("GrantAgent", too_much, VERIFIER).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    duplicate = pb.GrantAgentRequest(
        legal_person=ref(id=lp.id), agent=ref(id=clerk.id), scopes=["seal.use"]
    )
    assert grpc_server.fails("GrantAgent", duplicate, as_citizen(rep.id)).code() == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    invalid = pb.GrantAgentRequest(
        legal_person=ref(id=lp.id),
        agent=ref(id=stranger.id),
        scopes=["seal.destroy"],
        valid_from=ts(datetime.now(UTC) + timedelta(days=2)),
        valid_until=ts(datetime.now(UTC) + timedelta(days=1)),
    )
    error = grpc_server.fails("GrantAgent", invalid, as_citizen(rep.id))
    assert set(violations(error)) == {"scopes[0]", "valid_until"}
    no_scopes = pb.GrantAgentRequest(legal_person=ref(id=lp.id), agent=ref(id=stranger.id))
    assert "scopes" in violations(grpc_server.fails("GrantAgent", no_scopes, as_citizen(rep.id)))
    # A registrar records a future grant at the counter: not yet valid.
    future = grant(
        stranger.id,
        ["certificate.apply"],
        REGISTRAR,
        valid_from=ts(datetime.now(UTC) + timedelta(days=1)),
        valid_until=ts(datetime.now(UTC) + timedelta(days=30)),
    )
    assert future.status == common_pb2.GRANT_STATUS_NOT_YET_VALID
    assert not future.HasField("granted_by")

    def check(
        number: str, scope: str = "", name: str = "福州某某有限公司"
    ) -> pb.CheckLegalPersonResponse:
        request = pb.CheckLegalPersonRequest(
            uscc=uscc(1), name=name, citizen_id_number=number, scope=scope
        )
        response: pb.CheckLegalPersonResponse = grpc_server.call(
            "CheckLegalPerson", request, VERIFIER
        )
        return response

    by_rep = check(resident_id(1))
    assert by_rep.result == pb.CHECK_RESULT_MATCH
    assert by_rep.citizen_is_legal_representative
    assert not by_rep.citizen_is_agent
    assert check(resident_id(3), "seal.use").citizen_is_agent
    assert not check(resident_id(3), "licence.apply").citizen_is_agent
    assert check(resident_id(3)).citizen_is_agent
    assert not check(resident_id(4)).citizen_is_agent  # grant not yet valid
    assert not check(resident_id(9)).citizen_is_agent  # not registered
    assert check("").result == pb.CHECK_RESULT_MATCH
    assert check("", name="别的公司").result == pb.CHECK_RESULT_MISMATCH
    not_found = grpc_server.call(
        "CheckLegalPerson", pb.CheckLegalPersonRequest(uscc=uscc(7), name="x"), VERIFIER
    )
    assert not_found.result == pb.CHECK_RESULT_NOT_FOUND
    bad = pb.CheckLegalPersonRequest(
        uscc=uscc(1)[:-1] + "I", name="x", citizen_id_number="123", scope="nope"
    )
    assert set(violations(grpc_server.fails("CheckLegalPerson", bad, VERIFIER))) == {
        "uscc",
        "citizen_id_number",
        "scope",
    }
    assert (
        grpc_server.fails(
            "CheckLegalPerson", pb.CheckLegalPersonRequest(uscc=uscc(1), name="x"), NOBODY
        ).code()
        == grpc.StatusCode.PERMISSION_DENIED
    )

    # ListAgents: by legal person (newest first), by agent, by scope, paged.
    listed = grpc_server.call(
        "ListAgents", pb.ListAgentsRequest(legal_person=ref(id=lp.id)), VERIFIER
    )
    assert [g.id for g in listed.grants] == [clerk_grant.id, managing.id]
    everything = grpc_server.call(
        "ListAgents",
        pb.ListAgentsRequest(legal_person=ref(id=lp.id), include_inactive=True, page_size=2),
        as_citizen(rep.id),
    )
    assert [g.id for g in everything.grants] == [future.id, clerk_grant.id]
    rest = grpc_server.call(
        "ListAgents",
        pb.ListAgentsRequest(
            legal_person=ref(id=lp.id),
            include_inactive=True,
            page_size=2,
            page_token=everything.next_page_token,
        ),
        as_citizen(rep.id),
    )
    assert [g.id for g in rest.grants] == [managing.id]
    assert rest.next_page_token == ""
    by_scope = grpc_server.call(
        "ListAgents",
        pb.ListAgentsRequest(legal_person=ref(id=lp.id), scope="licence.apply"),
        VERIFIER,
    )
    assert [g.id for g in by_scope.grants] == [managing.id]
    own = grpc_server.call(
        "ListAgents", pb.ListAgentsRequest(agent=ref(id=clerk.id)), as_citizen(clerk.id)
    )
    assert [g.legal_person.id for g in own.grants] == [lp.id]
    assert "legal_person" in violations(grpc_server.fails("ListAgents", pb.ListAgentsRequest()))
    snoop = pb.ListAgentsRequest(legal_person=ref(id=lp.id))
    assert grpc_server.fails("ListAgents", snoop, as_citizen(stranger.id)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )

    # RevokeAgent: stranger denied, manager may, twice is a precondition failure.
    revoke = pb.RevokeAgentRequest(grant_id=clerk_grant.id, reason="left the company")
    foreign = grpc_server.fails("RevokeAgent", revoke, as_citizen(stranger.id))
    assert foreign.code() == grpc.StatusCode.PERMISSION_DENIED
    # an unknown id is refused to the stranger exactly like a foreign one (#13 item 7)
    unknown = grpc_server.fails(
        "RevokeAgent",
        pb.RevokeAgentRequest(grant_id="agt_missing", reason="x"),
        as_citizen(stranger.id),
    )
    assert unknown.code() == grpc.StatusCode.PERMISSION_DENIED
    assert str(unknown.details()).replace("agt_missing", "<id>") == str(foreign.details()).replace(
        clerk_grant.id, "<id>"
    )
    still = grpc_server.call(
        "ListAgents", pb.ListAgentsRequest(agent=ref(id=clerk.id)), as_citizen(clerk.id)
    )
    assert [g.id for g in still.grants] == [clerk_grant.id]  # the refusal revoked nothing
    revoked = grpc_server.call("RevokeAgent", revoke, as_citizen(manager.id)).grant
    assert revoked.status == common_pb2.GRANT_STATUS_REVOKED
    assert revoked.revoked_by.id == manager.id
    assert revoked.revoke_reason == "left the company"
    assert grpc_server.fails("RevokeAgent", revoke, as_citizen(rep.id)).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert not check(resident_id(3), "seal.use").citizen_is_agent
    missing = pb.RevokeAgentRequest(grant_id="agt_missing", reason="x")
    assert grpc_server.fails("RevokeAgent", missing).code() == grpc.StatusCode.NOT_FOUND
    no_reason = pb.RevokeAgentRequest(grant_id=managing.id)
    assert violations(grpc_server.fails("RevokeAgent", no_reason)) == {"reason": "required"}
    # The agent may renounce its own grant.
    renounced = grpc_server.call(
        "RevokeAgent",
        pb.RevokeAgentRequest(grant_id=future.id, reason="declined"),
        as_citizen(stranger.id),
    ).grant
    assert renounced.revoked_by.id == stranger.id

    # Suspending the legal person blocks new grants; cancelling revokes the rest.
    def set_status(action: int) -> None:
        grpc_server.call(
            "UpdateIdentityStatus",
            pb.UpdateIdentityStatusRequest(identity=ref(uscc=uscc(1)), action=action, reason="r"),  # type: ignore[arg-type]
        )

    set_status(pb.IDENTITY_STATUS_ACTION_SUSPEND)
    blocked = pb.GrantAgentRequest(
        legal_person=ref(id=lp.id), agent=ref(id=clerk.id), scopes=["seal.use"]
    )
    assert grpc_server.fails("GrantAgent", blocked, as_citizen(rep.id)).code() == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert not check(resident_id(2), "seal.use").citizen_is_agent
    set_status(pb.IDENTITY_STATUS_ACTION_CANCEL)
    after = grpc_server.call(
        "ListAgents",
        pb.ListAgentsRequest(legal_person=ref(id=lp.id), include_inactive=True),
        VERIFIER,
    )
    assert {g.status for g in after.grants} == {common_pb2.GRANT_STATUS_REVOKED}


def test_expired_grant_is_not_active(grpc_server: GrpcHandle) -> None:
    rep = register_citizen(grpc_server, 1)
    agent = register_citizen(grpc_server, 2)
    register_company(grpc_server, 1, rep.id)
    past = pb.GrantAgentRequest(
        legal_person=ref(uscc=uscc(1)),
        agent=ref(id=agent.id),
        scopes=["seal.use"],
        valid_from=ts(datetime.now(UTC) - timedelta(days=10)),
        valid_until=ts(datetime.now(UTC) - timedelta(days=1)),
    )
    assert "valid_until" in violations(grpc_server.fails("GrantAgent", past, REGISTRAR))


def test_a_registrar_gives_only_allow_listed_roles(
    database: Database, master_key: MasterKey
) -> None:
    import pytest

    from govtrust.errors import PermissionDenied
    from idp.registry import IdentityRegistry
    from idp.types import IdentityKind

    registry = IdentityRegistry(
        database,
        PiiCodec.from_master_key(master_key),
        # admin can never be delegated, even when listed
        registrar_grantable_roles=frozenset({"verifier", "admin"}),
    )

    def register(number: str, roles: list[str]) -> object:
        return registry.register_staff(
            REGISTRAR,
            name="赵六",
            department_code="FZ-SCJG",
            department_name="",
            employee_number=number,
            roles=roles,
        )

    assert register("A1", ["verifier"]).roles == ("verifier",)  # type: ignore[attr-defined]
    for number, roles in (("A2", ["verifier", "ca-operator"]), ("A3", ["admin"])):
        with (
            unchanged(database),
            pytest.raises(PermissionDenied, match="a registrar may give: verifier"),
        ):
            register(number, roles)
    found = registry.search(REGISTRAR, kind=IdentityKind.STAFF).items
    assert [s.masked_identifier for s in found] == ["FZ-SCJG/A1"]  # nothing else was stored
