"""``govtrust reencrypt --to sm4-gcm|aes-256-gcm``: move every value at rest to one scheme.

Each package re-encrypts its own tables (``idp.reencryption``, ``license.reencryption``) with
the one batch loop of :mod:`govtrust.reencryption`: short transactions, compare-and-set on the
old ciphertext, every moved row read back and compared; the service keeps running meanwhile.
Interrupted at any point, the command is simply run again: rows already moved are skipped.
A progress bar goes to stderr; the counts of rows moved and verified to stdout.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any, TextIO

from govtrust.commands import EXIT_FAILURE, EXIT_OK, add_data_dir, open_instance
from govtrust.config import AT_REST_SCHEMES
from govtrust.reencryption import DEFAULT_BATCH_SIZE

DESCRIPTION = """\
Re-encrypt personal data (citizens' ID numbers and phones, staff phones) and licence secrets
(signed data, QR payload, PDF and OFD documents) under SCHEME, in batches, while the service
runs. Rows already under SCHEME are skipped, so an interrupted run is resumed by running the
command again. Set at_rest_scheme (GOVTRUST_AT_REST_SCHEME) to SCHEME on every server first, so
that no new value is written under the old scheme while the rows move.
"""


class ProgressBar:
    """A one-line bar on a terminal (redrawn), else a line at every whole percent."""

    def __init__(self, total: int, stream: TextIO, *, label: str = "reencrypt") -> None:
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream
        self.label = label
        self.started = time.perf_counter()
        self._tty = stream.isatty()
        self._shown = -1

    def advance(self, rows: int) -> None:
        self.done += rows
        percent = 100 if self.total == 0 else min(100, self.done * 100 // self.total)
        if not self._tty and percent == self._shown:
            return
        self._shown = percent
        width = 30
        filled = width * percent // 100
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {percent:3d}% "
            f"{self.done}/{self.total} rows {self.done / elapsed:,.0f} rows/s"
        )
        self.stream.write(("\r" + line) if self._tty else (line + "\n"))
        self.stream.flush()

    def finish(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def _actor() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator:unknown"


def cmd_reencrypt(args: argparse.Namespace) -> int:
    """Move every encrypted column of every owner to ``args.to``."""
    from idp.pii import PiiCodec
    from idp.reencryption import personal_data_rows, reencrypt_personal_data
    from license.reencryption import licence_rows, reencrypt_licences
    from license.vault import LicenceVault

    platform = open_instance(args)
    try:
        if platform.settings.at_rest_scheme != args.to:
            print(
                f"govtrust: note: at_rest_scheme is {platform.settings.at_rest_scheme}; servers "
                f"with that setting keep writing new values under it (set it to {args.to})",
                file=sys.stderr,
            )
        db, keys, actor = platform.db, platform.master_key, _actor()
        bar = ProgressBar(personal_data_rows(db) + licence_rows(db), sys.stderr)
        started = time.perf_counter()
        reports = reencrypt_personal_data(
            db,
            PiiCodec.from_master_key(keys, args.to),
            actor=actor,
            batch_size=args.batch_size,
            progress=bar.advance,
        )
        reports += reencrypt_licences(
            db,
            LicenceVault(keys, args.to),
            actor=actor,
            batch_size=args.batch_size,
            progress=bar.advance,
        )
        bar.finish()
        seconds = time.perf_counter() - started
    finally:
        platform.close()
    for report in reports:
        print(
            f"{report.table}: {report.rows} rows, {report.moved} moved to {args.to}, "
            f"{report.verified} verified"
            + (f", {report.conflicts} changed concurrently" if report.conflicts else "")
        )
    rows = sum(r.rows for r in reports)
    moved = sum(r.moved for r in reports)
    verified = sum(r.verified for r in reports)
    conflicts = sum(r.conflicts for r in reports)
    print(
        f"moved {moved} rows and verified {verified} of {rows} in {seconds:.1f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s scanned)"
    )
    if conflicts:
        print(
            f"govtrust: {conflicts} rows kept changing while they were moved; run the command "
            "again",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _batch_size(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= 100_000:
        raise argparse.ArgumentTypeError(f"{number} is not between 1 and 100000")
    return number


def register(subparsers: Any) -> None:
    """Add ``govtrust reencrypt`` to the command tree."""
    command = subparsers.add_parser(
        "reencrypt",
        help="move personal data and licence secrets to another at-rest scheme",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_dir(command)
    command.add_argument(
        "--to",
        required=True,
        choices=AT_REST_SCHEMES,
        metavar="SCHEME",
        help="aes-256-gcm or sm4-gcm",
    )
    command.add_argument(
        "--batch-size",
        type=_batch_size,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per transaction (default {DEFAULT_BATCH_SIZE})",
    )
    command.set_defaults(handler=cmd_reencrypt)
