"""The runtime handle every adapter receives: settings, database and key store, opened once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from govtrust.config import Settings
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from govtrust.migrate import is_up_to_date, upgrade_to_head
from hsm import KeyStore, MasterKey, load_master_key, open_keystore
from hsm.audit_key import install_audit_chain_key


@dataclass
class Platform:
    """Settings, database and key store of one running govtrust process."""

    settings: Settings
    db: Database
    master_key: MasterKey
    keystore: KeyStore
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the platform closes (domain runtimes built over it drop their
        process-wide hooks, e.g. identity status listeners), last registered first."""
        self._closers.append(callback)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        self.keystore.close()
        self.db.dispose()


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory (mode 0700) if it does not exist."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def configured_keystore(settings: Settings, db: Database, master_key: MasterKey) -> KeyStore:
    """The key store ``settings`` name (soft over ``db``, or the PKCS#11 token)."""
    return open_keystore(
        settings.hsm,
        database=db,
        master_key=master_key,
        pkcs11_module=settings.pkcs11_module,
        pkcs11_token_label=settings.pkcs11_token_label,
        pkcs11_pin=settings.pkcs11_pin,
    )


def open_platform(settings: Settings, *, migrate: bool | None = None) -> Platform:
    """Open the database (migrating it, or refusing when it is behind) and the key store."""
    prepare_data_dir(settings)
    db = Database(settings.effective_database_url)
    if migrate if migrate is not None else settings.migrate:
        upgrade_to_head(db.engine)
    elif not is_up_to_date(db.engine):
        db.dispose()
        raise FailedPrecondition("the database schema is behind; run without --no-migrate")
    master_key = load_master_key(settings.data_dir)
    install_audit_chain_key(db, master_key)
    keystore = configured_keystore(settings, db, master_key)
    return Platform(settings=settings, db=db, master_key=master_key, keystore=keystore)
