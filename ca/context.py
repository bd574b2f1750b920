"""The handle every CA operation receives: database, key store, configuration, directory,
hierarchy, the in-process OCSP cache and the group commits (certificates, time-stamp tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session

from ca.cache import OcspCache
from ca.config import CaConfig
from ca.directory import SubjectDirectory
from ca.hierarchy import Hierarchy
from ca.models import CaCounter
from ca.store import GroupCommitter
from ca.tsa_ledger import TokenLedger

if TYPE_CHECKING:
    from ca.intake import IssueIntake
from govtrust.db import Database
from hsm.keystore import KeyStore

STATUS_EPOCH = "status"
PKCS11_ISSUE_THREADS = 4


def issuer_epoch_name(issuer: str) -> str:
    """Counter bumped on every status change of a certificate of ``issuer``."""
    return f"status:{issuer}"


@dataclass
class CaContext:
    """Everything CA operations need, opened once per process."""

    db: Database
    keystore: KeyStore
    config: CaConfig
    directory: SubjectDirectory
    hierarchy: Hierarchy
    ocsp_cache: OcspCache = field(default_factory=OcspCache)
    committer: GroupCommitter = field(init=False)
    intake: IssueIntake = field(init=False)
    tsa_ledger: TokenLedger = field(init=False)

    def __post_init__(self) -> None:
        from ca.intake import IssueIntake  # it uses the issuance steps, which use this module

        self.committer = GroupCommitter(self.db)
        threads = self.config.issue_threads
        if self.keystore.signs_on_device:  # the threads wait on the device, not the CPU
            threads = max(threads, PKCS11_ISSUE_THREADS)
        self.intake = IssueIntake(self.committer, threads=threads)
        self.tsa_ledger = TokenLedger(self.db)


def bump_counter(session: Session, name: str) -> int:
    """Increment a named counter inside the caller's transaction; returns the new value."""
    result = session.execute(
        update(CaCounter).where(CaCounter.name == name).values(value=CaCounter.value + 1)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.add(CaCounter(name=name, value=1))
        session.flush()
        return 1
    value = session.get(CaCounter, name, populate_existing=True)
    return value.value if value is not None else 1


def read_counter(session: Session, name: str) -> int:
    """The current value of a named counter (0 when never bumped)."""
    row = session.get(CaCounter, name)
    return row.value if row is not None else 0
