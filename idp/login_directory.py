"""The identity registry's read side for logins and claims: functions over the registry's
tables (this package's), for the OIDC provider and anyone else in idp that needs a login
look-up; each costs one or two indexed queries. Personal data is decrypted only for the scopes
asked and allowed (``identity`` needs an explicit client permission, the caller's to decide).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select

from govtrust.db import Database
from idp.identity_status import staff_roles_of
from idp.models import (
    AgentGrantRow,
    CitizenRow,
    IdentityRow,
    LegalPersonRow,
    StaffAccountRow,
    StaffRow,
)
from idp.pii import PURPOSE_ID_NUMBER, PURPOSE_PHONE, PiiCodec


@dataclass(frozen=True)
class IdentityInfo:
    """The registry facts the provider uses for one identity."""

    id: str
    kind: str
    name: str
    status: str
    assurance_level: int


@dataclass(frozen=True)
class ActingCandidate:
    """A citizen who may act for a legal person at login (representative or agent)."""

    id: str
    name: str
    masked_identifier: str
    relation: str  # representative | agent


def identity(db: Database, identity_id: str) -> IdentityInfo | None:
    """One identity's summary, or None."""
    with db.read() as session:
        row = session.get(IdentityRow, identity_id)
        if row is None:
            return None
        return IdentityInfo(row.id, row.kind, row.name, row.status, row.assurance_level)


def citizen_by_id_number(db: Database, codec: PiiCodec, number: str) -> str | None:
    """The citizen registered with this resident ID number (via its blind index)."""
    index = codec.blind_index(number.upper(), PURPOSE_ID_NUMBER)
    with db.read() as session:
        return session.scalar(select(CitizenRow.id).where(CitizenRow.id_number_index == index))


def legal_person_by_uscc(db: Database, uscc: str) -> str | None:
    """The legal person registered with this USCC."""
    with db.read() as session:
        return session.scalar(select(LegalPersonRow.id).where(LegalPersonRow.uscc == uscc.upper()))


def acting_candidates(db: Database, legal_person_id: str) -> list[ActingCandidate]:
    """The legal representative and every citizen with a current agent grant."""
    now = datetime.now(UTC)
    with db.read() as session:
        lp = session.get(LegalPersonRow, legal_person_id)
        if lp is None:
            return []
        agent_ids = set(
            session.scalars(
                select(AgentGrantRow.agent_id)
                .where(AgentGrantRow.legal_person_id == legal_person_id)
                .where(AgentGrantRow.revoked_at.is_(None))
                .where(AgentGrantRow.valid_from <= now)
                .where(or_(AgentGrantRow.valid_until.is_(None), AgentGrantRow.valid_until > now))
            )
        )
        ids = {lp.legal_representative_id, *agent_ids}
        rows = {
            r.id: r
            for r in session.scalars(select(IdentityRow).where(IdentityRow.id.in_(ids)))
            if r.status == "active"
        }
    out: list[ActingCandidate] = []
    rep = rows.get(lp.legal_representative_id)
    if rep is not None:
        out.append(ActingCandidate(rep.id, rep.name, rep.masked_identifier, "representative"))
    for agent_id in sorted(agent_ids - {lp.legal_representative_id}):
        row = rows.get(agent_id)
        if row is not None:
            out.append(ActingCandidate(row.id, row.name, row.masked_identifier, "agent"))
    return out


def represented_by(db: Database, citizen_id: str) -> list[str]:
    """The legal persons ``citizen_id`` may act for: those it represents and those with a
    current agent grant to it (the domain still checks each act's scope), sorted."""
    now = datetime.now(UTC)
    with db.read() as session:
        ids = set(
            session.scalars(
                select(LegalPersonRow.id).where(
                    LegalPersonRow.legal_representative_id == citizen_id
                )
            )
        )
        ids |= set(
            session.scalars(
                select(AgentGrantRow.legal_person_id)
                .where(AgentGrantRow.agent_id == citizen_id)
                .where(AgentGrantRow.revoked_at.is_(None))
                .where(AgentGrantRow.valid_from <= now)
                .where(or_(AgentGrantRow.valid_until.is_(None), AgentGrantRow.valid_until > now))
            )
        )
    return sorted(ids)


def staff_roles(db: Database, identity_id: str) -> frozenset[str]:
    """A staff member's govtrust roles (empty for anyone else)."""
    with db.read() as session:
        roles = session.scalar(select(StaffRow.roles).where(StaffRow.id == identity_id))
    return staff_roles_of(roles)


def claims(
    db: Database,
    codec: PiiCodec,
    identity_id: str,
    scopes: frozenset[str],
    *,
    acting_person_id: str | None = None,
    allow_identity: bool = False,
    system_id: str = "",
) -> dict[str, Any]:
    """Standard and govtrust claims for ``scopes`` (OIDC Core §5.4)."""
    claims: dict[str, Any] = {}
    with db.read() as session:
        ident = session.get(IdentityRow, identity_id)
        if ident is None:
            return claims
        claims["identity_kind"] = ident.kind
        if "profile" in scopes:
            claims["name"] = ident.name
            claims["updated_at"] = int(ident.updated_at.timestamp())
            claims["assurance_level"] = ident.assurance_level
        if ident.kind == "citizen":
            citizen = session.get(CitizenRow, identity_id)
            if citizen is not None:
                _person_claims(codec, claims, scopes, citizen, allow_identity)
        elif ident.kind == "staff":
            staff = session.get(StaffRow, identity_id)
            if staff is not None:
                if "profile" in scopes:
                    claims["department"] = staff.department_code
                _contact_claims(codec, claims, scopes, staff.email, staff.phone_enc)
                if system_id:
                    account = session.scalar(
                        select(StaffAccountRow)
                        .where(StaffAccountRow.staff_id == identity_id)
                        .where(StaffAccountRow.system_id == system_id)
                    )
                    if account is not None and account.local_account_id:
                        claims["local_account_id"] = account.local_account_id
        elif ident.kind == "legal_person" and "legal_person" in scopes:
            lp = session.get(LegalPersonRow, identity_id)
            if lp is not None:
                entry: dict[str, Any] = {"uscc": lp.uscc, "name": ident.name}
                if acting_person_id:
                    actor = session.get(IdentityRow, acting_person_id)
                    if actor is not None:
                        entry["acting_person"] = {
                            "id": actor.id,
                            "name": actor.name,
                            "masked_id_number": actor.masked_identifier,
                            "is_legal_representative": (actor.id == lp.legal_representative_id),
                        }
                claims["legal_person"] = entry
    return claims


def _person_claims(
    codec: PiiCodec,
    claims: dict[str, Any],
    scopes: frozenset[str],
    citizen: CitizenRow,
    allow: bool,
) -> None:
    if "profile" in scopes:
        claims["birthdate"] = citizen.birth_date.isoformat()
        claims["gender"] = {"male": "male", "female": "female"}.get(citizen.sex, citizen.sex)
    _contact_claims(codec, claims, scopes, citizen.email, citizen.phone_enc)
    if "address" in scopes:
        claims["address"] = {"country": "CN", "region": citizen.region_code}
    if "identity" in scopes and allow:
        claims["resident_id_number"] = codec.decrypt(citizen.id_number_enc, PURPOSE_ID_NUMBER)


def _contact_claims(
    codec: PiiCodec,
    claims: dict[str, Any],
    scopes: frozenset[str],
    email: str | None,
    phone_enc: bytes | None,
) -> None:
    """``email`` and ``phone_number`` (unverified) for the scopes that ask for them."""
    if "email" in scopes and email:
        claims["email"] = email
        claims["email_verified"] = False
    if "phone" in scopes and phone_enc:
        claims["phone_number"] = codec.decrypt(phone_enc, PURPOSE_PHONE)
        claims["phone_number_verified"] = False
