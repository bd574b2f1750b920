"""CPU per licence of the OFD (or PDF) document path, in one process, by stage (issue 17).

Issues ``--rounds`` × 100 licences through ``LicenceService.issue_rows`` (chunks of 50) on a
scratch SQLite platform with the business licence issued as ``--format`` only, the bulk path's
thread pools run in line so that ``time.process_time`` of this thread is the licences' CPU.
Prints, per licence, the whole ``issue_rows`` and the documents made and sealed (min and median
over the rounds); ``--stages`` also times the OFD path's parts (each wrapper adds ~1 µs a call:
the parts are inclusive, nested ones counted again in their callers).
Run: ``PYTHONPATH=. .venv/bin/python bench/ofd_profile.py [--format ofd] [--rounds 5] [--stages]``
"""

from __future__ import annotations

import argparse
import collections
import importlib
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.license import ADMIN, DEPT, _bench_request, _department
from license import catalogue

STAGES = (
    ("license.document", "_page", "layout"),
    ("license.document", "ofd_contents", "OFD written (files, before sealing)"),
    ("license.ofd_writer", "qr_paths", "  both QR codes (matrix + module paths)"),
    ("license.ofd_writer", "cmap_subset", "  font subset with cmap"),
    ("license.ofd_writer", "document_contents", "  XML of the package (lxml)"),
    ("license.ofd_writer", "_text", "  text objects (advances)"),
    ("license.ofd_writer", "_pem", "  CA certificates attachment (PEM)"),
    ("seal.ofd_seal", "add_signature", "signature added (GM/T 0099 files)"),
    ("seal.ofd.sign", "_check_value", "  SM3 CheckValues"),
    ("seal.ofd_seal", "structures.build_signature", "  SES_Signature (SM2)"),
    ("seal.signing", "CaTimeStamper.token_for", "    SM2 time-stamp token"),
    ("seal.ofd_seal", "write_package", "zip written"),
)


class _Inline:
    """An executor that runs each task at once in the calling thread."""

    def map(self, fn: Callable[..., Any], *iterables: Any) -> list[Any]:
        return list(map(fn, *iterables))

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as the future's
            future.set_exception(exc)
        return future


def _timed(spent: dict[str, float], module: str, attribute: str, label: str) -> None:
    """Replace ``module.attribute`` by a wrapper adding its CPU time to ``spent[label]``."""
    owner: Any = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name, None)
    if original is None:  # not in this version of the code
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - started

    setattr(owner, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("ofd", "pdf"), default="ofd")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stages", action="store_true")
    args = parser.parse_args(argv)

    import license.bulk_issuance as bulk
    from govtrust.config import Settings
    from govtrust.server.wiring import open_wired
    from license.bulk_issuance import SourceRow
    from license.runtime import runtime_for

    bulk._SIGNERS = bulk._PREPARERS = _Inline()  # type: ignore[assignment]
    spent: dict[str, float] = collections.defaultdict(float)
    _timed(spent, "license.document", "LicenceDocuments.make", "documents made and sealed")
    if args.stages:
        for module, attribute, label in STAGES:
            _timed(spent, module, attribute, label)
    with tempfile.TemporaryDirectory() as scratch:
        platform = open_wired(Settings(data_dir=Path(scratch)))
        try:
            _department(platform)
            with platform.db.transaction() as session:
                business = catalogue.get_type(session, catalogue.BUSINESS_LICENCE_CODE)
                catalogue.define_type(
                    session, ADMIN, replace(business, document_formats=(args.format,)), replace=True
                )
            service = runtime_for(platform).service
            keys = itertools.count()

            def chunk() -> None:
                rows = [SourceRow(f"k{next(keys)}", _bench_request()) for _ in range(50)]
                assert all(o.status == "issued" for o in service.issue_rows(DEPT, rows))

            chunk()  # warm up: font, seal, caches
            totals: list[float] = []
            parts: dict[str, list[float]] = collections.defaultdict(list)
            for _ in range(args.rounds):
                spent.clear()
                started = time.process_time()
                chunk()
                chunk()
                totals.append((time.process_time() - started) * 10)  # ms per licence of 100
                for label, seconds in spent.items():
                    parts[label].append(seconds * 10)
        finally:
            platform.close()
    print(
        f"{args.format}: CPU per licence, min / median of {args.rounds} rounds of 100 "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    print(f"{min(totals):7.2f} / {statistics.median(totals):7.2f} ms  issue_rows in all")
    for label in ["documents made and sealed", *(s[2] for s in STAGES)]:
        if parts.get(label):
            values = parts[label]
            print(f"{min(values):7.2f} / {statistics.median(values):7.2f} ms  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
