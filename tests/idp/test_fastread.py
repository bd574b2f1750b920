"""The hot-path reader: fresh data on every call, recovery from a dropped connection."""

from __future__ import annotations

from govtrust.principal import Principal
from idp.registry import IdentityRegistry
from idp.types import CheckResult, IdentityRef, IdentityStatus, StatusAction
from tests.idp.conftest import REGISTRAR, VERIFIER
from tests.idp.helpers import resident_id


def test_check_sees_committed_changes_and_survives_a_dropped_connection(
    registry: IdentityRegistry,
) -> None:
    number = resident_id(1)
    assert registry.check_citizen(VERIFIER, name="张三", id_number=number).result is (
        CheckResult.NOT_FOUND
    )
    citizen = registry.register_citizen(REGISTRAR, name="张三", id_number=number)
    check = registry.check_citizen(VERIFIER, name="张三", id_number=number)
    assert (check.result, check.status) == (CheckResult.MATCH, IdentityStatus.ACTIVE)
    registry.update_status(REGISTRAR, IdentityRef(id=citizen.id), StatusAction.SUSPEND, "x")
    check = registry.check_citizen(VERIFIER, name="张三", id_number=number)
    assert check.status is IdentityStatus.SUSPENDED
    registry.reader.close()  # e.g. the database restarted: the next call reconnects
    assert registry.check_citizen(VERIFIER, name="张三", id_number=number).result is (
        CheckResult.MATCH
    )


def test_fallback_through_the_engine(registry: IdentityRegistry) -> None:
    registry.register_citizen(REGISTRAR, name="张三", id_number=resident_id(1))
    registry.reader._native = False  # an engine without a native fast path
    check = registry.check_citizen(
        Principal("service", "s", frozenset({"verifier"})), name="张三", id_number=resident_id(1)
    )
    assert check.result is CheckResult.MATCH
