"""Interop with independent validators holding nothing but the root certificate.

pyHanko (online revocation fetched from the CA's URLs, the default behaviour) judges freshly
sealed PDFs valid at B-B, B-T and B-LT and a licence PDF; ``openssl ts -verify`` checks a
time-stamp token with the root alone (the token carries the TSA's chain); a B-LT document's DSS
holds the TSA's chain.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, tsp, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from govtrust.principal import Principal
from idp.types import IdentityRef
from seal.lifecycle import Application, Making
from seal.pdf import PdfSealRequest
from seal.placement import Position
from seal.types import PadesLevel, SealKind
from tests.ca.conftest import pem
from tests.conftest import require_tool
from tests.license.test_document import Licence, licence  # noqa: F401 - fixture
from tests.seal.conftest import World, one_page_pdf


def _root(world: World) -> x509.Certificate:
    return x509.Certificate.load(world.seal_authority.chain()[-1])


def online_verdicts(root: x509.Certificate, pdf: bytes) -> list[object]:
    """pyHanko's verdict on every signature: only the root trusted, everything else (chain,
    OCSP, CRLs) fetched online from the URLs in the certificates."""
    reader = PdfFileReader(io.BytesIO(pdf))
    return [
        validate_pdf_signature(sig, ValidationContext(trust_roots=[root], allow_fetching=True))
        for sig in reader.embedded_signatures
    ]


def assert_valid_online(root: x509.Certificate, pdf: bytes, *, timestamped: bool) -> None:
    """One signature, intact, valid, trusted (and its time-stamp too when ``timestamped``)."""
    [status] = online_verdicts(root, pdf)
    assert status.bottom_line, status.pretty_print_details()  # type: ignore[attr-defined]
    assert status.intact and status.valid and status.trusted  # type: ignore[attr-defined]
    timestamp = status.timestamp_validity  # type: ignore[attr-defined]
    if timestamped:
        assert timestamp is not None and timestamp.valid and timestamp.trusted, timestamp
    else:
        assert timestamp is None


@pytest.mark.parametrize("level", [PadesLevel.B_B, PadesLevel.B_T, PadesLevel.B_LT])
def test_pyhanko_validates_online_with_only_the_root(
    world: World, live_ca: str, level: PadesLevel
) -> None:
    seal = world.active_seal()
    result = world.sealer.seal(
        world.rep, PdfSealRequest(seal.id, one_page_pdf(), Position(1, 100, 100), level)
    )
    assert_valid_online(_root(world), result.sealed_pdf, timestamped=level is not PadesLevel.B_B)
    if level is PadesLevel.B_LT:  # the DSS holds the TSA's chain for offline checking
        reader = PdfFileReader(io.BytesIO(result.sealed_pdf))
        dss = [bytes(s.get_object().data) for s in reader.root["/DSS"]["/Certs"]]
        hierarchy = world.authority.hierarchy
        assert hierarchy.tsa().der in dss and hierarchy.get("service").der in dss


def _tokens(pdf: bytes) -> list[cms.ContentInfo]:
    reader = PdfFileReader(io.BytesIO(pdf))
    tokens = []
    for sig in reader.embedded_signatures:
        unsigned = sig.signer_info["unsigned_attrs"]
        for attribute in unsigned if unsigned.native else []:
            if attribute["type"].native == "signature_time_stamp_token":
                tokens.append(attribute["values"][0])
    return tokens


def test_time_stamp_token_carries_the_tsa_chain_for_openssl(world: World, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    seal = world.active_seal()
    result = world.sealer.seal(
        world.rep, PdfSealRequest(seal.id, one_page_pdf(), Position(1, 100, 100), PadesLevel.B_T)
    )
    [token] = _tokens(result.sealed_pdf)
    certificates = [c.chosen for c in token["content"]["certificates"]]
    hierarchy = world.authority.hierarchy
    expected = [hierarchy.tsa().der, hierarchy.get("service").der]
    assert sorted(c.dump() for c in certificates) == sorted(expected)  # not the root

    # openssl with the root alone (no -untrusted) builds the TSA's path from the token
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": b"\x11" * 32,
            },
            "cert_req": True,
        }
    )
    response = world.authority.timestamp(request.dump()).der
    (tmp_path / "request.tsq").write_bytes(request.dump())
    (tmp_path / "response.tsr").write_bytes(response)
    (tmp_path / "root.pem").write_text(pem(world.seal_authority.chain()[-1]))
    verify = subprocess.run(
        [
            openssl,
            "ts",
            "-verify",
            "-queryfile",
            str(tmp_path / "request.tsq"),
            "-in",
            str(tmp_path / "response.tsr"),
            "-CAfile",
            str(tmp_path / "root.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0 and "Verification: OK" in verify.stdout, verify.stderr


def test_pyhanko_validates_a_licence_pdf_online_with_only_the_root(
    licence: Licence,  # noqa: F811 - the imported fixture
    live_ca: str,
) -> None:
    pdf = licence.documents.make_pdf(licence.doc, licence.context)
    assert_valid_online(_root(licence.world), pdf, timestamped=True)
    # the licence's DSS holds the time-stamp's chain (the TSA and its CA), not the root
    reader = PdfFileReader(io.BytesIO(pdf))
    dss = [bytes(s.get_object().data) for s in reader.root["/DSS"]["/Certs"]]
    hierarchy = licence.world.authority.hierarchy
    assert hierarchy.tsa().der in dss and hierarchy.get("service").der in dss
    assert hierarchy.get("root").der not in dss


def test_pyhanko_validates_online_against_govtrust_serve(tmp_path: Path, database_url: str) -> None:
    """The same verdicts with revocation fetched from a real ``govtrust serve`` process: the
    seals are made in this process over the server's database and key store, pyHanko fetches
    OCSP, CRLs and CA certificates from the server's HTTP port named in the certificates."""
    from ca.authority import authority_for
    from govtrust.config import load_settings
    from govtrust.server.wiring import open_wired
    from idp.registry import IdentityRegistry
    from seal.runtime import runtime_for
    from tests.seal.conftest import FILING, MAKER, REGISTRAR, REVIEWER, USCC, free_port, resident_id
    from tests.server.serving import running, serve_command, server_env

    port = free_port()
    data = tmp_path / "data"
    command = serve_command("--data-dir", str(data), "--grpc-port", "0", "--http-port", str(port))
    with running(command, server_env(GOVTRUST_DATABASE_URL=database_url)) as served:
        assert served.http_base.endswith(f":{port}")
        settings = load_settings(
            {"data_dir": str(data), "http_port": port}, env={"GOVTRUST_DATABASE_URL": database_url}
        )
        platform = open_wired(settings, migrate=False)
        try:
            root = x509.Certificate.load(authority_for(platform).hierarchy.get("root").der)
            registry = IdentityRegistry.open(platform.db, platform.master_key, data_dir=data)
            rep = registry.register_citizen(
                REGISTRAR, name="张三", id_number=resident_id("11010519491231002")
            )
            company = registry.register_legal_person(
                REGISTRAR,
                uscc=USCC,
                name="福州示例科技有限公司",
                legal_representative=IdentityRef(id=rep.id),
            )
            representative = Principal("user", "rep", frozenset(), citizen_id=rep.id)
            runtime = runtime_for(platform)
            s = runtime.service
            seal = s.apply(
                representative, Application(IdentityRef(id=company.id), SealKind.CONTRACT)
            )
            s.review(REVIEWER, seal.id, True, "ok")
            s.make(MAKER, seal.id, Making())
            s.file(FILING, seal.id, "", "")
            s.issue(FILING, seal.id, "")
            for level in (PadesLevel.B_B, PadesLevel.B_T, PadesLevel.B_LT):
                result = runtime.pdf.seal(
                    representative,
                    PdfSealRequest(seal.id, one_page_pdf(), Position(1, 100, 100), level),
                )
                assert_valid_online(
                    root, result.sealed_pdf, timestamped=level is not PadesLevel.B_B
                )
        finally:
            platform.close()
        served.stop()
