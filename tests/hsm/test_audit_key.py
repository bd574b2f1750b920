"""The audit chain key (a master-key subkey, only its MAC leaves hsm/) and the key-store key that
signs audit checkpoints, on the soft store and on SoftHSM2."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from govtrust import audit
from govtrust.audit import Finding, verify_chain
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.platform import Platform
from govtrust.server.wiring import checkpoint_audit, define_components
from hsm import KeyStore, MasterKey
from hsm.audit_key import (
    CHECKPOINT_KEY_LABEL,
    AuditChainKey,
    checkpoint_key,
    install_audit_chain_key,
)


def test_chain_key_is_a_versioned_master_key_subkey_that_never_leaves() -> None:
    master = MasterKey.generate()
    key = AuditChainKey(master)
    expected = hmac.new(master.derive_key("audit/chain-mac/v1"), b"data", hashlib.sha256)
    assert key.scheme == "hmac-sha256/v1"
    assert key.mac(b"data") == expected.digest()
    assert AuditChainKey(MasterKey.generate()).mac(b"data") != key.mac(b"data")
    assert AuditChainKey(master, version=2).mac(b"data") != key.mac(b"data")
    with pytest.raises(TypeError):
        vars(key)  # slots only: no attribute holds the key bytes for a caller to read
    assert "derive" not in repr(key) and key.scheme in repr(key)


def test_checkpoint_key_is_made_once_and_reused(keystore: KeyStore) -> None:
    first = checkpoint_key(keystore)
    assert first.label == CHECKPOINT_KEY_LABEL
    assert checkpoint_key(keystore).key_id == first.key_id


def test_checkpoints_are_signed_through_the_key_store(
    keystore: KeyStore, database: Database, tmp_path: Path
) -> None:
    master = MasterKey.generate()
    install_audit_chain_key(database, master)
    platform = Platform(
        settings=Settings(data_dir=tmp_path, database_url=database.url),
        db=database,
        master_key=master,
        keystore=keystore,
    )
    define_components(platform)
    with database.transaction() as session:
        audit.append(session, actor="local:test", action="test.act", target="thing/1")
    checkpoint = checkpoint_audit(platform)
    assert checkpoint is not None
    assert checkpoint.key_id == checkpoint_key(keystore).key_id
    with database.read() as session:
        report = verify_chain(session, AuditChainKey(master), public_keys=keystore.public_key)
        unknown = verify_chain(session, AuditChainKey(master), public_keys=None)
    assert report.ok and report.checkpoint is not None
    assert report.checkpoint.id == checkpoint.id
    assert unknown.finding is Finding.FORGED_CHECKPOINT
