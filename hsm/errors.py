"""Errors raised by the key store, each a subclass of one platform domain error.

Every error also derives from :class:`KeyStoreError`, so callers can catch "anything the key
store refused" in one place while the platform maps each one to its own status code
(``KeyNotFound`` → NOT_FOUND, ``KeyStoreUnavailable`` → UNAVAILABLE, …). Messages name the key id,
token or file concerned and never contain key material or PINs.
"""

from __future__ import annotations

from govtrust.errors import (
    FailedPrecondition,
    GovtrustError,
    InvalidArgument,
    NotFound,
    Unavailable,
)


class KeyStoreError(GovtrustError):
    """Base of every key-store error (mixed into a platform domain error)."""


# --- keys ---------------------------------------------------------------------------------------


class KeyNotFound(KeyStoreError, NotFound):
    """No key with this id exists in the key store."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id!r} does not exist in the key store")
        self.key_id = key_id


class KeyDestroyed(KeyStoreError, FailedPrecondition):
    """The key existed but its private part has been destroyed; it can no longer sign."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id!r} has been destroyed and can no longer be used")
        self.key_id = key_id


class KeyUnwrapFailed(KeyStoreError, FailedPrecondition):
    """A wrapped key failed authentication: wrong master key, or the stored record was altered."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"key {key_id!r} cannot be unwrapped: the master key is not the one it was wrapped "
            "with, or the stored key record has been altered"
        )
        self.key_id = key_id


# --- algorithms and schemes ----------------------------------------------------------------------


class UnsupportedAlgorithm(KeyStoreError, InvalidArgument):
    """The key algorithm is not one the key store supports (or the token lacks it)."""


class UnsupportedScheme(KeyStoreError, InvalidArgument):
    """The signature scheme is unknown, or does not fit the key's algorithm."""


class InvalidLabel(KeyStoreError, InvalidArgument):
    """A key label is empty, too long or not printable."""


# --- SM2 (GB/T 32918) ----------------------------------------------------------------------------


class InvalidSm2PublicKey(KeyStoreError, InvalidArgument):
    """Not an SM2 SubjectPublicKeyInfo: bad DER, another curve (e.g. P-256), a truncated or
    off-curve point."""


class InvalidSm2Signature(KeyStoreError, InvalidArgument):
    """An SM2 signature that is not DER ``SEQUENCE{r, s}`` in range, or that does not verify."""


class InvalidSm2SignerId(KeyStoreError, InvalidArgument):
    """An SM2 signer ID that is empty or too long, given where none applies, or not the one the
    signature was made with."""


class Sm2NotAvailable(KeyStoreError, FailedPrecondition):
    """The key store cannot do SM2: the PKCS#11 module's vendor SM2 mechanisms are not configured
    or not offered by the token (the message names what is missing)."""


# --- escrowed encryption keys (key management centre) ------------------------------------------


class EscrowNotSupported(KeyStoreError, FailedPrecondition):
    """The key store cannot hold escrowed encryption keys (the PKCS#11 store: a token's
    non-extractable keys cannot be enveloped to a holder; use the soft store for the KMC)."""


class NotEscrowed(KeyStoreError, FailedPrecondition):
    """The key is a signing key of the store, not an escrowed encryption key: it is never
    exported, enveloped or not."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id!r} is not an escrowed encryption key; it is never exported")
        self.key_id = key_id


class EscrowedKeyCannotSign(KeyStoreError, FailedPrecondition):
    """An escrowed encryption key was asked to sign: it only leaves the store enveloped."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"key {key_id!r} is an escrowed encryption key: it does not sign, it is only "
            "exported enveloped to a named SM2 public key"
        )
        self.key_id = key_id


# --- backends -----------------------------------------------------------------------------------


class KeyStoreUnavailable(KeyStoreError, Unavailable):
    """The key store cannot be used right now (PKCS#11 module missing, device error, …)."""


class TokenNotFound(KeyStoreUnavailable):
    """No PKCS#11 token with the configured label is present."""


class KeyStoreLoginFailed(KeyStoreUnavailable):
    """Logging in to the PKCS#11 token failed (wrong or locked PIN).

    It is an ``Unavailable`` rather than ``Unauthenticated``: the PIN is server configuration,
    not a caller credential, so callers must not be told to re-authenticate.
    """


class KeyStoreMisconfigured(KeyStoreError, InvalidArgument):
    """The key-store configuration is incomplete (e.g. PKCS#11 module path or PIN unset)."""


class UnknownBackend(KeyStoreMisconfigured):
    """The configured key-store backend is neither ``soft`` nor ``pkcs11``."""


# --- master key ---------------------------------------------------------------------------------


class MasterKeyError(KeyStoreError, FailedPrecondition):
    """The master key cannot be loaded: invalid value, wrong length or unsafe file permissions."""
