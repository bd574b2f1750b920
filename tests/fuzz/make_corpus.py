"""Write the fuzzing leg's seed corpus (``tests/fuzz/corpus/<parser>/``): well-formed inputs of
every public parser plus the regression cases of issue #13. Run once by hand and commit the
files (``python -m tests.fuzz.make_corpus``); the fuzz tests only read them, so a run is
deterministic. The keys and certificates are throw-away test material."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from asn1crypto import algos, core, ocsp, tsp
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from jose import jws

from govtrust.db import Database
from govtrust.migrate import upgrade_to_head
from hsm.master import MasterKey
from hsm.soft import SoftKeyStore
from license.qr import encode_payload
from license.signed_data import sign_licence
from tests.ca.conftest import make_csr
from tests.fuzz.pdfs import BROKEN, build
from tests.license.conftest import make_ca, make_signer, sample_metadata, with_malformed_issuer

CORPUS = Path(__file__).resolve().parent / "corpus"


def _ocsp(serial: int, digest: str = "sha1", nonce: bytes | None = None) -> bytes:
    extensions = (
        [{"extn_id": "nonce", "critical": False, "extn_value": core.OctetString(nonce)}]
        if nonce
        else None
    )
    size = 20 if digest == "sha1" else 32
    request = ocsp.OCSPRequest(
        {
            "tbs_request": {
                "request_list": [
                    {
                        "req_cert": {
                            "hash_algorithm": {"algorithm": digest},
                            "issuer_name_hash": bytes(range(size)),
                            "issuer_key_hash": bytes(range(size, 2 * size)),
                            "serial_number": serial,
                        }
                    }
                ],
                "request_extensions": extensions,
            }
        }
    )
    return bytes(request.dump())


def _tsa(digest: str, nonce: int | None, cert_req: bool) -> bytes:
    hashed = hashlib.new(digest, b"fuzz").digest()
    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": digest}),
                "hashed_message": hashed,
            },
            "nonce": nonce,
            "cert_req": cert_req,
        }
    )
    return bytes(request.dump())


def _version_1(csr: bytes) -> bytes:
    """``csr`` claiming version 1 (only 0 is defined): cryptography's InvalidVersion."""
    at = csr.index(b"\x02\x01\x00")
    return csr[:at] + b"\x02\x01\x01" + csr[at + 3 :]


def seeds() -> dict[str, dict[str, bytes]]:
    """Parser → file name → seed."""
    corpus: dict[str, dict[str, bytes]] = {
        "ocsp": {
            "sha1.der": _ocsp(0x1234),
            "sha256-nonce.der": _ocsp(0x7FFF_FFFF_FFFF, "sha256", b"n" * 16),
            "negative-serial.der": _ocsp(-5),  # issue #13: was internalError
        },
        "tsa": {
            "sha256-nonce-certreq.der": _tsa("sha256", 4711, True),
            "sha512.der": _tsa("sha512", None, False),
        },
        "csr": {
            "p256.der": make_csr(pem=False),
            "p256.pem": make_csr(pem=True),
            "version-1.der": _version_1(make_csr(pem=False)),  # found by the fuzzing leg
        },
        "pdf": {f"{name}.pdf": pdf for name, pdf in BROKEN.items()},
        "identifier": {
            "licence.txt": b"",
            "resident-id.txt": b"11010519491231002X",
            "uscc.txt": b"91350100M000100Y43",
        },
    }
    corpus["pdf"]["minimal.pdf"] = build(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/corpus.db")
        upgrade_to_head(db.engine)
        store = SoftKeyStore(db, MasterKey.generate())
        try:
            signer = make_signer(store, make_ca("fuzz corpus root"))
            metadata = sample_metadata()
            token = sign_licence(signer, metadata)
            corpus["signed_data"] = {
                "licence.jws": token.encode(),
                "malformed-issuer.jws": with_malformed_issuer(token).encode(),  # issue #13
            }
            corpus["qr"] = {"licence.txt": encode_payload(signer, metadata).encode()}
            corpus["identifier"]["licence.txt"] = metadata.identifier.encode()
        finally:
            store.close()
            db.dispose()
    corpus["jwt"] = {"id-token.jwt": _jwt()}
    return corpus


def _jwt() -> bytes:
    """An ES256 ID token of a foreign key (well-formed, never valid here)."""
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {
        "iss": "http://127.0.0.1:8080/oidc",
        "sub": "fuzz",
        "aud": "client",
        "exp": 4102444800,
        "iat": 1700000000,
        "nonce": "n",
    }
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    token: str = jws.sign(json.dumps(claims).encode(), pem, algorithm="ES256")
    return token.encode()


def main() -> None:
    for parser, files in seeds().items():
        folder = CORPUS / parser
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        print(f"{parser}: {len(files)} seeds")


if __name__ == "__main__":
    main()
