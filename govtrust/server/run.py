"""``govtrust serve``: one process, or a supervisor and N workers sharing both ports.

``--workers 1`` (the default) serves in this process. ``--workers N`` migrates once here, then
starts N worker processes (``python -m govtrust.server.worker``), each binding the gRPC and the
HTTP port with SO_REUSEPORT so the kernel spreads connections over them. Workers are fresh
interpreters (fork + exec), not bare forks: gRPC core is not fork-safe once initialised and a
PKCS#11 session never is, and a clean start costs about a second.

The supervisor restarts a worker that dies unexpectedly (giving up after
``MAX_RESTARTS`` within ``RESTART_WINDOW_SECONDS``), forwards SIGTERM/SIGINT to every worker,
and exits 0 when all of them drained cleanly. With port 0 it picks the ports first (holding them
with a bound, non-listening SO_REUSEPORT socket) so every worker binds the same ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import govtrust
from govtrust.config import Settings
from govtrust.http.app import RouterFactory
from govtrust.observability.logs import setup_logging
from govtrust.observability.metrics import MULTIPROC_ENV, mark_process_dead
from govtrust.server.banner import print_banner
from govtrust.server.process import (
    BoundPorts,
    StartupError,
    bind_tcp_socket,
    drain_longest_seconds,
    ensure_port_free,
    run_process,
)
from govtrust.server.services import ServicerFactory
from govtrust.server.startup import open_for_serving
from govtrust.server.wiring import check_package_settings
from govtrust.server.worker import settings_to_json

log = logging.getLogger("govtrust.server")

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = drain_longest_seconds() + 3.0


def serve(
    settings: Settings,
    *,
    servicers: Mapping[str, ServicerFactory] | None = None,
    routers: Mapping[str, RouterFactory] | None = None,
) -> int:
    """Serve gRPC and HTTP until SIGTERM/SIGINT, drain, and return the exit code (0 = clean).

    ``servicers`` and ``routers`` replace the tables of :mod:`govtrust.server.adapters` (tests);
    workers are fresh interpreters that serve those tables, so replacing them needs
    ``workers == 1`` (a :class:`ValueError` otherwise)."""
    if settings.workers > 1 and (servicers is not None or routers is not None):
        raise ValueError("other servicers or routers can only be served with workers == 1")
    setup_logging(settings.log_level)
    check_package_settings(settings)
    try:
        if settings.workers <= 1:
            return _serve_in_process(settings, servicers, routers)
        return Supervisor(settings).run()
    except StartupError as exc:
        print(f"govtrust: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve_in_process(
    settings: Settings,
    servicers: Mapping[str, ServicerFactory] | None,
    routers: Mapping[str, RouterFactory] | None,
) -> int:
    platform = open_for_serving(settings)
    try:
        return asyncio.run(
            run_process(
                settings,
                platform,
                reuse_port=False,
                on_ready=lambda ports: print_banner(settings, ports),
                servicers=servicers,
                routers=routers,
            )
        )
    finally:
        platform.close()


# --- supervisor ---------------------------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_fd: int | None
    ready: bool = False
    buffer: bytes = b""


@dataclass
class _Signals:
    """Flags set by signal handlers; the wake-up pipe interrupts ``select``."""

    stop: int | None = None
    repeated: bool = False
    wake_r: int = -1
    wake_w: int = -1
    previous: dict[int, object] = field(default_factory=dict)


def _python_path() -> str:
    """PYTHONPATH for workers: the directory this govtrust was imported from comes first."""
    root = str(Path(govtrust.__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return root if not existing else f"{root}{os.pathsep}{existing}"


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: list[_Worker] = []
        self.restarts: list[float] = []
        self.signals = _Signals()
        self.worker_settings = settings
        self._reserved: list[socket.socket] = []
        self._own_metrics_dir: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def run(self) -> int:
        """Prepare, start the workers, print the banner once all listen, supervise until stop."""
        platform = open_for_serving(self.settings)  # migrates (once) and creates the master key
        platform.close()
        with self._signal_handlers(), self._resources():
            self.worker_settings = self._resolve_ports()
            for index in range(self.settings.workers):
                self.workers.append(self._spawn(index))
            if not self._wait_until_ready():
                return self._stop_all()
            print_banner(
                self.settings,
                BoundPorts(self.worker_settings.grpc_port, self.worker_settings.http_port),
            )
            return self._supervise()

    def _resolve_ports(self) -> Settings:
        grpc_port, http_port = self.settings.grpc_port, self.settings.http_port
        ensure_port_free(self.settings.host, grpc_port, "gRPC")
        ensure_port_free(self.settings.host, http_port, "HTTP")
        if grpc_port == 0:
            grpc_port = self._reserve_port()
        if http_port == 0:
            http_port = self._reserve_port()
        return dataclasses.replace(
            self.settings, grpc_port=grpc_port, http_port=http_port, migrate=False
        )

    def _reserve_port(self) -> int:
        sock = bind_tcp_socket(self.settings.host, 0, reuse_port=True)
        self._reserved.append(sock)
        return int(sock.getsockname()[1])

    @contextlib.contextmanager
    def _resources(self) -> Iterator[None]:
        if not os.environ.get(MULTIPROC_ENV):
            directory = Path(tempfile.mkdtemp(prefix="govtrust-metrics-"))
            os.environ[MULTIPROC_ENV] = str(directory)
            self._own_metrics_dir = directory
        try:
            yield
        finally:
            for worker in self.workers:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()
                self._close_ready(worker)
            for sock in self._reserved:
                sock.close()
            if self._own_metrics_dir is not None:
                os.environ.pop(MULTIPROC_ENV, None)
                shutil.rmtree(self._own_metrics_dir, ignore_errors=True)

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.signals = _Signals(wake_r=wake_r, wake_w=wake_w)

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            if self.signals.stop is not None:
                self.signals.repeated = True
            else:
                self.signals.stop = signum

        def on_child(_signum: int, _frame: FrameType | None) -> None:
            pass  # the wake-up fd does the work

        handled = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGCHLD: on_child}
        previous_wakeup = signal.set_wakeup_fd(wake_w)
        previous = {signum: signal.signal(signum, handler) for signum, handler in handled.items()}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    # --- workers --------------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Worker:
        ready_r, ready_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": _python_path()}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "govtrust.server.worker",
                "--index",
                str(index),
                "--ready-fd",
                str(ready_w),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(ready_w,),
            env=env,
        )
        os.close(ready_w)
        assert process.stdin is not None
        try:
            process.stdin.write(settings_to_json(self.worker_settings))
            process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; the supervisor notices
        os.set_blocking(ready_r, False)
        log.info("worker %d started", index, extra={"worker_pid": process.pid})
        return _Worker(index=index, process=process, ready_fd=ready_r)

    @staticmethod
    def _close_ready(worker: _Worker) -> None:
        if worker.ready_fd is not None:
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _read_ready(self, worker: _Worker) -> None:
        assert worker.ready_fd is not None
        try:
            chunk = os.read(worker.ready_fd, 256)
        except BlockingIOError:
            return
        worker.buffer += chunk
        if worker.buffer.startswith(b"ready ") and worker.buffer.endswith(b"\n"):
            worker.ready = True
            log.info("worker %d ready", worker.index, extra={"worker_pid": worker.process.pid})
        if not chunk or worker.ready:
            self._close_ready(worker)

    def _wait(self, timeout: float) -> None:
        """Block until a signal, a ready report or ``timeout``; read what arrived."""
        fds = [self.signals.wake_r] + [w.ready_fd for w in self.workers if w.ready_fd is not None]
        readable, _, _ = select.select(fds, [], [], timeout)
        for fd in readable:
            if fd == self.signals.wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(fd, 512):
                        pass
                continue
            for worker in self.workers:
                if worker.ready_fd == fd:
                    self._read_ready(worker)

    def _wait_until_ready(self) -> bool:
        while not all(worker.ready for worker in self.workers):
            if self.signals.stop is not None:
                return False
            for worker in self.workers:
                if not worker.ready and worker.process.poll() is not None:
                    print(
                        f"govtrust: cannot start: worker {worker.index} exited with code "
                        f"{worker.process.returncode} during start-up",
                        file=sys.stderr,
                        flush=True,
                    )
                    return False
            self._wait(1.0)
        return True

    def _supervise(self) -> int:
        while self.signals.stop is None:
            self._wait(1.0)
            for position, worker in enumerate(self.workers):
                code = worker.process.poll()
                if code is None or self.signals.stop is not None:
                    continue
                mark_process_dead(worker.process.pid)
                self._close_ready(worker)
                log.error(
                    "worker %d exited unexpectedly with code %s",
                    worker.index,
                    code,
                    extra={"worker_pid": worker.process.pid},
                )
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS]
                if len(self.restarts) >= MAX_RESTARTS:
                    print(
                        f"govtrust: workers keep crashing ({MAX_RESTARTS} restarts within "
                        f"{RESTART_WINDOW_SECONDS:.0f} s); stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.signals.stop = signal.SIGTERM
                    self._stop_all()
                    return 1
                self.restarts.append(now)
                self.workers[position] = self._spawn(worker.index)
        return self._stop_all()

    def _stop_all(self) -> int:
        """Forward the stop signal, wait for the drain, kill stragglers; 0 if all drained."""
        signum = self.signals.stop or signal.SIGTERM
        for worker in self.workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signum)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while any(w.process.poll() is None for w in self.workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.signals.repeated:
                for worker in self.workers:
                    if worker.process.poll() is None:
                        log.error("worker %d did not drain in time: killed", worker.index)
                        worker.process.kill()
                        worker.process.wait()
                break
            self._wait(min(remaining, 0.5))
        codes = [w.process.returncode for w in self.workers]
        for worker in self.workers:
            mark_process_dead(worker.process.pid)
        clean = all(code == 0 for code in codes)
        if not clean:
            log.error("workers exited with codes %s", codes)
        return 0 if clean and self.signals.stop is not None else 1
