"""Identity registration × role, and staff roles given × giver (issue #23 item 1).

Every caller (each role of the security model, a licence issuer, a citizen, a service without
roles) tries every registration step of the registry. The expected answer is read from the RPC
table's role lists (:data:`govtrust.api.access.RPC_ACCESS`, ``admin`` holding every role) and
the documented rule for staff roles: only ``admin`` gives them; a registrar gives only those in
``registrar_grantable_roles``, never ``admin`` or ``identity-registrar``. A refusal is
PermissionDenied and writes nothing (identities, audit log).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from govtrust.api.access import RPC_ACCESS
from govtrust.audit import AuditRecord
from govtrust.db import Database
from govtrust.errors import PermissionDenied
from govtrust.principal import ROLES, Principal
from hsm.master import MasterKey
from idp.models import IdentityRow
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.types import IdentityRef, Staff, StatusAction
from tests.idp.helpers import resident_id, uscc
from tests.unchanged import unchanged

ADMIN = Principal("user", "admin", frozenset({"admin"}))
CALLERS: dict[str, Principal] = {
    role: Principal("user", f"staff-{role}", frozenset({role})) for role in sorted(ROLES)
}
CALLERS["licence-issuer:FZ"] = Principal("user", "clerk", frozenset({"licence-issuer:FZ"}))
CALLERS["citizen"] = Principal("user", "citizen", frozenset(), citizen_id="cit_someone")
CALLERS["no role"] = Principal("service", "nobody", frozenset())
GIVEABLE = (*sorted(ROLES), "licence-issuer:FZ")
# what the registrar of the second registry may give (admin is dropped: never grantable)
GRANTABLE = frozenset({"seal-reviewer", "verifier", "admin", "identity-registrar", "key-recovery"})
NEVER_BY_REGISTRAR = {"admin", "identity-registrar", "key-recovery"}
_serial = itertools.count(1)


@dataclass
class Registries:
    db: Database
    strict: IdentityRegistry  # registrar_grantable_roles empty (the default)
    lenient: IdentityRegistry  # registrar_grantable_roles = GRANTABLE
    subject_id: str  # a citizen whose status the callers try to change


@pytest.fixture(scope="module")
def registries(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registries]:
    target = tmp_path_factory.mktemp("registration-matrix") / "govtrust.db"
    shutil.copyfile(sqlite_template, target)
    db = Database(f"sqlite:///{target}")
    codec = PiiCodec.from_master_key(MasterKey.generate())
    strict = IdentityRegistry(db, codec)
    lenient = IdentityRegistry(db, codec, registrar_grantable_roles=GRANTABLE)
    subject = strict.register_citizen(ADMIN, name="受测人", id_number=resident_id(999))
    try:
        yield Registries(db, strict, lenient, subject.id)
    finally:
        db.dispose()


def _counts(db: Database) -> tuple[int, int]:
    with db.read() as session:
        identities = session.scalar(select(func.count()).select_from(IdentityRow)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditRecord)) or 0
    return identities, audit


def _admitted_by_table(rpc: str, principal: Principal) -> bool:
    roles = RPC_ACCESS[f"/govtrust.v1.IdentityService/{rpc}"].roles
    return "admin" in principal.roles or any(r in principal.roles for r in roles)


def _citizen(r: Registries, p: Principal) -> object:
    n = next(_serial)
    return r.strict.register_citizen(p, name=f"公民{n}", id_number=resident_id(n))


def _legal_person(r: Registries, p: Principal) -> object:
    return r.strict.register_legal_person(
        p,
        uscc=uscc(next(_serial)),
        name="福州登记测试有限公司",
        legal_representative=IdentityRef(id=r.subject_id),
    )


def _staff(
    r: Registries, p: Principal, roles: tuple[str, ...] = (), *, lenient: bool = False
) -> Staff:
    return (r.lenient if lenient else r.strict).register_staff(
        p,
        name="职员",
        department_code="FZ",
        department_name="福州",
        employee_number=f"E{next(_serial)}",
        roles=roles,
    )


def _suspend_and_reinstate(r: Registries, p: Principal) -> object:
    ref = IdentityRef(id=r.subject_id)
    r.strict.update_status(p, ref, StatusAction.SUSPEND, "checking")
    return r.strict.update_status(p, ref, StatusAction.REINSTATE, "checked")


STEPS: dict[str, tuple[str, Callable[[Registries, Principal], object]]] = {
    "register a citizen": ("RegisterCitizen", _citizen),
    "register a legal person": ("RegisterLegalPerson", _legal_person),
    "register staff without roles": ("RegisterStaff", _staff),
    "change an identity's status": ("UpdateIdentityStatus", _suspend_and_reinstate),
}


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("caller", list(CALLERS))
def test_registration_by_every_role(registries: Registries, step: str, caller: str) -> None:
    rpc, run = STEPS[step]
    principal = CALLERS[caller]
    before = _counts(registries.db)
    if _admitted_by_table(rpc, principal):
        run(registries, principal)
        assert _counts(registries.db) != before
    else:
        with unchanged(registries.db), pytest.raises(PermissionDenied, match="identity-registrar"):
            run(registries, principal)


REGISTRAR = CALLERS["identity-registrar"]


@pytest.mark.parametrize("role", GIVEABLE)
def test_staff_roles_are_given_by_an_admin_only(registries: Registries, role: str) -> None:
    before = _counts(registries.db)
    staff = _staff(registries, ADMIN, (role,))
    assert role in staff.roles
    assert _counts(registries.db) != before
    with (
        unchanged(registries.db),
        pytest.raises(PermissionDenied, match="only an admin gives staff roles"),
    ):
        _staff(registries, REGISTRAR, (role,))


@pytest.mark.parametrize("role", GIVEABLE)
def test_a_registrar_gives_only_the_configured_roles(registries: Registries, role: str) -> None:
    """``registrar_grantable_roles`` widens what a registrar gives, never to admin or
    identity-registrar or key-recovery (even when configured)."""
    if role in GRANTABLE and role not in NEVER_BY_REGISTRAR:
        assert role in _staff(registries, REGISTRAR, (role,), lenient=True).roles
    else:
        with (
            unchanged(registries.db),
            pytest.raises(PermissionDenied, match="only an admin gives staff roles"),
        ):
            _staff(registries, REGISTRAR, (role,), lenient=True)
