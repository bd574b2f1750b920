"""Build and sign X.509 certificates with asn1crypto (the TBS step of issuance).

Used for our own hierarchy (root, issuing CAs, responders, TSA) and for end-entity certificates;
the profile decides the extensions, this module only assembles and signs them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from asn1crypto import core, keys, x509

from ca import der
from ca.config import CaConfig
from ca.extensions import OCSP_NOCHECK_OID, raw_extension
from ca.lint import lint_sm2_signature, lint_sm2_tbs, require_clean
from ca.profiles import Profile, resolve_oid
from ca.signing import SigningKey


def random_serial() -> int:
    """A positive serial number of 128 random bits (RFC 5280: ≤ 20 octets; CA/B: ≥ 64 bits)."""
    while True:
        serial = secrets.randbits(128)
        if serial >> 64:  # never a short (or zero) serial
            return serial


def serial_hex(serial: int) -> str:
    """Upper-case hex without separators, the form we store and show."""
    return f"{serial:X}"


def key_identifier(spki: keys.PublicKeyInfo) -> bytes:
    """RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING."""
    digest: bytes = spki.sha1
    return digest


_PRINTABLE_ATTRIBUTES = frozenset({"country_name", "serial_number", "dn_qualifier"})
_ATTRIBUTE_OIDS = {
    "country_name": "2.5.4.6",
    "common_name": "2.5.4.3",
    "surname": "2.5.4.4",
    "serial_number": "2.5.4.5",
    "organization_name": "2.5.4.10",
    "organizational_unit_name": "2.5.4.11",
    "given_name": "2.5.4.42",
    "pseudonym": "2.5.4.65",
    "organization_identifier": "2.5.4.97",
}
_ATTRIBUTE_OID_DER = {k: core.ObjectIdentifier(v).dump() for k, v in _ATTRIBUTE_OIDS.items()}
_SHORT_NAMES = {
    "country_name": "C",
    "common_name": "CN",
    "surname": "SN",
    "serial_number": "serialNumber",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "given_name": "GN",
    "pseudonym": "pseudonym",
    "organization_identifier": "organizationIdentifier",
}


def encode_name(attributes: Sequence[tuple[str, str]]) -> bytes:
    """DER of an X.509 Name with one attribute per RDN in the given order.

    PrintableString for country, serialNumber and dnQualifier (as X.520 requires), UTF8String
    for every other attribute (RFC 5280 4.1.2.6).
    """
    rdns = []
    for attr, value in attributes:
        if attr in _PRINTABLE_ATTRIBUTES:
            encoded = der.tlv(0x13, value.encode("ascii"))
        else:
            encoded = der.tlv(0x0C, value.encode("utf-8"))
        rdns.append(der.tlv(0x31, der.seq(_ATTRIBUTE_OID_DER[attr], encoded)))
    return der.seq(*rdns)


def name_text(attributes: Sequence[tuple[str, str]]) -> str:
    """An RFC 4514-style string of a name (most significant RDN last)."""
    return ", ".join(f"{_SHORT_NAMES[a]}={v}" for a, v in reversed(attributes))


def ordered_name(attributes: Sequence[tuple[str, str]]) -> x509.Name:
    """:func:`encode_name` as an asn1crypto ``Name``."""
    return x509.Name.load(encode_name(attributes))


def san_extension(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> bytes:
    """DER of a subjectAltName extension with DNS names and IP addresses."""
    import ipaddress

    names = [der.tlv(0x82, n.encode("ascii")) for n in dns_names]
    names += [der.tlv(0x87, ipaddress.ip_address(a).packed) for a in ip_addresses]
    return der.seq(b"\x06\x03\x55\x1d\x11", der.octet_string(der.seq(*names)))


def ext(name: str, value: object, *, critical: bool = False) -> x509.Extension:
    """An extension asn1crypto knows, by its asn1crypto name."""
    return x509.Extension({"extn_id": name, "critical": critical, "extn_value": value})


def basic_constraints(ca: bool, path_len: int | None = None) -> x509.Extension:
    """basicConstraints (critical on CA certificates, absent on end entities)."""
    value: dict[str, object] = {"ca": ca}
    if path_len is not None:
        value["path_len_constraint"] = path_len
    return ext("basic_constraints", value, critical=True)


def distribution_points(url: str) -> list[dict[str, object]]:
    """A CRLDistributionPoints value with one URI."""
    return [
        {
            "distribution_point": x509.DistributionPointName(
                name="full_name",
                value=[x509.GeneralName(name="uniform_resource_identifier", value=url)],
            )
        }
    ]


def status_extensions(config: CaConfig, issuer: str, *, ocsp: bool = True) -> list[x509.Extension]:
    """CRL distribution point and AIA (OCSP + caIssuers) for a certificate issued by ``issuer``."""
    aia: list[dict[str, object]] = []
    if ocsp:
        aia.append(
            {
                "access_method": "ocsp",
                "access_location": x509.GeneralName(
                    name="uniform_resource_identifier", value=config.ocsp_url()
                ),
            }
        )
    aia.append(
        {
            "access_method": "ca_issuers",
            "access_location": x509.GeneralName(
                name="uniform_resource_identifier", value=config.ca_cert_url(issuer)
            ),
        }
    )
    return [
        ext("crl_distribution_points", distribution_points(config.crl_url(issuer))),
        ext("authority_information_access", aia),
    ]


def profile_extensions(
    profile: Profile,
    config: CaConfig,
    key_family: str,
) -> list[x509.Extension]:
    """Key usage, EKU, policies and OCSP no-check as the profile says (not subject-specific);
    ``key_family`` is ``ec`` or ``rsa`` (RSA TLS keys may also encipher keys)."""
    usage = set(profile.key_usage)
    if profile.rsa_key_encipherment and key_family == "rsa":
        usage.add("key_encipherment")
    result = [ext("key_usage", usage, critical=True)]
    if profile.extended_key_usage:
        result.append(
            ext(
                "extended_key_usage",
                list(profile.extended_key_usage),
                critical=profile.eku_critical,
            )
        )
    if profile.policies:
        result.append(
            ext(
                "certificate_policies",
                [{"policy_identifier": resolve_oid(p, config.oid_arc)} for p in profile.policies],
            )
        )
    if profile.subject_kind == "responder":
        result.append(raw_extension(OCSP_NOCHECK_OID, b"\x05\x00"))
    return result


def _der(value: x509.Extension | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.dump()


def build_certificate(
    *,
    signer: SigningKey,
    issuer_name: x509.Name | bytes,
    issuer_key_id: bytes,
    subject: x509.Name | bytes,
    spki: keys.PublicKeyInfo | bytes,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    extensions: Sequence[x509.Extension | bytes],
    ski_value: bytes | None = None,
) -> bytes:
    """Assemble a v3 TBSCertificate (SKI and AKI added first) and sign it in the key store.

    Parts may be given pre-encoded (bytes): issuance passes cached DER for everything that
    does not depend on the subject, so building costs microseconds. Returns the certificate DER.
    """
    if ski_value is None:
        spki_obj = keys.PublicKeyInfo.load(spki) if isinstance(spki, bytes) else spki
        ski_value = key_identifier(spki_obj)
    spki_der = spki if isinstance(spki, bytes) else spki.dump()
    ski = der.seq(b"\x06\x03\x55\x1d\x0e", der.octet_string(der.octet_string(ski_value)))
    aki = der.seq(b"\x06\x03\x55\x1d\x23", der.octet_string(der.seq(der.tlv(0x80, issuer_key_id))))
    algorithm = signer.algorithm_der
    if signer.is_sm2:
        require_clean(lint_sm2_tbs(algorithm, spki_der), "certificate")
    tbs = der.seq(
        b"\xa0\x03\x02\x01\x02",  # [0] version v3
        der.integer(serial),
        algorithm,
        issuer_name if isinstance(issuer_name, bytes) else issuer_name.dump(),
        der.seq(der.x509_time(not_before), der.x509_time(not_after)),
        subject if isinstance(subject, bytes) else subject.dump(),
        spki_der,
        der.tlv(0xA3, der.seq(ski, aki, *[_der(e) for e in extensions])),
    )
    signature = signer.sign(tbs)
    if signer.is_sm2:
        require_clean(lint_sm2_signature(signer.public_key_der, tbs, signature), "certificate")
    return der.seq(tbs, algorithm, der.bit_string(signature))
