"""Database-free checks of CMS signers and RFC 3161 time-stamp tokens, the one implementation
the verifier (:mod:`verify.seal_signatures`) and the licence checks (:mod:`license.ofd_check`)
share.

:func:`load_signed_data` opens a SignedData of one signer; :func:`signing_time` and
:func:`time_stamp_token` read its claimed time and its signature time-stamp.
:func:`check_signer` checks one CMS SignerInfo: its signer's certificate (in the SignedData or
among ``extra``), the digest and signature algorithms (SHA-2, and SM3 for SM2-with-SM3 as our
SM2 TSA signs) and the signature over the signed attributes. :func:`check_token` checks a
TimeStampToken over some bytes: the TSTInfo's message imprint (SHA-2 or SM3, OID
1.2.156.10197.1.401) over them, the content digest of the signed attributes and the TSA's
signature; it answers genTime, the TSA's certificate and the certificates the token carries.
Whether that certificate is trusted (chain, EKU, validity at genTime) is the caller's question:
each has its own roots and reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from ca.path import public_key_of, signature_verifies
from hsm.errors import InvalidSm2PublicKey

SM3_OID = "1.2.156.10197.1.401"
SM2_SM3_OID = "1.2.156.10197.1.501"
HASHES = {"sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512"}
DIGESTS = (*HASHES, "sm3")
"""Digests of CMS signers and time-stamp imprints checked (SM3: our SM2 TSA's tokens)."""


def hash_of(name: str) -> Any:
    """The ``cryptography`` hash of ``name`` (None for SM3: SM2 verification hashes itself)."""
    from cryptography.hazmat.primitives import hashes

    return getattr(hashes, HASHES[name])() if name in HASHES else None


def digest_name(native: Any) -> str:
    """asn1crypto's digest algorithm name, ``sm3`` for the SM3 OID it does not know."""
    return "sm3" if native == SM3_OID else str(native)


def algorithm_name(name: str, digest: str) -> str:
    """asn1crypto's algorithm name as reports spell it (``ecdsa-with-SHA256`` …)."""
    size = digest.removeprefix("sha").upper()
    if name in ("ecdsa", f"{digest}_ecdsa"):
        return f"ecdsa-with-SHA{size}"
    if name in ("rsassa_pkcs1v15", "rsa", f"{digest}_rsa"):
        return f"sha{size}WithRSAEncryption"
    if name == "rsassa_pss":
        return "RSASSA-PSS"
    if name == SM2_SM3_OID:
        return "SM2-with-SM3"
    return name


@dataclass(frozen=True)
class SignerCheck:
    """The outcome of checking one CMS SignerInfo."""

    certificate: x509.Certificate | None
    digest_algorithm: str
    signature_algorithm: str
    message_digest: bytes | None
    signature_valid: bool
    signed_attrs: cms.CMSAttributes | None
    problem: str = ""


def signed_data_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    """The X.509 certificates a SignedData carries (unreadable ones left out)."""
    found: list[x509.Certificate] = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            try:
                found.append(x509.load_der_x509_certificate(choice.chosen.dump()))
            except ValueError:
                continue
    return found


def signer_certificate(
    signed_data: cms.SignedData, signer_info: cms.SignerInfo, extra: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The certificate ``signer_info``'s sid names, from the SignedData or ``extra``."""
    sid = signer_info["sid"]
    for cert in [*signed_data_certificates(signed_data), *extra]:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if (
                cert.serial_number == ias["serial_number"].native
                and cert.issuer.public_bytes() == ias["issuer"].dump()
            ):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            except x509.ExtensionNotFound:
                continue
            if ski.digest == sid.chosen.native:
                return cert
    return None


def check_signer(
    signed_data: cms.SignedData,
    signer_info: cms.SignerInfo,
    extra: Sequence[x509.Certificate] = (),
) -> SignerCheck:
    """Check one SignerInfo with signed attributes (see the module docstring); asn1crypto
    parses lazily, so a malformed structure may raise ValueError, TypeError or KeyError."""
    digest = digest_name(signer_info["digest_algorithm"]["algorithm"].native)
    sig_algo = signer_info["signature_algorithm"]
    sig_name = algorithm_name(str(sig_algo["algorithm"].native), digest)
    cert = signer_certificate(signed_data, signer_info, extra)
    attrs = signer_info["signed_attrs"]
    if not attrs or attrs.native is None:
        return SignerCheck(cert, digest, sig_name, None, False, None, "no signed attributes")
    message_digest: bytes | None = None
    for attr in attrs:
        if attr["type"].native == "message_digest":
            message_digest = attr["values"][0].native
    if digest not in DIGESTS:
        return SignerCheck(
            cert,
            digest,
            sig_name,
            message_digest,
            False,
            attrs,
            f"unsupported digest algorithm {digest}",
        )
    if cert is None:
        return SignerCheck(
            cert,
            digest,
            sig_name,
            message_digest,
            False,
            attrs,
            "the signer's certificate is not in the signature",
        )
    signed_bytes = attrs.untag().dump() if hasattr(attrs, "untag") else attrs.dump()
    signed_bytes = b"\x31" + signed_bytes[1:]
    try:
        public_key = public_key_of(cert)
    except (ValueError, UnsupportedAlgorithm, InvalidSm2PublicKey):
        public_key = None
    valid = public_key is not None and signature_verifies(
        public_key, signer_info["signature"].native, signed_bytes, hash_of(digest)
    )
    if sig_algo["algorithm"].native == "rsassa_pss":
        valid = False  # not produced by our key stores' CMS path; refuse rather than guess
    return SignerCheck(cert, digest, sig_name, message_digest, valid, attrs)


TIME_STAMP_TOKEN_OID = "1.2.840.113549.1.9.16.2.14"  # noqa: S105 - an OID
"""id-aa-timeStampToken: the unsigned attribute carrying a signature time-stamp (RFC 3161)."""


def load_signed_data(der: bytes) -> tuple[cms.SignedData, cms.SignerInfo]:
    """The SignedData of the DER ContentInfo ``der`` and its only SignerInfo. Raises
    ValueError when it is no SignedData or has not exactly one signer (asn1crypto parses
    lazily: a malformed part may raise ValueError, TypeError or KeyError later)."""
    content = cms.ContentInfo.load(bytes(der), strict=True)
    if content["content_type"].native != "signed_data":
        raise ValueError("not SignedData")
    signed_data = content["content"]
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise ValueError("exactly one signer expected")
    return signed_data, signer_infos[0]


def signing_time(attrs: cms.CMSAttributes | None) -> datetime | None:
    """The signer's claimed signing-time signed attribute (UTC; None when there is none)."""
    for attr in attrs or []:
        if attr["type"].native == "signing_time":
            value = attr["values"][0].native
            if not isinstance(value, datetime):
                return None
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def time_stamp_token(signer_info: cms.SignerInfo) -> bytes | None:
    """The DER signature time-stamp token among ``signer_info``'s unsigned attributes."""
    unsigned = signer_info["unsigned_attrs"]
    if not unsigned or unsigned.native is None:
        return None
    for attr in unsigned:
        if attr["type"].dotted == TIME_STAMP_TOKEN_OID:
            return bytes(attr["values"][0].dump())
    return None


class TokenUnreadable(ValueError):
    """The bytes are no RFC 3161 TimeStampToken (message in English)."""


@dataclass(frozen=True)
class TokenCheck:
    """What :func:`check_token` found. ``verifies``: the imprint, the content digest and the
    TSA's signature all hold (the TSA certificate's trust is still to be judged)."""

    gen_time: datetime
    info: tsp.TSTInfo
    imprint_matches: bool
    content_digest_matches: bool
    signer: SignerCheck
    certificates: tuple[x509.Certificate, ...]
    policy_oid: str
    serial_number: str

    @property
    def tsa_certificate(self) -> x509.Certificate | None:
        """The certificate that signed the token (None when it was not found)."""
        return self.signer.certificate

    @property
    def verifies(self) -> bool:
        return self.imprint_matches and self.content_digest_matches and self.signer.signature_valid


def check_token(
    token_der: bytes, imprinted: bytes, extra: Sequence[x509.Certificate] = ()
) -> TokenCheck:
    """Check the TimeStampToken ``token_der`` over ``imprinted`` (see the module docstring);
    ``extra``: TSA certificates to look for besides the token's own. Raises
    :class:`TokenUnreadable` when it is not one."""
    try:
        content = cms.ContentInfo.load(token_der)
        signed_data = content["content"]
        if content["content_type"].native != "signed_data":
            raise TokenUnreadable("the time-stamp is not a SignedData")
        encap = signed_data["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TokenUnreadable("the time-stamp holds no TSTInfo")
        tst_bytes = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_bytes)
        gen_time = tst["gen_time"].native
        imprint = tst["message_imprint"]
        imprint_alg = digest_name(imprint["hash_algorithm"]["algorithm"].native)
        imprint_value = imprint["hashed_message"].native
        policy = tst["policy"].dotted
        serial = f"{tst['serial_number'].native:X}"
        signer_info = signed_data["signer_infos"][0]
        signer = check_signer(signed_data, signer_info, extra)
        carried = tuple(signed_data_certificates(signed_data))
    except TokenUnreadable:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise TokenUnreadable(f"the time-stamp token does not parse: {exc}") from None
    if not isinstance(gen_time, datetime):
        raise TokenUnreadable("the time-stamp has no genTime")
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=UTC)
    imprint_ok = (
        imprint_alg in DIGESTS and hashlib.new(imprint_alg, imprinted).digest() == imprint_value
    )
    content_ok = (
        signer.message_digest is not None
        and signer.digest_algorithm in DIGESTS
        and hashlib.new(signer.digest_algorithm, tst_bytes).digest() == signer.message_digest
    )
    return TokenCheck(gen_time, tst, imprint_ok, content_ok, signer, carried, policy, serial)
