"""The web console under load: the work queue and a seal's page with a logged-in cookie.

Bootstraps a data dir with 10,000 seals in various states (applied, rejected, approved, made,
filed, active — each through :class:`seal.lifecycle.SealService`, as the console's forms do)
and 100,000 audit records (the seals' own records, the rest appended in chunks through
:func:`govtrust.audit.append_many`, the bulk writers' function), starts ``govtrust serve``,
logs a reviewer in through the real OIDC authorization-code + PKCE flow at the provider's
password page (the console is the confidential client), and drives with ``wrk`` (one
thread, keep-alive, the session cookie):

* the reviewer's queue ``/console/queue/review`` (thousands of applied seals, the first page);
* one seal's page ``/console/seals/<id>`` (an active seal: picture, certificates, history);

beside a **peer** measured in the same run: a no-op FastAPI page on uvicorn with the same
worker count (the same HTTP stack without the console's work). Prints p50/p95/p99, requests/s,
server CPU per request (the serving processes' CPU time over the run ÷ requests) and the
ratio to the peer. Target (issue 19): p95 < 100 ms for both pages; exit status 1 and
``BELOW TARGET`` when missed.

Run: ``.venv/bin/python bench/console.py [--seals 10000] [--audit 100000] [--seconds 10]
[--connections 16] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.oidc import (  # noqa: E402
    children,
    cpu_seconds,
    free_port,
    start_govtrust,
    stop,
    wait_http,
)

TARGET_P95_MS = 100.0
PASSWORD = "correct horse battery staple"
REVIEWER = "bench-reviewer"
AUDIT_CHUNK = 5000

PEER_APP = r'''
"""bench/console.py's peer: a no-op page on the same stack (FastAPI + uvicorn)."""
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

app = FastAPI()
PAGE = "<!doctype html><html><body><p>ok</p></body></html>"


@app.get("/page")
async def page(request: Request) -> HTMLResponse:
    request.cookies.get("gt_console")
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})
'''

WRK_SCRIPT = r"""
-- bench/console.py: GET one path with the console cookie; latency percentiles as JSON.
local path, cookie = "", ""
function init(args) path = args[1]; cookie = args[2] end
function request()
  return wrk.format("GET", path, {["Cookie"] = "gt_console=" .. cookie})
end
local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50": %d, "p95": %d, "p99": %d}\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Prepared:
    """What the load needs from the bootstrap."""

    seal_id: str
    counts: dict[str, int]
    audit_records: int
    seconds: float
    port: int  # the HTTP port the data dir's public URL names (the console's redirect URI)


def prepare(data_dir: Path, http_port: int, seals: int, audit_records: int) -> Prepared:
    """The data dir: companies, staff, ``seals`` seals in various states, ``audit_records``
    audit records; a reviewer with a password (the console user)."""
    from govtrust import audit
    from govtrust.config import load_settings
    from govtrust.principal import Principal
    from govtrust.server.wiring import open_wired
    from idp.oidc.factory import provider_for
    from idp.runtime import identity_registry_for
    from idp.types import IdentityRef
    from seal.lifecycle import Application, Making
    from seal.runtime import runtime_for
    from seal.types import SealKind

    started = time.perf_counter()
    settings = load_settings({"data_dir": data_dir, "http_port": http_port})
    platform = open_wired(settings, migrate=True)
    try:
        registrar = Principal("user", "registrar", frozenset({"identity-registrar", "admin"}))
        registry = identity_registry_for(platform)
        provider = provider_for(platform)
        provider.ensure_keys()
        companies: list[tuple[str, Principal]] = []
        for i in range(50):
            rep = registry.register_citizen(
                registrar, name=f"代表{i}", id_number=_id_number(f"11010519800101{i:03d}")
            )
            company = registry.register_legal_person(
                registrar,
                uscc=_uscc(f"91350100M{i:08d}"),
                name=f"福州示例{i}有限公司",
                legal_representative=IdentityRef(id=rep.id),
            )
            companies.append(
                (company.id, Principal("user", rep.id, frozenset(), citizen_id=rep.id))
            )
        staff = registry.register_staff(
            registrar,
            name="审核员",
            department_code="350100-SCJ",
            department_name="福州市市场监督管理局",
            employee_number="E900",
            roles=["seal-reviewer"],
        )
        provider.passwords.set_password(
            registrar, identity_id=staff.id, login_name=REVIEWER, password=PASSWORD
        )
        service = runtime_for(platform).service
        reviewer = Principal("user", "bench-reviewer", frozenset({"seal-reviewer"}))
        maker = Principal("user", "bench-maker", frozenset({"seal-maker"}))
        filing = Principal("user", "bench-filing", frozenset({"seal-filing"}))
        kinds = [SealKind.CONTRACT, SealKind.FINANCE, SealKind.INVOICE]
        rng = random.Random(19)
        counts: dict[str, int] = {}
        made_budget = max(seals // 100, 4)  # making signs a certificate: keep it to 1 %
        seal_id = ""
        for i in range(seals):
            owner, rep_p = companies[i % len(companies)]
            seal = service.apply(
                rep_p,
                Application(IdentityRef(id=owner), kinds[i % len(kinds)], name=f"专用章{i:05d}"),
            )
            roll = rng.random()
            state = "applied"
            if roll < 0.1:
                service.review(reviewer, seal.id, False, "材料不全")
                state = "rejected"
            elif roll < 0.45 or (made_budget > 0 and roll < 0.5):
                service.review(reviewer, seal.id, True, "材料齐全")
                state = "approved"
                if made_budget > 0:
                    made_budget -= 1
                    service.make(maker, seal.id, Making())
                    state = "made"
                    if made_budget % 2 == 0:
                        service.file(filing, seal.id, f"BA-{i:05d}", "")
                        service.issue(filing, seal.id, "")
                        state = "active"
                        seal_id = seal_id or seal.id
            counts[state] = counts.get(state, 0) + 1
        with platform.db.read() as session:
            have = audit.head_seq(session)
        left = max(audit_records - have, 0)
        while left:
            chunk = min(left, AUDIT_CHUNK)
            entries = [
                audit.Entry(
                    f"user:bench{n % 97}",
                    "seal.verify" if n % 3 else "licence.check",
                    f"seal:{n}",
                    audit.canonical_json({"n": n}).decode(),
                )
                for n in range(left - chunk, left)
            ]
            with platform.db.transaction() as session:
                audit.append_many(session, entries)
            left -= chunk
        with platform.db.read() as session:
            total = audit.head_seq(session)
    finally:
        platform.close()
    return Prepared(seal_id, counts, total, time.perf_counter() - started, http_port)


def _id_number(first17: str) -> str:
    from idp.identifiers import resident_id_check_digit

    return first17 + resident_id_check_digit(first17)


def _uscc(first17: str) -> str:
    from idp.identifiers import uscc_check_char

    return first17 + uscc_check_char(first17)


def form_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    if not match:
        raise SystemExit(f"login: no {name} in the page:\n{html[:500]}")
    return match.group(1)


def log_in(base: str) -> str:
    """The console's session cookie after the real code + PKCE login at the provider's
    password page (the same walk as tests/console/conftest.py's ``login``)."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as http:
        response = http.get("/console/login")
        for _ in range(10):
            location = response.headers.get("location", "")
            path = urlsplit(location)._replace(scheme="", netloc="").geturl()
            if path.startswith("/console/") and "callback" not in path:
                break
            response = http.get(path)
            if response.status_code == 200 and 'name="login_name"' in response.text:
                response = http.post(
                    f"{path}/password",
                    data={
                        "csrf": form_value(response.text, "csrf"),
                        "login_name": REVIEWER,
                        "password": PASSWORD,
                    },
                )
            if response.status_code not in (302, 303):
                raise SystemExit(f"login failed: {response.status_code} {response.text[:500]}")
        cookie = http.cookies.get("gt_console", path="/console")
        if not cookie:
            raise SystemExit("login: no console cookie")
        return str(cookie)


def start_peer(directory: Path, port: int, workers: int) -> Any:
    (directory / "console_peer.py").write_text(PEER_APP)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "console_peer:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/page", 240)
    except BaseException:
        stop(process)
        raise
    return process


def wrk(
    script: Path, url: str, cookie: str, seconds: float, connections: int, pids: list[int]
) -> dict[str, Any]:
    """One wrk run (after a 2 s warm-up run): requests/s, latency percentiles (ms), server CPU
    per request (µs) of ``pids``."""
    parts = urlsplit(url)

    def run(duration: float) -> dict[str, Any]:
        command = [
            "wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s",
            "--timeout", "10s", "-s", str(script), f"{parts.scheme}://{parts.netloc}",
            "--", parts.path, cookie,
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 60, check=False
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{"requests"')]
        if not lines:
            raise SystemExit(f"wrk failed: {done.stdout}{done.stderr}")
        out: dict[str, Any] = json.loads(lines[-1])
        return out

    run(2)
    before = cpu_seconds(pids)
    measured = run(seconds)
    used = cpu_seconds(pids) - before
    duration = measured["duration_us"] / 1e6
    return {
        "rate": (measured["requests"] - measured["errors"]) / duration,
        "errors": measured["errors"],
        "p50": measured["p50"] / 1000,
        "p95": measured["p95"] / 1000,
        "p99": measured["p99"] / 1000,
        "cpu_us": used / max(measured["requests"], 1) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seals", type=int, default=10_000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep (or reuse) the data dir here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: scripts/system-deps.sh bench")

    with tempfile.TemporaryDirectory(prefix="govtrust-bench-console-") as scratch:
        base = Path(scratch)
        data_dir = args.keep or base / "data"
        gt_port, peer_port = free_port(), free_port()
        marker = data_dir / "bench-console.json"
        if marker.exists():
            prepared = Prepared(**json.loads(marker.read_text()))
            gt_port = prepared.port
        else:
            prepared = prepare(data_dir, gt_port, args.seals, args.audit)
            marker.write_text(json.dumps(prepared.__dict__))
        print(
            f"bootstrap: {sum(prepared.counts.values())} seals {prepared.counts}, "
            f"{prepared.audit_records} audit records, {prepared.seconds:.0f} s"
        )
        script = base / "console.lua"
        script.write_text(WRK_SCRIPT)
        # a loaded machine starts the workers slowly
        govtrust = start_govtrust(data_dir, gt_port, args.workers, ready_seconds=240)
        try:
            peer = start_peer(base, peer_port, args.workers)
        except BaseException:
            stop(govtrust)
            raise
        try:
            gt_base = f"http://127.0.0.1:{gt_port}"
            cookie = log_in(gt_base)
            pages = {
                "queue": f"{gt_base}/console/queue/review",
                "seal": f"{gt_base}/console/seals/{prepared.seal_id}",
            }
            for name, url in pages.items():
                check = httpx.get(url, cookies={"gt_console": cookie}, timeout=30)
                marker_attr = "data-seal=" if name == "queue" else "data-status="
                if check.status_code != 200 or marker_attr not in check.text:
                    raise SystemExit(f"{name} page: {check.status_code} {check.text[:300]}")
            gt_pids = children(govtrust.pid) or [govtrust.pid]
            peer_pids = children(peer.pid) or [peer.pid]
            load_before = os.getloadavg()
            results = {
                name: wrk(script, url, cookie, args.seconds, args.connections, gt_pids)
                for name, url in pages.items()
            }
            results["peer"] = wrk(
                script,
                f"http://127.0.0.1:{peer_port}/page",
                cookie,
                args.seconds,
                args.connections,
                peer_pids,
            )
            load_after = os.getloadavg()
        finally:
            stop(govtrust)
            stop(peer)

    print(
        f"console bench: wrk -t1 -c{args.connections}, {args.seconds:g} s per page, "
        f"govtrust serve --workers {args.workers} (SQLite), peer: no-op FastAPI page on uvicorn "
        f"--workers {args.workers}; load average {load_before[0]:.1f} → {load_after[0]:.1f}"
    )
    print(
        f"{'page':8} {'req/s':>8} {'× peer':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'CPU µs/req':>11} {'× peer':>7} {'errors':>7}"
    )
    peer_result = results["peer"]
    failed = False
    for name, r in results.items():
        print(
            f"{name:8} {r['rate']:8.0f} {r['rate'] / peer_result['rate']:7.2f} "
            f"{r['p50']:8.1f} {r['p95']:8.1f} {r['p99']:8.1f} {r['cpu_us']:11.0f} "
            f"{r['cpu_us'] / peer_result['cpu_us']:7.1f} {r['errors']:7d}"
        )
        if name != "peer":
            failed |= r["p95"] >= TARGET_P95_MS or r["errors"] > 0
    print(f"target: p95 < {TARGET_P95_MS:.0f} ms on both pages")
    print("BELOW TARGET" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
