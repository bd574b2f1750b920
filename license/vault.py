"""Licence secrets at rest: signed data, QR payload and document, AES-256-GCM per licence.

The signed data, the QR payload and the sealed PDF all carry the holder's code (a resident ID
number for citizens, code type 111), so none of them reaches the database in clear. Each is
stored as ``version (1 byte) || nonce (12) || AES-GCM(ciphertext || tag)`` under a key derived
from the platform master key (``MasterKey.derive_key``, purpose ``license/at-rest/v1``), with
the column and the licence identifier as associated data: a ciphertext copied into another
row or column does not decrypt. Text columns hold the blob in unpadded base64url behind the
prefix ``gt1:`` (so the existing text columns keep their type).
"""

from __future__ import annotations

import base64
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from govtrust.errors import FailedPrecondition

ENCRYPTION_PURPOSE = "license/at-rest/v1"
TEXT_PREFIX = "gt1:"
SIGNED_DATA = "signed_data"
QR_PAYLOAD = "qr_payload"
DOCUMENT = "document_pdf"
OFD_DOCUMENT = "document_ofd"
_VERSION = 1
_NONCE_BYTES = 12


class KeyDeriver(Protocol):
    """What this module needs from ``hsm.master.MasterKey``."""

    def derive_key(self, purpose: str, length: int = 32) -> bytes: ...


class LicenceVault:
    """Encrypts and decrypts one licence's stored secrets, bound to its identifier."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: KeyDeriver) -> None:
        self._aead = AESGCM(master_key.derive_key(ENCRYPTION_PURPOSE))

    def __repr__(self) -> str:
        return "LicenceVault(<key hidden>)"

    def seal(self, value: bytes, column: str, identifier: str) -> bytes:
        """Encrypt ``value`` for ``column`` of licence ``identifier``."""
        nonce = os.urandom(_NONCE_BYTES)
        return (
            bytes([_VERSION]) + nonce + self._aead.encrypt(nonce, value, _aad(column, identifier))
        )

    def open(self, blob: bytes, column: str, identifier: str) -> bytes:
        """Decrypt a value written by :meth:`seal` for the same column and licence."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != _VERSION:
            raise FailedPrecondition(f"the stored {column} of {identifier} is not encrypted data")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, _aad(column, identifier))
        except InvalidTag:
            raise FailedPrecondition(
                f"the stored {column} of {identifier} does not decrypt (wrong key, row or column)"
            ) from None

    def seal_text(self, value: str, column: str, identifier: str) -> str:
        """Encrypt text for a text column (``gt1:`` + base64url)."""
        blob = self.seal(value.encode("utf-8"), column, identifier)
        return TEXT_PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")

    def open_text(self, stored: str, column: str, identifier: str) -> str:
        """Decrypt the text a :meth:`seal_text` produced."""
        if not stored.startswith(TEXT_PREFIX):
            raise FailedPrecondition(f"the stored {column} of {identifier} is not encrypted data")
        encoded = stored[len(TEXT_PREFIX) :]
        try:
            blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raise FailedPrecondition(
                f"the stored {column} of {identifier} is not encrypted data"
            ) from None
        return self.open(blob, column, identifier).decode("utf-8")


def _aad(column: str, identifier: str) -> bytes:
    return b"govtrust/licence/" + column.encode("ascii") + b"\x00" + identifier.encode("utf-8")
