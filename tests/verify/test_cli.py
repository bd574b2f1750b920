"""``govtrust verify cert|pdf|ofd|license|token`` as a subprocess on a temporary data directory
(both backends): summaries, JSON, signed JSON, exit codes, bad input, the audit record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from ca.authority import authority_for
from ca.issuance import IssueRequest, ServiceSubject, SubjectSpec
from govtrust.audit import AuditRecord
from govtrust.config import Settings
from govtrust.server.wiring import open_wired
from seal.ofd.model import Font
from seal.ofd.writer import write_document
from tests.seal.test_ofd_document import _document, cjk_font  # noqa: F401
from tests.verify.conftest import OPERATOR, TestCa, der
from verify.report import verify_signed_report

REPO = Path(__file__).resolve().parents[2]


def run(data: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    directory, env = data
    return subprocess.run(
        [sys.executable, "-m", "govtrust", "verify", *args, "--data-dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
        check=False,
    )


@pytest.fixture
def data(database_url: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    directory = tmp_path / "data"
    platform = open_wired(Settings(data_dir=directory, database_url=database_url))
    try:
        authority = authority_for(platform)
        for name in ("bank-core", "bank-old"):
            issued = authority.issue(
                OPERATOR,
                IssueRequest(
                    profile="service",
                    subject=SubjectSpec(service=ServiceSubject(name)),
                    generate_key_algorithm="ec-p256",
                ),
            )
            cert = x509.load_der_x509_certificate(issued.certificate.der)
            (tmp_path / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
            if name == "bank-old":
                authority.revoke(OPERATOR, issued.certificate.id, reason="superseded")
        (tmp_path / "root.der").write_bytes(authority.chain("root")[0].der)
    finally:
        platform.close()
    env = {**os.environ, "GOVTRUST_DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    env.pop("GOVTRUST_MASTER_KEY", None)
    return directory, env


def test_cert_summary_json_and_signed(
    data: tuple[Path, dict[str, str]], tmp_path: Path, database_url: str
) -> None:
    pem = str(tmp_path / "bank-core.pem")
    result = run(data, "cert", pem, "--locale", "en", "--purpose", "server_auth")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Certificate verification result: VALID.")
    assert "CN=bank-core" in result.stdout

    result = run(data, "cert", pem, "--json", "--signed", "--reference", "ticket-9")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    report = out["report"]
    assert report["verdict"] == "VERDICT_VALID" and report["reference"] == "ticket-9"
    assert report["certificate"]["certificate"]["profile"] == "CERTIFICATE_PROFILE_SERVICE"
    root = x509.load_der_x509_certificate((tmp_path / "root.der").read_bytes())
    assert verify_signed_report(out["signed_report"]["jws"], [root]) == report

    platform = open_wired(Settings(data_dir=data[0], database_url=database_url))
    try:
        with platform.db.read() as session:
            actors = set(
                session.scalars(
                    select(AuditRecord.actor).where(AuditRecord.action == "verify.certificate")
                )
            )
    finally:
        platform.close()
    assert len(actors) == 1 and next(iter(actors)).startswith("operator:")


def test_cert_verdict_exit_codes_and_bad_input(
    data: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    result = run(data, "cert", str(tmp_path / "bank-old.pem"), "--locale", "en")
    assert result.returncode == 1, result.stderr
    assert "INVALID" in result.stdout and "superseded" in result.stdout

    other = tmp_path / "other.der"
    other.write_bytes(der(TestCa().leaf()))
    result = run(data, "cert", str(other))
    assert result.returncode == 3, result.stderr
    assert "无法确定" in result.stdout

    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"this is not a certificate")
    result = run(data, "cert", str(garbage))
    assert result.returncode == 2 and result.stdout == ""
    assert "certificate" in result.stderr and "not a DER or PEM" in result.stderr

    result = run(data, "cert", str(tmp_path / "missing.pem"))
    assert result.returncode == 2 and "cannot read" in result.stderr

    result = run(data, "cert", str(tmp_path / "bank-core.pem"), "--at", "yesterday")
    assert result.returncode == 2 and "--at" in result.stderr


def test_token_pdf_and_license(data: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    token = tmp_path / "token.jwt"
    token.write_text("not-a-jwt")
    result = run(data, "token", str(token))
    assert result.returncode == 2 and "token" in result.stderr

    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")  # alg none
    result = run(data, "token", str(token), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)["report"]
    assert report["reasons"][0]["code"] == "REASON_CODE_TOKEN_ALGORITHM_REJECTED"

    pdf = tmp_path / "broken.pdf"
    pdf.write_bytes(b"%PDF-1.7\n garbage, truncated")
    result = run(data, "pdf", str(pdf), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)["report"]
    assert report["evidence_kind"] == "EVIDENCE_KIND_PDF" and report["verdict"] == "VERDICT_INVALID"

    licence = tmp_path / "licence.txt"
    licence.write_text("1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U")
    result = run(data, "license", str(licence), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)["report"]
    assert report["evidence_kind"] == "EVIDENCE_KIND_LICENSE_IDENTIFIER"
    assert report["verdict"] == "VERDICT_INVALID"


def test_ofd(data: tuple[Path, dict[str, str]], tmp_path: Path, cjk_font: Font) -> None:  # noqa: F811
    unsigned = tmp_path / "unsigned.ofd"
    unsigned.write_bytes(write_document(_document(cjk_font)))
    result = run(data, "ofd", str(unsigned), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)["report"]
    assert report["evidence_kind"] == "EVIDENCE_KIND_OFD" and report["verdict"] == "VERDICT_INVALID"
    assert [r["code"] for r in report["reasons"]] == ["REASON_CODE_NO_SIGNATURE"]
    assert report["document"]["page_count"] == 1

    garbage = tmp_path / "garbage.ofd"
    garbage.write_bytes(b"not a zip at all")
    result = run(data, "ofd", str(garbage), "--locale", "en")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("OFD document verification result: INVALID.")
    assert "not a zip file" in result.stdout

    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("OFD.xml", b"<x/>")
        archive.writestr("Doc_0/bomb.xml", b"\0" * (40 * 1024 * 1024))
    bomb = tmp_path / "bomb.ofd"
    bomb.write_bytes(out.getvalue())
    result = run(data, "ofd", str(bomb))
    assert result.returncode == 2 and result.stdout == ""
    assert "compression ratio" in result.stderr


def test_cert_pem_bundle_first_is_the_leaf_and_says_so(
    data: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root = x509.load_der_x509_certificate((tmp_path / "root.der").read_bytes())
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes((tmp_path / "bank-core.pem").read_bytes() + root.public_bytes(Encoding.PEM))
    result = run(data, "cert", str(bundle), "--locale", "en")
    assert result.returncode == 0, result.stderr
    assert "CN=bank-core" in result.stdout
    assert "holds 2 certificates: the first is verified, the other 1 serve as intermediates" in (
        result.stderr
    )
    single = run(data, "cert", str(tmp_path / "bank-core.pem"), "--locale", "en")
    assert single.returncode == 0 and "intermediates" not in single.stderr
