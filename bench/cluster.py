"""The cluster harness by hand: the fault table, the soak, CPU per operation for 1 vs 3 replicas.

Three ``govtrust serve`` hosts in network namespaces behind HAProxy over one PostgreSQL
(tests/cluster/harness.py; needs root, haproxy, socat; a PostgreSQL instance of the run's own
when the server binaries are installed, so the real restart disturbs nobody). Each command
writes its table into docs/scaling.md between its markers, so the document always shows what
the harness measured:

* ``ci``: the CI leg's faults and timings (kill -9, rolling restart, every database connection
  cut, a real PostgreSQL restart, a 5 s partition, the ``ca.refresh`` leader killed
  mid-publication), the table the test leg prints;
* ``soak``: the longer run: ``--rounds`` rounds of every fault with a 20 s partition and a 10 s
  database outage (``--no-pg-restart`` leaves the real restart out);
* ``capacity``: the same mixed load for ``--seconds`` through HAProxy with one replica enabled,
  then three, in one run: operations per second and CPU milliseconds per operation of govtrust
  (the replicas' processes) and of PostgreSQL (the backends serving this database).

Run: ``sudo .venv/bin/python bench/cluster.py ci|soak|capacity [--no-docs]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import harness

DOC = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"
PRIVATE_PG = harness.PrivatePostgres.available()
"""Run a PostgreSQL instance of the cluster's own (restarted for real by the database fault,
measured alone by the capacity run) when the server binaries are installed."""


def run_faults(
    timings: harness.Timings, rounds: int, real_pg_restart: bool, clients: int, attempts: int
) -> list[harness.PhaseResult]:
    """Start a cluster, run the faults ``rounds`` times under load (each operation tried up to
    ``attempts`` times), return every phase."""
    with (
        tempfile.TemporaryDirectory(prefix="govtrust-cluster-") as scratch,
        harness.cluster(Path(scratch), private_pg=PRIVATE_PG) as c,
    ):
        load = harness.Load(c, clients=clients, attempts=attempts)
        load.start()
        try:
            results: list[harness.PhaseResult] = []
            for _ in range(rounds):
                results += harness.run_faults(c, load, harness.faults(real_pg_restart), timings)
        finally:
            load.stop()
        return results


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database``."""
    return {pid: harness.cpu_seconds(pid) for pid in harness.postgres_backends(database)}


def measure(
    c: harness.Cluster, replicas: int, seconds: float, clients: int, first_slot: int
) -> dict[str, float]:
    """The mixed load for ``seconds`` with ``replicas`` enabled in HAProxy."""
    assert c.haproxy is not None
    for i in c.hosts:
        c.haproxy.set_enabled(f"r{i}", i <= replicas)
    time.sleep(1.0)
    load = harness.Load(c, clients=clients, first_slot=first_slot)
    gov_before = sum(r.cpu_seconds() for r in c.replicas.values())
    pg_before = postgres_cpu(c.world.database)
    load.start()
    started = time.monotonic()
    time.sleep(seconds)
    load.stop()
    wall = time.monotonic() - started
    gov = sum(r.cpu_seconds() for r in c.replicas.values()) - gov_before
    pg_after = postgres_cpu(c.world.database)
    pg = sum(v - pg_before.get(pid, 0.0) for pid, v in pg_after.items())
    ok = [a for a in load.snapshot() if a.code == "OK"]
    ops = len(ok)
    return {
        "replicas": float(replicas),
        "ops": float(ops),
        "ops_per_s": ops / wall,
        "govtrust_ms_per_op": 1000 * gov / ops if ops else 0.0,
        "postgres_ms_per_op": 1000 * pg / ops if ops else 0.0,
        "errors": float(len(load.snapshot()) - ops),
    }


def capacity(seconds: float, clients: int) -> str:
    """1 vs 3 replicas in one run, as a markdown table."""
    with (
        tempfile.TemporaryDirectory(prefix="govtrust-cluster-") as scratch,
        harness.cluster(Path(scratch), private_pg=PRIVATE_PG) as c,
    ):
        rows = [measure(c, n, seconds, clients, k * clients) for k, n in enumerate((1, 3))]
    lines = [
        f"Mixed load (certificate, licence, verification, CRL over HTTP, OIDC refresh, sealing "
        f"in equal shares), "
        f"{clients} clients, {seconds:g} s each, `bench/cluster.py capacity`:",
        "",
        "| replicas | ops acknowledged | ops/s | govtrust CPU ms/op | PostgreSQL CPU ms/op | "
        "errors |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['replicas']:.0f} | {r['ops']:.0f} | {r['ops_per_s']:.1f} | "
            f"{r['govtrust_ms_per_op']:.1f} | {r['postgres_ms_per_op']:.2f} | {r['errors']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("ci", "soak", "capacity"))
    parser.add_argument("--rounds", type=int, default=3, help="soak: rounds of every fault")
    parser.add_argument("--no-pg-restart", action="store_true", help="soak: no real restart")
    parser.add_argument("--seconds", type=float, default=20.0, help="capacity: per measurement")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-docs", action="store_true", help="print only, leave docs alone")
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.mode == "capacity":
        text = capacity(args.seconds, args.clients)
        ok = True
    else:
        if args.mode == "ci":
            timings, rounds, real, attempts = harness.Timings(), 1, PRIVATE_PG, 12
        else:
            timings = harness.Timings(settle=10.0, partition=20.0, db_outage=10.0)
            rounds, real = args.rounds, not args.no_pg_restart
            attempts = 20  # about 18 s of retrying: longer than the 10 s outage
        results = run_faults(timings, rounds, real, args.clients, attempts)
        header = (
            f"{args.mode} run of {stamp} (`bench/cluster.py {args.mode}`, {args.clients} clients, "
            f"{rounds} round(s), each operation tried up to {attempts} times):"
        )
        text = harness.render_table(results, header)
        ok = all(
            r.note.startswith("not run")
            or (
                r.lost == 0
                and r.duplicated == 0
                and r.audit_ok
                and not r.problems
                and r.not_retryable == 0
                and r.outside_window == 0
                and r.gave_up == 0
            )
            for r in results
        )
    print(text)
    if not args.no_docs:
        harness.write_into_doc(DOC, args.mode, text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
