"""Who hears of identity status changes: one :class:`StatusListeners` per platform (kept on its
container, see :func:`idp.runtime.status_listeners_for`), handed to that platform's identity
registry, so a listener acts only in its own platform's transactions and goes when it closes."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from idp.types import IdentityStatus, IdentitySummary

StatusListener = Callable[[Session, IdentitySummary, IdentityStatus, str], None]
"""Called inside the status-change transaction with (session, identity after, status before,
reason): other packages (seals, certificates) revoke what hangs off a cancelled identity."""


class StatusListeners:
    """The listeners of one platform's identity status changes, called in order."""

    def __init__(self) -> None:
        self._listeners: list[StatusListener] = []

    def add(self, listener: StatusListener) -> None:
        """Run ``listener`` on every status change, in the same transaction (once, however
        often it is added)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: StatusListener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __contains__(self, listener: object) -> bool:
        return listener in self._listeners

    def notify(
        self, session: Session, summary: IdentitySummary, before: IdentityStatus, reason: str
    ) -> None:
        """Call every listener with the change (inside its transaction)."""
        for listener in list(self._listeners):
            listener(session, summary, before, reason)
