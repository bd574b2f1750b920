"""Kills the mutants ``make mutate`` found alive in govtrust/rpc/access.py: the gate's refusal
text, the ``prefix:*`` match, an unknown method, a rule nobody meets, and that an admitted
caller passes (docs/testing.md "Mutation testing")."""

from __future__ import annotations

import pytest

from govtrust.errors import PermissionDenied
from govtrust.principal import Principal
from govtrust.rpc.access import Access, gate

METHOD = "/govtrust.seal.v1.SealService/RevokeSeal"
TABLE = {
    METHOD: Access(roles=("seal-officer",), relations=("the seal owner's representative",)),
    "/govtrust.license.v1.LicenceService/Issue": Access(roles=("licence-issuer:*",)),
    "/govtrust.v1.Health/Check": Access(authenticated=True),
    "/govtrust.v1.Closed/Nothing": Access(),
}


def _refusal(method: str, principal: Principal) -> str:
    with pytest.raises(PermissionDenied) as info:
        gate(TABLE)(method, principal)
    return str(info.value)


def test_refusal_names_the_caller_the_method_and_the_rule() -> None:
    clerk = Principal(kind="user", subject="u1", roles=frozenset({"clerk"}))
    assert _refusal(METHOD, clerk) == (
        "user:u1 may not call RevokeSeal (needs `seal-officer` or the seal owner's representative)"
    )
    noted = Principal(kind="service", subject="cn=x", note="unregistered service identity")
    assert _refusal(METHOD, noted) == (
        "service:cn=x may not call RevokeSeal "
        "(needs `seal-officer` or the seal owner's representative; unregistered service identity)"
    )


def test_a_rule_nobody_meets_and_an_undeclared_method() -> None:
    admin_less = Principal(kind="user", subject="u1", roles=frozenset({"clerk"}))
    assert Access().describe() == "nobody"
    assert _refusal("/govtrust.v1.Closed/Nothing", admin_less) == (
        "user:u1 may not call Nothing (needs nobody)"
    )
    assert _refusal("/govtrust.v1.Missing/Call", admin_less) == (
        "/govtrust.v1.Missing/Call has no declared access rule: refused"
    )
    assert Access(authenticated=True, roles=("x",)).describe() == "any authenticated caller"


def test_admitted_callers_pass_the_gate() -> None:
    authorise = gate(TABLE)
    officer = Principal(kind="user", subject="u2", roles=frozenset({"seal-officer"}))
    citizen = Principal(kind="user", subject="u3", citizen_id="c-1")
    issuer = Principal(kind="user", subject="u4", roles=frozenset({"licence-issuer:dept-7"}))
    anyone = Principal(kind="user", subject="u5")
    assert authorise(METHOD, officer) is None
    assert authorise(METHOD, citizen) is None
    assert authorise("/govtrust.license.v1.LicenceService/Issue", issuer) is None
    assert authorise("/govtrust.v1.Health/Check", anyone) is None


def test_prefix_rule_matches_the_whole_prefix_only() -> None:
    rule = Access(roles=("licence-issuer:*",))
    assert rule.admits(Principal(kind="user", subject="a", roles=frozenset({"licence-issuer:d"})))
    assert rule.admits(Principal(kind="user", subject="a", roles=frozenset({"admin"})))
    for near in ("licence-reader", "l", "licence-issuer"):
        assert not rule.admits(Principal(kind="user", subject="a", roles=frozenset({near})))
