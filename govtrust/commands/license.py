"""``govtrust license …``: e-licences from the command line, on the local data directory.

Examples::

    govtrust license types --seed --data-dir var
    govtrust license types --json > types.json   # edit, then:
    govtrust license types --define type.json [--replace]   # --replace: the next revision
    govtrust license issue --type 11100000MB0143028R001 --issuer 11430100MB12345675 \\
        --holder-type 001 --holder 91350100M000100Y43 --field KZ_MC=福州示例科技有限公司 … \\
        --pdf licence.pdf [--ofd licence.ofd] --jws licence.jws [--holder-name NAME] \\
        [--request-id KEY]
    govtrust license show IDENTIFIER
    govtrust license revoke IDENTIFIER --reason "注销"
    govtrust license verify licence.pdf | licence.ofd | licence.jws | 'GT1:…' | IDENTIFIER
    govtrust license import register.csv|register.jsonl [--out results.jsonl] [--streams N]

The operator running these commands holds the data directory (database and master key), so
acts with full authority: ``issue`` and ``revoke`` act as the issuing department
(``licence-issuer:<dept>``; the department's official seal must be active), every action is
audited as ``operator:<user>``. ``issue --request-id`` is idempotent like IssueLicense's
``request_id`` (a repeat prints the licence already issued, with ``"replayed": true``).
The type JSON (``types --json`` / ``--define``) carries each field's ``label_en``, its ``type``
(``string``, ``date``, ``integer``, ``decimal``, ``uscc``, ``resident_id``, ``enum`` with
``allowed_values``, ``boolean``) and the validity rule in ``default_years``/``max_years`` or
``default_days``/``max_days``; ``revision`` is printed and ignored on input.

``verify`` checks with the CA roots and the issuers' signed status lists only, like an offline
verifier, and exits 0 only for a valid licence; a file is a sealed PDF or OFD (``evidence``
``pdf`` / ``ofd`` in the output) or holds a JWS.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from govtrust.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_data_dir, open_instance
from govtrust.errors import AlreadyExists, InvalidArgument
from govtrust.principal import LICENCE_ISSUER_PREFIX, Principal

if TYPE_CHECKING:
    from govtrust.platform import Platform
    from license.checking import LicenceCheck

IDENTIFIER_PREFIX = "1.2.156.3005.2."
QR_PREFIX = "GT1:"
ZIP_MAGIC = b"PK\x03\x04"  # an OFD is a zip package (license.ofd_check.is_ofd)


def _operator(*roles: str) -> Principal:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(kind="operator", subject=user, roles=frozenset({"admin", *roles}))


def _date(text: str | None, flag: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"govtrust license: {flag} must be a date YYYY-MM-DD") from None


def cmd_types(args: argparse.Namespace) -> int:
    """List the licence types (after seeding the two examples with ``--seed``)."""
    from license import catalogue

    defined = None
    if args.define:
        try:
            data = json.loads(Path(args.define).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"govtrust license: {args.define}: {exc}") from None
        try:
            defined = catalogue.type_from_json(data)
        except InvalidArgument as exc:
            _refuse(exc)
    platform = open_instance(args)
    try:
        with platform.db.transaction() as session:
            if args.seed:
                issuers = args.issuer or [catalogue.EXAMPLE_ISSUER]
                catalogue.seed_catalogue(session, _operator(), issuers)
            if defined is not None:
                try:
                    catalogue.define_type(session, _operator(), defined, replace=args.replace)
                except (InvalidArgument, AlreadyExists) as exc:
                    _refuse(exc)
            types = catalogue.list_types(session)
    finally:
        platform.close()
    if args.json:
        print(json.dumps([catalogue.type_to_json(t) for t in types], ensure_ascii=False, indent=2))
    else:
        for t in types:
            print(
                f"{t.type_code}\t{t.name}\t{t.name_en}\trevision={t.revision}"
                f"\tissuers={','.join(t.issuing_departments)}"
            )
    if not types:
        print(
            "govtrust license: no licence types defined yet; `govtrust license types --seed"
            f"{_data_dir_flag(args)} [--issuer DEPT-USCC]` defines the standard ones "
            "(营业执照, 统一社会信用代码证书), --define TYPE.json one of your own",
            file=sys.stderr,
        )
    return EXIT_OK


def _data_dir_flag(args: argparse.Namespace) -> str:
    return f" --data-dir {args.data_dir}" if args.data_dir is not None else ""


def _refuse(exc: InvalidArgument | AlreadyExists) -> NoReturn:
    parts = [exc.message]
    parts += [f"  {v.field}: {v.description}" for v in getattr(exc, "violations", [])]
    raise SystemExit("govtrust license: " + "\n".join(parts))


def _fields(pairs: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"govtrust license: --field {pair!r} is not NAME=VALUE")
        fields[name.strip()] = value
    return fields


def cmd_issue(args: argparse.Namespace) -> int:
    """Issue a licence as the department ``--issuer``; print it and write the requested files."""
    from license.issuance import IssueRequest
    from license.runtime import runtime_for

    fields = _fields(args.field or [])
    platform = open_instance(args)
    try:
        runtime = runtime_for(platform)
        signer = runtime.signers(args.issuer)
        issued = runtime.service.issue(
            _operator(LICENCE_ISSUER_PREFIX + args.issuer),
            IssueRequest(
                type_code=args.type,
                issuer_code=args.issuer,
                issuer_name=signer.organisation or args.issuer,
                holder_code_type=args.holder_type,
                holder_code=args.holder,
                fields=fields,
                valid_from=_date(args.valid_from, "--valid-from"),
                valid_until=_date(args.valid_until, "--valid-until"),
                number=args.number or "",
                serial=args.serial or "",
                holder_name=args.holder_name or "",
                request_id=args.request_id or "",
            ),
            document=not args.no_document,
        )
        url = runtime.verify_url(issued.identifier)
    finally:
        platform.close()
    for wanted, made, name in (
        (args.pdf, issued.document_pdf, "PDF"),
        (args.ofd, issued.document_ofd, "OFD"),
    ):
        if wanted is None:
            continue
        if made is None:
            why = "--no-document" if args.no_document else "the licence type's formats"
            print(f"govtrust license: no {name} was made ({why})", file=sys.stderr)
            return EXIT_FAILURE
        wanted.write_bytes(made)
    if args.jws is not None:
        args.jws.write_text(issued.signed_data + "\n", encoding="utf-8")
    if args.qr is not None:
        args.qr.write_text(issued.qr_payload + "\n", encoding="utf-8")
    digest = issued.document_digest
    print(
        json.dumps(
            {
                "identifier": issued.identifier,
                "replayed": issued.replayed,
                "holder": issued.metadata.holder_name,
                "valid_until": (
                    issued.metadata.valid_until.isoformat() if issued.metadata.valid_until else ""
                ),
                "verification_url": url,
                "document_sha256": digest.hex() if digest else "",
                "qr_payload": issued.qr_payload,
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Show a stored licence (metadata and status; the read is audited)."""
    from license.access import LicenceAccess
    from license.identifiers import parse_identifier
    from license.records import effective_status
    from license.runtime import runtime_for
    from license.signed_data import LicenceMetadata
    from license.signer import unverified_payload
    from seal.owners import RegistryOwners

    parse_identifier(args.identifier, check_uscc=False)
    platform = open_instance(args)
    try:
        service = runtime_for(platform).service
        issuer = service.get(args.identifier).issuer_code
        access = LicenceAccess(service, RegistryOwners(service.registry))
        read = access.read(
            _operator(LICENCE_ISSUER_PREFIX + issuer), args.identifier, what="licence"
        )
    finally:
        platform.close()
    row, stored = read.licence.row, read.licence
    meta = LicenceMetadata.from_json(unverified_payload(stored.signed_data))
    status = str(effective_status(row))
    out = {
        "identifier": row.identifier,
        "name": meta.name,
        "status": status,
        "status_reason": row.status_reason,
        "issuer": f"{meta.issuer_name} ({meta.issuer_code})",
        "holder": meta.holder_name,
        "holder_code_type": meta.holder_code_type,
        "valid_from": meta.valid_from.isoformat(),
        "valid_until": meta.valid_until.isoformat() if meta.valid_until else "",
        "fields": dict(meta.fields),
        "previous": row.previous_identifier or "",
        "next": row.superseded_by or "",
        "has_document": stored.document_pdf is not None,
        "has_ofd_document": stored.document_ofd is not None,
        "type_revision": row.type_revision,
        "annotations": [
            {
                "identifier": note.identifier,
                "text": note.text,
                "changed_fields": list(note.changed_fields),
                "by": note.annotated_by,
                "at": note.annotated_at.isoformat(),
            }
            for note in stored.annotations
        ],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke (注销) a licence as its issuing department."""
    from license.identifiers import parse_identifier
    from license.runtime import runtime_for

    parse_identifier(args.identifier, check_uscc=False)
    platform = open_instance(args)
    try:
        service = runtime_for(platform).service
        issuer = service.get(args.identifier).issuer_code
        service.revoke(_operator(LICENCE_ISSUER_PREFIX + issuer), args.identifier, args.reason)
    finally:
        platform.close()
    print(f"{args.identifier}\trevoked")
    return EXIT_OK


def _check(platform: Platform, evidence: str | bytes) -> tuple[str, LicenceCheck]:
    """(kind, check) of a PDF or OFD, a compact JWS, a ``GT1:`` QR text or an identifier."""
    from license.runtime import runtime_for
    from license.verification import LicenceVerifier

    runtime = runtime_for(platform)
    verifier = LicenceVerifier(runtime.service, runtime.roots, runtime.trust_list)
    if isinstance(evidence, bytes):
        checked = verifier.check("document", evidence)
        return checked.document_format or "pdf", checked.check
    if evidence.startswith(QR_PREFIX):
        return "qr", verifier.check("qr_payload", evidence).check
    if evidence.startswith(IDENTIFIER_PREFIX):
        return "identifier", verifier.check("identifier", evidence).check
    return "signed_data", verifier.check("signed_data", evidence).check


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a licence; exit 0 when valid, 1 when not (the reasons are printed)."""
    target: str = args.evidence
    evidence: str | bytes
    path = Path(target)
    if len(target) < 4096 and path.is_file():
        data = path.read_bytes()
        if data.lstrip()[:5] == b"%PDF-" or data[:4] == ZIP_MAGIC:
            evidence = data
        else:
            try:
                evidence = data.decode("utf-8").strip()
            except UnicodeDecodeError:
                print(
                    "govtrust license: the file is neither a PDF, an OFD nor text", file=sys.stderr
                )
                return EXIT_USAGE
    else:
        evidence = target.strip()
    if not evidence:
        print("govtrust license: nothing to verify", file=sys.stderr)
        return EXIT_USAGE
    platform = open_instance(args)
    try:
        kind, check = _check(platform, evidence)
    finally:
        platform.close()
    out = {
        "evidence": kind,
        "verdict": check.verdict.name,
        "state": check.state.value,
        "reasons": list(check.reasons),
        "identifier": check.identifier,
        "name": check.name,
        "issuer_code": check.issuer_code,
        "holder": check.holder_name,
        "valid_until": check.valid_until.isoformat() if check.valid_until else "",
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    from license.checking import Verdict

    return EXIT_OK if check.verdict is Verdict.VALID else EXIT_FAILURE


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``govtrust license …`` to the CLI."""
    lic = commands.add_parser(
        "license", help="e-licences: catalogue, issue, import, show, revoke, verify"
    )
    groups = lic.add_subparsers(dest="license_command", metavar="COMMAND", required=True)

    types = groups.add_parser("types", help="list or define licence types (the catalogue)")
    add_data_dir(types)
    types.add_argument("--seed", action="store_true", help="define the two example types first")
    types.add_argument("--issuer", action="append", help="issuing department of seeded types")
    types.add_argument("--json", action="store_true", help="print the whole types as JSON")
    types.add_argument(
        "--define", metavar="FILE", help="define a type from JSON (the shape --json prints)"
    )
    types.add_argument(
        "--replace", action="store_true", help="with --define: revise an existing type"
    )
    types.set_defaults(handler=cmd_types)

    issue = groups.add_parser("issue", help="issue a licence as a department")
    add_data_dir(issue)
    issue.add_argument("--type", required=True, help="licence type code (21 characters)")
    issue.add_argument("--issuer", required=True, help="issuing department's USCC")
    issue.add_argument("--holder-type", choices=["001", "111"], required=True)
    issue.add_argument("--holder", required=True, help="holder's USCC or resident ID number")
    issue.add_argument("--holder-name", help="holder's name; must match the registry's")
    issue.add_argument(
        "--request-id", help="idempotency key: a repeat returns the licence already issued"
    )
    issue.add_argument("--field", action="append", metavar="KZ_NAME=VALUE", help="(repeat)")
    issue.add_argument("--valid-from", help="YYYY-MM-DD (default today)")
    issue.add_argument("--valid-until", help="YYYY-MM-DD (default: the type's rule)")
    issue.add_argument("--number", help="licence number (default: the serial)")
    issue.add_argument("--serial", help="serial part of the identifier (default: assigned)")
    issue.add_argument("--no-document", action="store_true", help="no sealed PDF")
    issue.add_argument("--pdf", type=Path, help="write the sealed PDF here")
    issue.add_argument("--ofd", type=Path, help="write the sealed OFD here (types issued as OFD)")
    issue.add_argument("--jws", type=Path, help="write the signed data here")
    issue.add_argument("--qr", type=Path, help="write the offline QR payload here")
    issue.set_defaults(handler=cmd_issue)

    show = groups.add_parser("show", help="show a licence")
    add_data_dir(show)
    show.add_argument("identifier")
    show.set_defaults(handler=cmd_show)

    revoke = groups.add_parser("revoke", help="revoke (注销) a licence")
    add_data_dir(revoke)
    revoke.add_argument("identifier")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(handler=cmd_revoke)

    from govtrust.commands import license_import

    bulk = groups.add_parser(
        "import",
        help="issue the licences of a CSV or JSON Lines file (存量证照电子化), resumably",
        description=license_import.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_dir(bulk)
    license_import.add_arguments(bulk)
    bulk.set_defaults(handler=license_import.cmd_import)

    verify = groups.add_parser(
        "verify", help="check a licence: PDF, OFD or JWS file, GT1: QR text, or identifier"
    )
    add_data_dir(verify)
    verify.add_argument("evidence", help="file, QR text or identifier")
    verify.set_defaults(handler=cmd_verify)
