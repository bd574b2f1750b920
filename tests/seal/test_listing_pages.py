"""ListSeals pages newest first by keyset: every seal once, in order, even when a seal is
applied between two pages; an older offset token still works; a forged token is refused."""

from __future__ import annotations

import base64

import pytest

from govtrust.errors import InvalidArgument
from idp.types import IdentityRef
from seal.lifecycle import Application
from seal.paging import token_for
from seal.types import SealKind, SealStatus
from tests.seal.conftest import World
from tests.unchanged import unchanged


def apply(world: World, n: int) -> str:
    kind = (SealKind.CONTRACT, SealKind.FINANCE, SealKind.INVOICE)[n % 3]
    seal = world.service.apply(
        world.rep, Application(IdentityRef(id=world.company_id), kind, name=f"章{n}")
    )
    return seal.id


def test_pages_follow_the_key_not_the_offset(world: World) -> None:
    applied = [apply(world, n) for n in range(7)]
    newest_first = list(reversed(applied))
    seen: list[str] = []
    items, token = world.service.list_seals(statuses=[SealStatus.APPLIED], page_size=3)
    seen += [s.id for s in items]
    assert token and base64.urlsafe_b64decode(token).startswith(b"k:")
    apply(world, 7)  # a new seal goes on top: it must not push a seal into the next page twice
    while token:
        items, token = world.service.list_seals(
            statuses=[SealStatus.APPLIED], page_size=3, page_token=token
        )
        seen += [s.id for s in items]
    assert seen == newest_first
    # the whole listing, and an offset token of the older form, still page correctly
    every, _ = world.service.list_seals(page_size=100)
    assert len(every) == 8
    rest, _ = world.service.list_seals(page_size=100, page_token=token_for(5))
    assert [s.id for s in rest] == [s.id for s in every[5:]]


@pytest.mark.parametrize("token", ["k:not-a-time|x", "%%%", "o:x"])
def test_a_token_this_service_did_not_issue_is_refused(world: World, token: str) -> None:
    encoded = token if token == "%%%" else base64.urlsafe_b64encode(token.encode()).decode()
    with unchanged(world.db, world.keystore), pytest.raises(InvalidArgument):
        world.service.list_seals(page_size=3, page_token=encoded)


def test_a_listed_seal_is_the_seal_and_each_filter_selects(world: World) -> None:
    """The listing's own query gives what :meth:`SealService.get` gives for each seal (an
    active one: certificates, validity and every time), and each filter selects."""
    from tests.seal.conftest import REVIEWER

    ids = [apply(world, n) for n in range(5)]
    active = world.active_seal(SealKind.FINANCE, name="财务章").id
    world.service.review(REVIEWER, ids[0], False, "材料不全")
    newest_first = [active, *reversed(ids)]
    every, token = world.service.list_seals(page_size=100)
    assert token == "" and every == [world.service.get(i) for i in newest_first]
    assert every[0].certificate_der and every[0].valid_until is not None

    def listed(**filters: object) -> list[str]:
        items, _ = world.service.list_seals(page_size=100, **filters)  # type: ignore[arg-type]
        return [s.id for s in items]

    assert listed(kind=SealKind.FINANCE) == [active, ids[4], ids[1]]
    assert listed(search="章3") == [ids[3]]
    assert listed(search=ids[2]) == [ids[2]]
    assert listed(search="100%_\\") == []
    assert listed(owner=IdentityRef(id=world.company_id)) == newest_first
    assert listed(statuses=[SealStatus.REJECTED]) == [ids[0]]
    assert listed(statuses=[SealStatus.ACTIVE, SealStatus.REJECTED]) == [active, ids[0]]
    assert listed(statuses=[SealStatus.APPLIED], kind=SealKind.CONTRACT) == [ids[3]]


def test_a_seal_with_its_history_is_what_get_and_history_give(world: World) -> None:
    from seal.errors import SealNotFound

    seal = world.active_seal(SealKind.CONTRACT, name="合同章")
    every, _ = world.service.history(seal.id, include_uses=True, page_size=100)
    assert len(every) >= 5
    got, history, more = world.service.with_history(seal.id, page_size=100)
    assert got == world.service.get(seal.id) and history == every and not more
    got, history, more = world.service.with_history(seal.id, page_size=2)
    assert history == every[:2] and more
    with unchanged(world.db, world.keystore), pytest.raises(SealNotFound):
        world.service.with_history("no-such-seal", page_size=10)
