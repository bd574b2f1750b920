"""Seal uses for other packages: who applied a seal to a document.

``seal_events`` is the seal service's table; the verification service reads uses only through
this module, :class:`SealUseLookup` (one point query on a driver-level fast reader, joined with
the registry's identity fragment :func:`idp.identity_status.identity_join`); a seal's status at
a past moment comes from its history (``SealService.history``, cached by the verifier as
:class:`verify.pdf.SealFacts`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from govtrust.fastsql import PointReader
from idp.identity_status import identity_join, identity_summary_of
from idp.types import IdentitySummary
from seal.types import USE_ACTIONS

MAX_DIGESTS = 192
"""At most this many candidate document digests are looked up (the lowest, sorted)."""


PDF_USE = ("seal_pdf",)
"""The use that seals a PDF (whose digests are SHA-256 of its earlier revisions)."""


@functools.cache
def _use_sql(count: int, actions: tuple[str, ...]) -> str:
    """The seal-use look-up for ``count`` digests among uses of ``actions``."""
    if not actions or not set(actions) <= set(USE_ACTIONS):
        raise ValueError(f"not seal uses: {actions!r}")
    marks = ", ".join("?" * count)  # placeholders only: no value is ever spliced in
    names = ", ".join(f"'{action}'" for action in actions)  # fixed names of USE_ACTIONS
    columns, join = identity_join("e.actor_id", required=True)
    head = (
        f"SELECT {columns} FROM seal_events e{join}"  # noqa: S608 - fixed fragments, no values
        f" WHERE e.seal_id = ? AND e.action IN ({names}) AND e.digest IN ("
    )
    return head + marks + ") ORDER BY e.sequence DESC LIMIT 1"


class SealUseLookup:
    """Point reads of seal uses (``seal_events`` rows of a use action) on a fast reader."""

    def __init__(self, reader: PointReader) -> None:
        self._reader = reader

    def applied_by(
        self, seal_id: str, digests: Iterable[bytes], actions: tuple[str, ...] = PDF_USE
    ) -> IdentitySummary | None:
        """Who last applied seal ``seal_id`` (a use among ``actions``: by default sealing a
        PDF, whose SHA-256 is one of ``digests``) to a document with one of ``digests``; None
        when no such use was recorded here."""
        chosen = sorted(digests)[:MAX_DIGESTS]
        if not chosen:
            return None
        reader = self._reader
        row = reader.fetchone(reader.sql(_use_sql(len(chosen), actions)), (seal_id, *chosen))
        return identity_summary_of(row)
