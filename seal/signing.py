"""What every seal use shares: a pyHanko signer over the key store, our TSA, revocation info.

* :class:`CaTimeStamper` — a pyHanko ``TimeStamper`` that sends the real RFC 3161 request to the
  CA's time-stamping authority in process (the same code that answers ``POST /tsa``), so sealing
  does not depend on the HTTP listener and costs no network round trip.
* :func:`signer_for` — :class:`hsm.signers.KeyStoreSigner` for a seal's key, certificate and
  chain, cached per (key, certificate) so repeated seals do not rebuild registries.
* :func:`revocation_info` — OCSP responses and CRLs for the seal certificate and its chain, to
  embed at PAdES B-LT.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from asn1crypto import algos, cms, crl, ocsp, tsp, x509
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from ca import der
from hsm.keystore import KeyStore
from hsm.signers import KeyStoreSigner
from hsm.sm2 import SM3_OID
from seal.authority import SealAuthority


class CaTimeStamper(TimeStamper):
    """RFC 3161 time-stamps from our CA's TSA, requested in process (the SM2 TSA with
    ``sm2``, for SM2 seals' SES_Signatures)."""

    def __init__(self, authority: SealAuthority, *, sm2: bool = False) -> None:
        super().__init__(include_nonce=True)  # type: ignore[no-untyped-call]
        self.authority = authority
        self.sm2 = sm2

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        """Send the DER request to the TSA and parse its response."""
        return tsp.TimeStampResp.load(self.authority.timestamp(req.dump(), sm2=self.sm2))

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        """The token, re-loaded unparsed: pyHanko copies it into the signature's unsigned
        attributes, and asn1crypto copies a parsed tree node by node (seconds per copy for a
        token with its certificate), an unparsed one as bytes."""
        token = await super().async_timestamp(message_digest, md_algorithm)
        return cms.ContentInfo.load(token.dump())

    def token_for(self, data: bytes, digest: str = "sha256") -> bytes:
        """A DER TimeStampToken (ContentInfo) over ``data`` (for SES_Signature's timeStamp);
        ``digest`` ``sm3`` puts an SM3 imprint (OID 1.2.156.10197.1.401)."""
        imprint = der.seq(
            der.seq(der.oid(SM3_OID if digest == "sm3" else algos.DigestAlgorithmId.unmap(digest))),
            der.octet_string(hashlib.new(digest, data).digest()),
        )
        nonce = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
        # TimeStampReq { v1, messageImprint, nonce, certReq TRUE }, joined with ca.der
        request = der.seq(der.integer(1), imprint, der.integer(nonce), b"\x01\x01\xff")
        response = tsp.TimeStampResp.load(self.authority.timestamp(request, sm2=self.sm2))
        status = response["status"]["status"].native
        if status not in ("granted", "granted_with_mods"):
            from seal.errors import SealNotUsable

            raise SealNotUsable.because("tsa", f"the TSA refused to time-stamp: {status}")
        return bytes(response["time_stamp_token"].dump())


@dataclass(frozen=True)
class SealKey:
    """A seal's key and certificates, as sealing needs them."""

    key_id: str
    certificate_der: bytes
    chain: tuple[bytes, ...]  # issuing CA first, root last


@functools.lru_cache(maxsize=256)
def _signer(keystore: KeyStore, key: SealKey) -> KeyStoreSigner:
    # The registry holds the chain only: pyHanko adds the signing certificate itself, and a
    # certificate listed twice in the CMS makes poppler/NSS report "Unknown issue".
    chain = [x509.Certificate.load(c) for c in key.chain]
    return KeyStoreSigner(
        keystore,
        key.key_id,
        x509.Certificate.load(key.certificate_der),
        cert_registry=SimpleCertificateStore.from_certs(chain),  # type: ignore[no-untyped-call]
    )


def signer_for(keystore: KeyStore, key: SealKey) -> KeyStoreSigner:
    """A pyHanko signer for the seal key (cached; signers are stateless between calls)."""
    return _signer(keystore, key)  # type: ignore[arg-type]


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSP request for ``certificate`` (SHA-1 CertID, as most responders expect)."""
    cert_id = ocsp.CertId(
        {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha1"}),
            "issuer_name_hash": issuer.subject.sha1,
            "issuer_key_hash": issuer.public_key.sha1,
            "serial_number": certificate.serial_number,
        }
    )
    request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": cert_id}]}})
    return bytes(request.dump())


@dataclass(frozen=True)
class RevocationInfo:
    """OCSP responses and CRLs to embed (B-LT) or to validate with."""

    ocsps: tuple[ocsp.OCSPResponse, ...]
    crls: tuple[crl.CertificateList, ...]


def revocation_info(authority: SealAuthority, certificate_der: bytes) -> RevocationInfo:
    """Fresh OCSP for the seal certificate, the seal CA's CRL and the CRLs the CA gives for the
    rest of the chain (root, the TSA's CA), straight from the CA."""
    chain = [x509.Certificate.load(c) for c in authority.chain()]
    cert = x509.Certificate.load(certificate_der)
    responses = [ocsp.OCSPResponse.load(authority.ocsp(ocsp_request(cert, chain[0])))]
    crls = [crl.CertificateList.load(authority.crl())]
    extra = getattr(authority, "chain_crls", None)
    if callable(extra):
        crls += [crl.CertificateList.load(c) for c in extra()]
    return RevocationInfo(tuple(responses), tuple(crls))
