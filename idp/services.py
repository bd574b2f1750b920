"""Service identities: the business systems that call govtrust over mTLS, and their roles.

A business system authenticates with a client certificate from our ``service`` CA (profile
``service``, CN = its ``system_id``). The certificate only says *who* it is; what it may do is
the roles of the registered service identity of that name, which an ``admin`` registers, changes
and disables (each change audited in the same transaction).

:func:`certificate_principal` is the certificate resolver the server installs
(:func:`govtrust.rpc.auth.register_certificate_resolver`): a verified client certificate that we
issued from the service CA, is not revoked, suspended or expired, and names an active identity
becomes ``Principal(kind="service", subject=<system_id>, roles=<its roles>)``. A certificate of
ours that is revoked, suspended or expired is refused (UNAUTHENTICATED); any other certificate
(not ours, not a service certificate, an unregistered or disabled identity) is a service with no
roles and a note saying why, so role-guarded RPCs answer PERMISSION_DENIED with that reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.authority import issued_system_certificate
from ca.issuance import is_system_id
from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    Unauthenticated,
)
from govtrust.principal import Principal, is_known_role
from idp.models import ServiceIdentityRow
from idp.paging import checked_page_size, page_position, page_token_for
from idp.registry_state import reason_violation
from idp.types import Page

if TYPE_CHECKING:
    from govtrust.platform import Platform

log = logging.getLogger("govtrust.idp.services")

ADMIN = "admin"
SERVICE_CA = "service"  # the issuing CA (and profile) of service certificates
NOT_GRANTABLE = frozenset({ADMIN})
"""Roles a service identity never holds: ``admin`` stays with people (and the loopback)."""


class ServiceStatus(StrEnum):
    """Whether a service identity's roles apply."""

    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ServiceIdentity:
    """A registered business system."""

    name: str
    roles: tuple[str, ...]
    status: ServiceStatus
    status_reason: str
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


def _identity(row: ServiceIdentityRow) -> ServiceIdentity:
    return ServiceIdentity(
        name=row.name,
        roles=tuple(row.roles.split()),
        status=ServiceStatus(row.status),
        status_reason=row.status_reason,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        updated_by=row.updated_by,
        updated_at=as_utc(row.updated_at),
    )


def clean_roles(roles: Sequence[str]) -> list[str]:
    """Sorted, de-duplicated roles; ``InvalidArgument`` naming each unknown or ungrantable one."""
    cleaned = sorted({r.strip() for r in roles})
    violations = []
    for i, role in enumerate(cleaned):
        if role in NOT_GRANTABLE:
            violations.append(FieldViolation(f"roles[{i}]", f"{role!r} is not given to services"))
        elif not is_known_role(role):
            violations.append(FieldViolation(f"roles[{i}]", f"unknown role {role!r}"))
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations), violations
        )
    return cleaned


def _check_name(name: str) -> str:
    name = name.strip()
    if not is_system_id(name):
        raise InvalidArgument.field(
            "name", "the service certificate's system id: 1-64 of A-Z a-z 0-9 . _ : - expected"
        )
    return name


def _check_reason(reason: str) -> str:
    violation = reason_violation("reason", reason)
    if violation is not None:
        raise InvalidArgument(f"{violation.field}: {violation.description}", [violation])
    return reason.strip()


class ServiceRegistry:
    """Register, list, change the roles of and disable service identities (``admin`` only)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self._clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def _authorise(principal: Principal) -> None:
        if ADMIN not in principal.roles:
            raise PermissionDenied(f"{principal.actor} lacks the role admin (service identities)")

    def register(self, principal: Principal, name: str, roles: Sequence[str]) -> ServiceIdentity:
        """Register a business system with roles; ``ALREADY_EXISTS`` when the name is taken."""
        self._authorise(principal)
        name = _check_name(name)
        granted = clean_roles(roles)
        now = self._clock()
        try:
            with self.db.transaction() as session:
                if session.get(ServiceIdentityRow, name) is not None:
                    raise AlreadyExists(f"service identity {name!r} is registered")
                row = ServiceIdentityRow(
                    name=name,
                    roles=" ".join(granted),
                    status=ServiceStatus.ACTIVE.value,
                    status_reason="",
                    created_by=principal.actor,
                    created_at=now,
                    updated_by=principal.actor,
                    updated_at=now,
                )
                session.add(row)
                session.flush()
                audit.append(
                    session,
                    actor=principal.actor,
                    action="identity.service.register",
                    target=f"service:{name}",
                    details={"roles": granted},
                )
                result = _identity(row)
        except IntegrityError:
            raise AlreadyExists(f"service identity {name!r} is registered") from None
        log.info("service identity registered", extra={"service": name, "roles": granted})
        return result

    def get(self, principal: Principal, name: str) -> ServiceIdentity:
        """One service identity."""
        self._authorise(principal)
        with self.db.read() as session:
            row = session.get(ServiceIdentityRow, name.strip())
            if row is None:
                raise NotFound(f"no service identity {name.strip()!r}")
            return _identity(row)

    def list(
        self,
        principal: Principal,
        *,
        include_disabled: bool = True,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[ServiceIdentity]:
        """Service identities by name; paged."""
        self._authorise(principal)
        size = checked_page_size(page_size)
        filters = ("services", include_disabled)
        position = page_position(page_token, filters, 1)
        query = select(ServiceIdentityRow).order_by(ServiceIdentityRow.name)
        if not include_disabled:
            query = query.where(ServiceIdentityRow.status == ServiceStatus.ACTIVE.value)
        if position is not None:
            query = query.where(ServiceIdentityRow.name > position[0])
        with self.db.read() as session:
            rows = list(session.scalars(query.limit(size + 1)))
            items = tuple(_identity(r) for r in rows[:size])
        token = page_token_for(filters, items[-1].name) if len(rows) > size else ""
        return Page(items, token)

    def _change(
        self,
        principal: Principal,
        name: str,
        action: str,
        apply: Callable[[ServiceIdentityRow], dict[str, object]],
    ) -> ServiceIdentity:
        self._authorise(principal)
        name = name.strip()
        with self.db.transaction() as session:
            row = self._row_for_update(session, name)
            details = apply(row)
            row.updated_by = principal.actor
            row.updated_at = self._clock()
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action=f"identity.service.{action}",
                target=f"service:{name}",
                details=details,
            )
            result = _identity(row)
        log.info("service identity changed", extra={"service": name, "action": action})
        return result

    @staticmethod
    def _row_for_update(session: Session, name: str) -> ServiceIdentityRow:
        row = session.scalar(
            select(ServiceIdentityRow).where(ServiceIdentityRow.name == name).with_for_update()
        )
        if row is None:
            raise NotFound(f"no service identity {name!r}")
        return row

    def update_roles(
        self, principal: Principal, name: str, roles: Sequence[str]
    ) -> ServiceIdentity:
        """Replace the roles of a service identity (effective on its next call)."""
        granted = clean_roles(roles)

        def apply(row: ServiceIdentityRow) -> dict[str, object]:
            before = row.roles.split()
            row.roles = " ".join(granted)
            return {"roles_before": before, "roles": granted}

        return self._change(principal, name, "roles", apply)

    def set_status(
        self, principal: Principal, name: str, status: ServiceStatus, reason: str
    ) -> ServiceIdentity:
        """Disable (its certificates then carry no roles) or re-enable a service identity."""
        reason = _check_reason(reason)

        def apply(row: ServiceIdentityRow) -> dict[str, object]:
            if row.status == status.value:
                raise FailedPrecondition(
                    f"service identity {row.name!r} is already {status.value}",
                    [PreconditionViolation("STATE", f"service:{row.name}", f"already {status}")],
                )
            before = row.status
            row.status = status.value
            row.status_reason = reason
            return {"status_before": before, "status": status.value, "reason": reason}

        action = "disable" if status is ServiceStatus.DISABLED else "enable"
        return self._change(principal, name, action, apply)

    # --- the certificate resolver ---------------------------------------------------------

    def principal_for_certificate(self, cert: x509.Certificate) -> Principal | None:
        """The principal a verified client certificate stands for; None when it is not a
        service certificate we issued (the next resolver, or the role-less default, decides)."""
        fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        issued = issued_system_certificate(self.db, fingerprint)
        if issued is None or issued.issuer != SERVICE_CA:
            return None
        if issued.status != "active":
            raise Unauthenticated(
                f"the client certificate (serial {issued.serial}) is {issued.status}"
            )
        name = issued.system_id
        with self.db.read() as session:
            row = session.get(ServiceIdentityRow, name)
            found = None if row is None else (row.status, frozenset(row.roles.split()))
        if found is None:
            note = (
                f"no service identity {name!r} is registered; "
                "an admin registers it with 'govtrust service register'"
            )
            return Principal(kind="service", subject=name, note=note)
        status, roles = found
        if status != ServiceStatus.ACTIVE.value:
            note = f"the service identity {name!r} is {status}"
            return Principal(kind="service", subject=name, note=note)
        return Principal(kind="service", subject=name, roles=roles)


def registry_for(platform: Platform) -> ServiceRegistry:
    """The platform's service registry over its database (kept on its container)."""
    from idp.runtime import service_registry_for

    return service_registry_for(platform)


def certificate_principal(platform: Platform, cert: x509.Certificate) -> Principal | None:
    """Certificate resolver for :func:`govtrust.rpc.auth.register_certificate_resolver`."""
    return registry_for(platform).principal_for_certificate(cert)
