"""Licence secrets at rest: signed data, QR payload and documents, encrypted per licence.

The signed data, the QR payload and the sealed documents all carry the holder's code (a resident
ID number for citizens, code type 111), so none of them reaches the database in clear. Each is
stored as a ciphertext of :mod:`hsm.atrest` (``scheme (1 byte) || nonce (12) || ciphertext ||
tag``), written under the configured scheme (AES-256-GCM, purpose ``license/at-rest/v1``, or
SM4-GCM, purpose ``license/at-rest-sm4/v1``) and read under any known one, with the column and
the licence identifier as associated data: a ciphertext copied into another row or column does
not decrypt. Text columns hold the blob in unpadded base64url behind the prefix ``gt1:`` (so the
existing text columns keep their type; the scheme is the blob's first byte, not the prefix).
"""

from __future__ import annotations

import base64

from govtrust.errors import FailedPrecondition
from hsm.atrest import DEFAULT_SCHEME, AtRestCipher, AtRestScheme, scheme_of
from hsm.atrest import KeyDeriver as KeyDeriver

ENCRYPTION_PURPOSE = "license/at-rest/v1"  # AES-256-GCM (every licence before SM4)
SM4_ENCRYPTION_PURPOSE = "license/at-rest-sm4/v1"
ENCRYPTION_PURPOSES = {
    AtRestScheme.AES_256_GCM: ENCRYPTION_PURPOSE,
    AtRestScheme.SM4_GCM: SM4_ENCRYPTION_PURPOSE,
}
TEXT_PREFIX = "gt1:"
SIGNED_DATA = "signed_data"
QR_PAYLOAD = "qr_payload"
DOCUMENT = "document_pdf"
OFD_DOCUMENT = "document_ofd"


class LicenceVault:
    """Encrypts and decrypts one licence's stored secrets, bound to its identifier.

    New values go under ``scheme``; values under any known scheme open (:mod:`hsm.atrest`)."""

    __slots__ = ("_cipher",)

    def __init__(self, master_key: KeyDeriver, scheme: AtRestScheme | str = DEFAULT_SCHEME) -> None:
        self._cipher = AtRestCipher(master_key, ENCRYPTION_PURPOSES, scheme)

    def __repr__(self) -> str:
        return f"LicenceVault({self._cipher.scheme.value}, <key hidden>)"

    @property
    def scheme(self) -> AtRestScheme:
        """The scheme new values are written under."""
        return self._cipher.scheme

    def seal(self, value: bytes, column: str, identifier: str) -> bytes:
        """Encrypt ``value`` for ``column`` of licence ``identifier``."""
        return self._cipher.encrypt(value, _aad(column, identifier))

    def open(self, blob: bytes, column: str, identifier: str) -> bytes:
        """Decrypt a value written by :meth:`seal` for the same column and licence."""
        return self._cipher.decrypt(blob, _aad(column, identifier), f"{column} of {identifier}")

    def scheme_of(self, blob: bytes, column: str, identifier: str) -> AtRestScheme:
        """The scheme a stored binary value is under (no decryption)."""
        return scheme_of(blob, f"{column} of {identifier}")

    def scheme_of_text(self, stored: str, column: str, identifier: str) -> AtRestScheme:
        """The scheme a stored text value is under (no decryption)."""
        return scheme_of(_text_blob(stored, column, identifier), f"{column} of {identifier}")

    def reseal(self, blob: bytes, column: str, identifier: str) -> tuple[bytes, bytes]:
        """``(blob under this vault's scheme, plaintext)``; unchanged if already under it."""
        return self._cipher.reencrypt(blob, _aad(column, identifier), f"{column} of {identifier}")

    def reseal_text(self, stored: str, column: str, identifier: str) -> tuple[str, str]:
        """:meth:`reseal` for a text column (``gt1:`` + base64url)."""
        blob = _text_blob(stored, column, identifier)
        new, plain = self.reseal(blob, column, identifier)
        return (stored if new is blob else _text(new)), plain.decode("utf-8")

    def seal_text(self, value: str, column: str, identifier: str) -> str:
        """Encrypt text for a text column (``gt1:`` + base64url)."""
        return _text(self.seal(value.encode("utf-8"), column, identifier))

    def open_text(self, stored: str, column: str, identifier: str) -> str:
        """Decrypt the text a :meth:`seal_text` produced."""
        blob = _text_blob(stored, column, identifier)
        return self.open(blob, column, identifier).decode("utf-8")


def _text(blob: bytes) -> str:
    return TEXT_PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii")


def _text_blob(stored: str, column: str, identifier: str) -> bytes:
    if not stored.startswith(TEXT_PREFIX):
        raise FailedPrecondition(f"the stored {column} of {identifier} is not encrypted data")
    encoded = stored[len(TEXT_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raise FailedPrecondition(
            f"the stored {column} of {identifier} is not encrypted data"
        ) from None


def _aad(column: str, identifier: str) -> bytes:
    return b"govtrust/licence/" + column.encode("ascii") + b"\x00" + identifier.encode("utf-8")
