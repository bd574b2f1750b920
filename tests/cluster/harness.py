"""Three govtrust hosts in network namespaces, one PostgreSQL, HAProxy in front (issue #20 item 5).

Layout (all names carry a random tag, so parallel runs never clash)::

    root namespace                          namespace gt<tag>n1 … n3
    ─────────────                           ─────────────────────────
    bridge gtb<tag> 10.A.B.1/24  ── veth ── 10.A.B.11 … 13: govtrust serve (TLS, mTLS)
    socat 10.A.B.1:5432 → 127.0.0.1:5432 (PostgreSQL listens on loopback only)
    haproxy 127.0.0.1:G (gRPC, h2c) and 127.0.0.1:H (HTTP) → the three replicas over TLS,
        health-checked on GET /readyz, presenting the service certificate ``cluster.load``

The replicas share one database and one master key (the soft key store keeps its keys in the
database). The load clients (:class:`Load`) talk to HAProxy only and record every attempt: the
operation, its client-side key, start and end, the status code, the acknowledged id. The
checks (:func:`check_phase`) read PostgreSQL directly. Everything is torn down by
:meth:`Cluster.close` (namespaces, bridge, processes, the database), also after a failure.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from govtrust import db
from tests.server.serving import Served, server_env, spawn

REPO = Path(__file__).resolve().parents[2]


def _certificate_request_fields() -> set[str]:
    from govtrust.v1 import certificate_pb2

    return set(certificate_pb2.IssueCertificateRequest.DESCRIPTOR.fields_by_name)


SHARED_PG_PORT = 5432
"""The machine's PostgreSQL, used when the harness cannot run one of its own."""


def pg_admin(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


REPLICAS = 3
GRPC_PORT = 50051
HTTP_PORT = 8080
LOAD_SERVICE = "cluster.load"
"""The system id of the service certificate HAProxy presents to the replicas (mTLS)."""
RETRYABLE_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"})
RETRYABLE_HTTP = frozenset({"HTTP_502", "HTTP_503", "HTTP_504", "CONNECTION"})
RETRYABLE = RETRYABLE_GRPC | RETRYABLE_HTTP
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
"""A retry answered FAILED_PRECONDITION by the request ledger because the first call's effect
committed but its answer was lost (the database connection died during the COMMIT, so the
call could not know): the documented, truthful answer (govtrust.idempotency), neither
retryable nor wrong; counted in its own column."""
ANSWER_LOST = "took effect but its answer was lost"
CERTIFICATE_REQUEST_ID = "request_id" in _certificate_request_fields()
"""Whether IssueCertificate takes an idempotency key (issue #20 item 4): then the load sends the
operation's key with every attempt and a retry must never issue twice; until then a retry after
a lost acknowledgement issues a second certificate, which the table counts as duplicated."""
LEASE_RUN_TABLES = ("cluster_job_runs", "cluster_lease_runs", "lease_runs")
"""Tables the cluster-jobs check reads when one exists (issue #20 item 1 lands one of them):
one row per (job, period) run; the check is that no (job, period) appears twice."""


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command (``ip``, ``pg_ctlcluster``); its output captured."""
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# --- network ------------------------------------------------------------------------------------


@dataclass
class Network:
    """A private bridge in the root namespace and one namespace per host, linked by veth pairs."""

    tag: str
    subnet: ipaddress.IPv4Network
    created: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"gtb{self.tag}"

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def namespace(self, host: int) -> str:
        return f"gt{self.tag}n{host}"

    def host_link(self, host: int) -> str:
        """The root-namespace end of host ``host``'s veth pair (down = the host is partitioned)."""
        return f"gt{self.tag}h{host}"

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + 10 + host)

    @classmethod
    def create(cls, hosts: int) -> Network:
        """Bridge, namespaces and links up; an unused 10.x.y.0/24 chosen at random."""
        used = run("ip", "-4", "addr").stdout
        while True:
            subnet = ipaddress.IPv4Network(
                f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
            )
            if str(subnet.network_address)[:-1] not in used:
                break
        network = cls(uuid.uuid4().hex[:6], subnet)
        try:
            network._build(hosts)
        except BaseException:
            network.remove()
            raise
        return network

    def _build(self, hosts: int) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self.created.append("bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for host in range(1, hosts + 1):
            ns = self.namespace(host)
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            inner = f"gt{self.tag}p{host}"
            run("ip", "link", "add", self.host_link(host), "type", "veth", "peer", "name", inner)
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "link", "set", self.host_link(host), "master", self.bridge, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", inner)
            run("ip", "-n", ns, "link", "set", inner, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def partition(self, host: int, cut: bool) -> None:
        """Take host ``host``'s link down (``cut``) or up again."""
        run("ip", "link", "set", self.host_link(host), "down" if cut else "up")

    def remove(self) -> None:
        """Kill whatever still runs in the namespaces, delete them and the bridge."""
        for name in reversed(self.created):
            if name == "bridge":
                run("ip", "link", "del", self.bridge, check=False)
                continue
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", name, check=False)
        self.created.clear()


# --- TLS material -------------------------------------------------------------------------------


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    addresses: list[str] = [],  # noqa: B006 - read only
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if addresses:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_server_tls(directory: Path, addresses: list[str]) -> dict[str, Path]:
    """A throw-away CA and one server certificate naming every replica address."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("cluster test CA", ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("govtrust replicas", key, (ca.subject, ca_key), addresses)
    paths = {"ca": directory / "server-ca.pem", "cert": directory / "server.pem"}
    paths["key"] = directory / "server.key"
    paths["ca"].write_bytes(_pem(ca))
    paths["cert"].write_bytes(_pem(cert))
    paths["key"].write_bytes(_key_pem(key))
    paths["key"].chmod(0o600)
    return paths


# --- the shared database ------------------------------------------------------------------------


@dataclass
class World:
    """What the bootstrap made: the database, master key, client material and request shapes."""

    database: str
    boot_dir: Path
    master_key: str
    service_ca: Path  # our service CA chain: the replicas' client CA file
    haproxy_pem: Path  # HAProxy's client certificate + key (system id cluster.load)
    verify_der: bytes  # a certificate the verification load checks
    licence_template: dict[str, Any]
    crl_path: str  # an HTTP path the HTTP load fetches
    seal_id: str  # the department's official seal, which its legal representative may use
    oidc_client: tuple[str, str]  # client id and secret of the relying party the load plays
    # per client slot, a few logged-in token families (access token, refresh token) of the
    # seal owner's legal representative: a family revoked by a refresh-token reuse is replaced
    # by the next (a browser login cannot run through HAProxy's plain HTTP: secure cookies)
    logins: list[list[tuple[str, str]]]
    pg_port: int = SHARED_PG_PORT

    @property
    def local_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.database}"


LOGIN_NAME = "cluster.head"
LOGIN_PASSWORD = "cluster harness password 1"


def _login_families(
    platform: Any, head_id: str, slots: int, families: int
) -> tuple[tuple[str, str], list[list[tuple[str, str]]]]:
    """Register the relying party and log the department head in ``slots × families`` times
    through the OIDC code flow, in process (same database and keys as the replicas)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from govtrust.api.oidc_http import router
    from idp.oidc.factory import provider_for
    from tests.oidc.conftest import ADMIN, REDIRECT, REGISTRAR, pkce_pair
    from tests.oidc.flows import authorize, code_from, exchange, password_login

    provider = provider_for(platform)
    provider.passwords.set_password(
        REGISTRAR, identity_id=head_id, login_name=LOGIN_NAME, password=LOGIN_PASSWORD
    )
    registered = provider.clients.register(
        ADMIN, client_name="cluster load", redirect_uris=[REDIRECT]
    )
    client = (registered.client.client_id, registered.client_secret or "")
    app = FastAPI()
    app.include_router(router(platform))
    logins: list[list[tuple[str, str]]] = []
    for _ in range(slots):
        slot = []
        for _ in range(families):
            with TestClient(
                app, base_url=platform.settings.effective_public_base_url, follow_redirects=False
            ) as http:
                verifier, challenge = pkce_pair()
                response = authorize(
                    http, client[0], code_challenge=challenge, code_challenge_method="S256"
                )
                result = password_login(http, response, login=LOGIN_NAME, password=LOGIN_PASSWORD)
                code = code_from(result)["code"]
                tokens = exchange(http, client[0], client[1], code, verifier).json()
            slot.append((tokens["access_token"], tokens["refresh_token"]))
        logins.append(slot)
    return client, logins


def bootstrap(
    directory: Path,
    issuer: str,
    *,
    slots: int = 8,
    families: int = 3,
    pg_port: int = SHARED_PG_PORT,
) -> World:
    """Create the database, migrate it, make the CA, the licence department and its seal, the
    service identity the load runs as and its certificate, in this process (as ``govtrust init``
    and an operator would), before any replica starts."""
    from ca.authority import authority_for
    from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
    from govtrust.config import Settings
    from govtrust.principal import SYSTEM
    from govtrust.server.wiring import checkpoint_audit, open_wired
    from idp.services import ServiceRegistry
    from license import catalogue

    name = f"gt_cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin(pg_port), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    boot_dir = directory / "boot"
    url = f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/{name}"
    settings = Settings(data_dir=boot_dir, database_url=url, public_base_url=issuer)
    platform = open_wired(settings, migrate=True)
    try:
        from bench.license import _department

        request = _department(platform)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/{name}") as conn:
            found = conn.execute("SELECT id, owner_id FROM seal_seals").fetchone()
        assert found is not None, "the department has no seal"
        seal_id, owner_id = found
        from govtrust.principal import SYSTEM as _SYSTEM
        from idp.runtime import identity_registry_for
        from idp.types import IdentityRef

        owner = identity_registry_for(platform).get_legal_person(_SYSTEM, IdentityRef(id=owner_id))
        oidc_client, logins = _login_families(
            platform, owner.legal_representative.id, slots, families
        )
        authority = authority_for(platform)
        chain = b"".join(
            x509.load_der_x509_certificate(i.der).public_bytes(serialization.Encoding.PEM)
            for i in authority.issuing_chain("service")
        )
        service_ca = directory / "service-ca.pem"
        service_ca.write_bytes(chain)
        roles = ["ca-operator", "verifier", f"licence-issuer:{catalogue.EXAMPLE_ISSUER}"]
        ServiceRegistry(platform.db).register(SYSTEM, LOAD_SERVICE, roles)
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOAD_SERVICE)]))
            .sign(key, hashes.SHA256())
        )
        issued = authority.issue(
            SYSTEM,
            IssueRequest(
                profile="service",
                subject=SubjectSpec(service=ServiceSubject(LOAD_SERVICE)),
                csr=csr.public_bytes(serialization.Encoding.PEM),
            ),
        ).certificate
        haproxy_pem = directory / "haproxy-client.pem"
        leaf = x509.load_der_x509_certificate(issued.der)
        haproxy_pem.write_bytes(_pem(leaf) + chain + _key_pem(key))
        haproxy_pem.chmod(0o600)
        authority.refresh()
        checkpoint_audit(platform)
        template = {
            "type_code": request.type_code,
            "issuer_code": request.issuer_code,
            "holder_code": request.holder_code,
            "fields": dict(request.fields),
            "valid_from": request.valid_from.isoformat() if request.valid_from else "",
        }
        return World(
            database=name,
            boot_dir=boot_dir,
            master_key=(boot_dir / "master.key").read_text("ascii").strip(),
            service_ca=service_ca,
            haproxy_pem=haproxy_pem,
            verify_der=issued.der,
            licence_template=template,
            crl_path=f"/crl/{issued.issuer}.crl",
            seal_id=seal_id,
            oidc_client=oidc_client,
            logins=logins,
            pg_port=pg_port,
        )
    finally:
        platform.close()


def drop_database(name: str, port: int = SHARED_PG_PORT) -> None:
    with psycopg.connect(pg_admin(port), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- processes ----------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (0 once it is gone)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [pid], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL backend processes serving ``database`` (by their process title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if title.startswith("postgres:") and f" {database} " in title:
                pids.append(int(entry.name))
    return pids


class Replica:
    """``govtrust serve`` in host ``index``'s namespace; restartable."""

    def __init__(self, cluster: Cluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.served: Served | None = None
        self.data_dir = cluster.directory / f"replica{index}"
        self.starts = 0

    @property
    def address(self) -> str:
        return self.cluster.network.address(self.index)

    def start(self) -> None:
        """Start it (no wait)."""
        c = self.cluster
        env = server_env(
            GOVTRUST_DATABASE_URL=(
                f"postgresql+psycopg://postgres@{c.network.gateway}:5432/{c.world.database}"
            ),
            GOVTRUST_MASTER_KEY=c.world.master_key,
            GOVTRUST_TLS_CERT=str(c.tls["cert"]),
            GOVTRUST_TLS_KEY=str(c.tls["key"]),
            GOVTRUST_TLS_CLIENT_CA=str(c.world.service_ca),
            GOVTRUST_TRUSTED_PROXIES=c.network.gateway,
            GOVTRUST_PUBLIC_BASE_URL=f"http://127.0.0.1:{c.http_port}",
            GOVTRUST_AUDIT_CHECKPOINT_SECONDS=str(c.checkpoint_seconds),
            GOVTRUST_CA_REFRESH_SECONDS=str(CA_REFRESH_SECONDS),
            GOVTRUST_CLUSTER_LEASE_SECONDS=str(LEASE_SECONDS),
            GOVTRUST_LOG_LEVEL="warning",
        )
        command = ["ip", "netns", "exec", c.network.namespace(self.index), sys.executable]
        command += ["-m", "govtrust", "serve", "--data-dir", str(self.data_dir), "--no-migrate"]
        command += ["--host", self.address, "--grpc-port", str(GRPC_PORT)]
        command += ["--http-port", str(HTTP_PORT), "--workers", "1"]
        self.served = spawn(command, env)
        self.starts += 1

    def wait_ready(self) -> None:
        assert self.served is not None
        self.served.wait_ready()

    def kill9(self) -> None:
        """SIGKILL the process (and its process group), as a crashed host would."""
        if self.served is not None:
            self.served.kill()

    def stop(self) -> int:
        """SIGTERM and wait (the drain a rolling restart relies on)."""
        assert self.served is not None
        code, _ = self.served.stop(timeout=30)
        return code

    def cpu_seconds(self) -> float:
        """User + system CPU so far of the serving process and its descendants (workers,
        document pools)."""
        if self.served is None or self.served.process.poll() is not None:
            return 0.0
        return sum(cpu_seconds(pid) for pid in family(self.served.process.pid))


HAPROXY_CONFIG = """\
global
    maxconn 4000
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 2s
    retries 2
    option redispatch
    retry-on conn-failure
frontend grpc_in
    bind 127.0.0.1:{grpc_port} proto h2
    default_backend grpc_replicas
frontend http_in
    bind 127.0.0.1:{http_port}
    default_backend http_replicas
backend grpc_replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server {grpc_defaults}
{grpc_servers}
backend http_replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server {http_defaults}
{http_servers}
"""


class HaProxy:
    """HAProxy in the root namespace, in front of the replicas; its stats socket answers which
    servers it considers up."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.socket = cluster.directory / "haproxy.sock"
        self.config = cluster.directory / "haproxy.cfg"
        c = cluster
        grpc_servers = "\n".join(
            f"    server r{i} {c.network.address(i)}:{GRPC_PORT}" for i in c.hosts
        )
        http_servers = "\n".join(
            f"    server r{i} {c.network.address(i)}:{HTTP_PORT}" for i in c.hosts
        )
        # TLS to the replicas (their CA verified), our service certificate as HAProxy's client
        # certificate, health = GET /readyz on the HTTP port every 0.5 s, 2 to fall or rise
        tls = f"ssl verify required ca-file {c.tls['ca']} crt {c.world.haproxy_pem}"
        check = "check-alpn http/1.1 inter 500 fall 2 rise 2"
        self.config.write_text(
            HAPROXY_CONFIG.format(
                socket=self.socket,
                grpc_port=c.grpc_port,
                http_port=c.http_port,
                grpc_defaults=f"{tls} alpn h2 check port {HTTP_PORT} check-ssl {check}",
                http_defaults=f"{tls} alpn http/1.1 check {check}",
                grpc_servers=grpc_servers,
                http_servers=http_servers,
            )
        )
        haproxy = shutil.which("haproxy") or "haproxy"
        run(haproxy, "-c", "-q", "-f", str(self.config))
        self.process = subprocess.Popen(
            [haproxy, "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall((line + "\n").encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[tuple[str, str], str]:
        """(backend, server) → HAProxy's status (UP, DOWN, MAINT, ...)."""
        out: dict[tuple[str, str], str] = {}
        with contextlib.suppress(OSError):
            lines = self.command("show stat").splitlines()
            header = lines[0].lstrip("# ").split(",") if lines else []
            for line in lines[1:]:
                row = dict(zip(header, line.split(","), strict=False))
                if row.get("svname", "") not in ("FRONTEND", "BACKEND", ""):
                    out[(row["pxname"], row["svname"])] = row.get("status", "")
        return out

    def all_up(self, servers: list[str]) -> bool:
        states = self.states()
        return all(
            states.get((backend, s), "") == "UP"
            for backend in ("grpc_replicas", "http_replicas")
            for s in servers
        )

    def set_enabled(self, server: str, enabled: bool) -> None:
        """Put a server in or out of maintenance (the 1-replica capacity run)."""
        for backend in ("grpc_replicas", "http_replicas"):
            verb = "enable" if enabled else "disable"
            self.command(f"{verb} server {backend}/{server}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


class PgForwarder:
    """socat on the bridge address forwarding to PostgreSQL on loopback (the hosts' way to the
    database; the system PostgreSQL's configuration is not touched).

    Its sockets towards the hosts carry the TCP keepalives and user timeout the server's own
    would (:func:`govtrust.db.postgresql_connect_args`), so a cut-off host's sessions end as
    they would over a real network: socat's side towards PostgreSQL (loopback) never fails, and
    without them a partitioned host's session idle inside a transaction kept its locks until
    the partition healed and a retransmission got through."""

    def __init__(self, address: str, target_port: int = SHARED_PG_PORT) -> None:
        self.address = address
        self.target_port = target_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        socat = shutil.which("socat") or "socat"
        self.process = subprocess.Popen(
            [
                socat,
                f"TCP-LISTEN:5432,bind={self.address},fork,reuseaddr,backlog=256,keepalive,"
                f"keepidle={db.KEEPALIVE_IDLE_SECONDS},keepintvl={db.KEEPALIVE_INTERVAL_SECONDS},"
                f"keepcnt={db.KEEPALIVE_COUNT},"
                f"sockopt-int={socket.IPPROTO_TCP}:{socket.TCP_USER_TIMEOUT}:"
                f"{db.TCP_USER_TIMEOUT_SECONDS * 1000}",
                f"TCP:127.0.0.1:{self.target_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.address, 5432), 1):
                return
            time.sleep(0.05)
        raise AssertionError("the PostgreSQL forwarder did not listen")

    def stop(self) -> None:
        """Kill it and every forked connection: every replica loses its database connections."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


def pg_cluster() -> tuple[str, str] | None:
    """(version, name) of the local PostgreSQL cluster on port 5432, if ``pg_lsclusters`` knows."""
    if shutil.which("pg_lsclusters") is None:
        return None
    for line in run("pg_lsclusters", "-h", check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "5432":
            return parts[0], parts[1]
    return None


def restart_postgresql() -> None:
    """``pg_ctlcluster … restart`` (fast shutdown, its default) of the local cluster, then wait
    until it answers."""
    found = pg_cluster()
    assert found is not None, "pg_lsclusters found no cluster on port 5432"
    run("pg_ctlcluster", "--skip-systemctl-redirect", found[0], found[1], "restart")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if run("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q", check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("PostgreSQL did not come back within 60 s")


class PrivatePostgres:
    """A PostgreSQL instance of the harness's own: ``initdb`` in a folder of its own, loopback on
    a free port, trust authentication, run as the ``postgres`` user. The database fault restarts
    it for real (``pg_ctl restart -m fast``: every session ended, the server down for a moment,
    then recovery) without disturbing anyone else's use of the machine's PostgreSQL."""

    def __init__(self) -> None:
        found = self.binaries()
        assert found is not None, "no PostgreSQL server binaries (initdb, pg_ctl)"
        self.bin: Path = found
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="govtrust-cluster-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    @staticmethod
    def binaries() -> Path | None:
        """The newest PostgreSQL server's bin folder with initdb and pg_ctl, if installed."""
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        return found[-1].parent if found else None

    @classmethod
    def available(cls) -> bool:
        """Whether the harness can run its own instance (binaries, root to become postgres)."""
        return cls.binaries() is not None and os.geteuid() == 0

    def _as_postgres(self, *command: str) -> subprocess.CompletedProcess[str]:
        return run("runuser", "-u", "postgres", "--", *command)

    def start(self) -> None:
        """initdb (once) and start; returns when it accepts connections."""
        shutil.chown(self.root, "postgres", "postgres")
        if not self.data.exists():
            self._as_postgres(
                str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8",
            )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c max_connections=300 -c shared_buffers=64MB"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip

    def restart(self) -> None:
        """``pg_ctl restart -m fast`` (the options of the start are kept; the log file named again,
        else the server would write into this process's pipe), then wait until it answers."""
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", "fast",
            "-w", "-t", "60", "restart",
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = run(
                str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q",
                check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"PostgreSQL did not come back within 60 s: {self.log}")

    def stop(self) -> None:
        """Stop it (immediately) and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            run(
                "runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D",
                str(self.data), "-m", "immediate", "-w", "stop", check=False,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


# --- the cluster --------------------------------------------------------------------------------


class Cluster:
    """Network, forwarder, bootstrap, replicas and HAProxy; :meth:`close` undoes all of it."""

    def __init__(
        self,
        directory: Path,
        *,
        checkpoint_seconds: int = 15,
        private_pg: bool = False,
        login_slots: int = 8,
    ) -> None:
        """``private_pg``: run a PostgreSQL instance of the cluster's own
        (:class:`PrivatePostgres`), which the database fault may restart for real; else use the
        machine's on port 5432. ``login_slots``: load clients with OIDC sessions of their own
        (each logs in three times at bootstrap: argon2id, so not more than the loads need)."""
        self.directory = directory
        self.login_slots = login_slots
        self.private_pg = private_pg
        self.pg: PrivatePostgres | None = None
        self.checkpoint_seconds = checkpoint_seconds
        self.hosts = list(range(1, REPLICAS + 1))
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.network: Network
        self.world: World
        self.forwarder: PgForwarder | None = None
        self.haproxy: HaProxy | None = None
        self.replicas: dict[int, Replica] = {}
        self._database: str | None = None
        self.fault_problems: list[str] = []  # what a fault's own checks found (run_faults)

    def open(self) -> Cluster:
        try:
            self.network = Network.create(REPLICAS)
            self.tls = write_server_tls(
                self.directory, [self.network.address(i) for i in self.hosts]
            )
            port = SHARED_PG_PORT
            if self.private_pg:
                self.pg = PrivatePostgres()
                self.pg.start()
                port = self.pg.port
            self.world = bootstrap(
                self.directory,
                f"http://127.0.0.1:{self.http_port}",
                pg_port=port,
                slots=self.login_slots,
            )
            self._database = self.world.database
            self.forwarder = PgForwarder(self.network.gateway, port)
            self.forwarder.start()
            for i in self.hosts:
                self.replicas[i] = Replica(self, i)
                self.replicas[i].start()
            for replica in self.replicas.values():
                replica.wait_ready()
            self.haproxy = HaProxy(self)
            self.wait_all_up(60)
        except BaseException:
            self.close()
            raise
        return self

    def servers(self) -> list[str]:
        return [f"r{i}" for i in self.hosts]

    def wait_all_up(self, timeout: float) -> float:
        """Until HAProxy sees every replica up in both backends; the time it happened."""
        assert self.haproxy is not None
        deadline = time.monotonic() + timeout
        while not self.haproxy.all_up(self.servers()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"replicas not all up after {timeout} s: {self.haproxy.states()}"
                    + "".join(
                        f"\n--- r{i}\n{r.served.transcript() if r.served else ''}"
                        for i, r in self.replicas.items()
                    )
                )
            time.sleep(0.1)
        return time.monotonic()

    def close(self) -> None:
        """Stop everything this cluster started and drop its database (idempotent)."""
        if self.haproxy is not None:
            self.haproxy.stop()
            self.haproxy = None
        for replica in self.replicas.values():
            replica.kill9()
        self.replicas.clear()
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        if hasattr(self, "network"):
            self.network.remove()
        if self._database is not None:
            with contextlib.suppress(psycopg.Error):
                drop_database(self._database, self.world.pg_port)
            self._database = None
        if self.pg is not None:
            self.pg.stop()
            self.pg = None

    def audit_verify(self) -> subprocess.CompletedProcess[str]:
        """``govtrust audit verify`` on the shared database (the operator's command)."""
        env = server_env(
            GOVTRUST_DATABASE_URL=self.world.local_url.replace(
                "postgresql:", "postgresql+psycopg:"
            ),
            GOVTRUST_MASTER_KEY=self.world.master_key,
        )
        command = [sys.executable, "-m", "govtrust", "audit", "verify"]
        command += ["--data-dir", str(self.world.boot_dir)]
        return subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
        )


@contextlib.contextmanager
def cluster(directory: Path, **kwargs: Any) -> Iterator[Cluster]:
    """A running cluster, torn down however the block ends."""
    c = Cluster(directory, **kwargs)
    c.open()
    try:
        yield c
    finally:
        c.close()


# --- load ---------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One call the load made: which logical operation, when, how it ended."""

    op: str  # certificate | licence | verify | http
    key: str  # the logical operation (retries share it)
    start: float
    end: float
    code: str  # OK, a gRPC status name, HTTP_<status> or CONNECTION
    ack: str = ""  # the acknowledged id: certificate serial, licence identifier


class Load:
    """Mixed clients through HAProxy, each a thread with its own channel; every attempt kept.

    A mutating operation that fails with a retryable code is retried with the same key (the
    certificate's system id, the licence's and the signature's request_id), up to
    :attr:`attempts` times, as a well-behaved client does; so a duplicate shows up as two rows
    for one key."""

    OPS = ("certificate", "licence", "verify", "http", "oidc", "seal")

    def __init__(
        self, c: Cluster, clients: int = 4, *, attempts: int = 12, first_slot: int = 0
    ) -> None:
        """``first_slot``: the first of the bootstrap's login slots this load's clients use (a
        second load in one cluster takes fresh token families)."""
        self.cluster = c
        self.first_slot = first_slot
        self.clients = clients
        self.attempts = attempts  # about 10 s of retrying: longer than a CI fault lasts
        self.csrs: dict[str, bytes] = {}  # a retry sends the same request under the same key
        self.records: list[Attempt] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.threads: list[threading.Thread] = []
        self.run_tag = uuid.uuid4().hex[:6]

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)

    def snapshot(self) -> list[Attempt]:
        with self.lock:
            return list(self.records)

    def _record(self, attempt: Attempt) -> None:
        with self.lock:
            self.records.append(attempt)

    def _client(self, n: int) -> None:
        import httpx

        from govtrust.v1 import (
            certificate_pb2_grpc,
            license_pb2_grpc,
            seal_pb2_grpc,
            verify_pb2_grpc,
        )

        c = self.cluster
        channel = grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}")
        stubs = {
            "seal": seal_pb2_grpc.SealServiceStub(channel),
            "certificate": certificate_pb2_grpc.CertificateServiceStub(channel),
            "licence": license_pb2_grpc.LicenseServiceStub(channel),
            "verify": verify_pb2_grpc.VerifyServiceStub(channel),
        }
        http = httpx.Client(base_url=f"http://127.0.0.1:{c.http_port}", timeout=10)
        state = _Session(list(c.world.logins[(self.first_slot + n) % len(c.world.logins)]))
        count = 0
        try:
            while not self.stopping.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    continue
                op = self.OPS[(n + count) % len(self.OPS)]
                key = f"load-{self.run_tag}-{n}-{count}"
                count += 1
                if op in ("oidc", "seal") and state.current is None:
                    continue  # every token family of this client was revoked
                self._operation(op, key, stubs, http, state)
        finally:
            channel.close()
            http.close()

    def _operation(
        self, op: str, key: str, stubs: dict[str, Any], http: Any, state: _Session
    ) -> None:
        for attempt in range(self.attempts):
            start = time.monotonic()
            try:
                ack = self._call(op, key, stubs, http, state, attempt)
                self._record(Attempt(op, key, start, time.monotonic(), "OK", ack))
                return
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() is not None else "UNKNOWN"
                if code == "FAILED_PRECONDITION" and ANSWER_LOST in (exc.details() or ""):
                    code = OUTCOME_UNKNOWN
                self._record(Attempt(op, key, start, time.monotonic(), code))
            except _HttpFailure as exc:
                code = str(exc)
                self._record(Attempt(op, key, start, time.monotonic(), code))
            except Exception as exc:  # noqa: BLE001 - recorded: a client bug fails the checks
                code = f"CLIENT_{type(exc).__name__}"
                self._record(Attempt(op, key, start, time.monotonic(), code))
            if code not in RETRYABLE or self.stopping.is_set():
                return
            time.sleep(min(0.2 * (attempt + 1), 1.0))

    def _call(
        self, op: str, key: str, stubs: dict[str, Any], http: Any, state: _Session, attempt: int
    ) -> str:
        from govtrust.v1 import certificate_pb2, common_pb2, license_pb2, seal_pb2, verify_pb2

        w = self.cluster.world
        if op == "certificate":
            if key not in self.csrs:
                private = ec.generate_private_key(ec.SECP256R1())
                self.csrs[key] = (
                    x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key)]))
                    .sign(private, hashes.SHA256())
                    .public_bytes(serialization.Encoding.DER)
                )
            request = certificate_pb2.IssueCertificateRequest(
                csr=self.csrs[key],
                profile=common_pb2.CERTIFICATE_PROFILE_SERVICE,
                subject=certificate_pb2.CertificateSubject(
                    service=certificate_pb2.ServiceSubject(system_id=key)
                ),
            )
            if CERTIFICATE_REQUEST_ID:
                setattr(request, "request_id", key)  # noqa: B010 - a field of item 4
            reply = stubs["certificate"].IssueCertificate(request, timeout=20)
            return str(reply.certificate.summary.serial_number)
        if op == "licence":
            t = w.licence_template
            reply = stubs["licence"].IssueLicense(
                license_pb2.IssueLicenseRequest(
                    type_code=t["type_code"],
                    issuer_code=t["issuer_code"],
                    holder=license_pb2.LicenseHolder(
                        code_type=license_pb2.HOLDER_CODE_TYPE_USCC, code=t["holder_code"]
                    ),
                    fields=t["fields"],
                    valid_from=t["valid_from"],
                    skip_document=True,
                    request_id=key,
                ),
                timeout=20,
            )
            return str(reply.license.identifier)
        if op == "verify":
            reply = stubs["verify"].VerifyCertificate(
                verify_pb2.VerifyCertificateRequest(
                    certificate=w.verify_der,
                    revocation_check=verify_pb2.REVOCATION_CHECK_REGISTRY,
                ),
                timeout=20,
            )
            return str(reply.report.report_id)
        if op == "oidc":
            return state.refresh(http, w.oidc_client, retried=attempt > 0)
        if op == "seal":
            assert state.current is not None
            reply = stubs["seal"].SignData(
                seal_pb2.SignDataRequest(seal_id=w.seal_id, data=key.encode(), request_id=key),
                metadata=(("authorization", f"Bearer {state.current[0]}"),),
                timeout=20,
            )
            return f"{reply.event.sequence}:{reply.event.document_digest.value.hex()}"
        try:
            response = http.get(w.crl_path)
        except Exception as exc:  # any transport failure is a CONNECTION error
            raise _HttpFailure("CONNECTION") from exc
        if response.status_code != 200:
            raise _HttpFailure(f"HTTP_{response.status_code}")
        return ""


class _HttpFailure(Exception):
    """An HTTP load call that did not answer 200 (the message is its code)."""


class _Session:
    """One load client's OIDC session: its current (access, refresh) tokens and spare families.

    A refresh answered with a retryable failure is retried with the same refresh token; if the
    server had rotated it before the answer was lost, the provider answers the retry again
    within its refresh reuse interval (``oidc_refresh_reuse_interval_seconds``, 30 s from the
    rotation, docs/oidc.md); a retry later than that is a reuse, the provider revokes the family
    (``invalid_grant``) and the client moves to a spare family: the table shows it as
    ``OIDC_REUSE_AFTER_LOST_ACK`` (counted as not retryable)."""

    def __init__(self, families: list[tuple[str, str]]) -> None:
        self.families = families
        self.current: tuple[str, str] | None = families.pop(0) if families else None

    def refresh(self, http: Any, client: tuple[str, str], *, retried: bool) -> str:
        import hashlib

        assert self.current is not None
        try:
            response = http.post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": self.current[1]},
                auth=client,
            )
        except Exception as exc:  # any transport failure is a CONNECTION error
            raise _HttpFailure("CONNECTION") from exc
        if response.status_code == 400 and response.json().get("error") == "invalid_grant":
            self.current = self.families.pop(0) if self.families else None
            raise _HttpFailure("OIDC_REUSE_AFTER_LOST_ACK" if retried else "OIDC_INVALID_GRANT")
        if response.status_code != 200:
            raise _HttpFailure(f"HTTP_{response.status_code}")
        body = response.json()
        self.current = (body["access_token"], body["refresh_token"])
        return hashlib.sha256(body["refresh_token"].encode()).hexdigest()


# --- checks -------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """What one fault did to the load, and what the checks found."""

    fault: str
    started: float  # monotonic time the fault was injected
    recovered: float  # monotonic time HAProxy saw every replica up again
    acknowledged: int = 0
    acknowledged_by_op: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    duplicated_by_op: dict[str, int] = field(default_factory=dict)
    duplicate_keys: list[str] = field(default_factory=list)  # operation keys issued twice
    errors: dict[str, int] = field(default_factory=dict)
    first_error: float = 0.0  # seconds from the fault to the first failed call's end
    error_window: float = 0.0  # seconds from the fault to the last failed call's end
    outside_window: int = 0  # failed calls outside [fault, recovered + grace]
    not_retryable: int = 0
    outcome_unknown: int = 0  # retries told the effect took place but its answer was lost
    gave_up: int = 0  # logical operations whose client exhausted its retries on retryable codes
    audit_ok: bool = False
    jobs_once: str = "not checked"
    problems: list[str] = field(default_factory=list)
    note: str = ""
    error_log: list[str] = field(default_factory=list)  # the failed calls, fault-relative


GRACE_SECONDS = 3.0
"""A call that failed up to this long after recovery still belongs to the fault (it started
during it, or its client was backing off)."""


def check_phase(
    c: Cluster,
    result: PhaseResult,
    attempts: list[Attempt],
    window_start: float,
    window_end: float,
) -> PhaseResult:
    """Fill ``result`` from the attempts that started in [window_start, window_end) and from
    PostgreSQL."""
    mine = [a for a in attempts if window_start <= a.start < window_end]
    failed = [a for a in mine if a.code != "OK"]
    ok = [a for a in mine if a.code == "OK"]
    result.acknowledged = len(ok)
    for a in ok:
        result.acknowledged_by_op[a.op] = result.acknowledged_by_op.get(a.op, 0) + 1
    for a in failed:
        result.errors[a.code] = result.errors.get(a.code, 0) + 1
    result.error_log = [
        f"{a.start - result.started:+.1f}..{a.end - result.started:+.1f} {a.op} {a.code}"
        for a in sorted(failed, key=lambda a: a.start)
    ]
    if failed:
        result.first_error = round(min(a.end for a in failed) - result.started, 1)
        result.error_window = round(max(a.end for a in failed) - result.started, 1)
    result.not_retryable = sum(a.code not in RETRYABLE | {OUTCOME_UNKNOWN} for a in failed)
    result.outcome_unknown = sum(a.code == OUTCOME_UNKNOWN for a in failed)
    result.outside_window = sum(
        not (result.started - 0.5 <= a.end <= result.recovered + GRACE_SECONDS) for a in failed
    )
    keys_ok = {a.key for a in ok}
    last: dict[str, Attempt] = {}
    for a in sorted(mine, key=lambda a: a.start):
        last[a.key] = a
    result.gave_up = sum(
        a.code in RETRYABLE for k, a in last.items() if k not in keys_ok and a.code != "OK"
    )
    certs = {a.key: a.ack for a in ok if a.op == "certificate"}
    licences = {a.key: a.ack for a in ok if a.op == "licence"}
    with psycopg.connect(c.world.local_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT system_id, serial FROM ca_certificates WHERE system_id = ANY(%s)",
            (list(certs),),
        ).fetchall()
        by_key: dict[str, list[str]] = {}
        for system_id, serial in rows:
            by_key.setdefault(system_id, []).append(serial)
        lost = [k for k, serial in certs.items() if serial not in by_key.get(k, [])]
        duplicated = [k for k, serials in by_key.items() if len(serials) > 1]
        if duplicated:
            result.duplicated_by_op["certificate"] = len(duplicated)
        stored = {
            r[0]
            for r in conn.execute(
                "SELECT identifier FROM licences WHERE identifier = ANY(%s)",
                (list(licences.values()),),
            )
        }
        lost += [k for k, ident in licences.items() if ident not in stored]
        refreshed = {a.key: a.ack for a in ok if a.op == "oidc"}
        stored = {
            r[0].hex()
            for r in conn.execute(
                "SELECT token_hash FROM oidc_refresh_tokens WHERE token_hash = ANY(%s)",
                ([bytes.fromhex(h) for h in refreshed.values()],),
            )
        }
        lost += [k for k, h in refreshed.items() if h not in stored]
        sealed = {a.key: a.ack.split(":") for a in ok if a.op == "seal"}
        events = conn.execute(
            "SELECT sequence, digest FROM seal_events WHERE seal_id = %s AND digest = ANY(%s)",
            (c.world.seal_id, [bytes.fromhex(d) for _, d in sealed.values()]),
        ).fetchall()
        stored = {f"{seq}:{bytes(d).hex()}" for seq, d in events}
        lost += [k for k, (seq, d) in sealed.items() if f"{seq}:{d}" not in stored]
        uses: dict[str, int] = {}
        for _, d in events:
            uses[bytes(d).hex()] = uses.get(bytes(d).hex(), 0) + 1
        twice_sealed = [k for k, (_, d) in sealed.items() if uses.get(d, 0) > 1]
        if twice_sealed:
            result.duplicated_by_op["seal"] = len(twice_sealed)
        # a licence key acknowledged with two identifiers (a retry that issued again)
        seen: dict[str, set[str]] = {}
        for a in ok:
            if a.op == "licence":
                seen.setdefault(a.key, set()).add(a.ack)
        twice_licences = [k for k, ids in seen.items() if len(ids) > 1]
        if twice_licences:
            result.duplicated_by_op["licence"] = len(twice_licences)
        duplicated += twice_licences + twice_sealed
        for table, columns in (
            ("ca_certificates", "issuer, serial"),
            ("licences", "issuer_code, status_index"),
            ("licences", "identifier"),
        ):
            twice = conn.execute(
                f"SELECT count(*) FROM (SELECT {columns} FROM {table} "  # noqa: S608 - constants
                f"GROUP BY {columns} HAVING count(*) > 1) d"
            ).fetchone()
            if twice and twice[0]:
                result.problems.append(f"{twice[0]} duplicate ({columns}) in {table}")
        result.jobs_once = cluster_jobs_once(conn)
    result.lost = len(lost)
    result.duplicated = len(duplicated)
    verified = c.audit_verify()
    result.audit_ok = verified.returncode == 0
    if not result.audit_ok:
        result.problems.append(f"audit verify: {verified.stdout.strip()} {verified.stderr.strip()}")
    if lost:
        result.problems.append(f"acknowledged but not stored: {lost[:5]}")
    result.duplicate_keys = duplicated
    return result


def cluster_jobs_once(conn: psycopg.Connection[Any]) -> str:
    """ "ok" when no cluster job ran twice for one period, per the lease-run table of issue #20
    item 1 (the first of :data:`LEASE_RUN_TABLES` that exists, read as rows of (job, period));
    "no lease table" until it lands."""
    for table in LEASE_RUN_TABLES:
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if not exists or exists[0] is None:
            continue
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table,),
            )
        }
        job = next((x for x in ("job", "job_name", "name") if x in columns), None)
        period = next((x for x in ("period", "period_start", "due_at") if x in columns), None)
        if job is None or period is None:
            return f"{table}: no (job, period) columns"
        twice = conn.execute(
            f"SELECT count(*) FROM (SELECT {job}, {period} FROM {table} "  # noqa: S608
            f"GROUP BY {job}, {period} HAVING count(*) > 1) d"
        ).fetchone()
        return "ok" if twice is None or twice[0] == 0 else f"{twice[0]} ran twice"
    return "no lease table"


# --- faults -------------------------------------------------------------------------------------


@dataclass
class Timings:
    """How long each fault lasts and how long the load runs between them."""

    settle: float = 3.0  # load before a fault, and after recovery
    restart_delay: float = 1.0  # the supervisor's restart delay after a crash
    partition: float = 5.0
    db_outage: float = 3.0  # the forwarder's outage when PostgreSQL itself is not restarted
    recovery_timeout: float = 60.0


def fault_kill9(c: Cluster, t: Timings) -> str:
    """kill -9 of replica 1; the supervisor (systemd Restart=always) starts it again."""
    replica = c.replicas[1]
    replica.kill9()
    time.sleep(t.restart_delay)
    replica.start()
    replica.wait_ready()
    return "replica 1 killed (SIGKILL), restarted by the supervisor after 1 s"


def fault_rolling_restart(c: Cluster, t: Timings) -> str:
    """SIGTERM, restart and wait-until-up of each replica in turn."""
    for i in c.hosts:
        code = c.replicas[i].stop()
        assert code == 0, f"replica {i} exited {code} on SIGTERM"
        c.replicas[i].start()
        c.replicas[i].wait_ready()
        c.wait_all_up(t.recovery_timeout)
    return "each replica SIGTERM-drained and restarted in turn"


def fault_postgres(c: Cluster, t: Timings, *, real_restart: bool) -> str:
    """``pg_ctlcluster … restart`` (``real_restart``), else every database connection cut and the
    database unreachable for ``t.db_outage`` s (the forwarder killed): the same fault seen from
    the replicas, without disturbing other users of the machine's PostgreSQL."""
    assert c.forwarder is not None
    if real_restart:
        if c.pg is not None:
            c.pg.restart()
            return "PostgreSQL restarted (pg_ctl restart -m fast, the cluster's own instance)"
        restart_postgresql()
        return "PostgreSQL restarted (pg_ctlcluster restart, fast shutdown)"
    c.forwarder.stop()
    time.sleep(t.db_outage)
    c.forwarder.start()
    return f"every database connection cut, PostgreSQL unreachable for {t.db_outage:g} s"


def fault_partition(c: Cluster, t: Timings) -> str:
    """Host 2's link down for ``t.partition`` seconds."""
    c.network.partition(2, True)
    try:
        time.sleep(t.partition)
    finally:
        c.network.partition(2, False)
    return f"host 2's link down for {t.partition:g} s"


CA_REFRESH_SECONDS = 6
"""The ``ca.refresh`` job's period in the harness (``GOVTRUST_CA_REFRESH_SECONDS``): short, so a
round starts within seconds of a fault that waits for one."""
LEASE_SECONDS = 6
"""The cluster jobs' lease (``GOVTRUST_CLUSTER_LEASE_SECONDS``): a dead leader's jobs are taken
over within ``LEASE_SECONDS * 4 / 3`` (``ClusterJobs.takeover_bound_seconds``)."""
TAKEOVER_BOUND = LEASE_SECONDS + LEASE_SECONDS / 3
TAKEOVER_SLACK = 2.0
"""Scheduling slack on a loaded two-core machine: the takeover's round itself, one tick late."""


@dataclass
class CrlTakeover:
    """What :func:`fault_leader_during_crl` saw: who led, who took over, how fast, and the
    CRL numbers published by then."""

    killed: int = 0  # the replica index of the leader killed
    killed_holder: str = ""
    successor: str = ""  # the holder that ran ca.refresh next
    takeover_seconds: float = -1.0  # from the kill to the successor's round done (database clock)
    delta_published_seconds: float = -1.0  # from the kill to the next delta CRL (database clock)
    numbers_before: int = 0  # the CA's highest CRL number before the fault
    problems: list[str] = field(default_factory=list)


def _replica_of(c: Cluster, holder: str) -> int | None:
    """The replica whose process (or a descendant) has the pid named in a lease holder id
    (``host:pid:suffix``)."""
    try:
        pid = int(holder.split(":")[-2])
    except (IndexError, ValueError):
        return None
    for i, replica in c.replicas.items():
        if replica.served is not None and pid in family(replica.served.process.pid):
            return i
    return None


def fault_leader_during_crl(c: Cluster, t: Timings) -> str | None:
    """The ``ca.refresh`` lease holder killed (SIGKILL) in the middle of a round that publishes
    CRLs; the supervisor restarts it only after another replica took the job over.

    How the round is caught in the middle, deterministically: the harness takes the row lock of
    the CA's CRL-number counter (``ca_counters``, ``crl:<ca>``) in an open transaction, then
    revokes a load certificate over gRPC (the CA's CRLs are now behind a status change). The
    next ``ca.refresh`` round (every :data:`CA_REFRESH_SECONDS`) claims its period and blocks on
    the counter: mid-publication. The harness kills the replica holding the lease (the period's
    holder), then releases the lock. On-demand CRL requests of the load block meanwhile too and
    publish the full CRL afterwards; nobody fetches the delta CRL, so the next delta CRL is the
    successor leader's. Checked (in :attr:`Cluster.crl_takeover`): another process ran
    ``ca.refresh`` and a delta CRL was published within the takeover bound (lease + a third,
    plus :data:`TAKEOVER_SLACK`), no CRL number twice, every new number above the old ones."""
    seen = CrlTakeover()
    ca = c.world.crl_path.rsplit("/", 1)[-1].removesuffix(".crl")
    url = c.world.local_url
    with psycopg.connect(url, autocommit=True) as conn:
        before = conn.execute(
            "SELECT coalesce(max(crl_number), 0) FROM ca_crls WHERE issuer = %s", (ca,)
        ).fetchone()
        seen.numbers_before = int(before[0]) if before else 0
        serial = conn.execute(
            "SELECT serial FROM ca_certificates WHERE issuer = %s AND status = 'active' "
            "AND system_id LIKE 'load-%%' ORDER BY issued_at DESC LIMIT 1",
            (ca,),
        ).fetchone()
    assert serial is not None, "no load certificate to revoke"
    stall = psycopg.connect(url)  # one transaction holding the CRL counter's row lock
    try:
        stall.execute(
            "SELECT value FROM ca_counters WHERE name = %s FOR UPDATE", (f"crl:{ca}",)
        ).fetchone()
        revoke_over_grpc(c, serial[0])
        db_start = _db_now(url)
        deadline = time.monotonic() + 3 * CA_REFRESH_SECONDS + TAKEOVER_BOUND
        holder = ""
        while not holder:  # a ca.refresh round that started after the revocation, not done
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT holder FROM cluster_job_runs WHERE job = 'ca.refresh' "
                    "AND outcome = 'running' AND started_at > %s ORDER BY period DESC LIMIT 1",
                    (db_start,),
                ).fetchone()
            holder = row[0] if row else ""
            assert time.monotonic() < deadline, "no ca.refresh round started"
            time.sleep(0.1)
        time.sleep(0.5)  # it reaches the counter (CAs before this one have fresh CRLs)
        killed = _replica_of(c, holder)
        assert killed is not None, f"the leader {holder} is no replica of this cluster"
        seen.killed, seen.killed_holder = killed, holder
        c.replicas[killed].kill9()
        killed_at = _db_now(url)
    finally:
        stall.rollback()
        stall.close()
    successor = _await_takeover(url, ca, holder, killed_at, seen)
    c.replicas[killed].start()  # the supervisor, once the job has a new leader
    c.replicas[killed].wait_ready()
    with psycopg.connect(url, autocommit=True) as conn:
        numbers = [
            int(r[0])
            for r in conn.execute(
                "SELECT crl_number FROM ca_crls WHERE issuer = %s ORDER BY crl_number", (ca,)
            )
        ]
    new = [n for n in numbers if n > seen.numbers_before]
    if len(set(numbers)) != len(numbers):
        seen.problems.append(f"a CRL number of {ca} published twice: {numbers}")
    if not new:
        seen.problems.append(f"no CRL of {ca} published after the fault")
    bound = TAKEOVER_BOUND + TAKEOVER_SLACK
    if not 0 <= seen.takeover_seconds <= bound:
        seen.problems.append(
            f"ca.refresh taken over after {seen.takeover_seconds:.1f} s (bound {bound:.1f} s)"
        )
    if not 0 <= seen.delta_published_seconds <= bound:
        seen.problems.append(
            f"the delta CRL was republished {seen.delta_published_seconds:.1f} s after the kill "
            f"(bound {bound:.1f} s)"
        )
    c.fault_problems += seen.problems
    return (
        f"ca.refresh leader (replica {killed}) killed mid-publication; {successor or 'nobody'} "
        f"took over in {seen.takeover_seconds:.1f} s, delta CRL after "
        f"{seen.delta_published_seconds:.1f} s (bound {TAKEOVER_BOUND:g} s), CRL numbers "
        f"{seen.numbers_before}→{max(numbers, default=0)}, none twice"
    ) + (f" — {'; '.join(seen.problems)}" if seen.problems else "")


def _db_now(url: str) -> datetime.datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    moment: datetime.datetime = row[0]
    return moment


def _await_takeover(
    url: str, ca: str, dead: str, killed_at: datetime.datetime, seen: CrlTakeover
) -> str:
    """Until another holder finished a ca.refresh round and a delta CRL appeared after the kill
    (or twice the bound passed); fills ``seen`` with the delays."""
    deadline = time.monotonic() + 2 * (TAKEOVER_BOUND + TAKEOVER_SLACK) + 5
    while time.monotonic() < deadline:
        with psycopg.connect(url, autocommit=True) as conn:
            ran = conn.execute(
                "SELECT holder, finished_at FROM cluster_job_runs WHERE job = 'ca.refresh' "
                "AND outcome = 'done' AND holder <> %s AND finished_at > %s "
                "ORDER BY finished_at LIMIT 1",
                (dead, killed_at),
            ).fetchone()
            delta = conn.execute(
                "SELECT min(this_update) FROM ca_crls WHERE issuer = %s AND delta "
                "AND this_update > %s",
                (ca, killed_at),
            ).fetchone()
        if ran is not None and seen.takeover_seconds < 0:
            seen.successor = ran[0]
            seen.takeover_seconds = round((ran[1] - killed_at).total_seconds(), 1)
        if delta is not None and delta[0] is not None and seen.delta_published_seconds < 0:
            seen.delta_published_seconds = round((delta[0] - killed_at).total_seconds(), 1)
        if seen.takeover_seconds >= 0 and seen.delta_published_seconds >= 0:
            break
        time.sleep(0.1)
    return seen.successor


def revoke_over_grpc(c: Cluster, serial: str) -> None:
    """RevokeCertificate through HAProxy as the load's service (ca-operator), retried on a
    retryable code."""
    from govtrust.v1 import certificate_pb2, certificate_pb2_grpc, common_pb2

    request = certificate_pb2.RevokeCertificateRequest(
        certificate=certificate_pb2.CertificateRef(serial_number=serial),
        reason=common_pb2.REVOCATION_REASON_SUPERSEDED,
        comment="cluster harness: a status change before the leader is killed",
        request_id=f"harness-revoke-{serial}",
    )
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as channel:
        stub = certificate_pb2_grpc.CertificateServiceStub(channel)
        for attempt in range(10):
            try:
                stub.RevokeCertificate(request, timeout=20)
                return
            except grpc.RpcError as exc:
                if exc.code() is None or exc.code().name not in RETRYABLE_GRPC or attempt == 9:
                    raise
                time.sleep(0.5)


FaultFn = Callable[[Cluster, Timings], str | None]


def faults(real_pg_restart: bool) -> list[tuple[str, FaultFn]]:
    """The issue's faults in order: kill -9, rolling restart, every database connection cut at
    the forwarder, PostgreSQL restarted for real (when ``real_pg_restart``), a partition, the
    ``ca.refresh`` leader killed mid-publication."""
    found: list[tuple[str, FaultFn]] = [
        ("kill -9 one replica", fault_kill9),
        ("rolling restart", fault_rolling_restart),
        ("database connections cut", lambda c, t: fault_postgres(c, t, real_restart=False)),
    ]
    if real_pg_restart:
        found.append(("PostgreSQL restart", lambda c, t: fault_postgres(c, t, real_restart=True)))
    found.append(("host partitioned", fault_partition))
    found.append(("leader killed during CRL publication", fault_leader_during_crl))
    return found


def run_faults(
    c: Cluster,
    load: Load,
    faults: list[tuple[str, FaultFn]],
    t: Timings,
) -> list[PhaseResult]:
    """Inject each fault while the load runs, wait for recovery, check; one result per fault."""
    results: list[PhaseResult] = []
    time.sleep(t.settle)
    for name, fault in faults:
        window_start = time.monotonic()
        time.sleep(t.settle)
        started = time.monotonic()
        note = fault(c, t)
        if note is None:
            results.append(
                PhaseResult(name, started, started, note="not run: needs the leases (item 1)")
            )
            continue
        recovered = c.wait_all_up(t.recovery_timeout)
        time.sleep(t.settle + GRACE_SECONDS)
        window_end = time.monotonic()
        result = PhaseResult(name, started, recovered, note=note)
        load.paused.set()
        # calls in flight finish (or fail) before the window is read
        time.sleep(0.5)
        try:
            check_phase(c, result, load.snapshot(), window_start, window_end)
        finally:
            load.paused.clear()
        result.problems += c.fault_problems
        c.fault_problems = []
        results.append(result)
    return results


# --- report -------------------------------------------------------------------------------------

TABLE_BEGIN = "<!-- cluster-harness:{mode}:begin -->"
TABLE_END = "<!-- cluster-harness:{mode}:end -->"


def render_table(results: list[PhaseResult], header: str) -> str:
    """The per-fault table (markdown) with a one-line header naming the run."""
    lines = [
        header,
        "",
        "| fault | what happened | ops acknowledged | lost | duplicated | "
        "error window (s) | errors seen | outside window | not retryable | gave up | "
        "audit chain | cluster jobs once |",
        "|---|---|---:|---:|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        if r.note.startswith("not run"):
            lines.append(f"| {r.fault} | {r.note} | | | | | | | | | | |")
            continue
        errors = ", ".join(f"{k} ×{v}" for k, v in sorted(r.errors.items())) or "none"
        duplicated = str(r.duplicated) + (
            " (" + ", ".join(f"{op} {n}" for op, n in sorted(r.duplicated_by_op.items())) + ")"
            if r.duplicated_by_op
            else ""
        )
        window = f"{r.first_error:.1f}–{r.error_window:.1f}" if r.errors else "0"
        lines.append(
            f"| {r.fault} | {r.note} | {r.acknowledged} | {r.lost} | {duplicated} | "
            f"{window} | {errors} | {r.outside_window} | {r.not_retryable} | {r.gave_up} | "
            f"{'verifies' if r.audit_ok else 'BROKEN'} | {r.jobs_once} |"
        )
    return "\n".join(lines) + "\n"


def write_into_doc(doc: Path, mode: str, text: str) -> None:
    """Replace the text between the mode's markers in ``doc`` (appending them if absent)."""
    begin, end = TABLE_BEGIN.format(mode=mode), TABLE_END.format(mode=mode)
    current = doc.read_text("utf-8") if doc.exists() else ""
    block = f"{begin}\n{text}{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(head + block + tail, "utf-8")
    else:
        doc.write_text(current.rstrip("\n") + "\n\n" + block + "\n", "utf-8")


def master_key_is_base64(value: str) -> bool:
    """Whether ``value`` is the base64 of 32 bytes (the bootstrap's sanity check)."""
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except ValueError:
        return False
