"""The OpenID basic-OP checks listed in STANDARDS.md, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from jose import jwt

from tests.oidc.conftest import REDIRECT, OidcEnv, pkce_pair, query_of
from tests.oidc.flows import (
    authorize,
    code_from,
    exchange,
    finish_consent,
    follow_to_page,
    full_login,
    password_login,
)
from tests.unchanged import unchanged

# Reusing an authorization code or a rotated refresh token is refused *and* revokes the grant
# it belongs to (RFC 6749 §4.1.2, OAuth 2.0 Security BCP §4.14): the grant's and its refresh
# tokens' rows change, and the revocation is audited. Nothing else may change.
REUSE_REVOKES = ["oidc_grants", "oidc_refresh_tokens", "audit_log"]


def decode_id_token(http: Any, token: str, client_id: str, issuer: str) -> dict[str, Any]:
    jwks = http.get("/oidc/jwks").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[key["alg"]],
        audience=client_id,
        issuer=issuer,
        options={"verify_at_hash": False},
    )
    return claims


def test_discovery_and_jwks(oidc_env: OidcEnv) -> None:
    with oidc_env.http() as http:
        doc = http.get("/.well-known/openid-configuration").json()
        assert doc["issuer"] == oidc_env.issuer
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert "RS256" in doc["id_token_signing_alg_values_supported"]
        assert doc["acr_values_supported"] == [f"urn:govtrust:loa:{n}" for n in (1, 2, 3)]
        keys = http.get("/oidc/jwks").json()["keys"]
        assert {k["alg"] for k in keys} == {"ES256", "RS256"}
        assert all("d" not in k for k in keys)


def test_code_reuse_is_invalid_grant_and_revokes_its_tokens(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    verifier, challenge = pkce_pair()
    with oidc_env.http() as http:
        result = password_login(
            http, authorize(http, client_id, code_challenge=challenge, code_challenge_method="S256")
        )
        code = code_from(result)["code"]
        first = exchange(http, client_id, secret, code, verifier)
        assert first.status_code == 200
        tokens = first.json()
        with unchanged(oidc_env.platform.db, allow=REUSE_REVOKES):
            again = exchange(http, client_id, secret, code, verifier)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        # Every token from that code is dead now, and asking again changes nothing.
        with unchanged(oidc_env.platform.db):
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401
            intro = http.post(
                "/oidc/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
            )
            assert intro.json() == {"active": False}
            refresh = http.post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                auth=(client_id, secret),
            )
            assert refresh.json()["error"] == "invalid_grant"


def test_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(oidc_env: OidcEnv) -> None:
    client_id, _secret = oidc_env.register_client()
    with oidc_env.http() as http, unchanged(oidc_env.platform.db):
        for uri in ("https://evil.example/cb", REDIRECT + "/x", REDIRECT + "?a=1", ""):
            response = authorize(http, client_id, redirect_uri=uri)
            assert response.status_code == 400
            assert "location" not in response.headers
            assert response.headers["content-type"].startswith("text/html")
            assert "redirect_uri" in response.text
        unknown = authorize(http, "no-such-client")
        assert unknown.status_code == 400 and "location" not in unknown.headers


def test_nonce_is_echoed_and_id_token_claims(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret, nonce="abc-123")
        claims = decode_id_token(http, tokens["id_token"], client_id, oidc_env.issuer)
        assert claims["nonce"] == "abc-123"
        assert claims["acr"] == "urn:govtrust:loa:1"  # password, self-registered citizen
        assert claims["amr"] == ["pwd"]
        assert claims["sid"] and claims["at_hash"] and claims["auth_time"] <= time.time()
        assert claims["sub"] == oidc_env.citizen_id
        jwt.decode(  # at_hash binds the access token
            tokens["id_token"],
            next(
                k
                for k in http.get("/oidc/jwks").json()["keys"]
                if k["kid"] == jwt.get_unverified_header(tokens["id_token"])["kid"]
            ),
            algorithms=["ES256"],
            audience=client_id,
            access_token=tokens["access_token"],
        )


def test_rs256_client(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client(id_token_signing_alg="RS256")
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        assert jwt.get_unverified_header(tokens["id_token"])["alg"] == "RS256"
        decode_id_token(http, tokens["id_token"], client_id, oidc_env.issuer)


def test_prompt_none_without_session_is_login_required(oidc_env: OidcEnv) -> None:
    client_id, _secret = oidc_env.register_client()
    with oidc_env.http() as http:
        response = authorize(http, client_id, prompt="none")
        assert response.status_code == 303
        params = query_of(response.headers["location"])
        assert response.headers["location"].startswith(REDIRECT)
        assert params["error"] == "login_required" and params["state"] == "st-1"
        assert params["iss"] == oidc_env.issuer


def test_sso_and_prompt_none_with_session(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    other_id, _other_secret = oidc_env.register_client(client_name="Other app")
    with oidc_env.http() as http:
        full_login(http, client_id, secret)
        again = authorize(http, client_id, prompt="none")
        assert "code" in code_from(again)
        # Another client: the SSO session serves it; only consent is asked.
        second = finish_consent(http, authorize(http, other_id))
        assert "code" in code_from(second)


def test_max_age_forces_reauthentication_and_sets_auth_time(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        first = full_login(http, client_id, secret)
        t1 = decode_id_token(http, first["id_token"], client_id, oidc_env.issuer)["auth_time"]
        time.sleep(1.1)
        # Within max_age: no login page.
        assert "code" in code_from(authorize(http, client_id, max_age="3600"))
        # max_age=0 forces the login page again; auth_time moves forward.
        response = authorize(http, client_id, max_age="0")
        assert response.headers["location"].startswith("/oidc/interaction/")
        verifier, challenge = pkce_pair()
        result = password_login(
            http,
            authorize(
                http, client_id, max_age="0", code_challenge=challenge, code_challenge_method="S256"
            ),
        )
        tokens = exchange(http, client_id, secret, code_from(result)["code"], verifier).json()
        t2 = decode_id_token(http, tokens["id_token"], client_id, oidc_env.issuer)["auth_time"]
        assert t2 > t1


def test_id_token_hint(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        ok = authorize(http, client_id, prompt="none", id_token_hint=tokens["id_token"])
        assert "code" in code_from(ok)
        bad = authorize(http, client_id, prompt="none", id_token_hint="not.a.token")
        assert query_of(bad.headers["location"])["error"] == "invalid_request"


def test_unknown_parameters_are_ignored(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret, extra_param="x", foo="bar", claims_x="1")
        assert "id_token" in tokens


def test_claims_per_scope(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret, scope="openid")
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        only_sub = http.get("/oidc/userinfo", headers=bearer).json()
        assert "name" not in only_sub and "email" not in only_sub and only_sub["sub"]
        tokens = full_login(
            http, client_id, secret, scope="openid profile email phone address", prompt="consent"
        )
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        claims = http.get("/oidc/userinfo", headers=bearer).json()
        assert claims["name"] == "张三"
        assert claims["email"] == "zhangsan@example.cn"
        assert claims["phone_number"] == "13800138000"
        assert claims["address"]["country"] == "CN"
        assert claims["birthdate"] == "1949-12-31"
        assert "resident_id_number" not in claims  # identity scope not allowed for this client


def test_identity_scope_only_for_allowed_clients(oidc_env: OidcEnv) -> None:
    allowed, secret = oidc_env.register_client(allowed_scopes=["openid", "profile", "identity"])
    with oidc_env.http() as http:
        tokens = full_login(http, allowed, secret, scope="openid identity")
        claims = http.get(
            "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        ).json()
        assert claims["resident_id_number"] == "11010519491231002X"


def test_userinfo_get_post_header_body(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        token = full_login(http, client_id, secret)["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        by_get = http.get("/oidc/userinfo", headers=bearer)
        by_post_header = http.post("/oidc/userinfo", headers=bearer)
        by_post_body = http.post("/oidc/userinfo", data={"access_token": token})
        assert by_get.status_code == by_post_header.status_code == by_post_body.status_code == 200
        assert by_get.json() == by_post_header.json() == by_post_body.json()
        with unchanged(oidc_env.platform.db):
            missing = http.get("/oidc/userinfo")
            assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]


def test_refresh_rotation_and_reuse_revokes_the_family(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)

        def refresh(token: str) -> Any:
            return http.post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
                auth=(client_id, secret),
            )

        second = refresh(tokens["refresh_token"])
        assert second.status_code == 200
        new = second.json()
        assert new["refresh_token"] != tokens["refresh_token"]
        claims = decode_id_token(http, new["id_token"], client_id, oidc_env.issuer)
        assert claims["sub"] == oidc_env.citizen_id and "nonce" not in claims
        # Replaying the old one within the reuse interval while the new one is unused (a retry
        # after a lost answer): answered again, the new one superseded.
        again = refresh(tokens["refresh_token"])
        assert again.status_code == 200
        latest = again.json()
        assert latest["refresh_token"] not in {tokens["refresh_token"], new["refresh_token"]}
        # The superseded one comes back: refused, and the whole family is revoked.
        with unchanged(oidc_env.platform.db, allow=REUSE_REVOKES):
            assert refresh(new["refresh_token"]).json()["error"] == "invalid_grant"
        with unchanged(oidc_env.platform.db):
            for token in (latest["refresh_token"], tokens["refresh_token"]):
                assert refresh(token).json()["error"] == "invalid_grant"
            for access in (new["access_token"], latest["access_token"]):
                bearer = {"Authorization": f"Bearer {access}"}
                assert http.get("/oidc/userinfo", headers=bearer).status_code == 401


def test_refresh_reuse_without_a_reuse_interval_revokes_the_family(oidc_env: OidcEnv) -> None:
    """``refresh_reuse_interval = 0``: replaying the old token at once revokes the family."""
    oidc_env.provider.config = replace(oidc_env.provider.config, refresh_reuse_interval=0)
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)

        def refresh(token: str) -> Any:
            return http.post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
                auth=(client_id, secret),
            )

        new = refresh(tokens["refresh_token"]).json()
        with unchanged(oidc_env.platform.db, allow=REUSE_REVOKES):
            assert refresh(tokens["refresh_token"]).json()["error"] == "invalid_grant"
        with unchanged(oidc_env.platform.db):
            assert refresh(new["refresh_token"]).json()["error"] == "invalid_grant"
            bearer = {"Authorization": f"Bearer {new['access_token']}"}
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401


def test_a_refresh_rotation_appends_one_chained_audit_record(oidc_env: OidcEnv) -> None:
    """The rotation's record is written with it (issue 15 item 7); a refused token writes none."""
    from sqlalchemy import func, select

    from govtrust.audit import AuditRecord, chain_key, verify_chain
    from idp.oidc.clients import hash_secret

    client_id, secret = oidc_env.register_client()
    db = oidc_env.platform.db
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)

        def refresh(token: str) -> Any:
            return http.post(
                "/oidc/token",
                data={"grant_type": "refresh_token", "refresh_token": token},
                auth=(client_id, secret),
            )

        with db.read() as session:
            before = session.scalar(select(func.max(AuditRecord.seq)))
        with unchanged(db, allow=["oidc_refresh_tokens", "audit_log"]):
            new = refresh(tokens["refresh_token"]).json()
        with db.read() as session:
            added = list(session.scalars(select(AuditRecord).where(AuditRecord.seq > before)))
            assert [(r.action, r.actor, r.target, r.outcome) for r in added] == [
                ("oidc.token.refresh", f"client:{client_id}", added[0].target, "ok")
            ]
            assert added[0].target.startswith("oidc-grant:")
            assert tokens["refresh_token"] not in added[0].details
            assert new["refresh_token"] not in added[0].details
            assert json.loads(added[0].details) == {
                "rotated": hash_secret(tokens["refresh_token"]).hex(),
                "issued": [hash_secret(new["refresh_token"]).hex()],
            }
            assert verify_chain(session, chain_key(db)).ok
        # An unknown token is refused without any write, so without any record.
        with unchanged(db):
            assert refresh("not-a-token").json()["error"] == "invalid_grant"


def test_one_refresh_token_presented_twice_at_once_mints_once(oidc_env: OidcEnv) -> None:
    """Both requests read the token as live and sign; only one claims it, the other is reuse
    (without a reuse interval, which would answer the others in turn: test_mutants_token.py
    test_reuse_interval_race_is_answered_in_turn)."""
    from concurrent.futures import ThreadPoolExecutor

    from idp.oidc.errors import OAuthError

    oidc_env.provider.config = replace(oidc_env.provider.config, refresh_reuse_interval=0)
    client_id, secret = oidc_env.register_client()
    assert secret is not None
    with oidc_env.http() as http:
        token = full_login(http, client_id, secret)["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": token}

    def present(_: int) -> str:
        try:
            return str(oidc_env.provider.token(form, (client_id, secret))["refresh_token"])
        except OAuthError as exc:
            return exc.error

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(present, range(4)))
    winners = [o for o in outcomes if o != "invalid_grant"]
    assert len(winners) == 1, outcomes
    # The losers were a reuse of a rotated token: the whole family, the winner's too, is dead.
    again = {"grant_type": "refresh_token", "refresh_token": winners[0]}
    with unchanged(oidc_env.platform.db), pytest.raises(OAuthError, match="invalid_grant"):
        oidc_env.provider.token(again, (client_id, secret))


def test_refresh_with_a_wider_scope_is_refused_and_consumes_nothing(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        with unchanged(oidc_env.platform.db):
            wider = http.post(
                "/oidc/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "scope": "openid offline_access identity",
                },
                auth=(client_id, secret),
            )
            assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
        narrower = http.post(
            "/oidc/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "scope": "openid",
            },
            auth=(client_id, secret),
        )
        assert narrower.status_code == 200, narrower.text
        assert narrower.json()["scope"] == "openid"


def test_pkce_s256(oidc_env: OidcEnv) -> None:
    public_id, none_secret = oidc_env.register_client(client_type="public")
    assert none_secret is None
    with oidc_env.http() as http:
        no_pkce = authorize(http, public_id)
        assert query_of(no_pkce.headers["location"])["error"] == "invalid_request"
        plain = authorize(http, public_id, code_challenge="a" * 43, code_challenge_method="plain")
        assert query_of(plain.headers["location"])["error"] == "invalid_request"
        verifier, challenge = pkce_pair()
        result = password_login(
            http, authorize(http, public_id, code_challenge=challenge, code_challenge_method="S256")
        )
        code = code_from(result)["code"]
        wrong = exchange(http, public_id, None, code, "x" * 50)
        assert wrong.json()["error"] == "invalid_grant"
        # The failed attempt did not burn the code; the right verifier works.
        right = exchange(http, public_id, None, code, verifier)
        assert right.status_code == 200, right.text
        assert "id_token" in right.json()


def test_acr_values_step_up_to_certificate(oidc_env: OidcEnv) -> None:
    from tests.oidc.flows import certificate_login

    client_id, secret = oidc_env.register_client()
    key, cert = oidc_env.ca.citizen_cert("11010519491231002X", "张三")
    with oidc_env.http() as http:
        full_login(http, client_id, secret)  # loa:1 session
        # The client asks for loa:3: the session is not enough → login page with the step-up note.
        response = authorize(http, client_id, acr_values="urn:govtrust:loa:3")
        _path, html = follow_to_page(http, response)
        assert "urn:govtrust:loa:3" not in html and ("证书" in html or "certificate" in html)
        verifier, challenge = pkce_pair()
        response = authorize(
            http,
            client_id,
            acr_values="urn:govtrust:loa:3",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
        result = finish_consent(http, certificate_login(http, response, key, cert))
        tokens = exchange(http, client_id, secret, code_from(result)["code"], verifier).json()
        claims = decode_id_token(http, tokens["id_token"], client_id, oidc_env.issuer)
        assert claims["acr"] == "urn:govtrust:loa:3" and claims["amr"] == ["x509"]
        # prompt=none with a satisfied acr now works.
        ok = authorize(http, client_id, prompt="none", acr_values="urn:govtrust:loa:3")
        assert "code" in code_from(ok)


def test_prompt_none_needing_consent(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    other, _ = oidc_env.register_client(client_name="Other")
    with oidc_env.http() as http:
        full_login(http, client_id, secret)
        response = authorize(http, other, prompt="none")
        assert query_of(response.headers["location"])["error"] == "consent_required"


def test_consent_denied(oidc_env: OidcEnv) -> None:
    from tests.oidc.flows import form_value

    client_id, _secret = oidc_env.register_client()
    with oidc_env.http() as http:
        result = password_login(http, authorize(http, client_id), consent=False)
        path, html = follow_to_page(http, result)
        denied = http.post(
            f"{path}/consent", data={"csrf": form_value(html, "csrf"), "decision": "deny"}
        )
        assert query_of(denied.headers["location"])["error"] == "access_denied"


def test_authorize_errors_redirect_to_registered_uri(oidc_env: OidcEnv) -> None:
    client_id, _ = oidc_env.register_client()
    with oidc_env.http() as http:
        cases = {
            "unsupported_response_type": {"response_type": "token"},
            "invalid_scope": {"scope": "profile"},
            "request_not_supported": {"request": "x"},
        }
        for error, extra in cases.items():
            response = authorize(http, client_id, **extra)
            assert response.status_code == 303
            assert query_of(response.headers["location"])["error"] == error
        post = http.post(
            "/oidc/authorize",
            data={
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "response_type": "code",
                "scope": "openid",
                "prompt": "none",
            },
        )
        assert query_of(post.headers["location"])["error"] == "login_required"
        assert urlencode({"a": "b"})
