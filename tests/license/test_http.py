"""The public licence HTTP routes over a real department seal, on SQLite and PostgreSQL.

A department (the seal fixtures' company) with an ACTIVE official seal issues licences through
:class:`LicenceService` with :class:`DepartmentSealSigners`; the routes run in a FastAPI app
(TestClient) over a :class:`LicenceRuntime` built from the same objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from fastapi import FastAPI
from fastapi.testclient import TestClient

from govtrust.api.license_http import make_router, qr_problem
from govtrust.db import Database
from govtrust.http.errors import install_error_handlers
from govtrust.http.ratelimit import RateLimiter, client_key
from govtrust.principal import SYSTEM, Principal
from hsm.master import MasterKey
from license import catalogue
from license.catalogue import FieldSpec, LicenceType, ValidityRule
from license.departments import DepartmentSealSigners
from license.issuance import IssueRequest, LicenceService
from license.models import LicenceStatusListRow
from license.runtime import LicenceRuntime
from license.status_list import LicenceStatus, verify_status_list
from seal.runtime import SealRuntime
from seal.types import SealKind
from tests.license.test_catalogue import GOOD_BL
from tests.seal.conftest import USCC, World, resident_id, world  # noqa: F401 - fixture
from tests.unchanged import unchanged

DEPT = Principal("service", "amr-system", frozenset({f"licence-issuer:{USCC}"}))
ISSUER_NAME = "福州市市场监督管理局"
CITIZEN_ID = resident_id("11010519900101003")  # 王五 in the seal fixtures' registry
PERMIT_CODE = "11100000000013338W021"
MASTER = MasterKey.generate()  # the at-rest key of the licence secrets
SECRET_FIELDS = ("100万元人民币", "福建省福州市鼓楼区示例路1号", "软件开发;信息技术咨询服务。")


def permit_type() -> LicenceType:
    """A licence type held by citizens, with one public and one private field."""
    return LicenceType(
        type_code=PERMIT_CODE,
        name="导游证",
        name_en="Tour guide licence",
        defining_authority="文化和旅游部",
        issuing_departments=(USCC,),
        holder_code_types=("111",),
        fields=(
            FieldSpec("KZ_DYDJ", "导游等级", public=True),
            FieldSpec("KZ_JZDZ", "居住地址"),
        ),
        validity=ValidityRule(default_years=3, max_years=3, long_term_allowed=False),
    )


@dataclass
class Licences:
    """A department, its runtime, licences in every state and a client of the routes."""

    world: World
    runtime: LicenceRuntime
    service: LicenceService
    roots: list[x509.Certificate]
    base: str
    ids: dict[str, str] = field(default_factory=dict)
    qr: dict[str, str] = field(default_factory=dict)

    def issue(self, name: str, **overrides: object) -> str:
        values: dict[str, object] = {
            "type_code": catalogue.BUSINESS_LICENCE_CODE,
            "issuer_code": USCC,
            "issuer_name": ISSUER_NAME,
            "holder_code_type": "001",
            "holder_code": USCC,
            "fields": GOOD_BL,
            "valid_from": date(2015, 6, 1),
        }
        values.update(overrides)
        issued = self.service.issue(DEPT, IssueRequest(**values))  # type: ignore[arg-type]
        self.ids[name] = issued.identifier
        self.qr[name] = issued.qr_payload
        return issued.identifier


def make_licences(world: World, base: str) -> Licences:  # noqa: F811
    """Seal, catalogue, service and runtime for ``base`` (the public base URL)."""
    world.active_seal(SealKind.OFFICIAL)
    with world.db.transaction() as session:
        catalogue.seed_catalogue(session, SYSTEM, (USCC,))
        catalogue.define_type(session, SYSTEM, permit_type())
    signers = DepartmentSealSigners(world.service, world.keystore)
    service = LicenceService(
        world.db,
        world.registry,
        signers,
        master_key=MASTER,
        status_uri=lambda issuer: f"{base}/licence/status/{issuer}",
        verify_url=lambda identifier: f"{base}/verify/license/{identifier}",
    )
    roots = [x509.load_der_x509_certificate(world.seal_authority.chain()[-1])]
    runtime = LicenceRuntime(
        service, signers, SealRuntime(world.service, world.sealer), roots, base
    )
    return Licences(world, runtime, service, roots, base)


def issue_all(lic: Licences) -> None:
    """One licence in every state the page distinguishes."""
    lic.issue("valid")
    lic.issue("revoked")
    lic.service.revoke(DEPT, lic.ids["revoked"], "企业申请注销")
    lic.issue("suspended")
    lic.service.suspend(DEPT, lic.ids["suspended"], "涉嫌违法，暂停使用")
    lic.issue("expired", valid_until=date(2016, 5, 31))
    lic.issue("future", valid_from=date.today() + timedelta(days=30))
    old = lic.issue("annotated")
    lic.ids["version2"] = lic.service.new_version(
        DEPT, old, fields={"KZ_MC": "福州示例科技股份有限公司"}, reason="名称变更"
    ).identifier
    lic.issue(
        "citizen",
        type_code=PERMIT_CODE,
        holder_code_type="111",
        holder_code=CITIZEN_ID,
        fields={"KZ_DYDJ": "中级", "KZ_JZDZ": "北京市西城区某胡同9号"},
        valid_from=date.today() - timedelta(days=10),
        valid_until=None,
    )


def app_for(
    lic: Licences, *, limiter: RateLimiter | None = None, max_upload: int = 1 << 20
) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(make_router(lambda: lic.runtime, limiter=limiter, max_upload=max_upload))
    return app


@pytest.fixture
def lic(world: World) -> Licences:  # noqa: F811
    lic = make_licences(world, "https://gov.example")
    issue_all(lic)
    return lic


@pytest.fixture
def client(lic: Licences) -> Iterator[TestClient]:
    with TestClient(app_for(lic), base_url="https://gov.example") as c:
        yield c


def page_text(html: str) -> str:
    """The visible text of a page (tags dropped, whitespace collapsed)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def status_of(html: str) -> str:
    match = re.search(r'id="status" data-status="([a-z_]+)"', html)
    assert match, html
    return match.group(1)


# --- GET /verify/license/<identifier> -----------------------------------------------------------


def test_each_state_is_shown(lic: Licences, client: TestClient) -> None:
    expected = {
        "valid": ("valid", "有效", "Valid"),
        "revoked": ("revoked", "已注销", "Revoked"),
        "suspended": ("suspended", "已暂停使用", "Suspended"),
        "expired": ("expired", "已过期", "Expired"),
        "future": ("not_yet_valid", "尚未生效", "Not yet valid"),
        "annotated": ("superseded", "已被第 2 版取代", "Superseded by version 2"),
        "version2": ("valid", "有效", "Valid"),
    }
    for name, (state, zh, en) in expected.items():
        identifier = lic.ids[name]
        page = client.get(f"/verify/license/{identifier}")
        assert page.status_code == 200, (name, page.text)
        assert status_of(page.text) == state, name
        assert zh in page_text(page.text), name
        assert identifier in page.text
        assert 'data-ok="true"' in page.text, name  # the signature checks in every state
        english = client.get(f"/verify/license/{identifier}?lang=en")
        assert en in page_text(english.text), name
        assert '<html lang="en">' in english.text
    superseded = client.get(f"/verify/license/{lic.ids['annotated']}").text
    assert f'href="/verify/license/{lic.ids["version2"]}?lang=zh-CN"' in superseded
    newer = client.get(f"/verify/license/{lic.ids['version2']}").text
    assert "福州示例科技股份有限公司" in newer and lic.ids["annotated"] in newer  # previous link


def test_page_shows_public_fields_only_and_masks_citizens(
    lic: Licences, client: TestClient
) -> None:
    page = page_text(client.get(f"/verify/license/{lic.ids['valid']}").text)
    for shown in ("营业执照", ISSUER_NAME, USCC, "福州示例科技有限公司", "2015-06-01", "长期"):
        assert shown in page
    for label, value in (("法定代表人", "张三"), ("登记机关", "福州市市场监督管理局")):
        assert label in page and value in page
    for secret in SECRET_FIELDS:
        assert secret not in page
    assert "该证照真实有效" in page

    citizen = client.get(f"/verify/license/{lic.ids['citizen']}").text
    text = page_text(citizen)
    assert "王*" in text and "王五" not in text
    assert CITIZEN_ID not in citizen and CITIZEN_ID[:14] not in citizen
    assert "中级" in text and "北京市西城区某胡同9号" not in citizen
    json_view = client.get(
        f"/verify/license/{lic.ids['citizen']}", headers={"Accept": "application/json"}
    ).json()
    assert json_view["holder"] == {"name": "王*", "citizen": True}
    assert [f["name"] for f in json_view["fields"]] == ["KZ_DYDJ"]
    assert json_view["status"] == "valid" and json_view["signature_ok"] is True


def test_english_page_uses_the_english_labels(lic: Licences, client: TestClient) -> None:
    english = page_text(client.get(f"/verify/license/{lic.ids['valid']}?lang=en").text)
    assert "Legal representative" in english and "法定代表人" not in english
    chinese = page_text(client.get(f"/verify/license/{lic.ids['valid']}").text)
    assert "法定代表人" in chinese and "Legal representative" not in chinese
    as_json = client.post(
        "/verify/license", data={"qr": lic.qr["valid"]}, headers={"Accept": "application/json"}
    ).json()
    labels = {f["name"]: (f["label"], f["label_en"]) for f in as_json["fields"]}
    assert labels["KZ_FDDBR"] == ("法定代表人", "Legal representative")


def test_language_negotiation_and_switch_link(lic: Licences, client: TestClient) -> None:
    url = f"/verify/license/{lic.ids['valid']}"
    zh = client.get(url).text
    assert '<html lang="zh-CN">' in zh and "电子证照核验" in zh
    assert f'href="{url}?lang=en"' in zh
    by_header = client.get(url, headers={"Accept-Language": "en-GB,en;q=0.8"}).text
    assert '<html lang="en">' in by_header and "This licence is genuine and valid" in by_header
    override = client.get(url + "?lang=zh", headers={"Accept-Language": "en"}).text
    assert '<html lang="zh-CN">' in override
    assert f'href="{url}?lang=zh-CN"' in by_header


def test_security_headers_and_no_script(lic: Licences, client: TestClient) -> None:
    response = client.get(f"/verify/license/{lic.ids['valid']}")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "img-src 'self' data:" in csp and "script-src" not in csp
    style_hash = re.search(r"style-src '(sha256-[^']+)'", csp)
    assert style_hash
    import base64
    import hashlib

    style = re.search(r"<style>(.*?)</style>", response.text, re.S)
    assert style
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert style_hash.group(1) == f"sha256-{digest}"  # the inline style is the one allowed
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text.lower()
    assert not re.search(r"\son[a-z]+=", response.text)


def test_malformed_and_unknown_identifiers(lic: Licences, client: TestClient) -> None:
    valid = lic.ids["valid"]
    wrong_check = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    cases = {
        "not-an-identifier": "identifier.prefix",
        "1.2.156.3005.2.ABC": "identifier",
        wrong_check: "identifier.check",
        valid.replace(".001.", ".01.", 1): "identifier.version",
    }
    with unchanged(lic.world.db, lic.world.keystore):
        for bad, part in cases.items():
            response = client.get(f"/verify/license/{bad}")
            assert response.status_code == 400, bad
            assert "证照标识格式错误" in response.text and part in response.text, bad
            assert response.headers["content-security-policy"].startswith("default-src 'none'")
            as_json = client.get(f"/verify/license/{bad}", headers={"Accept": "application/json"})
            assert (
                as_json.status_code == 400 and as_json.json()["error"]["code"] == "INVALID_ARGUMENT"
            )
    # well-formed, right check character, but never issued here
    from license.identifiers import build_identifier

    unknown = str(build_identifier(catalogue.BUSINESS_LICENCE_CODE, USCC, "999999", 1))
    with unchanged(lic.world.db, lic.world.keystore):
        response = client.get(f"/verify/license/{unknown}?lang=en")
        assert response.status_code == 404 and "Licence not found" in response.text
        assert unknown in response.text


def test_a_tampered_stored_record_does_not_verify(lic: Licences, client: TestClient) -> None:
    from license.models import LicenceRow
    from license.vault import SIGNED_DATA

    identifier = lic.ids["valid"]
    with lic.world.db.transaction() as session:
        row = session.get(LicenceRow, identifier)
        assert row is not None
        vault = lic.service.vault
        head, payload, signature = vault.open_text(row.signed_data, SIGNED_DATA, identifier).split(
            "."
        )
        swapped = "A" if payload[-2] != "A" else "B"
        tampered = f"{head}.{payload[:-2]}{swapped}{payload[-1]}.{signature}"
        row.signed_data = vault.seal_text(tampered, SIGNED_DATA, identifier)
    page = client.get(f"/verify/license/{identifier}").text
    assert 'data-ok="false"' in page and "该证照未通过核验，请勿采信" in page


# --- POST /verify/license -----------------------------------------------------------------------


def test_post_qr_payload(lic: Licences, client: TestClient) -> None:
    ok = client.post("/verify/license", data={"qr": lic.qr["valid"]})
    assert ok.status_code == 200 and status_of(ok.text) == "valid"
    assert "提交的二维码内容" in ok.text and 'data-ok="true"' in ok.text
    as_json = client.post(
        "/verify/license",
        data={"qr": "  " + lic.qr["valid"] + "\n"},
        headers={"Accept": "application/json"},
    ).json()
    assert as_json["verdict"] == "VALID" and as_json["identifier"] == lic.ids["valid"]
    assert as_json["checked"] == "qr" and as_json["known"] is True
    revoked = client.post("/verify/license", data={"qr": lic.qr["revoked"], "lang": "en"})
    assert status_of(revoked.text) == "revoked" and "Revoked" in page_text(revoked.text)
    superseded = client.post(
        "/verify/license", data={"qr": lic.qr["annotated"]}, headers={"Accept": "application/json"}
    ).json()
    assert superseded["status"] == "superseded" and superseded["superseded_version"] == 2


def test_tampered_qr_payload_is_invalid_with_the_reason(lic: Licences, client: TestClient) -> None:
    from license.base45 import ALPHABET

    payload = lic.qr["valid"]
    positions = [4, 10, len(payload) // 2, len(payload) - 6, len(payload) - 1]
    for position in positions:
        original = payload[position]
        replacement = ALPHABET[(ALPHABET.index(original) + 1) % 36]  # stay alphanumeric
        tampered = payload[:position] + replacement + payload[position + 1 :]
        response = client.post(
            "/verify/license", data={"qr": tampered}, headers={"Accept": "application/json"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["verdict"] == "INVALID" and body["signature_ok"] is False, position
        assert body["reasons"][0] in {"MALFORMED", "BAD_SIGNATURE", "UNKNOWN_KEY"}, body
        page = client.post("/verify/license", data={"qr": tampered})
        assert "该证照未通过核验，请勿采信" in page.text
        assert body["reasons"][0] in page.text
        assert 'id="licence"' not in page.text  # nothing unverified is shown as licence data


def test_garbage_submissions_are_refused(lic: Licences, client: TestClient) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"data": {"qr": "hello"}}, 400, "starts with GT1:"),
        ({"data": {"qr": "GT1:abc"}}, 400, "alphanumeric"),
        ({"data": {"qr": ""}}, 400, "qr: empty"),
        ({"data": {"qr": "GT1:" + "A" * 5000}}, 400, "too long"),
        ({"data": {"other": "x"}}, 400, "send a licence PDF"),
        ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, 400, "content-type"),
        ({"files": {"pdf": ("a.pdf", b"", "application/pdf")}}, 400, "empty"),
        ({"files": {"pdf": ("a.pdf", b"GIF89a....", "application/pdf")}}, 400, "not a PDF"),
        ({"content": b"not a pdf", "headers": {"Content-Type": "application/pdf"}}, 400, "%PDF-"),
        (
            {
                "files": {"pdf": ("a.pdf", b"%PDF-1.7\n", "application/pdf")},
                "data": {"qr": lic.qr["valid"]},
            },
            400,
            "not both",
        ),
    ]
    for kwargs, status, words in cases:
        response = client.post("/verify/license", **kwargs)
        assert response.status_code == status, (kwargs, response.text[:300])
        assert words in response.text, (words, response.text[:2000])
        assert "无法核验提交的内容" in response.text
        headers = {"Accept": "application/json", **kwargs.get("headers", {})}
        rest = {k: v for k, v in kwargs.items() if k != "headers"}
        as_json = client.post("/verify/license", headers=headers, **rest)
        assert as_json.status_code == status and words in as_json.json()["error"]["message"]


def test_oversized_upload_is_413_unread(lic: Licences) -> None:
    with (
        TestClient(app_for(lic, max_upload=1024)) as small,
        unchanged(lic.world.db, lic.world.keystore),
    ):
        big = b"%PDF-1.7\n" + b"0" * (64 * 1024)
        response = small.post("/verify/license", files={"pdf": ("big.pdf", big, "application/pdf")})
        assert response.status_code == 413 and "上传的文件过大（上限 1 KiB）" in response.text
        raw = small.post(
            "/verify/license", content=big, headers={"Content-Type": "application/pdf"}
        )
        assert raw.status_code == 413
        just_over = b"%PDF-1.7\n" + b"0" * 1100  # fits the multipart allowance, not the limit
        response = small.post(
            "/verify/license",
            files={"pdf": ("b.pdf", just_over, "application/pdf")},
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "RESOURCE_EXHAUSTED"


def test_form_page_works_without_javascript(client: TestClient) -> None:
    page = client.get("/verify/license?lang=en")
    assert page.status_code == 200
    assert '<form method="post" action="/verify/license"' in page.text
    assert 'enctype="multipart/form-data"' in page.text and 'name="pdf"' in page.text
    assert 'name="qr"' in page.text and "<script" not in page.text


# --- rate limiting ------------------------------------------------------------------------------


def test_token_bucket_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # buckets are per client
    now[0] += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(0.5)
    now[0] += 100.0
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # capped at the burst
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)
    bounded = RateLimiter(rate=1, burst=1, max_clients=2, clock=lambda: now[0])
    for key in ("x", "y", "z"):
        bounded.take(key)
    assert len(bounded) == 2
    from govtrust.config import ConfigError, load_settings

    given = load_settings(env={"GOVTRUST_VERIFY_RATE": "0.5", "GOVTRUST_VERIFY_BURST": "7"})
    env = RateLimiter.from_settings(given)
    assert (env.rate, env.burst) == (0.5, 7)
    with pytest.raises(ConfigError, match=r"verify_rate \(environment GOVTRUST_VERIFY_RATE\)"):
        load_settings(env={"GOVTRUST_VERIFY_RATE": "fast"})
    with pytest.raises(ConfigError, match=r"verify_rate: 0\.0 must be above 0"):
        load_settings(env={"GOVTRUST_VERIFY_RATE": "0"})


def test_client_keys() -> None:
    from starlette.requests import Request

    def key(host: str) -> str:
        return client_key(Request({"type": "http", "client": (host, 1), "headers": []}))

    assert key("203.0.113.7") == "203.0.113.7"
    assert key("2001:db8:1:2:3:4:5:6") == key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert key("::ffff:203.0.113.7") == "203.0.113.7"


def test_rate_limit_answers_429_with_retry_after(lic: Licences) -> None:
    limiter = RateLimiter(rate=0.01, burst=3)
    with TestClient(app_for(lic, limiter=limiter)) as limited:
        url = f"/verify/license/{lic.ids['valid']}"
        assert [limited.get(url).status_code for _ in range(3)] == [200, 200, 200]
        with unchanged(lic.world.db, lic.world.keystore):
            refused = limited.get(url)
            assert refused.status_code == 429
            assert 90 <= int(refused.headers["retry-after"]) <= 100
            assert "请求过于频繁" in refused.text
            posted = limited.post(
                "/verify/license",
                data={"qr": lic.qr["valid"]},
                headers={"Accept": "application/json"},
            )
            assert (
                posted.status_code == 429 and posted.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
            )
        # the status list and trust list are not limited (verifiers poll them)
        assert limited.get(f"/licence/status/{USCC}").status_code == 200
        assert limited.get("/licence/trust-list").status_code == 200


# --- status list and trust list -----------------------------------------------------------------


def test_status_list_url_reflects_revocation_at_once(lic: Licences, client: TestClient) -> None:
    url = f"/licence/status/{USCC}"
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/statuslist+jwt"
    assert "max-age=60" in first.headers["cache-control"]
    verified = verify_status_list(
        first.text, lic.roots, uri=f"https://gov.example{url}", issuer_code=USCC
    )
    valid_index = lic.service.stored(lic.ids["valid"]).row.status_index
    revoked_index = lic.service.stored(lic.ids["revoked"]).row.status_index
    assert verified.status(valid_index) is LicenceStatus.VALID
    assert verified.status(revoked_index) is LicenceStatus.REVOKED
    etag = first.headers["etag"]
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""

    lic.service.revoke(DEPT, lic.ids["valid"], "吊销")
    after = client.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    again = verify_status_list(after.text, lic.roots, issuer_code=USCC)
    assert again.status(valid_index) is LicenceStatus.REVOKED
    page = client.get(f"/verify/license/{lic.ids['valid']}")
    assert status_of(page.text) == "revoked"

    with unchanged(lic.world.db, lic.world.keystore):
        unknown = client.get("/licence/status/11100000000013338W")
        assert unknown.status_code == 404
        with lic.world.db.read() as session:  # asking did not create a list for it
            assert session.get(LicenceStatusListRow, "11100000000013338W") is None
        assert client.get("/licence/status/short").status_code == 400


def test_trust_list_document(lic: Licences, client: TestClient) -> None:
    from license.qr import TrustList

    response = client.get("/licence/trust-list")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/json"
    )
    assert "public, max-age=" in response.headers["cache-control"]
    trust = TrustList.load(lic.roots, response.text, strict=True)
    assert len(trust) == 1
    from license.checking import Verdict, check_qr

    assert check_qr(lic.qr["valid"], trust, {}).verdict is Verdict.INDETERMINATE  # no list
    assert (
        client.get(
            "/licence/trust-list", headers={"If-None-Match": response.headers["etag"]}
        ).status_code
        == 304
    )


def test_qr_problem_names_the_position() -> None:
    assert qr_problem("GT1:AB#") == "qr: character 7 ('#') is not in the QR alphanumeric set"
    assert qr_problem("GT1:AB") is None


# --- POST a licence PDF -------------------------------------------------------------------------


def _issue_with_documents(lic: Licences) -> Any:
    """Issue a business licence with the documents its type names (sealed by the department)."""
    from license.runtime import document_maker

    signers = lic.runtime.signers
    with_documents = LicenceService(
        lic.world.db,
        lic.world.registry,
        signers,
        master_key=MASTER,
        status_uri=lic.service.status_uri,
        verify_url=lic.runtime.verify_url,
        documents=document_maker(lic.world.sealer),
        seals=signers,
    )
    return with_documents.issue(
        DEPT,
        IssueRequest(
            type_code=catalogue.BUSINESS_LICENCE_CODE,
            issuer_code=USCC,
            issuer_name=ISSUER_NAME,
            holder_code_type="001",
            holder_code=USCC,
            fields=GOOD_BL,
            valid_from=date(2015, 6, 1),
        ),
    )


def sealed_pdf(lic: Licences) -> tuple[str, bytes]:
    """Issue a business licence with its sealed PDF document (PAdES B-T)."""
    issued = _issue_with_documents(lic)
    assert issued.document_pdf is not None
    return issued.identifier, issued.document_pdf


def sealed_ofd(lic: Licences) -> tuple[str, bytes]:
    """Issue a business licence as a sealed OFD (GB/T 38540 seal signature, time-stamped)."""
    from dataclasses import replace

    admin = Principal("user", "admin", frozenset({"admin"}))
    with lic.world.db.transaction() as session:
        business = catalogue.get_type(session, catalogue.BUSINESS_LICENCE_CODE)
        catalogue.define_type(
            session, admin, replace(business, document_formats=("ofd",)), replace=True
        )
    issued = _issue_with_documents(lic)
    assert issued.document_ofd is not None and issued.document_pdf is None
    return issued.identifier, issued.document_ofd


def test_post_licence_pdf(lic: Licences, client: TestClient) -> None:
    from tests.seal.conftest import one_page_pdf

    identifier, pdf = sealed_pdf(lic)
    json_headers = {"Accept": "application/json"}
    ok = client.post(
        "/verify/license",
        files={"pdf": ("licence.pdf", pdf, "application/pdf")},
        headers=json_headers,
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["verdict"], body["status"], body["checked"]) == ("VALID", "valid", "pdf")
    assert body["identifier"] == identifier and body["signature_ok"] is True
    page = client.post("/verify/license", files={"pdf": ("licence.pdf", pdf, "application/pdf")})
    assert status_of(page.text) == "valid" and "提交的证照 PDF 文件" in page.text
    raw = client.post(
        "/verify/license",
        content=pdf,
        headers={"Content-Type": "application/pdf", **json_headers},
    )
    assert raw.json()["verdict"] == "VALID"

    # one byte of the sealed range changed (same length: the file still parses)
    producer = b"(govtrust licence documents)"
    assert pdf.count(producer) == 1
    altered = pdf.replace(producer, b"(govtrust licence documentz)")
    altered_body = client.post(
        "/verify/license",
        files={"pdf": ("licence.pdf", altered, "application/pdf")},
        headers=json_headers,
    ).json()
    assert altered_body["verdict"] == "INVALID" and altered_body["signature_ok"] is False
    assert altered_body["reasons"][0].startswith("PDF_"), altered_body

    cases = {
        "truncated": (pdf[: len(pdf) // 3], "pdf: "),
        "not a licence": (one_page_pdf(), "not a licence document"),
    }
    with unchanged(lic.world.db, lic.world.keystore):
        for name, (data, words) in cases.items():
            response = client.post(
                "/verify/license",
                files={"pdf": ("x.pdf", data, "application/pdf")},
                headers=json_headers,
            )
            assert response.status_code == 400, (name, response.text)
            assert words in response.json()["error"]["message"], (name, response.text)

    lic.service.revoke(DEPT, identifier, "企业申请注销")
    revoked = client.post(
        "/verify/license",
        files={"pdf": ("licence.pdf", pdf, "application/pdf")},
        headers=json_headers,
    ).json()
    assert (revoked["verdict"], revoked["status"]) == ("INVALID", "revoked")
    assert revoked["signature_ok"] is True and "REVOKED" in revoked["reasons"]


def test_post_licence_ofd(lic: Licences, client: TestClient) -> None:
    identifier, ofd = sealed_ofd(lic)
    assert ofd[:4] == b"PK\x03\x04"
    json_headers = {"Accept": "application/json"}
    for name in ("ofd", "pdf"):  # its own field, or the page's one file field
        ok = client.post(
            "/verify/license",
            files={name: ("licence.ofd", ofd, "application/ofd")},
            headers=json_headers,
        )
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert (body["verdict"], body["status"], body["checked"]) == ("VALID", "valid", "ofd")
        assert body["identifier"] == identifier and body["signature_ok"] is True
    page = client.post("/verify/license", files={"ofd": ("licence.ofd", ofd, "application/ofd")})
    assert status_of(page.text) == "valid" and "提交的证照 OFD 文件" in page.text
    english = client.post(
        "/verify/license?lang=en", files={"ofd": ("licence.ofd", ofd, "application/ofd")}
    )
    assert "the submitted licence OFD" in english.text
    raw = client.post(
        "/verify/license",
        content=ofd,
        headers={"Content-Type": "application/ofd", **json_headers},
    ).json()
    assert (raw["verdict"], raw["checked"]) == ("VALID", "ofd")

    # a page byte changed: the seal no longer covers the page
    from seal.ofd.package import OfdPackage, read_package, write_package

    files = dict(read_package(ofd).files)
    content = "Doc_0/Pages/Page_0/Content.xml"
    assert files[content].count(b"</ofd:TextCode>") > 1
    files[content] = files[content].replace(b"</ofd:TextCode>", b" </ofd:TextCode>", 1)
    altered = client.post(
        "/verify/license",
        content=write_package(OfdPackage(files)),
        headers={"Content-Type": "application/ofd", **json_headers},
    ).json()
    assert (altered["verdict"], altered["signature_ok"]) == ("INVALID", False), altered
    assert altered["reasons"][0] == "OFD_MODIFIED" and content in altered["reasons"][1]

    import io
    import zipfile

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("OFD.xml", b"<x/>")
        archive.writestr("Doc_0/bomb.xml", b"\0" * (40 * 1024 * 1024))
    cases = {
        "truncated": (ofd[: len(ofd) // 3], 400, "ofd: "),
        "garbage zip": (b"PK\x03\x04" + b"x" * 100, 400, "ofd: "),
        "zip bomb": (bomb.getvalue(), 413, "ofd: "),
    }
    with unchanged(lic.world.db, lic.world.keystore):
        for name, (data, status, words) in cases.items():
            response = client.post(
                "/verify/license",
                files={"ofd": ("x.ofd", data, "application/ofd")},
                headers=json_headers,
            )
            assert response.status_code == status, (name, response.text)
            assert words in response.json()["error"]["message"], (name, response.text)

    lic.service.revoke(DEPT, identifier, "企业申请注销")
    revoked = client.post(
        "/verify/license",
        files={"ofd": ("licence.ofd", ofd, "application/ofd")},
        headers=json_headers,
    ).json()
    assert (revoked["verdict"], revoked["status"]) == ("INVALID", "revoked")
    assert revoked["signature_ok"] is True and "REVOKED" in revoked["reasons"]


# --- production wiring --------------------------------------------------------------------------


def test_routes_are_served_by_the_platform_app(database: Database, tmp_path: Path) -> None:
    """``ROUTERS["license"]`` over ``runtime_for(platform)``: the real app serves the routes."""
    from ca.authority import SUBJECT_DIRECTORY
    from ca.directory import InMemoryDirectory
    from govtrust.config import Settings
    from govtrust.http.app import create_app
    from govtrust.observability.metrics import get_metrics
    from govtrust.platform import Platform
    from govtrust.server.adapters import ROUTERS
    from hsm.soft import SoftKeyStore

    master = MasterKey.generate()
    store = SoftKeyStore(database, master)
    platform = Platform(
        settings=Settings(data_dir=tmp_path, public_base_url="https://verify.example"),
        db=database,
        master_key=master,
        keystore=store,
    )
    directory = InMemoryDirectory()
    platform.components.define(SUBJECT_DIRECTORY, lambda: directory)
    try:
        with TestClient(
            create_app(platform, get_metrics(), routers={"license": ROUTERS["license"]})
        ) as app:
            form = app.get("/verify/license?lang=en")
            assert form.status_code == 200 and "E-licence verification" in form.text
            assert form.headers["content-security-policy"].startswith("default-src 'none'")
            # the first licence route builds the runtime, which bootstraps the CA: a served
            # one first, so that the refusals below are seen to change nothing
            trust = app.get("/licence/trust-list")
            assert trust.status_code == 200 and trust.json() == {"v": 1, "chains": []}
            with unchanged(database, store):
                bad = app.get("/verify/license/1.2.156.3005.2.X")
                assert bad.status_code == 400 and "证照标识格式错误" in bad.text
                assert app.get(f"/licence/status/{USCC}").status_code == 404
            garbage = app.post("/verify/license", data={"qr": "GT1:NOTAPAYLOAD"})
            assert garbage.status_code == 200 and 'data-ok="false"' in garbage.text
    finally:
        platform.close()  # also drops the runtimes' identity listeners


def test_a_stale_status_list_is_re_signed_on_request(lic: Licences) -> None:
    from datetime import UTC, datetime

    from license.runtime import status_list_token

    cached = lic.service.status_list_token(USCC)
    assert status_list_token(lic.service, USCC) == cached  # fresh: served as cached
    later = datetime.now(UTC) + timedelta(hours=2)  # past the list's one-hour ttl
    real_clock = lic.service._clock
    lic.service._clock = lambda: later
    try:
        renewed = status_list_token(lic.service, USCC)
    finally:
        lic.service._clock = real_clock
    assert renewed is not None and renewed != cached
    assert lic.service.status_list_token(USCC) == renewed  # stored for every worker
    listed = verify_status_list(renewed, lic.roots, issuer_code=USCC)
    revoked_index = lic.service.stored(lic.ids["revoked"]).row.status_index
    assert listed.status(revoked_index) is LicenceStatus.REVOKED
    assert status_list_token(lic.service, "11100000000013338W") is None
