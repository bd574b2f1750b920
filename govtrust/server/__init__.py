"""The server: ``serve(settings)`` runs gRPC and HTTP, in one process or N workers.

Import-light on purpose: ``from govtrust.server import serve`` loads the server stack only when
called, so the CLI starts fast for its other commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from govtrust.config import Settings


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT, drain, and return the exit code (see ``govtrust.server.run``)."""
    from govtrust.server.run import serve as _serve

    return _serve(settings)


__all__ = ["serve"]
