"""CoalescingTransport: the writes of one loop turn leave in one write, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from govtrust.server.coalesce import LARGE_WRITE, CoalescingTransport


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.eof = False

    def write(self, data: Any) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _turn() -> None:
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_writes_of_one_turn_leave_together_and_in_order() -> None:
    raw = _Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(memoryview(b"body"))
    assert raw.writes == []
    assert transport.get_write_buffer_size() == 7 + 23
    await _turn()
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await _turn()
    assert raw.writes[-1] == b"next"
    assert transport.get_extra_info("peername") == "info:peername"  # delegated


@pytest.mark.asyncio
async def test_large_writes_pass_through_after_what_is_pending() -> None:
    raw = _Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    big = b"x" * LARGE_WRITE
    transport.write(b"head")
    transport.write(big)
    assert raw.writes == [b"head", big]
    await _turn()
    assert raw.writes == [b"head", big]


@pytest.mark.asyncio
async def test_close_flushes_and_abort_drops() -> None:
    raw = _Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert raw.writes == [b"last words"] and raw.closed
    await _turn()  # the scheduled flush finds nothing
    assert raw.writes == [b"last words"]

    raw = _Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"never sent")
    transport.abort()
    await _turn()
    assert raw.writes == [] and raw.aborted

    raw = _Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"a")
    transport.write_eof()
    assert raw.writes == [b"a"] and raw.eof
