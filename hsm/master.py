"""The master key: the one secret of the embedded deployment, from which every local key derives.

Source, in order: the environment variable ``GOVTRUST_MASTER_KEY`` (base64 of exactly 32 bytes),
else ``<data-dir>/master.key`` (the same base64 text, created on first use with mode 0600).

A key file readable or writable by group or others is refused, not merely warned about (as
OpenSSH does for private keys): a master key another local user could read protects nothing,
and a warning in a log is easy to miss. The error says which ``chmod`` fixes it.

Nobody outside this module sees the master key. Packages ask for purpose-bound subkeys with
:meth:`MasterKey.derive_key` (HKDF-SHA256, the purpose string as ``info``), e.g. the soft key
store's wrapping key or the identity registry's encryption and blind-index keys; compromise of
one subkey reveals neither the master key nor any other subkey.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hsm.errors import MasterKeyError

MASTER_KEY_ENV = "GOVTRUST_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
MASTER_KEY_BYTES = 32
_HKDF_SALT = b"govtrust master key v1"
_CHECK_PURPOSE = "master-key-check/v1"
_CHECK_LABEL = b"govtrust master key check value"
_PURPOSE_MAX = 200


class MasterKey:
    """32 secret bytes and the derivation of purpose-bound subkeys from them."""

    __slots__ = ("__key", "_derived", "_lock", "source")

    def __init__(self, key: bytes, *, source: str = "memory") -> None:
        if not isinstance(key, bytes) or len(key) != MASTER_KEY_BYTES:
            raise MasterKeyError(
                f"the master key from {source} must be exactly {MASTER_KEY_BYTES} bytes"
            )
        self.__key = key
        self.source = source
        self._derived: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r})"

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random master key (tests, and first start without a file)."""
        return cls(os.urandom(MASTER_KEY_BYTES), source="generated")

    @classmethod
    def from_base64(cls, value: str, *, source: str = MASTER_KEY_ENV) -> MasterKey:
        """Decode the base64 text form (env variable or file content)."""
        text = value.strip()
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(
                f"the master key from {source} is not valid base64 "
                f"(expected base64 of {MASTER_KEY_BYTES} random bytes, "
                "e.g. from `openssl rand -base64 32`)"
            ) from None
        if len(raw) != MASTER_KEY_BYTES:
            raise MasterKeyError(
                f"the master key from {source} decodes to {len(raw)} bytes, "
                f"expected {MASTER_KEY_BYTES} (e.g. `openssl rand -base64 32`)"
            )
        return cls(raw, source=source)

    def derive_key(self, purpose: str, length: int = 32) -> bytes:
        """A subkey bound to ``purpose`` (HKDF-SHA256), e.g. ``"idp/id-number-encryption/v1"``.

        The same purpose always yields the same bytes; different purposes yield independent keys.
        Put a version in the purpose so a subkey can be rotated without rotating the master key.
        """
        if not isinstance(purpose, str) or not purpose or len(purpose) > _PURPOSE_MAX:
            raise ValueError(f"purpose must be a non-empty string of at most {_PURPOSE_MAX} chars")
        if not purpose.isascii() or not purpose.isprintable():
            raise ValueError("purpose must be printable ASCII")
        if not 16 <= length <= 64:
            raise ValueError("derived key length must be between 16 and 64 bytes")
        cache_key = (purpose, length)
        derived = self._derived.get(cache_key)
        if derived is None:
            hkdf = HKDF(
                algorithm=hashes.SHA256(),
                length=length,
                salt=_HKDF_SALT,
                info=b"govtrust/" + purpose.encode("ascii"),
            )
            derived = hkdf.derive(self.__key)
            with self._lock:
                self._derived[cache_key] = derived
        return derived

    def check_value(self) -> str:
        """A key check value (hex HMAC-SHA256 of a fixed label under a dedicated subkey).

        Stored at bootstrap so a process started with another master key is refused instead of
        writing data no other replica can read. It reveals nothing about the key.
        """
        subkey = self.derive_key(_CHECK_PURPOSE)
        return hmac.new(subkey, _CHECK_LABEL, hashlib.sha256).hexdigest()

    def export_base64(self) -> str:
        """The base64 text form, for moving the key into a secret manager (operator CLI only)."""
        return base64.b64encode(self.__key).decode("ascii")


def _check_file_mode(path: Path) -> None:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise MasterKeyError(f"master key file {path} is not a regular file")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        raise MasterKeyError(
            f"master key file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
        )


def _create_file(path: Path) -> None:
    """Write a fresh key atomically: temp file (0600) then a hard link that fails if one exists.

    Two processes starting together therefore agree on one key: the loser of the race drops its
    temp file and reads the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (MasterKey.generate().export_base64() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def load_master_key(
    data_dir: Path | str | None,
    *,
    environ: Mapping[str, str] | None = None,
    create: bool = True,
) -> MasterKey:
    """The master key from ``GOVTRUST_MASTER_KEY`` or ``<data_dir>/master.key``.

    When neither exists and ``create`` is true, a new key is generated into the file with mode
    0600. Raises :class:`MasterKeyError` for an invalid value, a file with loose permissions, or
    (``create=False``) no key at all.
    """
    env = os.environ if environ is None else environ
    value = env.get(MASTER_KEY_ENV)
    if value is not None and value.strip():
        return MasterKey.from_base64(value, source=MASTER_KEY_ENV)
    if data_dir is None:
        raise MasterKeyError(f"no master key: set {MASTER_KEY_ENV} or give a data directory")
    path = Path(data_dir) / MASTER_KEY_FILE
    if not path.exists():
        if not create:
            raise MasterKeyError(
                f"no master key: {path} does not exist and {MASTER_KEY_ENV} is unset"
            )
        _create_file(path)
    _check_file_mode(path)
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"master key file {path} cannot be read: {exc}") from None
    return MasterKey.from_base64(text, source=str(path))
