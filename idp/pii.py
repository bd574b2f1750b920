"""Personal data at rest: encryption (AES-256-GCM or SM4-GCM), keyed blind indexes, masking.

Resident ID numbers and phone numbers never reach the database in clear. Each is stored as

* a ciphertext of :mod:`hsm.atrest`: ``scheme (1 byte) || nonce (12) || ciphertext || tag``,
  written under the configured scheme (setting ``at_rest_scheme``), read under any known one,
  with the column's purpose (``id_number``/``phone``) as associated data, so a ciphertext copied
  into another column does not decrypt;
* a blind index: HMAC-SHA256 under a separate key over ``purpose || 0x00 || value``, used for
  equality look-ups and uniqueness. Without the index key the index reveals nothing, even for
  the small space of ID numbers. The index does not depend on the encryption scheme: the base
  data tables hold only indexes (no plaintext to recompute them from), so an index that changed
  with the scheme would silently stop matching them (docs/operations.md, "At-rest encryption").

The keys derive from the master key (``MasterKey.derive_key``) under versioned purposes, one per
scheme, so any can be rotated without rotating the master key. Logs, audit records and API
responses carry only masked forms (:func:`mask_id_number`, :func:`mask_phone`).
"""

from __future__ import annotations

import hmac

from hsm.atrest import DEFAULT_SCHEME, AtRestCipher, AtRestError, AtRestScheme
from hsm.atrest import KeyDeriver as KeyDeriver

ENCRYPTION_PURPOSE = "idp/pii-encryption/v1"  # AES-256-GCM (every value before SM4)
SM4_ENCRYPTION_PURPOSE = "idp/pii-encryption-sm4/v1"
ENCRYPTION_PURPOSES = {
    AtRestScheme.AES_256_GCM: ENCRYPTION_PURPOSE,
    AtRestScheme.SM4_GCM: SM4_ENCRYPTION_PURPOSE,
}
BLIND_INDEX_PURPOSE = "idp/pii-blind-index/v1"

PURPOSE_ID_NUMBER = "id_number"
PURPOSE_PHONE = "phone"


PiiError = AtRestError
"""A ciphertext does not decrypt (wrong key, wrong column, tampered, or an unknown scheme:
:class:`hsm.atrest.UnknownScheme`)."""


class PiiCodec:
    """Encrypts, decrypts and blind-indexes personal data with keys derived once."""

    __slots__ = ("_cipher", "_index_key")

    def __init__(self, cipher: AtRestCipher, index_key: bytes) -> None:
        if len(index_key) != 32:
            raise ValueError("the PII blind-index key must be 32 bytes")
        self._cipher = cipher
        self._index_key = index_key

    def __repr__(self) -> str:
        return f"PiiCodec({self._cipher.scheme.value}, <keys hidden>)"

    @classmethod
    def from_master_key(
        cls, master_key: KeyDeriver, scheme: AtRestScheme | str = DEFAULT_SCHEME
    ) -> PiiCodec:
        """Derive the keys from the master key, new values under ``scheme`` (call once per
        process and keep the codec)."""
        return cls(
            AtRestCipher(master_key, ENCRYPTION_PURPOSES, scheme),
            master_key.derive_key(BLIND_INDEX_PURPOSE),
        )

    @property
    def scheme(self) -> AtRestScheme:
        """The scheme new values are written under."""
        return self._cipher.scheme

    def encrypt(self, value: str, purpose: str) -> bytes:
        """Encrypt ``value`` for the column ``purpose``."""
        return self._cipher.encrypt(value.encode("utf-8"), _aad(purpose))

    def decrypt(self, blob: bytes, purpose: str) -> str:
        """Decrypt a value written by :meth:`encrypt` (under any known scheme) for ``purpose``."""
        return self._cipher.decrypt(blob, _aad(purpose), purpose).decode("utf-8")

    def reencrypt(self, blob: bytes, purpose: str) -> tuple[bytes, str]:
        """``(blob under this codec's scheme, plaintext)``; unchanged if already under it."""
        new, plain = self._cipher.reencrypt(blob, _aad(purpose), purpose)
        return new, plain.decode("utf-8")

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
