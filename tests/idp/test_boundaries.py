"""Agent grant windows at the exact second (issue #23 item 3), on SQLite and PostgreSQL.

An agent grant is current on ``[valid_from, valid_until)``: from its first second, and no
longer at its end. The registry's clock is fixed so each edge is checked exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from idp.registry import IdentityRegistry
from idp.types import IdentityRef
from tests.idp.conftest import REGISTRAR
from tests.idp.helpers import resident_id, uscc


def test_an_agent_grant_is_current_from_its_first_second_until_its_end(
    registry: IdentityRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    rep = registry.register_citizen(REGISTRAR, name="张三", id_number=resident_id(1))
    agent = registry.register_citizen(REGISTRAR, name="李四", id_number=resident_id(2))
    company = registry.register_legal_person(
        REGISTRAR, uscc=uscc(1), name="某公司", legal_representative=IdentityRef(id=rep.id)
    )
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    end = start + timedelta(days=30)
    registry.grant_agent(
        REGISTRAR,
        legal_person=IdentityRef(id=company.id),
        agent=IdentityRef(id=agent.id),
        scopes=["seal.use"],
        valid_from=start,
        valid_until=end,
    )

    def current_at(moment: datetime) -> int:
        monkeypatch.setattr(registry, "_clock", lambda: moment)
        page = registry.list_agents(
            REGISTRAR,
            legal_person=IdentityRef(id=company.id),
            agent=IdentityRef(id=agent.id),
            scope="seal.use",
        )
        return len(page.items)

    second = timedelta(seconds=1)
    assert current_at(start - second) == 0
    assert current_at(start) == 1
    assert current_at(end - second) == 1
    assert current_at(end) == 0
