"""An OFD package: the zip container, read safely from untrusted bytes, written deterministically.

:func:`read_package` trusts nothing the zip declares. Before the central directory is parsed its
end record is read to refuse too many entries (a directory of a million entries would cost
gigabytes of Python objects); then every entry name is checked (no ``..``, absolute path,
backslash, drive letter, NUL, directory-only or over-long name; no duplicate, also after Unicode
case folding), encrypted entries and compression other than stored/deflate are refused, and
each entry is decompressed in chunks, counting the bytes actually produced, stopping as soon as
the entry, the package total or the entry's compression ratio passes its limit
(:class:`PackageLimits`). A CRC mismatch, a truncated or lying archive is :class:`OfdMalformed`;
a limit is :class:`OfdTooLarge` (RESOURCE_EXHAUSTED).

:func:`write_package` writes ``OFD.xml`` first and the other files sorted by name, with a fixed
timestamp, permissions and compression level, so the same files give the same bytes.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from seal.errors import OfdMalformed, OfdTooLarge

ROOT_FILE = "OFD.xml"
_CHUNK = 64 * 1024
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL_ENTRY_MIN = 46
_DRIVE = re.compile(r"^[A-Za-z]:")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_STORED_SUFFIXES = (".png", ".jpg", ".jpeg", ".jb2", ".esl", ".dat")
"""Stored, not deflated: pictures (compressed already), Seal.esl and SignedValue.dat (DER with
keys, signatures and a picture: deflate gains almost nothing on them)."""
_LEVEL = 1
"""Deflate level: a page of QR modules deflates in 1 ms at level 1 (12 kB), 7 ms at 6 (7.6 kB)."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class PackageLimits:
    """How much an untrusted OFD package may hold."""

    max_entries: int = 5_000
    max_entry_bytes: int = 32 * 1024 * 1024
    max_total_bytes: int = 64 * 1024 * 1024
    max_ratio: int = 200
    """Uncompressed over compressed size of one entry, checked once it passes ``ratio_floor``."""
    ratio_floor: int = 64 * 1024
    max_name_length: int = 512


DEFAULT_LIMITS = PackageLimits()


def check_name(name: str, max_length: int = DEFAULT_LIMITS.max_name_length) -> None:
    """OfdMalformed unless ``name`` is a safe relative path inside the package."""
    shown = repr(name[:80])
    if not name or name.endswith("/"):
        raise OfdMalformed.at(shown, "an entry name must name a file")
    if len(name) > max_length:
        raise OfdMalformed.at(shown, f"entry name longer than {max_length} characters")
    if "\0" in name:
        raise OfdMalformed.at(shown, "entry name contains NUL")
    if "\\" in name:
        raise OfdMalformed.at(shown, "entry name contains a backslash")
    if name.startswith("/"):
        raise OfdMalformed.at(shown, "entry name is an absolute path")
    if _DRIVE.match(name):
        raise OfdMalformed.at(shown, "entry name starts with a drive letter")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise OfdMalformed.at(shown, "entry name has an empty, '.' or '..' part")


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


@dataclass(frozen=True)
class OfdPackage:
    """The files of an OFD package, path → bytes (read only; names checked, unique when folded)."""

    files: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in self.files:
            check_name(name)
            folded = _folded(name)
            if folded in seen:
                raise OfdMalformed.at(repr(name), "duplicate entry (names differ only in case)")
            seen.add(folded)
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def __contains__(self, name: object) -> bool:
        return name in self.files

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, name: str, referenced_from: str = "package") -> bytes:
        """The bytes of ``name``; OfdMalformed naming the referring file when it is missing."""
        data = self.files.get(name)
        if data is None:
            raise OfdMalformed.at(referenced_from, f"refers to {name!r}, not in the package")
        return data


def _directory_extent(data: bytes) -> tuple[int, int]:
    """The entry count and central directory size the end record declares."""
    at = len(data) - 22
    if at < 0:
        raise OfdMalformed.at("package", "not a zip file (too short)")
    if data[at : at + 4] != _EOCD:
        at = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF), len(data) - 21)
        if at < 0:
            raise OfdMalformed.at("package", "not a zip file (no end of central directory)")
    entries, directory_size = struct.unpack("<xxxxxxxxxxHI", data[at : at + 16])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:
        locator = at - 20
        if locator < 0 or data[locator : locator + 4] != _EOCD64_LOCATOR:
            raise OfdMalformed.at("package", "zip64 end record without its locator")
        (offset,) = struct.unpack("<Q", data[locator + 8 : locator + 16])
        record = data[offset : offset + 56]
        if len(record) < 56 or record[:4] != _EOCD64:
            raise OfdMalformed.at("package", "zip64 end record missing or truncated")
        entries, directory_size = struct.unpack("<QQ", record[32:48])
    return int(entries), int(directory_size)


def _read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: PackageLimits, total: int
) -> bytes:
    """The entry's bytes, decompressed in chunks and stopped at the first limit passed."""
    name = info.filename
    out = io.BytesIO()
    produced = 0
    ratio_cap = limits.max_ratio * max(info.compress_size, 1)
    with archive.open(info) as stream:
        while chunk := stream.read(_CHUNK):
            produced += len(chunk)
            if produced > limits.max_entry_bytes:
                raise OfdTooLarge("uncompressed entry size", name, produced, limits.max_entry_bytes)
            if total + produced > limits.max_total_bytes:
                raise OfdTooLarge(
                    "uncompressed package size", name, total + produced, limits.max_total_bytes
                )
            if produced > limits.ratio_floor and produced > ratio_cap:
                raise OfdTooLarge(
                    "compression ratio",
                    name,
                    produced // max(info.compress_size, 1),
                    limits.max_ratio,
                )
            out.write(chunk)
    return out.getvalue()


def read_package(data: bytes, limits: PackageLimits = DEFAULT_LIMITS) -> OfdPackage:
    """The package in the untrusted ``data`` (see the module docstring for what is checked)."""
    entries, directory_size = _directory_extent(data)
    if entries > limits.max_entries:
        raise OfdTooLarge("number of entries", "package", entries, limits.max_entries)
    if directory_size > entries * (_CENTRAL_ENTRY_MIN + limits.max_name_length + 64):
        raise OfdMalformed.at("package", "central directory larger than its entries need")
    files: dict[str, bytes] = {}
    folded: set[str] = set()
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_entries:
                raise OfdTooLarge("number of entries", "package", len(infos), limits.max_entries)
            for info in infos:
                name = info.orig_filename  # zipfile's filename is cut at a NUL
                if name.endswith("/"):
                    check_name(name.rstrip("/") or "/", limits.max_name_length)
                    continue
                check_name(name, limits.max_name_length)
                key = _folded(name)
                if key in folded:
                    raise OfdMalformed.at(repr(name), "duplicate entry")
                folded.add(key)
                if info.flag_bits & 0x1:
                    raise OfdMalformed.at(repr(name), "encrypted entries are not allowed")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise OfdMalformed.at(
                        repr(name), f"compression method {info.compress_type} is not allowed"
                    )
                content = _read_entry(archive, info, limits, total)
                total += len(content)
                files[name] = content
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        ValueError,  # also UnicodeDecodeError of a name flagged UTF-8
        NotImplementedError,  # a zip version or feature zipfile does not read
        OSError,
        struct.error,
    ) as error:
        raise OfdMalformed.at("package", f"not a valid zip file: {error}") from None
    if ROOT_FILE not in files:
        raise OfdMalformed.at("package", f"{ROOT_FILE} is missing")
    return OfdPackage(files)


class RepeatCache:
    """What a pure function of bytes gave for data seen before (a seal's ``Seal.esl``, the CA
    certificates attached to every licence): a value is kept only for data met a second
    time, at most ``size`` values and ``max_bytes`` of keys, least recently used dropped first.
    Keys are the bytes themselves (compared whole), so a hit is exactly the same input."""

    def __init__(self, size: int = 16, max_bytes: int = 4 * 1024 * 1024) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._values: OrderedDict[bytes, object] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, data: bytes, make: Callable[[bytes], _T]) -> _T:
        """``make(data)``, remembered from the second time ``data`` comes."""
        with self._lock:
            found = self._values.get(data, _MISSING)
            if found is not _MISSING:
                self._values.move_to_end(data)
                return found  # type: ignore[return-value]
            key = hash(data)
            again = key in self._seen
            if not again:
                self._seen[key] = None
                if len(self._seen) > 4 * self._size:
                    self._seen.popitem(last=False)
        value = make(data)
        if again and len(data) <= self._max_bytes:
            with self._lock:
                if data not in self._values:
                    self._values[data] = value
                    self._bytes += len(data)
                    while len(self._values) > self._size or self._bytes > self._max_bytes:
                        dropped, _ = self._values.popitem(last=False)
                        self._bytes -= len(dropped)
        return value


_MISSING = object()


def write_package(package: OfdPackage) -> bytes:
    """The zip bytes of ``package``: OFD.xml first, then by name; fixed times, same bytes."""
    names = sorted(package.files, key=lambda name: (name != ROOT_FILE, name))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            stored = name.lower().endswith(_STORED_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(info, package.files[name], compresslevel=None if stored else _LEVEL)
    return out.getvalue()
