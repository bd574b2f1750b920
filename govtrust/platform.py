"""The runtime handle every adapter receives: settings, database and key store, opened once,
and the container of the long-lived domain objects built over them (:class:`Components`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from govtrust.config import Settings, pkcs11_constant
from govtrust.db import Database
from govtrust.errors import FailedPrecondition
from govtrust.idempotency import RequestLedger
from govtrust.instance import check_bootstrap, require_instance
from govtrust.migrate import is_up_to_date, upgrade_to_head
from hsm import KeyStore, MasterKey, load_master_key, open_keystore
from hsm.atrest import AtRestCipher, AtRestScheme
from hsm.audit_key import install_audit_chain_key

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Component(Generic[T]):
    """The typed name of one long-lived object of a platform, declared by the package that owns
    it (``ca.authority.AUTHORITY``, ``seal.runtime.SEAL_RUNTIME``, ...)."""

    name: str

    def __repr__(self) -> str:
        return f"Component({self.name!r})"


class ComponentMissing(FailedPrecondition):
    """A component was asked for that nothing defines here (wiring that was left out)."""


class Components:
    """One of each long-lived domain object of a platform: the CA, the seal and licence
    runtimes, the verification context, the OIDC provider, and what the wiring chooses for
    them (the CA's subject directory).

    Each is built once, on first use, by its owner's builder (or by the definition the wiring
    gave with :meth:`define`), and lives as long as the platform: a closed platform's objects
    go with it, so no registry keyed by ``id(platform)`` can hand them to another. Builds may
    ask for other components (the licence runtime asks for the seal runtime, which asks for the
    CA): one re-entrant lock covers them, as they happen once, at start-up.
    """

    def __init__(self) -> None:
        self._built: dict[Component[Any], Any] = {}
        self._defined: dict[Component[Any], Callable[[], Any]] = {}
        self._lock = threading.RLock()

    def define(self, component: Component[T], build: Callable[[], T]) -> None:
        """How ``component`` is built on this platform (the wiring's choice); replaces the
        object already built, if any."""
        with self._lock:
            self._defined[component] = build
            self._built.pop(component, None)

    def put(self, component: Component[T], value: T) -> None:
        """Use ``value`` as ``component`` from now on (tests with a custom clock or validator)."""
        with self._lock:
            self._built[component] = value

    def get(self, component: Component[T], build: Callable[[], T] | None = None) -> T:
        """The platform's ``component``: built once by its definition, else by ``build`` (the
        owner's default); :class:`ComponentMissing` when there is neither."""
        found = self._built.get(component)
        if found is not None:
            return found  # type: ignore[no-any-return]
        with self._lock:
            found = self._built.get(component)
            if found is None:
                maker = self._defined.get(component, build)
                if maker is None:
                    raise ComponentMissing(
                        f"nothing provides {component.name} on this platform (the wiring in "
                        "govtrust/server/wiring.py and govtrust/commands defines it)"
                    )
                found = self._built[component] = maker()
            return found  # type: ignore[no-any-return]

    def built(self, component: Component[T]) -> T | None:
        """``component`` if it has been built, without building it."""
        return self._built.get(component)


@dataclass
class Platform:
    """Settings, database and key store of one running govtrust process, and its components."""

    settings: Settings
    db: Database
    master_key: MasterKey
    keystore: KeyStore
    components: Components = field(default_factory=Components, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the platform closes (domain runtimes built over it release
        what they hold outside it), last registered first."""
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
    db = settings.open_database()
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


REQUEST_LEDGER: Component[RequestLedger] = Component("govtrust.request_ledger")
# Master-key purposes of the stored answers of idempotent calls (they carry personal data).
REQUEST_LEDGER_PURPOSES = {
    AtRestScheme.AES_256_GCM: "govtrust/request-ledger/v1",
    AtRestScheme.SM4_GCM: "govtrust/request-ledger-sm4/v1",
}


def request_ledger(platform: Platform) -> RequestLedger:
    """The platform's ledger of idempotency keys (:mod:`govtrust.idempotency`), its answers
    encrypted under the configured at-rest scheme."""
    return platform.components.get(
        REQUEST_LEDGER,
        lambda: RequestLedger(
            platform.db,
            AtRestCipher(
                platform.master_key, REQUEST_LEDGER_PURPOSES, platform.settings.at_rest_scheme
            ),
        ),
    )
