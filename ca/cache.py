"""The in-process cache of OCSP responses.

Two maps: exact request bytes → response (the hot path: a nonce-less request from the same
client library is byte-identical every time, so a hit costs one dict look-up) and
(issuer, serial) → response. Entries carry the time they must be refreshed by. Any status
change anywhere bumps the ``status`` counter in the database; the cache re-reads that counter
at most every ``check_interval`` seconds and drops everything when it moved, so other workers'
revocations become visible within that interval (and this worker's at once: it clears directly).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class OcspCache:
    """Bounded, thread-safe, epoch-invalidated cache of DER OCSP responses."""

    def __init__(self, *, max_entries: int = 200_000, check_interval: float = 0.25) -> None:
        self.max_entries = max_entries
        self.check_interval = check_interval
        self._by_request: dict[bytes, tuple[bytes, float]] = {}
        self._by_serial: dict[tuple[str, int], tuple[bytes, float]] = {}
        self._epoch: int | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def sync(self, read_epoch: Callable[[], int]) -> None:
        """Drop everything when the database's status epoch moved (checked at most so often)."""
        moment = time.monotonic()
        if moment - self._checked_at < self.check_interval:
            return
        self._checked_at = moment
        epoch = read_epoch()
        if epoch != self._epoch:
            with self._lock:
                self._by_request.clear()
                self._by_serial.clear()
                self._epoch = epoch

    def sync_due(self) -> bool:
        """Whether the next look-up must re-read the epoch (touch the database) first."""
        return time.monotonic() - self._checked_at >= self.check_interval

    def get_request(self, request: bytes) -> bytes | None:
        """The cached response to exactly these request bytes, if still fresh."""
        hit = self._by_request.get(request)
        if hit is None or hit[1] <= time.time():
            return None
        return hit[0]

    def get_serial(self, issuer: str, serial: int) -> tuple[bytes, float] | None:
        """The cached response for a certificate and its refresh time, if still fresh."""
        hit = self._by_serial.get((issuer, serial))
        if hit is None or hit[1] <= time.time():
            return None
        return hit

    def put(
        self, issuer: str, serial: int, response: bytes, refresh_at: float, request: bytes | None
    ) -> None:
        """Remember a response until ``refresh_at`` (epoch seconds)."""
        with self._lock:
            if len(self._by_serial) >= self.max_entries:
                self._by_serial.clear()
            if len(self._by_request) >= self.max_entries:
                self._by_request.clear()
            self._by_serial[(issuer, serial)] = (response, refresh_at)
            if request is not None:
                self._by_request[request] = (response, refresh_at)

    def invalidate(self) -> None:
        """Forget everything (after a status change in this process)."""
        with self._lock:
            self._by_request.clear()
            self._by_serial.clear()
            self._checked_at = 0.0
