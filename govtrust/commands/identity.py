"""``govtrust identity …``: operator commands of the identity registry.

* ``govtrust identity import FILE --data-dir DIR`` loads base data (人口库 / 法人库 extracts);
* ``govtrust identity validate NUMBER…`` checks resident ID numbers and USCCs offline.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from govtrust.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_data_dir, open_instance
from govtrust.principal import Principal

IMPORT_HELP = """\
Import authoritative base data from a CSV file (UTF-8, header row, extra columns ignored):

  citizens (population base data, 人口库):  name,id_number
  legal persons (法人库):                    uscc,name[,legal_representative_id_number]

The kind is taken from --kind or else from the header (a 'uscc' column means legal persons).
Rows with an invalid identifier are skipped and reported by line (numbers are never printed).
Records replace earlier ones with the same ID number / USCC. ID numbers are stored only as keyed
blind indexes. Registered identities at assurance 1 that now match are raised to 2 (audited).
"""

KINDS = ("citizens", "legal-persons")


def _operator() -> Principal:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(kind="operator", subject=user, roles=frozenset({"admin"}))


def _detect_kind(text: str) -> str | None:
    header = text.splitlines()[0] if text else ""
    columns = {c.strip() for c in header.split(",")}
    if "uscc" in columns:
        return "legal-persons"
    if "id_number" in columns:
        return "citizens"
    return None


def cmd_import(args: argparse.Namespace) -> int:
    """Import a citizens or legal-persons CSV into the base-data tables."""
    from idp.basedata import import_legal_persons, import_population, read_csv
    from idp.identifiers import load_uscc_allow_list
    from idp.pii import PiiCodec

    path: Path = args.file
    try:
        text = read_csv(path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"govtrust: cannot read {path}: {exc}")
        return EXIT_USAGE
    kind = args.kind or _detect_kind(text)
    if kind is None:
        print(f"govtrust: {path}: cannot tell citizens from legal persons; use --kind")
        return EXIT_USAGE
    platform = open_instance(args)
    db, data_dir = platform.db, platform.settings.data_dir
    try:
        codec = PiiCodec.from_master_key(platform.master_key, platform.settings.at_rest_scheme)
        if kind == "citizens":
            report = import_population(db, codec, text, principal=_operator(), source=path.name)
        else:
            report = import_legal_persons(
                db,
                codec,
                text,
                principal=_operator(),
                allow_list=load_uscc_allow_list(data_dir, platform.settings.uscc_allow_list),
                source=path.name,
            )
    finally:
        platform.close()
    print(
        f"imported {report.imported} {kind} records from {path.name}; "
        f"skipped {len(report.skipped)}; raised {report.upgraded} identities to assurance 2"
    )
    for line in report.skipped:
        print(f"  skipped {line}")
    return EXIT_OK if not report.skipped or not args.strict else EXIT_FAILURE


def cmd_validate(args: argparse.Namespace) -> int:
    """Check identity numbers offline and print what they encode (ID numbers masked)."""
    from govtrust.commands import settings_from_args
    from idp.identifiers import (
        InvalidIdentifier,
        load_uscc_allow_list,
        parse_resident_id,
        parse_uscc,
    )
    from idp.pii import mask_id_number

    # the setting (flags > env > TOML) and, with --data-dir, that directory's file
    allow_list = load_uscc_allow_list(args.data_dir, settings_from_args(args).uscc_allow_list)
    failures = 0
    for value in args.numbers:
        kind = args.kind
        if kind is None:
            kind = "resident-id" if value.strip()[:17].isdigit() else "uscc"
        try:
            if kind == "resident-id":
                resident = parse_resident_id(value)
                print(
                    f"{mask_id_number(resident.number)}: valid resident ID number; region "
                    f"{resident.region_code}, born {resident.birth_date.isoformat()}, "
                    f"{resident.sex.value}"
                )
            else:
                uscc = parse_uscc(value, allow_list=allow_list)
                note = " (allow-listed: check character fails)" if uscc.allow_listed else ""
                print(
                    f"{uscc.code}: valid USCC{note}; {uscc.kind.value}, registration authority "
                    f"{uscc.registration_authority}, type {uscc.institution_type}, "
                    f"region {uscc.region_code}"
                )
        except InvalidIdentifier as exc:
            failures += 1
            shown = mask_id_number(value.strip()) if kind == "resident-id" else value.strip()
            print(f"{shown}: invalid {kind}: {exc.violations[0].description}")
    return EXIT_OK if failures == 0 else EXIT_FAILURE


def register(subparsers: Any) -> None:
    """Add ``govtrust identity …`` to the command tree."""
    identity = subparsers.add_parser("identity", help="identity registry (base data, numbers)")
    commands = identity.add_subparsers(dest="identity_command", metavar="COMMAND", required=True)

    importer = commands.add_parser(
        "import",
        help="import citizens.csv or legal-persons.csv base data",
        description=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_dir(importer)
    importer.add_argument("file", type=Path, help="CSV file (citizens or legal persons)")
    importer.add_argument("--kind", choices=KINDS, default=None, help="what the file holds")
    importer.add_argument("--strict", action="store_true", help="exit 1 when any row was skipped")
    importer.set_defaults(handler=cmd_import)

    validate = commands.add_parser(
        "validate",
        help="check resident ID numbers (GB 11643) or USCCs (GB 32100) offline",
        description="Validate identity numbers and print what they encode. USCCs on the "
        "allow-list (GOVTRUST_USCC_ALLOW_LIST, <data-dir>/uscc-allow-list.txt) are accepted.",
    )
    validate.add_argument("numbers", nargs="+", metavar="NUMBER")
    validate.add_argument("--kind", choices=("resident-id", "uscc"), default=None)
    validate.add_argument("--data-dir", type=Path, default=None, help="for the USCC allow-list")
    validate.set_defaults(handler=cmd_validate)
