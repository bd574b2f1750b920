"""Personal data at rest: AES-256-GCM encryption, keyed blind indexes, and masking.

Resident ID numbers and phone numbers never reach the database in clear. Each is stored as

* a ciphertext: ``version (1 byte) || nonce (12) || AES-GCM(ciphertext || tag)``, with the
  column's purpose (``id_number``/``phone``) as associated data, so a ciphertext copied into
  another column does not decrypt;
* a blind index: HMAC-SHA256 under a separate key over ``purpose || 0x00 || value``, used for
  equality look-ups and uniqueness. Without the index key the index reveals nothing, even for
  the small space of ID numbers.

Both keys derive from the master key (``MasterKey.derive_key``) under versioned purposes, so
either can be rotated without rotating the master key. Logs, audit records and API responses
carry only masked forms (:func:`mask_id_number`, :func:`mask_phone`).
"""

from __future__ import annotations

import hmac
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTION_PURPOSE = "idp/pii-encryption/v1"
BLIND_INDEX_PURPOSE = "idp/pii-blind-index/v1"
_VERSION = 1
_NONCE_BYTES = 12

PURPOSE_ID_NUMBER = "id_number"
PURPOSE_PHONE = "phone"


class KeyDeriver(Protocol):
    """What this module needs from ``hsm.master.MasterKey``."""

    def derive_key(self, purpose: str, length: int = 32) -> bytes: ...


class PiiError(Exception):
    """A ciphertext does not decrypt (wrong key, wrong column, or tampered)."""


class PiiCodec:
    """Encrypts, decrypts and blind-indexes personal data with keys derived once."""

    __slots__ = ("_aead", "_index_key")

    def __init__(self, encryption_key: bytes, index_key: bytes) -> None:
        if len(encryption_key) != 32 or len(index_key) != 32:
            raise ValueError("PII keys must be 32 bytes each")
        self._aead = AESGCM(encryption_key)
        self._index_key = index_key

    def __repr__(self) -> str:
        return "PiiCodec(<keys hidden>)"

    @classmethod
    def from_master_key(cls, master_key: KeyDeriver) -> PiiCodec:
        """Derive both keys from the master key (call once per process and keep the codec)."""
        return cls(
            master_key.derive_key(ENCRYPTION_PURPOSE), master_key.derive_key(BLIND_INDEX_PURPOSE)
        )

    def encrypt(self, value: str, purpose: str) -> bytes:
        """Encrypt ``value`` for the column ``purpose``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), _aad(purpose))
        return bytes([_VERSION]) + nonce + sealed

    def decrypt(self, blob: bytes, purpose: str) -> str:
        """Decrypt a value written by :meth:`encrypt` for the same ``purpose``."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[0] != _VERSION:
            raise PiiError("not a govtrust PII ciphertext")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(purpose))
        except InvalidTag:
            raise PiiError("ciphertext does not decrypt with this key and purpose") from None
        return plain.decode("utf-8")

    def blind_index(self, value: str, purpose: str) -> bytes:
        """The 32-byte keyed index of ``value`` (already normalised) for ``purpose``."""
        message = purpose.encode("ascii") + b"\x00" + value.encode("utf-8")
        return hmac.digest(self._index_key, message, "sha256")


def _aad(purpose: str) -> bytes:
    return b"govtrust/idp/" + purpose.encode("ascii")


def mask_id_number(number: str) -> str:
    """``11010519491231002X`` → ``1101**********002X`` (first 4 and last 4 kept)."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_phone(phone: str) -> str:
    """``13812345678`` → ``138****5678``; empty stays empty."""
    if not phone:
        return ""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
