"""Shared fixtures: a fresh, migrated database on SQLite and on PostgreSQL for every test that asks.

Each leg migrates a template once per session and clones it per test (a file copy for SQLite,
``CREATE DATABASE … TEMPLATE`` for PostgreSQL), so tests are isolated and fast. Under ``CI=true``
an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings

from govtrust.db import Database
from govtrust.migrate import upgrade_to_head

PG_ADMIN_URL = os.environ.get(
    "GOVTRUST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
SOFTHSM_CONF_ENV = "SOFTHSM2_CONF"
XDIST_WORKER_ENV = "PYTEST_XDIST_WORKER"
"""Set (to gw0, gw1, …) in the processes of a parallel run (``pytest -n``)."""

# Property tests: no per-example deadline (a loaded 2-core CI machine is slow, not wrong), and
# under CI the same examples every run, so a red run is reproducible.
hypothesis_settings.register_profile("govtrust", deadline=None, derandomize=IN_CI)
hypothesis_settings.load_profile("govtrust")


def require_tool(name: str) -> str:
    """Path of an external tool; a failure under CI, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"required tool {name!r} is not installed (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


DOCS_IMAGES_ENV = "DOCS_IMAGES"
"""Set to a folder (``make docs-images`` sets docs/) to refresh the pictures the docs show."""


@pytest.fixture
def docs_image(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """``save(name, png)``: a picture a doc shows, written under ``tmp_path`` (a test run never
    rewrites tracked files) and, only when ``$DOCS_IMAGES`` names a folder, there too."""

    def save(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        target = os.environ.get(DOCS_IMAGES_ENV)
        if target:
            Path(target, name).write_bytes(data)
        return path

    return save


@pytest.fixture(scope="session")
def softhsm_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one SoftHSM2 configuration of this test process (``softhsm2.conf`` and its token
    directory, made by the first token): ``SOFTHSM2_CONF`` names it while the session runs and
    every session token (tests/hsm's ``softhsm_token``, tests/ca's ``ca_softhsm_token``) is made
    in it. A store sees the tokens of the configuration set when it initialises the module; with
    one configuration per token, a token was missing whenever the other's fixture had run last
    (an order that differs under xdist)."""
    folder = tmp_path_factory.mktemp("softhsm")
    saved = os.environ.get(SOFTHSM_CONF_ENV)
    os.environ[SOFTHSM_CONF_ENV] = str(folder / "softhsm2.conf")
    yield folder
    if saved is None:
        os.environ.pop(SOFTHSM_CONF_ENV, None)
    else:
        os.environ[SOFTHSM_CONF_ENV] = saved


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sqlite-template")
    path = directory / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade_to_head(db.engine)
    db.dispose()
    return path


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        admin = _pg_admin()
    except Exception as exc:  # noqa: BLE001 - any connection failure means the leg cannot run
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"gt_tpl_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    db = Database(f"{base}/{name}")
    upgrade_to_head(db.engine)
    db.dispose()
    yield name
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh migrated database; every test using it runs on both backends."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "govtrust.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"gt_{uuid.uuid4().hex[:16]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A fresh, migrated ``Database`` on SQLite and on PostgreSQL."""
    db = Database(database_url)
    yield db
    db.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the SQLite leg of tests marked ``postgresql_only`` (never skip: under CI a skip
    would read as a missing tool), and on an xdist worker every test marked ``serial``: those
    never run beside another test (``make test`` runs them in a pass of their own)."""
    on_worker = XDIST_WORKER_ENV in os.environ
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("database_url") == "sqlite"
        serial = on_worker and item.get_closest_marker("serial") is not None
        postgresql_only = item.get_closest_marker("postgresql_only") is not None
        (drop if serial or (on_sqlite and postgresql_only) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
