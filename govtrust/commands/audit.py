"""``govtrust audit``: verify the keyed audit chain against its checkpoints; make a checkpoint.

``verify`` prints one line and exits with a code per finding: 0 intact, 1 a record edited in
the middle (content or link), 3 a record deleted in the middle, 4 a rewrite (a MAC that fails
against the chain key, or an unkeyed record where the chain is keyed), 5 a truncation (shorter
than, or a head different from, a checkpoint), 6 a checkpoint that is not genuine; 2 for usage
and configuration errors. ``checkpoint`` signs and time-stamps the current head now (the server
does so every ``audit_checkpoint_seconds``); ``--out`` also writes it as JSON, to be kept away
from the database and given back to ``verify --checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from govtrust.audit import AuditCheckpoint, ChainReport, Finding
from govtrust.commands import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_data_dir,
    open_instance,
    settings_from_args,
)
from govtrust.db import as_utc

EXIT_CODES = {
    Finding.INTACT: EXIT_OK,
    Finding.EDITED: EXIT_FAILURE,
    Finding.MISSING: 3,
    Finding.REWRITTEN: 4,
    Finding.TRUNCATED: 5,
    Finding.FORGED_CHECKPOINT: 6,
}


def _line(report: ChainReport) -> str:
    checked = f"({report.records} records verified before it)"
    match report.finding:
        case Finding.INTACT:
            text = f"audit chain intact: {report.records} records"
            if report.legacy_records:
                text += f" ({report.legacy_records} unkeyed, from before the chain was keyed)"
            cp = report.checkpoint
            if cp is None:
                return text + "; no checkpoint yet"
            stamped = as_utc(cp.tsa_time).strftime("%Y-%m-%d %H:%M:%S")
            return text + f"; checkpoint {cp.id} covers {cp.records}, time-stamped {stamped} UTC"
        case Finding.EDITED:
            return f"audit chain broken at record {report.broken_seq}: {report.reason} {checked}"
        case Finding.MISSING:
            return f"audit chain broken at record {report.broken_seq}: deleted, {report.reason}"
        case Finding.REWRITTEN:
            return f"audit chain rewritten at record {report.broken_seq}: {report.reason} {checked}"
        case Finding.TRUNCATED:
            return f"audit chain truncated: {report.reason}"
        case Finding.FORGED_CHECKPOINT:
            return f"audit checkpoint forged: {report.reason}"


def _external(paths: list[Path]) -> list[AuditCheckpoint]:
    from govtrust.audit import checkpoint_from_json

    return [checkpoint_from_json(json.loads(path.read_text("utf-8"))) for path in paths]


def cmd_verify(args: argparse.Namespace) -> int:
    """Walk the audit chain, check it against the key and every checkpoint, name what broke."""
    from govtrust.audit import verify_chain
    from govtrust.instance import require_instance
    from govtrust.migrate import is_up_to_date
    from govtrust.platform import Platform, configured_keystore
    from govtrust.server.wiring import define_components
    from hsm import MASTER_KEY_ENV, MASTER_KEY_FILE, KeyStore, load_master_key
    from hsm.audit_key import AuditChainKey
    from verify.service import audit_token_check

    settings = settings_from_args(args)
    require_instance(settings)
    try:
        external = _external(args.checkpoint)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"govtrust: cannot read the checkpoint file: {exc}")
        return EXIT_USAGE
    db = settings.open_database()
    keystore: KeyStore | None = None
    try:
        if not is_up_to_date(db.engine):
            print("govtrust: the database schema is behind; run `govtrust init` first")
            return EXIT_USAGE
        key = None
        tokens = None
        # No master key at all: only an unkeyed (pre-0010) chain can verify; never make one.
        if os.environ.get(MASTER_KEY_ENV) or (settings.data_dir / MASTER_KEY_FILE).exists():
            master_key = load_master_key(settings.data_dir, create=False)
            key = AuditChainKey(master_key)
            keystore = configured_keystore(settings, db, master_key)
            platform = Platform(settings, db, master_key, keystore)
            define_components(platform)
            tokens = audit_token_check(platform)
        with db.read() as session:
            report = verify_chain(
                session,
                key,
                public_keys=keystore.public_key if keystore is not None else None,
                tokens=tokens,
                external=external,
            )
    finally:
        if keystore is not None:
            keystore.close()
        db.dispose()
    print(_line(report))
    return EXIT_CODES[report.finding]


def cmd_checkpoint(args: argparse.Namespace) -> int:
    """Sign and time-stamp the audit chain's head now (and write it out with ``--out``)."""
    from govtrust.audit import checkpoint_to_json, latest_checkpoint
    from govtrust.server.wiring import checkpoint_audit

    platform = open_instance(args)
    try:
        made = checkpoint_audit(platform)
        with platform.db.read() as session:
            checkpoint = made or latest_checkpoint(session)
    finally:
        platform.close()
    if checkpoint is None:
        print("audit chain is empty: nothing to checkpoint")
        return EXIT_OK
    verb = "made" if made is not None else "unchanged since"
    stamped = as_utc(checkpoint.tsa_time).strftime("%Y-%m-%d %H:%M:%S")
    print(
        f"audit checkpoint {checkpoint.id} {verb}: {checkpoint.records} records, head "
        f"{checkpoint.head_hash}, time-stamped {stamped} UTC"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(checkpoint_to_json(checkpoint), indent=2) + "\n", "utf-8")
    return EXIT_OK


def register(commands: Any) -> None:
    """Add ``audit verify`` and ``audit checkpoint`` to the ``govtrust`` command tree."""
    audit = commands.add_parser("audit", help="audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = sub.add_parser("verify", help="prove the audit chain (key, links, checkpoints)")
    add_data_dir(verify)
    verify.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint kept outside the database (JSON from `audit checkpoint --out`)",
    )
    verify.set_defaults(handler=cmd_verify)
    checkpoint = sub.add_parser("checkpoint", help="sign and time-stamp the audit chain's head")
    add_data_dir(checkpoint)
    checkpoint.add_argument("--out", type=Path, default=None, help="also write it to this file")
    checkpoint.set_defaults(handler=cmd_checkpoint)
