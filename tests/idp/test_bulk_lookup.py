"""Legal persons looked up many at once (``IdentityRegistry.legal_persons_by_uscc``, for bulk
licence issuance): the same value objects as one by one, keyed by the code as given; codes
that do not parse or are not registered left out; verifiers and registrars only. On SQLite
and PostgreSQL."""

from __future__ import annotations

import pytest

from govtrust.db import Database
from govtrust.errors import PermissionDenied
from idp.registry import IdentityRegistry
from idp.types import IdentityRef
from tests.idp.conftest import NOBODY, REGISTRAR, VERIFIER
from tests.idp.helpers import resident_id, uscc
from tests.unchanged import unchanged


def test_legal_persons_are_looked_up_at_once_as_one_by_one(
    registry: IdentityRegistry, database: Database
) -> None:
    rep = registry.register_citizen(REGISTRAR, name="张三", id_number=resident_id(1))
    other = registry.register_citizen(REGISTRAR, name="李四", id_number=resident_id(2))
    first = registry.register_legal_person(
        REGISTRAR, uscc=uscc(1), name="某公司", legal_representative=IdentityRef(id=rep.id)
    )
    second = registry.register_legal_person(
        REGISTRAR, uscc=uscc(2), name="另一公司", legal_representative=IdentityRef(id=other.id)
    )
    lower = uscc(2).lower()  # normalised like a single look-up; keyed as given
    found = registry.legal_persons_by_uscc(
        VERIFIER, [uscc(1), lower, uscc(1), uscc(3), "not a code", ""]
    )
    assert set(found) == {uscc(1), lower}
    assert found[uscc(1)] == registry.get_legal_person(VERIFIER, IdentityRef(uscc=uscc(1)))
    assert found[lower] == registry.get_legal_person(VERIFIER, IdentityRef(uscc=uscc(2)))
    assert found[uscc(1)].id == first.id and found[lower].id == second.id
    assert found[uscc(1)].legal_representative.id == rep.id
    assert registry.legal_persons_by_uscc(REGISTRAR, []) == {}
    with unchanged(database), pytest.raises(PermissionDenied):
        registry.legal_persons_by_uscc(NOBODY, [uscc(1)])
