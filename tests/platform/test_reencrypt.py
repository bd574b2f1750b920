"""``govtrust reencrypt``: a live database moved between AES-256-GCM and SM4-GCM in batches,
killed mid-way and resumed, a concurrent writer never overwritten, an unknown scheme refused
(issue #18 items 3 and 4). The scenario is bench/reencrypt.py's, at 2,000 citizens and 200
licences; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bench.reencrypt import (
    Population,
    census,
    citizen,
    command,
    environment,
    lookup_works,
    populate,
    run_killed,
    run_to_end,
)
from govtrust.config import Settings
from govtrust.platform import Platform
from govtrust.principal import Principal
from govtrust.reencryption import Move, TableSpec, reencrypt_table
from govtrust.server.wiring import open_wired
from hsm.atrest import UnknownScheme, scheme_of
from idp.models import CitizenRow
from idp.pii import PURPOSE_ID_NUMBER, PURPOSE_PHONE, PiiCodec
from idp.reencryption import personal_data_tables, reencrypt_personal_data
from tests.unchanged import unchanged

CITIZENS, LICENCES = 2000, 200


@pytest.fixture
def platform(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    opened = open_wired(Settings(data_dir=tmp_path / "data", database_url=database_url))
    yield opened
    opened.close()


def test_killed_mid_way_and_resumed_every_row_readable(
    platform: Platform, database_url: str
) -> None:
    population = populate(platform, CITIZENS, LICENCES, 2048)
    assert population.rows == CITIZENS + LICENCES
    env = environment(database_url)
    to_sm4 = command(platform.settings.data_dir, "sm4-gcm", 50)

    # killed (SIGKILL) once its progress line, written after a batch commits, shows half done
    _seconds, done, status = run_killed(to_sm4, env, 0.5)
    assert status == -signal.SIGKILL
    assert done >= population.rows // 2
    halfway = census(platform, population, expect=None)
    assert halfway.problems == []  # every row readable, none in clear, none encrypted twice
    assert set(halfway.schemes) == {"aes-256-gcm", "sm4-gcm"}  # really interrupted mid-way
    moved_before = _rows_moved(platform, population)
    assert done <= moved_before < population.rows

    _seconds, out = run_to_end(to_sm4, env)
    moved = int(re.search(r"moved (\d+) rows and verified (\d+) of (\d+)", out)[1])  # type: ignore[index]
    assert f"verified {moved} of {population.rows}" in out
    assert moved_before + moved == population.rows  # nothing moved twice, nothing skipped
    final = census(platform, population, expect="sm4-gcm")
    assert final.problems == []
    assert lookup_works(platform, population)

    # a run with nothing left to move moves nothing; then all the way back
    _seconds, out = run_to_end(to_sm4, env)
    assert f"moved 0 rows and verified 0 of {population.rows}" in out
    _seconds, out = run_to_end(command(platform.settings.data_dir, "aes-256-gcm", 500), env)
    assert f"moved {population.rows} rows and verified {population.rows}" in out
    assert census(platform, population, expect="aes-256-gcm").problems == []


def _rows_moved(platform: Platform, population: Population) -> int:
    """Rows whose every value is under SM4 (a batch commits whole rows)."""
    from license.models import LicenceRow
    from license.vault import SIGNED_DATA, LicenceVault

    vault = LicenceVault(platform.master_key)
    with platform.db.read() as session:
        citizens = sum(
            1
            for (blob,) in session.execute(select(CitizenRow.id_number_enc))
            if scheme_of(blob).value == "sm4-gcm"
        )
        licences = sum(
            1
            for ident, text in session.execute(
                select(LicenceRow.identifier, LicenceRow.signed_data)
            )
            if vault.scheme_of_text(text, SIGNED_DATA, ident).value == "sm4-gcm"
        )
    return citizens + licences


def test_a_concurrent_writer_is_never_overwritten(platform: Platform) -> None:
    """A row changed between the batch's read and its UPDATE keeps the writer's value (the
    compare-and-set misses); the next round moves the new value."""
    population = populate(platform, 30, 0, 16)
    old = PiiCodec.from_master_key(platform.master_key)  # a server still writing AES
    codec = PiiCodec.from_master_key(platform.master_key, "sm4-gcm")
    victim = sorted(population.citizens)[3]
    spec = personal_data_tables(codec)[0]
    wrote: list[str] = []

    def move_and_race(row: Mapping[str, Any]) -> Move:
        result = spec.move(row)
        if row["id"] == victim and not wrote:
            with platform.db.transaction() as session:
                session.execute(
                    update(CitizenRow)
                    .where(CitizenRow.id == victim)
                    .values(phone_enc=old.encrypt("13700000000", PURPOSE_PHONE))
                )
            wrote.append(victim)
        return result

    racing = TableSpec(
        spec.table, spec.key, spec.columns, spec.pending, move_and_race, spec.plain, "test"
    )
    report = reencrypt_table(platform.db, racing, scheme="sm4-gcm", actor="test:x", batch_size=10)
    assert wrote == [victim]
    assert (report.rows, report.moved, report.verified, report.conflicts) == (30, 30, 30, 0)
    with platform.db.read() as session:
        row = session.get(CitizenRow, victim)
        assert row is not None and row.phone_enc is not None
        assert scheme_of(row.phone_enc).value == "sm4-gcm"
        assert codec.decrypt(row.phone_enc, PURPOSE_PHONE) == "13700000000"  # the writer's


def test_a_value_with_an_unknown_scheme_stops_the_run_and_changes_nothing(
    platform: Platform,
) -> None:
    population = populate(platform, 20, 0, 16)
    first = sorted(population.citizens)[0]
    with platform.db.transaction() as session:
        blob = session.get(CitizenRow, first).id_number_enc  # type: ignore[union-attr]
        session.execute(
            update(CitizenRow)
            .where(CitizenRow.id == first)
            .values(id_number_enc=b"\x07" + blob[1:])
        )
    codec = PiiCodec.from_master_key(platform.master_key, "sm4-gcm")
    with (
        unchanged(platform.db, platform.keystore),
        pytest.raises(
            UnknownScheme,
            match=f"id_number_enc of idp_citizens {first} is under an unknown at-rest scheme "
            r"\(byte 0x07",
        ),
    ):
        reencrypt_personal_data(platform.db, codec, actor="test:x", batch_size=100)
    with pytest.raises(UnknownScheme):
        codec.decrypt(b"\x07" + blob[1:], PURPOSE_ID_NUMBER)


def test_cli_refuses_an_unknown_target_scheme(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "govtrust", "reencrypt", "--to", "sm4-cbc"]
    result = subprocess.run(
        [*cmd, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid choice: 'sm4-cbc'" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_bulk_loaders_refuse_bad_rows_and_write_nothing(platform: Platform) -> None:
    """The owners' bulk loaders the bench uses validate like single registration/issuance."""
    from datetime import date

    from govtrust.errors import InvalidArgument, NotFound, PermissionDenied
    from idp.registry import IdentityRegistry
    from license.loader import BulkLicence, load_licences
    from license.vault import LicenceVault

    registry = IdentityRegistry.open(platform.db, platform.master_key)
    admin = Principal(kind="operator", subject="t", roles=frozenset({"admin"}))
    verifier = Principal(kind="operator", subject="t", roles=frozenset({"verifier"}))
    good = citizen(1)
    bad = (good[0], good[1][:-1] + ("0" if good[1][-1] != "0" else "1"), "")
    with unchanged(platform.db, platform.keystore), pytest.raises(InvalidArgument) as e:
        registry.bulk_register_citizens(admin, [citizen(0), bad])
    assert e.value.violations[0].field == "people[1].id_number"
    with unchanged(platform.db, platform.keystore), pytest.raises(PermissionDenied):
        registry.bulk_register_citizens(verifier, [good])
    item = BulkLicence(
        type_code="1" * 21,
        issuer_code="11430100MB12345675",
        serial="B1",
        licence_number="n",
        holder_identity_id="cit_x",
        holder_code_type="111",
        signed_data="s",
        qr_payload="q",
        valid_from=date(2026, 1, 1),
        signing_key_id="k",
    )
    with (
        unchanged(platform.db, platform.keystore),
        pytest.raises(NotFound, match="is not in the catalogue"),
    ):
        load_licences(platform.db, LicenceVault(platform.master_key), [item], actor="t:x")


def test_the_setting_reaches_every_writer(database_url: str, tmp_path: Path) -> None:
    """With at_rest_scheme = sm4-gcm, the registry behind the gRPC servicer writes personal data
    under SM4 and the licence service's vault seals under SM4; earlier AES rows still read."""
    from govtrust.api.identity import servicer
    from license.runtime import runtime_for
    from license.vault import SIGNED_DATA

    data = tmp_path / "data"
    with_aes = open_wired(Settings(data_dir=data, database_url=database_url))
    population = populate(with_aes, 3, 0, 16)
    with_aes.close()
    platform = open_wired(
        Settings(data_dir=data, database_url=database_url, at_rest_scheme="sm4-gcm")
    )
    try:
        assert census(platform, population, expect="aes-256-gcm").problems == []
        registry = servicer(platform).registry  # type: ignore[attr-defined]
        admin = Principal(kind="operator", subject="t", roles=frozenset({"admin"}))
        (new_id,) = registry.bulk_register_citizens(admin, [citizen(10)])
        with platform.db.read() as session:
            new = session.get(CitizenRow, new_id)
            assert new is not None and scheme_of(new.id_number_enc).value == "sm4-gcm"
        vault = runtime_for(platform).service.vault
        assert vault.scheme.value == "sm4-gcm"
        assert vault.scheme_of_text(vault.seal_text("x", SIGNED_DATA, "i"), SIGNED_DATA, "i")
    finally:
        platform.close()


def test_a_row_that_would_not_read_back_rolls_its_batch_back(platform: Platform) -> None:
    """Read-back verification: a re-encryption that would change a value is refused and its
    whole batch rolled back (here the cipher is made to encrypt something else)."""
    from govtrust.reencryption import VerificationFailed

    population = populate(platform, 12, 0, 16)
    codec = PiiCodec.from_master_key(platform.master_key, "sm4-gcm")
    spec = personal_data_tables(codec)[0]
    victim = sorted(population.citizens)[5]

    def corrupt(row: Mapping[str, Any]) -> Move:
        move = spec.move(row)
        if row["id"] != victim:
            return move
        wrong = codec.encrypt("110105194912310021", PURPOSE_ID_NUMBER)
        return Move({**move.values, "id_number_enc": wrong}, move.plain)

    broken = TableSpec(spec.table, spec.key, spec.columns, spec.pending, corrupt, spec.plain, "t")
    with (
        unchanged(platform.db, platform.keystore),
        pytest.raises(VerificationFailed, match=f"idp_citizens {victim}: .* rolled back"),
    ):
        reencrypt_table(platform.db, broken, scheme="sm4-gcm", actor="test:x", batch_size=50)


def test_progress_bar_lines_when_not_a_terminal() -> None:
    import io

    from govtrust.commands.reencrypt import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(400, out)
    for _ in range(8):
        bar.advance(50)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 8  # one line per whole percent reached, none redrawn with \r
    assert " 50% 200/400 rows" in lines[3]
    assert lines[-1].startswith("reencrypt [" + "#" * 30 + "] 100% 400/400 rows")
    bar.advance(0)  # the same percent again: no new line
    assert len(out.getvalue().splitlines()) == 8
