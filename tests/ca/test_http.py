"""The CA's HTTP endpoints, live (uvicorn on a free port), checked with the real openssl:
``openssl ocsp -url`` sees good → revoked, a suspended certificate as revoked (certificateHold)
and good again after resume; ``openssl crl -verify`` accepts the CRL served at /crl/<ca>.crl and
lists the revoked serial; ``openssl ts -verify`` accepts a token from /tsa; pkilint finds no error
in a served OCSP response. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ca.authority import SUBJECT_DIRECTORY, CertificateAuthority, authority_for
from ca.directory import InMemoryDirectory
from ca.issuance import IssueRequest, SubjectSpec
from govtrust.config import Settings
from govtrust.db import Database
from govtrust.http.app import create_app
from govtrust.observability.metrics import get_metrics
from govtrust.platform import Platform
from govtrust.server.adapters import ROUTERS
from hsm import MasterKey, SoftKeyStore
from tests.ca.conftest import (
    OPERATOR,
    USCC,
    ChainFiles,
    ServerThread,
    free_port,
    make_csr,
    openssl,
    pem,
    pkilint,
    write_chain,
)
from tests.unchanged import unchanged


@dataclass
class Live:
    url: str
    authority: CertificateAuthority
    chain: ChainFiles
    tmp: Path


@pytest.fixture
def live(database: Database, directory: InMemoryDirectory, tmp_path: Path) -> Iterator[Live]:
    port = free_port()
    master = MasterKey.generate()
    store = SoftKeyStore(database, master)
    settings = Settings(data_dir=tmp_path, http_port=port)
    platform = Platform(settings=settings, db=database, master_key=master, keystore=store)
    platform.components.define(SUBJECT_DIRECTORY, lambda: directory)
    try:
        app = create_app(platform, get_metrics(), routers=ROUTERS)
        authority = authority_for(platform)
        with ServerThread(app, port) as server:
            yield Live(server.url, authority, write_chain(authority, tmp_path / "chain"), tmp_path)
    finally:
        store.close()


def _issue(live: Live, profile: str, subject: SubjectSpec, name: str) -> tuple[str, Path]:
    issued = live.authority.issue(OPERATOR, IssueRequest(profile, subject, csr=make_csr()))
    path = live.tmp / f"{name}.pem"
    path.write_text(pem(issued.certificate.der))
    return issued.certificate.id, path


def _ocsp(live: Live, ca: str, cert: Path, *extra: str) -> str:
    return openssl(
        "ocsp",
        "-issuer",
        str(live.chain.ca(ca)),
        "-cert",
        str(cert),
        "-url",
        f"{live.url}/ocsp",
        "-CAfile",
        str(live.chain.all),
        *extra,
    )


def _even(serial: str) -> str:
    """openssl prints serials with an even number of hex digits."""
    return serial.zfill(len(serial) + len(serial) % 2)


def test_ocsp_lifecycle_with_openssl(live: Live) -> None:
    citizen_id, citizen = _issue(live, "citizen", SubjectSpec(identity="c-rep"), "citizen")
    out = _ocsp(live, "citizen", citizen)
    assert "Response verify OK" in out and f"{citizen}: good" in out
    out = _ocsp(live, "citizen", citizen, "-no_nonce")
    assert f"{citizen}: good" in out
    live.authority.revoke(OPERATOR, citizen_id, reason="keyCompromise")
    out = _ocsp(live, "citizen", citizen, "-no_nonce")
    assert f"{citizen}: revoked" in out and "keyCompromise" in out
    out = _ocsp(live, "citizen", citizen)  # with a nonce: signed on demand
    assert f"{citizen}: revoked" in out and "Response verify OK" in out

    seal_id, seal = _issue(live, "seal", SubjectSpec(seal_id="seal-1"), "seal")
    assert f"{seal}: good" in _ocsp(live, "seal", seal, "-no_nonce")
    live.authority.suspend(OPERATOR, seal_id, "reported lost")
    out = _ocsp(live, "seal", seal, "-no_nonce")
    assert f"{seal}: revoked" in out and "certificateHold" in out
    live.authority.resume(OPERATOR, seal_id, "found")
    out = _ocsp(live, "seal", seal, "-no_nonce")
    assert f"{seal}: good" in out


def test_ocsp_get_form_and_lint(live: Live) -> None:
    _, cert = _issue(live, "legal-person", SubjectSpec(identity=USCC), "lp")
    request = live.tmp / "req.der"
    openssl(
        "ocsp",
        "-issuer",
        str(live.chain.ca("legal-person")),
        "-cert",
        str(cert),
        "-no_nonce",
        "-reqout",
        str(request),
    )
    encoded = base64.b64encode(request.read_bytes()).decode()
    response = httpx.get(f"{live.url}/ocsp/{encoded}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    resp_path = live.tmp / "resp.der"
    resp_path.write_bytes(response.content)
    out = openssl(
        "ocsp",
        "-respin",
        str(resp_path),
        "-issuer",
        str(live.chain.ca("legal-person")),
        "-CAfile",
        str(live.chain.all),
        "-resp_text",
    )
    assert "Response verify OK" in out and "Cert Status: good" in out
    assert pkilint("lint_ocsp_response", "--document-format", "DER", str(resp_path)) == ""
    # and the POST form answers the same bytes (cached, pre-produced)
    posted = httpx.post(
        f"{live.url}/ocsp",
        content=request.read_bytes(),
        headers={"content-type": "application/ocsp-request"},
        timeout=10,
    )
    assert posted.content == response.content
    garbage = httpx.post(f"{live.url}/ocsp", content=b"garbage", timeout=10)
    assert garbage.status_code == 200 and garbage.content == bytes.fromhex("30030a0101")


def test_crl_endpoint_with_openssl(live: Live) -> None:
    cert_id, _ = _issue(
        live,
        "service",
        SubjectSpec(
            service=__import__("ca.issuance", fromlist=["ServiceSubject"]).ServiceSubject("bizsys")
        ),
        "svc",
    )
    row = live.authority.revoke(OPERATOR, cert_id, reason="superseded")
    response = httpx.get(f"{live.url}/crl/service.crl", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    assert "max-age" in response.headers["cache-control"] and response.headers["etag"]
    path = live.tmp / "service.crl"
    path.write_bytes(response.content)
    out = openssl(
        "crl", "-inform", "DER", "-in", str(path), "-CAfile", str(live.chain.all), "-noout", "-text"
    )
    assert "verify OK" in out
    assert f"Serial Number: {_even(row.serial)}" in out and "Superseded" in out
    assert (
        pkilint("lint_crl", "-t", "CRL", "-p", "PKIX", "--document-format", "DER", str(path)) == ""
    )
    not_modified = httpx.get(
        f"{live.url}/crl/service.crl",
        headers={"if-none-match": response.headers["etag"]},
        timeout=10,
    )
    assert not_modified.status_code == 304
    delta = httpx.get(f"{live.url}/crl/service-delta.crl", timeout=10)
    assert delta.status_code == 200
    (live.tmp / "delta.crl").write_bytes(delta.content)
    out = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(live.tmp / "delta.crl"),
        "-CAfile",
        str(live.chain.all),
        "-noout",
        "-text",
    )
    assert "verify OK" in out and "Delta CRL Indicator" in out
    root = httpx.get(f"{live.url}/crl/root.crl", timeout=10)
    (live.tmp / "root.crl").write_bytes(root.content)
    assert "verify OK" in openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        str(live.tmp / "root.crl"),
        "-CAfile",
        str(live.chain.root),
        "-noout",
    )
    with unchanged(live.authority.ctx.db, live.authority.ctx.keystore):
        assert httpx.get(f"{live.url}/crl/nope.crl", timeout=10).status_code == 404


def test_ca_certificates_are_published(live: Live) -> None:
    for name in ("root", "citizen", "legal-person", "seal", "service", "tsa", "citizen-ocsp"):
        response = httpx.get(f"{live.url}/ca/{name}.crt", timeout=10)
        assert response.status_code == 200, name
        assert response.content == live.authority.hierarchy.get(name).der
    with unchanged(live.authority.ctx.db, live.authority.ctx.keystore):
        assert httpx.get(f"{live.url}/ca/nope.crt", timeout=10).status_code == 404


def test_tsa_with_openssl(live: Live) -> None:
    data = live.tmp / "document.txt"
    data.write_bytes(b"an e-licence to be time-stamped")
    query = live.tmp / "request.tsq"
    openssl("ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query))
    response = httpx.post(
        f"{live.url}/tsa",
        content=query.read_bytes(),
        headers={"content-type": "application/timestamp-query"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/timestamp-reply"
    reply = live.tmp / "reply.tsr"
    reply.write_bytes(response.content)
    out = openssl(
        "ts",
        "-verify",
        "-data",
        str(data),
        "-in",
        str(reply),
        "-CAfile",
        str(live.chain.root),
        "-untrusted",
        str(live.chain.all),
    )
    assert "Verification: OK" in out
    text = openssl("ts", "-reply", "-in", str(reply), "-text")
    assert "Accuracy: 0x01 seconds" in text and "Nonce:" in text
    with unchanged(live.authority.ctx.db, live.authority.ctx.keystore):
        bad = httpx.post(
            f"{live.url}/tsa",
            content=b"junk",
            headers={"content-type": "application/timestamp-query"},
            timeout=10,
        )
        assert bad.status_code == 400
        wrong_type = httpx.post(f"{live.url}/tsa", content=query.read_bytes(), timeout=10)
        assert wrong_type.status_code == 415


def test_pyhanko_http_timestamper(live: Live) -> None:
    from pyhanko.sign.timestamps import HTTPTimeStamper

    stamper = HTTPTimeStamper(f"{live.url}/tsa")
    digest = hashlib.sha256(b"document").digest()
    import asyncio

    token = asyncio.run(stamper.async_timestamp(digest, "sha256"))
    info = token["content"]["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest


def test_sm2_tsa_route(live: Live) -> None:
    from asn1crypto import tsp

    from hsm.sm2 import SM3_WITH_SM2_OID

    data = live.tmp / "document.txt"
    data.write_bytes(b"an SM2 time-stamp")
    query = live.tmp / "request.tsq"
    openssl("ts", "-query", "-data", str(data), "-sha256", "-cert", "-out", str(query))
    response = httpx.post(
        f"{live.url}/tsa/sm2",
        content=query.read_bytes(),
        headers={"content-type": "application/timestamp-query"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/timestamp-reply"
    token = tsp.TimeStampResp.load(response.content)["time_stamp_token"]
    signer = token["content"]["signer_infos"][0]
    assert signer["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID
    with unchanged(live.authority.ctx.db, live.authority.ctx.keystore):
        wrong_type = httpx.post(f"{live.url}/tsa/sm2", content=b"x", timeout=10)
    assert wrong_type.status_code == 415


def _imprint_query(algorithm: str, hashed: bytes) -> bytes:
    """TimeStampReq { v1, MessageImprint { AlgorithmIdentifier { algorithm }, hashed }, 42 }."""
    from ca import der

    imprint = der.seq(der.seq(der.oid(algorithm)), der.octet_string(hashed))
    return der.seq(der.integer(1), imprint, der.integer(42))


@pytest.mark.parametrize("path", ["/tsa", "/tsa/sm2"])
def test_tsa_route_answers_malformed_queries_with_rejections(live: Live, path: str) -> None:
    from sqlalchemy import select

    from ca.models import CaTsaToken
    from ca.tsa import TimeStampResponse

    good = _imprint_query("2.16.840.1.101.3.4.2.1", hashlib.sha256(b"x").digest())
    cases = {
        "garbage": (b"\x00garbage\xff" * 3, "bad_data_format"),
        "wrong hash length": (
            _imprint_query("2.16.840.1.101.3.4.2.1", b"\x01" * 20),
            "bad_data_format",
        ),
        "unknown hash algorithm": (_imprint_query("1.2.3.4.5.6", b"\x01" * 32), "bad_alg"),
        "sha-1": (_imprint_query("1.3.14.3.2.26", b"\x01" * 20), "bad_alg"),
        "truncated": (good[:-4], "bad_data_format"),
        "empty": (b"", "bad_data_format"),
    }
    with unchanged(live.authority.ctx.db, live.authority.ctx.keystore):
        for name, (body, fail_info) in cases.items():
            response = httpx.post(
                f"{live.url}{path}",
                content=body,
                headers={"content-type": "application/timestamp-query"},
                timeout=10,
            )
            assert response.status_code == 400, name
            assert response.headers["content-type"] == "application/timestamp-reply", name
            status = TimeStampResponse.load(response.content)["status"]
            assert status["status"].native == "rejection", name
            assert status["fail_info"].native == {fail_info}, name
    granted = httpx.post(
        f"{live.url}{path}",
        content=good,
        headers={"content-type": "application/timestamp-query"},
        timeout=10,
    )
    assert granted.status_code == 200
    from asn1crypto import tsp

    token = tsp.TimeStampResp.load(granted.content)["time_stamp_token"]
    info = token["content"]["encap_content_info"]["content"].parsed
    assert info["nonce"].native == 42
    with live.authority.ctx.db.read() as session:  # recorded before it was answered
        row = session.get(CaTsaToken, f"{info['serial_number'].native:X}")
        assert row is not None and row.message_imprint == hashlib.sha256(b"x").hexdigest()
        assert len(list(session.scalars(select(CaTsaToken.serial)))) == 1
