"""Password and certificate login, throttling, CSRF, cookies, sessions and logout."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jose import jwt
from sqlalchemy import func, select

from govtrust.audit import AuditRecord, verify_chain
from tests.oidc.conftest import LOGOUT_REDIRECT, PASSWORD, USCC, OidcEnv, TestCa, query_of
from tests.oidc.flows import (
    authorize,
    certificate_login,
    code_from,
    exchange,
    finish_consent,
    follow_to_page,
    form_value,
    full_login,
    password_login,
    post_certificate,
    post_password,
)
from tests.unchanged import unchanged


def login_error(html: str) -> str:
    match = re.search(r'id="login-error">([^<]+)<', html)
    assert match, "no login error shown"
    return match.group(1)


def test_session_cookie_flags_and_csrf(oidc_env: OidcEnv) -> None:
    client_id, _ = oidc_env.register_client()
    with oidc_env.http() as http:
        path, html = follow_to_page(http, authorize(http, client_id))
        assert 'lang="zh-CN"' in html and "登录" in html
        # No CSRF token → refused, no session.
        with unchanged(oidc_env.platform.db):
            form = {"login_name": "zhangsan", "password": PASSWORD}
            bad = http.post(f"{path}/password", data=form)
            assert bad.status_code == 403 and "gt_session" not in bad.headers.get("set-cookie", "")
            wrong = http.post(
                f"{path}/password",
                data={"csrf": "x" * 32, "login_name": "zhangsan", "password": PASSWORD},
            )
            assert wrong.status_code == 403
        ok = http.post(
            f"{path}/password",
            data={"csrf": form_value(html, "csrf"), "login_name": "zhangsan", "password": PASSWORD},
        )
        cookie = ok.headers["set-cookie"]
        assert "gt_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
        # The interaction belongs to the browser that started it.
    with oidc_env.http() as stranger:
        assert stranger.get(path).status_code == 400
    with oidc_env.http() as http:
        english = http.get(path + "?lang=en")
        assert english.status_code in (200, 400)


def test_secure_cookie_when_tls() -> None:
    from govtrust.api.oidc_http import router  # noqa: F401 - imported for coverage of module
    from idp.oidc.config import ProviderConfig

    assert ProviderConfig(issuer="https://id.example", secure_cookies=True).secure_cookies


def test_the_platforms_provider_takes_the_reuse_interval_setting(oidc_env: OidcEnv) -> None:
    """``oidc_refresh_reuse_interval_seconds`` reaches the provider the platform builds."""
    from dataclasses import replace

    from govtrust.platform import Platform
    from govtrust.server.wiring import define_components
    from idp.oidc.factory import provider_for

    base = oidc_env.platform
    for seconds in (0, 45):
        platform = Platform(
            settings=replace(base.settings, oidc_refresh_reuse_interval_seconds=seconds),
            db=base.db,
            master_key=base.master_key,
            keystore=base.keystore,
        )
        define_components(platform)
        assert provider_for(platform).config.refresh_reuse_interval == seconds


def test_english_page_and_accessibility(oidc_env: OidcEnv) -> None:
    client_id, _ = oidc_env.register_client()
    with oidc_env.http() as http:
        path, _html = follow_to_page(http, authorize(http, client_id, ui_locales="en"))
        html = http.get(path).text
        assert 'lang="en"' in html and "Sign in" in html
        for field in ("login_name", "password", "certificate", "signature"):
            assert f'<label for="{field}">' in html
        assert "http://" not in html.split("<main>")[0].replace('content="', "")
        assert not re.search(r'(src|href)="https?://', html)


THROTTLED = ["oidc_login_throttle", "audit_log"]
CHALLENGE_USED = ["oidc_interactions"]


def test_password_throttling_locks_generically(oidc_env: OidcEnv) -> None:
    client_id, _ = oidc_env.register_client()
    db = oidc_env.platform.db
    with oidc_env.http() as http:
        texts = []
        for attempt in ("wrong1", "wrong2", "wrong3"):
            path, html = follow_to_page(http, authorize(http, client_id))
            with unchanged(db, allow=THROTTLED):  # counted and audited as denied, by design
                result = post_password(http, path, html, password=attempt)
            assert result.status_code == 400
            texts.append(login_error(result.text))
        path, html = follow_to_page(http, authorize(http, client_id))
        with unchanged(db, allow=THROTTLED):
            unknown = post_password(http, path, html, login="nobody", password="whatever1")
        texts.append(login_error(unknown.text))
        assert len(set(texts)) == 1  # no account enumeration
        # Locked now: even the right password fails, with the same message.
        path, html = follow_to_page(http, authorize(http, client_id))
        with unchanged(db, allow=THROTTLED):
            locked = post_password(http, path, html)
        assert locked.status_code == 400
        assert login_error(locked.text) == texts[0]
    with oidc_env.platform.db.read() as session:
        denied = session.scalar(
            select(func.count()).select_from(AuditRecord).where(AuditRecord.outcome == "denied")
        )
        assert denied and denied >= 4
        assert verify_chain(session).ok


def test_throttle_per_source_address(oidc_env: OidcEnv) -> None:
    from idp.oidc.passwords import LoginFailed

    pw = oidc_env.provider.passwords
    # A failed attempt is counted (oidc_login_throttle) and audited as denied (audit_log), by
    # design; nothing else changes.
    for i in range(6):
        with (
            unchanged(oidc_env.platform.db, allow=THROTTLED),
            pytest.raises(LoginFailed),
        ):
            pw.authenticate(f"someone{i}", "bad-password", source="10.0.0.9")
    with (
        unchanged(oidc_env.platform.db, allow=THROTTLED),
        pytest.raises(LoginFailed),
    ):  # the address is locked, even for the right password
        pw.authenticate("zhangsan", PASSWORD, source="10.0.0.9")
    assert pw.authenticate("zhangsan", PASSWORD, source="10.0.0.10") == oidc_env.citizen_id


def test_certificate_login_citizen(oidc_env: OidcEnv) -> None:
    client_id, _secret = oidc_env.register_client()
    key, cert = oidc_env.ca.citizen_cert("11010519491231002X", "张三")
    with oidc_env.http() as http:
        result = finish_consent(
            http, certificate_login(http, authorize(http, client_id), key, cert)
        )
        assert "code" in code_from(result)


def test_certificate_login_rejections(oidc_env: OidcEnv) -> None:
    client_id, _ = oidc_env.register_client()
    key, cert = oidc_env.ca.citizen_cert("11010519491231002X", "张三")
    expired_key, expired = oidc_env.ca.citizen_cert("11010519491231002X", "张三", expired=True)
    foreign_key, foreign = TestCa.create("rogue").citizen_cert("11010519491231002X", "张三")
    unknown_key, unknown = oidc_env.ca.citizen_cert("110105198001010024", "王五")
    revoked_key, revoked = oidc_env.ca.citizen_cert("11010519491231002X", "张三")
    oidc_env.ca.revoked.add(revoked.serial_number)
    other_key = oidc_env.ca.citizen_cert("11010519491231002X", "x")[0]
    cases = [
        (expired_key, expired),
        (foreign_key, foreign),
        (unknown_key, unknown),
        (revoked_key, revoked),
        (other_key, cert),  # signature by a key that is not the cert's
    ]
    db = oidc_env.platform.db
    with oidc_env.http() as http:
        for k, c in cases:
            path, html = follow_to_page(http, authorize(http, client_id))
            # a certificate login consumes its challenge, refused or not (single use): the
            # interaction's row is the one change
            with unchanged(db, allow=CHALLENGE_USED):
                result = post_certificate(http, path, html, k, c)
            assert result.status_code == 400, c.subject
            assert "certificate" in result.text.lower() or "证书" in result.text
        # A signature over a stale challenge fails too (challenges are single use).
        path, html = follow_to_page(http, authorize(http, client_id))
        from tests.oidc.conftest import pem, sign_challenge

        with unchanged(db, allow=CHALLENGE_USED):
            stale = http.post(
                f"{path}/certificate",
                data={
                    "csrf": form_value(html, "csrf"),
                    "certificate": pem(cert),
                    "signature": sign_challenge(key, "not-the-challenge"),
                },
            )
        assert stale.status_code == 400


def test_company_certificate_login_chooses_acting_person(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    key, cert = oidc_env.ca.company_cert(USCC, "福州示例有限公司")
    with oidc_env.http() as http:
        from tests.oidc.conftest import pkce_pair

        verifier, challenge = pkce_pair()
        first = certificate_login(
            http,
            authorize(
                http,
                client_id,
                scope="openid profile legal_person",
                code_challenge=challenge,
                code_challenge_method="S256",
            ),
            key,
            cert,
        )
        path, html = follow_to_page(http, first)
        assert "李四" in html and "张三" in html  # representative and agent
        with unchanged(oidc_env.platform.db):
            refused = http.post(
                f"{path}/acting",
                data={"csrf": form_value(html, "csrf"), "person_id": "ct_not_allowed"},
            )
        assert refused.status_code == 400
        chosen = http.post(
            f"{path}/acting",
            data={"csrf": form_value(html, "csrf"), "person_id": oidc_env.agent_id},
        )
        result = finish_consent(http, chosen)
        tokens = exchange(http, client_id, secret, code_from(result)["code"], verifier).json()
        claims = http.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).json()
        assert claims["sub"] == oidc_env.company_id
        assert claims["legal_person"]["uscc"] == USCC
        assert claims["legal_person"]["acting_person"]["id"] == oidc_env.agent_id
        from govtrust.api.oidc_grpc import token_resolver

        principal = token_resolver(oidc_env.platform, tokens["access_token"])
        assert principal.legal_person_id == oidc_env.company_id
        assert principal.citizen_id == oidc_env.agent_id
        # IntrospectToken names the acting person as the identity, the company as acting_for,
        # for the access token and for the refresh token alike
        from govtrust.api.oidc_grpc import introspect_pb
        from govtrust.v1 import common_pb2

        for token, kind in (
            (tokens["access_token"], common_pb2.TOKEN_KIND_ACCESS_TOKEN),
            (tokens["refresh_token"], common_pb2.TOKEN_KIND_REFRESH_TOKEN),
        ):
            answer = introspect_pb(oidc_env.platform, token)
            assert answer.active and answer.token_kind == kind
            assert answer.identity.id == oidc_env.agent_id
            assert answer.acting_for.id == oidc_env.company_id
            assert answer.acting_for.kind == common_pb2.IDENTITY_KIND_LEGAL_PERSON
            assert list(answer.amr) and answer.client_id == client_id
        assert not introspect_pb(oidc_env.platform, "not-a-token").active


def test_pairwise_subject(oidc_env: OidcEnv) -> None:
    a, a_secret = oidc_env.register_client(subject_type="pairwise")
    b, b_secret = oidc_env.register_client(
        subject_type="pairwise", sector_identifier="https://other-sector.example"
    )
    with oidc_env.http() as http:
        sub_a = jwt.get_unverified_claims(full_login(http, a, a_secret)["id_token"])["sub"]
        sub_b = jwt.get_unverified_claims(
            full_login(http, b, b_secret, prompt="login")["id_token"]
        )["sub"]
    assert sub_a != sub_b and oidc_env.citizen_id not in (sub_a, sub_b)


def test_rp_initiated_and_backchannel_logout(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client(
        backchannel_logout_uri="https://rp.example.gov.cn/bcl"
    )
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        sid = jwt.get_unverified_claims(tokens["id_token"])["sid"]
        # Unregistered post_logout_redirect_uri: error page, no redirect, no logout.
        with unchanged(oidc_env.platform.db):
            bad = http.get(
                "/oidc/end_session",
                params={
                    "id_token_hint": tokens["id_token"],
                    "post_logout_redirect_uri": "https://evil/x",
                },
            )
        assert bad.status_code == 400 and "location" not in bad.headers
        session = oidc_env.provider.session_for_cookie(http.cookies.get("gt_session"))
        assert session is not None
        notices = oidc_env.provider._end(session, actor="test")  # inspect the logout token
        logout = jwt.get_unverified_claims(notices[0].logout_token)
        assert logout["sid"] == sid and logout["aud"] == client_id
        assert "http://schemas.openid.net/event/backchannel-logout" in logout["events"]
        assert "nonce" not in logout
        assert jwt.get_unverified_header(notices[0].logout_token)["typ"] == "logout+jwt"
        # The session is over; its tokens too.
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        with unchanged(oidc_env.platform.db):
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401
            assert (
                query_of(authorize(http, client_id, prompt="none").headers["location"])["error"]
                == "login_required"
            )


def test_end_session_with_hint_redirects_and_confirm_without(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        out = http.get(
            "/oidc/end_session",
            params={
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": LOGOUT_REDIRECT,
                "state": "bye-1",
            },
        )
        assert out.status_code == 303
        assert out.headers["location"] == f"{LOGOUT_REDIRECT}?state=bye-1"
        assert (
            'gt_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
        )
        # Without a hint: a confirmation page with a CSRF-protected form.
        full_login(http, client_id, secret)
        page = http.get("/oidc/end_session")
        assert page.status_code == 200 and "logout-confirm" in page.text
        with unchanged(oidc_env.platform.db):  # a forged logout ends nothing
            forged = http.post("/oidc/end_session", data={"logout": "yes", "csrf": "bad"})
        assert forged.status_code == 403
        done = http.post(
            "/oidc/end_session", data={"logout": "yes", "csrf": form_value(page.text, "csrf")}
        )
        assert done.status_code == 200
        assert (
            query_of(authorize(http, client_id, prompt="none").headers["location"])["error"]
            == "login_required"
        )


def test_audit_records_every_change(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        full_login(http, client_id, secret)
    with oidc_env.platform.db.read() as session:
        actions = set(session.scalars(select(AuditRecord.action)))
        assert {
            "oidc.client.register",
            "oidc.login",
            "oidc.consent",
            "oidc.authorize",
            "oidc.token.code",
            "oidc.key.create",
        } <= actions
        assert verify_chain(session).ok


def _unused(value: Any) -> None:
    del value


def test_suspending_an_identity_ends_its_sessions_and_tokens(oidc_env: OidcEnv) -> None:
    from idp.types import IdentityRef, StatusAction

    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert http.get("/oidc/userinfo", headers=bearer).status_code == 200
        from tests.oidc.conftest import REGISTRAR

        oidc_env.registry.update_status(
            REGISTRAR,
            ref=IdentityRef(id=oidc_env.citizen_id),
            action=StatusAction.SUSPEND,
            reason="lost phone",
        )
        with unchanged(oidc_env.platform.db):
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401
            refresh = http.post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                auth=(client_id, secret or ""),
            )
            assert refresh.json()["error"] == "invalid_grant"
            silent = authorize(http, client_id, prompt="none")
            assert query_of(silent.headers["location"])["error"] == "login_required"


def test_staff_mapped_mode_gets_local_account_id(oidc_env: OidcEnv) -> None:
    from govtrust.api.oidc_grpc import introspect_pb, token_resolver
    from idp.types import ConnectionMode, SystemAccount
    from tests.oidc.conftest import ADMIN, REGISTRAR

    staff = oidc_env.registry.register_staff(
        ADMIN,  # only an admin gives staff roles
        name="王审批",
        department_code="FZ-SPJ",
        department_name="审批局",
        employee_number="E1001",
        roles=["verifier"],
        system_accounts=[SystemAccount("approval", ConnectionMode.MAPPED, "wang.sp")],
    )
    oidc_env.provider.passwords.set_password(
        REGISTRAR, identity_id=staff.id, login_name="wang.sp@fz", password="staff password 1"
    )
    client_id, secret = oidc_env.register_client(
        connection_mode="mapped", system_id="approval", client_name="审批系统"
    )
    with oidc_env.http() as http:
        from tests.oidc.conftest import pkce_pair

        verifier, challenge = pkce_pair()
        result = password_login(
            http,
            authorize(http, client_id, code_challenge=challenge, code_challenge_method="S256"),
            login="wang.sp@fz",
            password="staff password 1",
        )
        tokens = exchange(http, client_id, secret, code_from(result)["code"], verifier).json()
        claims = http.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).json()
    assert claims["local_account_id"] == "wang.sp" and claims["department"] == "FZ-SPJ"
    principal = token_resolver(oidc_env.platform, tokens["access_token"])
    assert principal.subject == staff.id and principal.has_role("verifier")
    assert introspect_pb(oidc_env.platform, tokens["access_token"]).local_account_id == "wang.sp"
