"""``govtrust ca …``: the certificate authority from the command line (a gRPC client).

``chain`` prints the root and every issuing CA certificate as PEM; ``issue``, ``revoke``,
``suspend``, ``resume`` and ``crl`` call ``CertificateService`` on ``--server`` (default
127.0.0.1:50051; loopback without TLS in the embedded default, ``--token`` for a bearer token).
"""

from __future__ import annotations

import argparse
import base64
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govtrust.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, rpc_error_message

DEFAULT_SERVER = "127.0.0.1:50051"
PROFILES = ("citizen", "legal-person", "seal", "service")
KEY_ALGORITHMS = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "sm2")
REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
)
_REASON_CODES = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


def to_pem(der: bytes, kind: str = "CERTIFICATE") -> str:
    """PEM armour with 64-character lines."""
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def _stub(args: argparse.Namespace) -> tuple[Any, list[tuple[str, str]]]:
    import grpc

    from govtrust.v1 import certificate_pb2_grpc

    channel = grpc.insecure_channel(args.server)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    return certificate_pb2_grpc.CertificateServiceStub(channel), metadata


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    import grpc

    stub, metadata = _stub(args)
    try:
        return getattr(stub, method)(request, metadata=metadata, timeout=args.timeout)
    except grpc.RpcError as exc:
        raise _CliError(rpc_error_message(exc, args.server)) from None


class _CliError(Exception):
    pass


def _ref(serial: str) -> Any:
    from govtrust.v1 import certificate_pb2

    value = serial.replace(":", "").strip()
    if len(value) == 64:
        return certificate_pb2.CertificateRef(fingerprint_sha256=value)
    return certificate_pb2.CertificateRef(serial_number=value)


def _identity(value: str) -> Any:
    from govtrust.v1 import common_pb2

    if len(value) == 18 and value[:17].isdigit() and (value[17].isdigit() or value[17] in "xX"):
        return common_pb2.IdentityRef(resident_id_number=value.upper())
    if len(value) == 18 and all(c in "0123456789ABCDEFGHJKLMNPQRTUWXY" for c in value):
        return common_pb2.IdentityRef(uscc=value)
    return common_pb2.IdentityRef(id=value)


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args))
    except _CliError as exc:
        print(f"govtrust: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_chain(args: argparse.Namespace) -> int:
    """Print the root and every issuing CA certificate (PEM, root first)."""
    from govtrust.v1 import certificate_pb2

    def run(a: argparse.Namespace) -> int:
        response = _call(
            a,
            "GetCaChain",
            certificate_pb2.GetCaChainRequest(ca=a.ca or "", include_responders=a.responders),
        )
        for cert in response.certificates:
            print(f"# {cert.name}: {cert.certificate.subject}")
            sys.stdout.write(to_pem(cert.certificate.der))
        return EXIT_OK

    return _run(run, args)


def cmd_issue(args: argparse.Namespace) -> int:
    """Issue a certificate from a CSR file or with a key generated in the key store."""
    from govtrust.api.certificate import KEY_ALGORITHM_ENUMS, PROFILE_ENUMS
    from govtrust.v1 import certificate_pb2

    given = [x for x in (args.identity, args.seal_id, args.system_id) if x]
    if len(given) != 1:
        print("govtrust: give exactly one of --identity, --seal-id, --system-id", file=sys.stderr)
        return EXIT_USAGE
    if bool(args.csr) == bool(args.generate):
        print("govtrust: give --csr FILE or --generate ALGORITHM", file=sys.stderr)
        return EXIT_USAGE
    if args.identity:
        subject = certificate_pb2.CertificateSubject(identity=_identity(args.identity))
    elif args.seal_id:
        subject = certificate_pb2.CertificateSubject(seal_id=args.seal_id)
    else:
        subject = certificate_pb2.CertificateSubject(
            service=certificate_pb2.ServiceSubject(
                system_id=args.system_id, dns_names=args.dns or [], ip_addresses=args.ip or []
            )
        )
    common = {
        "profile": PROFILE_ENUMS[args.profile],
        "subject": subject,
        "validity_days": args.days,
        "hash_identity_number": args.hash_id_number,
    }
    if args.applicant:
        common["applicant"] = _identity(args.applicant)

    def run(a: argparse.Namespace) -> int:
        if a.csr:
            try:
                csr = Path(a.csr).read_bytes()
            except OSError as exc:
                raise _CliError(f"cannot read {a.csr}: {exc.strerror}") from None
            response = _call(
                a, "IssueCertificate", certificate_pb2.IssueCertificateRequest(csr=csr, **common)
            )
        else:
            response = _call(
                a,
                "GenerateKeyAndIssue",
                certificate_pb2.GenerateKeyAndIssueRequest(
                    key_algorithm=KEY_ALGORITHM_ENUMS[a.generate], **common
                ),
            )
            print(f"# key in the key store: {response.key.key_id}", file=sys.stderr)
        cert = response.certificate.summary
        print(f"# serial {cert.serial_number}: {cert.subject}", file=sys.stderr)
        text = to_pem(cert.der)
        if a.out:
            Path(a.out).write_text(text)
        else:
            sys.stdout.write(text)
        return EXIT_OK

    return _run(run, args)


def _status(method: str) -> Any:
    def command(args: argparse.Namespace) -> int:
        from google.protobuf.timestamp_pb2 import Timestamp

        from govtrust.v1 import certificate_pb2, common_pb2

        def run(a: argparse.Namespace) -> int:
            ref = _ref(a.serial)
            if method == "RevokeCertificate":
                request: Any = certificate_pb2.RevokeCertificateRequest(
                    certificate=ref,
                    reason=common_pb2.RevocationReason.ValueType(_REASON_CODES[a.reason]),
                    comment=a.comment,
                )
                if a.invalidity_date:
                    try:
                        moment = datetime.fromisoformat(a.invalidity_date)
                    except ValueError:
                        raise _CliError("--invalidity-date: ISO 8601 expected") from None
                    stamp = Timestamp()
                    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
                    request.invalidity_date.CopyFrom(stamp)
            elif method == "SuspendCertificate":
                request = certificate_pb2.SuspendCertificateRequest(
                    certificate=ref, comment=a.comment
                )
            else:
                request = certificate_pb2.ResumeCertificateRequest(
                    certificate=ref, comment=a.comment
                )
            response = _call(a, method, request)
            status = certificate_pb2.CertificateStatus.Name(response.certificate.status)
            print(f"{response.certificate.summary.serial_number}: {status}")
            return EXIT_OK

        return _run(run, args)

    return command


def cmd_crl(args: argparse.Namespace) -> int:
    """Fetch the current full (or delta) CRL of a CA (DER to --out, or PEM to stdout)."""
    from govtrust.v1 import certificate_pb2

    def run(a: argparse.Namespace) -> int:
        response = _call(a, "GetCrl", certificate_pb2.GetCrlRequest(ca=a.ca, delta=a.delta))
        print(
            f"# CRL number {response.crl_number}, {response.entry_count} entries", file=sys.stderr
        )
        if a.out:
            Path(a.out).write_bytes(response.crl)
        else:
            sys.stdout.write(to_pem(response.crl, "X509 CRL"))
        return EXIT_OK

    return _run(run, args)


def _write_envelope(path: str, envelope: bytes) -> None:
    try:
        Path(path).write_bytes(envelope)
    except OSError as exc:
        raise _CliError(f"cannot write {path}: {exc.strerror}") from None


def cmd_encryption_pair(args: argparse.Namespace) -> int:
    """Issue the KMC encryption certificate paired with an SM2 signing certificate; write the
    certificate (PEM) and the key envelope (DER GM/T 0009 SM2EnvelopedKey)."""
    from govtrust.v1 import certificate_pb2

    def run(a: argparse.Namespace) -> int:
        response = _call(
            a,
            "IssueEncryptionPair",
            certificate_pb2.IssueEncryptionPairRequest(
                signing_certificate=_ref(a.signing), validity_days=a.days
            ),
        )
        _write_envelope(a.envelope_out, response.key_envelope)
        cert = response.encryption_certificate.summary
        print(
            f"# encryption certificate serial {cert.serial_number} paired with "
            f"{response.signing_certificate.summary.serial_number}; key envelope in "
            f"{a.envelope_out}",
            file=sys.stderr,
        )
        text = to_pem(cert.der)
        if a.out:
            Path(a.out).write_text(text)
        else:
            sys.stdout.write(text)
        return EXIT_OK

    return _run(run, args)


def _print_recovery(recovery: Any) -> None:
    from govtrust.v1 import certificate_pb2

    status = certificate_pb2.KeyRecoveryStatus.Name(recovery.status)
    approvers = ", ".join(recovery.approvers) or "none"
    print(f"{recovery.recovery_id}: {status} (approved by: {approvers})")


def cmd_recover_key(args: argparse.Namespace) -> int:
    """Key recovery under dual control: request, approve, deliver."""
    from govtrust.v1 import certificate_pb2

    def run(a: argparse.Namespace) -> int:
        if a.step == "request":
            response = _call(
                a,
                "RequestKeyRecovery",
                certificate_pb2.RequestKeyRecoveryRequest(
                    certificate=_ref(a.certificate),
                    legal_basis=a.legal_basis,
                    recipient_certificate=_ref(a.recipient),
                ),
            )
        elif a.step == "approve":
            response = _call(
                a,
                "ApproveKeyRecovery",
                certificate_pb2.ApproveKeyRecoveryRequest(recovery_id=a.recovery_id),
            )
        else:
            response = _call(
                a,
                "DeliverRecoveredKey",
                certificate_pb2.DeliverRecoveredKeyRequest(recovery_id=a.recovery_id),
            )
            _write_envelope(a.envelope_out, response.key_envelope)
            print(f"# key envelope in {a.envelope_out}", file=sys.stderr)
        _print_recovery(response.recovery)
        return EXIT_OK

    return _run(run, args)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help=f"gRPC address of govtrust (default {DEFAULT_SERVER})",
    )
    parser.add_argument("--token", default=None, help="bearer token (else loopback default)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")


def register(subparsers: Any) -> None:
    """Add ``govtrust ca …`` to the command tree."""
    ca = subparsers.add_parser(
        "ca", help="certificate authority (chain, issue, revoke, suspend, resume, CRL)"
    )
    commands = ca.add_subparsers(dest="ca_command", metavar="COMMAND", required=True)

    chain = commands.add_parser("chain", help="print the root and issuing CA certificates (PEM)")
    chain.add_argument("--ca", default=None, help="only this CA and its parents")
    chain.add_argument(
        "--responders", action="store_true", help="also the OCSP responder and TSA certificates"
    )
    _client_options(chain)
    chain.set_defaults(handler=cmd_chain)

    issue = commands.add_parser("issue", help="issue a certificate")
    issue.add_argument("--profile", required=True, choices=PROFILES)
    issue.add_argument("--identity", help="registry id, resident ID number or USCC")
    issue.add_argument("--seal-id", help="seal id (seal profile)")
    issue.add_argument("--system-id", help="business system id (service profile)")
    issue.add_argument("--dns", action="append", help="DNS name (service profile; repeatable)")
    issue.add_argument("--ip", action="append", help="IP address (service profile; repeatable)")
    issue.add_argument("--applicant", help="applying citizen (legal-person profile)")
    issue.add_argument("--csr", help="PKCS#10 request file (PEM or DER)")
    issue.add_argument(
        "--generate",
        choices=KEY_ALGORITHMS,
        help="generate the key in the key store instead of a CSR (sm2: the SM2 hierarchy's CA)",
    )
    issue.add_argument("--days", type=int, default=0, help="validity (default: the profile's)")
    issue.add_argument(
        "--hash-id-number",
        action="store_true",
        help="citizen: salted hash instead of the ID number",
    )
    issue.add_argument("--out", help="write the certificate (PEM) here instead of stdout")
    _client_options(issue)
    issue.set_defaults(handler=cmd_issue)

    for name, method, text in (
        ("revoke", "RevokeCertificate", "revoke a certificate"),
        ("suspend", "SuspendCertificate", "suspend a certificate (certificateHold)"),
        ("resume", "ResumeCertificate", "release a hold"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("serial", help="serial number (hex) or SHA-256 fingerprint")
        if name == "revoke":
            sub.add_argument("--reason", default="unspecified", choices=REASONS)
            sub.add_argument("--invalidity-date", help="ISO 8601 time the key became invalid")
        sub.add_argument("--comment", default="", help="recorded in the audit log")
        _client_options(sub)
        sub.set_defaults(handler=_status(method))

    pair = commands.add_parser(
        "encryption-pair",
        help="issue the KMC encryption certificate paired with an SM2 signing certificate",
    )
    pair.add_argument("signing", help="the signing certificate: serial (hex) or fingerprint")
    pair.add_argument("--days", type=int, default=0, help="validity (default: the profile's)")
    pair.add_argument(
        "--envelope-out", required=True, help="write the key envelope (DER SM2EnvelopedKey) here"
    )
    pair.add_argument("--out", help="write the encryption certificate (PEM) here, not stdout")
    _client_options(pair)
    pair.set_defaults(handler=cmd_encryption_pair)

    recover = commands.add_parser(
        "recover-key", help="recover an escrowed encryption key (dual control)"
    )
    steps = recover.add_subparsers(dest="step", required=True, metavar="STEP")
    request = steps.add_parser("request", help="open a recovery (legal basis, recipient)")
    request.add_argument("certificate", help="the encryption certificate: serial or fingerprint")
    request.add_argument("--legal-basis", required=True, help="statute, order or case number")
    request.add_argument(
        "--recipient",
        required=True,
        help="the SM2 certificate to deliver to: serial or fingerprint",
    )
    _client_options(request)
    approve = steps.add_parser("approve", help="approve as a key-recovery officer")
    approve.add_argument("recovery_id", help="the recovery request's id")
    _client_options(approve)
    deliver = steps.add_parser("deliver", help="deliver the key of an approved recovery")
    deliver.add_argument("recovery_id", help="the recovery request's id")
    deliver.add_argument(
        "--envelope-out", required=True, help="write the key envelope (DER SM2EnvelopedKey) here"
    )
    _client_options(deliver)
    recover.set_defaults(handler=cmd_recover_key)

    crl = commands.add_parser("crl", help="fetch the current CRL of a CA")
    crl.add_argument("ca", help="root, citizen, legal-person, seal or service")
    crl.add_argument("--delta", action="store_true", help="the delta CRL")
    crl.add_argument("--out", help="write DER here (default: PEM to stdout)")
    _client_options(crl)
    crl.set_defaults(handler=cmd_crl)
