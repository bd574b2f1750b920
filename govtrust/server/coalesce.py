"""One ``transport.write`` per response: uvicorn writes a response's head and body separately.

Each write to a TCP socket is a system call and, with ``TCP_NODELAY``, a segment of its own;
for the small answers that dominate our HTTP traffic (OCSP responses, token responses) the
second write costs about as much as the rest of the request (see docs/performance.md).
:class:`CoalescingTransport` gathers the writes made during one event-loop turn and sends them
together at the end of the turn; large writes go straight through (no copying of documents).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LARGE_WRITE = 64 * 1024


class CoalescingTransport:
    """Wraps an asyncio transport so that the writes of one loop turn leave in one write.

    Order is preserved; ``close``/``write_eof`` flush first; ``abort`` drops what is pending.
    Everything else is the wrapped transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for the end of this loop turn (large data: flush and write now)."""
        if not data:
            return
        if len(data) >= LARGE_WRITE:
            self.flush()
            self._transport.write(data)
            return
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Send what is pending now."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        pending = sum(len(p) for p in self._pending) if self._pending else 0
        return self._transport.get_write_buffer_size() + pending

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
