"""Service identities over a real gRPC server, on SQLite and PostgreSQL: admin-only, validated
roles (never ``admin``), audited changes, paging, and the ``govtrust service`` CLI.

How a service certificate maps to these roles over TLS is in tests/server/test_service_mtls.py.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from govtrust.audit import AuditRecord, verify_chain
from govtrust.cli import main
from govtrust.principal import Principal
from govtrust.v1 import identity_pb2
from idp.models import ServiceIdentityRow
from tests.idp.conftest import ADMIN, REGISTRAR, GrpcHandle, violations
from tests.unchanged import unchanged

pb = identity_pb2
ACTIVE = pb.SERVICE_IDENTITY_STATUS_ACTIVE
DISABLED = pb.SERVICE_IDENTITY_STATUS_DISABLED


def _rows(server: GrpcHandle) -> dict[str, tuple[str, str]]:
    with server.platform.db.read() as session:
        return {r.name: (r.roles, r.status) for r in session.query(ServiceIdentityRow)}


def _audit(server: GrpcHandle) -> list[tuple[str, str, dict[str, Any]]]:
    with server.platform.db.read() as session:
        assert verify_chain(session).ok
        return [
            (r.action, r.actor, json.loads(r.details))
            for r in session.query(AuditRecord).order_by(AuditRecord.seq)
        ]


def _register(server: GrpcHandle, name: str, *roles: str) -> pb.ServiceIdentity:
    response = server.call(
        "RegisterServiceIdentity",
        pb.RegisterServiceIdentityRequest(name=name, roles=list(roles)),
        ADMIN,
    )
    identity: pb.ServiceIdentity = response.service_identity
    return identity


def test_admin_registers_a_service_identity_audited(grpc_server: GrpcHandle) -> None:
    identity = _register(grpc_server, "tax.portal", "verifier", "licence-issuer:tax", "verifier")
    assert identity.name == "tax.portal"
    assert list(identity.roles) == ["licence-issuer:tax", "verifier"]
    assert identity.status == ACTIVE
    assert identity.created_by == identity.updated_by == ADMIN.actor
    assert identity.created_at.seconds > 0
    assert _rows(grpc_server) == {"tax.portal": ("licence-issuer:tax verifier", "active")}
    assert _audit(grpc_server) == [
        (
            "identity.service.register",
            ADMIN.actor,
            {"roles": ["licence-issuer:tax", "verifier"]},
        )
    ]
    got = grpc_server.call(
        "GetServiceIdentity", pb.GetServiceIdentityRequest(name="tax.portal"), ADMIN
    )
    assert got.service_identity == identity


@pytest.mark.parametrize(
    "caller", [REGISTRAR, Principal("service", "bank", frozenset({"verifier"}))]
)
def test_only_an_admin_manages_service_identities(
    grpc_server: GrpcHandle, caller: Principal
) -> None:
    _register(grpc_server, "bank", "verifier")
    calls = [
        (
            "RegisterServiceIdentity",
            pb.RegisterServiceIdentityRequest(name="x", roles=["verifier"]),
        ),
        ("GetServiceIdentity", pb.GetServiceIdentityRequest(name="bank")),
        ("ListServiceIdentities", pb.ListServiceIdentitiesRequest()),
        ("UpdateServiceIdentityRoles", pb.UpdateServiceIdentityRolesRequest(name="bank")),
        ("DisableServiceIdentity", pb.DisableServiceIdentityRequest(name="bank", reason="r")),
        ("EnableServiceIdentity", pb.EnableServiceIdentityRequest(name="bank", reason="r")),
    ]
    with unchanged(grpc_server.platform.db):
        for method, request in calls:
            error = grpc_server.fails(method, request, caller)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, method
            assert f"may not call {method} (needs `admin`)" in (error.details() or ""), method
    assert _audit(grpc_server)  # the chain still verifies


def test_roles_and_names_are_validated(grpc_server: GrpcHandle) -> None:
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("ok", ["admin"], {"roles[0]": "'admin' is not given to services"}),
        ("ok", ["verifier", "superuser"], {"roles[0]": "unknown role 'superuser'"}),
        ("ok", ["licence-issuer:"], {"roles[0]": "unknown role 'licence-issuer:'"}),
        ("-bad name", ["verifier"], {"name": "x"}),
        ("", ["verifier"], {"name": "x"}),
    ]
    for name, roles, expected in cases:
        error = grpc_server.fails(
            "RegisterServiceIdentity",
            pb.RegisterServiceIdentityRequest(name=name, roles=roles),
            ADMIN,
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, roles)
        found = violations(error)
        assert set(found) == set(expected), (name, roles, found)
        for field, text in expected.items():
            if field != "name":
                assert found[field] == text
    _register(grpc_server, "bank", "verifier")
    error = grpc_server.fails(
        "UpdateServiceIdentityRoles",
        pb.UpdateServiceIdentityRolesRequest(name="bank", roles=["verifier", "admin"]),
        ADMIN,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _rows(grpc_server) == {"bank": ("verifier", "active")}
    assert [a for a, _, _ in _audit(grpc_server)] == ["identity.service.register"]


def test_duplicate_and_unknown_names(grpc_server: GrpcHandle) -> None:
    _register(grpc_server, "bank", "verifier")
    error = grpc_server.fails(
        "RegisterServiceIdentity",
        pb.RegisterServiceIdentityRequest(name="bank", roles=["ca-operator"]),
        ADMIN,
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    for method, request in (
        ("GetServiceIdentity", pb.GetServiceIdentityRequest(name="nobody")),
        ("UpdateServiceIdentityRoles", pb.UpdateServiceIdentityRolesRequest(name="nobody")),
        ("DisableServiceIdentity", pb.DisableServiceIdentityRequest(name="nobody", reason="r")),
    ):
        assert grpc_server.fails(method, request, ADMIN).code() == grpc.StatusCode.NOT_FOUND
    assert _rows(grpc_server) == {"bank": ("verifier", "active")}
    assert len(_audit(grpc_server)) == 1


def test_roles_change_disable_enable_audited(grpc_server: GrpcHandle) -> None:
    _register(grpc_server, "bank", "verifier")
    updated = grpc_server.call(
        "UpdateServiceIdentityRoles",
        pb.UpdateServiceIdentityRolesRequest(name="bank", roles=["seal-filing", "verifier"]),
        ADMIN,
    ).service_identity
    assert list(updated.roles) == ["seal-filing", "verifier"]

    error = grpc_server.fails(
        "DisableServiceIdentity", pb.DisableServiceIdentityRequest(name="bank", reason=" "), ADMIN
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == {"reason": "required"}
    disabled = grpc_server.call(
        "DisableServiceIdentity",
        pb.DisableServiceIdentityRequest(name="bank", reason="contract ended"),
        ADMIN,
    ).service_identity
    assert (disabled.status, disabled.status_reason) == (DISABLED, "contract ended")
    again = grpc_server.fails(
        "DisableServiceIdentity", pb.DisableServiceIdentityRequest(name="bank", reason="x"), ADMIN
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    enabled = grpc_server.call(
        "EnableServiceIdentity",
        pb.EnableServiceIdentityRequest(name="bank", reason="renewed"),
        ADMIN,
    ).service_identity
    assert enabled.status == ACTIVE
    assert list(enabled.roles) == ["seal-filing", "verifier"]
    assert [(a, d) for a, _, d in _audit(grpc_server)][1:] == [
        (
            "identity.service.roles",
            {"roles_before": ["verifier"], "roles": ["seal-filing", "verifier"]},
        ),
        (
            "identity.service.disable",
            {"status_before": "active", "status": "disabled", "reason": "contract ended"},
        ),
        (
            "identity.service.enable",
            {"status_before": "disabled", "status": "active", "reason": "renewed"},
        ),
    ]


def test_list_is_paged_and_filters_disabled(grpc_server: GrpcHandle) -> None:
    for name in ("c-sys", "a-sys", "b-sys"):
        _register(grpc_server, name, "verifier")
    grpc_server.call(
        "DisableServiceIdentity", pb.DisableServiceIdentityRequest(name="b-sys", reason="r"), ADMIN
    )
    names: list[str] = []
    token = ""
    while True:
        page = grpc_server.call(
            "ListServiceIdentities",
            pb.ListServiceIdentitiesRequest(page_size=1, page_token=token),
            ADMIN,
        )
        assert len(page.service_identities) <= 1
        names += [i.name for i in page.service_identities]
        token = page.next_page_token
        if not token:
            break
    assert names == ["a-sys", "b-sys", "c-sys"]
    active = grpc_server.call(
        "ListServiceIdentities", pb.ListServiceIdentitiesRequest(active_only=True), ADMIN
    )
    assert [i.name for i in active.service_identities] == ["a-sys", "c-sys"]


def test_cli(grpc_server: GrpcHandle, capsys: pytest.CaptureFixture[str]) -> None:
    def argv(*args: str) -> list[str]:
        ((_, bearer),) = grpc_server.metadata(ADMIN)
        token = bearer.removeprefix("Bearer ")
        return ["service", *args, "--server", grpc_server.address, f"--token={token}"]

    def run(*args: str) -> str:
        assert main(argv(*args)) == 0
        return capsys.readouterr().out

    assert run("register", "bank", "--role", "verifier") == "bank\tactive\tverifier\n"
    both = "seal-filing,verifier"
    assert run("roles", "bank", "--role", "verifier", "--role", "seal-filing") == (
        f"bank\tactive\t{both}\n"
    )
    assert run("disable", "bank", "--reason", "audit") == f"bank\tdisabled\t{both}\treason=audit\n"
    assert run("list", "--active-only") == ""
    assert run("enable", "bank", "--reason", "ok") == f"bank\tactive\t{both}\treason=ok\n"
    assert run("show", "bank") == f"bank\tactive\t{both}\treason=ok\n"
    assert run("list") == f"bank\tactive\t{both}\treason=ok\n"
    # a refusal exits non-zero with the status code and the reason, and changes nothing
    with (
        unchanged(grpc_server.platform.db, None, grpc_server.platform.settings.data_dir),
        pytest.raises(SystemExit) as exit_info,
    ):
        main(argv("register", "ops", "--role", "admin"))
    assert exit_info.value.code == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert set(_rows(grpc_server)) == {"bank"}
