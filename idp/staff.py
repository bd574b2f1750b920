"""Staff: registering a staff member (govtrust roles, business-system accounts, optionally the
citizen it is) and reading one. Staff roles become token roles, so who may give which role is
decided here: an ``admin`` gives any; an ``identity-registrar`` only those configured as
grantable, never the privileged ones."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from govtrust import audit
from govtrust.db import as_utc
from govtrust.errors import AlreadyExists, FieldViolation, PermissionDenied
from govtrust.principal import LICENCE_ISSUER_PREFIX, ROLES, Principal
from idp.models import IdentityRow, StaffAccountRow, StaffRow
from idp.names import (
    clean_name,
    clean_phone,
    email_violation,
    name_violation,
    phone_violation,
)
from idp.registry_state import (
    CODE_CHARS,
    REGISTRAR,
    VERIFIER,
    RegistryState,
    code_violation,
    new_id,
    new_identity_row,
    raise_if,
    summary_of,
)
from idp.types import (
    AssuranceSource,
    ConnectionMode,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    IdentitySummary,
    Staff,
    SystemAccount,
)

log = logging.getLogger("govtrust.idp")

# never given by a registrar: key-recovery too, or a registrar could mint both officers of a
# dual-control key recovery (ca/recovery.py)
PRIVILEGED_STAFF_ROLES = frozenset({"admin", REGISTRAR, "key-recovery"})


class StaffRegistry:
    """Register and read staff members."""

    def __init__(
        self, state: RegistryState, registrar_grantable_roles: frozenset[str] = frozenset()
    ) -> None:
        self.state = state
        self.registrar_grantable_roles = registrar_grantable_roles - PRIVILEGED_STAFF_ROLES

    def _check_grantable(self, principal: Principal, roles: Sequence[str]) -> None:
        """Only an admin gives staff roles (they become token roles); a registrar gives none,
        or only those in ``registrar_grantable_roles`` (never admin or identity-registrar)."""
        if "admin" in principal.roles:
            return
        refused = [r for r in roles if r not in self.registrar_grantable_roles]
        if refused:
            allowed = ", ".join(sorted(self.registrar_grantable_roles)) or "none"
            raise PermissionDenied(
                f"{principal.actor} may not give the role {', '.join(refused)}: only an admin "
                f"gives staff roles (a registrar may give: {allowed})"
            )

    def register(
        self,
        principal: Principal,
        *,
        name: str,
        department_code: str,
        department_name: str,
        employee_number: str,
        roles: Sequence[str] = (),
        system_accounts: Sequence[SystemAccount] = (),
        citizen: IdentityRef | None = None,
        phone: str = "",
        email: str = "",
    ) -> Staff:
        """Register a staff member with govtrust roles and business-system accounts.

        Unified-mode accounts carry no local account id (the user centre's id is the account);
        mapped-mode accounts need the system's own account id, unique per system.
        """
        principal.require_role(REGISTRAR)
        department_code = department_code.strip()
        employee_number = employee_number.strip()
        violations: list[FieldViolation | None] = [
            name_violation("name", name),
            code_violation("department_code", department_code),
            name_violation("department_name", department_name, required=False),
            code_violation("employee_number", employee_number),
            phone_violation("phone", phone),
            email_violation("email", email),
        ]
        clean_roles = sorted({r.strip() for r in roles})
        for i, role in enumerate(clean_roles):
            dept = role.removeprefix(LICENCE_ISSUER_PREFIX)
            if role not in ROLES and not (
                role.startswith(LICENCE_ISSUER_PREFIX) and dept and set(dept) <= CODE_CHARS
            ):
                violations.append(FieldViolation(f"roles[{i}]", "unknown role"))
        seen_systems: set[str] = set()
        for i, account in enumerate(system_accounts):
            field = f"system_accounts[{i}]"
            violations.append(
                code_violation(f"{field}.system_id", account.system_id, max_length=128)
            )
            if account.system_id in seen_systems:
                violations.append(FieldViolation(f"{field}.system_id", "duplicate system"))
            seen_systems.add(account.system_id)
            if account.mode is ConnectionMode.MAPPED:
                violations.append(
                    code_violation(
                        f"{field}.local_account_id", account.local_account_id, max_length=128
                    )
                )
            elif account.local_account_id:
                violations.append(
                    FieldViolation(
                        f"{field}.local_account_id",
                        "only mapped-mode accounts have a local account id",
                    )
                )
        raise_if(violations)
        self._check_grantable(principal, clean_roles)
        display = clean_name(name)
        phone_index, phone_enc, masked_phone = self.state.phone_columns(clean_phone(phone))
        now = self.state.now()
        staff_id = new_id("stf")
        masked = f"{department_code}/{employee_number}"
        try:
            with self.state.db.transaction() as session:
                citizen_row: IdentityRow | None = None
                if citizen is not None and not citizen.is_empty:
                    citizen_row = self.state.resolve(
                        session, citizen, "citizen", IdentityKind.CITIZEN
                    )
                if session.scalar(
                    select(StaffRow.id)
                    .where(StaffRow.department_code == department_code)
                    .where(StaffRow.employee_number == employee_number)
                ):
                    raise AlreadyExists(f"staff member {masked} is registered")
                for account in system_accounts:
                    if account.mode is ConnectionMode.MAPPED and session.scalar(
                        select(StaffAccountRow.id)
                        .where(StaffAccountRow.system_id == account.system_id)
                        .where(StaffAccountRow.local_account_id == account.local_account_id)
                    ):
                        raise AlreadyExists(
                            f"local account {account.local_account_id} of system "
                            f"{account.system_id} is mapped to another staff member"
                        )
                identity = new_identity_row(
                    staff_id, IdentityKind.STAFF, display, masked, (0, AssuranceSource.NONE), now
                )
                session.add(identity)
                session.flush()
                row = StaffRow(
                    id=staff_id,
                    department_code=department_code,
                    department_name=clean_name(department_name),
                    employee_number=employee_number,
                    roles=" ".join(clean_roles),
                    citizen_id=citizen_row.id if citizen_row else None,
                    phone_index=phone_index,
                    phone_enc=phone_enc,
                    masked_phone=masked_phone,
                    email=email.strip(),
                )
                session.add(row)
                session.flush()
                accounts = [
                    StaffAccountRow(
                        staff_id=staff_id,
                        system_id=a.system_id,
                        mode=a.mode.value,
                        local_account_id=a.local_account_id
                        if a.mode is ConnectionMode.MAPPED
                        else None,
                    )
                    for a in system_accounts
                ]
                session.add_all(accounts)
                session.flush()
                audit.append(
                    session,
                    actor=principal.actor,
                    action="identity.staff.register",
                    target=f"staff:{staff_id}",
                    details={
                        "staff": masked,
                        "roles": clean_roles,
                        "systems": [f"{a.system_id}:{a.mode.value}" for a in system_accounts],
                        "citizen": citizen_row.id if citizen_row else None,
                        "masked_phone": row.masked_phone,
                    },
                )
                result = self._staff(
                    identity, row, accounts, summary_of(citizen_row) if citizen_row else None
                )
        except IntegrityError:
            raise AlreadyExists(
                f"staff member {masked} or one of its mapped accounts is registered"
            ) from None
        log.info("staff registered", extra={"staff_id": staff_id, "staff": masked})
        return result

    @staticmethod
    def _staff(
        identity: IdentityRow,
        row: StaffRow,
        accounts: Sequence[StaffAccountRow],
        citizen: IdentitySummary | None,
    ) -> Staff:
        return Staff(
            id=identity.id,
            name=identity.name,
            department_code=row.department_code,
            department_name=row.department_name,
            employee_number=row.employee_number,
            roles=tuple(row.roles.split()),
            system_accounts=tuple(
                SystemAccount(a.system_id, ConnectionMode(a.mode), a.local_account_id or "")
                for a in sorted(accounts, key=lambda a: a.system_id)
            ),
            citizen=citizen,
            masked_phone=row.masked_phone,
            email=row.email,
            status=IdentityStatus(identity.status),
            status_reason=identity.status_reason,
            created_at=as_utc(identity.created_at),
            updated_at=as_utc(identity.updated_at),
        )

    def get(self, principal: Principal, ref: IdentityRef) -> Staff:
        """One staff member; verifiers and registrars."""
        principal.require_role(VERIFIER, REGISTRAR)
        with self.state.db.read() as session:
            identity = self.state.resolve(session, ref, "staff", IdentityKind.STAFF)
            row = session.get(StaffRow, identity.id)
            assert row is not None
            accounts = session.scalars(
                select(StaffAccountRow).where(StaffAccountRow.staff_id == identity.id)
            ).all()
            citizen = session.get(IdentityRow, row.citizen_id) if row.citizen_id else None
            return self._staff(identity, row, accounts, summary_of(citizen) if citizen else None)
