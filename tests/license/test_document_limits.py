"""Limits on untrusted licence PDFs (issue #13): a sealed licence with hundreds of empty
incremental updates is refused before anything walks its revisions; the revision walk is
linear when the limit is raised; a spent or cancelled budget stops the check inside pyHanko."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pyhanko.pdf_utils.xref import XRefCache

from govtrust.budget import Budget, BudgetExceeded, WorkCancelled, budget_scope
from govtrust.pdf_guard import (
    DEFAULT_LIMITS,
    DocumentLimits,
    DocumentTooComplex,
    configure_limits,
    current_limits,
)
from license.checking import Verdict
from license.document_check import check_pdf
from license.pdf_reader import open_pdf
from tests.license.test_document import Licence, licence  # noqa: F401 - fixture
from tests.seal.conftest import live_ca, world  # noqa: F401 - fixtures
from tests.unchanged import unchanged
from tests.untrusted_pdf import append_empty_updates

ROOMY = DocumentLimits(max_revisions=10_000)


@contextmanager
def _cpu_seconds() -> Iterator[list[float]]:
    """This thread's CPU seconds inside the block, without the collector: a full collection
    of the whole suite's heap landing inside one measurement cost 3.7 s in a CI run and said
    nothing about the walk."""
    spent: list[float] = []
    gc.collect()
    gc.disable()
    start = time.thread_time()
    try:
        yield spent
    finally:
        spent.append(time.thread_time() - start)
        gc.enable()


def _cpu(call: object) -> float:
    assert callable(call)
    with _cpu_seconds() as spent:
        call()
    return spent[0]


def test_many_updates_are_refused_before_the_revisions_are_walked(licence: Licence) -> None:  # noqa: F811
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    hostile = append_empty_updates(pdf, 2000)  # the file: 78 s before the fix
    assert current_limits() == DEFAULT_LIMITS
    with (
        unchanged(licence.world.db, licence.world.keystore),  # its snapshots are not timed
        _cpu_seconds() as spent,
        pytest.raises(DocumentTooComplex) as refused,
    ):
        check_pdf(hostile, licence.roots, licence.lists)
    assert spent[0] < 0.5  # ~20 ms: 101 sections read, nothing validated
    assert refused.value.limit == "max_revisions" and refused.value.allowed == 100
    assert "GOVTRUST_PDF_MAX_REVISIONS" in refused.value.message
    # just past the limit: 300 updates were 2 s and VALID before the fix
    with (
        unchanged(licence.world.db, licence.world.keystore),
        pytest.raises(DocumentTooComplex, match="revisions"),
    ):
        check_pdf(append_empty_updates(pdf, 300), licence.roots, licence.lists)
    # within it, the document is still checked as before
    assert check_pdf(append_empty_updates(pdf, 50), licence.roots, licence.lists).verdict is (
        Verdict.VALID
    )
    assert check_pdf(pdf, licence.roots, licence.lists).verdict is Verdict.VALID


def test_object_and_signature_limits_name_the_limit(licence: Licence) -> None:  # noqa: F811
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    with (
        unchanged(licence.world.db, licence.world.keystore),
        pytest.raises(DocumentTooComplex) as objects,
    ):
        check_pdf(pdf, licence.roots, licence.lists, limits=DocumentLimits(max_objects=10))
    assert objects.value.limit == "max_objects" and "GOVTRUST_PDF_MAX_OBJECTS" in str(objects.value)
    with (
        unchanged(licence.world.db, licence.world.keystore),
        pytest.raises(DocumentTooComplex) as signatures,
    ):
        check_pdf(pdf, licence.roots, licence.lists, limits=DocumentLimits(max_signatures=0))
    assert signatures.value.limit == "max_signatures" and signatures.value.count == 1
    # the process's limits apply when none are given (the server sets them from its settings)
    configure_limits(DocumentLimits(max_revisions=3))
    try:
        with (
            unchanged(licence.world.db, licence.world.keystore),
            pytest.raises(DocumentTooComplex, match="at least 4 revisions"),
        ):
            check_pdf(append_empty_updates(pdf, 5), licence.roots, licence.lists)
    finally:
        configure_limits(DEFAULT_LIMITS)


def test_the_revision_walk_is_linear(licence: Licence) -> None:  # noqa: F811
    """Four times the updates cost about four times as much (it was sixteen times)."""
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    small, large = append_empty_updates(pdf, 150), append_empty_updates(pdf, 600)
    check_pdf(small, licence.roots, licence.lists, limits=ROOMY)  # warm caches
    verdicts: list[Verdict] = []
    cost_small = min(
        _cpu(
            lambda: verdicts.append(
                check_pdf(small, licence.roots, licence.lists, limits=ROOMY).verdict
            )
        )
        for _ in range(2)
    )
    cost_large = _cpu(
        lambda: verdicts.append(
            check_pdf(large, licence.roots, licence.lists, limits=ROOMY).verdict
        )
    )
    assert verdicts == [Verdict.VALID] * 3
    assert cost_large < 7 * cost_small, (cost_small, cost_large)


def test_the_indexed_history_answers_like_pyhanko(licence: Licence) -> None:  # noqa: F811
    """The indexed ``get_last_change`` gives pyHanko's own answer for every object."""
    from govtrust.pdf_guard import _original_get_last_change

    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    reader = open_pdf(append_empty_updates(pdf, 7))
    cache = reader.xrefs
    assert XRefCache.get_last_change is not _original_get_last_change
    from pyhanko.pdf_utils.generic import Reference

    refs = {
        (ref.idnum, ref.generation)
        for revision in range(cache.total_revisions)
        for ref in cache.explicit_refs_in_revision(revision)
    }
    assert len(refs) > 20
    for idnum, generation in [*sorted(refs), (9999, 0), (1, 7)]:
        ref = Reference(idnum, generation, reader)
        try:
            expected: int | None = _original_get_last_change(cache, ref)
        except KeyError:
            expected = None
        try:
            got: int | None = cache.get_last_change(ref)
        except KeyError:
            got = None
        assert got == expected, ref


class _Counting(Budget):
    """A budget counting its checkpoints, which the caller abandons (a client going away) at
    checkpoint ``cancel_at`` (0: never)."""

    def __init__(self, cancel_at: int = 0) -> None:
        super().__init__(None)
        self.cancel_at = cancel_at
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.checks == self.cancel_at:
            self.cancel()
        super().check()


def test_a_cancelled_or_spent_budget_stops_the_check_inside_the_revision_walk(
    licence: Licence,  # noqa: F811
) -> None:
    pdf = append_empty_updates(licence.documents.make_pdf(licence.doc, licence.context), 90)
    whole = _Counting()
    with budget_scope(whole):
        assert check_pdf(pdf, licence.roots, licence.lists).verdict is Verdict.VALID
    assert whole.checks > 400  # every object look-up of pyHanko's walk is a checkpoint
    abandoned = _Counting(cancel_at=whole.checks // 2)  # half-way through the walk
    with (
        unchanged(licence.world.db, licence.world.keystore),
        budget_scope(abandoned),
        pytest.raises(WorkCancelled),
    ):
        check_pdf(pdf, licence.roots, licence.lists)
    assert abandoned.checks == whole.checks // 2  # stopped there: not swallowed, not resumed
    spent = Budget(0.001)
    time.sleep(0.002)
    with (
        unchanged(licence.world.db, licence.world.keystore),
        budget_scope(spent),
        pytest.raises(BudgetExceeded, match="time budget"),
    ):
        check_pdf(pdf, licence.roots, licence.lists)
    assert check_pdf(pdf, licence.roots, licence.lists).verdict is Verdict.VALID  # no scope
