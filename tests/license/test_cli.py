"""``govtrust license …`` as a subprocess on a temporary data directory (both backends): seed,
issue with the sealed PDF, show, verify every form of evidence, revoke, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govtrust.config import Settings
from govtrust.principal import Principal
from govtrust.server.wiring import open_wired
from license import catalogue
from license.models import LicenceRow
from license.runtime import runtime_for
from tests.license.conftest import COMPANY, ISSUER, set_up_issuing_department
from tests.license.test_catalogue import GOOD_BL

REPO = Path(__file__).resolve().parents[2]


def _run(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "govtrust", "license", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
    )


@pytest.fixture
def data_dir(database_url: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A data directory whose department has an active official seal and whose holder is
    registered (set up in process; the CLI then runs against it)."""
    directory = tmp_path / "data"
    platform = open_wired(Settings(data_dir=directory, database_url=database_url))
    try:
        set_up_issuing_department(runtime_for(platform))
    finally:
        platform.close()
    env = {
        **os.environ,
        "GOVTRUST_DATABASE_URL": database_url,
        "PYTHONPATH": str(REPO),
    }
    env.pop("GOVTRUST_MASTER_KEY", None)
    return directory, env


def _licence_count(directory: Path, database_url: str) -> int:
    platform = open_wired(Settings(data_dir=directory, database_url=database_url))
    try:
        with platform.db.read() as session:
            return len(session.query(LicenceRow).all())
    finally:
        platform.close()


def test_license_cli(data_dir: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    directory, env = data_dir
    types = _run(directory, env, "types", "--seed", "--json")
    assert types.returncode == 0, types.stderr
    codes = {t["type_code"] for t in json.loads(types.stdout)}
    assert codes == {catalogue.BUSINESS_LICENCE_CODE, catalogue.USCC_CERTIFICATE_CODE}

    pdf, jws, qr = tmp_path / "l.pdf", tmp_path / "l.jws", tmp_path / "l.qr"
    field_args = [arg for name, value in GOOD_BL.items() for arg in ("--field", f"{name}={value}")]
    issued = _run(
        directory, env, "issue", "--type", catalogue.BUSINESS_LICENCE_CODE, "--issuer", ISSUER,
        "--holder-type", "001", "--holder", COMPANY, "--valid-from", "2015-06-01",
        *field_args, "--pdf", str(pdf), "--jws", str(jws), "--qr", str(qr),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    out = json.loads(issued.stdout)
    ident = out["identifier"]
    assert ident.startswith("1.2.156.3005.2." + catalogue.BUSINESS_LICENCE_CODE)
    assert pdf.read_bytes().startswith(b"%PDF-") and out["document_sha256"]
    assert jws.read_text().count(".") == 2 and qr.read_text().startswith("GT1:")
    assert out["replayed"] is False

    # --request-id: a repeat prints the licence already issued; another body is refused
    keyed = [
        "issue", "--type", catalogue.BUSINESS_LICENCE_CODE, "--issuer", ISSUER,
        "--holder-type", "001", "--holder", COMPANY, "--holder-name", "福州示例科技有限公司",
        "--valid-from", "2015-06-01", "--no-document", "--request-id", "cli-1", *field_args,
    ]  # fmt: skip
    first, repeat = _run(directory, env, *keyed), _run(directory, env, *keyed)
    assert first.returncode == 0 and repeat.returncode == 0, (first.stderr, repeat.stderr)
    assert json.loads(repeat.stdout)["identifier"] == json.loads(first.stdout)["identifier"]
    assert json.loads(repeat.stdout)["replayed"] is True
    other = _run(directory, env, *keyed, "--number", "另一个")
    assert other.returncode == 1 and "different request" in other.stderr
    renamed = [("cli-2" if a == "cli-1" else "别的公司" if a == "福州示例科技有限公司" else a)
               for a in keyed]  # fmt: skip
    wrong = _run(directory, env, *renamed)
    assert wrong.returncode == 1 and "holder_name" in wrong.stderr

    # an annotation (made in process: the CLI has no annotate command) is shown with the version
    keyed_id = json.loads(first.stdout)["identifier"]
    platform = open_wired(Settings(data_dir=directory, database_url=env["GOVTRUST_DATABASE_URL"]))
    try:
        issuer = Principal("operator", "test", frozenset({f"licence-issuer:{ISSUER}"}))
        v2 = runtime_for(platform).service.new_version(
            issuer, keyed_id, fields={"KZ_ZS": "福建省福州市新址1号"}, reason="住所变更",
            document=False,
        )  # fmt: skip
    finally:
        platform.close()
    annotated = json.loads(_run(directory, env, "show", v2.identifier).stdout)
    assert [(n["text"], n["changed_fields"]) for n in annotated["annotations"]] == [
        ("住所变更", ["KZ_ZS"])
    ]

    shown = _run(directory, env, "show", ident)
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert details["status"] == "valid" and details["holder"] == "福州示例科技有限公司"
    assert details["has_document"] is True and details["fields"]["KZ_MC"] == GOOD_BL["KZ_MC"]
    assert details["type_revision"] == 1 and details["annotations"] == []

    for evidence, kind in (
        (str(pdf), "pdf"),
        (str(jws), "signed_data"),
        (qr.read_text().strip(), "qr"),
        (ident, "identifier"),
    ):
        checked = _run(directory, env, "verify", evidence)
        assert checked.returncode == 0, (kind, checked.stdout, checked.stderr)
        report = json.loads(checked.stdout)
        assert (report["evidence"], report["verdict"], report["identifier"]) == (
            kind,
            "VALID",
            ident,
        )

    revoked = _run(directory, env, "revoke", ident, "--reason", "注销")
    assert revoked.returncode == 0, revoked.stderr
    for evidence in (str(jws), ident):
        after = _run(directory, env, "verify", evidence)
        assert after.returncode == 1
        report = json.loads(after.stdout)
        assert report["verdict"] == "INVALID" and "REVOKED" in report["reasons"]


def test_license_cli_verifies_a_licence_ofd(
    data_dir: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``govtrust license verify licence.ofd``: the department's SM2 seal over the OFD, checked
    with the runtime's roots (ECDSA and SM2) and the status list."""
    import io
    import zipfile
    from dataclasses import replace

    directory, env = data_dir
    assert _run(directory, env, "types", "--seed").returncode == 0
    platform = open_wired(Settings(data_dir=directory, database_url=env["GOVTRUST_DATABASE_URL"]))
    try:
        with platform.db.transaction() as session:
            business = catalogue.get_type(session, catalogue.BUSINESS_LICENCE_CODE)
            catalogue.define_type(
                session,
                Principal("user", "admin", frozenset({"admin"})),
                replace(business, document_formats=("pdf", "ofd")),
                replace=True,
            )
    finally:
        platform.close()
    pdf, ofd = tmp_path / "l.pdf", tmp_path / "l.ofd"
    field_args = [arg for name, value in GOOD_BL.items() for arg in ("--field", f"{name}={value}")]
    issued = _run(
        directory, env, "issue", "--type", catalogue.BUSINESS_LICENCE_CODE, "--issuer", ISSUER,
        "--holder-type", "001", "--holder", COMPANY, "--valid-from", "2015-06-01",
        *field_args, "--pdf", str(pdf), "--ofd", str(ofd),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    ident = json.loads(issued.stdout)["identifier"]
    assert ofd.read_bytes()[:4] == b"PK\x03\x04"

    checked = _run(directory, env, "verify", str(ofd))
    assert checked.returncode == 0, (checked.stdout, checked.stderr)
    report = json.loads(checked.stdout)
    assert (report["evidence"], report["verdict"], report["identifier"]) == ("ofd", "VALID", ident)

    garbage = tmp_path / "garbage.ofd"
    garbage.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    bad = _run(directory, env, "verify", str(garbage))
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["reasons"][0] == "MALFORMED"

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("OFD.xml", b"<x/>")
        archive.writestr("Doc_0/bomb.xml", b"\0" * (40 * 1024 * 1024))
    (tmp_path / "bomb.ofd").write_bytes(bomb.getvalue())
    refused = _run(directory, env, "verify", str(tmp_path / "bomb.ofd"))
    assert refused.returncode != 0 and "ofd:" in refused.stderr, (refused.stdout, refused.stderr)

    assert _run(directory, env, "revoke", ident, "--reason", "注销").returncode == 0
    after = _run(directory, env, "verify", str(ofd))
    assert after.returncode == 1
    report = json.loads(after.stdout)
    assert (report["evidence"], report["verdict"], report["state"]) == ("ofd", "INVALID", "revoked")


def test_license_cli_bad_input(data_dir: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    directory, env = data_dir
    assert _run(directory, env, "types", "--seed").returncode == 0
    garbage = _run(directory, env, "verify", "not-a-licence")
    assert garbage.returncode == 1 and json.loads(garbage.stdout)["verdict"] == "INVALID"
    bad_ident = _run(directory, env, "show", "1.2.3")
    assert bad_ident.returncode == 1 and "1.2.156.3005.2." in bad_ident.stderr
    bad_field = _run(
        directory, env, "issue", "--type", catalogue.BUSINESS_LICENCE_CODE, "--issuer", ISSUER,
        "--holder-type", "001", "--holder", COMPANY, "--field", "KZ_ZCZB=很多钱",
    )  # fmt: skip
    assert bad_field.returncode == 1 and "KZ_" in bad_field.stderr
    malformed = _run(
        directory, env, "issue", "--type", catalogue.BUSINESS_LICENCE_CODE, "--issuer", ISSUER,
        "--holder-type", "001", "--holder", COMPANY, "--field", "no-equals",
    )  # fmt: skip
    assert malformed.returncode != 0 and "NAME=VALUE" in malformed.stderr
    assert _licence_count(directory, env["GOVTRUST_DATABASE_URL"]) == 0


def test_license_cli_defines_types_from_json(
    data_dir: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The catalogue is managed from the CLI: export with --json, edit, --define (--replace)."""
    directory, env = data_dir
    listed = _run(directory, env, "types", "--seed", "--json")
    assert listed.returncode == 0, listed.stderr
    business = next(
        t for t in json.loads(listed.stdout) if t["type_code"] == catalogue.BUSINESS_LICENCE_CODE
    )
    assert business["fields"] and business["validity"] and "layout" in business

    # A new type: the business licence's schema under another code of the same authority.
    new_code = business["type_code"][:18] + "009"
    new_type = {**business, "type_code": new_code, "name": "测试许可证", "name_en": "Test permit"}
    path = tmp_path / "type.json"
    path.write_text(json.dumps(new_type, ensure_ascii=False), encoding="utf-8")
    defined = _run(directory, env, "types", "--define", str(path), "--json")
    assert defined.returncode == 0, defined.stderr
    again = {t["type_code"]: t for t in json.loads(defined.stdout)}
    assert again[new_code]["name"] == "测试许可证"
    assert again[new_code]["fields"] == business["fields"]  # round-trips whole
    assert again[new_code]["revision"] == 1

    twice = _run(directory, env, "types", "--define", str(path))
    assert twice.returncode == 1 and "exists" in twice.stderr
    category = {
        "name": "KZ_LB", "label": "类别", "label_en": "Category", "type": "enum",
        "allowed_values": ["食品销售", "餐饮服务"], "max_length": 20,
    }  # fmt: skip
    revised = {
        **new_type,
        "name": "测试许可证（新）",
        "fields": [*business["fields"], category],
        "validity": {"default_days": 90, "max_days": 180, "long_term_allowed": False},
    }
    path.write_text(json.dumps(revised), encoding="utf-8")
    replaced = _run(directory, env, "types", "--define", str(path), "--replace", "--json")
    assert replaced.returncode == 0, replaced.stderr
    stored = {t["type_code"]: t for t in json.loads(replaced.stdout)}[new_code]
    assert stored["name"] == "测试许可证（新）" and stored["revision"] == 2
    assert stored["fields"][-1]["allowed_values"] == ["食品销售", "餐饮服务"]
    assert stored["fields"][-1]["label_en"] == "Category"
    assert stored["validity"]["default_days"] == 90

    # Bad definitions are refused naming the part, and change nothing.
    for broken, named in (
        ({**new_type, "type_code": new_code[:-1] + "8", "fields": "no"}, "fields"),
        ({**new_type, "type_code": new_code[:-1] + "8", "fields": [{"label": "x"}]}, "fields[0]"),
        ({**new_type, "type_code": "SHORT"}, "type_code"),
        ({**new_type, "type_code": new_code[:-1] + "8", "validity": {"decades": 1}}, "validity"),
        (
            {
                **new_type,
                "type_code": new_code[:-1] + "8",
                "fields": [{**category, "allowed_values": []}],
            },
            "fields[0].allowed_values",
        ),
    ):
        path.write_text(json.dumps(broken), encoding="utf-8")
        refused = _run(directory, env, "types", "--define", str(path))
        assert refused.returncode == 1 and named in refused.stderr, (named, refused.stderr)
    path.write_text("{not json", encoding="utf-8")
    assert _run(directory, env, "types", "--define", str(path)).returncode == 1
    final = _run(directory, env, "types", "--json")
    assert {t["type_code"] for t in json.loads(final.stdout)} == {
        catalogue.BUSINESS_LICENCE_CODE,
        catalogue.USCC_CERTIFICATE_CODE,
        new_code,
    }
