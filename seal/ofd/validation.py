"""The technical check of an OFD document's seal signatures (GM/T 0099 layout, GB/T 38540
SES_Signature), from untrusted bytes, without a database: what a verifier and a licence checker
both need before they judge certificates, seals and time.

:func:`check_ofd` reads the package within :class:`~seal.ofd.package.PackageLimits` (a package
that is not a safe zip, or names no OFD.xml, raises :class:`~seal.errors.OfdMalformed`; one past
a limit :class:`~seal.errors.OfdTooLarge`), finds the signature list that ``OFD.xml`` names and
checks each signature in order:

* every ``Reference``: ``CheckMethod`` must be SM3 (1.2.156.10197.1.401); a referenced file
  missing was *removed* after signing, one whose SM3 differs was *changed*;
* every file of the package that the signature does not reference was *added* after signing,
  except the signature list (left out so further seals can be added), the signature's own
  ``Signature.xml`` and ``SignedValue.dat``, and the files in a *later* signature's folder;
* ``SignedValue.dat`` is a DER SES_Signature (v4) whose ``dataHash`` is the digest of the exact
  bytes of ``Signature.xml`` under its signature algorithm (SM3 for SM2-with-SM3) and whose
  ``propertyInfo`` is the location of ``Signature.xml``;
* the signer's signature over TBS_Sign and the embedded SESeal's maker signature verify, the
  signer's certificate is in the seal's certificate list, ``Seal.esl`` (when named) is that
  seal, ``SignatureMethod`` is the SES signature algorithm, and every ``StampAnnot PageRef``
  names a page of the document;
* a ``Type="Sign"`` signature (a digital signature, no seal) has instead a CMS SignedData
  (PKCS#7, one signer) as ``SignedValue.dat``, over the exact bytes of ``Signature.xml``: its
  messageDigest and its signature must hold, and its claimed signing time and signature
  time-stamp are handed on as an SES_Signature's are.

Anything wrong with one signature is a :class:`Finding` of its :class:`SignatureCheck` (never
an exception), so one bad signature does not hide the others. No certificate chain, revocation,
seal registry or time-stamp is judged here (:mod:`verify.ofd` does that).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.hazmat.primitives.serialization import Encoding

from ca.cms_check import (
    DIGESTS,
    check_signer,
    load_signed_data,
    signing_time,
    time_stamp_token,
)
from seal import structures
from seal.errors import DataHashMismatch, OfdMalformed, OfdTooLarge, SealStructureError
from seal.ofd.package import DEFAULT_LIMITS, ROOT_FILE, OfdPackage, PackageLimits, read_package
from seal.ofd.reader import DEFAULT_READ_LIMITS, resolve
from seal.ofd.signatures import (
    SM3_OID,
    SignatureEntry,
    SignatureFile,
    absolute,
    read_signature,
    read_signature_list,
    signature_list_location,
    sm3,
)
from seal.ofd.xml import adopt_legacy_namespace, child, child_text, children, parse

SIGN_TYPE = "Sign"
"""``Signatures.xml``'s type of a digital signature (CMS), beside ``Seal`` (SES_Signature)."""


class FindingKind(StrEnum):
    """What a finding is about (a verifier maps it to its reason codes)."""

    FORMAT = "format"
    """A signature file is missing, malformed or inconsistent with the others."""
    INTEGRITY = "integrity"
    """A file changed, added or removed after signing; Signature.xml does not match dataHash."""
    SIGNATURE = "signature"
    """The signer's signature value does not verify (or its algorithm is unknown)."""
    SEAL = "seal"
    """The embedded seal: its maker's signature, its certificate list, Seal.esl."""


@dataclass(frozen=True)
class Finding:
    """One problem of one signature, in English and Chinese, naming the file concerned."""

    kind: FindingKind
    message: str
    message_zh: str
    file: str = ""


@dataclass(frozen=True)
class SignatureCheck:
    """The technical check of one signature of the document (in signature-list order)."""

    index: int
    sign_id: int
    type: str
    signature_file: str
    findings: tuple[Finding, ...] = ()
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    data_hash_matches: bool = False
    signature_valid: bool = False
    seal_problems: tuple[str, ...] = ()
    seal_id: str = ""
    seal_der: bytes | None = None
    maker_certificate: bytes | None = None
    signer_certificate: bytes | None = None
    time_stamp_token: bytes | None = None
    signature_value: bytes = b""
    claimed_time: datetime | None = None
    data_hash: bytes = b""
    signature_algorithm: str = ""
    """The SES_Signature's signature algorithm OID (1.2.156.10197.1.501 for SM2-with-SM3)."""
    digest_algorithm: str = ""
    """The dataHash digest (hashlib name: ``sm3`` under SM2-with-SM3)."""
    pages: tuple[int, ...] = ()
    """The 1-based pages its stamps show on."""
    references_checked: bool = False

    @property
    def intact(self) -> bool:
        """Nothing the signature protects changed, was added or removed after signing, and
        Signature.xml is what the SES_Signature signed."""
        return (
            self.references_checked
            and self.data_hash_matches
            and not (self.changed or self.added or self.removed)
        )

    @property
    def problems(self) -> tuple[str, ...]:
        """Every finding's message (English)."""
        return tuple(finding.message for finding in self.findings)


@dataclass(frozen=True)
class OfdCheckResult:
    """The document's facts and one :class:`SignatureCheck` per signature (none: unsigned)."""

    file_count: int
    page_count: int
    signature_list: str | None
    signatures: tuple[SignatureCheck, ...] = field(default_factory=tuple)

    @property
    def signed(self) -> bool:
        """Whether the document carries at least one signature."""
        return bool(self.signatures)


def _page_ids(
    package: OfdPackage, max_pages: int = DEFAULT_READ_LIMITS.max_pages
) -> tuple[int, ...] | None:
    """The unit IDs of the document's pages in order (None when they cannot be read; a
    changed Document.xml is then reported through its reference digest). More than
    ``max_pages`` pages is :class:`OfdTooLarge` (as :func:`seal.ofd.reader.read_document`
    refuses them), never a list of a million ids."""
    try:
        root = adopt_legacy_namespace(parse(package.read(ROOT_FILE), ROOT_FILE))
        body = child(root, "DocBody")
        doc_root = None if body is None else child_text(body, "DocRoot")
        if not doc_root:
            return None
        location = resolve(doc_root, "", ROOT_FILE)
        document = adopt_legacy_namespace(parse(package.read(location, ROOT_FILE), location))
        pages = child(document, "Pages")
        nodes = [] if pages is None else children(pages, "Page")
        if len(nodes) > max_pages:
            raise OfdTooLarge("number of pages", location, len(nodes), max_pages)
        ids: list[int] = []
        for node in nodes:
            raw = (node.get("ID") or "").strip()
            ids.append(int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 else -1)
        return tuple(ids)
    except OfdMalformed:
        return None


def _folder(path: str) -> str:
    return path.rpartition("/")[0]


def _own_files(
    package: OfdPackage, entry: SignatureEntry, parsed: SignatureFile | None
) -> set[str]:
    """The files of one signature: its Signature.xml, SignedValue.dat and Seal.esl and every
    file in its folder (``Sign_N``)."""
    files = {entry.file}
    if parsed is not None:
        files.add(parsed.signed_value_file)
        if parsed.seal_file:
            files.add(parsed.seal_file)
    folder = _folder(entry.file)
    if folder:
        files.update(name for name in package if name.startswith(folder + "/"))
    return files


class _Check:
    """Gathers the findings of one signature."""

    def __init__(self, index: int, entry: SignatureEntry) -> None:
        self.index = index
        self.entry = entry
        self.findings: list[Finding] = []
        self.values: dict[str, object] = {}

    def find(self, kind: FindingKind, en: str, zh: str, file: str = "") -> None:
        self.findings.append(Finding(kind, en, zh, file))

    def result(self) -> SignatureCheck:
        return SignatureCheck(
            index=self.index,
            sign_id=self.entry.id,
            type=self.entry.type,
            signature_file=self.entry.file,
            findings=tuple(self.findings),
            **self.values,  # type: ignore[arg-type]
        )


def _references(
    check: _Check, package: OfdPackage, signature: SignatureFile, excused: set[str]
) -> None:
    """Changed, removed and added files against the signature's references."""
    covered = {reference.file for reference in signature.references} | excused
    added = tuple(sorted(name for name in package if name not in covered))
    for name in added:
        check.find(
            FindingKind.INTEGRITY,
            f"{name} was added after signing (the signature does not protect it)",
            f"{name} 在签章之后被加入（签名未保护该文件）",
            name,
        )
    check.values["added"] = added
    if signature.check_method != SM3_OID:
        check.find(
            FindingKind.INTEGRITY,
            f"References CheckMethod {signature.check_method!r:.60} is not SM3 ({SM3_OID}); "
            "the protected files cannot be checked",
            f"References 的 CheckMethod {signature.check_method!r:.60} 不是 SM3，无法校验文件",
            check.entry.file,
        )
        return
    changed: list[str] = []
    removed: list[str] = []
    for reference in signature.references:
        data = package.files.get(reference.file)
        if data is None:
            removed.append(reference.file)
            check.find(
                FindingKind.INTEGRITY,
                f"{reference.file} was removed after signing (referenced but not in the package)",
                f"{reference.file} 在签章之后被删除（已引用但不在包中）",
                reference.file,
            )
        elif sm3(data) != reference.check_value:
            changed.append(reference.file)
            check.find(
                FindingKind.INTEGRITY,
                f"{reference.file} was changed after signing (its SM3 does not match)",
                f"{reference.file} 在签章之后被改动（SM3 摘要不符）",
                reference.file,
            )
    check.values.update(changed=tuple(changed), removed=tuple(removed), references_checked=True)


def _signed_value(
    check: _Check,
    package: OfdPackage,
    signature: SignatureFile,
    page_ids: tuple[int, ...] | None,
) -> None:
    """SignedValue.dat against Signature.xml, the seal, Seal.esl and the pages."""
    where = signature.signed_value_file
    xml = package.files[check.entry.file]
    raw = package.files.get(where)
    if raw is None:
        check.find(
            FindingKind.FORMAT,
            f"{where} (the signature value) is missing",
            f"{where}（签名值）不存在",
            where,
        )
        return
    try:
        ses = structures.SesSignature.load(raw, strict=True)
        tbs = ses["to_sign"]
        signer = ses["cert"].native
        oid = ses["signature_alg_id"].dotted
        value = ses["signature"].native
        seal_der = tbs["eseal"].dump()
        data_hash = tbs["data_hash"].native
        claimed = tbs["time_info"].native
        property_info = tbs["property_info"].native
        token = ses["time_stamp"].native
        tbs_der = tbs.dump()
        version = tbs["version"].native
    except (ValueError, TypeError, KeyError) as exc:
        check.find(
            FindingKind.FORMAT,
            f"{where} is not a DER SES_Signature: {exc}",
            f"{where} 不是 DER 编码的 SES_Signature：{exc}",
            where,
        )
        return
    if isinstance(claimed, datetime) and claimed.tzinfo is None:
        claimed = claimed.replace(tzinfo=UTC)
    check.values.update(
        signer_certificate=signer,
        signature_value=value,
        seal_der=seal_der,
        data_hash=data_hash,
        claimed_time=claimed if isinstance(claimed, datetime) else None,
        time_stamp_token=token,
        signature_algorithm=oid,
    )
    if version != structures.SES_VERSION:
        check.find(
            FindingKind.FORMAT,
            f"{where}: SES_Signature version {version} is not 4 (GB/T 38540)",
            f"{where}：SES_Signature 版本 {version} 不是 4",
            where,
        )
    if signature.signature_method != oid:
        check.find(
            FindingKind.FORMAT,
            f"SignatureMethod {signature.signature_method!r:.60} is not the SES_Signature's "
            f"algorithm {oid}",
            f"SignatureMethod {signature.signature_method!r:.60} 与签名值的算法 {oid} 不一致",
            check.entry.file,
        )
    if property_info not in (absolute(check.entry.file), check.entry.file):
        check.find(
            FindingKind.FORMAT,
            f"{where}: propertyInfo {property_info!r:.80} is not the location of "
            f"{absolute(check.entry.file)}",
            f"{where}：propertyInfo {property_info!r:.80} 不是 {absolute(check.entry.file)}",
            where,
        )
    try:
        digest = structures.data_digest(oid)
    except SealStructureError:
        check.find(
            FindingKind.SIGNATURE,
            f"{where}: unknown signature algorithm {oid}",
            f"{where}：未知的签名算法 {oid}",
            where,
        )
        digest = ""
    if digest:
        check.values["digest_algorithm"] = digest
        try:
            structures.check_data_hash(oid, data_hash, xml)
            matches = hashlib.new(digest, xml).digest() == data_hash
            if not matches:
                check.find(
                    FindingKind.INTEGRITY,
                    f"{check.entry.file} does not match the dataHash of {where}: "
                    "changed after signing",
                    f"{check.entry.file} 与 {where} 的 dataHash 不符：签章后被改动",
                    check.entry.file,
                )
        except DataHashMismatch as exc:
            matches = False
            check.find(FindingKind.INTEGRITY, f"{where}: {exc}", f"{where}：{exc}", where)
        check.values["data_hash_matches"] = matches
        try:
            structures.verify_value(signer, oid, value, tbs_der)
            check.values["signature_valid"] = True
        except SealStructureError as exc:
            check.find(
                FindingKind.SIGNATURE,
                f"{where}: the signer's signature does not verify ({exc})",
                f"{where}：签署者的签名值无效（{exc}）",
                where,
            )
    _seal(check, package, signature, seal_der, signer)
    _stamps(check, signature, page_ids)


@dataclass(frozen=True)
class _SealChecked:
    """What :func:`_seal` needs of an SESeal: its id, maker certificate and certificate list,
    or why it does not parse; and why the maker's signature does not verify (None: it does)."""

    seal_id: str = ""
    maker_certificate: bytes = b""
    certificates: tuple[bytes, ...] = ()
    parse_error: str | None = None
    signature_error: str | None = None


@functools.lru_cache(maxsize=128)
def _checked_seal(seal_der: bytes) -> _SealChecked:
    """The SESeal ``seal_der`` parsed and its maker's signature verified, remembered by its
    bytes: every document sealed with one seal carries the same SESeal, so a verifier checks
    each seal's maker signature once, not once per document (the result depends only on the
    bytes; 128 seals of a few kB at most)."""
    try:
        parsed = structures.parse_seal(seal_der)
    except SealStructureError as exc:
        return _SealChecked(parse_error=str(exc))
    signature_error = None
    try:
        structures.verify_seal(seal_der)
    except SealStructureError as exc:
        signature_error = str(exc)
    return _SealChecked(
        parsed.seal_id,
        parsed.maker_certificate,
        tuple(parsed.certificates),
        signature_error=signature_error,
    )


def _seal(
    check: _Check, package: OfdPackage, signature: SignatureFile, seal_der: bytes, signer: bytes
) -> None:
    """The SESeal inside the SES_Signature: maker signature, cert list, Seal.esl."""
    problems: list[str] = []

    def problem(en: str, zh: str, file: str) -> None:
        problems.append(en)
        check.find(FindingKind.SEAL, en, zh, file)

    where = signature.signed_value_file
    checked = _checked_seal(seal_der)
    if checked.parse_error is not None:
        exc = checked.parse_error
        problem(
            f"the seal in {where} does not parse: {exc}", f"{where} 中的印章无法解析：{exc}", where
        )
    else:
        check.values.update(seal_id=checked.seal_id, maker_certificate=checked.maker_certificate)
        if checked.signature_error is not None:
            exc = checked.signature_error
            problem(
                f"the seal maker's signature over the seal does not verify ({exc})",
                f"制章者对印章的签名无效（{exc}）",
                where,
            )
        if signer not in checked.certificates:
            problem(
                "the signer's certificate is not in the seal's certificate list",
                "签署者证书不在印章的证书列表中",
                where,
            )
    if signature.seal_file is not None:
        esl = package.files.get(signature.seal_file)
        if esl is not None and esl != seal_der:
            problem(
                f"{signature.seal_file} is not the seal inside {where}",
                f"{signature.seal_file} 与 {where} 中的印章不一致",
                signature.seal_file,
            )
    check.values["seal_problems"] = tuple(problems)


def _signed_value_cms(
    check: _Check,
    package: OfdPackage,
    signature: SignatureFile,
    page_ids: tuple[int, ...] | None,
) -> None:
    """A ``Type="Sign"`` signature: SignedValue.dat is a CMS SignedData (PKCS#7, one signer)
    over the exact bytes of Signature.xml, detached or holding them; its messageDigest must be
    their digest and its signature verify (the CMS names its own algorithms: SignatureMethod is
    not compared). No seal: the signer's certificate is judged as a document signer's."""
    where = signature.signed_value_file
    xml = package.files[check.entry.file]
    raw = package.files.get(where)
    if raw is None:
        check.find(
            FindingKind.FORMAT,
            f"{where} (the signature value) is missing",
            f"{where}（签名值）不存在",
            where,
        )
        return
    try:
        signed_data, signer_info = load_signed_data(raw)
        content = signed_data["encap_content_info"]["content"].native
        result = check_signer(signed_data, signer_info)
        token = time_stamp_token(signer_info)
        claimed = signing_time(result.signed_attrs)
        value = bytes(signer_info["signature"].native)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        check.find(
            FindingKind.FORMAT,
            f"{where} is not a DER CMS SignedData of one signer: {exc}",
            f"{where} 不是单一签署者的 DER CMS SignedData：{exc}",
            where,
        )
        return
    digest = result.digest_algorithm
    check.values.update(
        signer_certificate=(
            result.certificate.public_bytes(Encoding.DER) if result.certificate else None
        ),
        signature_value=value,
        data_hash=result.message_digest or b"",
        claimed_time=claimed,
        time_stamp_token=token,
        signature_algorithm=result.signature_algorithm,
        digest_algorithm=digest,
    )
    matches = (
        digest in DIGESTS
        and result.message_digest is not None
        and hashlib.new(digest, xml).digest() == result.message_digest
        and (content is None or content == xml)
    )
    check.values["data_hash_matches"] = matches
    if not matches:
        check.find(
            FindingKind.INTEGRITY,
            f"{check.entry.file} is not what {where} signed: changed after signing",
            f"{check.entry.file} 与 {where} 签署的内容不符：签名后被改动",
            check.entry.file,
        )
    if result.signature_valid:
        check.values["signature_valid"] = True
    else:
        problem = result.problem or "mismatch"
        check.find(
            FindingKind.SIGNATURE,
            f"{where}: the signer's signature does not verify ({problem})",
            f"{where}：签署者的签名值无效（{problem}）",
            where,
        )
    _stamps(check, signature, page_ids)


def _stamps(check: _Check, signature: SignatureFile, page_ids: tuple[int, ...] | None) -> None:
    """Every StampAnnot's PageRef names a page."""
    pages: list[int] = []
    for annot in signature.stamp_annots:
        if page_ids is not None and annot.page_ref in page_ids:
            number = page_ids.index(annot.page_ref) + 1
            if number not in pages:
                pages.append(number)
        else:
            check.find(
                FindingKind.FORMAT,
                f"StampAnnot {annot.id} refers to page {annot.page_ref}, not a page of the "
                "document",
                f"StampAnnot {annot.id} 引用的页 {annot.page_ref} 不是文档中的页",
                check.entry.file,
            )
    check.values["pages"] = tuple(pages)


def check_signature(
    package: OfdPackage,
    index: int,
    entry: SignatureEntry,
    signature: SignatureFile | OfdMalformed | OfdTooLarge,
    list_path: str,
    later: set[str],
    page_ids: tuple[int, ...] | None,
) -> SignatureCheck:
    """The check of one signature (``signature``: its parsed Signature.xml, or why it could
    not be read); ``later``: the files of signatures made after it."""
    check = _Check(index, entry)
    if isinstance(signature, (OfdMalformed, OfdTooLarge)):
        check.find(
            FindingKind.FORMAT,
            f"{entry.file} cannot be read: {signature}",
            f"{entry.file} 无法读取：{signature}",
            entry.file,
        )
        return check.result()
    excused = {list_path, entry.file, signature.signed_value_file, *later}
    _references(check, package, signature, excused)
    if entry.type == SIGN_TYPE:
        _signed_value_cms(check, package, signature, page_ids)
    else:
        _signed_value(check, package, signature, page_ids)
    return check.result()


def check_ofd(data: bytes, limits: PackageLimits = DEFAULT_LIMITS) -> OfdCheckResult:
    """The technical check of every signature of the OFD in the untrusted ``data`` (see the
    module docstring). Raises OfdMalformed when the package, OFD.xml or the signature list
    cannot be read safely, OfdTooLarge past a limit; anything wrong with one signature is a
    finding of its result."""
    return check_package(read_package(data, limits))


def check_package(package: OfdPackage) -> OfdCheckResult:
    """:func:`check_ofd` of a package already read within limits (a caller that also reads
    the document, e.g. its attachments, unzips it once)."""
    location = signature_list_location(package)
    page_ids = _page_ids(package)
    page_count = len(page_ids) if page_ids is not None else 0
    if location is None:
        return OfdCheckResult(len(package), page_count, None)
    listing = read_signature_list(package, location)
    outcomes: list[SignatureFile | OfdMalformed | OfdTooLarge] = []
    for entry in listing.entries:
        try:
            outcomes.append(read_signature(package, entry.file, location))
        except (OfdMalformed, OfdTooLarge) as error:
            outcomes.append(error)
    checks: list[SignatureCheck] = []
    later: set[str] = set()  # the files of the signatures after the one checked
    for index in reversed(range(len(listing.entries))):
        entry, outcome = listing.entries[index], outcomes[index]
        checks.append(
            check_signature(package, index, entry, outcome, location, set(later), page_ids)
        )
        parsed = outcome if isinstance(outcome, SignatureFile) else None
        later |= _own_files(package, entry, parsed)
    return OfdCheckResult(len(package), page_count, location, tuple(reversed(checks)))
