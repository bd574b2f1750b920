"""GB/T 38540-2020 ("v4") e-seal structures with asn1crypto: SESeal and SES_Signature.

* :func:`build_seal` assembles ``SES_SealInfo`` (header ``ES``/4, seal id, properties with the
  seal certificate in the cert list, the picture) and has the seal maker sign its DER through
  the key store — the result is a ``SESeal`` carrying the maker's certificate.
* :func:`parse_seal` / :func:`verify_seal` read one back and check the maker's signature.
* :func:`build_signature` / :func:`verify_signature` make and check an ``SES_Signature`` over a
  data hash (``SignData``): ``TBS_Sign`` signed by the seal's key, optionally time-stamped.

Algorithms are a table (:data:`SIGNATURE_OIDS`): SM2-with-SM3 (the standard's algorithm, OID
1.2.156.10197.1.501, signer ID 1234567812345678, verified through :mod:`hsm.sm2`), ECDSA and
RSA. Signatures are stored as the key store returns them (ECDSA/SM2: DER ``SEQUENCE {r, s}``),
as the standard requires. ``dataHash`` is the digest of the signature algorithm (SM3 under
SM2); one of another digest is refused (:func:`check_data_hash`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import core, x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hsm.errors import KeyStoreError
from hsm.keystore import KeyStore, SignatureScheme
from hsm.sm2 import verify_sm2_signature
from seal.errors import DataHashMismatch, SealStructureError

SES_VERSION = 4
SES_ID = "ES"
SM2_SM3_OID = "1.2.156.10197.1.501"

SIGNATURE_OIDS: dict[SignatureScheme | str, str] = {
    SignatureScheme.ECDSA_SHA256: "1.2.840.10045.4.3.2",
    SignatureScheme.ECDSA_SHA384: "1.2.840.10045.4.3.3",
    SignatureScheme.RSA_PKCS1V15_SHA256: "1.2.840.113549.1.1.11",
    SignatureScheme.RSA_PKCS1V15_SHA384: "1.2.840.113549.1.1.12",
    SignatureScheme.SM2_SM3: SM2_SM3_OID,
}
_OID_DIGEST = {
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    SM2_SM3_OID: "sm3",
}
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sm3": 32}


def data_digest(oid: str) -> str:
    """The dataHash digest (hashlib name) that goes with signature algorithm ``oid``."""
    digest = _OID_DIGEST.get(oid)
    if digest is None:
        raise SealStructureError.bad(f"unknown signature algorithm {oid}")
    return digest


def check_data_hash(oid: str, data_hash: bytes, data: bytes | None = None) -> None:
    """Refuse a dataHash that is not the signature algorithm's digest: of the wrong size, or
    (given ``data``) the digest of ``data`` under another algorithm, e.g. a SHA-256 dataHash
    under SM2-with-SM3. :class:`SealStructureError` names both algorithms."""
    digest = data_digest(oid)
    if len(data_hash) != _DIGEST_SIZES[digest]:
        raise DataHashMismatch.of(
            f"dataHash has {len(data_hash)} bytes; the signature algorithm {oid} needs a "
            f"{digest.upper()} dataHash of {_DIGEST_SIZES[digest]} bytes"
        )
    if data is None or hashlib.new(digest, data).digest() == data_hash:
        return
    for other in _DIGEST_SIZES:
        if other != digest and hashlib.new(other, data).digest() == data_hash:
            raise DataHashMismatch.of(
                f"dataHash is {other.upper()} but the signature algorithm {oid} needs "
                f"{digest.upper()}"
            )


# --- ASN.1 --------------------------------------------------------------------------------------


class SesHeader(core.Sequence):  # type: ignore[misc]
    """SES_Header ::= SEQUENCE { ID IA5String, version INTEGER, Vid IA5String }"""

    _fields = [("id", core.IA5String), ("version", core.Integer), ("vid", core.IA5String)]  # noqa: RUF012


class CertDigestObj(core.Sequence):  # type: ignore[misc]
    """CertDigestObj ::= SEQUENCE { type PrintableString, value OCTET STRING }"""

    _fields = [("type", core.PrintableString), ("value", core.OctetString)]  # noqa: RUF012


class CertInfoList(core.SequenceOf):  # type: ignore[misc]
    """SEQUENCE OF OCTET STRING (DER certificates)."""

    _child_spec = core.OctetString


class CertDigestList(core.SequenceOf):  # type: ignore[misc]
    """SEQUENCE OF CertDigestObj."""

    _child_spec = CertDigestObj


class SesEsPropertyInfo(core.Sequence):  # type: ignore[misc]
    """SES_ESPropertyInfo. ``certList`` is a CHOICE of two untagged SEQUENCE OFs, which only
    ``certListType`` tells apart, so it is kept as ``Any`` and read per type."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("cert_list_type", core.Integer),
        ("cert_list", core.Any),
        ("create_date", core.GeneralizedTime),
        ("valid_start", core.GeneralizedTime),
        ("valid_end", core.GeneralizedTime),
    ]


class SesEsPictrueInfo(core.Sequence):  # type: ignore[misc]
    """SES_ESPictrueInfo (sic, as the standard spells it)."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("type", core.IA5String),
        ("data", core.OctetString),
        ("width", core.Integer),
        ("height", core.Integer),
    ]


class ExtData(core.Sequence):  # type: ignore[misc]
    """ExtData ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
    extnValue OCTET STRING }"""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),
        ("extn_value", core.OctetString),
    ]


class ExtensionDatas(core.SequenceOf):  # type: ignore[misc]
    """SEQUENCE OF ExtData."""

    _child_spec = ExtData


class SesSealInfo(core.Sequence):  # type: ignore[misc]
    """SES_SealInfo."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("header", SesHeader),
        ("es_id", core.IA5String),
        ("property", SesEsPropertyInfo),
        ("picture", SesEsPictrueInfo),
        ("ext_datas", ExtensionDatas, {"optional": True}),
    ]


class SeSeal(core.Sequence):  # type: ignore[misc]
    """SESeal ::= SEQUENCE { eSealInfo SES_SealInfo, cert OCTET STRING, signAlgID OID,
    signedValue BIT STRING }"""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("e_seal_info", SesSealInfo),
        ("cert", core.OctetString),
        ("sign_alg_id", core.ObjectIdentifier),
        ("signed_value", core.OctetBitString),
    ]


class TbsSign(core.Sequence):  # type: ignore[misc]
    """TBS_Sign."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("version", core.Integer),
        ("eseal", SeSeal),
        ("time_info", core.GeneralizedTime),
        ("data_hash", core.OctetBitString),
        ("property_info", core.IA5String),
        ("ext_datas", ExtensionDatas, {"explicit": 0, "optional": True}),
    ]


class SesSignature(core.Sequence):  # type: ignore[misc]
    """SES_Signature."""

    _fields = [  # noqa: RUF012 - asn1crypto schema
        ("to_sign", TbsSign),
        ("cert", core.OctetString),
        ("signature_alg_id", core.ObjectIdentifier),
        ("signature", core.OctetBitString),
        ("time_stamp", core.OctetBitString, {"explicit": 0, "optional": True}),
    ]


# --- building and verifying ---------------------------------------------------------------------


@dataclass(frozen=True)
class SealContent:
    """What goes into SES_SealInfo."""

    seal_id: str
    kind_code: int
    name: str
    certificates: tuple[bytes, ...]  # DER, the seal certificate first
    created: datetime
    valid_start: datetime
    valid_end: datetime
    picture_png: bytes
    width_mm: int
    height_mm: int
    vendor_id: str = "govtrust"


@dataclass(frozen=True)
class Maker:
    """The seal maker (制章者): a key in the key store and its certificate."""

    keystore: KeyStore
    key_id: str
    scheme: SignatureScheme
    certificate_der: bytes


def _gt(moment: datetime) -> core.GeneralizedTime:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return core.GeneralizedTime(moment.astimezone(UTC).replace(microsecond=0))


def _ascii(value: str, field: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise SealStructureError.field(field, "must be printable ASCII (an IA5String)")
    return value


def seal_info(content: SealContent) -> SesSealInfo:
    """The unsigned SES_SealInfo of ``content``."""
    return SesSealInfo(
        {
            "header": {
                "id": SES_ID,
                "version": SES_VERSION,
                "vid": _ascii(content.vendor_id, "vendor_id"),
            },
            "es_id": _ascii(content.seal_id, "seal_id"),
            "property": {
                "type": content.kind_code,
                "name": content.name,
                "cert_list_type": 1,
                "cert_list": CertInfoList(list(content.certificates)),
                "create_date": _gt(content.created),
                "valid_start": _gt(content.valid_start),
                "valid_end": _gt(content.valid_end),
            },
            "picture": {
                "type": "PNG",
                "data": content.picture_png,
                "width": content.width_mm,
                "height": content.height_mm,
            },
        }
    )


def signature_algorithm_oid(scheme: SignatureScheme) -> str:
    """The GB/T 38540 signature algorithm identifier of ``scheme`` (SM2-with-SM3 for SM2)."""
    try:
        return SIGNATURE_OIDS[scheme]
    except KeyError:
        raise SealStructureError.field(
            "scheme", f"{scheme.value} has no GB/T 38540 algorithm identifier"
        ) from None


def build_seal(content: SealContent, maker: Maker) -> bytes:
    """The DER SESeal: SES_SealInfo signed by the maker through the key store."""
    info = seal_info(content)
    signature = maker.keystore.sign(maker.key_id, info.dump(), maker.scheme)
    return SeSeal(  # type: ignore[no-any-return]
        {
            "e_seal_info": info,
            "cert": maker.certificate_der,
            "sign_alg_id": signature_algorithm_oid(maker.scheme),
            "signed_value": signature,
        }
    ).dump()


def _verify_raw(certificate_der: bytes, oid: str, signature: bytes, data: bytes) -> None:
    digest = data_digest(oid)
    if digest == "sm3":
        _verify_sm2(certificate_der, signature, data)
        return
    from cryptography import x509 as cx509

    try:
        public_key = cx509.load_der_x509_certificate(certificate_der).public_key()
    except ValueError as exc:
        raise SealStructureError.bad(f"the certificate does not parse: {exc}") from None
    algorithm = hashes.SHA256() if digest == "sha256" else hashes.SHA384()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            raise SealStructureError.bad("unsupported public key type")
    except InvalidSignature:
        raise SealStructureError.bad("the signature does not verify") from None


def verify_value(certificate_der: bytes, oid: str, signature: bytes, data: bytes) -> None:
    """Check one signature value of algorithm ``oid`` over ``data`` by the certificate's key
    (SM2-with-SM3 with the default signer ID, ECDSA or RSA); :class:`SealStructureError` when
    it does not verify. Lets a verifier report the signer's and the maker's signatures
    separately instead of stopping at the first, as :func:`verify_signature` does."""
    _verify_raw(certificate_der, oid, signature, data)


def _verify_sm2(certificate_der: bytes, signature: bytes, data: bytes) -> None:
    """An SM2-with-SM3 signature (default signer ID) by the certificate's SM2 key."""
    try:
        spki = x509.Certificate.load(certificate_der)["tbs_certificate"]["subject_public_key_info"]
        spki_der = spki.dump()
    except (ValueError, TypeError, KeyError) as exc:
        raise SealStructureError.bad(f"the certificate does not parse: {exc}") from None
    try:
        verify_sm2_signature(spki_der, None, data, signature)
    except KeyStoreError as exc:
        raise SealStructureError.bad(f"the SM2 signature does not verify: {exc}") from None


@dataclass(frozen=True)
class ParsedSeal:
    """A parsed SESeal: the fields callers need and the raw structure."""

    seal_id: str
    kind_code: int
    name: str
    certificates: tuple[bytes, ...]
    created: datetime
    valid_start: datetime
    valid_end: datetime
    picture_type: str
    picture: bytes
    width_mm: int
    height_mm: int
    maker_certificate: bytes
    algorithm: str
    structure: SeSeal


def parse_seal(der: bytes) -> ParsedSeal:
    """Parse a DER SESeal (v4); ``SealStructureError`` when it is not one."""
    try:
        seal = SeSeal.load(der, strict=True)
        info = seal["e_seal_info"]
        header = info["header"]
        if header["id"].native != SES_ID or header["version"].native != SES_VERSION:
            raise SealStructureError.bad("not a GB/T 38540 v4 seal (header ID/version)")
        prop = info["property"]
        list_type = prop["cert_list_type"].native
        if list_type != 1:
            raise SealStructureError.bad("only certificate lists (certListType 1) are supported")
        certs = CertInfoList.load(prop["cert_list"].dump())
        picture = info["picture"]
        return ParsedSeal(
            seal_id=info["es_id"].native,
            kind_code=prop["type"].native,
            name=prop["name"].native,
            certificates=tuple(c.native for c in certs),
            created=prop["create_date"].native,
            valid_start=prop["valid_start"].native,
            valid_end=prop["valid_end"].native,
            picture_type=picture["type"].native,
            picture=picture["data"].native,
            width_mm=picture["width"].native,
            height_mm=picture["height"].native,
            maker_certificate=seal["cert"].native,
            algorithm=seal["sign_alg_id"].dotted,
            structure=seal,
        )
    except SealStructureError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SealStructureError.bad(f"not a DER SESeal: {exc}") from None


def verify_seal(der: bytes, *, trusted_makers: tuple[bytes, ...] = ()) -> ParsedSeal:
    """Parse and check the maker's signature over DER(SES_SealInfo) (and, when given, that the
    maker's certificate is one of ``trusted_makers``)."""
    parsed = parse_seal(der)
    seal = parsed.structure
    if trusted_makers and parsed.maker_certificate not in trusted_makers:
        raise SealStructureError.bad("the seal maker's certificate is not trusted")
    _verify_raw(
        parsed.maker_certificate,
        parsed.algorithm,
        seal["signed_value"].native,
        seal["e_seal_info"].dump(force=False),
    )
    return parsed


# --- SES_Signature ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureRequest:
    """What to sign: a data hash (SHA-256 for ECDSA/RSA, SM3 for SM2) with a seal."""

    seal_der: bytes
    data_hash: bytes
    property_info: str
    signing_time: datetime


def build_signature(
    request: SignatureRequest,
    keystore: KeyStore,
    key_id: str,
    scheme: SignatureScheme,
    certificate_der: bytes,
    *,
    timestamp: object | None = None,
) -> bytes:
    """A DER SES_Signature by the seal's key. ``timestamp`` is a callable taking the signature
    value and returning a DER RFC 3161 TimeStampToken (put in ``timeStamp``). The data hash
    must be the scheme's digest (SM3 under SM2): :func:`check_data_hash`."""
    check_data_hash(signature_algorithm_oid(scheme), request.data_hash)
    tbs = TbsSign(
        {
            "version": SES_VERSION,
            "eseal": SeSeal.load(request.seal_der),
            "time_info": _gt(request.signing_time),
            "data_hash": request.data_hash,
            "property_info": _ascii(request.property_info, "property_info"),
        }
    )
    signature = keystore.sign(key_id, tbs.dump(), scheme)
    value: dict[str, object] = {
        "to_sign": tbs,
        "cert": certificate_der,
        "signature_alg_id": signature_algorithm_oid(scheme),
        "signature": signature,
    }
    if timestamp is not None:
        value["time_stamp"] = timestamp(signature)  # type: ignore[operator]
    return SesSignature(value).dump()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ParsedSignature:
    """A verified SES_Signature."""

    seal: ParsedSeal
    data_hash: bytes
    property_info: str
    signing_time: datetime
    signer_certificate: bytes
    time_stamp_token: bytes | None


def verify_signature(der: bytes, *, data: bytes | None = None) -> ParsedSignature:
    """Check an SES_Signature: the signer's signature over TBS_Sign, the embedded seal's maker
    signature, that the signer's certificate is in the seal's cert list, and (when ``data`` is
    given) that ``dataHash`` is its digest."""
    try:
        sig = SesSignature.load(der, strict=True)
        tbs = sig["to_sign"]
        signer = sig["cert"].native
        oid = sig["signature_alg_id"].dotted
        value = sig["signature"].native
        seal_der = tbs["eseal"].dump()
        data_hash = tbs["data_hash"].native
        signing_time = tbs["time_info"].native
        property_info = tbs["property_info"].native
        token = sig["time_stamp"].native if sig["time_stamp"].native is not None else None
    except SealStructureError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SealStructureError.bad(f"not a DER SES_Signature: {exc}") from None
    if tbs["version"].native != SES_VERSION:
        raise SealStructureError.bad("not a v4 SES_Signature")
    seal = verify_seal(seal_der)
    if signer not in seal.certificates:
        raise SealStructureError.bad("the signer's certificate is not in the seal's cert list")
    check_data_hash(oid, data_hash, data)
    _verify_raw(signer, oid, value, tbs.dump())
    if data is not None and hashlib.new(data_digest(oid), data).digest() != data_hash:
        raise SealStructureError.bad("the data does not match dataHash")
    if isinstance(signing_time, datetime) and signing_time.tzinfo is None:
        signing_time = signing_time.replace(tzinfo=UTC)
    return ParsedSignature(seal, data_hash, property_info, signing_time, signer, token)


def certificate_subject(der: bytes) -> str:
    """Human-readable subject of a DER certificate (for messages)."""
    return str(x509.Certificate.load(der).subject.human_friendly)
