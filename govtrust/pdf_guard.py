# mypy: disable-error-code="no-untyped-call"
"""Limits on untrusted PDFs, checked before the expensive work, and a linear revision history.

Checking a PDF's signatures costs, per signature, a walk over every revision after it (pyHanko's
difference analysis), and per revision a look-up of each object it touches. So the cost of a
check is bounded by bounding what the file may hold, right after its cross-reference sections
are read and before any signature is validated (:func:`check_structure`,
:func:`check_signature_count`):

* ``max_revisions`` — incremental updates (cross-reference sections); a real document has a
  handful (each seal, time-stamp or DSS update adds one);
* ``max_objects`` — cross-reference entries over all revisions;
* ``max_signatures`` — signature fields (signatures and document time-stamps).

Reading the cross-reference sections is itself linear in their number (≈ 0.1 ms each, so a
20 MB file of empty updates would take half a minute): inside :func:`reading_limits`, pyHanko's
section reader stops as soon as a file has more than ``max_revisions`` of them.

Over a limit raises :class:`DocumentTooComplex` (a ``ResourceExhausted``: RESOURCE_EXHAUSTED
over gRPC, 413 on the public page) naming the limit and its setting. The defaults
(:data:`DEFAULT_LIMITS`) are generous for real documents; the server sets the process's limits
from :class:`govtrust.config.Settings` (:func:`configure_limits`).

pyHanko answers "in which revision did this object last change?" by scanning every
cross-reference section, newest first, and asks it for each object each revision's view
resolves: quadratic in the number of revisions (400 empty updates: 5 s, 2,000: 78 s).
:func:`install_linear_history` replaces ``XRefCache.get_last_change``, process wide, with a
look-up in a per-file index of which sections mention each object number (built once, linear in
the entries); the sections that do are still asked in the same order, so the answer is pyHanko's
own. Each look-up is also a :func:`govtrust.budget.checkpoint`, so a cancelled or over-budget
check stops inside pyHanko's revision walk.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyhanko.pdf_utils.xref import XRefBuilder, XRefCache

from govtrust.budget import checkpoint
from govtrust.errors import ResourceExhausted


@dataclass(frozen=True)
class DocumentLimits:
    """How much an untrusted PDF may hold (see the module docstring)."""

    max_revisions: int = 100
    max_objects: int = 100_000
    max_signatures: int = 50


DEFAULT_LIMITS = DocumentLimits()
_SETTINGS = {
    "max_revisions": ("revisions (incremental updates)", "GOVTRUST_PDF_MAX_REVISIONS"),
    "max_objects": ("cross-reference entries", "GOVTRUST_PDF_MAX_OBJECTS"),
    "max_signatures": ("signatures", "GOVTRUST_PDF_MAX_SIGNATURES"),
}
_limits = DEFAULT_LIMITS


class DocumentTooComplex(ResourceExhausted):
    """The PDF holds more revisions, objects or signatures than the configured limit."""

    def __init__(self, limit: str, count: int, allowed: int, *, at_least: bool = False) -> None:
        what, setting = _SETTINGS[limit]
        has = f"at least {count}" if at_least else str(count)
        super().__init__(
            f"pdf: the document has {has} {what}, more than the limit of {allowed} ({setting})"
        )
        self.limit = limit
        self.count = count
        self.allowed = allowed


def configure_limits(limits: DocumentLimits) -> None:
    """Set the process's limits (the server does, from its settings)."""
    global _limits
    _limits = limits


def current_limits() -> DocumentLimits:
    """The process's limits (:data:`DEFAULT_LIMITS` until configured)."""
    return _limits


def _sections(reader: Any) -> list[Any]:
    sections: list[Any] = reader.xrefs._xref_sections
    return sections


def object_count(reader: Any) -> int:
    """Cross-reference entries over all of the reader's revisions."""
    total = 0
    for section in _sections(reader):
        data = section.xref_data
        total += len(data.standard_xrefs) + len(data.xrefs_in_objstm) + len(data.freed)
        if data.hybrid is not None:
            hybrid = data.hybrid.xref_data
            total += len(hybrid.standard_xrefs) + len(hybrid.xrefs_in_objstm) + len(hybrid.freed)
    return total


def check_structure(reader: Any, limits: DocumentLimits | None = None) -> None:
    """DocumentTooComplex when ``reader``'s file has too many revisions or objects."""
    limits = limits or _limits
    revisions = int(reader.xrefs.total_revisions)
    if revisions > limits.max_revisions:
        raise DocumentTooComplex("max_revisions", revisions, limits.max_revisions)
    objects = object_count(reader)
    if objects > limits.max_objects:
        raise DocumentTooComplex("max_objects", objects, limits.max_objects)


def check_signature_count(count: int, limits: DocumentLimits | None = None) -> None:
    """DocumentTooComplex when a file has more than ``max_signatures`` signatures."""
    limits = limits or _limits
    if count > limits.max_signatures:
        raise DocumentTooComplex("max_signatures", count, limits.max_signatures)


_reading: contextvars.ContextVar[DocumentLimits | None] = contextvars.ContextVar(
    "govtrust_pdf_limits", default=None
)


@contextmanager
def reading_limits(limits: DocumentLimits | None = None) -> Iterator[DocumentLimits]:
    """Within the block, a PDF reader opened in this context stops reading cross-reference
    sections past ``max_revisions`` (DocumentTooComplex). Without ``limits``: the enclosing
    block's, else the process's."""
    active = limits or _reading.get() or _limits
    token = _reading.set(active)
    try:
        yield active
    finally:
        _reading.reset(token)


def _counted(read: Any) -> Any:
    def read_section(self: Any, declared_startxref: int) -> Any:
        checkpoint()
        limits = _reading.get()
        if limits is not None and len(self.sections) >= limits.max_revisions:
            raise DocumentTooComplex(
                "max_revisions", len(self.sections) + 1, limits.max_revisions, at_least=True
            )
        return read(self, declared_startxref)

    read_section.__wrapped__ = read  # type: ignore[attr-defined]
    return read_section


# --- a linear XRefCache.get_last_change --------------------------------------------------------

_original_get_last_change = XRefCache.get_last_change
_index_lock = threading.Lock()


def _mentions(cache: Any) -> dict[int, list[int]]:
    """Object number -> the sections (oldest first) whose entries name it, built once."""
    index: dict[int, list[int]] | None = cache.__dict__.get("_govtrust_mentions")
    if index is not None:
        return index
    built: dict[int, list[int]] = {}
    for position, section in enumerate(cache._xref_sections):
        data = section.xref_data
        numbers = set(data.standard_xrefs) | set(data.xrefs_in_objstm) | set(data.freed)
        if data.hybrid is not None:
            hybrid = data.hybrid.xref_data
            numbers |= set(hybrid.standard_xrefs) | set(hybrid.xrefs_in_objstm) | set(hybrid.freed)
        for number in numbers:
            built.setdefault(number, []).append(position)
    with _index_lock:
        index = cache.__dict__.setdefault("_govtrust_mentions", built)
    return index


def _indexed_get_last_change(self: Any, ref: Any) -> int:
    """pyHanko's ``get_last_change``, asking only the sections that name the object."""
    checkpoint()
    sections = self._xref_sections
    for position in reversed(_mentions(self).get(ref.idnum, ())):
        try:
            sections[position].xref_data.try_resolve(ref)
        except KeyError:
            continue
        return position
    raise KeyError(ref)


def install_linear_history() -> None:
    """Replace pyHanko's quadratic ``XRefCache.get_last_change`` and count the sections its
    reader reads (see the module docstring); idempotent."""
    if XRefCache.get_last_change is _original_get_last_change:
        XRefCache.get_last_change = _indexed_get_last_change  # type: ignore[method-assign]
    for name in ("_read_xref_table", "_read_xref_stream"):
        method = getattr(XRefBuilder, name)
        if not hasattr(method, "__wrapped__"):
            setattr(XRefBuilder, name, _counted(method))


install_linear_history()
