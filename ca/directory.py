"""Where the CA learns who a subject is: a protocol the platform implements over the registry.

``ca`` must not import ``idp`` (the dependency points the other way), so the CA asks a
:class:`SubjectDirectory` and the platform wiring supplies one backed by the identity registry
(and the seal service). Tests use :class:`InMemoryDirectory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CitizenRecord:
    """A citizen as the registry knows them."""

    id: str
    name: str
    id_number: str
    assurance: int
    active: bool = True
    surname: str = ""  # 姓; default: the first character of ``name``
    given_name: str = ""  # 名; default: the rest of ``name``

    def name_parts(self) -> tuple[str, str]:
        """(surname, given name), splitting a Chinese name after its first character unless
        the registry gave them (compound surnames such as 欧阳 need the registry's split)."""
        if self.surname or self.given_name:
            return self.surname, self.given_name
        return self.name[:1], self.name[1:]


@dataclass(frozen=True)
class LegalPersonRecord:
    """A legal person (company, institution) as the registry knows it."""

    id: str
    uscc: str
    name: str
    active: bool = True
    assurance: int = 2


@dataclass(frozen=True)
class SealRecord:
    """A seal as the seal service knows it (owner by USCC, name and kind)."""

    seal_id: str
    owner_id: str
    owner_uscc: str
    owner_name: str
    seal_name: str
    seal_kind: str
    active: bool = True


@runtime_checkable
class SubjectDirectory(Protocol):
    """Look-ups the CA needs from the identity registry and the seal service."""

    def citizen(self, ref: str) -> CitizenRecord | None:
        """A citizen by registry id or resident ID number (any status), or None."""
        ...

    def legal_person(self, ref: str) -> LegalPersonRecord | None:
        """A legal person by registry id or USCC (any status), or None."""
        ...

    def may_apply_for(self, legal_person_id: str, citizen_id: str) -> bool:
        """Whether the citizen is the legal representative or an agent holding
        ``certificate.apply`` for the legal person, now."""
        ...

    def seal(self, seal_id: str) -> SealRecord | None:
        """A seal by id, or None."""
        ...


@dataclass
class InMemoryDirectory:
    """A :class:`SubjectDirectory` held in dictionaries (tests, benchmarks, demos)."""

    citizens: dict[str, CitizenRecord] = field(default_factory=dict)
    legal_persons: dict[str, LegalPersonRecord] = field(default_factory=dict)
    seals: dict[str, SealRecord] = field(default_factory=dict)
    applicants: set[tuple[str, str]] = field(default_factory=set)

    def add_citizen(self, record: CitizenRecord) -> CitizenRecord:
        """Register a citizen (by id and by ID number)."""
        self.citizens[record.id] = record
        self.citizens[record.id_number] = record
        return record

    def add_legal_person(
        self, record: LegalPersonRecord, *, representatives: tuple[str, ...] = ()
    ) -> LegalPersonRecord:
        """Register a legal person and the citizens who may apply for its certificates."""
        self.legal_persons[record.id] = record
        self.legal_persons[record.uscc] = record
        for citizen_id in representatives:
            self.applicants.add((record.id, citizen_id))
        return record

    def add_seal(self, record: SealRecord) -> SealRecord:
        """Register a seal."""
        self.seals[record.seal_id] = record
        return record

    def citizen(self, ref: str) -> CitizenRecord | None:
        return self.citizens.get(ref)

    def legal_person(self, ref: str) -> LegalPersonRecord | None:
        return self.legal_persons.get(ref)

    def may_apply_for(self, legal_person_id: str, citizen_id: str) -> bool:
        return (legal_person_id, citizen_id) in self.applicants

    def seal(self, seal_id: str) -> SealRecord | None:
        return self.seals.get(seal_id)
