"""The master key: file creation and permissions, environment override, HKDF subkeys."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from hsm import MASTER_KEY_ENV, MasterKey, MasterKeyError, load_master_key
from tests.unchanged import unchanged


def test_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a permissive umask must not loosen the file
    try:
        first = load_master_key(tmp_path / "data", environ={})
    finally:
        os.umask(old_umask)
    path = tmp_path / "data" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32
    second = load_master_key(tmp_path / "data", environ={})
    assert first.derive_key("test/a") == second.derive_key("test/a")
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp files left


def test_loose_permissions_are_refused(tmp_path: Path) -> None:
    load_master_key(tmp_path, environ={})
    path = tmp_path / "master.key"
    path.chmod(0o644)
    with (
        unchanged(None, None, tmp_path),
        pytest.raises(MasterKeyError, match=r"accessible by group or others \(mode 0644\)") as info,
    ):
        load_master_key(tmp_path, environ={})
    assert f"chmod 600 {path}" in info.value.message


def test_concurrent_first_start_agrees_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(load_master_key(tmp_path, environ={}).derive_key("test/race"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    raw = os.urandom(32)
    key = load_master_key(tmp_path, environ={MASTER_KEY_ENV: base64.b64encode(raw).decode()})
    assert key.source == MASTER_KEY_ENV
    assert key.derive_key("test/x") == MasterKey(raw).derive_key("test/x")
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!!", "is not valid base64"),
        (base64.b64encode(b"short").decode(), "decodes to 5 bytes, expected 32"),
        (base64.b64encode(bytes(range(48))).decode(), "decodes to 48 bytes, expected 32"),
    ],
)
def test_invalid_environment_value_is_a_clear_error(
    tmp_path: Path, value: str, message: str
) -> None:
    with unchanged(None, None, tmp_path), pytest.raises(MasterKeyError, match=message) as info:
        load_master_key(tmp_path, environ={MASTER_KEY_ENV: value})
    assert MASTER_KEY_ENV in info.value.message
    assert value not in info.value.message  # never echo a (possibly real) secret


def test_missing_key_without_create(tmp_path: Path) -> None:
    with unchanged(None, None, tmp_path), pytest.raises(MasterKeyError, match="does not exist"):
        load_master_key(tmp_path, environ={}, create=False)
    with pytest.raises(MasterKeyError, match="set GOVTRUST_MASTER_KEY"):
        load_master_key(None, environ={})


def test_derive_key_is_purpose_bound() -> None:
    master = MasterKey.generate()
    enc = master.derive_key("idp/id-number-encryption/v1")
    index = master.derive_key("idp/id-number-blind-index/v1")
    assert len(enc) == 32 and len(index) == 32 and enc != index
    assert master.derive_key("idp/id-number-encryption/v1") == enc
    assert len(master.derive_key("x/y", length=64)) == 64
    assert MasterKey.generate().derive_key("idp/id-number-encryption/v1") != enc
    for bad in ("", "naïve", "line\nbreak"):
        with pytest.raises(ValueError):
            master.derive_key(bad)
    assert repr(master) == "MasterKey(source='generated')"
    with pytest.raises(MasterKeyError, match="exactly 32 bytes"):
        MasterKey(b"\x00" * 31)
