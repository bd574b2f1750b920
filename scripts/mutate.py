"""Mutation testing of the critical modules with mutmut 3 (``make mutate``).

Each module is mutated in its own work folder ``var/mutate/<module>/`` against only its own
fast tests, so the runs stay small and resumable: mutmut keeps its verdicts in that folder's
``mutants/`` and a second run tests only the mutants without one. A run is bounded by
``MUTATE_SECONDS`` per module (default 600); what is left is picked up by the next run.
``MUTATE_CHILDREN`` mutants are tested at once (default 1: the machine stays usable).
The score table (killed / total, %) is printed at the end.

    python scripts/mutate.py [MODULE ...]      # MODULE: a key of MODULES, default all
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("govtrust", "hsm", "ca", "idp", "seal", "license", "verify")
EXTRA = ("docs", "proto")  # read by some tests (generated tables in docs/, the .proto files)

# module key -> (source file, its own fast tests: pytest arguments, SQLite leg only). An entry
# ``--deselect=<node id>`` drops a slow test (a CLI subprocess, a timed job) from the map.
MODULES: dict[str, tuple[str, list[str]]] = {
    "idp.identifiers": (
        "idp/identifiers.py",
        ["tests/idp/test_identifiers.py", "tests/idp/test_mutants_identifiers.py"],
    ),
    "license.identifiers": (
        "license/identifiers.py",
        ["tests/license/test_identifiers.py", "tests/license/test_mutants_identifiers.py"],
    ),
    "govtrust.rpc.access": (
        "govtrust/rpc/access.py",
        ["tests/platform/test_access.py", "tests/platform/test_mutants_access.py"],
    ),
    "govtrust.api.access": (
        "govtrust/api/access.py",
        ["tests/platform/test_access.py", "tests/platform/test_mutants_api_access.py"],
    ),
    "govtrust.audit": (
        "govtrust/audit.py",
        [
            "tests/platform/test_audit.py",
            "tests/platform/test_audit_faults.py",
            "tests/platform/test_mutants_audit.py",
            "--deselect=tests/platform/test_audit.py::test_cli_checkpoint_and_verify_each_finding",
            "--deselect=tests/platform/test_audit.py::test_cli_audit_verify_names_tampered_row",
            "--deselect=tests/platform/test_audit.py::test_server_job_checkpoints_the_head_periodically",
        ],
    ),
    "license.checking": (
        "license/checking.py",
        [
            "tests/license/test_boundaries.py",
            "tests/license/test_issuance.py",
            "tests/license/test_mutants_checking.py",
        ],
    ),
    "license.document_check": (
        "license/document_check.py",
        [
            "tests/license/test_document.py",
            "tests/license/test_broken_pdfs.py",
            "tests/license/test_document_limits.py",
            "tests/license/test_mutants_document_check.py",
            "--deselect=tests/license/test_document_limits.py::test_the_revision_walk_is_linear",
            "--deselect=tests/license/test_document.py::test_sealed_licence_validates_shows_its_text_and_both_qr_codes_decode",
            "--deselect=tests/license/test_document.py::test_layouts_defaults_and_overflow",
            "--deselect=tests/license/test_document.py::test_make_and_check_are_fast",
        ],
    ),
    # the OIDC token endpoint: client authentication and the grants (code, refresh, client creds)
    "idp.oidc.grants": (
        "idp/oidc/grants.py",
        ["tests/oidc/test_mutants_token.py"],
    ),
    "ca.ocsp": (
        "ca/ocsp.py",
        [
            "tests/ca/test_status.py",
            "tests/ca/test_bad_input.py",
            "tests/ca/test_ocsp_vectors.py",
            "tests/ca/test_mutants_ocsp.py",
        ],
    ),
    "ca.tsa": (
        "ca/tsa.py",
        [
            "tests/ca/test_bad_input.py",
            "tests/ca/test_tsa_vectors.py",
            "tests/ca/test_mutants_tsa.py",
            "tests/ca/test_tsa_der.py",
        ],
    ),
    "ca.tsa_ledger": ("ca/tsa_ledger.py", ["tests/ca/test_tsa_ledger.py"]),
    "ca.crl": ("ca/crl.py", ["tests/ca/test_status.py", "tests/ca/test_mutants_crl.py"]),
    # certificate path validation: the one validator licences, verification and certificate
    # login use
    "ca.path": (
        "ca/path.py",
        [
            "tests/ca/test_path.py",
            "tests/verify/test_boundaries_certificates.py",
            "tests/license/test_boundaries.py",
            "tests/ca/test_mutants_path.py",
        ],
    ),
    # the seal transition table and its pure decisions (states, roles, separation of duties)
    "seal.transitions": ("seal/transitions.py", ["tests/seal/test_transitions.py"]),
}


def _setup_cfg(source: str, tests: list[str]) -> str:
    existing = [t for t in tests if t.startswith("-") or (ROOT / t.split("::")[0]).exists()]
    lines = [
        "[mutmut]",
        "source_paths =",
        *(f"    {p}" for p in PACKAGES),
        "only_mutate =",
        f"    {source}",
        "pytest_add_cli_args_test_selection =",
        *(f"    {t}" for t in existing),
        "pytest_add_cli_args =",
        "    -x",
        "    -q",
        "    -p",
        "    no:randomly",
        "    -m",
        "    not postgresql_only",
        "    -k",
        "    not postgresql",
        "also_copy =",
        *(f"    {d}" for d in EXTRA),
        "timeout_multiplier = 5.0",
        "timeout_constant = 5.0",
        "",
    ]
    return "\n".join(lines)


def _workdir(key: str) -> Path:
    source, tests = MODULES[key]
    work = ROOT / "var" / "mutate" / key
    work.mkdir(parents=True, exist_ok=True)
    for name in (*PACKAGES, *EXTRA, "tests", "pyproject.toml"):
        link = work / name
        if not link.exists() and (ROOT / name).exists():
            link.symlink_to(ROOT / name)
    cfg = _setup_cfg(source, tests)
    cfg_path = work / "setup.cfg"
    if not cfg_path.exists() or cfg_path.read_text() != cfg:
        cfg_path.write_text(cfg)
    return work


def _counts(work: Path) -> dict[str, int]:
    """Verdicts per status from mutmut's own results (``mutmut export-cicd-stats``)."""
    subprocess.run(
        [sys.executable, "-m", "mutmut", "export-cicd-stats"],
        cwd=work,
        capture_output=True,
        check=False,
    )
    stats = work / "mutants" / "mutmut-cicd-stats.json"
    if not stats.exists():
        return {}
    data: dict[str, int] = json.loads(stats.read_text())
    return data


def run(key: str, seconds: int) -> dict[str, int]:
    """Run (or resume) one module's mutants for at most ``seconds``; return its counts."""
    work = _workdir(key)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the mutated copy in mutants/ must win over the worktree
    env["CI"] = env.get("CI", "")
    children = os.environ.get("MUTATE_CHILDREN", "1")
    cmd = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", children]
    # own process group, so the bound also stops mutmut's forked workers
    proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        print(f"{key}: stopped after {seconds}s; run again to resume")
    return _counts(work)


def main(argv: list[str]) -> int:
    """Run the chosen modules (default all) and print the score table."""
    keys = argv or list(MODULES)
    unknown = [k for k in keys if k not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {sorted(MODULES)}", file=sys.stderr)
        return 2
    if shutil.which("nice") is None:
        print("nice not found", file=sys.stderr)
        return 2
    seconds = int(os.environ.get("MUTATE_SECONDS", "600"))
    rows = [(k, run(k, seconds)) for k in keys]
    head = ("module", "killed", "survived", "no tests", "timeout", "unchecked", "score")
    print("\n{:22} {:>6} {:>8} {:>8} {:>7} {:>9} {:>6}".format(*head))
    for key, c in rows:
        # mutmut counts a timeout as killed; "unchecked" are left for the next (resumed) run
        killed = c.get("killed", 0) + c.get("timeout", 0)
        failed = sum(c.get(k, 0) for k in ("survived", "no_tests", "suspicious", "segfault"))
        unchecked = c.get("total", 0) - killed - failed - c.get("skipped", 0)
        score = f"{100 * killed / (killed + failed):.1f}%" if killed + failed else "-"
        print(
            f"{key:22} {killed:>6} {c.get('survived', 0):>8} {c.get('no_tests', 0):>8} "
            f"{c.get('timeout', 0):>7} {unchecked:>9} {score:>6}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
