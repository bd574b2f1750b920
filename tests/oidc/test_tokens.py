"""Forged tokens are refused by every endpoint that accepts tokens; client authentication,
client_credentials, introspection, revocation and key rotation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk as jose_jwk
from jose import jwt

from govtrust.api.oidc_grpc import OidcClientRpcs, introspect_pb, token_resolver
from govtrust.errors import PermissionDenied, Unauthenticated
from govtrust.rpc.context import acting_as
from govtrust.v1 import identity_pb2
from tests.oidc.conftest import ADMIN, OidcEnv
from tests.oidc.flows import full_login
from tests.unchanged import unchanged

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict[str, Any], secret: bytes, hdr: dict[str, str]) -> str:
    """An HS256 JWS keyed with ``secret`` (built by hand: python-jose refuses public keys)."""
    head = b64(json.dumps({"alg": "HS256", **hdr}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def forge_all(env: OidcEnv, genuine: str) -> dict[str, str]:
    """Five forgeries modelled on a genuine access token."""
    header = jwt.get_unverified_header(genuine)
    claims = jwt.get_unverified_claims(genuine)
    key = env.provider.keys.lookup(header["kid"])
    assert key is not None
    der = env.platform.keystore.public_key(key.keystore_key_id)
    pem = serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    foreign = ec.generate_private_key(ec.SECP256R1())
    foreign_pem = foreign.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    hdr = {"kid": header["kid"], "typ": "at+jwt"}
    forged = {
        # HS256 keyed with our public key (DER, and PEM for good measure).
        "hs256_der": hs256(claims, der, hdr),
        "hs256_pem": hs256(claims, pem, hdr),
        "alg_none": ".".join(
            [b64(json.dumps({"alg": "none", **hdr}).encode()), b64(json.dumps(claims).encode()), ""]
        ),
        "foreign_key": jwt.encode(claims, foreign_pem.decode(), algorithm="ES256", headers=hdr),
        "expired": env.provider._access_token(
            sub=claims["sub"],
            client_id=claims.get("client_id", claims["aud"]),
            scopes=claims.get("scope", "openid").split(),
            now=__import__("datetime").datetime.fromtimestamp(
                time.time() - 7200, __import__("datetime").UTC
            ),
            jti=str(claims.get("jti", "g")).split(".")[0] + "." + uuid.uuid4().hex,
        ),
    }
    wrong_aud = dict(claims, aud="https://other.example")
    forged["wrong_audience"] = env.provider.keys and _sign(env, wrong_aud)
    return forged


def _sign(env: OidcEnv, claims: dict[str, Any]) -> str:
    from idp.oidc.keys import sign_jwt

    key = env.provider.keys.active("ES256")
    return sign_jwt(
        env.platform.keystore,
        key.keystore_key_id,
        alg="ES256",
        kid=key.kid,
        claims=claims,
        typ="at+jwt",
    )


def test_forged_tokens_are_refused_everywhere(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        genuine = tokens["access_token"]
        forged = forge_all(oidc_env, genuine)
        # Sanity: the genuine token works everywhere.
        assert http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {genuine}"}).is_success
        assert token_resolver(oidc_env.platform, genuine).citizen_id == oidc_env.citizen_id
        with unchanged(oidc_env.platform.db):
            for name, token in forged.items():
                bearer = {"Authorization": f"Bearer {token}"}
                assert http.get("/oidc/userinfo", headers=bearer).status_code == 401, name
                assert http.post("/oidc/userinfo", headers=bearer).status_code == 401, name
                assert http.post("/oidc/userinfo", data={"access_token": token}).status_code == 401
                intro = http.post(
                    "/oidc/introspect", data={"token": token}, auth=(client_id, secret)
                )
                assert intro.json() == {"active": False}, name
                revoke = http.post("/oidc/revoke", data={"token": token}, auth=(client_id, secret))
                assert revoke.status_code == 200, name
                with pytest.raises(Unauthenticated):
                    token_resolver(oidc_env.platform, token)
                assert not introspect_pb(oidc_env.platform, token).active, name
                # As an id_token_hint at logout and at authorize.
                page = http.get("/oidc/end_session", params={"id_token_hint": token})
            assert page.status_code == 400 and "location" not in page.headers, name
        # Forged ID tokens as hints (same five shapes, modelled on the ID token).
        id_forged = forge_all(oidc_env, tokens["id_token"])
        with unchanged(oidc_env.platform.db):
            for name, token in id_forged.items():
                if name in {"expired", "wrong_audience"}:
                    continue  # an expired hint is fine by spec; audience is checked against client
                page = http.get("/oidc/end_session", params={"id_token_hint": token})
                assert page.status_code == 400, name
        # Revocation of the forgeries did nothing to the genuine token.
        assert http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {genuine}"}).is_success
        # An ID token is not an access token.
        bearer = {"Authorization": f"Bearer {tokens['id_token']}"}
        assert http.get("/oidc/userinfo", headers=bearer).status_code == 401


def test_client_authentication_methods(oidc_env: OidcEnv) -> None:
    basic_id, basic_secret = oidc_env.register_client(grant_types=["client_credentials"])
    post_id, post_secret = oidc_env.register_client(
        grant_types=["client_credentials"], token_endpoint_auth_method="client_secret_post"
    )
    key = ec.generate_private_key(ec.SECP256R1())
    public = jose_jwk.construct(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "ES256",
    ).to_dict()
    public.update(kid="k1", alg="ES256")
    pkj_id, pkj_secret = oidc_env.register_client(
        grant_types=["client_credentials"],
        token_endpoint_auth_method="private_key_jwt",
        jwks=json.dumps({"keys": [public]}),
    )
    assert pkj_secret is None
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cc = {"grant_type": "client_credentials"}
    with oidc_env.http() as http:
        assert http.post("/oidc/token", data=cc, auth=(basic_id, basic_secret)).status_code == 200
        db = oidc_env.platform.db
        with unchanged(db):
            wrong = http.post("/oidc/token", data=cc, auth=(basic_id, "nope"))
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        assert "Basic" in wrong.headers["www-authenticate"]
        # A client registered for basic may not switch to post.
        with unchanged(db):
            switched = http.post(
                "/oidc/token", data={**cc, "client_id": basic_id, "client_secret": basic_secret}
            )
        assert switched.status_code == 401
        posted = http.post(
            "/oidc/token", data={**cc, "client_id": post_id, "client_secret": post_secret}
        )
        assert posted.status_code == 200
        endpoint = f"{oidc_env.issuer}/oidc/token"

        def assertion(**over: Any) -> str:
            claims = {
                "iss": pkj_id,
                "sub": pkj_id,
                "aud": endpoint,
                "jti": uuid.uuid4().hex,
                "exp": int(time.time()) + 60,
                "iat": int(time.time()),
            }
            claims.update(over)
            return str(jwt.encode(claims, private_pem, algorithm="ES256", headers={"kid": "k1"}))

        def pkj(token: str) -> Any:
            return http.post(
                "/oidc/token",
                data={
                    **cc,
                    "client_assertion_type": JWT_BEARER,
                    "client_assertion": token,
                },
            )

        good = assertion()
        assert pkj(good).status_code == 200
        with unchanged(db):
            assert pkj(good).status_code == 401  # replayed jti
            assert pkj(assertion(aud="https://elsewhere")).status_code == 401
            assert pkj(assertion(exp=int(time.time()) - 300)).status_code == 401
        foreign = (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
        forged = jwt.encode(
            {
                "iss": pkj_id,
                "sub": pkj_id,
                "aud": endpoint,
                "jti": "x",
                "exp": int(time.time()) + 60,
            },
            foreign,
            algorithm="ES256",
            headers={"kid": "k1"},
        )
        with unchanged(db):
            assert pkj(forged).status_code == 401
        hs = hs256(
            {
                "iss": pkj_id,
                "sub": pkj_id,
                "aud": endpoint,
                "jti": "y",
                "exp": int(time.time()) + 60,
            },
            json.dumps(public).encode(),
            {"kid": "k1"},
        )
        with unchanged(db):
            assert pkj(hs).status_code == 401


def test_client_credentials_introspection_and_grpc_principal(oidc_env: OidcEnv) -> None:
    from govtrust.principal import Principal

    client_id, secret = (
        oidc_env.provider.clients.register(
            ADMIN,
            client_name="审批系统",
            grant_types=["client_credentials"],
            roles=["verifier"],
            allowed_scopes=["openid", "profile"],
        ).client.client_id,
        None,
    )
    secret = oidc_env.provider.clients.register(
        ADMIN, client_name="rs", client_id="resource-server", grant_types=["client_credentials"]
    ).client_secret
    rotate = oidc_env.provider.clients.register(
        ADMIN, client_name="cc", grant_types=["client_credentials"], roles=["verifier"]
    )
    with oidc_env.http() as http:
        response = http.post(
            "/oidc/token",
            data={"grant_type": "client_credentials"},
            auth=(rotate.client.client_id, rotate.client_secret or ""),
        )
        body = response.json()
        assert body["token_type"] == "Bearer" and "refresh_token" not in body
        assert "id_token" not in body
        token = body["access_token"]
        intro = http.post(
            "/oidc/introspect", data={"token": token}, auth=("resource-server", secret or "")
        )
        assert intro.json()["active"] and intro.json()["client_id"] == rotate.client.client_id
        principal = token_resolver(oidc_env.platform, token)
        assert principal == Principal("service", rotate.client.client_id, frozenset({"verifier"}))
        # Unsupported grant and a grant the client may not use.
        with unchanged(oidc_env.platform.db):
            bad = http.post(
                "/oidc/token",
                data={"grant_type": "password"},
                auth=(rotate.client.client_id, rotate.client_secret or ""),
            )
            assert bad.json()["error"] == "unsupported_grant_type"
            code = http.post(
                "/oidc/token",
                data={"grant_type": "authorization_code", "code": "x"},
                auth=(rotate.client.client_id, rotate.client_secret or ""),
            )
            assert code.json()["error"] == "unauthorized_client"
        # Revocation by its own client.
        assert http.post(
            "/oidc/revoke",
            data={"token": token},
            auth=(rotate.client.client_id, rotate.client_secret or ""),
        ).is_success
        with unchanged(oidc_env.platform.db):
            assert http.post(
                "/oidc/introspect", data={"token": token}, auth=("resource-server", secret or "")
            ).json() == {"active": False}
            with pytest.raises(Unauthenticated):
                token_resolver(oidc_env.platform, token)
    assert client_id


def test_revocation_of_refresh_token_kills_the_grant(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    other_id, other_secret = oidc_env.register_client(client_name="Other")
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        # Another client cannot revoke it (nor change anything trying).
        with unchanged(oidc_env.platform.db):
            http.post(
                "/oidc/revoke",
                data={"token": tokens["refresh_token"]},
                auth=(other_id, other_secret or ""),
            )
        intro = http.post(
            "/oidc/introspect",
            data={"token": tokens["refresh_token"]},
            auth=(client_id, secret or ""),
        )
        assert intro.json()["active"] and intro.json()["token_type"] == "refresh_token"
        assert (
            http.post(
                "/oidc/revoke",
                data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
                auth=(client_id, secret or ""),
            ).status_code
            == 200
        )
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        with unchanged(oidc_env.platform.db):
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401
            assert (
                http.post(
                    "/oidc/revoke", data={"token": "unknown"}, auth=(client_id, secret or "")
                ).status_code
                == 200
            )


def test_key_rotation_keeps_retired_key_until_tokens_expire(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
        old_kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
        new_kid = oidc_env.provider.keys.rotate("ES256")
        kids = {k["kid"] for k in http.get("/oidc/jwks").json()["keys"]}
        assert {old_kid, new_kid} <= kids
        # Old tokens still validate; new ones use the new key.
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert http.get("/oidc/userinfo", headers=bearer).status_code == 200
        fresh = http.post(
            "/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=(client_id, secret or ""),
        ).json()
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
        # After the overlap the retired key leaves JWKS and is destroyed.
        from datetime import UTC, datetime, timedelta

        later = datetime.now(UTC) + timedelta(hours=2)
        oidc_env.provider.keys._clock = lambda: later
        # the expiry sweep is a cluster job: a stale leader's sweep destroys nothing
        from govtrust.lease import StaleFence, acquire, release

        db = oidc_env.platform.db
        stale = acquire(db, "oidc.key-sweep", "A", 30)
        assert stale is not None
        release(db, stale)
        current = acquire(db, "oidc.key-sweep", "B", 30)
        assert current is not None
        with unchanged(db, oidc_env.platform.keystore), pytest.raises(StaleFence):
            oidc_env.provider.keys.prune(fence=stale.fence)
        assert old_kid in oidc_env.provider.keys.prune(fence=current.fence)
        oidc_env.provider.keys._clock = lambda: datetime.now(UTC)
        kids = {k["kid"] for k in http.get("/oidc/jwks").json()["keys"]}
        assert old_kid not in kids and new_kid in kids
        with unchanged(oidc_env.platform.db, oidc_env.platform.keystore):
            assert http.get("/oidc/userinfo", headers=bearer).status_code == 401


def test_grpc_client_rpcs(oidc_env: OidcEnv) -> None:
    class Servicer(OidcClientRpcs):
        def __init__(self) -> None:
            self.oidc_platform = oidc_env.platform

    servicer = Servicer()
    oidc_env.register_client(client_id="zzz-other")

    async def run() -> None:
        with acting_as(ADMIN):
            created = await servicer.RegisterClient(
                identity_pb2.RegisterClientRequest(
                    client_name="Portal",
                    client_type=identity_pb2.CLIENT_TYPE_CONFIDENTIAL,
                    redirect_uris=["https://portal.example/cb"],
                    client_id="portal",
                ),
                None,
            )
            assert created.client_secret and created.client.client_id == "portal"
            got = await servicer.GetClient(identity_pb2.GetClientRequest(client_id="portal"), None)
            assert got.client.redirect_uris == ["https://portal.example/cb"]
            listed = await servicer.ListClients(identity_pb2.ListClientsRequest(page_size=1), None)
            assert len(listed.clients) == 1 and listed.next_page_token
            removed = await servicer.RemoveClient(
                identity_pb2.RemoveClientRequest(client_id="portal"), None
            )
            assert removed.client_id == "portal"
        with (
            acting_as(ADMIN.__class__("user", "nobody", frozenset())),
            unchanged(oidc_env.platform.db),
            pytest.raises(PermissionDenied),
        ):
            await servicer.RegisterClient(
                identity_pb2.RegisterClientRequest(client_name="x", redirect_uris=["https://a/b"]),
                None,
            )

    asyncio.run(run())


def test_grpc_introspect_user_token(oidc_env: OidcEnv) -> None:
    client_id, secret = oidc_env.register_client()
    with oidc_env.http() as http:
        tokens = full_login(http, client_id, secret)
    response = introspect_pb(oidc_env.platform, tokens["access_token"])
    assert response.active and response.subject == oidc_env.citizen_id
    assert response.identity.display_name == "张三" and list(response.amr) == ["pwd"]
    assert introspect_pb(oidc_env.platform, tokens["refresh_token"]).active
    # Removing the client kills its tokens.
    count = oidc_env.provider.clients.remove(ADMIN, client_id)
    assert count >= 1
    assert not introspect_pb(oidc_env.platform, tokens["access_token"]).active
    assert not introspect_pb(oidc_env.platform, tokens["refresh_token"]).active
