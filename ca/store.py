"""Group commit of issued certificates: many issuances, one durable transaction.

Concurrent issuances (the gRPC worker pool runs several at once) hand their finished rows —
certificate, pre-produced OCSP response, audit entry — to a :class:`GroupCommitter`. The first
caller to arrive while no commit is running becomes the leader: it takes everything queued (up
to ``max_batch``), inserts it with one multi-row INSERT per table and one audit record per
(actor, action) in ONE transaction, commits, and wakes the others. Each caller returns only
after the transaction holding its certificate committed, so "issued" always means "stored".
If a batch fails, its items are retried one by one so that one bad item fails alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, insert, update

from ca.models import CaCertificate, CaOcspResponse
from govtrust import audit
from govtrust.db import Database


@dataclass
class PendingIssue:
    """One issued certificate waiting to be committed."""

    certificate: dict[str, Any]
    ocsp: dict[str, Any]
    actor: str
    action: str
    details: dict[str, Any]
    renewed_from: str | None = None
    done: bool = False
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GroupCommitter:
    """Leader/follower group commit over one database."""

    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[PendingIssue] = []
        self._busy = False
        self._cond = threading.Condition()

    def submit(self, item: PendingIssue) -> None:
        """Queue ``item`` and return once it is committed (or raise why it was not)."""
        with self._cond:
            self._queue.append(item)
            while not item.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error

    def _commit(self, batch: list[PendingIssue]) -> None:
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - isolate the failing item below
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for item in batch:
                    try:
                        self._write([item])
                    except Exception as single:  # noqa: BLE001 - reported to its caller
                        item.error = single
        for item in batch:
            item.done = True

    def _write(self, batch: list[PendingIssue]) -> None:
        with self.db.transaction() as session:
            certificates = cast(Table, CaCertificate.__table__)
            responses = cast(Table, CaOcspResponse.__table__)
            session.execute(insert(certificates), [i.certificate for i in batch])
            session.execute(insert(responses), [i.ocsp for i in batch])
            for item in batch:
                if item.renewed_from is not None:
                    session.execute(
                        update(CaCertificate)
                        .where(CaCertificate.id == item.renewed_from)
                        .values(renewed_by=item.certificate["id"])
                    )
            groups: dict[tuple[str, str], list[PendingIssue]] = {}
            for item in batch:
                groups.setdefault((item.actor, item.action), []).append(item)
            for (actor, action), items in groups.items():
                targets = [
                    f"certificate/{i.certificate['issuer']}/{i.certificate['serial']}"
                    for i in items
                ]
                audit.append(
                    session,
                    actor=actor,
                    action=action,
                    target=targets[0] if len(targets) == 1 else f"certificates/{len(targets)}",
                    details={
                        "certificates": [
                            {"target": t, **i.details} for t, i in zip(targets, items, strict=True)
                        ]
                    },
                )
