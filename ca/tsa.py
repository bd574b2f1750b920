"""RFC 3161 time-stamping authority (transport-free: request bytes in, response bytes out).

The token is a CMS SignedData over a TSTInfo (policy OID, message imprint, 128-bit random
serial, genTime, accuracy, nonce echoed, TSA name), signed through the key store by the TSA
certificate (critical EKU timeStamping) with the ESS signing-certificate-v2 attribute that
RFC 5816 / ``openssl ts -verify`` / pyHanko expect. Requests with an unknown digest, a wrong
imprint length, an unaccepted policy or extensions, or that do not parse, get a ``rejection``
response with the matching failInfo and nothing is stored.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from asn1crypto import cms, core, tsp, x509

from ca.builder import random_serial, serial_hex
from ca.context import CaContext
from ca.models import CaTsaToken
from ca.profiles import TSA_POLICY_SUFFIX
from ca.signing import DIGEST_OIDS, digest_algorithm, now
from hsm.errors import Sm2NotAvailable
from hsm.sm2 import SM3_OID

MAX_REQUEST_BYTES = 16 * 1024
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64, "sm3": 32}


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


def _length(n: int) -> bytes:
    # TimeStampResp ::= SEQUENCE { status, timeStampToken OPTIONAL }, framed by hand.
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


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
    return TsaResult(b"\x30" + _length(len(status)) + status, False, message)


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


@functools.lru_cache(maxsize=16)
def _certificate_set(chain: tuple[bytes, ...]) -> bytes:
    """The DER CertificateSet of ``chain`` (built once per TSA chain: a loaded set is put into
    a token as is, while a list of certificates is copied and re-encoded for every token)."""
    return bytes(cms.CertificateSet([x509.Certificate.load(der) for der in chain]).dump())


def respond(ctx: CaContext, request: bytes, *, sm2: bool = False) -> TsaResult:
    """Answer one DER TimeStampReq (never raises on bad input); ``sm2``: the SM2 TSA signs
    (SM3-with-SM2, SM3 signed attributes), else the ECDSA one. Either accepts SHA-256/384/512
    and SM3 message imprints."""
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
    try:
        return _grant(ctx, digest, hashed, nonce, cert_req, policy, sm2)
    except Sm2NotAvailable as exc:
        return _reject("system_failure", str(exc))


def _grant(
    ctx: CaContext,
    digest: str,
    hashed: bytes,
    nonce: int | None,
    cert_req: bool,
    policy: str,
    sm2: bool,
) -> TsaResult:
    tsa = ctx.hierarchy.tsa(sm2=sm2)
    serial = random_serial()
    gen_time = now()
    accuracy_ms = ctx.config.tsa_accuracy_ms
    accuracy: dict[str, int] = {}
    if accuracy_ms >= 1000:
        accuracy["seconds"] = accuracy_ms // 1000
    if accuracy_ms % 1000:
        accuracy["millis"] = accuracy_ms % 1000
    info: dict[str, object] = {
        "version": "v1",
        "policy": policy,
        "message_imprint": {
            "hash_algorithm": {"algorithm": DIGEST_OIDS.get(digest, digest)},
            "hashed_message": hashed,
        },
        "serial_number": serial,
        "gen_time": gen_time,
        "accuracy": accuracy,
        "ordering": False,
        "tsa": x509.GeneralName(name="directory_name", value=tsa.subject),
    }
    if nonce is not None:
        info["nonce"] = nonce
    tst_der = tsp.TSTInfo(info).dump()
    signer_digest = tsa.key.digest_name
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "signing_time", "values": [cms.Time(name="utc_time", value=gen_time)]},
            {"type": "message_digest", "values": [hashlib.new(signer_digest, tst_der).digest()]},
            cms.CMSAttribute.load(_signing_certificate_v2(tsa.der, signer_digest)),
        ]
    )
    signature = tsa.key.sign(signed_attrs.dump())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": tsa.certificate.issuer,
                    "serial_number": tsa.certificate.serial_number,
                },
            ),
            "digest_algorithm": digest_algorithm(signer_digest),
            "signed_attrs": signed_attrs,
            "signature_algorithm": tsa.key.signature_algorithm(),
            "signature": signature,
        }
    )
    signed_data: dict[str, object] = {
        "version": "v3",
        "digest_algorithms": [digest_algorithm(signer_digest)],
        "encap_content_info": {
            "content_type": "tst_info",
            "content": core.ParsableOctetString(tst_der),
        },
        "signer_infos": [signer_info],
    }
    if cert_req:
        # The TSA's chain without the root (RFC 3161 2.4.1 allows more than the TSA's own
        # certificate): a relying party holding only the root builds the path from the token.
        chain = tuple(i.der for i in ctx.hierarchy.chain(tsa.name)[:-1])
        signed_data["certificates"] = cms.CertificateSet.load(_certificate_set(chain))
    token = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})
    response = tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
    with ctx.db.transaction() as session:
        session.add(
            CaTsaToken(
                serial=serial_hex(serial),
                gen_time=gen_time,
                policy=policy,
                hash_algorithm=digest,
                message_imprint=hashed.hex(),
            )
        )
    return TsaResult(response.dump(), True)
