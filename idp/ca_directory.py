"""The identity registry as the CA's :class:`ca.directory.SubjectDirectory`.

The CA must not import ``idp``; the platform wiring hands it this adapter, so certificate
subjects come from the registry (decrypted here, inside the registry's own package), never from
a CSR.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.directory import CitizenRecord, LegalPersonRecord, SealRecord
from idp.agent_grants import active_scopes
from idp.identifiers import InvalidIdentifier
from idp.models import CitizenRow, IdentityRow, LegalPersonRow
from idp.pii import PURPOSE_ID_NUMBER
from idp.registry import IdentityRegistry
from idp.types import IdentityStatus

CERTIFICATE_APPLY = "certificate.apply"


class RegistryDirectory:
    """Answers the CA's subject look-ups from the identity registry (any status)."""

    def __init__(self, registry: IdentityRegistry) -> None:
        self.registry = registry

    def citizen(self, ref: str) -> CitizenRecord | None:
        """A citizen by registry id or resident ID number, with the number decrypted."""
        with self.registry.db.read() as session:
            found = self._citizen_row(session, ref)
            if found is None:
                return None
            identity, row = found
            number = self.registry.codec.decrypt(row.id_number_enc, PURPOSE_ID_NUMBER)
            return CitizenRecord(
                id=identity.id,
                name=identity.name,
                id_number=number,
                assurance=identity.assurance_level,
                active=identity.status == IdentityStatus.ACTIVE.value,
            )

    def legal_person(self, ref: str) -> LegalPersonRecord | None:
        """A legal person by registry id or USCC."""
        with self.registry.db.read() as session:
            query = select(IdentityRow, LegalPersonRow).join(
                LegalPersonRow, LegalPersonRow.id == IdentityRow.id
            )
            found = session.execute(
                query.where(
                    (LegalPersonRow.id == ref) | (LegalPersonRow.uscc == ref.strip().upper())
                )
            ).first()
            if found is None:
                return None
            identity, row = found
            return LegalPersonRecord(
                id=identity.id,
                uscc=row.uscc,
                name=identity.name,
                active=identity.status == IdentityStatus.ACTIVE.value,
                assurance=identity.assurance_level,
            )

    def may_apply_for(self, legal_person_id: str, citizen_id: str) -> bool:
        """The legal representative, or an agent holding ``certificate.apply`` now."""
        with self.registry.db.read() as session:
            row = session.get(LegalPersonRow, legal_person_id)
            if row is None:
                return False
            if row.legal_representative_id == citizen_id:
                return True
            scopes = active_scopes(
                session, legal_person_id, citizen_id, CERTIFICATE_APPLY, self.registry.now()
            )
            return CERTIFICATE_APPLY in scopes

    def seal(self, seal_id: str) -> SealRecord | None:
        """Seals are answered by the seal service's directory, which wraps this one."""
        del seal_id
        return None

    def _citizen_row(self, session: Session, ref: str) -> tuple[IdentityRow, CitizenRow] | None:
        query = select(IdentityRow, CitizenRow).join(CitizenRow, CitizenRow.id == IdentityRow.id)
        try:
            resident = self.registry.parse_resident_id(ref, "citizen")
        except InvalidIdentifier:
            resident = None
        if resident is not None:
            index = self.registry.codec.blind_index(resident.number, PURPOSE_ID_NUMBER)
            found = session.execute(query.where(CitizenRow.id_number_index == index)).first()
        else:
            found = session.execute(query.where(CitizenRow.id == ref)).first()
        return None if found is None else (found[0], found[1])
