"""Certificate paths, the one validator: signatures, issuer links, CA rules and path building.

No network and no revocation here (the callers ask the status list, the registry, OCSP or CRL
separately). Two entry points share the same rules:

* :func:`validate_chain` — a chain as presented (leaf first, e.g. a JWS ``x5c``) must end at one
  of the given roots; raises :class:`PathInvalid` naming the :class:`PathProblem` (licences);
* :func:`build_path` — build a path from a leaf through candidate issuers to an anchor and say
  what, if anything, is wrong and where (``verify.certificates``, which caches links and paths).

:func:`signature_verifies` is the one place that verifies a raw X.509-style signature (OCSP
responses, CRLs, seal signatures, certificate links); SM3-with-SM2 (GB/T 32918.2, default signer
ID 1234567812345678) goes through :mod:`hsm.sm2`, the one SM2 implementation, since
``cryptography`` loads no SM2 key (:class:`Sm2PublicKey` stands for one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from asn1crypto import core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID

from hsm.errors import InvalidSm2PublicKey, InvalidSm2Signature, InvalidSm2SignerId
from hsm.sm2 import SM2_CURVE_OID, SM3_WITH_SM2_OID, parse_public_key, verify_sm2_point

_SM2_CURVE_DER = bytes(core.ObjectIdentifier(SM2_CURVE_OID).dump())
MAX_CHAIN = 6  # certificates in a presented chain (validate_chain)


class PathProblem(StrEnum):
    """What is wrong with a chain or path."""

    NO_CHAIN = "no_chain"  # nothing to validate
    UNTRUSTED = "untrusted"  # no link to a trusted root, or a link that does not hold
    EXPIRED = "expired"  # a certificate outside its validity at the time asked
    WRONG_LEAF = "wrong_leaf"  # the leaf is a CA or may not make signatures
    MALFORMED = "malformed"  # a certificate's fields cannot be read
    BAD_SIGNATURE = "bad_signature"  # (build_path) no candidate issuer's key verifies the link
    NOT_CA = "not_ca"  # (build_path) the issuer is not a CA allowed to sign certificates
    PATH_LENGTH = "path_length"  # (build_path) a basicConstraints pathLenConstraint is violated


class PathInvalid(Exception):
    """A chain that does not validate: ``problem`` and a message naming the certificate."""

    def __init__(self, problem: PathProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class Sm2PublicKey:
    """An SM2 public key (an uncompressed point checked on the curve), which ``cryptography``
    cannot load; :func:`public_key_of` returns one for an SM2 certificate."""

    point: bytes


def is_sm2_key(cert: x509.Certificate) -> bool:
    """The certificate's SubjectPublicKeyInfo names the SM2 curve (1.2.156.10197.1.301)."""
    if _SM2_CURVE_DER not in cert.tbs_certificate_bytes:
        return False  # cheap: most keys are not SM2
    try:
        return _spki_curve(cert) == SM2_CURVE_OID
    except (ValueError, TypeError, KeyError):
        return False


def _spki_curve(cert: x509.Certificate) -> str:
    info = keys.PublicKeyInfo.load(_spki_der(cert))
    params = info["algorithm"]["parameters"]
    if isinstance(params, keys.ECDomainParameters) and params.name == "named":
        return str(params.chosen.dotted)
    return ""


def _spki_der(cert: x509.Certificate) -> bytes:
    tbs = asn1_x509.TbsCertificate.load(cert.tbs_certificate_bytes)
    return bytes(tbs["subject_public_key_info"].dump())


def public_key_of(cert: x509.Certificate) -> Any:
    """The certificate's public key: a ``cryptography`` key, or an :class:`Sm2PublicKey`.

    Raises :class:`~hsm.errors.InvalidSm2PublicKey` for an SM2 key whose point is truncated,
    compressed or off the curve, ``UnsupportedAlgorithm``/``ValueError`` for other unreadable keys.
    """
    if is_sm2_key(cert):
        return Sm2PublicKey(parse_public_key(_spki_der(cert)))
    return cert.public_key()


_SIGNATURE_NAMES = {
    SM3_WITH_SM2_OID: "SM3withSM2",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
}


def signature_algorithm_name(cert: x509.Certificate) -> str:
    """The certificate's signature algorithm by name (``SM3withSM2``, ``ecdsa-with-SHA256``,
    ``sha256WithRSAEncryption``, …; the dotted OID when unknown)."""
    dotted = cert.signature_algorithm_oid.dotted_string
    return _SIGNATURE_NAMES.get(dotted, dotted)


def key_algorithm_name(cert: x509.Certificate) -> str:
    """The certificate's key algorithm by name: ``SM2``, ``EC P-256``, ``RSA 2048``,
    ``Ed25519``, … (the dotted OID when the key cannot be read)."""
    if is_sm2_key(cert):
        return "SM2"
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return cert.public_key_algorithm_oid.dotted_string
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {curve.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return cert.public_key_algorithm_oid.dotted_string


def signature_verifies(
    public_key: Any, signature: bytes, data: bytes, hash_algorithm: hashes.HashAlgorithm | None
) -> bool:
    """Verify a raw X.509-style signature (ECDSA, RSA PKCS#1 v1.5, EdDSA, SM3-with-SM2 with the
    default signer ID for an :class:`Sm2PublicKey`); False otherwise."""
    if isinstance(public_key, Sm2PublicKey):
        try:
            verify_sm2_point(public_key.point, None, data, signature)
        except (InvalidSm2Signature, InvalidSm2SignerId, InvalidSm2PublicKey):
            return False
        return True
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey) and hash_algorithm is not None:
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def signed_data_verifies(
    signer: x509.Certificate,
    algorithm_oid: x509.ObjectIdentifier,
    signature: bytes,
    data: bytes,
    hash_algorithm: Callable[[], hashes.HashAlgorithm | None],
) -> bool:
    """``signature`` (of an OCSP response, a CRL, …, made with ``algorithm_oid``) over ``data``
    verifies under ``signer``'s key: SM3-with-SM2 only under an SM2 key and an SM2 key signs
    nothing else; ``hash_algorithm`` reads the object's hash (it may raise for SM3)."""
    sm2_signature = algorithm_oid.dotted_string == SM3_WITH_SM2_OID
    try:
        key = public_key_of(signer)
    except (InvalidSm2PublicKey, UnsupportedAlgorithm, ValueError):
        return False
    if sm2_signature or isinstance(key, Sm2PublicKey):
        return (
            sm2_signature
            and isinstance(key, Sm2PublicKey)
            and signature_verifies(key, signature, data, None)
        )
    try:
        digest = hash_algorithm()
    except (UnsupportedAlgorithm, ValueError):
        return False
    return signature_verifies(key, signature, data, digest)


def key_hash_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey BIT STRING (an OCSP ``ResponderID`` byKey), SM2 too."""
    tbs = asn1_x509.TbsCertificate.load(cert.tbs_certificate_bytes)
    return hashlib.sha1(  # noqa: S324 - RFC 6960 names SHA-1 for the key hash
        bytes(tbs["subject_public_key_info"]["public_key"].contents[1:])
    ).digest()


def signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``child`` names ``issuer`` as its issuer and its signature verifies under its key
    (SM3-with-SM2 only under an SM2 key, and an SM2 key signs nothing else)."""
    if child.signature_algorithm_oid.dotted_string == SM3_WITH_SM2_OID or is_sm2_key(issuer):
        if child.issuer != issuer.subject:
            return False
        if child.signature_algorithm_oid.dotted_string != SM3_WITH_SM2_OID:
            return False
        try:
            key = public_key_of(issuer)
        except (InvalidSm2PublicKey, UnsupportedAlgorithm, ValueError):
            return False
        return isinstance(key, Sm2PublicKey) and signature_verifies(
            key, child.signature, child.tbs_certificate_bytes, None
        )
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def within_validity(cert: x509.Certificate, at: datetime) -> bool:
    """``at`` falls within ``notBefore``..``notAfter`` (both inclusive)."""
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def ca_problem(cert: x509.Certificate) -> str:
    """Why ``cert`` may not issue certificates ("" when it may): basicConstraints cA, and
    keyCertSign when a keyUsage is present."""
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
        return f"{cert.subject.rfc4514_string()} is not a CA certificate"
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
        return f"{cert.subject.rfc4514_string()} may not sign certificates"
    return ""


def is_ca(cert: x509.Certificate) -> bool:
    """``cert`` is a CA certificate allowed to sign certificates (the rules of
    :func:`ca_problem`, without building its message)."""
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
        return False
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    return not isinstance(ku, x509.KeyUsage) or ku.key_cert_sign


def signing_problem(cert: x509.Certificate) -> str:
    """Why ``cert`` may not make signatures as an end entity ("" when it may)."""
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(bc, x509.BasicConstraints) and bc.ca:
        return "the signing certificate is a CA certificate"
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if isinstance(ku, x509.KeyUsage) and not (ku.digital_signature or ku.content_commitment):
        return "the signing certificate may not make digital signatures"
    return ""


def key_ids_match(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """The child's authorityKeyIdentifier names the issuer's subjectKeyIdentifier (or one of
    them is absent)."""
    try:
        aki = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    return aki.key_identifier is None or aki.key_identifier == ski.digest


def path_length_violation(path: Sequence[x509.Certificate]) -> int | None:
    """The index of the first CA in ``path`` (leaf first) whose pathLenConstraint is violated."""
    # path[i] for i >= 1 is a CA; the number of CAs below it (excluding the leaf) is i - 1.
    for i in range(1, len(path)):
        try:
            limit = (
                path[i].extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
            )
        except x509.ExtensionNotFound:
            continue
        if limit is not None and i - 1 > limit:
            return i
    return None


# --- a presented chain ------------------------------------------------------------------------


def validate_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    at: datetime | None = None,
) -> x509.Certificate:
    """Check ``chain`` (leaf first; the root may be included or not) ends at one of ``roots``.

    The leaf must be an end entity that may sign; each certificate is issued (names and
    signature) by the next, which must be a CA; each is within its validity at ``at`` (default
    now), and so is the root reached. Returns that root; raises :class:`PathInvalid`.
    """
    if not chain:
        raise PathInvalid(PathProblem.NO_CHAIN, "no signing certificate")
    if len(chain) > MAX_CHAIN:
        raise PathInvalid(PathProblem.UNTRUSTED, "certificate chain too long")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    try:
        return _walk(chain, roots, moment)
    except ValueError as exc:  # cryptography parses names and extensions lazily
        raise PathInvalid(
            PathProblem.MALFORMED, f"a certificate in the chain cannot be read: {exc}"
        ) from None


def _check_time(cert: x509.Certificate, at: datetime) -> None:
    if not within_validity(cert, at):
        raise PathInvalid(
            PathProblem.EXPIRED,
            f"certificate {cert.subject.rfc4514_string()} is not valid at {at.isoformat()}",
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    return cert.issuer == issuer.subject and signed_by(cert, issuer)


def _walk(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], moment: datetime
) -> x509.Certificate:
    problem = signing_problem(chain[0])
    if problem:
        raise PathInvalid(PathProblem.WRONG_LEAF, problem)
    for index, cert in enumerate(chain):
        _check_time(cert, moment)
        for root in roots:
            if cert == root:
                return root
            if _issued_by(cert, root):
                _check_time(root, moment)
                return root
        if index + 1 >= len(chain):
            break
        issuer = chain[index + 1]
        if not _issued_by(cert, issuer):
            raise PathInvalid(
                PathProblem.UNTRUSTED,
                f"{cert.subject.rfc4514_string()} is not issued by the next certificate",
            )
        problem = ca_problem(issuer)
        if problem:
            raise PathInvalid(PathProblem.UNTRUSTED, problem)
    raise PathInvalid(PathProblem.UNTRUSTED, "the certificate chain does not end at a trusted root")


# --- path building ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltPath:
    """A path from a leaf (first) towards an anchor.

    ``trusted``: it reached an anchor with no problem. ``problem`` and ``index``: what is wrong
    and at which certificate of ``certificates`` (None: nothing found wrong; a path that simply
    stops at an unknown issuer is untrusted with no problem).
    """

    certificates: tuple[x509.Certificate, ...]
    trusted: bool
    problem: PathProblem | None
    index: int


def build_path(
    leaf: x509.Certificate,
    issuers: Callable[[x509.Certificate], Sequence[x509.Certificate]],
    *,
    is_anchor: Callable[[x509.Certificate], bool],
    linked: Callable[[x509.Certificate, x509.Certificate], bool] = signed_by,
    max_length: int = 8,
) -> BuiltPath:
    """Walk from ``leaf`` through ``issuers(cert)`` (candidates named as its issuer) to a
    certificate ``is_anchor`` accepts: at each step the first candidate whose key ids match and
    that ``linked`` (default :func:`signed_by`) accepts; it must be a CA (:func:`is_ca`). Once
    an anchor is reached, the path-length constraints are checked."""
    path = [leaf]
    problem: PathProblem | None = None
    index = 0
    reached = False
    current = leaf
    for _ in range(max_length):
        if is_anchor(current):
            reached = True
            break
        candidates = [c for c in issuers(current) if c is not current and key_ids_match(current, c)]
        if not candidates:
            break  # unknown issuer
        chosen = next((c for c in candidates if linked(current, c)), None)
        if chosen is None:
            problem, index = PathProblem.BAD_SIGNATURE, len(path) - 1
            break
        if not is_ca(chosen):
            path.append(chosen)
            problem, index = PathProblem.NOT_CA, len(path) - 1
            break
        if chosen in path:
            break
        path.append(chosen)
        current = chosen
    if reached and problem is None:
        violation = path_length_violation(path)
        if violation is not None:
            problem, index = PathProblem.PATH_LENGTH, violation
    return BuiltPath(tuple(path), reached and problem is None, problem, index)
