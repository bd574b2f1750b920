"""``govtrust verify cert|pdf|ofd|license|token <file>``: print a verification report.

Runs the verification service in process over the data directory (the same code the gRPC
``VerifyService`` runs; the check is audited as by the operator). Prints the human-readable
summary, or with ``--json`` the report as JSON (the proto3 JSON mapping; with ``--signed`` also
the signed JSON). Exit status: 0 VALID, 1 INVALID, 3 INDETERMINATE, 2 bad usage or input.

Examples::

    govtrust verify cert alice.pem --purpose document_signing --locale en
    govtrust verify pdf contract.pdf --json
    govtrust verify ofd licence.ofd --locale en
    govtrust verify license 1.2.156.3005.2....txt
    govtrust verify token id_token.jwt --audience portal
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govtrust.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_data_dir, open_instance
from govtrust.principal import Principal

if TYPE_CHECKING:
    from verify.service import Verified

EXIT_INDETERMINATE = 3
_PURPOSES = (
    "client_auth",
    "server_auth",
    "document_signing",
    "seal",
    "time_stamping",
    "ocsp_signing",
)
_REVOCATION = ("default", "registry", "ocsp", "crl")
_LICENCE_FORMS = ("identifier", "signed_data", "document", "qr_payload")


def _operator() -> Principal:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(kind="operator", subject=user, roles=frozenset({"verifier"}))


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Usage(f"cannot read {path}: {exc.strerror or exc}") from None


class _Usage(Exception):
    """A usage or input error (exit 2)."""


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Usage(f"--at: not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _options(args: argparse.Namespace) -> Any:
    from verify.report import ReportFormat, ReportOptions

    fmt = ReportFormat.SIGNED_JSON if args.signed else ReportFormat.PROTO
    return ReportOptions(fmt, args.locale, args.reference)


def _print(verified: Verified, args: argparse.Namespace) -> int:
    from verify.report import Verdict

    verified.audited.result(timeout=60)
    report = verified.report
    if args.json:
        out: dict[str, Any] = {"report": report.to_json()}
        if verified.signed is not None:
            out["signed_report"] = {
                "jws": verified.signed.jws,
                "signer_certificate": verified.signed.signer_certificate.hex(),
            }
        print(json.dumps(out, ensure_ascii=False, indent=2, sort_keys=True))
    else:
        print(report.summary)
        if verified.signed is not None:
            print(verified.signed.jws)
    return {
        Verdict.VALID: EXIT_OK,
        Verdict.INVALID: EXIT_FAILURE,
        Verdict.INDETERMINATE: EXIT_INDETERMINATE,
    }[report.verdict]


def _run(args: argparse.Namespace, work: Any) -> int:
    from govtrust.errors import GovtrustError
    from verify.service import context_for

    try:
        data = _read(args.file)
        at = _moment(getattr(args, "at", None))
        options = _options(args)
        platform = open_instance(args)
    except (_Usage, GovtrustError) as exc:
        print(f"govtrust verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    context = context_for(platform)
    try:
        try:
            verified = work(context, data, at, options)
        except GovtrustError as exc:
            print(f"govtrust verify: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _print(verified, args)
    finally:
        context.close()
        platform.close()


def _split_bundle(data: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """A PEM bundle's first certificate (DER) and the rest; other input unchanged."""
    from asn1crypto import pem

    if not pem.detect(data):
        return data, ()
    try:
        blocks = [der for kind, _, der in pem.unarmor(data, multiple=True) if kind == "CERTIFICATE"]
    except ValueError:
        return data, ()
    if len(blocks) < 2:
        return data, ()
    return blocks[0], tuple(blocks[1:])


def cmd_cert(args: argparse.Namespace) -> int:
    """Verify a certificate (DER or PEM; of a PEM bundle the first, the rest as intermediates)."""
    from verify.certificates import CertificateCheck, verify_certificate
    from verify.report import CertificatePurpose, RevocationCheck

    def work(context: Any, data: bytes, at: datetime | None, options: Any) -> Verified:
        leaf, bundled = _split_bundle(data)
        if bundled:
            print(
                f"govtrust verify: {args.file} holds {len(bundled) + 1} certificates: the first "
                f"is verified, the other {len(bundled)} serve as intermediates",
                file=sys.stderr,
            )
        intermediates = bundled + tuple(_read(p) for p in args.intermediate)
        check = CertificateCheck(
            leaf,
            intermediates,
            at,
            CertificatePurpose(args.purpose) if args.purpose else None,
            RevocationCheck(args.revocation),
            options,
        )
        return verify_certificate(context, _operator(), check)

    return _run(args, work)


def cmd_pdf(args: argparse.Namespace) -> int:
    """Verify every signature of a PDF."""

    def work(context: Any, data: bytes, at: datetime | None, options: Any) -> Verified:
        from verify.pdf import PdfCheck, verify_pdf_check

        return verify_pdf_check(
            context, _operator(), PdfCheck(data, at, options, Path(args.file).name)
        )

    return _run(args, work)


def cmd_ofd(args: argparse.Namespace) -> int:
    """Verify every seal signature of an OFD document."""

    def work(context: Any, data: bytes, at: datetime | None, options: Any) -> Verified:
        from verify.ofd import OfdCheck, verify_ofd_check

        return verify_ofd_check(
            context, _operator(), OfdCheck(data, at, options, Path(args.file).name)
        )

    return _run(args, work)


def _licence_form(data: bytes, forced: str) -> tuple[str, str | bytes]:
    if forced:
        return forced, data if forced == "document" else data.decode("utf-8", "replace").strip()
    if data.startswith(b"%PDF"):
        return "document", data
    text = data.decode("utf-8", "replace").strip()
    if text.startswith("1.2.156.3005.2."):
        return "identifier", text
    if text.count(".") == 2 and " " not in text:
        return "signed_data", text
    return "qr_payload", text


def cmd_license(args: argparse.Namespace) -> int:
    """Verify a licence: identifier, signed data (JWS), sealed PDF or QR payload."""

    def work(context: Any, data: bytes, at: datetime | None, options: Any) -> Verified:
        from verify.licences import LicenceCheckRequest, verify_licence_check

        form, value = _licence_form(data, args.form)
        request = LicenceCheckRequest(form, value, at, options)  # type: ignore[arg-type]
        return verify_licence_check(context, _operator(), request)

    return _run(args, work)


def cmd_token(args: argparse.Namespace) -> int:
    """Verify an ID token or access token of our identity provider."""
    from verify.report import TokenKind
    from verify.tokens import TokenCheck, verify_token

    def work(context: Any, data: bytes, _at: datetime | None, options: Any) -> Verified:
        check = TokenCheck(
            data.decode("ascii", "replace").strip(),
            TokenKind(args.kind) if args.kind else None,
            args.audience,
            args.nonce,
            options,
        )
        return verify_token(context, _operator(), check)

    return _run(args, work)


def register(commands: Any) -> None:
    """Add ``verify`` and its subcommands to the ``govtrust`` command tree."""
    verify = commands.add_parser("verify", help="verify certificates, PDFs, OFDs, licences, tokens")
    sub = verify.add_subparsers(dest="verify_command", metavar="WHAT", required=True)

    def parser(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_data_dir(p)
        p.add_argument("file", help="the input file ('-' for standard input)")
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--signed", action="store_true", help="also sign the report (JWS)")
        p.add_argument("--locale", default="zh-CN", help="zh-CN (default) or en")
        p.add_argument("--reference", default="", help="your reference, echoed in the report")
        p.set_defaults(handler=handler)
        return p

    p = parser(
        "cert",
        "verify a certificate (DER or PEM; a PEM bundle: the first, the rest as intermediates)",
        cmd_cert,
    )
    p.add_argument("--at", help="validation time, ISO 8601 (default now)")
    p.add_argument("--purpose", choices=_PURPOSES, default="")
    p.add_argument("--revocation", choices=_REVOCATION, default="default")
    p.add_argument(
        "--intermediate", action="append", default=[], help="intermediate certificate file"
    )
    p = parser("pdf", "verify every signature of a PDF", cmd_pdf)
    p.add_argument("--at", help="time taken as now, ISO 8601")
    p = parser("ofd", "verify every seal signature of an OFD document", cmd_ofd)
    p.add_argument("--at", help="time taken as now, ISO 8601")
    p = parser("license", "verify a licence (identifier, JWS, PDF or QR payload)", cmd_license)
    p.add_argument("--at", help="time to judge status at, ISO 8601")
    p.add_argument("--form", choices=_LICENCE_FORMS, default="", help="default: detect")
    p = parser("token", "verify an ID token or access token of our IdP", cmd_token)
    p.add_argument("--kind", choices=("id_token", "access_token"), default="")
    p.add_argument("--audience", default="", help="the audience the token must be for")
    p.add_argument("--nonce", default="", help="the expected nonce (ID tokens)")
