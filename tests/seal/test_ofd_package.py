"""OFD packages from untrusted bytes: each bad input a specific error, memory bounded by the
limits (tracemalloc), and XML with a DTD, external entities or entity expansion refused."""

from __future__ import annotations

import io
import os
import re
import struct
import tracemalloc
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from seal.errors import OfdMalformed, OfdTooLarge
from seal.ofd.model import (
    Box,
    Document,
    DocumentInfo,
    Font,
    Image,
    ImagePlacement,
    Page,
    Path,
    Text,
    rectangles,
)
from seal.ofd.package import (
    OfdPackage,
    PackageLimits,
    RepeatCache,
    read_package,
    write_package,
)
from seal.ofd.reader import read_document
from seal.ofd.writer import document_package
from seal.ofd.xml import parse

OFD_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016" Version="1.1" DocType="OFD">'
    b"<ofd:DocBody><ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot></ofd:DocBody></ofd:OFD>"
)
MIB = 1024 * 1024


def _zip(entries: list[tuple[str, bytes]], *, stored: bool = False) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
            for name, data in entries:
                z.writestr(zipfile.ZipInfo(name), data)
    return out.getvalue()


def _zeros_entry(name: str, size: int) -> bytes:
    """A zip whose one entry is ``size`` zero bytes, written in chunks (a deflate bomb)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("OFD.xml", OFD_XML)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as entry:
            for _ in range(size // MIB):
                entry.write(bytes(MIB))
    return out.getvalue()


@contextmanager
def _peak(limit: int) -> Iterator[None]:
    """Fails when the block allocates more than ``limit`` bytes at its peak."""
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < limit, f"peak {peak} bytes, limit {limit}"


def _refused(data: bytes, error: type[Exception], match: str, limits: PackageLimits | None = None):
    with _peak(len(data) + 8 * MIB), pytest.raises(error, match=match) as caught:
        read_package(data, limits or PackageLimits())
    return caught.value


def test_good_package_reads_back() -> None:
    files = {"OFD.xml": OFD_XML, "Doc_0/Res/a.png": b"\x89PNG", "Doc_0/Document.xml": b"<x/>"}
    data = write_package(OfdPackage(files))
    assert dict(read_package(data).files) == files
    assert write_package(read_package(data)) == data


def test_repeat_cache_keeps_only_what_comes_again() -> None:
    calls: list[bytes] = []

    def make(data: bytes) -> int:
        calls.append(data)
        return len(data)

    cache = RepeatCache(size=2, max_bytes=10)
    assert [cache.get(b"abc", make) for _ in range(4)] == [3, 3, 3, 3]
    assert calls == [b"abc", b"abc"]  # made twice: the first sight is not kept
    for _ in range(3):
        cache.get(b"0123456789x", make)  # over max_bytes: never kept
    assert calls.count(b"0123456789x") == 3
    cache.get(b"de", make), cache.get(b"de", make), cache.get(b"fg", make), cache.get(b"fg", make)
    cache.get(b"abc", make)  # the least recently used of three, dropped at size 2
    assert calls.count(b"abc") == 3


def test_not_a_zip() -> None:
    _refused(b"%PDF-1.7 " * 100, OfdMalformed, "not a zip file")
    _refused(b"", OfdMalformed, "not a zip file")


def test_truncated_zip() -> None:
    data = write_package(OfdPackage({"OFD.xml": OFD_XML, "a.bin": os.urandom(4096)}))
    _refused(data[: len(data) // 2], OfdMalformed, "not a zip file")
    _refused(data[:-10], OfdMalformed, "not a zip file")


def test_corrupted_entry_data() -> None:
    payload = b"<a>" + b"x" * 5000 + b"</a>"
    data = bytearray(_zip([("OFD.xml", OFD_XML), ("b.xml", payload)]))
    at = data.index(b"b.xml") + len(b"b.xml") + 3  # inside b.xml's deflated data
    data[at] ^= 0xFF
    _refused(bytes(data), OfdMalformed, "not a valid zip file")


def test_bomb_by_ratio() -> None:
    """20 MiB of zeros deflated to ~20 kB: stopped once 200× the compressed size (~4 MiB) is
    passed, long before the entry limit (32 MiB)."""
    data = _zeros_entry("Doc_0/zeros.xml", 20 * MIB)
    assert len(data) < 64 * 1024
    error = _refused(data, OfdTooLarge, "compression ratio")
    assert isinstance(error, OfdTooLarge)
    assert (error.where, error.allowed) == ("Doc_0/zeros.xml", 200)


def test_bomb_by_entry_size() -> None:
    data = _zip([("OFD.xml", OFD_XML), ("big.bin", os.urandom(3 * MIB))], stored=True)
    error = _refused(
        data, OfdTooLarge, "uncompressed entry size", PackageLimits(max_entry_bytes=MIB)
    )
    assert isinstance(error, OfdTooLarge)
    assert error.count <= MIB + 64 * 1024  # stopped at the first chunk past the limit


def test_bomb_by_total_size() -> None:
    entries = [("OFD.xml", OFD_XML)] + [(f"part_{i}.bin", os.urandom(MIB)) for i in range(4)]
    data = _zip(entries, stored=True)
    limits = PackageLimits(max_total_bytes=2 * MIB + MIB // 2)
    _refused(data, OfdTooLarge, r"part_2\.bin: uncompressed package size", limits)


def test_declared_sizes_are_not_trusted() -> None:
    """An entry declaring 10 bytes but holding 1 MiB: only the declared bytes come out, and
    their checksum then fails."""
    data = bytearray(_zip([("OFD.xml", OFD_XML), ("a.bin", bytes(MIB))], stored=True))
    declared = struct.pack("<I", MIB)
    for at in [m.start() for m in re.finditer(re.escape(declared * 2), bytes(data))]:
        data[at : at + 8] = struct.pack("<II", 10, 10)
    _refused(bytes(data), OfdMalformed, "not a valid zip file")


def test_bomb_by_entry_count() -> None:
    entries = [("OFD.xml", OFD_XML)] + [(f"e{i}", b"") for i in range(6_000)]
    data = _zip(entries, stored=True)
    error = _refused(data, OfdTooLarge, "number of entries")
    assert isinstance(error, OfdTooLarge)
    assert (error.count, error.allowed) == (6_001, 5_000)


def test_zip64_end_record_without_locator() -> None:
    data = bytearray(_zip([("OFD.xml", OFD_XML)]))
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = b"\xff\xff\xff\xff"
    _refused(bytes(data), OfdMalformed, "zip64 end record without its locator")


def test_entry_count_that_lies() -> None:
    """The end record says 2 entries, the central directory holds 6,001: refused unparsed."""
    data = bytearray(_zip([("OFD.xml", OFD_XML)] + [(f"e{i}", b"") for i in range(6_000)]))
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<HH", 2, 2)
    _refused(bytes(data), OfdMalformed, "central directory larger than its entries need")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x", "'.' or '..' part"),
        ("Doc_0/../../x", "'.' or '..' part"),
        ("/abs", "absolute path"),
        ("C:\\x", "backslash"),
        ("C:/x", "drive letter"),
        ("Doc_0\\x.xml", "backslash"),
        ("a//b", "empty"),
    ],
)
def test_unsafe_entry_names(name: str, reason: str) -> None:
    data = _zip([("OFD.xml", OFD_XML), (name, b"x")])
    _refused(data, OfdMalformed, re.escape(reason))


def test_nul_in_entry_name() -> None:
    data = _zip([("OFD.xml", OFD_XML), ("aXb.xml", b"x")]).replace(b"aXb.xml", b"a\0b.xml")
    _refused(data, OfdMalformed, "NUL")


@pytest.mark.parametrize("second", ["Doc_0/a.xml", "DOC_0/A.XML", "Doc_0/\u0041.xml".lower()])
def test_duplicate_entries(second: str) -> None:
    data = _zip([("OFD.xml", OFD_XML), ("Doc_0/a.xml", b"1"), (second, b"2")])
    _refused(data, OfdMalformed, "duplicate entry")


def test_encrypted_entry() -> None:
    data = bytearray(_zip([("OFD.xml", OFD_XML), ("secret.xml", b"<a/>")], stored=True))
    local = data.index(b"PK\x03\x04secret"[:4], data.index(b"secret.xml") - 40)
    central = data.index(b"PK\x01\x02", local)
    central = data.index(b"PK\x01\x02", central + 4)  # the second entry's central record
    data[local + 6] |= 1
    data[central + 8] |= 1
    _refused(bytes(data), OfdMalformed, "encrypted")


def test_other_compression_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("OFD.xml", OFD_XML)
    _refused(out.getvalue(), OfdMalformed, "compression method 12")


def test_missing_ofd_xml() -> None:
    _refused(_zip([("Doc_0/Document.xml", b"<x/>")]), OfdMalformed, "OFD.xml is missing")


def test_package_type_checks_names() -> None:
    with pytest.raises(OfdMalformed, match="duplicate"):
        OfdPackage({"OFD.xml": b"", "ofd.xml": b""})
    with pytest.raises(OfdMalformed, match="absolute"):
        OfdPackage({"/OFD.xml": b""})
    package = OfdPackage({"OFD.xml": b""})
    with pytest.raises(TypeError):
        package.files["x"] = b""  # type: ignore[index]


# --- XML ------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']><ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016">&lol9;</ofd:OFD>'
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE o [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b'<ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016">&e;</ofd:OFD>'
)
DOCTYPE = (
    b'<?xml version="1.0"?><!DOCTYPE ofd:OFD><ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"/>'
)


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL, DOCTYPE], ids=["laughs", "xxe", "dtd"])
def test_xml_with_a_dtd_is_refused(xml: bytes) -> None:
    package = read_package(_zip([("OFD.xml", xml)]))
    with _peak(4 * MIB), pytest.raises(OfdMalformed, match=r"OFD\.xml: a document type"):
        read_document(package)


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL], ids=["laughs", "xxe"])
def test_dtd_hidden_by_another_encoding_is_refused(xml: bytes) -> None:
    """UTF-16 hides ``<!DOCTYPE`` from the byte scan; the parsed tree's DTD is still refused
    (or libxml2's own amplification guard stops the laughs first), and no entity was expanded
    or fetched on the way."""
    text = xml.decode().replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    refused = (
        r"Doc_0/Document\.xml: (a document type declaration|not well-formed XML: Maximum entity)"
    )
    with _peak(4 * MIB), pytest.raises(OfdMalformed, match=refused):
        parse(text.encode("utf-16"), "Doc_0/Document.xml")


def test_xml_size_limit_and_syntax() -> None:
    with pytest.raises(OfdTooLarge, match=r"Doc_0/x\.xml: XML size in bytes"):
        parse(b"<a>" + b" " * 2000 + b"</a>", "Doc_0/x.xml", max_bytes=1000)
    with pytest.raises(OfdMalformed, match=r"Doc_0/x\.xml: not well-formed XML"):
        parse(b"<a><b></a>", "Doc_0/x.xml")


def test_deep_xml_is_refused() -> None:
    """libxml2 without huge_tree stops at 256 levels of nesting."""
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    with _peak(4 * MIB + len(deep)), pytest.raises(OfdMalformed, match="not well-formed"):
        parse(deep, "Doc_0/deep.xml")


# --- mutations: only the documented errors ----------------------------------------------------


def _sample() -> OfdPackage:
    font = Font("F", "F", b"\x00\x01\x00\x00 not really a font")
    image = Image(b"\x89PNG not really an image")
    page = Page(
        (
            Text(Box(1, 2, 30, 5), font, 4, "营业执照", 0, 4, (4, 4, 4)),
            Path(Box(5, 5, 2, 2), rectangles([(0, 0, 1, 1), (1, 1, 1, 1)])),
            ImagePlacement(Box(10, 10, 5, 5), image),
        )
    )
    info = DocumentInfo("id", "2026-12-05", "govtrust", (("ZZMC", "营业执照"),))
    return document_package(Document(info, 210, 297, (page, page), (font,), (image,)))


SAMPLE = _sample()
SAMPLE_BYTES = write_package(SAMPLE)


def _read(data: bytes) -> None:
    with suppress(OfdMalformed, OfdTooLarge):
        read_document(read_package(data))


@settings(max_examples=300)
@example(edits=[(SAMPLE_BYTES.rindex(b"PK\x01\x02") + 6, 64)])  # "zip file version 6.4"
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE_BYTES) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_zip_bytes(edits: list[tuple[int, int]]) -> None:
    data = bytearray(SAMPLE_BYTES)
    for at, value in edits:
        data[at] = value
    _read(bytes(data))


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(name for name in SAMPLE.files if name.endswith(".xml"))),
    st.integers(0, 10_000),
    st.integers(0, 40),
    st.sampled_from([b"", b"<", b">", b'"', b"&", b"../", b"/", b"ofd:", b"0", b"-1", b"g", b" "]),
)
def test_mutated_xml(name: str, at: int, cut: int, insert: bytes) -> None:
    """An XML file of a good package with a span replaced: read or refused, never a crash."""
    files = dict(SAMPLE.files)
    data = files[name]
    at %= len(data)
    files[name] = data[:at] + insert + data[at + cut :]
    _read(write_package(OfdPackage(files)))
