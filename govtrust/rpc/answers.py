"""Answers rebuilt from a call's recorded effect, for the request ledger.

A keyed call (:mod:`govtrust.idempotency`) whose effect committed but whose answer was lost (its
process died between the two) is retried; the ledger then knows what the call did from the audit
records carrying its claim — each names its action and the object acted on
(:class:`govtrust.audit.ClaimEffect`). An RPC whose answer those objects determine declares how to
rebuild it next to its adapter method::

    @rebuilt_from(lambda servicer, effects: ...)
    async def SuspendSeal(self, request, context): ...

The function gets the servicer and the effects and returns the response message (read through
the owning package's functions), or None when the effects do not determine it; the interceptor
hands it to the ledger (:func:`rebuilder`). An RPC without one answers such a retry with
``RequestOutcomeUnknown``, which names the effects.

An RPC whose answer is kept nowhere — a sealed document or a signature, megabytes the use
record holds only the digest of — declares how to *re-produce* it instead::

    @redone_by(lambda servicer, request, effects: ...)
    async def SealPdf(self, request, context): ...

The function also gets the retry's request (the ledger has checked it is the lost call's:
same key, same digest) and does the work again bound to the recorded effect (the same use,
not a second one); it runs, like a rebuilder, in the ledger's call on the domain pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from govtrust.audit import ClaimEffect
from govtrust.idempotency import Rebuild

_ATTRIBUTE = "govtrust_rebuild_answer"
_REDO = "govtrust_redo_answer"
Method = TypeVar("Method", bound=Callable[..., Any])
AnswerOf = Callable[[Any, Sequence[ClaimEffect]], Any]
"""(servicer, effects) → the response message, or None."""
RedoOf = Callable[[Any, Any, Sequence[ClaimEffect]], Any]
"""(servicer, request, effects) → the response message re-produced, or None."""


def rebuilt_from(answer: AnswerOf) -> Callable[[Method], Method]:
    """Mark a servicer method: a lost answer of its keyed call is ``answer(servicer, effects)``."""

    def mark(method: Method) -> Method:
        setattr(method, _ATTRIBUTE, answer)
        return method

    return mark


def redone_by(redo: RedoOf) -> Callable[[Method], Method]:
    """Mark a servicer method: a lost answer of its keyed call is ``redo(servicer, request,
    effects)``, the call's work done again from the retry's request bound to its effect."""

    def mark(method: Method) -> Method:
        setattr(method, _REDO, redo)
        return method

    return mark


def rebuilder(behaviour: Callable[..., Any]) -> Callable[[Any], Rebuild] | None:
    """The ledger's :data:`~govtrust.idempotency.Rebuild` of a handler's behaviour (a bound
    servicer method marked with :func:`rebuilt_from` or :func:`redone_by`) for a request, or
    None. A rebuilder's is made once and serves every request."""
    answer: AnswerOf | None = getattr(behaviour, _ATTRIBUTE, None)
    redo: RedoOf | None = getattr(behaviour, _REDO, None)
    servicer = getattr(behaviour, "__self__", None)
    if servicer is None or (answer is None and redo is None):
        return None
    if redo is not None:

        def redo_for(request: Any) -> Rebuild:
            return lambda effects: _serialised(redo(servicer, request, effects))

        return redo_for
    assert answer is not None
    rebuild: Rebuild = lambda effects: _serialised(answer(servicer, effects))  # noqa: E731
    return lambda _request: rebuild


def _serialised(message: Any) -> bytes | None:
    return None if message is None else bytes(message.SerializeToString(deterministic=True))


def _succeeded(effects: Sequence[ClaimEffect], action: str, kind: str) -> list[ClaimEffect]:
    """The successful effects with ``action`` (a full action, or a prefix ending in ``.``) on
    an object of ``kind`` (its target's prefix)."""
    return [
        e
        for e in effects
        if e.outcome == "ok"
        and (e.action.startswith(action) if action.endswith(".") else e.action == action)
        and e.target.startswith(kind)
    ]


def all_acted_on(effects: Sequence[ClaimEffect], action: str, kind: str) -> frozenset[str]:
    """Every object (the part of its target after ``kind``) that a successful effect with
    ``action`` (as in :func:`acted_on`) acted on."""
    return frozenset(e.target.removeprefix(kind) for e in _succeeded(effects, action, kind))


def acted_on(effects: Sequence[ClaimEffect], action: str, kind: str) -> str | None:
    """The object (the part of its target after ``kind``) that the one successful effect with
    ``action`` (a full action, or a prefix ending in ``.``) acted on; None when no such effect,
    or several, were recorded."""
    found = set(all_acted_on(effects, action, kind))
    return found.pop() if len(found) == 1 else None


def the_effect(effects: Sequence[ClaimEffect], action: str, kind: str) -> ClaimEffect | None:
    """The one successful effect with ``action`` (as in :func:`acted_on`) on an object of
    ``kind`` (its record's ``seq`` included); None when there is none, or several."""
    found = _succeeded(effects, action, kind)
    return found[0] if len(found) == 1 else None
