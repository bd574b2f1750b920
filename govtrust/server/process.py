"""One serving process: the gRPC server (grpc's synchronous one, or grpc.aio) and uvicorn
(FastAPI) on one event loop, started and drained.

``run_process`` is what a worker (or the single in-process server) runs: it binds both ports,
reports the bound ports once both listen, waits for SIGTERM/SIGINT, then drains — health goes
NOT_SERVING and ``/readyz`` 503 while new calls are still served until the load balancer has
stopped sending them, then both servers stop accepting, in-flight calls get up to
``DRAIN_GRACE_SECONDS`` to finish, gRPC calls still running then are answered UNAVAILABLE
("the server is shutting down; retry") while their work runs on to its end — and returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import uvicorn
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from govtrust.config import Settings
from govtrust.http.app import RouterFactory, create_app
from govtrust.observability.metrics import get_metrics
from govtrust.pdf_guard import DocumentLimits, configure_limits
from govtrust.platform import Platform, request_ledger
from govtrust.rpc.auth import Authenticator
from govtrust.rpc.interceptors import GovtrustInterceptor, WrappingRegistrar
from govtrust.rpc.offload import (
    VERIFY,
    configure_document_pool,
    configure_executor,
    shutdown_document_pool,
    shutdown_executor,
)
from govtrust.rpc.sync_transport import inline_handler
from govtrust.server.coalesce import CoalescingHttpToolsProtocol
from govtrust.server.services import SERVICE_NAMES, ServicerFactory, build_servicers
from govtrust.server.wiring import periodic_jobs, wire

log = logging.getLogger("govtrust.server")

DRAIN_GRACE_SECONDS = 10.0
# Before the servers stop accepting: NOT_SERVING and 503 while still serving, until no call
# has arrived for DRAIN_QUIET_SECONDS (the load balancer has taken the process out: HAProxy
# after two failed checks 0.5 s apart), at most DRAIN_LAME_DUCK_SECONDS. grpc cancels a call
# that reached the server but not yet a handler when server.stop begins (CANCELLED).
DRAIN_LAME_DUCK_SECONDS = 2.0
DRAIN_QUIET_SECONDS = 0.5
# after the grace, grpc's own cancellation of what is left (a call the interceptor did not end)
DRAIN_BACKSTOP_SECONDS = 1.0
# how long the work of calls ended by the drain may still run, so its answer reaches the
# request ledger (a retry gets it) before the process moves on to its exit
DRAIN_WORK_SECONDS = 3.0


def drain_longest_seconds() -> float:
    """The longest a drain takes (the supervisor's, systemd's and Kubernetes' stop timeouts
    must leave it that long: 20 s in deploy/)."""
    return (
        DRAIN_LAME_DUCK_SECONDS + DRAIN_GRACE_SECONDS + DRAIN_BACKSTOP_SECONDS + DRAIN_WORK_SECONDS
    )


PARENT_CHECK_SECONDS = 1.0
SWITCH_INTERVAL_SECONDS = 0.001  # the interpreter lock's hand-over interval (default 5 ms)


class StartupError(Exception):
    """The server cannot start; the message is one line for the operator."""


@dataclass(frozen=True)
class BoundPorts:
    """The ports a process actually listens on (differs from settings when they were 0)."""

    grpc_port: int
    http_port: int


def format_host(host: str) -> str:
    """``host`` ready to put before ``:port`` (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def bind_tcp_socket(host: str, port: int, *, reuse_port: bool, what: str = "HTTP") -> socket.socket:
    """A bound, not yet listening TCP socket (SO_REUSEPORT when workers share the port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen for {what} on {format_host(host)}:{port}: {exc.strerror}"
        ) from None
    sock.set_inheritable(False)
    return sock


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail with one clear line when something already listens on ``host:port``.

    Binds without SO_REUSEPORT, so it also catches another govtrust whose workers share the
    port (gRPC would otherwise join their SO_REUSEPORT group silently, or log a core error).
    """
    if port == 0:
        return
    bind_tcp_socket(host, port, reuse_port=False, what=what).close()


def _read(path: Path | None) -> bytes:
    assert path is not None
    return path.read_bytes()


def grpc_options(settings: Settings, *, reuse_port: bool) -> list[tuple[str, int]]:
    """Channel arguments of the gRPC server."""
    return [
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Ping quiet connections so dead peers (and flows a load balancer dropped) are noticed.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


class Health:
    """The process's gRPC health service, for either transport (the synchronous server needs
    grpc's synchronous servicer; grpc.aio its ``_async`` twin)."""

    def __init__(self, transport: str) -> None:
        self.servicer: grpc_health.HealthServicer | HealthServicer = (
            grpc_health.HealthServicer() if transport == "sync" else HealthServicer()
        )

    async def set(self, service: str, status: int) -> None:
        """Set ``service``'s serving status."""
        servicer = self.servicer
        if isinstance(servicer, HealthServicer):
            await servicer.set(service, status)
        else:
            servicer.set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on (drain)."""
        servicer = self.servicer
        if isinstance(servicer, HealthServicer):
            await servicer.enter_graceful_shutdown()
        else:
            servicer.enter_graceful_shutdown()


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this process decides when to drain."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServingProcess:
    """The gRPC server, the HTTP server and the platform of one process.

    ``servicers`` and ``routers`` are the adapters to serve; by default the tables of
    :mod:`govtrust.server.adapters` (tests pass others)."""

    def __init__(
        self,
        settings: Settings,
        platform: Platform,
        *,
        reuse_port: bool,
        servicers: Mapping[str, ServicerFactory] | None = None,
        routers: Mapping[str, RouterFactory] | None = None,
    ) -> None:
        if servicers is None or routers is None:
            from govtrust.server import adapters  # imports every adapter: only where one serves

            servicers = adapters.SERVICERS if servicers is None else servicers
            routers = adapters.ROUTERS if routers is None else routers
        self.settings = settings
        self.platform = platform
        self.reuse_port = reuse_port
        self.servicers = servicers
        self.metrics = get_metrics()
        wire(platform)
        self.health = Health(settings.grpc_transport)
        self.grpc_server: grpc.Server | grpc.aio.Server | None = None
        self.interceptor: GovtrustInterceptor | None = None
        self.serving = False  # both servers started and reported SERVING
        self.http_server: _EmbeddedUvicorn | None = None
        self.http_task: asyncio.Task[None] | None = None
        self.app = create_app(
            platform, self.metrics, routers=routers, max_body_bytes=settings.http_max_body_bytes
        )

    async def start(self) -> BoundPorts:
        """Bind and start both servers; return the ports they listen on."""
        grpc_port = await self._start_grpc()
        http_port = await self._start_http()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.serving = True
        return BoundPorts(grpc_port=grpc_port, http_port=http_port)

    async def _start_grpc(self) -> int:
        from govtrust.api.access import RPC_ACCESS, SELF_KEYED_METHODS  # load lazily
        from govtrust.rpc.access import gate

        settings = self.settings
        authenticator = Authenticator(
            self.platform,
            trust_insecure_loopback=not settings.tls_enabled and settings.is_loopback,
            client_certificates=settings.tls_enabled and settings.tls_client_ca is not None,
        )
        interceptor = GovtrustInterceptor(
            authenticator,
            self.metrics,
            authorise=gate(RPC_ACCESS),
            ledger=request_ledger(self.platform),
            self_keyed=SELF_KEYED_METHODS,
        )
        # No interceptors on the server: every handler is wrapped once, as it is registered
        # (grpc.aio would run an interceptor as a coroutine chain on every call).
        options = grpc_options(settings, reuse_port=self.reuse_port)
        server: grpc.Server | grpc.aio.Server
        names = (*SERVICE_NAMES, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME)
        if settings.grpc_transport == "sync":
            server = grpc.server(
                ThreadPoolExecutor(settings.grpc_threads, thread_name_prefix="govtrust-grpc"),
                options=options,
            )
            registrar = WrappingRegistrar(server, interceptor, adapt=inline_handler)
            reflector: object = reflection.ReflectionServicer(names)
        else:
            server = grpc.aio.server(options=options)
            registrar = interceptor.registrar(server)
            reflector = ReflectionServicer(names)
        self.interceptor = interceptor
        for binding in build_servicers(self.platform, self.servicers):
            binding.add_to_server(binding.servicer, registrar)
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, registrar)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflector, registrar)
        address = f"{format_host(settings.host)}:{settings.grpc_port}"
        if not self.reuse_port:
            ensure_port_free(settings.host, settings.grpc_port, "gRPC")
        try:
            if settings.tls_enabled:
                credentials = grpc.ssl_server_credentials(
                    [(_read(settings.tls_key), _read(settings.tls_cert))],
                    root_certificates=_read(settings.tls_client_ca)
                    if settings.tls_client_ca
                    else None,
                    require_client_auth=settings.tls_client_ca is not None,
                )
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except OSError as exc:
            raise StartupError(f"cannot read the TLS files: {exc}") from None
        except RuntimeError:
            raise StartupError(
                f"cannot listen for gRPC on {address}: the address is in use or not local"
            ) from None
        if isinstance(server, grpc.aio.Server):
            await server.start()
        else:
            server.start()
        self.grpc_server = server
        return port

    async def _start_http(self) -> int:
        settings = self.settings
        sock = bind_tcp_socket(settings.host, settings.http_port, reuse_port=self.reuse_port)
        port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            http=CoalescingHttpToolsProtocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            ws="none",
            # X-Forwarded-* only from the configured proxies (uvicorn would trust 127.0.0.1, so
            # any local caller could pick its own client address and rate-limit key)
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies),
            timeout_graceful_shutdown=int(DRAIN_GRACE_SECONDS),
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            ssl_ca_certs=str(settings.tls_client_ca) if settings.tls_client_ca else None,
            ssl_cert_reqs=ssl.CERT_OPTIONAL if settings.tls_client_ca else ssl.CERT_NONE,
        )
        server = _EmbeddedUvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="govtrust-http")
        while not server.started:
            if task.done():
                task.result()
                raise StartupError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.005)
        self.http_server, self.http_task = server, task
        return port

    async def drain(self, grace: float = DRAIN_GRACE_SECONDS) -> None:
        """Report NOT_SERVING and serve on while calls still arrive (:meth:`_lame_duck`), stop
        accepting, let in-flight calls finish (up to ``grace`` seconds), end the gRPC calls
        still running UNAVAILABLE, stop.

        Ending them is the interceptor's (:meth:`GovtrustInterceptor.end_running`): a status
        the client reads like any other UNAVAILABLE, where grpc's own cancellation at the end
        of ``server.stop``'s grace resets the stream — "Cancelling all calls", and through a
        proxy CANCELLED or UNKNOWN, which clients do not retry. grpc's cancellation remains,
        ``DRAIN_BACKSTOP_SECONDS`` later, for anything the interceptor did not end."""
        self.app.state.draining = True
        await self.health.enter_graceful_shutdown()
        await self._lame_duck()
        waits: list[asyncio.Future[None]] = []
        if self.http_server is not None and self.http_task is not None:
            self.http_server.should_exit = True
            waits.append(self.http_task)
        server = self.grpc_server
        grpc_stopped: asyncio.Future[None] | None = None
        if isinstance(server, grpc.aio.Server):
            grpc_stopped = asyncio.ensure_future(server.stop(grace + DRAIN_BACKSTOP_SECONDS))
        elif server is not None:  # the synchronous server: wait for its drain off the loop
            stopped = server.stop(grace + DRAIN_BACKSTOP_SECONDS)

            def wait_stopped() -> None:
                stopped.wait()

            grpc_stopped = asyncio.ensure_future(asyncio.to_thread(wait_stopped))
        await asyncio.sleep(0)  # let both begin their shutdown before we say so
        log.info("draining: no new calls accepted; in-flight calls have up to %.0f s", grace)
        if grpc_stopped is not None:
            waits.append(grpc_stopped)
            await self._end_late_calls(grpc_stopped, grace)
        results = await asyncio.gather(*waits, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("error while draining", exc_info=result)
        interceptor = self.interceptor
        if (
            interceptor is not None
            and interceptor.running
            and not await interceptor.wait_idle(DRAIN_WORK_SECONDS)
        ):
            log.warning(
                "draining: %d call(s) ended early still working after %.0f s more",
                interceptor.running,
                DRAIN_WORK_SECONDS,
            )

    async def _lame_duck(self) -> None:
        """Serve on, NOT_SERVING, until no call has arrived for ``DRAIN_QUIET_SECONDS`` (at most
        ``DRAIN_LAME_DUCK_SECONDS``): grpc's ``server.stop`` cancels the calls that reached the
        server but not yet a handler — CANCELLED, which clients do not retry — so it waits
        until the load balancer, which has seen the health checks fail, sends none."""
        interceptor = self.interceptor
        if interceptor is None or not self.serving:  # never served: nobody to wait for
            return
        began = time.perf_counter()
        deadline = began + DRAIN_LAME_DUCK_SECONDS
        log.info(
            "draining: health NOT_SERVING; serving on until no call for %.1f s (at most %.1f s)",
            DRAIN_QUIET_SECONDS,
            DRAIN_LAME_DUCK_SECONDS,
        )
        while True:
            now = time.perf_counter()
            quiet_until = max(began, interceptor.last_arrival) + DRAIN_QUIET_SECONDS
            if now >= quiet_until or now >= deadline:
                return
            await asyncio.sleep(min(quiet_until, deadline) - now)

    async def _end_late_calls(self, grpc_stopped: asyncio.Future[None], grace: float) -> None:
        """When the gRPC server has not stopped within ``grace`` seconds, answer the calls still
        running UNAVAILABLE (retry: a mutating call's retry gets its answer from the ledger)."""
        await asyncio.wait((grpc_stopped,), timeout=grace)
        if grpc_stopped.done() or self.interceptor is None:
            return
        ended = await self.interceptor.end_running()
        log.warning(
            "draining: the grace period is over; %d call(s) still running answered UNAVAILABLE",
            ended,
        )


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("received %s: draining", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died drains instead of serving on as an orphan."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("supervisor %d is gone: draining", parent_pid)
            stop.set()
            return
        await asyncio.sleep(PARENT_CHECK_SECONDS)


async def run_process(
    settings: Settings,
    platform: Platform,
    *,
    reuse_port: bool,
    on_ready: Callable[[BoundPorts], None],
    parent_pid: int | None = None,
    servicers: Mapping[str, ServicerFactory] | None = None,
    routers: Mapping[str, RouterFactory] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then drain; ``on_ready`` gets the bound ports
    (``servicers``, ``routers``: see :class:`ServingProcess`)."""
    configure_executor()
    configure_document_pool(
        settings.document_workers, settings.document_queue, settings.document_budget_seconds
    )
    configure_document_pool(
        settings.verify_document_workers or None,
        settings.verify_document_queue,
        settings.document_budget_seconds,
        name=VERIFY,
    )
    # hand the interpreter lock over after 1 ms instead of 5: a CPU-bound document check then
    # delays a health check or a gRPC call by at most that per hand-over
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    configure_limits(
        DocumentLimits(
            settings.pdf_max_revisions, settings.pdf_max_objects, settings.pdf_max_signatures
        )
    )
    stop = asyncio.Event()
    _install_stop_signals(stop)
    process = ServingProcess(
        settings, platform, reuse_port=reuse_port, servicers=servicers, routers=routers
    )
    watcher: asyncio.Task[None] | None = None
    jobs: asyncio.Task[None] | None = None
    try:
        ports = await process.start()
        on_ready(ports)
        jobs = asyncio.create_task(periodic_jobs(platform, stop))
        if parent_pid is not None:
            watcher = asyncio.create_task(_watch_parent(parent_pid, stop))
        await stop.wait()
    finally:
        stop.set()
        await process.drain(DRAIN_GRACE_SECONDS)  # the module's value now (tests shorten it)
        if watcher is not None:
            watcher.cancel()
        if jobs is not None:
            await asyncio.gather(jobs, return_exceptions=True)
        shutdown_document_pool(wait=False)  # abandoned checks stop at their budget
        # off the loop, which must stay live: the pool's last results reach it as callbacks
        await asyncio.to_thread(shutdown_executor, wait=True)
    return 0
