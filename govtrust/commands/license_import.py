"""``govtrust license import FILE.csv|FILE.jsonl``: turn a register of existing licences electronic
(存量证照电子化), as the issuing department, on the local data directory.

The file is read as a stream (:mod:`license.bulk`); its rows go in chunks to ``--streams``
worker processes, each issuing a chunk with :meth:`LicenceService.issue_rows
<license.issuance.LicenceService.issue_rows>` (validated, identified, signed, rendered and
sealed at B-T, stored with its source key). Each row's result (identifier, or the reason it was
refused) is written to ``--out`` (default ``FILE.results.jsonl``) as its chunk completes; a
progress bar goes to stderr (one line per percent when stderr is not a terminal), the totals to
stdout. Killed at any point (even ``kill -9``), the same command resumes: the rows already in the
results file are skipped, and a row issued but not yet written there is answered ``existing``
(never issued twice). Exit 0 when every row has its licence, 1 when some were refused.
"""

from __future__ import annotations

import argparse
import atexit
import json
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from govtrust.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, open_instance
from govtrust.commands.license import _operator
from govtrust.commands.reencrypt import ProgressBar
from govtrust.errors import GovtrustError, InvalidArgument
from govtrust.principal import LICENCE_ISSUER_PREFIX

if TYPE_CHECKING:
    from license.bulk_issuance import RowOutcome
    from license.issuance import IssueRequest
    from license.runtime import LicenceRuntime

DEFAULT_CHUNK = 50
Chunk = list[tuple[int, str, "IssueRequest"]]  # (line, source key, request)
Done = list[tuple[int, "RowOutcome"]]


class _Worker:
    """One process's platform and the chunk issuer (in a worker process, or in the command's
    own process with ``--streams 1``)."""

    def __init__(self, args: argparse.Namespace, document: bool) -> None:
        from license.runtime import runtime_for

        self.platform = open_instance(args)
        self.runtime: LicenceRuntime = runtime_for(self.platform)
        self.document = document
        self.names: dict[str, str] = {}

    def _name(self, issuer: str) -> str:
        if issuer not in self.names:
            try:
                self.names[issuer] = self.runtime.signers(issuer).organisation or issuer
            except GovtrustError:
                self.names[issuer] = issuer  # the rows are refused (no active seal)
        return self.names[issuer]

    def issue(self, chunk: Chunk) -> Done:
        from license.bulk_issuance import SourceRow

        rows = [
            SourceRow(key, replace(request, issuer_name=self._name(request.issuer_code)))
            for _, key, request in chunk
        ]
        issuers = {LICENCE_ISSUER_PREFIX + r.request.issuer_code for r in rows}
        outcomes = self.runtime.service.issue_rows(
            _operator(*issuers), rows, document=self.document
        )
        return [(line, outcome) for (line, _, _), outcome in zip(chunk, outcomes, strict=True)]

    def close(self) -> None:
        self.platform.close()


_WORKER: list[_Worker] = []


def _start_worker(args: argparse.Namespace, document: bool) -> None:
    worker = _Worker(args, document)
    _WORKER.append(worker)
    atexit.register(worker.close)


def _issue_in_worker(chunk: Chunk) -> Done:
    return _WORKER[0].issue(chunk)


def cmd_import(args: argparse.Namespace) -> int:
    """Issue every row of ``args.file``; write the results; resumable."""
    from license.bulk import ResultsFile, count_rows, read_rows

    path: Path = args.file
    if not path.is_file():
        print(f"govtrust license: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    out: Path = args.out or path.with_name(path.name + ".results.jsonl")
    document = not args.no_document
    if args.streams > 1:
        executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            args.streams,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(_worker_args(args), document),
        )
        local: _Worker | None = None
    else:
        executor, local = None, _Worker(args, document)
    results = ResultsFile(out)
    tally: Counter[str] = Counter()
    bar = ProgressBar(count_rows(path), sys.stderr, label="import")
    started = time.perf_counter()
    inflight: set[Future[Done]] = set()

    def record(done: Done) -> None:
        for line, outcome in done:
            results.write(line, outcome)
            tally[outcome.status] += 1
        results.flush()
        bar.advance(len(done))

    def submit(chunk: Chunk) -> None:
        if executor is None:
            assert local is not None
            record(local.issue(chunk))
            return
        inflight.add(executor.submit(_issue_in_worker, chunk))
        while len(inflight) >= 2 * args.streams:  # bounded: the file is never read ahead far
            _collect(wait(inflight, return_when=FIRST_COMPLETED).done, inflight, record)

    try:
        chunk: Chunk = []
        earlier = 0
        for row in read_rows(path, issuer_code=args.issuer or ""):
            if row.line in results.done:
                tally[str(results.done[row.line].get("status", "refused"))] += 1
                earlier += 1
                continue
            if earlier:
                bar.advance(earlier)
                earlier = 0
            if row.refusal is not None:
                record([(row.line, row.refusal)])
                continue
            assert row.request is not None
            chunk.append((row.line, row.source_key, row.request))
            if len(chunk) >= args.chunk:
                submit(chunk)
                chunk = []
        if earlier:
            bar.advance(earlier)
        if chunk:
            submit(chunk)
        while inflight:
            _collect(wait(inflight, return_when=FIRST_COMPLETED).done, inflight, record)
        bar.finish()
    except InvalidArgument as exc:
        bar.finish()
        detail = "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
        print(f"govtrust license: {path}: {detail or exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a lost database, a dead worker: resumable
        bar.finish()
        print(
            f"govtrust license: the import stopped ({type(exc).__name__}: {exc}); the rows "
            f"issued so far are in {out}: run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        results.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        if local is not None:
            local.close()
    seconds = time.perf_counter() - started
    total = sum(tally.values())
    summary = {
        "rows": total,
        "issued": tally["issued"],
        "existing": tally["existing"],
        "refused": tally["refused"],
        "results": str(out),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary, ensure_ascii=False))
    if tally["refused"]:
        print(
            f"govtrust license: {tally['refused']} rows refused; their reasons are in {out}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _collect(
    finished: set[Future[Done]], inflight: set[Future[Done]], record: Callable[[Done], None]
) -> None:
    for future in finished:
        inflight.discard(future)
        record(future.result())


def _worker_args(args: argparse.Namespace) -> argparse.Namespace:
    """What a worker process needs of the command's arguments to open the instance."""
    return argparse.Namespace(data_dir=args.data_dir, config=args.config)


def _positive(limit: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not 1 <= number <= limit:
            raise argparse.ArgumentTypeError(f"{number} is not between 1 and {limit}")
        return number

    return parse


def add_arguments(command: argparse.ArgumentParser) -> None:
    """The arguments of ``govtrust license import`` (``--data-dir`` and ``--config`` apart)."""
    command.add_argument("file", type=Path, help="CSV (with a header) or JSON Lines")
    command.add_argument(
        "--out", type=Path, help="results, one JSON line per row (default FILE.results.jsonl)"
    )
    command.add_argument(
        "--streams", type=_positive(64), default=2, help="worker processes (default 2)"
    )
    command.add_argument(
        "--chunk",
        type=_positive(10_000),
        default=DEFAULT_CHUNK,
        help=f"rows per transaction (default {DEFAULT_CHUNK})",
    )
    command.add_argument("--issuer", help="issuing department's USCC, for rows that name none")
    command.add_argument("--no-document", action="store_true", help="no sealed PDF or OFD")
