"""Open the configured key store: ``soft`` (embedded default) or ``pkcs11`` (HSM)."""

from __future__ import annotations

from govtrust.db import Database
from hsm.errors import KeyStoreMisconfigured, UnknownBackend
from hsm.keystore import KeyStore
from hsm.master import MasterKey

BACKENDS = ("soft", "pkcs11")


def open_keystore(
    backend: str,
    *,
    database: Database,
    master_key: MasterKey,
    pkcs11_module: str | None = None,
    pkcs11_token_label: str | None = None,
    pkcs11_pin: str | None = None,
    pkcs11_sm2_key_type: int | None = None,
    pkcs11_sm2_keygen_mechanism: int | None = None,
    pkcs11_sm2_mechanism: int | None = None,
) -> KeyStore:
    """The key store named by ``backend`` (``GOVTRUST_HSM``), ready to use; close it when done.

    ``soft`` keeps keys wrapped in ``database`` under ``master_key``. ``pkcs11`` needs the module
    path, token label and user PIN; a missing one is a :class:`KeyStoreMisconfigured` naming
    the setting, and login problems raise the errors of
    :mod:`hsm.errors` at once, so a misconfigured server fails at start rather than at first use.
    The ``pkcs11_sm2_*`` vendor constants enable SM2 on the token (:class:`hsm.pkcs11.Pkcs11Sm2`).
    """
    if backend == "soft":
        from hsm.soft import SoftKeyStore

        return SoftKeyStore(database, master_key)
    if backend == "pkcs11":
        missing = [
            name
            for name, value in (
                ("pkcs11_module", pkcs11_module),
                ("pkcs11_token_label", pkcs11_token_label),
                ("pkcs11_pin", pkcs11_pin),
            )
            if not value
        ]
        if missing:
            raise KeyStoreMisconfigured.field(
                missing[0], f"the pkcs11 key store needs {', '.join(missing)} to be set"
            )
        from hsm.pkcs11 import Pkcs11KeyStore, Pkcs11Sm2

        assert pkcs11_module and pkcs11_token_label and pkcs11_pin is not None
        sm2 = Pkcs11Sm2(pkcs11_sm2_key_type, pkcs11_sm2_keygen_mechanism, pkcs11_sm2_mechanism)
        return Pkcs11KeyStore(pkcs11_module, pkcs11_token_label, pkcs11_pin, sm2=sm2)
    raise UnknownBackend.field(
        "hsm", f"unknown key store backend {backend!r} (expected one of: {', '.join(BACKENDS)})"
    )
