"""Values at rest: one authenticated cipher, chosen by a setting, the scheme recorded per value.

Every value a package encrypts for the database (personal data in ``idp.pii``, licence secrets in
``license.vault``) is stored as ``scheme (1 byte) || nonce (12) || ciphertext || tag (16)``:

====  ===============  ===============================================================
byte  scheme           cipher
====  ===============  ===============================================================
0x01  ``aes-256-gcm``  AES-256-GCM (``AESGCM``); every value written before SM4 existed
0x02  ``sm4-gcm``      SM4-GCM (GB/T 32907 block cipher, GCM as in RFC 8998), 128-bit key
====  ===============  ===============================================================

New values are written under the configured scheme (setting ``at_rest_scheme``); any known scheme
is read, so switching the setting never makes an existing row unreadable and ``govtrust
reencrypt`` can move rows one by one. A value whose first byte names no known scheme is refused
with :class:`UnknownScheme` (never guessed at).

Each scheme has its own key, derived from the master key under its own purpose
(``MasterKey.derive_key``), so the AES and SM4 keys are independent. SM4-GCM comes from
``cryptography``'s ``Cipher(algorithms.SM4, modes.GCM)`` over OpenSSL (checked against the
RFC 8998 appendix A.1 vector in the tests); nothing here implements GCM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from govtrust.errors import FailedPrecondition

NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES


class AtRestScheme(StrEnum):
    """The ciphers a value at rest can be under (the setting ``at_rest_scheme`` names one)."""

    AES_256_GCM = "aes-256-gcm"
    SM4_GCM = "sm4-gcm"

    @property
    def byte(self) -> int:
        """The scheme byte that opens every value written under this scheme."""
        return _SCHEME_BYTES[self]


DEFAULT_SCHEME = AtRestScheme.AES_256_GCM
_SCHEME_BYTES = {AtRestScheme.AES_256_GCM: 0x01, AtRestScheme.SM4_GCM: 0x02}
_BY_BYTE = {byte: scheme for scheme, byte in _SCHEME_BYTES.items()}
_KEY_BYTES = {AtRestScheme.AES_256_GCM: 32, AtRestScheme.SM4_GCM: 16}


class KeyDeriver(Protocol):
    """What this module needs from ``hsm.master.MasterKey``."""

    def derive_key(self, purpose: str, length: int = 32) -> bytes: ...


class AtRestError(FailedPrecondition):
    """A stored value does not decrypt: not ciphertext, wrong key, wrong row or column, altered."""


class UnknownScheme(AtRestError):
    """A stored value opens with a scheme byte this version does not know."""

    def __init__(self, what: str, byte: int) -> None:
        known = ", ".join(f"0x{b:02x} {s.value}" for b, s in sorted(_BY_BYTE.items()))
        super().__init__(
            f"the stored {what} is under an unknown at-rest scheme (byte 0x{byte:02x}; "
            f"known: {known})"
        )
        self.byte = byte


def parse_scheme(value: str | AtRestScheme) -> AtRestScheme:
    """The scheme named ``value`` (``aes-256-gcm`` or ``sm4-gcm``); ``ValueError`` otherwise."""
    try:
        return AtRestScheme(value)
    except ValueError:
        names = ", ".join(s.value for s in AtRestScheme)
        raise ValueError(f"{value!r} is not an at-rest scheme ({names})") from None


class AtRestCipher:
    """Encrypts under one configured scheme, decrypts under any known scheme.

    ``purposes`` gives, for every scheme, the master-key purpose its key derives from (an
    owner's existing AES purpose stays as it was, so its existing rows stay readable).
    """

    __slots__ = ("_aes", "_sm4_key", "scheme")

    def __init__(
        self,
        keys: KeyDeriver,
        purposes: Mapping[AtRestScheme, str],
        scheme: AtRestScheme | str = DEFAULT_SCHEME,
    ) -> None:
        missing = [s.value for s in AtRestScheme if s not in purposes]
        if missing:
            raise ValueError(f"no key purpose for {', '.join(missing)}")
        if len(set(purposes.values())) != len(purposes):
            raise ValueError("each scheme needs a key purpose of its own")
        self.scheme = parse_scheme(scheme)
        aes = AtRestScheme.AES_256_GCM
        sm4 = AtRestScheme.SM4_GCM
        self._aes = AESGCM(keys.derive_key(purposes[aes], _KEY_BYTES[aes]))
        self._sm4_key = keys.derive_key(purposes[sm4], _KEY_BYTES[sm4])

    def __repr__(self) -> str:
        return f"AtRestCipher({self.scheme.value}, <keys hidden>)"

    def encrypt(self, plain: bytes, aad: bytes) -> bytes:
        """``plain`` under the configured scheme, bound to ``aad``."""
        nonce = os.urandom(NONCE_BYTES)
        if self.scheme is AtRestScheme.AES_256_GCM:
            sealed = self._aes.encrypt(nonce, plain, aad)
        else:
            encryptor = Cipher(algorithms.SM4(self._sm4_key), modes.GCM(nonce)).encryptor()
            encryptor.authenticate_additional_data(aad)
            sealed = encryptor.update(plain) + encryptor.finalize() + encryptor.tag
        return bytes([self.scheme.byte]) + nonce + sealed

    def scheme_of(self, blob: bytes, what: str = "value") -> AtRestScheme:
        """The scheme ``blob`` was written under (no decryption); :class:`UnknownScheme` or
        :class:`AtRestError` (too short to be ciphertext) otherwise."""
        return scheme_of(blob, what)

    def decrypt(self, blob: bytes, aad: bytes, what: str = "value") -> bytes:
        """The plaintext of ``blob`` (any known scheme) bound to ``aad``; ``what`` names the
        value in errors (e.g. ``"id_number"``, ``"signed_data of <identifier>"``)."""
        scheme = scheme_of(blob, what)
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            if scheme is AtRestScheme.AES_256_GCM:
                return self._aes.decrypt(nonce, sealed, aad)
            body, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
            decryptor = Cipher(algorithms.SM4(self._sm4_key), modes.GCM(nonce, tag)).decryptor()
            decryptor.authenticate_additional_data(aad)
            return decryptor.update(body) + decryptor.finalize()
        except InvalidTag:
            raise AtRestError(
                f"the stored {what} does not decrypt ({scheme.value}: wrong key, row or column, "
                "or altered)"
            ) from None

    def reencrypt(self, blob: bytes, aad: bytes, what: str = "value") -> tuple[bytes, bytes]:
        """``(new blob under the configured scheme, plaintext)`` of ``blob``; a blob already
        under the configured scheme comes back as it is."""
        plain = self.decrypt(blob, aad, what)
        if blob[0] == self.scheme.byte:
            return blob, plain
        return self.encrypt(plain, aad), plain


def scheme_of(blob: bytes, what: str = "value") -> AtRestScheme:
    """The scheme of a stored value by its first byte (see :meth:`AtRestCipher.scheme_of`)."""
    if len(blob) < OVERHEAD:
        raise AtRestError(f"the stored {what} is not at-rest ciphertext (too short)")
    scheme = _BY_BYTE.get(blob[0])
    if scheme is None:
        raise UnknownScheme(what, blob[0])
    return scheme
