"""Agent grants: a citizen authorised to act for a legal person in named scopes, for a time.

Who may grant: the legal representative, an agent of the legal person holding ``agent.manage``
(only scopes it holds itself, never beyond its own validity), or an ``identity-registrar``
recording a paper authorisation at a counter. Who may revoke: the same people, or the agent
renouncing its own grant. A grant is current from ``valid_from`` until ``valid_until`` (or for
good) unless revoked; cancelling either identity revokes it (:func:`revoke_grants_of_cancelled`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from govtrust import audit
from govtrust.db import as_utc
from govtrust.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from govtrust.principal import Principal
from idp.models import (
    REASON_LENGTH,
    AgentGrantRow,
    AgentGrantScopeRow,
    IdentityRow,
    LegalPersonRow,
)
from idp.paging import checked_page_size, page_position, page_token_for
from idp.registry_state import (
    REGISTRAR,
    VERIFIER,
    RegistryState,
    new_id,
    opt_utc,
    raise_if,
    reason_violation,
    summaries,
)
from idp.types import (
    AGENT_MANAGE,
    AGENT_SCOPES,
    AgentGrant,
    GrantStatus,
    IdentityKind,
    IdentityRef,
    IdentityStatus,
    Page,
)


def active_filter(now: datetime) -> ColumnElement[bool]:
    """The condition of a grant current at ``now``: not revoked, started, not ended."""
    return and_(
        AgentGrantRow.revoked_at.is_(None),
        AgentGrantRow.valid_from <= now,
        or_(AgentGrantRow.valid_until.is_(None), AgentGrantRow.valid_until > now),
    )


def has_scope(scope: str) -> ColumnElement[bool]:
    """The condition of a grant holding ``scope``."""
    return exists().where(
        AgentGrantScopeRow.grant_id == AgentGrantRow.id, AgentGrantScopeRow.scope == scope
    )


def active_grants(
    session: Session, legal_person_id: str, agent_id: str, scope: str | None, now: datetime
) -> list[AgentGrantRow]:
    """The grants of ``agent_id`` for ``legal_person_id`` current at ``now`` (holding
    ``scope`` when given)."""
    stmt = (
        select(AgentGrantRow)
        .where(AgentGrantRow.legal_person_id == legal_person_id)
        .where(AgentGrantRow.agent_id == agent_id)
        .where(active_filter(now))
    )
    if scope is not None:
        stmt = stmt.where(has_scope(scope))
    return list(session.scalars(stmt))


def active_scopes(
    session: Session, legal_person_id: str, agent_id: str, scope: str | None, now: datetime
) -> set[str]:
    """Every scope of the grants :func:`active_grants` finds (empty when there are none)."""
    grants = active_grants(session, legal_person_id, agent_id, scope, now)
    if not grants:
        return set()
    return set(
        session.scalars(
            select(AgentGrantScopeRow.scope).where(
                AgentGrantScopeRow.grant_id.in_([g.id for g in grants])
            )
        )
    )


def revoke_grants_of_cancelled(
    session: Session, identity: IdentityRow, actor: str, reason: str, now: datetime
) -> list[str]:
    """Revoke, in ``session``, the unrevoked grants that hang off a cancelled identity (of a
    legal person, or held by a citizen); their ids."""
    column = (
        AgentGrantRow.legal_person_id
        if identity.kind == IdentityKind.LEGAL_PERSON.value
        else AgentGrantRow.agent_id
    )
    revoked = list(
        session.scalars(
            select(AgentGrantRow.id)
            .where(column == identity.id)
            .where(AgentGrantRow.revoked_at.is_(None))
        )
    )
    if revoked:
        session.execute(
            update(AgentGrantRow)
            .where(AgentGrantRow.id.in_(revoked))
            .values(
                revoked_at=now,
                revoked_by_actor=actor,
                revoke_reason=f"{identity.kind} cancelled: {reason}"[:REASON_LENGTH],
            )
        )
    return revoked


class AgentGrants:
    """Grant, revoke and list agent grants (see the module docstring for who)."""

    def __init__(self, state: RegistryState) -> None:
        self.state = state

    def _grant_authority(
        self, session: Session, principal: Principal, lp: LegalPersonRow, action: str
    ) -> tuple[str | None, set[str] | None, datetime | None, bool]:
        """Who acts on the legal person's grants: (citizen id or None for a registrar,
        scopes it may grant or None for all, latest end it may grant or None, unbounded)."""
        if principal.has_role(REGISTRAR):
            return None, None, None, True
        citizen_id = principal.citizen_id
        if citizen_id is None:
            raise PermissionDenied(
                f"{action} needs the legal representative, an agent holding {AGENT_MANAGE}, "
                f"or the {REGISTRAR} role"
            )
        actor = session.get(IdentityRow, citizen_id)
        if actor is None or actor.status != IdentityStatus.ACTIVE.value:
            raise PermissionDenied(f"{action}: the acting citizen is not active")
        if citizen_id == lp.legal_representative_id:
            return citizen_id, None, None, True
        managing = active_grants(session, lp.id, citizen_id, AGENT_MANAGE, self.state.now())
        if not managing:
            raise PermissionDenied(
                f"{action} needs the legal representative or an agent holding {AGENT_MANAGE}"
            )
        scopes = active_scopes(session, lp.id, citizen_id, AGENT_MANAGE, self.state.now())
        unbounded = any(g.valid_until is None for g in managing)
        ends = [as_utc(g.valid_until) for g in managing if g.valid_until is not None]
        return citizen_id, scopes, (None if unbounded else max(ends)), unbounded

    def grant(
        self,
        principal: Principal,
        *,
        legal_person: IdentityRef,
        agent: IdentityRef,
        scopes: Sequence[str],
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> AgentGrant:
        """Authorise a citizen to act for a legal person (see the module docstring for who)."""
        now = self.state.now()
        start = as_utc(valid_from) if valid_from is not None else now
        end = opt_utc(valid_until)
        wanted = sorted({s.strip() for s in scopes})
        violations: list[FieldViolation | None] = []
        if not wanted:
            violations.append(FieldViolation("scopes", "required: at least one scope"))
        for i, scope in enumerate(wanted):
            if scope not in AGENT_SCOPES:
                violations.append(
                    FieldViolation(f"scopes[{i}]", f"unknown scope; one of {sorted(AGENT_SCOPES)}")
                )
        if end is not None and end <= start:
            violations.append(FieldViolation("valid_until", "must be after valid_from"))
        if end is not None and end <= now:
            violations.append(FieldViolation("valid_until", "must be in the future"))
        raise_if(violations)
        grant_id = new_id("agt")
        with self.state.db.transaction() as session:
            lp_identity = self.state.resolve(
                session, legal_person, "legal_person", IdentityKind.LEGAL_PERSON
            )
            lp = session.get(LegalPersonRow, lp_identity.id)
            assert lp is not None
            agent_identity = self.state.resolve(session, agent, "agent", IdentityKind.CITIZEN)
            granted_by, may_grant, latest_end, unbounded = self._grant_authority(
                session, principal, lp, "granting an agent"
            )
            if may_grant is not None and not set(wanted) <= may_grant:
                raise PermissionDenied(
                    "an agent may only grant scopes it holds itself: "
                    + ", ".join(sorted(set(wanted) - may_grant))
                )
            if not unbounded and latest_end is not None and (end is None or end > latest_end):
                raise PermissionDenied(
                    "an agent may not grant beyond the end of its own authorisation"
                )
            for identity, what in ((lp_identity, "legal person"), (agent_identity, "agent")):
                if identity.status != IdentityStatus.ACTIVE.value:
                    raise FailedPrecondition(
                        f"the {what} is not active",
                        [
                            PreconditionViolation(
                                "STATUS", identity.id, f"{what} is {identity.status}"
                            )
                        ],
                    )
            current = session.scalar(
                select(AgentGrantRow.id)
                .where(AgentGrantRow.legal_person_id == lp.id)
                .where(AgentGrantRow.agent_id == agent_identity.id)
                .where(AgentGrantRow.revoked_at.is_(None))
                .where(or_(AgentGrantRow.valid_until.is_(None), AgentGrantRow.valid_until > now))
            )
            if current is not None:
                raise AlreadyExists(
                    f"the citizen already holds grant {current} for this legal person; "
                    "revoke it before granting anew"
                )
            row = AgentGrantRow(
                id=grant_id,
                legal_person_id=lp.id,
                agent_id=agent_identity.id,
                valid_from=start,
                valid_until=end,
                granted_by_id=granted_by,
                granted_by_actor=principal.actor,
                granted_at=now,
                revoked_at=None,
                revoked_by_id=None,
                revoked_by_actor=None,
                revoke_reason="",
            )
            session.add(row)
            session.flush()
            session.add_all(AgentGrantScopeRow(grant_id=grant_id, scope=s) for s in wanted)
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action="identity.agent.grant",
                target=f"agent_grant:{grant_id}",
                details={
                    "legal_person": lp.id,
                    "agent": agent_identity.id,
                    "scopes": wanted,
                    "valid_from": start.isoformat(),
                    "valid_until": end.isoformat() if end else None,
                    "granted_by": granted_by,
                },
            )
            return self._grants(session, [row])[0]

    def revoke(self, principal: Principal, *, grant_id: str, reason: str) -> AgentGrant:
        """Revoke a grant: the representative, an agent holding agent.manage, a registrar, or
        the agent itself (renouncing). Anyone else is refused the same way whether the grant
        exists or not (authorise before telling NOT_FOUND)."""
        raise_if(
            [
                FieldViolation("grant_id", "required") if not grant_id.strip() else None,
                reason_violation("reason", reason),
            ]
        )
        now = self.state.now()
        denied = PermissionDenied(
            f"{principal.actor} may not revoke agent grant {grant_id.strip()}: only the agent, "
            f"the legal representative, an agent holding {AGENT_MANAGE} or the {REGISTRAR} "
            "role may"
        )
        with self.state.db.transaction() as session:
            row = session.get(AgentGrantRow, grant_id.strip())
            if row is None:
                # only a registrar, who may revoke any grant, learns that the id is unknown
                if principal.has_role(REGISTRAR):
                    raise NotFound("grant_id: no such agent grant")
                raise denied
            if principal.citizen_id is not None and principal.citizen_id == row.agent_id:
                revoked_by: str | None = row.agent_id
            else:
                lp = session.get(LegalPersonRow, row.legal_person_id)
                assert lp is not None
                try:
                    revoked_by = self._grant_authority(session, principal, lp, "revoking an agent")[
                        0
                    ]
                except PermissionDenied:
                    raise denied from None
            if row.revoked_at is not None:
                raise FailedPrecondition(
                    "the grant is already revoked",
                    [PreconditionViolation("STATUS", f"agent_grant:{row.id}", "revoked")],
                )
            row.revoked_at = now
            row.revoked_by_id = revoked_by
            row.revoked_by_actor = principal.actor
            row.revoke_reason = reason.strip()
            session.flush()
            audit.append(
                session,
                actor=principal.actor,
                action="identity.agent.revoke",
                target=f"agent_grant:{row.id}",
                details={"reason": reason.strip(), "revoked_by": revoked_by},
            )
            return self._grants(session, [row])[0]

    def get(self, principal: Principal, grant_id: str) -> AgentGrant:
        """One grant by id, as it stands now: to verifiers and registrars, the agent holding
        it, and those who may list the legal person's grants (the representative, an agent
        holding agent.manage). Anyone else is refused the same way whether the grant exists or
        not."""
        denied = PermissionDenied(f"{principal.actor} may not read agent grant {grant_id!r}")
        with self.state.db.read() as session:
            row = session.get(AgentGrantRow, grant_id) if grant_id else None
            if principal.has_role(VERIFIER) or principal.has_role(REGISTRAR):
                if row is None:
                    raise NotFound("grant_id: no such agent grant")
            elif row is None:
                raise denied
            elif principal.citizen_id is None or principal.citizen_id != row.agent_id:
                lp = session.get(LegalPersonRow, row.legal_person_id)
                assert lp is not None
                try:
                    self._grant_authority(session, principal, lp, "reading an agent grant")
                except PermissionDenied:
                    raise denied from None
            return self._grants(session, [row])[0]

    def list_grants(
        self,
        principal: Principal,
        *,
        legal_person: IdentityRef | None = None,
        agent: IdentityRef | None = None,
        scope: str = "",
        include_inactive: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[AgentGrant]:
        """Grants of a legal person and/or to a citizen, newest first.

        Verifiers and registrars see any; a citizen sees the grants it holds, and the
        representative or an agent holding agent.manage sees the legal person's grants.
        """
        lp_ref = legal_person if legal_person is not None and not legal_person.is_empty else None
        agent_ref = agent if agent is not None and not agent.is_empty else None
        violations: list[FieldViolation | None] = []
        if lp_ref is None and agent_ref is None:
            violations.append(FieldViolation("legal_person", "legal_person or agent is required"))
        if scope and scope not in AGENT_SCOPES:
            violations.append(
                FieldViolation("scope", f"unknown scope; one of {sorted(AGENT_SCOPES)}")
            )
        raise_if(violations)
        size = checked_page_size(page_size)
        now = self.state.now()
        with self.state.db.read() as session:
            lp_row = (
                self.state.resolve(session, lp_ref, "legal_person", IdentityKind.LEGAL_PERSON)
                if lp_ref
                else None
            )
            agent_row = (
                self.state.resolve(session, agent_ref, "agent", IdentityKind.CITIZEN)
                if agent_ref
                else None
            )
            if not (principal.has_role(VERIFIER) or principal.has_role(REGISTRAR)):
                own = agent_row is not None and principal.citizen_id == agent_row.id
                if not own:
                    if lp_row is None:
                        raise PermissionDenied(f"{principal.actor} may not list these grants")
                    lp = session.get(LegalPersonRow, lp_row.id)
                    assert lp is not None
                    self._grant_authority(session, principal, lp, "listing agents")
            filters = (
                "agents",
                lp_row.id if lp_row else "",
                agent_row.id if agent_row else "",
                scope,
                include_inactive,
            )
            position = page_position(page_token, filters, 2)
            stmt = select(AgentGrantRow)
            if lp_row is not None:
                stmt = stmt.where(AgentGrantRow.legal_person_id == lp_row.id)
            if agent_row is not None:
                stmt = stmt.where(AgentGrantRow.agent_id == agent_row.id)
            if scope:
                stmt = stmt.where(has_scope(scope))
            if not include_inactive:
                stmt = stmt.where(active_filter(now))
            if position is not None:
                try:
                    at = datetime.fromisoformat(position[0])
                except ValueError:
                    raise InvalidArgument.field("page_token", "malformed") from None
                stmt = stmt.where(
                    or_(
                        AgentGrantRow.granted_at < at,
                        and_(AgentGrantRow.granted_at == at, AgentGrantRow.id < position[1]),
                    )
                )
            stmt = stmt.order_by(AgentGrantRow.granted_at.desc(), AgentGrantRow.id.desc())
            rows = list(session.scalars(stmt.limit(size + 1)))
            token = ""
            if len(rows) > size:
                rows = rows[:size]
                last = rows[-1]
                token = page_token_for(filters, as_utc(last.granted_at).isoformat(), last.id)
            return Page(tuple(self._grants(session, rows)), token)

    def _grants(self, session: Session, rows: Sequence[AgentGrantRow]) -> list[AgentGrant]:
        if not rows:
            return []
        scopes: dict[str, list[str]] = {r.id: [] for r in rows}
        for grant_id, scope in session.execute(
            select(AgentGrantScopeRow.grant_id, AgentGrantScopeRow.scope)
            .where(AgentGrantScopeRow.grant_id.in_(list(scopes)))
            .order_by(AgentGrantScopeRow.scope)
        ):
            scopes[grant_id].append(scope)
        people = summaries(
            session,
            [
                i
                for r in rows
                for i in (r.legal_person_id, r.agent_id, r.granted_by_id, r.revoked_by_id)
            ],
        )
        now = self.state.now()
        result = []
        for r in rows:
            start, end, revoked = (
                as_utc(r.valid_from),
                opt_utc(r.valid_until),
                opt_utc(r.revoked_at),
            )
            if revoked is not None:
                status = GrantStatus.REVOKED
            elif now < start:
                status = GrantStatus.NOT_YET_VALID
            elif end is not None and now >= end:
                status = GrantStatus.EXPIRED
            else:
                status = GrantStatus.ACTIVE
            result.append(
                AgentGrant(
                    id=r.id,
                    legal_person=people[r.legal_person_id],
                    agent=people[r.agent_id],
                    scopes=tuple(scopes[r.id]),
                    valid_from=start,
                    valid_until=end,
                    status=status,
                    granted_by=people.get(r.granted_by_id) if r.granted_by_id else None,
                    granted_by_actor=r.granted_by_actor,
                    granted_at=as_utc(r.granted_at),
                    revoked_by=people.get(r.revoked_by_id) if r.revoked_by_id else None,
                    revoked_by_actor=r.revoked_by_actor,
                    revoked_at=revoked,
                    revoke_reason=r.revoke_reason,
                )
            )
        return result
