"""OIDC token-endpoint throughput: govtrust beside node-oidc-provider, in one run.

Measures, for each server, refresh-token grants/s (rotating: every chain presents the token it
just received), client_credentials grants/s and introspections/s, with the same closed-loop Node
load generator (``tests/oidc/rp/loadgen.mjs``, keep-alive, ``--concurrency`` loops), and prints
govtrust's ratio to the peer. Targets (issue 5): ≥ the peer on each, ≥ 1,000 refresh grants/s.

* govtrust: ``govtrust serve --workers 2`` (SQLite WAL + soft key store in a temp data dir), the
  OIDC router wired in by ``govtrust.server.adapters.ROUTERS``. Access and ID tokens are ES256
  JWTs; refresh tokens are stored (hashed) and rotated in a durable write transaction.
* peer: node-oidc-provider (npm ``oidc-provider``) with one confidential client
  (client_secret_basic), ES256 ID tokens, refresh rotation, introspection — and its default
  in-memory adapter (one Node process; nothing is durable), opaque access tokens.

Run: ``.venv/bin/python bench/oidc.py [--seconds 5] [--concurrency 32] [--workers 2]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RP_DIR = ROOT / "tests" / "oidc" / "rp"
CLIENT_ID = "bench-client"
TARGET_REFRESH = 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s")


def prepare_govtrust(data_dir: Path, http_port: int, chains: int) -> tuple[str, list[str]]:
    """Create the data dir, the client and ``chains`` refresh tokens; returns (secret, tokens)."""
    from govtrust.config import load_settings
    from govtrust.principal import SYSTEM
    from govtrust.server.wiring import open_wired
    from idp.oidc.factory import provider_for
    from idp.oidc.models import OidcGrantRow

    settings = load_settings({"data_dir": data_dir, "http_port": http_port})
    platform = open_wired(settings, migrate=True)
    try:
        provider = provider_for(platform)
        provider.ensure_keys()
        registered = provider.clients.register(
            SYSTEM,
            client_id=CLIENT_ID,
            client_name="bench",
            redirect_uris=["https://rp.example.gov.cn/cb"],
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
        )
        client = registered.client
        now = datetime.now(UTC).replace(microsecond=0)
        tokens = []
        with platform.db.transaction() as tx:
            for i in range(chains):
                grant = OidcGrantRow(
                    id=secrets.token_urlsafe(16),
                    client_id=CLIENT_ID,
                    identity_id=f"ct_bench{i}",
                    acting_person_id=None,
                    sid=secrets.token_urlsafe(16),
                    scope="openid offline_access",
                    claims_sub=f"ct_bench{i}",
                    auth_time=now,
                    acr="urn:govtrust:loa:2",
                    amr="pwd",
                    created_at=now,
                    revoked_at=None,
                    revoke_reason="",
                )
                tx.add(grant)
                tx.flush()
                tokens.append(provider._mint(tx, client, grant, now, nonce="")["refresh_token"])
        assert registered.client_secret
        return registered.client_secret, tokens
    finally:
        platform.close()


def start_govtrust(
    data_dir: Path, http_port: int, workers: int, ready_seconds: float = 60.0
) -> Any:
    """``govtrust serve`` on ``data_dir`` (HTTP on ``http_port``), once its discovery answers;
    stopped again when it does not within ``ready_seconds``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GOVTRUST_DATABASE_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "govtrust",
            "serve",
            "--data-dir",
            str(data_dir),
            "--http-port",
            str(http_port),
            "--grpc-port",
            "0",
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{http_port}/.well-known/openid-configuration", ready_seconds)
    except BaseException:
        stop(process)
        raise
    return process


def start_peer(port: int, secret: str, chains: int) -> tuple[Any, list[str]]:
    config = {
        "port": port,
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "refresh_tokens": chains,
    }
    process = subprocess.Popen(
        ["node", "peer.mjs", json.dumps(config)],
        cwd=RP_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    ready = json.loads(line)
    return process, list(ready["refresh_tokens"])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (from /proc), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct child processes (the govtrust workers of a supervisor)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def loadgen(config: dict[str, Any], pids: list[int]) -> dict[str, Any]:
    before = cpu_seconds(pids)
    done = subprocess.run(
        ["node", "loadgen.mjs", json.dumps(config)],
        cwd=RP_DIR,
        capture_output=True,
        text=True,
        timeout=config["seconds"] + 120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    total = result["ok"] + result["errors"]
    # CPU per request includes the 1 s warm-up's requests too: estimate them at the same rate.
    requests = total * (config["seconds"] + config["warmup"]) / config["seconds"]
    result["cpu_us"] = (cpu_seconds(pids) - before) / max(requests, 1) * 1e6
    return result


WRK_SCRIPT = r"""
-- bench/oidc.py's wrk load: refresh (rotating), cc or introspect, as chosen by the arguments.
local mode, path, auth = nil, nil, nil
local headers, threads = {}, {}
tokens = {}  -- refresh: the chains' current tokens (read back in done, to continue them)
inactive = 0  -- introspection answers that were not active (read back in done)
function setup(thread)
  threads[#threads + 1] = thread
end
function init(args)
  mode, path, auth = args[1], args[2], args[3]
  for i = 4, #args do tokens[#tokens + 1] = args[i] end
  headers["Authorization"] = "Basic " .. auth
  headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local probed = false  -- wrk calls request() once before connecting, to count pipelining
function request()
  if not probed then
    probed = true
    return wrk.format("POST", path, headers, "")
  end
  if mode == "refresh" then
    -- every response hands back the next token of a chain; a chain whose grant failed ends
    local token = table.remove(tokens, 1) or "exhausted"  -- FIFO: every chain keeps moving
    return wrk.format("POST", path, headers, "grant_type=refresh_token&refresh_token=" .. token)
  elseif mode == "cc" then
    return wrk.format("POST", path, headers, "grant_type=client_credentials")
  end
  return wrk.format("POST", path, headers, "token=" .. tokens[1])
end
function response(status, _, body)
  if mode == "refresh" and status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then tokens[#tokens + 1] = token end
  elseif mode == "introspect" and status == 200 and not body:find('"active"%s*:%s*true') then
    inactive = inactive + 1
  end
end
function done(summary, _, _)
  local e, bad, left = summary.errors, 0, {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("inactive")
    for _, token in ipairs(thread:get("tokens")) do left[#left + 1] = '"' .. token .. '"' end
  end
  io.write(string.format('{"requests": %d, "duration_us": %d, "errors": %d, "tokens": [%s]}\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout + bad,
    table.concat(left, ", ")))
end
"""


def wrk_load(config: dict[str, Any], pids: list[int]) -> dict[str, Any]:
    """One wrk run (a C client: the two cores go to the servers); ``loadgen``'s result shape.

    wrk has no warm-up of its own: a first run of ``config["warmup"]`` seconds warms the server,
    and the measured run continues refresh chains where the warm-up left them (the peer's
    in-memory store is an LRU of 1,000 entries: a chain left idle meanwhile would be evicted).
    The warm-up turns twice as many chains as connections, since the requests in flight when wrk
    stops take their chains with them.
    """
    from urllib.parse import urlsplit

    url = config["introspection_url"] if config["mode"] == "introspect" else config["token_url"]
    parts = urlsplit(url)
    auth = base64.b64encode(f"{config['client_id']}:{config['client_secret']}".encode()).decode()
    refresh = config["mode"] == "refresh"
    chains = list(config["refresh_tokens"]) if refresh else [config.get("token", "")]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "oidc.lua"
        script.write_text(WRK_SCRIPT)

        def run(seconds: float, tokens: list[str]) -> dict[str, Any]:
            command = [
                "wrk", "-t", "1", "-c", str(config["concurrency"]), "-d", f"{seconds:g}s",
                "-s", str(script), f"{parts.scheme}://{parts.netloc}",
                "--", config["mode"], parts.path, auth, *tokens,
            ]  # fmt: skip
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{"requests"')]
            if not lines:
                raise SystemExit(f"wrk failed: {done.stdout}{done.stderr}")
            out: dict[str, Any] = json.loads(lines[-1])
            out["first_error"] = "" if not out["errors"] else done.stdout.strip()[-300:]
            return out

        warm = run(config["warmup"], chains)
        if refresh:
            chains = warm["tokens"][-config["concurrency"] :]
            if len(chains) != config["concurrency"]:
                raise SystemExit(f"the warm-up broke refresh chains: {warm['first_error']}")
        before = cpu_seconds(pids)
        measured = run(config["seconds"], chains)
        used = cpu_seconds(pids) - before
    seconds = measured["duration_us"] / 1e6
    ok = measured["requests"] - measured["errors"]
    return {
        "ok": ok,
        "errors": measured["errors"],
        "seconds": seconds,
        "rate": ok / seconds,
        "first_error": measured["first_error"],
        "cpu_us": used / max(measured["requests"], 1) * 1e6,
    }


def get_token(token_url: str, secret: str) -> str:
    response = httpx.post(
        token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, secret), timeout=10
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def stop(process: Any) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--load",
        choices=("wrk", "node"),
        default="wrk" if shutil.which("wrk") else "node",
        help="load generator: wrk (C; the default when installed) or the Node loadgen.mjs",
    )
    args = parser.parse_args(argv)
    if not (RP_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=RP_DIR, check=True)

    results: dict[str, dict[str, dict[str, Any]]] = {"govtrust": {}, "peer": {}}
    with tempfile.TemporaryDirectory(prefix="govtrust-bench-oidc-") as scratch:
        base = Path(scratch)
        gt_port, peer_port = free_port(), free_port()
        # wrk's warm-up turns two chains per connection (see wrk_load)
        chains = args.concurrency * (2 if args.load == "wrk" else 1)
        secret, gt_tokens = prepare_govtrust(base / "data", gt_port, chains)
        peer, peer_tokens = start_peer(peer_port, secret, chains)
        govtrust = start_govtrust(base / "data", gt_port, args.workers)
        targets = {
            "govtrust": {
                "token_url": f"http://127.0.0.1:{gt_port}/oidc/token",
                "introspection_url": f"http://127.0.0.1:{gt_port}/oidc/introspect",
                "refresh_tokens": gt_tokens,
            },
            "peer": {
                "token_url": f"http://127.0.0.1:{peer_port}/token",
                "introspection_url": f"http://127.0.0.1:{peer_port}/token/introspection",
                "refresh_tokens": peer_tokens,
            },
        }
        pids = {"govtrust": children(govtrust.pid) or [govtrust.pid], "peer": [peer.pid]}
        try:
            for mode in ("refresh", "cc", "introspect"):
                for name in ("govtrust", "peer"):
                    target = targets[name]
                    config = {
                        "mode": mode,
                        "client_id": CLIENT_ID,
                        "client_secret": secret,
                        "concurrency": args.concurrency,
                        "seconds": args.seconds,
                        "warmup": 1,
                        **target,
                    }
                    if mode == "introspect":
                        config["token"] = get_token(str(target["token_url"]), secret)
                    run = wrk_load if args.load == "wrk" else loadgen
                    results[name][mode] = run(config, pids[name])
        finally:
            stop(govtrust)
            stop(peer)

    labels = {
        "refresh": "refresh_token grants/s",
        "cc": "client_credentials grants/s",
        "introspect": "introspections/s",
    }
    print(
        f"OIDC bench: {args.seconds:.0f}s per run, {args.concurrency} loops, "
        f"govtrust --workers {args.workers} (SQLite), node-oidc-provider (memory adapter), "
        f"load: {args.load}"
    )
    print(
        f"{'metric':30} {'govtrust':>10} {'peer':>10} {'ratio':>7}  "
        "server CPU µs/request (gt/peer)  errors (gt/peer)"
    )
    failed = False
    for mode, label in labels.items():
        ours, theirs = results["govtrust"][mode], results["peer"][mode]
        ratio = ours["rate"] / theirs["rate"] if theirs["rate"] else float("inf")
        print(
            f"{label:30} {ours['rate']:10.0f} {theirs['rate']:10.0f} {ratio:7.2f}  "
            f"{ours['cpu_us']:10.0f} / {theirs['cpu_us']:<10.0f}{'':11}"
            f"{ours['errors']}/{theirs['errors']}"
        )
        failed |= ratio < 1.0 or ours["errors"] > 0
        for who, result in (("govtrust", ours), ("peer", theirs)):
            if result["first_error"]:
                print(f"  {who} first error: {result['first_error']}")
    refresh = results["govtrust"]["refresh"]["rate"]
    met = not failed and refresh >= TARGET_REFRESH
    print(
        f"target: ≥ peer on each, ≥ {TARGET_REFRESH:.0f} refresh grants/s "
        f"(govtrust: {refresh:.0f}) → {'MET' if met else 'NOT MET'}"
    )
    return 0 if not failed and refresh >= TARGET_REFRESH else 1


if __name__ == "__main__":
    raise SystemExit(main())
