"""Key-store fixtures: a SoftHSM2 token made by the tests, and a ``keystore`` on both backends.

``make_softhsm_token`` and the ``softhsm_token`` fixture only depend on ``tests.conftest`` and the
standard library, so they can move to the top-level conftest unchanged when other packages'
tests need a token. Every test asking for ``keystore`` runs on the soft store (SQLite and
PostgreSQL legs) and on the PKCS#11 store; the PKCS#11 store does not touch the database, so its
redundant PostgreSQL combination is deselected rather than run twice.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from govtrust.db import Database
from hsm import KeyStore, MasterKey, Pkcs11KeyStore, SoftKeyStore
from tests.conftest import IN_CI, require_tool

SOFTHSM_MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
SOFTHSM_PIN = "5678"
SOFTHSM_SO_PIN = "1234"


class SoftHsmToken(NamedTuple):
    """An initialised SoftHSM2 token: module path, token label, user PIN, and the environment
    (``SOFTHSM2_CONF``) a process needs to see it."""

    module: str
    label: str
    pin: str
    env: dict[str, str]


def softhsm_module() -> str:
    """Path of libsofthsm2.so; a failure under CI, a skip elsewhere."""
    override = os.environ.get("GOVTRUST_TEST_SOFTHSM_MODULE")
    for candidate in (override, *SOFTHSM_MODULE_PATHS):
        if candidate and os.path.isfile(candidate):
            return candidate
    message = "SoftHSM2 (libsofthsm2.so) is not installed (make test installs softhsm2)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def make_softhsm_token(
    tmp_path: Path, label: str = "gt-test", pin: str = SOFTHSM_PIN, so_pin: str = SOFTHSM_SO_PIN
) -> SoftHsmToken:
    """Initialise a SoftHSM2 token labelled ``label`` in a token directory under ``tmp_path``.

    Calling it again with the same ``tmp_path`` adds another token beside the first (same
    ``SOFTHSM2_CONF``). A process loading the module sees the tokens that exist when it
    initialises the module.
    """
    util = require_tool("softhsm2-util")
    module = softhsm_module()
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "softhsm2.conf"
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return SoftHsmToken(module, label, pin, env)


def token_files(token: SoftHsmToken) -> Path:
    """The folder holding the token's (and the tokens beside it) object files, for ``unchanged``."""
    return Path(token.env["SOFTHSM2_CONF"]).parent / "softhsm-tokens"


@pytest.fixture(scope="session")
def softhsm_token(softhsm_folder: Path) -> SoftHsmToken:
    """One SoftHSM2 token for the session, in the process's one configuration (``SOFTHSM2_CONF``
    set: tests/conftest.py ``softhsm_folder``). Its label is unique: a module importing the
    fixture has a session instance of its own, whose token lands beside this one."""
    return make_softhsm_token(softhsm_folder, label=f"gt-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fresh_softhsm_token(softhsm_token: SoftHsmToken) -> SoftHsmToken:
    """A new, empty token beside the session token (visible to stores opened afterwards)."""
    directory = Path(softhsm_token.env["SOFTHSM2_CONF"]).parent
    return make_softhsm_token(directory, label=f"gt-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def soft_store(database: Database, master_key: MasterKey) -> Iterator[SoftKeyStore]:
    store = SoftKeyStore(database, master_key)
    yield store
    store.close()


@pytest.fixture
def pkcs11_store(softhsm_token: SoftHsmToken) -> Iterator[Pkcs11KeyStore]:
    store = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    yield store
    store.close()


@pytest.fixture(params=["soft", "pkcs11"])
def keystore(request: pytest.FixtureRequest, database: Database) -> KeyStore:
    """The same tests on both backends: soft (on each database leg) and PKCS#11 (SoftHSM2)."""
    if request.param == "soft":
        store: KeyStore = request.getfixturevalue("soft_store")
    else:
        store = request.getfixturevalue("pkcs11_store")
    return store


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop PKCS#11 × PostgreSQL: the PKCS#11 store never uses the database."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if params.get("keystore") == "pkcs11" and params.get("database_url") == "postgresql":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
