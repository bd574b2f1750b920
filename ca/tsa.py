"""RFC 3161 time-stamping authority (transport-free: request bytes in, response bytes out).

The token is a CMS SignedData over a TSTInfo (policy OID, message imprint, 128-bit random
serial, genTime, accuracy, nonce echoed, TSA name), signed through the key store by the TSA
certificate (critical EKU timeStamping) with the ESS signing-certificate-v2 attribute that
RFC 5816 / ``openssl ts -verify`` / pyHanko expect. Requests with an unknown digest, a wrong
imprint length, an unaccepted policy or extensions, or that do not parse, get a ``rejection``
response with the matching failInfo and nothing is stored.

Three steps, so that a token costs one signature and a few joins of bytes:

* :func:`prepare` — once per TSA (cached by its certificate, chain, policy and accuracy): the
  DER of everything that is the same in every token (policy OID, accuracy, TSA name, signer
  identifier, signing-certificate-v2 attribute, algorithm identifiers, certificates);
* :func:`answer` — per request: the TSTInfo, the signed attributes and the signature, joined
  with :mod:`ca.der` around the prepared pieces (the request's MessageImprint and nonce are
  echoed byte for byte, as RFC 3161 2.4.2 asks);
* :func:`respond` — parse and check a DER TimeStampReq, answer it, and record the token in the
  process's :class:`ca.tsa_ledger.TokenLedger` (group commit) before the response is returned
  (:func:`respond_nowait`: the same, the result handed to a callback once it is recorded, for
  the HTTP fast route that must not hold a thread while the commit runs).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import cms, core, tsp, x509

from ca import der
from ca.builder import random_serial, serial_hex
from ca.context import CaContext
from ca.profiles import TSA_POLICY_SUFFIX
from ca.signing import SigningKey, digest_algorithm, now
from ca.tsa_ledger import PendingToken
from hsm.errors import Sm2NotAvailable
from hsm.sm2 import SM3_OID

MAX_REQUEST_BYTES = 16 * 1024
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
_V1 = der.integer(1)
_V3 = der.integer(3)
_GRANTED = der.seq(der.integer(0))  # PKIStatusInfo { status granted }


@dataclass(frozen=True)
class TsaResult:
    """A DER TimeStampResp and whether it grants a token (``granted``) or rejects."""

    der: bytes
    granted: bool
    message: str = ""


class TimeStampResponse(core.Sequence):  # type: ignore[misc]
    """RFC 3161 TimeStampResp with the token OPTIONAL (asn1crypto's spec requires it, so it
    cannot parse a rejection)."""

    _fields = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def policy_oid(ctx: CaContext) -> str:
    """The TSA policy OID under the configured arc."""
    return ctx.config.oid_arc + TSA_POLICY_SUFFIX


def _reject(fail_info: str, message: str) -> TsaResult:
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [message],
            "fail_info": tsp.PKIFailureInfo({fail_info}),
        }
    ).dump()
    return TsaResult(der.seq(status), False, message)


@dataclass(frozen=True)
class PreparedTsa:
    """The DER pieces every token of one TSA shares (see :func:`prepare`)."""

    policy: str
    policy_der: bytes  # OBJECT IDENTIFIER
    accuracy_der: bytes  # Accuracy, or b"" when none is configured
    tsa_name_der: bytes  # tsa [0] EXPLICIT GeneralName (directoryName)
    signer_digest: str  # digest of the signed attributes (sha256, sm3, ...)
    digest_algorithm_der: bytes  # its AlgorithmIdentifier
    digest_algorithms_der: bytes  # SET OF it (SignedData.digestAlgorithms)
    sid_der: bytes  # IssuerAndSerialNumber
    signing_certificate_der: bytes  # the signing-certificate-v2 Attribute
    signature_algorithm_der: bytes
    certificates_der: bytes  # [0] IMPLICIT CertificateSet (the chain without the root)


def _accuracy(accuracy_ms: int) -> bytes:
    parts = []
    if accuracy_ms >= 1000:
        parts.append(der.integer(accuracy_ms // 1000))
    if accuracy_ms % 1000:
        parts.append(der.tlv(0x80, der.integer(accuracy_ms % 1000)[2:]))  # millis [0] IMPLICIT
    return der.seq(*parts) if parts else b""


@functools.lru_cache(maxsize=16)
def _prepared(
    certificate_der: bytes,
    chain: tuple[bytes, ...],
    policy: str,
    accuracy_ms: int,
    signer_digest: str,
    signature_algorithm_der: bytes,
) -> PreparedTsa:
    certificate = x509.Certificate.load(certificate_der)
    digest_der = bytes(digest_algorithm(signer_digest).dump())
    sid = cms.IssuerAndSerialNumber(
        {"issuer": certificate.issuer, "serial_number": certificate.serial_number}
    )
    name = x509.GeneralName(name="directory_name", value=certificate.subject)
    return PreparedTsa(
        policy=policy,
        policy_der=der.oid(policy),
        accuracy_der=_accuracy(accuracy_ms),
        tsa_name_der=der.tlv(0xA0, bytes(name.dump())),
        signer_digest=signer_digest,
        digest_algorithm_der=digest_der,
        digest_algorithms_der=der.der_set(digest_der),
        sid_der=bytes(sid.dump()),
        signing_certificate_der=_signing_certificate_v2(certificate_der, signer_digest),
        signature_algorithm_der=signature_algorithm_der,
        certificates_der=der.tlv(0xA0, b"".join(sorted(chain))),  # DER SET OF order
    )


def prepare(ctx: CaContext, *, sm2: bool = False) -> tuple[PreparedTsa, SigningKey]:
    """The prepared pieces of the (SM2 with ``sm2``) TSA and its signing key; built once per
    TSA certificate, chain, policy and accuracy (a re-keyed TSA gets new pieces)."""
    tsa = ctx.hierarchy.tsa(sm2=sm2)
    # The TSA's chain without the root (RFC 3161 2.4.1 allows more than the TSA's own
    # certificate): a relying party holding only the root builds the path from the token.
    chain = tuple(i.der for i in ctx.hierarchy.chain(tsa.name)[:-1])
    prepared = _prepared(
        tsa.der,
        chain,
        policy_oid(ctx),
        ctx.config.tsa_accuracy_ms,
        tsa.key.digest_name,
        tsa.key.algorithm_der,
    )
    return prepared, tsa.key


@functools.lru_cache(maxsize=16)
def _signing_certificate_v2(certificate_der: bytes, digest: str) -> bytes:
    """The DER ``signing_certificate_v2`` attribute (RFC 5816) naming the TSA's certificate:
    the same for every token of one TSA, so built once (asn1crypto takes ~20 ms to build and
    dump it, its issuer name inside a GeneralName, every time)."""
    certificate = x509.Certificate.load(certificate_der)
    attribute = cms.CMSAttribute(
        {
            "type": "signing_certificate_v2",
            "values": [
                {
                    "certs": [
                        {
                            "hash_algorithm": digest_algorithm(digest),
                            "cert_hash": hashlib.new(digest, certificate_der).digest(),
                            "issuer_serial": {
                                "issuer": [
                                    x509.GeneralName(
                                        name="directory_name", value=certificate.issuer
                                    )
                                ],
                                "serial_number": certificate.serial_number,
                            },
                        }
                    ]
                }
            ],
        }
    )
    return bytes(attribute.dump())


@dataclass(frozen=True)
class TsaQuery:
    """A checked TimeStampReq: what a token echoes (DER pieces) and records."""

    digest: str  # sha256 | sha384 | sha512 | sm3
    hashed: bytes
    imprint_der: bytes  # the request's MessageImprint, as sent
    nonce_der: bytes  # the request's nonce INTEGER, as sent (b"" without one)
    cert_req: bool


_NOT_RECORDED = "the time-stamp could not be recorded; ask again"


def check(ctx: CaContext, request: bytes) -> TsaQuery | TsaResult:
    """Parse and check one DER TimeStampReq: the query, or the rejection to send (never
    raises on bad input). SHA-256/384/512 and SM3 message imprints are accepted."""
    if not request or len(request) > MAX_REQUEST_BYTES:
        return _reject("bad_data_format", "the request is empty or too large")
    try:
        parsed = tsp.TimeStampReq.load(request, strict=True)
        version = parsed["version"].native
        imprint = parsed["message_imprint"]
        algorithm_id = imprint["hash_algorithm"]["algorithm"]
        digest = "sm3" if algorithm_id.dotted == SM3_OID else algorithm_id.native
        hashed = imprint["hashed_message"].native
        requested_policy = parsed["req_policy"].native
        nonce = parsed["nonce"].native
        nonce_der = bytes(parsed["nonce"].dump()) if nonce is not None else b""
        imprint_der = bytes(imprint.dump())
        cert_req = bool(parsed["cert_req"].native)
        has_extensions = len(parsed["extensions"]) > 0 if parsed["extensions"] else False
    except (ValueError, TypeError, KeyError, AttributeError):
        return _reject("bad_data_format", "the request is not a DER TimeStampReq")
    if version != "v1":
        return _reject("bad_request", "only TimeStampReq version 1 is supported")
    if digest not in _DIGEST_SIZES:
        return _reject("bad_alg", f"digest {digest} is not accepted (SHA-256/384/512)")
    if not isinstance(hashed, bytes) or len(hashed) != _DIGEST_SIZES[digest]:
        return _reject("bad_data_format", "the message imprint length does not fit its digest")
    policy = policy_oid(ctx)
    if requested_policy is not None and requested_policy != policy:
        return _reject("unaccepted_policy", f"only policy {policy} is offered")
    if has_extensions:
        return _reject("unaccepted_extensions", "request extensions are not supported")
    return TsaQuery(digest, hashed, imprint_der, nonce_der, cert_req)


def answer(prepared: PreparedTsa, key: SigningKey, query: TsaQuery) -> tuple[bytes, PendingToken]:
    """The DER TimeStampResp granting ``query`` (one signature through the key store) and the
    ledger record of its token (not yet recorded)."""
    serial = random_serial()
    gen_time = now()
    tst = der.seq(
        _V1,
        prepared.policy_der,
        query.imprint_der,
        der.integer(serial),
        der.generalized_time(gen_time),
        prepared.accuracy_der,
        # ordering FALSE is the DEFAULT: absent in DER
        query.nonce_der,
        prepared.tsa_name_der,
    )
    message_digest = hashlib.new(prepared.signer_digest, tst).digest()
    attributes = b"".join(
        sorted(  # DER SET OF: encodings in ascending order
            (
                der.seq(der.oid(_OID_CONTENT_TYPE), der.der_set(der.oid(_OID_TST_INFO))),
                der.seq(der.oid(_OID_SIGNING_TIME), der.der_set(der.x509_time(gen_time))),
                der.seq(
                    der.oid(_OID_MESSAGE_DIGEST), der.der_set(der.octet_string(message_digest))
                ),
                prepared.signing_certificate_der,
            )
        )
    )
    signature = key.sign(der.tlv(0x31, attributes))  # signed as a SET (RFC 5652 5.4)
    signer_info = der.seq(
        _V1,
        prepared.sid_der,
        prepared.digest_algorithm_der,
        der.tlv(0xA0, attributes),  # signedAttrs [0] IMPLICIT
        prepared.signature_algorithm_der,
        der.octet_string(signature),
    )
    signed_data = der.seq(
        _V3,
        prepared.digest_algorithms_der,
        der.seq(der.oid(_OID_TST_INFO), der.tlv(0xA0, der.octet_string(tst))),
        prepared.certificates_der if query.cert_req else b"",
        der.der_set(signer_info),
    )
    token = der.seq(der.oid(_OID_SIGNED_DATA), der.tlv(0xA0, signed_data))
    record = PendingToken(
        serial=serial_hex(serial),
        gen_time=gen_time,
        policy=prepared.policy,
        hash_algorithm=query.digest,
        message_imprint=query.hashed.hex(),
    )
    return der.seq(_GRANTED, token), record


def _grant(ctx: CaContext, request: bytes, sm2: bool) -> tuple[bytes, PendingToken] | TsaResult:
    query = check(ctx, request)
    if isinstance(query, TsaResult):
        return query
    try:
        prepared, key = prepare(ctx, sm2=sm2)
    except Sm2NotAvailable as exc:
        return _reject("system_failure", str(exc))
    return answer(prepared, key, query)


def respond(ctx: CaContext, request: bytes, *, sm2: bool = False) -> TsaResult:
    """Answer one DER TimeStampReq (never raises on bad input); ``sm2``: the SM2 TSA signs
    (SM3-with-SM2, SM3 signed attributes), else the ECDSA one. A granted token is recorded in
    the ledger (group commit) before this returns; if it cannot be, ``systemFailure``."""
    granted = _grant(ctx, request, sm2)
    if isinstance(granted, TsaResult):
        return granted
    response, record = granted
    try:
        ctx.tsa_ledger.record(record)
    except Exception:  # noqa: BLE001 - logged by the ledger; the client asks again
        return _reject("system_failure", _NOT_RECORDED)
    return TsaResult(response, True)


def respond_nowait(
    ctx: CaContext,
    request: bytes,
    on_result: Callable[[TsaResult], object],
    *,
    sm2: bool = False,
) -> None:
    """:func:`respond` without waiting for the ledger: ``on_result`` gets the result — at once
    in this thread for a rejection, else from the ledger's committer thread once the token is
    recorded (it must not block)."""
    granted = _grant(ctx, request, sm2)
    if isinstance(granted, TsaResult):
        on_result(granted)
        return
    response, record = granted

    def done(item: PendingToken) -> None:
        if item.error is not None:
            on_result(_reject("system_failure", _NOT_RECORDED))
        else:
            on_result(TsaResult(response, True))

    record.on_done = done
    ctx.tsa_ledger.record_nowait(record)
