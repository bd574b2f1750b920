"""Seal uses and history for other packages: who applied a seal to a document, and the seal's
status at a past moment.

``seal_events`` is the seal service's table; the verification service reads it only through
this module: :class:`SealUseLookup` (one point query on a driver-level fast reader, joined with
the registry's identity fragment :func:`idp.identity_status.identity_join`), :func:`actor_of_use`
and :func:`status_at`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select

from govtrust.db import Database, as_utc
from govtrust.fastsql import PointReader
from idp.identity_status import identity_join, identity_summary_of
from idp.types import IdentitySummary
from seal.models import SealEventRow
from seal.types import USE_ACTIONS, SealStatus

MAX_DIGESTS = 192
"""At most this many candidate document digests are looked up (the lowest, sorted)."""


@functools.cache
def _use_sql(count: int) -> str:
    """The seal-use look-up for ``count`` digests."""
    marks = ", ".join("?" * count)  # placeholders only: no value is ever spliced in
    columns, join = identity_join("e.actor_id", required=True)
    head = (
        f"SELECT {columns} FROM seal_events e{join}"  # noqa: S608 - fixed fragments, no values
        " WHERE e.seal_id = ? AND e.action = 'seal_pdf' AND e.digest IN ("
    )
    return head + marks + ") ORDER BY e.sequence DESC LIMIT 1"


class SealUseLookup:
    """Point reads of seal uses (the ``seal_pdf`` events) on a fast reader."""

    def __init__(self, reader: PointReader) -> None:
        self._reader = reader

    def applied_by(self, seal_id: str, digests: Iterable[bytes]) -> IdentitySummary | None:
        """Who last applied seal ``seal_id`` to a document whose SHA-256 is one of
        ``digests``; None when no such use was recorded here."""
        chosen = sorted(digests)[:MAX_DIGESTS]
        if not chosen:
            return None
        reader = self._reader
        row = reader.fetchone(reader.sql(_use_sql(len(chosen))), (seal_id, *chosen))
        return identity_summary_of(row)


def status_at(db: Database, seal_id: str, moment: datetime) -> SealStatus | None:
    """The seal's lifecycle status at ``moment`` from its history (None before it existed)."""
    status = None
    with db.read() as session:
        rows = session.execute(
            select(SealEventRow.to_status, SealEventRow.occurred_at)
            .where(
                SealEventRow.seal_id == seal_id,
                SealEventRow.action.not_in(USE_ACTIONS),
            )
            .order_by(SealEventRow.sequence)
        ).all()
    for to_status, occurred_at in rows:
        if as_utc(occurred_at) <= moment and to_status:
            status = to_status
    if status is None:
        return None
    try:
        return SealStatus(status)
    except ValueError:
        return None


def actor_of_use(db: Database, seal_id: str, digest: bytes) -> str | None:
    """The identity id of whoever applied seal ``seal_id`` (to a PDF or to signed data) over
    the document digest ``digest``; None when no such use was recorded."""
    with db.read() as session:
        actor: str | None = session.scalar(
            select(SealEventRow.actor_id)
            .where(
                SealEventRow.seal_id == seal_id,
                SealEventRow.action.in_(USE_ACTIONS),
                SealEventRow.digest == digest,
            )
            .limit(1)
        )
    return actor or None
