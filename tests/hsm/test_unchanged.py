"""The shared "nothing changed" helper (tests/unchanged.py) sees every kind of change a refused
call could leave behind: a row added, altered or removed in any table, a key generated or
destroyed in the soft store and in a PKCS#11 token (SoftHSM2), a file written, a table created;
and it lets through only the tables a test names in ``allow``."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from govtrust.db import Database
from hsm.keystore import KeyAlgorithm, KeyStore
from tests.unchanged import unchanged


def test_a_block_that_changes_nothing_passes(
    database: Database, keystore: KeyStore, tmp_path: Path
) -> None:
    keystore.generate("kept", KeyAlgorithm.EC_P256)
    (tmp_path / "a.txt").write_text("a")
    with unchanged(database, keystore, tmp_path) as before:
        keystore.list()
    assert "hsm_keys" in before.tables  # every table is in the snapshot, not a chosen few


def test_a_generated_key_is_named(database: Database, keystore: KeyStore) -> None:
    with (
        pytest.raises(AssertionError, match="key store changed: added") as caught,
        unchanged(database, keystore),
    ):
        ref = keystore.generate("new", KeyAlgorithm.EC_P256)
    assert ref.key_id in str(caught.value)


def test_a_destroyed_key_is_named(database: Database, keystore: KeyStore) -> None:
    ref = keystore.generate("doomed", KeyAlgorithm.EC_P256)
    with (
        pytest.raises(AssertionError, match=r"key store changed: added \[\], removed") as caught,
        unchanged(database, keystore),
    ):
        keystore.destroy(ref)
    assert ref.key_id in str(caught.value)


def test_an_added_and_an_altered_row_are_named_with_their_table(
    database: Database, soft_store: KeyStore
) -> None:
    ref = soft_store.generate("old", KeyAlgorithm.EC_P256)
    with (
        pytest.raises(AssertionError, match="table 'hsm_keys' changed") as caught,
        unchanged(database),
    ):  # the database alone, no key stor:
        soft_store.generate("new", KeyAlgorithm.EC_P256)
    assert "1 added, 0 removed, 0 altered" in str(caught.value)
    with (
        pytest.raises(AssertionError, match="0 added, 0 removed, 1 altered") as caught,
        unchanged(database),
        database.engine.begin() as connection,
    ):
        connection.execute(
            text("UPDATE hsm_keys SET label = 'renamed' WHERE key_id = :k"), {"k": ref.key_id}
        )
    assert "'renamed'" in str(caught.value) and ref.key_id in str(caught.value)


def test_a_removed_row_is_named(database: Database, soft_store: KeyStore) -> None:
    ref = soft_store.generate("gone", KeyAlgorithm.EC_P256)
    with (
        pytest.raises(AssertionError, match="0 added, 1 removed") as caught,
        unchanged(database),
        database.engine.begin() as connection,
    ):
        connection.execute(text("DELETE FROM hsm_keys WHERE key_id = :k"), {"k": ref.key_id})
    assert ref.key_id in str(caught.value)


def test_a_created_table_is_named(database: Database) -> None:
    with (
        pytest.raises(AssertionError, match=r"tables appeared or vanished: \['stray'\]"),
        unchanged(database),
        database.engine.begin() as connection,
    ):
        connection.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))


def test_files_written_altered_or_created_are_named(database: Database, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "kept.txt").write_text("kept")
    single = tmp_path / "single.bin"
    with (
        pytest.raises(AssertionError, match=r"files changed: added \[.*new.txt'\]"),
        unchanged(database, None, folder),
    ):
        (folder / "new.txt").write_text("new")
    with (
        pytest.raises(AssertionError, match=r"altered \[.*kept.txt'\]"),
        unchanged(database, None, folder),
    ):
        (folder / "kept.txt").write_text("changed")
    with (
        pytest.raises(AssertionError, match=r"altered \[.*single.bin'\]"),
        unchanged(database, None, single),
    ):
        single.write_bytes(b"x")


def test_allow_lets_through_only_the_named_tables(database: Database, soft_store: KeyStore) -> None:
    with unchanged(database, allow=["hsm_keys"]):
        soft_store.generate("allowed", KeyAlgorithm.EC_P256)
    with (
        pytest.raises(AssertionError, match=r"does not have: \['no_such_table'\]"),
        unchanged(database, allow=["no_such_table"]),
    ):
        pass


def test_allow_may_name_a_file_and_no_database_checks_keys_and_files(
    keystore: KeyStore, tmp_path: Path
) -> None:
    log = tmp_path / "log.txt"
    kept = tmp_path / "kept.txt"
    kept.write_text("kept")
    with unchanged(None, keystore, tmp_path, allow=[log]):
        log.write_text("a refusal logged")
    with (
        pytest.raises(AssertionError, match=r"altered \[.*kept.txt'\]"),
        unchanged(None, keystore, tmp_path, allow=[log]),
    ):
        kept.write_text("changed")
    with (
        pytest.raises(AssertionError, match=r"key store changed: added"),
        unchanged(None, keystore),
    ):
        keystore.generate("unchecked", KeyAlgorithm.EC_P256)
    with (
        pytest.raises(AssertionError, match=r"does not have: \['elsewhere.txt'\]"),
        unchanged(None, None, tmp_path, allow=["elsewhere.txt"]),
    ):
        pass


def test_an_unexpected_exception_is_not_hidden(database: Database) -> None:
    with pytest.raises(ZeroDivisionError), unchanged(database):
        1 / 0  # noqa: B018 - the error under test
