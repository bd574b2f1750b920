"""Key custody: the only place private keys exist.

Everything else holds a :class:`KeyRef` and asks a :class:`KeyStore` to sign. Backends: the soft
store (keys wrapped under the master key, in the database) and the PKCS#11 store (an HSM). The
signer adapters for asn1crypto structures and pyHanko live in :mod:`hsm.signers`; they are
re-exported here lazily because importing pyHanko takes most of a second. The audit chain's MAC
key and the key that signs its checkpoints are in :mod:`hsm.audit_key`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hsm.errors import (
    EscrowedKeyCannotSign,
    EscrowNotSupported,
    InvalidLabel,
    InvalidSm2PublicKey,
    InvalidSm2Signature,
    InvalidSm2SignerId,
    KeyDestroyed,
    KeyNotFound,
    KeyStoreError,
    KeyStoreLoginFailed,
    KeyStoreMisconfigured,
    KeyStoreUnavailable,
    KeyUnwrapFailed,
    MasterKeyError,
    NotEscrowed,
    Sm2NotAvailable,
    TokenNotFound,
    UnknownBackend,
    UnsupportedAlgorithm,
    UnsupportedScheme,
)
from hsm.factory import open_keystore
from hsm.keystore import (
    ALGORITHMS,
    SCHEMES,
    AlgorithmSpec,
    KeyAlgorithm,
    KeyFamily,
    KeyRef,
    KeyRefOrId,
    KeyStore,
    SchemeSpec,
    SignatureScheme,
    check_scheme,
    default_scheme,
    parse_algorithm,
    parse_scheme,
    schemes_for,
)
from hsm.master import MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey, load_master_key

if TYPE_CHECKING:
    from hsm.pkcs11 import Pkcs11KeyStore
    from hsm.signers import (
        KeyStoreSigner,
        TbsSigner,
        sign_tbs,
        signed_digest_algorithm,
        tbs_signer,
    )
    from hsm.soft import SoftKeyStore

_SIGNERS = frozenset(
    {"KeyStoreSigner", "TbsSigner", "sign_tbs", "signed_digest_algorithm", "tbs_signer"}
)


def __getattr__(name: str) -> Any:
    """The backends and the signer adapters, imported on first use (explicitly, by name)."""
    if name in _SIGNERS:
        from hsm import signers

        return getattr(signers, name)
    if name == "SoftKeyStore":
        from hsm.soft import SoftKeyStore

        return SoftKeyStore
    if name == "Pkcs11KeyStore":
        from hsm.pkcs11 import Pkcs11KeyStore

        return Pkcs11KeyStore
    raise AttributeError(f"module 'hsm' has no attribute {name!r}")


__all__ = [
    "ALGORITHMS",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE",
    "SCHEMES",
    "AlgorithmSpec",
    "EscrowNotSupported",
    "EscrowedKeyCannotSign",
    "InvalidLabel",
    "InvalidSm2PublicKey",
    "InvalidSm2Signature",
    "InvalidSm2SignerId",
    "KeyAlgorithm",
    "KeyDestroyed",
    "KeyFamily",
    "KeyNotFound",
    "KeyRef",
    "KeyRefOrId",
    "KeyStore",
    "KeyStoreError",
    "KeyStoreLoginFailed",
    "KeyStoreMisconfigured",
    "KeyStoreSigner",
    "KeyStoreUnavailable",
    "KeyUnwrapFailed",
    "MasterKey",
    "MasterKeyError",
    "NotEscrowed",
    "Pkcs11KeyStore",
    "SchemeSpec",
    "SignatureScheme",
    "Sm2NotAvailable",
    "SoftKeyStore",
    "TbsSigner",
    "TokenNotFound",
    "UnknownBackend",
    "UnsupportedAlgorithm",
    "UnsupportedScheme",
    "check_scheme",
    "default_scheme",
    "load_master_key",
    "open_keystore",
    "parse_algorithm",
    "parse_scheme",
    "schemes_for",
    "sign_tbs",
    "signed_digest_algorithm",
    "tbs_signer",
]
