"""The runtime handle every adapter receives: settings, database and key store, opened once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from govtrust.config import Settings, pkcs11_constant
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from govtrust.instance import check_bootstrap, require_instance
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
        pkcs11_sm2_key_type=pkcs11_constant(settings.pkcs11_sm2_key_type),
        pkcs11_sm2_keygen_mechanism=pkcs11_constant(settings.pkcs11_sm2_keygen_mechanism),
        pkcs11_sm2_mechanism=pkcs11_constant(settings.pkcs11_sm2_mechanism),
    )


def open_platform(
    settings: Settings, *, migrate: bool | None = None, create: bool = True
) -> Platform:
    """Open the key store, then the database (migrating it, or refusing when it is behind).

    ``create=False`` (every command but ``init`` and ``serve``): refuse with
    :class:`~govtrust.instance.NoInstance` when there is no initialised instance, creating
    nothing. The key store opens before any migration, so a bad PKCS#11 module or PIN stops the
    start with the schema untouched; a master key or key store other than the ones the instance
    was bootstrapped with is refused (:func:`~govtrust.instance.check_bootstrap`). The audit
    chain key is installed last, so that every record this process writes is keyed.
    """
    if create:
        prepare_data_dir(settings)
    else:
        require_instance(settings)
    master_key = load_master_key(settings.data_dir, create=create)
    db = Database(settings.effective_database_url)
    try:
        keystore = configured_keystore(settings, db, master_key)
    except BaseException:
        db.dispose()
        raise
    try:
        if migrate if migrate is not None else settings.migrate:
            upgrade_to_head(db.engine)
        elif not is_up_to_date(db.engine):
            raise FailedPrecondition("the database schema is behind; run without --no-migrate")
        check_bootstrap(
            db,
            master_key_check=master_key.check_value(),
            master_key_source=master_key.source,
            keystore=settings.hsm,
            token_label=settings.pkcs11_token_label,
        )
        install_audit_chain_key(db, master_key)
    except BaseException:
        keystore.close()
        db.dispose()
        raise
    return Platform(settings=settings, db=db, master_key=master_key, keystore=keystore)
