"""Prometheus metrics of one govtrust process (or of all workers, in multiprocess mode).

With ``--workers N`` every worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``
(a temporary directory the supervisor creates) and ``/metrics`` on any worker aggregates all of
them. :func:`enable_multiprocess` must run before the first metric is created in a process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Label sets whose children are cached (a bound, should a client invent HTTP methods).
_MAX_CACHED_CHILDREN = 4096

# Latency buckets from 1 ms to 30 s: RPCs range from cached look-ups to PDF sealing.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Metrics:
    """The metrics every adapter records.

    ``.labels(...)`` costs a lock, a tuple and a dict look-up inside ``prometheus_client`` on
    every call; the children are cached here per label set (a few methods × codes / routes ×
    statuses, so the caches stay small) and reused, which is what ``.labels()`` would return
    anyway.
    """

    grpc_handled: Counter
    grpc_seconds: Histogram
    http_requests: Counter
    http_seconds: Histogram
    worker_up: Gauge
    _rpc_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def observe_rpc(self, service: str, method: str, code: str, seconds: float) -> None:
        """Count one finished RPC and record its latency."""
        key = (service, method, code)
        children = self._rpc_children.get(key)
        if children is None:
            children = (
                self.grpc_handled.labels(service, method, code),
                self.grpc_seconds.labels(service, method),
            )
            if len(self._rpc_children) < _MAX_CACHED_CHILDREN:
                self._rpc_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request and record its latency."""
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_seconds.labels(method, route),
            )
            if len(self._http_children) < _MAX_CACHED_CHILDREN:
                self._http_children[key] = children
        children[0].inc()
        children[1].observe(seconds)


_lock = threading.Lock()
_metrics: Metrics | None = None


def enable_multiprocess(directory: Path) -> None:
    """Switch this process to multiprocess mode, writing samples under ``directory``."""
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    """The shared samples directory when running with several workers."""
    return os.environ.get(MULTIPROC_ENV) or None


def get_metrics() -> Metrics:
    """The process's metrics, created (and registered) on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            disable_created_metrics()  # type: ignore[no-untyped-call]  # halves the exposition
            _metrics = Metrics(
                grpc_handled=Counter(
                    "govtrust_grpc_server_handled",
                    "gRPC calls completed on the server, by service, method and status code.",
                    ["grpc_service", "grpc_method", "grpc_code"],
                ),
                grpc_seconds=Histogram(
                    "govtrust_grpc_server_handling_seconds",
                    "Latency of gRPC calls on the server, by service and method.",
                    ["grpc_service", "grpc_method"],
                    buckets=_BUCKETS,
                ),
                http_requests=Counter(
                    "govtrust_http_requests",
                    "HTTP requests completed, by method, route template and status.",
                    ["method", "route", "status"],
                ),
                http_seconds=Histogram(
                    "govtrust_http_request_duration_seconds",
                    "Latency of HTTP requests, by method and route template.",
                    ["method", "route"],
                    buckets=_BUCKETS,
                ),
                worker_up=Gauge(
                    "govtrust_worker_up",
                    "1 for every live server process (one series per pid with --workers).",
                    multiprocess_mode="liveall",
                ),
            )
            _metrics.worker_up.set(1)
        return _metrics


def render() -> bytes:
    """The Prometheus text exposition of this process, or of every worker in multiprocess mode."""
    get_metrics()
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@dataclass(frozen=True)
class ErrorCount:
    """How many calls of one route or method ended in one error status since start."""

    kind: str  # grpc | http
    name: str  # grpc service/method, or HTTP method and route template
    code: str  # the gRPC status code or HTTP status
    count: int


SERVER_FAULT_CODES = frozenset(
    {"INTERNAL", "UNAVAILABLE", "UNKNOWN", "DATA_LOSS", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
)
"""gRPC codes that say the server could not serve (as HTTP 5xx does), not that the call was
wrong or refused."""


def error_counts() -> list[ErrorCount]:
    """Calls that ended in an error since the server started (every worker's, in
    multiprocess mode): gRPC codes other than OK, HTTP statuses of 500 and above. The server's
    faults (HTTP 5xx, :data:`SERVER_FAULT_CODES`) first, then the refusals; most first in each."""
    get_metrics()
    registry = REGISTRY
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    found: dict[tuple[str, str, str], float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "govtrust_grpc_server_handled_total":
                if labels.get("grpc_code", "OK") == "OK":
                    continue
                key = (
                    "grpc",
                    f"{labels.get('grpc_service', '')}/{labels.get('grpc_method', '')}",
                    labels["grpc_code"],
                )
            elif sample.name == "govtrust_http_requests_total":
                if not labels.get("status", "").isdigit() or int(labels["status"]) < 500:
                    continue
                key = (
                    "http",
                    f"{labels.get('method', '')} {labels.get('route', '')}",
                    labels["status"],
                )
            else:
                continue
            found[key] = found.get(key, 0.0) + sample.value
    counts = [ErrorCount(k, n, c, int(v)) for (k, n, c), v in found.items() if v > 0]
    return sorted(
        counts,
        key=lambda e: (
            not (e.kind == "http" or e.code in SERVER_FAULT_CODES),
            -e.count,
            e.kind,
            e.name,
            e.code,
        ),
    )


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay summed, as they should)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
