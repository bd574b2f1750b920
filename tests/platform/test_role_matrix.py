"""Every RPC × every role through a real server's gate (issue #23 item 1).

One ``govtrust serve`` over TLS; each role is a real OIDC client holding it, whose
client_credentials token the server's own token endpoint issues. Every declared RPC is called
with an empty request by every role, by a client without roles and without credentials. The
expected answer is read from the rule table (:data:`govtrust.api.access.RPC_ACCESS`) as data —
its role lists, the ``licence-issuer:*`` wildcard, ``admin`` holding every role but the explicit
ones (``key-recovery``), and the
any-authenticated-caller rows — never by asking the gate's own code: refused by the gate
(PERMISSION_DENIED "… may not call <Method>") exactly when the role is not listed; a service
caller is no person, so a relation column never admits it; a citizen (a real login through
the authorization-code flow) passes wherever the row has one, and the domain checks the
relation next. Unauthenticated calls are
UNAUTHENTICATED everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import grpc
import pytest
from google.protobuf import descriptor as gdescriptor

from govtrust.api.access import RPC_ACCESS
from govtrust.principal import EXPLICIT_ROLES
from govtrust.v1 import certificate_pb2, identity_pb2, license_pb2, seal_pb2, verify_pb2
from tests.idp.helpers import resident_id
from tests.server.real import Metadata, RealServer, bearer, call_raw, real_server
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow

# The roles walked: every role of the security model, a licence issuer of two departments,
# a caller holding no role. ``None``: no credentials at all.
ROLES: dict[str, tuple[str, ...] | None] = {
    "admin": ("admin",),
    "verifier": ("verifier",),
    "licence-issuer:FZ": ("licence-issuer:FZ",),
    "licence-issuer:XM": ("licence-issuer:XM",),
    "seal-reviewer": ("seal-reviewer",),
    "seal-maker": ("seal-maker",),
    "seal-filing": ("seal-filing",),
    "ca-operator": ("ca-operator",),
    "identity-registrar": ("identity-registrar",),
    "key-recovery": ("key-recovery",),
    "no role": (),
    "citizen": (),  # a person (citizen token from the authorization-code flow), no role
    "unauthenticated": None,
}
PERSONS = {"citizen"}


def _methods() -> dict[str, gdescriptor.MethodDescriptor]:
    found = {}
    for module in (certificate_pb2, identity_pb2, license_pb2, seal_pb2, verify_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found[f"/{service.full_name}/{method.name}"] = method
    return found


METHODS = _methods()


def expected_admitted(method: str, roles: tuple[str, ...], person: bool) -> bool:
    """The table's answer for a caller holding ``roles``; a ``person`` (citizen, or acting
    for a legal person) passes the gate wherever the row has a relation column."""
    rule = RPC_ACCESS[method]
    if rule.authenticated:
        return True
    if person and rule.relations:
        return True
    if not rule.roles:  # only relations admit: the caller would have to be a person
        return False
    if "admin" in roles and any(r not in EXPLICIT_ROLES for r in rule.roles):
        return True  # admin holds every role but the explicit ones (key-recovery)
    for listed in rule.roles:
        if listed.endswith("*"):
            if any(r.startswith(listed[:-1]) for r in roles):
                return True
        elif listed in roles:
            return True
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    with real_server(tmp_path_factory.mktemp("role-matrix"), mtls=False) as real:
        yield real


@pytest.fixture(scope="module")
def callers(server: RealServer) -> dict[str, Metadata]:
    return {
        name: ()
        if roles is None
        else bearer(server.citizen_token("矩阵公民", resident_id(300)))
        if name in PERSONS
        else bearer(server.token(roles, name=f"matrix {name}"))
        for name, roles in ROLES.items()
    }


@pytest.fixture(scope="module")
def channel(server: RealServer) -> Iterator[grpc.Channel]:
    with server.channel() as ch:
        yield ch


def test_the_matrix_covers_every_declared_rpc() -> None:
    assert set(METHODS) == set(RPC_ACCESS)
    assert len(METHODS) * len(ROLES) == COMBINATIONS


COMBINATIONS = len(RPC_ACCESS) * len(ROLES)


@pytest.mark.parametrize("method", sorted(RPC_ACCESS))
def test_every_role_gets_the_documented_answer(
    method: str, server: RealServer, channel: grpc.Channel, callers: dict[str, Metadata]
) -> None:
    name = method.rsplit("/", 1)[-1]
    wrong: list[str] = []

    def answer(caller: str) -> tuple[grpc.StatusCode, str]:
        try:
            call_raw(channel, METHODS[method], b"", callers[caller])
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            call = cast(grpc.Call, error)
            return call.code(), call.details() or ""

    admitted = {
        caller: roles is not None and expected_admitted(method, roles, caller in PERSONS)
        for caller, roles in ROLES.items()
    }
    # The callers the gate refuses (or that have no credentials) first, all under one check
    # that they changed nothing; then the admitted ones, whose empty request is the domain's to
    # answer (and may rightly store something).
    order = sorted(ROLES, key=lambda caller: admitted[caller])
    answers: dict[str, tuple[grpc.StatusCode, str]] = {}
    with unchanged(server.platform.db, server.platform.keystore):
        for caller in (c for c in order if not admitted[c]):
            answers[caller] = answer(caller)
    for caller in (c for c in order if admitted[c]):
        answers[caller] = answer(caller)
    for caller, roles in ROLES.items():
        code, details = answers[caller]
        if roles is None:
            if code != grpc.StatusCode.UNAUTHENTICATED:
                wrong.append(f"{caller}: {code} {details!r}, expected UNAUTHENTICATED")
            continue
        refused_by_gate = (
            code == grpc.StatusCode.PERMISSION_DENIED and f"may not call {name} " in details
        )
        if code == grpc.StatusCode.UNAUTHENTICATED or refused_by_gate == admitted[caller]:
            expected = "admitted past the gate" if admitted[caller] else "refused by the gate"
            wrong.append(f"{caller}: {code} {details!r}, expected {expected}")
    assert not wrong, f"{method}:\n" + "\n".join(wrong)
