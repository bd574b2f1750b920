"""Request body limits against the real server: unauthenticated uploads offered far beyond what
memory would hold (8 GiB each, generated chunk by chunk, never held) are refused with 413 JSON
while they stream, concurrently on every public POST route (the fast lane included), and the
server's peak RSS stays under a fixed ceiling. The client watches the ceiling while it sends, so
a server that buffers fails the test instead of exhausting the machine."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server.serving import running, serve_command, server_database, server_env, settle
from tests.unchanged import unchanged

pytestmark = pytest.mark.slow

OFFER = 8 << 30  # bytes offered per upload: more than this machine's free memory
CHUNK = 256 * 1024
HEADROOM = 96 << 20  # the fixed ceiling: peak RSS before the uploads + 96 MiB
TIMEOUT = 30.0
FORM = "application/x-www-form-urlencoded"
MULTIPART_PREFIX = b'--b\r\nContent-Disposition: form-data; name="client_id"\r\n\r\n'


@dataclass(frozen=True)
class Upload:
    path: str
    content_type: str
    declared: int | None = None  # a Content-Length (else chunked)
    prefix: bytes = b""


UPLOADS = [
    Upload("/tsa", "application/timestamp-query"),
    Upload("/ocsp", "application/ocsp-request"),  # fast lane, raw ASGI endpoint
    Upload("/oidc/token", FORM),  # fast lane
    Upload("/oidc/introspect", FORM),  # fast lane
    Upload("/oidc/token", "multipart/form-data; boundary=b", prefix=MULTIPART_PREFIX),
    Upload("/oidc/authorize", FORM),
    Upload("/verify/license", "application/pdf"),
    Upload("/tsa", "application/timestamp-query", declared=1 << 40),
    Upload("/oidc/token", FORM, declared=1 << 40),
    Upload("/verify/license", "application/pdf", declared=1 << 40),
]


def _status(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int
    seconds: float


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not piece:
            return data
        data += piece
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return data


def offer(base: str, upload: Upload, watch: Callable[[], None]) -> Answer:
    """POST ``OFFER`` bytes to ``upload.path``, stopping when the server answers or closes."""
    url = urllib.parse.urlsplit(base)
    started = time.monotonic()
    sock = socket.create_connection((url.hostname, url.port), timeout=TIMEOUT)
    framing = (
        f"Content-Length: {upload.declared}\r\n"
        if upload.declared is not None
        else "Transfer-Encoding: chunked\r\n"
    )
    head = (
        f"POST {upload.path} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: application/json\r\n"
        f"Content-Type: {upload.content_type}\r\n{framing}\r\n"
    )
    chunked = upload.declared is None

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    filler = frame(b"0" * CHUNK)
    sent = 0
    with sock:
        sock.sendall(head.encode() + (frame(upload.prefix) if upload.prefix else b""))
        try:
            while sent < OFFER:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered
                sock.sendall(filler)
                sent += CHUNK
                if sent % (32 * CHUNK) == 0:
                    watch()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        raw = _read_response(sock)
    elapsed = time.monotonic() - started
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), (upload, raw[:200], sent)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body, sent, elapsed)


def test_huge_uploads_are_refused_under_a_memory_ceiling(tmp_path: Path) -> None:
    command = serve_command(
        "--data-dir", str(tmp_path / "data"), "--grpc-port", "0", "--http-port", "0"
    )
    settle(tmp_path / "data")  # the server's first periodic round changes nothing
    with (
        running(command, server_env()) as served,
        server_database(tmp_path / "data") as db,
        unchanged(db),  # refused uploads store nothing
    ):
        pid = served.process.pid
        ceiling = max(_status(pid, "VmHWM"), _status(pid, "VmRSS")) + HEADROOM
        over = threading.Event()

        def watch() -> None:
            if _status(pid, "VmRSS") > ceiling:
                over.set()
                raise AssertionError(f"server RSS over the ceiling of {ceiling >> 20} MiB")

        with ThreadPoolExecutor(len(UPLOADS)) as pool:
            answers = list(pool.map(lambda u: offer(served.http_base, u, watch), UPLOADS))
        peak = _status(pid, "VmHWM")
        assert not over.is_set()
        assert peak <= ceiling, (peak >> 20, ceiling >> 20)
        for upload, answer in zip(UPLOADS, answers, strict=True):
            assert answer.status == 413, (upload, answer)
            error = json.loads(answer.body)["error"]
            assert error["code"] == "RESOURCE_EXHAUSTED", (upload, error)
            # refused while streaming: what the client pushed is the limit plus socket buffers
            assert answer.sent < 64 << 20, (upload, answer.sent)
            assert answer.seconds < TIMEOUT, (upload, answer.seconds)
            assert answer.headers.get("connection") == "close", (upload, answer.headers)
        assert served.process.poll() is None  # still serving
