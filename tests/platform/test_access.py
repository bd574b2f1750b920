"""The RPC access rules (``govtrust.api.access.RPC_ACCESS``): declared for every RPC, checked
by the gate before the servicer, and rendered into docs/security.md (which must match)."""

from __future__ import annotations

from pathlib import Path

import pytest

from govtrust.api.access import RPC_ACCESS, with_role_tables
from govtrust.errors import PermissionDenied
from govtrust.principal import LOCAL_ADMIN, Principal
from govtrust.rpc.access import gate
from govtrust.server.services import SERVICES
from govtrust.v1 import certificate_pb2, identity_pb2, license_pb2, seal_pb2, verify_pb2

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
NOBODY = Principal("service", "nobody", frozenset())
CITIZEN = Principal("user", "citizen", frozenset(), citizen_id="cit_1")
AUTHORISE = gate(RPC_ACCESS)


def _methods() -> set[str]:
    found = set()
    for module in (certificate_pb2, identity_pb2, license_pb2, seal_pb2, verify_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            found |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return found


def test_every_rpc_has_exactly_one_declared_rule() -> None:
    methods = _methods()
    assert {s.name for s in SERVICES} == {m.lstrip("/").split("/")[0] for m in methods}
    assert set(RPC_ACCESS) == methods


def test_an_undeclared_method_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="no declared access rule"):
        gate({})("/govtrust.v1.SealService/ApplySeal", LOCAL_ADMIN)


@pytest.mark.parametrize(
    "method",
    [
        "/govtrust.v1.SealService/RevokeSealUse",
        "/govtrust.v1.IdentityService/RevokeAgent",
        "/govtrust.v1.LicenseService/RevokeLicenseAccess",
    ],
)
def test_revoking_a_grant_is_authorised_before_the_grant_is_looked_up(method: str) -> None:
    """#13 item 7: a caller who can hold no relation (a service without roles) is refused by
    the gate, before any lookup; a person goes on to the domain's relation check."""
    with pytest.raises(PermissionDenied, match="may not call"):
        AUTHORISE(method, NOBODY)
    AUTHORISE(method, CITIZEN)


def test_roles_relations_and_admin() -> None:
    issue = "/govtrust.v1.LicenseService/IssueLicense"
    AUTHORISE(issue, Principal("user", "clerk", frozenset({"licence-issuer:FZ"})))
    AUTHORISE(issue, LOCAL_ADMIN)
    for caller in (CITIZEN, Principal("user", "v", frozenset({"verifier"}))):
        with pytest.raises(PermissionDenied, match="licence-issuer"):
            AUTHORISE(issue, caller)
    make = "/govtrust.v1.SealService/MakeSeal"
    AUTHORISE(make, Principal("user", "m", frozenset({"seal-maker"})))
    with pytest.raises(PermissionDenied, match="seal-maker"):
        AUTHORISE(make, Principal("user", "r", frozenset({"seal-reviewer"})))
    with pytest.raises(PermissionDenied):
        AUTHORISE(make, CITIZEN)
    AUTHORISE("/govtrust.v1.SealService/GetSeal", NOBODY)  # any authenticated caller


def test_docs_security_md_has_the_generated_role_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert with_role_tables(text) == text, "run: python scripts/role_tables.py"
    assert "| `destroy` | revoked | destroyed | `seal-filing` |" in text
    assert "| `approve` | applied | approved | `seal-reviewer` | — | `apply` |" in text
