"""Start ``govtrust serve`` as a subprocess and talk to it (helpers for the end-to-end tests).

Readiness is the machine-parsable line the server prints once both ports listen; the helpers
block on the process's output (a condition variable fed by reader threads), never on sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from govtrust.db import Database, sqlite_url
from govtrust.observability.metrics import get_metrics
from govtrust.principal import LOCAL_ADMIN
from govtrust.rpc.auth import Authenticator
from govtrust.rpc.interceptors import GovtrustInterceptor

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
GRPC_PREFIX = "govtrust: grpc listening on "
HTTP_PREFIX = "govtrust: http listening on "


@dataclass
class _Stream:
    lines: list[str] = field(default_factory=list)
    closed: bool = False


class Served:
    """A running ``govtrust serve`` subprocess and everything it printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.condition = threading.Condition()
        self.stdout = _Stream()
        self.stderr = _Stream()
        self.grpc_address = ""
        self.http_base = ""
        for pipe, stream in ((process.stdout, self.stdout), (process.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(pipe, stream), daemon=True).start()

    def _pump(self, pipe: Any, stream: _Stream) -> None:
        for line in pipe:
            with self.condition:
                stream.lines.append(line.rstrip("\n"))
                self.condition.notify_all()
        with self.condition:
            stream.closed = True
            self.condition.notify_all()

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = START_TIMEOUT, what: str = ""
    ) -> None:
        """Block until ``predicate()`` holds (re-checked whenever the server prints a line)."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}\n{self.transcript()}")
                if self.stdout.closed and self.stderr.closed:
                    raise AssertionError(f"server exited waiting for {what}\n{self.transcript()}")
                self.condition.wait(remaining)

    def wait_ready(self) -> None:
        """Wait for the two listening lines and remember the addresses."""

        def ready() -> bool:
            return any(line.startswith(HTTP_PREFIX) for line in self.stdout.lines)

        self.wait_for(ready, what="the listening lines")
        for line in self.stdout.lines:
            if line.startswith(GRPC_PREFIX):
                self.grpc_address = line.removeprefix(GRPC_PREFIX)
            if line.startswith(HTTP_PREFIX):
                self.http_base = line.removeprefix(HTTP_PREFIX)

    def wait_stderr(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in ``count`` stderr lines."""
        self.wait_for(
            lambda: sum(text in line for line in self.stderr.lines) >= count,
            timeout,
            what=f"{count} stderr line(s) containing {text!r}",
        )

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr."""
        entries = []
        with self.condition:
            lines = list(self.stderr.lines)
        for line in lines:
            if line.startswith("{"):
                entries.append(json.loads(line))
        return entries

    def transcript(self) -> str:
        return (
            "--- stdout\n"
            + "\n".join(self.stdout.lines)
            + "\n--- stderr\n"
            + "\n".join(self.stderr.lines[-60:])
        )

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        elapsed = time.monotonic() - started
        self.wait_for(lambda: self.stdout.closed and self.stderr.closed, 10, "output to close")
        return code, elapsed

    def kill(self) -> None:
        """Kill the server and its workers (its own process group) if still running."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def server_env(**extra: str) -> dict[str, str]:
    """The environment for a server: no stray GOVTRUST_* settings from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVTRUST_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    # Import this checkout first, also for launcher scripts run by path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def spawn(command: list[str], env: dict[str, str]) -> Served:
    """Start a command in its own process group, capturing its output."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return Served(process)


def serve_command(*args: str) -> list[str]:
    """``python -m govtrust serve ARGS`` with the interpreter running the tests."""
    return [sys.executable, "-m", "govtrust", "serve", *args]


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[Served]:
    """A started and ready server; killed (with its workers) if the test did not stop it."""
    served = spawn(command, env)
    try:
        served.wait_ready()
        yield served
    finally:
        served.kill()


def settle(data_dir: Path, url: str | None = None) -> None:
    """Before starting a server on ``data_dir``: bootstrap the CA, publish its CRLs and
    checkpoint the audit chain, so the server's periodic jobs find nothing to do on their
    first round (they start once it is ready, and would otherwise write while a test checks
    that a refused call changed nothing)."""
    from ca.authority import authority_for
    from govtrust.config import Settings
    from govtrust.server.wiring import checkpoint_audit, open_wired
    from verify.service import context_for

    platform = open_wired(Settings(data_dir=data_dir, database_url=url), migrate=True)
    try:
        authority_for(platform).refresh()
        # The verification service's report signer: each worker warms it at start-up, and two
        # starting at once would each issue one, after the first round's checkpoint.
        context_for(platform).warm()
        checkpoint_audit(platform)
    finally:
        platform.close()


def wait_for_first_checkpoint(db: Database, timeout: float = 60.0) -> None:
    """Until a checkpoint covers the whole audit chain: a server writes at start-up (its
    signing keys, their audit records) and its first periodic round, which starts once it is
    ready, then checkpoints them (a row and a TSA token). A snapshot taken before that round
    ends would see it as a change the test made; under load it landed inside one."""
    from sqlalchemy import func, select

    from govtrust.audit import AuditCheckpoint, AuditRecord

    deadline = time.monotonic() + timeout
    while True:
        with db.read() as session:
            records = session.scalar(select(func.count()).select_from(AuditRecord)) or 0
            covered = session.scalar(select(func.max(AuditCheckpoint.records))) or 0
        if covered >= records:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no checkpoint covers the {records} audit records ({covered})")
        time.sleep(0.05)


@contextlib.contextmanager
def server_database(data_dir: Path, url: str | None = None) -> Iterator[Database]:
    """The database a server started on ``data_dir`` uses (``url``, else its SQLite file), opened
    beside it so a test can snapshot it (``tests.unchanged``) while the server runs (started
    after :func:`settle`)."""
    db = Database(url or sqlite_url(data_dir), pool_size=2)
    try:
        wait_for_first_checkpoint(db)
        yield db
    finally:
        db.dispose()


# --- clients ------------------------------------------------------------------------------------


def channel(address: str, *, fresh_connection: bool = False) -> grpc.Channel:
    """A plaintext channel; ``fresh_connection`` forces its own TCP connection."""
    options = [("grpc.use_local_subchannel_pool", 1)] if fresh_connection else []
    return grpc.insecure_channel(address, options=options)


def health_status(address: str, service: str = "", *, fresh_connection: bool = False) -> str:
    """The gRPC health status name of ``service``."""
    with channel(address, fresh_connection=fresh_connection) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def reflected_services(address: str) -> set[str]:
    """The service names server reflection lists."""
    with channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), timeout=10)
        return {s.name for r in responses for s in r.list_services_response.service}


def call_first_method(address: str, module: Any, service: str, **kwargs: Any) -> Any:
    """Call the first RPC of a govtrust.v1 service with an empty request; return the response."""
    descriptor = module.DESCRIPTOR.services_by_name[service].methods[0]
    request_class = message_factory.GetMessageClass(descriptor.input_type)
    response_class = message_factory.GetMessageClass(descriptor.output_type)
    with channel(address) as ch:
        stub = ch.unary_unary(
            f"/{descriptor.containing_service.full_name}/{descriptor.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return stub(request_class(), timeout=kwargs.pop("timeout", 30), **kwargs)


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """All samples called ``name`` in a Prometheus text exposition."""
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                samples.append((dict(sample.labels), sample.value))
    return samples


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


class _LoopbackAuthenticator:
    """Every caller is the loopback administrator (what the embedded default does)."""

    client_certificates = False

    def authenticate_now(self, metadata: Any, auth_context: Any) -> Any:
        return LOCAL_ADMIN

    async def authenticate(self, metadata: Any, auth_context: Any) -> Any:
        return self.authenticate_now(metadata, auth_context)


def loopback_interceptor() -> GovtrustInterceptor:
    """The production interceptor, every caller authenticated as the loopback administrator:
    for tests that serve their own handlers through it in process."""
    return GovtrustInterceptor(cast(Authenticator, _LoopbackAuthenticator()), get_metrics())
