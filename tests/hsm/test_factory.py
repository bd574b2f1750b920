"""``open_keystore``: the configured backend, or a clear configuration error."""

from __future__ import annotations

import pytest

from govtrust.db import Database
from hsm import (
    KeyAlgorithm,
    KeyStoreMisconfigured,
    MasterKey,
    Pkcs11KeyStore,
    SoftKeyStore,
    UnknownBackend,
    open_keystore,
)
from tests.hsm.conftest import SoftHsmToken
from tests.unchanged import unchanged


def test_soft_backend(database: Database) -> None:
    store = open_keystore("soft", database=database, master_key=MasterKey.generate())
    try:
        assert isinstance(store, SoftKeyStore)
        assert store.generate("k", KeyAlgorithm.EC_P256).key_id
    finally:
        store.close()


def test_pkcs11_backend(database: Database, softhsm_token: SoftHsmToken) -> None:
    store = open_keystore(
        "pkcs11",
        database=database,
        master_key=MasterKey.generate(),
        pkcs11_module=softhsm_token.module,
        pkcs11_token_label=softhsm_token.label,
        pkcs11_pin=softhsm_token.pin,
    )
    try:
        assert isinstance(store, Pkcs11KeyStore)
    finally:
        store.close()


def test_configuration_errors(database: Database) -> None:
    master = MasterKey.generate()
    with (
        unchanged(database),
        pytest.raises(UnknownBackend, match="unknown key store backend 'vault'"),
    ):
        open_keystore("vault", database=database, master_key=master)
    with (
        unchanged(database),
        pytest.raises(KeyStoreMisconfigured, match="needs pkcs11_module, pkcs11_pin") as info,
    ):
        open_keystore("pkcs11", database=database, master_key=master, pkcs11_token_label="t")
    assert info.value.violations[0].field == "pkcs11_module"
