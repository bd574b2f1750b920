"""Reading one agent grant and one identity by id (what a lost GrantAgent / RevokeAgent /
UpdateIdentityStatus answer is rebuilt from, :mod:`govtrust.api.identity`), on SQLite and
PostgreSQL: who may read, and that a refused read tells nothing and changes nothing."""

from __future__ import annotations

import pytest

from govtrust.db import Database
from govtrust.errors import NotFound, PermissionDenied
from govtrust.principal import Principal
from idp.registry import IdentityRegistry
from idp.types import GrantStatus, IdentityRef, IdentityStatus, StatusAction
from tests.idp.conftest import NOBODY, REGISTRAR, VERIFIER
from tests.idp.helpers import resident_id, uscc
from tests.unchanged import unchanged


def _citizen(registry: IdentityRegistry, n: int) -> Principal:
    person = registry.register_citizen(REGISTRAR, name="张三", id_number=resident_id(n))
    return Principal("user", f"citizen-{n}", frozenset(), citizen_id=person.id)


def test_an_agent_grant_is_read_by_whoever_may_list_it(
    registry: IdentityRegistry, database: Database
) -> None:
    rep, agent, stranger = (_citizen(registry, n) for n in (1, 2, 3))
    company = registry.register_legal_person(
        REGISTRAR, uscc=uscc(1), name="某公司", legal_representative=IdentityRef(id=rep.citizen_id)
    )
    grant = registry.grant_agent(
        rep,
        legal_person=IdentityRef(id=company.id),
        agent=IdentityRef(id=agent.citizen_id),
        scopes=["seal.use"],
    )
    for reader in (REGISTRAR, VERIFIER, rep, agent):
        assert registry.get_agent_grant(reader, grant.id) == grant
    registry.revoke_agent(agent, grant_id=grant.id, reason="renounced")
    revoked = registry.get_agent_grant(rep, grant.id)
    assert revoked.status is GrantStatus.REVOKED and revoked.revoke_reason == "renounced"

    with unchanged(database):
        # a stranger is refused alike whether the grant exists or not
        for reader, grant_id in ((stranger, grant.id), (stranger, "agt_nope"), (NOBODY, "")):
            with pytest.raises(PermissionDenied, match="may not read agent grant"):
                registry.get_agent_grant(reader, grant_id)
        with pytest.raises(NotFound, match="no such agent grant"):
            registry.get_agent_grant(REGISTRAR, "agt_nope")


def test_an_identity_is_read_by_id_as_it_stands(
    registry: IdentityRegistry, database: Database
) -> None:
    person = _citizen(registry, 1)
    ref = IdentityRef(id=person.citizen_id)
    registry.update_status(REGISTRAR, ref, StatusAction.SUSPEND, "by order")
    for reader in (REGISTRAR, VERIFIER):
        summary = registry.get_identity(reader, ref)
        assert summary.id == person.citizen_id and summary.status is IdentityStatus.SUSPENDED
    with unchanged(database):
        for refused in (NOBODY, person):  # not even the citizen: verifiers and registrars only
            with pytest.raises(PermissionDenied):
                registry.get_identity(refused, ref)
        with pytest.raises(NotFound, match="no such identity"):
            registry.get_identity(REGISTRAR, IdentityRef(id="cit_nope"))
