"""Per-client token buckets for public HTTP routes, and the client key they are kept by.

The public licence check page limits each client (its address as the trusted proxies report
it, IPv6 by /64) to ``verify_burst`` requests at once, refilled at ``verify_rate`` per second
(docs/operations.md). A serving process keeps them in the shared database
(:class:`govtrust.shared_limits.SharedRateLimiter`), so the limit holds across workers and
hosts; :class:`RateLimiter` is the in-process bucket (one process: tests, single-host tools),
with the same :class:`Limiter` interface.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request

if TYPE_CHECKING:
    from govtrust.config import Settings

DEFAULT_RATE = 1.0  # tokens per second per client
DEFAULT_BURST = 30


class Limiter(Protocol):
    """A token bucket per client key: ``take`` spends one token, returning 0.0 when allowed,
    else the seconds until one is due (it may block on a database: call it off the loop)."""

    def take(self, key: str) -> float: ...


class RateLimiter:
    """Token buckets per client key: ``burst`` requests at once, refilled at ``rate`` per second.

    In-process and bounded: at most ``max_clients`` buckets are kept; the least recently seen
    is forgotten first (it has refilled the most, so forgetting it is the least lenient choice).
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at); oldest first
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """Rate and burst of the platform's settings (``verify_rate`` / ``verify_burst``:
        ``GOVTRUST_VERIFY_RATE`` / ``GOVTRUST_VERIFY_BURST``)."""
        return cls(settings.verify_rate, settings.verify_burst)

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0.0 when allowed, else seconds until one is due."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)  # re-inserted: most recently seen last
            while len(self._buckets) > self.max_clients:
                del self._buckets[next(iter(self._buckets))]
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(request: Request) -> str:
    """The rate-limit key of a request: its peer address, IPv6 by /64 (one subscriber)."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)
