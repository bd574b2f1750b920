"""Soft-store specifics: wrapping at rest, tamper detection, caching, cross-instance destroy."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from govtrust.db import Database
from hsm import (
    KeyAlgorithm,
    KeyDestroyed,
    KeyUnwrapFailed,
    MasterKey,
    SignatureScheme,
    SoftKeyStore,
)
from hsm.models import HsmKey
from hsm.soft import WRAP_PURPOSE, _aad
from tests.hsm.test_keystore import MESSAGE, verify
from tests.unchanged import unchanged

P256 = SignatureScheme.ECDSA_SHA256


def _unwrap(master_key: MasterKey, row: HsmKey) -> bytes:
    """White-box: the PKCS#8 DER the row wraps (only a test may do this)."""
    assert row.wrap_nonce is not None and row.wrapped_key is not None
    aead = AESGCM(master_key.derive_key(WRAP_PURPOSE))
    return aead.decrypt(row.wrap_nonce, row.wrapped_key, _aad(row.key_id, row.algorithm))


def _database_bytes(database: Database) -> bytes:
    """Every byte the database holds for hsm_keys: the SQLite files, or every PostgreSQL cell."""
    if database.engine.dialect.name == "sqlite":
        path = Path(database.engine.url.database or "")
        with database.engine.connect() as connection:  # flush the WAL into the main file too
            connection.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return b"".join(p.read_bytes() for p in files if p.exists())
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT * FROM hsm_keys").all()
    blob = bytearray()
    for row in rows:
        for value in row:
            blob += value if isinstance(value, bytes | memoryview) else str(value).encode()
    return bytes(blob)


def test_database_holds_no_plaintext_private_key(
    soft_store: SoftKeyStore, database: Database, master_key: MasterKey
) -> None:
    algorithms = [alg for alg in KeyAlgorithm if alg is not KeyAlgorithm.SM2]  # test_sm2.py
    refs = [soft_store.generate(f"k{i}", alg) for i, alg in enumerate(algorithms)]
    stored = _database_bytes(database)
    with database.read() as session:
        rows = {row.key_id: row for row in session.scalars(select(HsmKey))}
    for ref in refs:
        row = rows[ref.key_id]
        assert row.wrap_scheme == "aes256gcm-v1" and len(row.wrap_nonce or b"") == 12
        pkcs8 = _unwrap(master_key, row)
        private = serialization.load_der_private_key(pkcs8, None)
        assert (
            private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == ref.public_key_der
        )
        assert pkcs8 not in stored
        if isinstance(private, ec.EllipticCurvePrivateKey):
            scalar = private.private_numbers().private_value
            assert scalar.to_bytes((scalar.bit_length() + 7) // 8, "big") not in stored
        assert ref.public_key_der in stored  # sanity: the search does see the row


def test_keys_survive_a_new_store_instance(database: Database, master_key: MasterKey) -> None:
    first = SoftKeyStore(database, master_key)
    ref = first.generate("persistent", KeyAlgorithm.EC_P256)
    first.close()
    second = SoftKeyStore(database, master_key)
    verify(ref, second.sign(ref.key_id, MESSAGE, P256), MESSAGE, P256)
    assert second.get(ref.key_id) == ref


def test_wrong_master_key_cannot_unwrap(database: Database, master_key: MasterKey) -> None:
    ref = SoftKeyStore(database, master_key).generate("k", KeyAlgorithm.EC_P256)
    other = SoftKeyStore(database, MasterKey.generate())
    with (
        unchanged(database, other),
        pytest.raises(KeyUnwrapFailed, match="master key is not the one it was wrapped with"),
    ):
        other.sign(ref, MESSAGE, P256)


def test_wrapped_key_is_bound_to_its_row(database: Database, master_key: MasterKey) -> None:
    store = SoftKeyStore(database, master_key)
    a = store.generate("a", KeyAlgorithm.EC_P256)
    b = store.generate("b", KeyAlgorithm.EC_P256)
    with database.transaction() as session:
        row_a = session.get(HsmKey, a.key_id)
        assert row_a is not None
        session.execute(
            update(HsmKey)
            .where(HsmKey.key_id == b.key_id)
            .values(wrapped_key=row_a.wrapped_key, wrap_nonce=row_a.wrap_nonce)
        )
    fresh = SoftKeyStore(database, master_key)  # no cache
    with unchanged(database, fresh), pytest.raises(KeyUnwrapFailed):
        fresh.sign(b, MESSAGE, P256)
    verify(a, fresh.sign(a, MESSAGE, P256), MESSAGE, P256)


def test_destroy_erases_wrapped_material(soft_store: SoftKeyStore, database: Database) -> None:
    ref = soft_store.generate("gone", KeyAlgorithm.RSA_2048)
    soft_store.destroy(ref)
    with database.read() as session:
        row = session.get(HsmKey, ref.key_id)
    assert row is not None
    assert row.wrapped_key is None and row.wrap_nonce is None and row.destroyed_at is not None
    assert row.public_key_der == ref.public_key_der


def test_destroy_by_another_instance_is_seen_after_revalidation(
    database: Database, master_key: MasterKey
) -> None:
    signer = SoftKeyStore(database, master_key, revalidate_seconds=0.0)
    other = SoftKeyStore(database, master_key)
    ref = signer.generate("shared", KeyAlgorithm.EC_P256)
    signer.sign(ref, MESSAGE, P256)
    other.destroy(ref)  # e.g. another worker process
    with unchanged(database, signer), pytest.raises(KeyDestroyed):
        signer.sign(ref, MESSAGE, P256)


def test_cache_is_bounded(database: Database, master_key: MasterKey) -> None:
    store = SoftKeyStore(database, master_key, cache_size=2)
    refs = [store.generate(f"k{i}", KeyAlgorithm.EC_P256) for i in range(4)]
    for _ in range(2):
        for ref in refs:
            verify(ref, store.sign(ref, MESSAGE, P256), MESSAGE, P256)
            assert len(store._cache) <= 2


def test_closed_store_refuses(database: Database, soft_store: SoftKeyStore) -> None:
    from hsm import KeyStoreUnavailable

    ref = soft_store.generate("k", KeyAlgorithm.EC_P256)
    soft_store.close()
    # a closed store cannot list its keys: its rows are the database's
    with unchanged(database), pytest.raises(KeyStoreUnavailable, match="closed"):
        soft_store.sign(ref, MESSAGE, P256)
