"""Base data (人口库 / 法人库): CSV import, matching, assurance upgrades, the CLI."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from govtrust.audit import AuditRecord, verify_chain
from govtrust.cli import main
from govtrust.db import Database
from govtrust.errors import InvalidArgument
from hsm.master import MasterKey
from idp.basedata import ImportedBaseData, import_legal_persons, import_population
from idp.pii import PiiCodec
from idp.registry import IdentityRegistry
from idp.types import CheckResult, IdentityRef
from tests.idp.conftest import REGISTRAR, VERIFIER
from tests.idp.helpers import resident_id, uscc
from tests.unchanged import unchanged


def test_import_matches_and_upgrades(registry: IdentityRegistry, database: Database) -> None:
    codec = registry.codec
    before = registry.register_citizen(REGISTRAR, name="张三", id_number=resident_id(1))
    other = registry.register_citizen(REGISTRAR, name="李四", id_number=resident_id(2))
    lp = registry.register_legal_person(
        REGISTRAR, uscc=uscc(1), name="某公司", legal_representative=IdentityRef(id=before.id)
    )
    assert (before.assurance_level, lp.assurance_level) == (1, 1)
    text = (
        "\ufeffname,id_number,extra\n"
        f"张三,{resident_id(1)},x\n"
        f"王五,{resident_id(2)},x\n"  # number known, other name: no upgrade
        f"坏,{resident_id(3)[:-1]}Z,x\n"
        ",123,x\n"
    )
    report = import_population(database, codec, text.lstrip("\ufeff"), principal=REGISTRAR)
    assert report.imported == 2
    assert report.upgraded == 1
    assert [s.split(":")[0] for s in report.skipped] == ["line 4", "line 5"]
    assert registry.get_citizen(VERIFIER, IdentityRef(id=before.id)).assurance_level == 2
    assert registry.get_citizen(VERIFIER, IdentityRef(id=other.id)).assurance_level == 1
    base = ImportedBaseData(database, codec)
    assert base.match_citizen("张三", resident_id(1)) is CheckResult.MATCH
    assert base.match_citizen("张三", resident_id(2)) is CheckResult.MISMATCH
    assert base.match_citizen("张三", resident_id(4)) is CheckResult.NOT_FOUND

    wrong_rep = f"uscc,name,legal_representative_id_number\n{uscc(1)},某公司,{resident_id(2)}\n"
    assert import_legal_persons(database, codec, wrong_rep, principal=REGISTRAR).upgraded == 0
    right = f"uscc,name,legal_representative_id_number\n{uscc(1)},某公司,{resident_id(1)}\n"
    assert import_legal_persons(database, codec, right, principal=REGISTRAR).upgraded == 1
    assert registry.get_legal_person(VERIFIER, IdentityRef(id=lp.id)).assurance_level == 2
    assert base.match_legal_person(uscc(1), "某公司", None) is CheckResult.MATCH
    assert base.match_legal_person(uscc(1), "某公司", resident_id(2)) is CheckResult.MISMATCH
    with database.read() as session:
        assert verify_chain(session).ok
        actions = [r.action for r in session.query(AuditRecord)]
    assert actions.count("identity.assurance.raise") == 2
    assert actions.count("identity.basedata.import") == 3


def test_import_needs_columns_and_role(registry: IdentityRegistry, database: Database) -> None:
    with unchanged(database), pytest.raises(InvalidArgument) as info:
        import_population(database, registry.codec, "name,number\n", principal=REGISTRAR)
    assert info.value.violations[0].field == "file"
    from govtrust.errors import PermissionDenied

    with unchanged(database), pytest.raises(PermissionDenied):
        import_population(database, registry.codec, "name,id_number\n", principal=VERIFIER)


def test_cli_import_and_validate(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GOVTRUST_DATABASE_URL", database_url)
    monkeypatch.setenv("GOVTRUST_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    citizens = tmp_path / "citizens.csv"
    citizens.write_text(f"name,id_number\n张三,{resident_id(1)}\n坏,{resident_id(2)[:-1]}Z\n")
    data_dir = str(tmp_path / "var")
    assert main(["identity", "import", str(citizens), "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    assert "imported 1 citizens records" in out
    assert "line 3: id_number: character not allowed" in out
    assert resident_id(2)[:10] not in out
    assert main(["identity", "import", str(citizens), "--data-dir", data_dir, "--strict"]) == 1
    companies = tmp_path / "companies.csv"
    companies.write_text(f"uscc,name\n{uscc(1)},某公司\n")
    assert main(["identity", "import", str(companies), "--data-dir", data_dir]) == 0
    assert "imported 1 legal-persons records" in capsys.readouterr().out
    codec = PiiCodec.from_master_key(MasterKey.from_base64(os.environ["GOVTRUST_MASTER_KEY"]))
    db = Database(database_url)
    try:
        base = ImportedBaseData(db, codec)
        assert base.match_citizen("张三", resident_id(1)) is CheckResult.MATCH
        assert base.match_legal_person(uscc(1), "某公司", None) is CheckResult.MATCH
    finally:
        db.dispose()
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("a,b\n1,2\n")
    assert main(["identity", "import", str(unknown), "--data-dir", data_dir]) == 2
    assert main(["identity", "validate", "11010519491231002X", "91350100M000100Y43"]) == 0
    out = capsys.readouterr().out
    assert "1101**********002X: valid resident ID number" in out
    assert "enterprise" in out
    assert main(["identity", "validate", "91350203M0001QAY9B"]) == 1
    monkeypatch.setenv("GOVTRUST_USCC_ALLOW_LIST", "91350203M0001QAY9B")
    assert main(["identity", "validate", "91350203M0001QAY9B"]) == 0
    assert "allow-listed" in capsys.readouterr().out
