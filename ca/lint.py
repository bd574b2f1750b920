"""Fast structural checks on a TBS certificate before it is signed (the hot-path linter).

These catch what a profile or registry record could get wrong at issuance time, in
microseconds: serial number, validity inside the issuer's, subject not empty, RFC 5280 upper
bounds on name attributes, required extensions present exactly once, CA flag off. The thorough
linter (pkilint) runs over every profile in the tests.
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import keys, x509

from govtrust.errors import FailedPrecondition, PreconditionViolation
from hsm.errors import InvalidSm2PublicKey, InvalidSm2Signature, InvalidSm2SignerId
from hsm.sm2 import (
    EC_PUBLIC_KEY_OID,
    SM2_CURVE_OID,
    parse_public_key,
    verify_sm2_signature,
)

# DER of the SM3-with-SM2 AlgorithmIdentifier: the OID and no parameters (GM/T 0015 / 0006).
SM3_WITH_SM2_ALGORITHM = bytes.fromhex("300a06082a811ccf55018375")

# RFC 5280 Appendix A upper bounds (characters).
_UPPER_BOUNDS = {
    "common_name": 64,
    "organization_name": 64,
    "organizational_unit_name": 64,
    "serial_number": 64,
    "pseudonym": 128,
    "organization_identifier": 64,
    "country_name": 2,
}
_REQUIRED = ("key_identifier", "authority_key_identifier", "key_usage")


def lint_tbs(
    tbs: x509.TbsCertificate,
    *,
    issuer_not_before: datetime,
    issuer_not_after: datetime,
    end_entity: bool = True,
) -> list[str]:
    """Problems found in ``tbs`` (empty when it may be signed)."""
    problems: list[str] = []
    serial = tbs["serial_number"].native
    if serial <= 0:
        problems.append("serial number must be positive")
    if len(tbs["serial_number"].contents) > 20:
        problems.append("serial number longer than 20 octets")
    not_before = tbs["validity"]["not_before"].native
    not_after = tbs["validity"]["not_after"].native
    if not_after <= not_before:
        problems.append("notAfter is not after notBefore")
    if not_before < issuer_not_before or not_after > issuer_not_after:
        problems.append("validity exceeds the issuing CA's validity")
    subject = tbs["subject"]
    seen: set[str] = set()
    for rdn in subject.chosen:
        for atv in rdn:
            attr = atv["type"].native
            value = atv["value"].native
            bound = _UPPER_BOUNDS.get(attr)
            if isinstance(value, str):
                if not value.strip():
                    problems.append(f"subject {attr} is empty")
                if bound is not None and len(value) > bound:
                    problems.append(f"subject {attr} longer than {bound} characters")
            seen.add(attr)
    counts: dict[str, int] = {}
    for extension in tbs["extensions"]:
        name = extension["extn_id"].native
        counts[name] = counts.get(name, 0) + 1
    for name, count in counts.items():
        if count > 1:
            problems.append(f"extension {name} appears {count} times")
    for name in _REQUIRED:
        if name not in counts:
            problems.append(f"extension {name} is missing")
    if not seen and "subject_alt_name" not in counts:
        problems.append("empty subject without subjectAltName")
    if end_entity:
        for extension in tbs["extensions"]:
            if (
                extension["extn_id"].native == "basic_constraints"
                and extension["extn_value"].parsed["ca"].native
            ):
                problems.append("end-entity certificate with cA=TRUE")
    return problems


def lint_plan(
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    issuer_not_before: datetime,
    issuer_not_after: datetime,
    attributes: list[tuple[str, str]],
    has_san: bool,
) -> list[str]:
    """The hot-path checks on what goes into a TBS (before encoding and signing)."""
    problems: list[str] = []
    if serial <= 0 or serial.bit_length() > 159:
        problems.append("serial number must be positive and at most 20 octets")
    if not_after <= not_before:
        problems.append("notAfter is not after notBefore")
    if not_before < issuer_not_before or not_after > issuer_not_after:
        problems.append("validity exceeds the issuing CA's validity")
    for attr, value in attributes:
        bound = _UPPER_BOUNDS.get(attr)
        if bound is not None and len(value) > bound:
            problems.append(f"subject {attr} longer than {bound} characters")
        if attr in ("country_name", "serial_number") and not value.isascii():
            problems.append(f"subject {attr} must be PrintableString")
    if not attributes and not has_san:
        problems.append("empty subject without subjectAltName")
    return problems


def require_clean(problems: list[str], subject: str) -> None:
    """Raise ``FailedPrecondition`` listing the problems (nothing is signed or stored)."""
    if problems:
        raise FailedPrecondition(
            "the certificate would violate RFC 5280: " + "; ".join(problems),
            [PreconditionViolation("LINT", subject, p) for p in problems],
        )


def lint_sm2_tbs(algorithm_der: bytes, spki_der: bytes) -> list[str]:
    """SM2 problems of a TBS about to be signed by an SM2 CA: the signature AlgorithmIdentifier
    must be SM3-with-SM2 ``1.2.156.10197.1.501`` without parameters, and an SM2 subject key
    id-ecPublicKey on curve ``1.2.156.10197.1.301`` with a valid uncompressed point."""
    problems: list[str] = []
    if algorithm_der != SM3_WITH_SM2_ALGORITHM:
        problems.append("signature algorithm is not SM3-with-SM2 without parameters")
    spki = keys.PublicKeyInfo.load(spki_der)
    algorithm = spki["algorithm"]
    if algorithm["algorithm"].dotted == EC_PUBLIC_KEY_OID:
        parameters = algorithm["parameters"]
        if parameters.name == "named" and parameters.chosen.dotted == SM2_CURVE_OID:
            try:
                parse_public_key(spki_der)
            except InvalidSm2PublicKey as exc:
                problems.append(f"subject SM2 public key: {exc}")
    return problems


def lint_sm2_signature(issuer_spki_der: bytes, tbs: bytes, signature: bytes) -> list[str]:
    """After signing: the SM2 signature must verify with the issuer's key and the default
    signer ID 1234567812345678 (what GM/T 0015 relying parties use)."""
    try:
        verify_sm2_signature(issuer_spki_der, None, tbs, signature)
    except (InvalidSm2PublicKey, InvalidSm2Signature, InvalidSm2SignerId) as exc:
        return [f"the SM2 signature does not verify with the default signer ID: {exc}"]
    return []
