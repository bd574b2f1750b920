"""The fuzzing leg: every public parser gets its committed seed corpus (tests/fuzz/corpus/) and
hypothesis-made mutations of it, through the real server where the parser faces the network.

* HTTP (one ``govtrust serve``): OCSP (POST and GET), TSA, PDF upload and licence QR
  (``POST /verify/license``), licence identifiers (``GET /verify/license/<id>``), JWTs (the
  ``/oidc/userinfo`` bearer token and ``id_token_hint``) — never a 5xx;
* gRPC on the same server: signed data (``VerifyService.VerifyLicense``) and JWTs
  (``VerifyIdToken``) — never INTERNAL, UNKNOWN or UNAVAILABLE;
* in-process: the CSR parser and the identifier parsers — only their documented error, which
  the one error mapping (``govtrust.rpc.status.classify``) does not call internal.

Afterwards the server still runs (no crash, no worker restart) and logged no unexpected error.
Bounded and deterministic: ``derandomize=True``, ``GOVTRUST_FUZZ_EXAMPLES`` examples per parser
(default 50; raise it for a longer run by hand, see docs/security.md "Fuzzing").
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.csr import parse_csr
from govtrust.errors import GovtrustError
from govtrust.rpc.status import classify
from govtrust.v1 import common_pb2, license_pb2, verify_pb2, verify_pb2_grpc
from idp.identifiers import parse_resident_id, parse_uscc
from license.identifiers import parse_identifier
from tests.server.serving import Served, running, serve_command, server_env

CORPUS = Path(__file__).resolve().parent / "corpus"
EXAMPLES = int(os.environ.get("GOVTRUST_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ISSUING_CA = "legal-person"
BAD_GRPC = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}


def corpus(parser: str) -> list[bytes]:
    """The committed seeds of ``parser`` (sorted by name: a fixed order)."""
    files = sorted((CORPUS / parser).iterdir())
    assert files, f"no seeds in {CORPUS / parser}"
    return [f.read_bytes() for f in files]


@st.composite
def _mutant(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        at = draw(st.integers(0, len(data))) if data else 0
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            data = data[:at]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
    return bytes(data)


def inputs(parser: str, max_size: int = 4096) -> st.SearchStrategy[bytes]:
    """Seeds, mutated seeds and plain random bytes for ``parser``."""
    seeds = corpus(parser)
    return st.one_of(st.sampled_from(seeds), _mutant(seeds), st.binary(max_size=max_size))


# --- the server -------------------------------------------------------------------------------


class Target:
    """The running server and clients of it."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.http = httpx.Client(base_url=served.http_base, timeout=60)
        self.channel = grpc.insecure_channel(served.grpc_address)
        self.verify = verify_pb2_grpc.VerifyServiceStub(self.channel)
        self.calls = 0
        self.issuing_ca: asn1_x509.Certificate | None = None

    def post(self, path: str, content: bytes, content_type: str) -> httpx.Response:
        return self.check(
            self.http.post(
                path,
                content=content,
                headers={"Content-Type": content_type, "Accept": "application/json"},
            )
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.check(self.http.get(path, **kwargs))

    def check(self, response: httpx.Response) -> httpx.Response:
        self.calls += 1
        assert response.status_code < 500, (response.request.url, response.text[:500])
        return response

    def rpc(self, call: Callable[[], Any]) -> None:
        self.calls += 1
        code, details = grpc.StatusCode.OK, ""
        try:
            call()
        except grpc.RpcError as exc:
            code, details = exc.code(), str(exc.details())
        assert code not in BAD_GRPC, (code, details)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    command = serve_command("--data-dir", str(data), "--grpc-port", "0", "--http-port", "0")
    # no per-client rate limit on the public page: the fuzzer is one client
    env = server_env(GOVTRUST_VERIFY_RATE="100000", GOVTRUST_VERIFY_BURST="100000")
    with running(command, env) as served:
        pid = served.process.pid
        target = Target(served)
        try:
            yield target
        finally:
            target.http.close()
            target.channel.close()
        assert served.process.poll() is None, served.transcript()  # no crash
        assert served.process.pid == pid
        errors = [
            e
            for e in served.log_entries()
            if str(e.get("level", "")).lower() in {"error", "critical"}
        ]
        assert not errors, errors[:3]  # nothing unexpected, no worker died
        assert not any("exited unexpectedly" in line for line in served.stderr.lines)


# --- the checks, one per parser ---------------------------------------------------------------


def _ours(target: Target, body: bytes) -> bytes | None:
    """``body`` with every SHA-1/SHA-256 CertID naming the server's issuing CA (so fuzzed
    serials and nonces reach the responder, not the unauthorized answer); None if unparsable."""
    if target.issuing_ca is None:
        der = target.get(f"/ca/{ISSUING_CA}.crt").content
        target.issuing_ca = asn1_x509.Certificate.load(der)
    ca = target.issuing_ca
    try:
        request = asn1_ocsp.OCSPRequest.load(body)
        for item in request["tbs_request"]["request_list"]:
            cert_id = item["req_cert"]
            digest = cert_id["hash_algorithm"]["algorithm"].native
            if digest in ("sha1", "sha256"):
                cert_id["issuer_name_hash"] = getattr(ca.subject, digest)
                cert_id["issuer_key_hash"] = getattr(ca.public_key, digest)
        return bytes(request.dump(force=True))
    except Exception:  # noqa: BLE001 - not a request asn1crypto can rewrite: send it as is
        return None


def check_ocsp(target: Target, body: bytes) -> None:
    encoded = urllib.parse.quote(base64.b64encode(body[:1024]).decode(), safe="")
    ours = _ours(target, body)
    for response in (
        target.post("/ocsp", body, "application/ocsp-request"),
        target.get(f"/ocsp/{encoded}"),
        *([target.post("/ocsp", ours, "application/ocsp-request")] if ours else []),
    ):
        if response.status_code == 413:  # over the body limit: the JSON error document
            continue
        status = asn1_ocsp.OCSPResponse.load(response.content)["response_status"].native
        assert status != "internal_error", body.hex()  # RFC 6960's 500


def check_tsa(target: Target, body: bytes) -> None:
    target.post("/tsa", body, "application/timestamp-query")


def check_pdf(target: Target, body: bytes) -> None:
    target.post("/verify/license", body, "application/pdf")


def check_qr(target: Target, body: bytes) -> None:
    target.post("/verify/license", body, "text/plain")


def check_jwt(target: Target, body: bytes) -> None:
    text = body.decode("utf-8", errors="replace")
    bearer = "".join(c for c in text if 0x20 < ord(c) < 0x7F)  # what a header can carry
    target.get("/oidc/userinfo", headers={"Authorization": f"Bearer {bearer or 'x'}"})
    target.get("/oidc/end_session", params={"id_token_hint": text}, follow_redirects=False)
    target.rpc(
        lambda: target.verify.VerifyIdToken(
            verify_pb2.VerifyIdTokenRequest(token=text, kind=common_pb2.TOKEN_KIND_ID_TOKEN),
            timeout=60,
        )
    )


def check_signed_data(target: Target, body: bytes) -> None:
    evidence = license_pb2.LicenseEvidence(signed_data=body.decode("utf-8", errors="replace"))
    target.rpc(
        lambda: target.verify.VerifyLicense(
            verify_pb2.VerifyLicenseRequest(evidence=evidence), timeout=60
        )
    )


def _refuses_cleanly(parse: Callable[[], object]) -> None:
    error: GovtrustError | None = None
    try:
        parse()
    except GovtrustError as exc:
        error = exc
    assert error is None or not classify(error, "fuzz").internal, error


def check_csr(target: Target | None, body: bytes) -> None:
    _refuses_cleanly(lambda: parse_csr(body))


def check_identifier(target: Target | None, body: bytes) -> None:
    text = body.decode("utf-8", errors="replace")
    _refuses_cleanly(lambda: parse_identifier(text))
    _refuses_cleanly(lambda: parse_resident_id(text))
    _refuses_cleanly(lambda: parse_uscc(text))
    if target is not None:
        target.get("/verify/license/" + urllib.parse.quote(text, safe=""))


CHECKS: dict[str, Callable[[Any, bytes], None]] = {
    "ocsp": check_ocsp,
    "tsa": check_tsa,
    "csr": check_csr,
    "pdf": check_pdf,
    "qr": check_qr,
    "signed_data": check_signed_data,
    "jwt": check_jwt,
    "identifier": check_identifier,
}
SEEDS = [(parser, f.name) for parser in CHECKS for f in sorted((CORPUS / parser).iterdir())]


@pytest.mark.parametrize(("parser", "name"), SEEDS, ids=[f"{p}/{n}" for p, n in SEEDS])
def test_seed(target: Target, parser: str, name: str) -> None:
    """Every committed seed as it is (the regression cases among them)."""
    CHECKS[parser](target, (CORPUS / parser / name).read_bytes())


@pytest.mark.parametrize("parser", list(CHECKS))
@FUZZ
@given(data=st.data())
def test_fuzz(target: Target, parser: str, data: st.DataObject) -> None:
    """Seeds, mutated seeds and random bytes (bigger ones for the PDF upload)."""
    body = data.draw(inputs(parser, max_size=16384 if parser == "pdf" else 4096), label=parser)
    CHECKS[parser](target, body)
