"""The console's self-service pages over HTTP (TestClient): a citizen's and a legal person's
licences (status, QR, PDF download), access codes (created and shown once, revoked, usable by a
third party), who checked (reads by code, VerifyLicense by the licence's evidence — digests
only), my certificates (PEM); and the refusals: another's licence or certificate, a POST without
CSRF — each with nothing changed; markup shown escaped."""

from __future__ import annotations

import base64
import hashlib
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from ca.authority import authority_for
from ca.issuance import IssueRequest, SubjectSpec
from govtrust.errors import PermissionDenied
from govtrust.principal import Principal
from idp.basedata import import_legal_persons
from license.access import CODE_PREFIX, LicenceAccess
from license.runtime import runtime_for
from seal.owners import RegistryOwners
from tests.ca.conftest import make_csr, new_key
from tests.console.conftest import COMPANY, REGISTRAR, USCC, ConsoleEnv, form_value, login
from tests.console.licence_setup import (
    CA_OPERATOR,
    VERIFIER,
    Licences,
    issue_licences,
    stranger_certificate,
)
from tests.license.test_access_checks import next_version
from tests.oidc.conftest import pem, sign_challenge
from tests.oidc.flows import challenge_of
from tests.seal.conftest import resident_id
from tests.unchanged import unchanged


@pytest.fixture
def licences(console_env: ConsoleEnv) -> Licences:
    return issue_licences(console_env)


REP_NUMBER = resident_id("11010519491231002")  # the representative's (tests/console/conftest)


def client(env: ConsoleEnv) -> TestClient:
    return TestClient(env.app(), base_url=env.base, follow_redirects=False)


def nothing_changes(env: ConsoleEnv) -> AbstractContextManager[object]:
    """No row, key or file changes (the session's idle clock may move: it is a request)."""
    return unchanged(env.platform.db, env.platform.keystore, allow=["oidc_rp_sessions"])


def create_code(http: TestClient, csrf: str, identifier: str, name: str, purpose: str) -> str:
    until = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")
    page = http.post(
        f"/console/licences/{identifier}/grants",
        data={"csrf": csrf, "grantee_name": name, "purpose": purpose, "valid_until": until},
    )
    assert page.status_code == 200, page.text
    match = re.search(r'<code id="access-code">([^<]+)</code>', page.text)
    assert match, page.text[-2000:]
    return match.group(1)


def test_a_citizen_sees_their_own_licences_and_certificates(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    env = console_env
    fingerprint = stranger_certificate(env, licences)
    with client(env) as agent:
        login(agent, "agent")
        listing = agent.get("/console/licences")
        assert listing.status_code == 200
        assert f'data-licence="{licences.agent_permit}"' in listing.text
        assert licences.company_licence not in listing.text  # the agent's own, not the company's
        assert 'data-status="valid"' in listing.text and "健康证明" in listing.text
        page = agent.get(f"/console/licences/{licences.agent_permit}")
        assert page.status_code == 200 and 'id="qr"' in page.text
        qr = re.search(r'<img id="qr" src="data:image/png;base64,([^"]+)"', page.text)
        assert qr and base64.b64decode(qr.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
        assert 'id="download-pdf"' not in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        english = agent.get(f"/console/licences/{licences.agent_permit}?lang=en")
        assert "Access codes" in english.text and "Who checked" in english.text
        assert 'id="no-certificates"' in agent.get("/console/certificates").text
    with client(env) as stranger:
        login(stranger, "stranger")
        certificates = stranger.get("/console/certificates")
        assert certificates.status_code == 200
        assert f'data-fingerprint="{fingerprint}"' in certificates.text
        assert 'data-status="active"' in certificates.text
        pem = stranger.get(f"/console/certificates/{fingerprint}.pem")
        assert pem.status_code == 200 and pem.text.startswith("-----BEGIN CERTIFICATE-----")
        assert pem.headers["content-disposition"].startswith("attachment;")


def test_a_legal_person_downloads_shares_and_sees_who_checked(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    from verify.licences import LicenceCheckRequest, verify_licence_check
    from verify.service import context_for

    env = console_env
    identifier = licences.company_licence
    with client(env) as company:
        csrf = login(company, "company")
        listing = company.get("/console/licences")
        assert f'data-licence="{identifier}"' in listing.text
        assert licences.agent_permit not in listing.text
        pdf = company.get(f"/console/licences/{identifier}/document.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        assert pdf.headers["content-type"] == "application/pdf"
        with nothing_changes(env):  # issued without an OFD; no such format: nothing read
            assert company.get(f"/console/licences/{identifier}/document.ofd").status_code == 404
            assert company.get(f"/console/licences/{identifier}/document.txt").status_code == 400
        page = company.get(f"/console/licences/{identifier}")
        assert 'id="download-pdf"' in page.text and 'id="no-checks"' not in page.text

        code = create_code(company, csrf, identifier, "福州市税务局", "办理税务登记")
        assert code.startswith(CODE_PREFIX)
        page = company.get(f"/console/licences/{identifier}")
        assert 'data-state="active"' in page.text and code not in page.text  # shown once

        # a department's system reads it with the code, another verifies the PDF
        access = LicenceAccess(
            runtime_for(env.platform).service,
            RegistryOwners(runtime_for(env.platform).service.registry),
        )
        reader = Principal("service", "tax-intake-system", frozenset())
        assert access.read(reader, identifier, code, what="licence").role == "grantee"
        verified = verify_licence_check(
            context_for(env.platform),
            VERIFIER,
            LicenceCheckRequest(form="document", value=pdf.content),
        )
        verified.audited.result(timeout=30)
        page = company.get(f"/console/licences/{identifier}")
        assert page.text.count('class="check"') == 2
        assert "service:tax-intake-system" in page.text and "(福州市税务局)" in page.text
        assert "service:tax-bureau-system" in page.text
        assert hashlib.sha256(pdf.content).hexdigest()[:16] in page.text
        assert code not in page.text

        grant_id = re.search(r'data-grant="([^"]+)" data-state="active"', page.text)
        assert grant_id
        revoked = company.post(
            f"/console/licences/{identifier}/grants/{grant_id.group(1)}/revoke",
            data={"csrf": csrf, "reason": "办结"},
        )
        assert revoked.status_code == 303
        page = company.get(revoked.headers["location"])
        assert 'data-state="revoked"' in page.text and 'id="notice"' in page.text
    with unchanged(env.platform.db, allow=[]), pytest.raises(PermissionDenied, match="revoked"):
        access.read(reader, identifier, code, what="licence")


def test_another_persons_licence_or_certificate_is_refused_with_nothing_changed(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    env = console_env
    identifier = licences.company_licence
    fingerprint = stranger_certificate(env, licences)
    with client(env) as company:
        owner_csrf = login(company, "company")
        create_code(company, owner_csrf, identifier, "某银行", "开户")
        grant = re.search(
            r'data-grant="([^"]+)"', company.get(f"/console/licences/{identifier}").text
        )
        assert grant
    until = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d")
    with client(env) as stranger:
        csrf = login(stranger, "stranger")
        assert 'data-licence="' not in stranger.get("/console/licences").text
        with nothing_changes(env):
            for path in (
                f"/console/licences/{identifier}",
                f"/console/licences/{identifier}/document.pdf",
                f"/console/licences/{licences.agent_permit}",
            ):
                assert stranger.get(path).status_code == 403, path
            made = stranger.post(
                f"/console/licences/{identifier}/grants",
                data={"csrf": csrf, "grantee_name": "x", "purpose": "y", "valid_until": until},
            )
            assert made.status_code == 403 and CODE_PREFIX not in made.text
            revoke = stranger.post(
                f"/console/licences/{identifier}/grants/{grant.group(1)}/revoke",
                data={"csrf": csrf},
            )
            assert revoke.status_code == 403
            missing = next_version(identifier)
            assert stranger.get(f"/console/licences/{missing}").status_code == 404
            assert stranger.get("/console/licences/1.2.156.3005.2.x").status_code == 400
    with client(env) as agent:
        login(agent, "agent")
        with nothing_changes(env):
            assert agent.get(f"/console/certificates/{fingerprint}.pem").status_code == 403
    with client(env) as reviewer:  # staff hold no licences or certificates of their own
        login(reviewer, "reviewer")
        with nothing_changes(env):
            assert reviewer.get("/console/licences").status_code == 403
            assert reviewer.get(f"/console/licences/{identifier}").status_code == 403
            assert reviewer.get("/console/certificates").status_code == 403
        assert f'data-fingerprint="{fingerprint}"' not in agent.get("/console/certificates").text


def test_forms_without_csrf_are_refused_with_nothing_changed(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    env = console_env
    identifier = licences.company_licence
    until = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d")
    with client(env) as company:
        csrf = login(company, "company")
        create_code(company, csrf, identifier, "某银行", "开户")
        grant = re.search(
            r'data-grant="([^"]+)"', company.get(f"/console/licences/{identifier}").text
        )
        assert grant
        fields = {"grantee_name": "x", "purpose": "y", "valid_until": until}
        with nothing_changes(env):
            for token in ("", "x" * 43):
                sent = company.post(
                    f"/console/licences/{identifier}/grants", data={"csrf": token, **fields}
                )
                assert sent.status_code == 403 and CODE_PREFIX not in sent.text
            assert (
                company.post(f"/console/licences/{identifier}/grants", data=fields).status_code
                == 403
            )
            revoke = company.post(
                f"/console/licences/{identifier}/grants/{grant.group(1)}/revoke", data={}
            )
            assert revoke.status_code == 403


def test_names_with_markup_are_shown_escaped(console_env: ConsoleEnv, licences: Licences) -> None:
    env = console_env
    identifier = licences.company_licence
    name = "<script>x</script>\"'&局"
    with client(env) as company:
        csrf = login(company, "company")
        shown = create_code(company, csrf, identifier, name, "<b>用途</b>")
        assert shown.startswith(CODE_PREFIX)
        page = company.get(f"/console/licences/{identifier}").text
        assert "<script>" not in page and "<b>" not in page
        assert "&lt;script&gt;x&lt;/script&gt;&#34;&#39;&amp;局" in page
        assert "&lt;b&gt;用途&lt;/b&gt;" in page


def test_a_citizens_home_is_their_licences_with_the_self_service_links(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    env = console_env
    with client(env) as anonymous:
        landing = anonymous.get("/console/")
        assert landing.status_code == 200
        assert 'id="landing-licences" href="/console/licences"' in landing.text
        assert 'id="landing-certificates" href="/console/certificates"' in landing.text
        with nothing_changes(env):
            away = anonymous.get("/console/licences")
        assert away.status_code == 303 and away.headers["location"] == "/console/login"
    with client(env) as stranger:
        login(stranger, "stranger")
        home = stranger.get("/console/")
        assert home.status_code == 303 and home.headers["location"] == "/console/licences"
        page = stranger.get("/console/licences")
        assert page.status_code == 200
        assert 'id="nav-licences"' in page.text and 'id="nav-certificates"' in page.text
        assert licences.company_licence not in page.text
        assert licences.agent_permit not in page.text
    with client(env) as company:
        login(company, "company")  # the company login still lands on its seals
        assert company.get("/console/").headers["location"] == "/console/seals"


def test_who_checked_lists_license_service_verifications(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    from license.verification import LicenceVerifier

    env = console_env
    runtime = runtime_for(env.platform)
    permit = licences.agent_permit
    department = Principal("service", "social-security-system", frozenset())
    # what LicenseService.VerifyLicense runs for an authenticated caller
    LicenceVerifier(runtime.service, runtime.roots).check_for(department, "identifier", permit)
    with client(env) as agent:
        login(agent, "agent")
        page = agent.get(f"/console/licences/{permit}")
        assert page.status_code == 200
        assert page.text.count('class="check" data-how="verify"') == 1
        assert "service:social-security-system" in page.text
        assert "license_identifier" in page.text
        assert hashlib.sha256(permit.encode()).hexdigest()[:16] in page.text
    with client(env) as company:
        login(company, "company")  # the company's licence was not checked
        other = company.get(f"/console/licences/{licences.company_licence}").text
        assert 'id="checks"' in other and "social-security-system" not in other


def test_a_legal_person_logs_in_with_its_certificate(
    console_env: ConsoleEnv, licences: Licences
) -> None:
    """一证通: the company's certificate (issued by our CA, the key its own) signs the
    provider's challenge in the console's code + PKCE flow; the representative is chosen as
    the acting person and the console opens on the company's seals and licences."""
    env = console_env
    # the base data raise the company to assurance 2 (the legal-person profile needs it)
    import_legal_persons(
        env.platform.db,
        runtime_for(env.platform).service.registry.codec,
        f"uscc,name,legal_representative_id_number\n{USCC},{COMPANY},{REP_NUMBER}\n",
        principal=REGISTRAR,
    )
    key = new_key()
    issued = authority_for(env.platform).issue(
        CA_OPERATOR,
        IssueRequest(
            profile="legal-person",
            subject=SubjectSpec(identity=USCC),
            csr=make_csr(key),
            applicant=env.rep_id,  # the representative applies
        ),
    )
    cert = x509.load_der_x509_certificate(issued.certificate.der)
    with client(env) as company:
        response = company.get("/console/login")
        assert response.status_code == 303
        authorize = urlsplit(response.headers["location"])
        assert authorize.path == "/oidc/authorize" and "code_challenge=" in authorize.query
        response = company.get(f"{authorize.path}?{authorize.query}")
        path = response.headers["location"]
        html = company.get(path).text
        assert 'id="challenge"' in html
        # signed by another key: refused, only the (single-use) challenge is spent
        with unchanged(env.platform.db, env.platform.keystore, allow=["oidc_interactions"]):
            refused = company.post(
                f"{path}/certificate",
                data={
                    "csrf": form_value(html, "csrf"),
                    "certificate": pem(cert),
                    "signature": sign_challenge(new_key(), challenge_of(html)),
                },
            )
        assert refused.status_code == 400
        response = company.get(f"{authorize.path}?{authorize.query}")
        path = response.headers["location"]
        html = company.get(path).text
        response = company.post(
            f"{path}/certificate",
            data={
                "csrf": form_value(html, "csrf"),
                "certificate": pem(cert),
                "signature": sign_challenge(key, challenge_of(html)),
            },
        )
        assert response.status_code == 303, response.text[:2000]
        steps = []
        for _ in range(6):
            location = urlsplit(response.headers["location"])
            target = location._replace(scheme="", netloc="").geturl()
            steps.append(location.path)
            if location.path == "/console/":
                break
            response = company.get(target)
            if response.status_code == 200 and 'name="person_id"' in response.text:
                steps.append("acting")
                assert "张三" in response.text  # the representative acts
                response = company.post(
                    f"{location.path}/acting",
                    data={
                        "csrf": form_value(response.text, "csrf"),
                        "person_id": env.rep_id,
                    },
                )
            assert response.status_code in (302, 303), response.text[:2000]
        assert "acting" in steps and "/console/callback" in steps and steps[-1] == "/console/"
        home = company.get("/console/")
        assert home.status_code == 303 and home.headers["location"] == "/console/seals"
        seals = company.get("/console/seals")
        assert seals.status_code == 200 and 'id="user"' in seals.text
        assert "福州示例有限公司" in seals.text and "张三" in seals.text
        listing = company.get("/console/licences")
        assert f'data-licence="{licences.company_licence}"' in listing.text
        assert licences.agent_permit not in listing.text
