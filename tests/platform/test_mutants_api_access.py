"""Kills the mutants ``make mutate`` found alive in govtrust/api/access.py. ``RPC_ACCESS`` is
built when the module is imported, before mutmut switches a mutant on, so the seal rows are
checked here by calling ``_seal`` at test time against the published rules (docs/security.md
"role tables"), and the mark handling of ``with_role_tables`` directly
(docs/testing.md "Mutation testing")."""

from __future__ import annotations

import pytest

from govtrust.api.access import BEGIN_MARK, END_MARK, _seal, render_role_tables, with_role_tables
from govtrust.rpc.access import Access

OWNER_RELATIONS = (
    "the owner's legal representative",
    "an agent of the owner holding `seal.apply`",
    "the citizen owning a personal seal",
)


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        (("apply",), Access(relations=OWNER_RELATIONS)),
        (("approve", "reject"), Access(roles=("seal-reviewer",))),
        (("make",), Access(roles=("seal-maker",))),
        (("revoke",), Access(roles=("seal-filing",), relations=OWNER_RELATIONS)),
        (("destroy",), Access(roles=("seal-filing",))),
    ],
)
def test_seal_rows_follow_the_transition_table(
    operations: tuple[str, ...], expected: Access
) -> None:
    assert _seal(*operations) == expected


def test_seal_row_extra_relations_come_after_the_owner() -> None:
    rule = _seal("suspend", extra=("the grantee",))
    assert rule == Access(roles=("seal-filing",), relations=(*OWNER_RELATIONS, "the grantee"))
    assert _seal("make", extra=("x",)).relations == ("x",)


def test_role_tables_replace_only_the_first_marked_region() -> None:
    document = f"intro\n{BEGIN_MARK}\nold\n{END_MARK}\nmiddle {END_MARK} tail\n"
    expected = (
        f"intro\n{BEGIN_MARK}\n\n{render_role_tables()}\n\n{END_MARK}\nmiddle {END_MARK} tail\n"
    )
    assert with_role_tables(document) == expected
    twice = f"{BEGIN_MARK}\na\n{END_MARK}\nb\n{BEGIN_MARK}\nc\n{END_MARK}\n"
    assert with_role_tables(twice).startswith(f"{BEGIN_MARK}\n\n{render_role_tables()}")


@pytest.mark.parametrize(
    "document", ["no marks", f"{BEGIN_MARK} only the start", f"only the end {END_MARK}"]
)
def test_role_tables_refuse_a_document_without_both_marks(document: str) -> None:
    message = f"the document lacks the marks {BEGIN_MARK!r} … {END_MARK!r}"
    with pytest.raises(ValueError) as info:
        with_role_tables(document)
    assert str(info.value) == message
