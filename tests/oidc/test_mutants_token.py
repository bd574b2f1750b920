"""The token endpoint (``idp.oidc.grants``) driven directly, fast enough for mutation testing.

One provider per module and backend (a registered citizen, signing keys made once); each test
registers its own clients and issues its own codes through the provider, on a fixed clock, and
checks the outcome a client or an attacker would see: the exact error, the minted claims, the
rows left behind (used codes, rotated and revoked refresh tokens, stored assertion ids) and the
audit records. Written to kill the mutants of ``MODULE=idp.oidc.grants make mutate``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk as jose_jwk
from jose import jwt
from sqlalchemy import select

from govtrust import migrations
from govtrust.audit import AuditRecord
from govtrust.db import Database, as_utc
from govtrust.migrate import upgrade_to_head
from hsm import KeyStore, open_keystore
from hsm.master import MasterKey
from idp.oidc.authorization import AuthRequest
from idp.oidc.config import ProviderConfig
from idp.oidc.errors import InvalidToken, OAuthError
from idp.oidc.grants import WriteWouldBlock, _pkce_ok
from idp.oidc.models import (
    OidcAssertionJtiRow,
    OidcAuthCodeRow,
    OidcGrantRow,
    OidcRefreshTokenRow,
)
from idp.oidc.passwords import PasswordLogin
from idp.oidc.provider import Provider
from idp.oidc.sessions import SessionInfo
from tests.conftest import PG_ADMIN_URL, _pg_admin
from tests.oidc.conftest import ADMIN, REDIRECT, query_of
from tests.unchanged import unchanged

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OTHER_REDIRECT = "https://rp.example.gov.cn/other-cb"
ISSUER = "https://op.example.gov.cn"
ACR = "urn:govtrust:loa:2"
BAD_CLIENT = {"error": "invalid_client", "error_description": "client authentication failed"}
BAD_CODE = {"error": "invalid_grant", "error_description": "the code is invalid"}
BAD_REFRESH = {"error": "invalid_grant", "error_description": "the refresh token is invalid"}
# Reusing a rotated refresh token is refused *and* revokes its grant (OAuth 2.0 Security BCP
# §4.14): the grant's and its refresh tokens' rows change, and the revocation is audited.
REUSE_REVOKES = ["oidc_grants", "oidc_refresh_tokens", "audit_log"]


class FixedClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at

    def ts(self) -> int:
        return int(self.at.timestamp())


@dataclass
class TokenEnv:
    """A provider over a fresh database, with no HTTP layer and no registry."""

    db: Database
    provider: Provider
    keystore: KeyStore
    issuer: str = ISSUER
    citizen_id: str = "idn_citizen_0001"

    def register_client(self, **kw: Any) -> tuple[str, str | None]:
        params: dict[str, Any] = {"client_name": "Portal", "redirect_uris": [REDIRECT]}
        params.update(kw)
        result = self.provider.clients.register(ADMIN, **params)
        return result.client.client_id, result.client_secret


def _sqlite_template() -> Path:
    """A migrated SQLite database, cached in the temp folder under a hash of the migrations.

    Built once per migration set, not once per pytest session: the mutation runs start one
    session per mutant, and migrating takes seconds.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(migrations.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    folder = Path(tempfile.gettempdir()) / "govtrust-test-templates"
    folder.mkdir(exist_ok=True)
    template = folder / f"{digest.hexdigest()[:24]}.db"
    if not template.exists():
        partial = folder / f"{uuid.uuid4().hex}.partial"
        db = Database(f"sqlite:///{partial}")
        upgrade_to_head(db.engine)
        db.dispose()
        os.replace(partial, template)
    return template


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenEnv]:
    """One provider for the module on each backend (clients and codes are per test)."""
    name = ""
    if request.param == "sqlite":
        target = tmp_path_factory.mktemp("oidc-token") / "govtrust.db"
        shutil.copyfile(_sqlite_template(), target)
        url = f"sqlite:///{target}"
    else:
        template_name: str = request.getfixturevalue("pg_template")
        name = f"gt_{uuid.uuid4().hex[:16]}"
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    db = Database(url)
    master = MasterKey.generate()
    keystore = open_keystore("soft", database=db, master_key=master)
    # real Argon2id at its cheapest: these tests log nobody in
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    provider = Provider(
        db,
        keystore,
        ProviderConfig(issuer=ISSUER),
        key_deriver=master,
        passwords=PasswordLogin(db, hasher=cheap),
    )
    provider.ensure_keys()
    yield TokenEnv(db, provider, keystore)
    keystore.close()
    db.dispose()
    if name:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def env(shared_env: TokenEnv) -> TokenEnv:
    """The module's provider on a fresh fixed clock, with the default reuse interval."""
    shared_env.provider.now = FixedClock()
    reuse_interval(shared_env, ProviderConfig.refresh_reuse_interval)
    return shared_env


def reuse_interval(env: TokenEnv, seconds: int) -> None:
    """Set the provider's refresh reuse interval (0: every reuse revokes the family)."""
    env.provider.config = replace(env.provider.config, refresh_reuse_interval=seconds)


def clock(env: TokenEnv) -> FixedClock:
    c = env.provider.now
    assert isinstance(c, FixedClock)
    return c


def pkce(length: int = 64) -> tuple[str, str]:
    """(verifier of ``length`` characters, its S256 challenge)."""
    verifier = (secrets.token_urlsafe(96) * 2)[:length]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def client(env: TokenEnv, **kw: Any) -> tuple[str, str]:
    kw.setdefault("redirect_uris", [REDIRECT, OTHER_REDIRECT])
    client_id, secret = env.register_client(**kw)
    return client_id, secret or ""


def issue_code(
    env: TokenEnv,
    client_id: str,
    *,
    challenge: str = "",
    scope: tuple[str, ...] = ("openid", "profile"),
    nonce: str = "n-0S6",
    redirect_uri: str = REDIRECT,
) -> str:
    """A code issued by the provider for a password session of the citizen."""
    registered = env.provider.clients.find(client_id)
    assert registered is not None
    request = AuthRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        nonce=nonce,
        code_challenge=challenge,
        code_challenge_method="S256" if challenge else "",
    )
    session = SessionInfo(
        sid=secrets.token_urlsafe(8),
        identity_id=env.citizen_id,
        acting_person_id=None,
        auth_time=clock(env).at - timedelta(seconds=30),
        acr=ACR,
        amr=("pwd", "otp"),
    )
    url = env.provider._issue_code(request, registered, session)
    assert url.startswith(redirect_uri + "?")
    return query_of(url)["code"]


def token(env: TokenEnv, client_id: str, secret: str, **form: str) -> dict[str, Any]:
    return env.provider.token(form, (client_id, secret))


def refused(env: TokenEnv, client_id: str, secret: str | None, **form: str) -> OAuthError:
    basic = (client_id, secret) if secret is not None else None
    with pytest.raises(OAuthError) as caught:
        env.provider.token(form, basic)
    return caught.value


def exchange(env: TokenEnv, client_id: str, secret: str, code: str, **form: str) -> dict[str, Any]:
    form.setdefault("redirect_uri", REDIRECT)
    return token(env, client_id, secret, grant_type="authorization_code", code=code, **form)


def audits(env: TokenEnv, action: str, target: str) -> list[AuditRecord]:
    with env.db.read() as session:
        rows = session.scalars(
            select(AuditRecord).where(AuditRecord.action == action, AuditRecord.target == target)
        ).all()
        return list(rows)


def grant_of(env: TokenEnv, access_token: str) -> OidcGrantRow:
    grant_id = jwt.get_unverified_claims(access_token)["jti"].split(".")[0]
    with env.db.read() as session:
        row = session.get(OidcGrantRow, grant_id)
        assert row is not None
        return row


def refresh_row(env: TokenEnv, refresh: str) -> OidcRefreshTokenRow:
    from idp.oidc.clients import hash_secret

    with env.db.read() as session:
        row = session.get(OidcRefreshTokenRow, hash_secret(refresh))
        assert row is not None
        return row


def code_row(env: TokenEnv, code: str) -> OidcAuthCodeRow:
    from idp.oidc.clients import hash_secret

    with env.db.read() as session:
        row = session.get(OidcAuthCodeRow, hash_secret(code))
        assert row is not None
        return row


def dead(env: TokenEnv, access_token: str) -> bool:
    try:
        env.provider.validate_access_token(access_token)
    except InvalidToken:
        return True
    return False


# ============================================================================ token endpoint


def test_grant_type_dispatch(env: TokenEnv) -> None:
    cid, secret = client(env)
    for grant_type in ("password", "", "AUTHORIZATION_CODE"):
        err = refused(env, cid, secret, grant_type=grant_type)
        assert (err.error, err.description, err.status) == (
            "unsupported_grant_type",
            "unsupported grant_type",
            400,
        )
    err = refused(env, cid, secret, grant_type="client_credentials")
    assert (err.error, err.description) == (
        "unauthorized_client",
        "the client may not use this grant type",
    )
    only_cc, cc_secret = client(env, grant_types=["client_credentials"])
    err = refused(env, only_cc, cc_secret, grant_type="authorization_code", code="x")
    assert err.error == "unauthorized_client"
    err = refused(env, only_cc, cc_secret, grant_type="refresh_token", refresh_token="x")
    assert err.error == "unauthorized_client"
    # the keys are made before the first token (a fresh provider has none yet)
    env.provider._keys_ready = False
    assert "access_token" in token(env, only_cc, cc_secret, grant_type="client_credentials")
    assert env.provider._keys_ready is True


# ============================================================================ client auth


def test_client_secret_basic_post_and_none(env: TokenEnv) -> None:
    cc = {"grant_type": "client_credentials"}
    basic_id, basic_secret = client(env, grant_types=["client_credentials"])
    post_id, post_secret = client(
        env, grant_types=["client_credentials"], token_endpoint_auth_method="client_secret_post"
    )
    public_id, _ = client(
        env, client_type="public", grant_types=["authorization_code", "refresh_token"]
    )
    auth = env.provider.authenticate_client
    endpoint = "https://op/token"
    assert auth(cc, (basic_id, basic_secret), endpoint=endpoint).client_id == basic_id
    assert (
        auth({**cc, "client_id": basic_id}, (basic_id, basic_secret), endpoint=endpoint).client_id
        == basic_id
    )
    posted = {**cc, "client_id": post_id, "client_secret": post_secret}
    assert auth(posted, None, endpoint=endpoint).client_id == post_id
    assert auth({"client_id": public_id}, None, endpoint=endpoint).client_id == public_id
    failures: list[tuple[dict[str, str], tuple[str, str] | None]] = [
        (cc, (basic_id, "wrong")),
        (cc, (basic_id, "")),
        (cc, ("", basic_secret)),
        (cc, ("unknown-client", basic_secret)),
        # a basic client may not switch to post, nor a post client to basic
        ({**cc, "client_id": basic_id, "client_secret": basic_secret}, None),
        (cc, (post_id, post_secret)),
        ({**cc, "client_id": post_id, "client_secret": "wrong"}, None),
        # a public client sending a secret is not a "none" client
        ({"client_id": public_id, "client_secret": ""}, None),
        ({"client_id": basic_id}, None),
        ({"client_id": ""}, None),
        ({}, None),
        # a body client_id that names another client than the authenticated one
        ({**cc, "client_id": post_id}, (basic_id, basic_secret)),
    ]
    # one block for all the refusals: each block reflects every table, and this file is the
    # mutation map of idp.oidc.grants (scripts/mutate.py), run once per mutant
    with unchanged(env.db, env.keystore):
        for form, basic in failures:
            with pytest.raises(OAuthError) as caught:
                auth(form, basic, endpoint=endpoint)
            assert caught.value.as_dict() == BAD_CLIENT, (form, basic)
            assert caught.value.status == 401
        with pytest.raises(OAuthError) as caught:
            auth(
                {"client_assertion_type": "urn:other", "client_assertion": "x"}, None, endpoint="e"
            )
        assert caught.value.as_dict() == {
            "error": "invalid_client",
            "error_description": "unsupported client_assertion_type",
        }
        assert caught.value.status == 401


class Assertions:
    """A private_key_jwt client and assertions signed with its key."""

    def __init__(self, env: TokenEnv, *, key_alg: str | None = "ES256", alg: str = "ES256") -> None:
        self.env = env
        self.alg = alg
        self.key: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if alg == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        public = jose_jwk.construct(
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            alg,
        ).to_dict()
        public["kid"] = "k1"
        if key_alg:
            public["alg"] = key_alg
        other = ec.generate_private_key(ec.SECP256R1())
        decoy = jose_jwk.construct(
            other.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            "ES256",
        ).to_dict()
        decoy.update(kid="k0", alg="ES384")  # listed first, skipped for its alg
        self.client_id, _ = client(
            env,
            grant_types=["client_credentials"],
            token_endpoint_auth_method="private_key_jwt",
            jwks=json.dumps({"keys": [decoy, public]}),
        )
        self.pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.endpoint = env.provider.config.endpoint("/oidc/token")

    def make(self, headers: dict[str, Any] | None = None, **over: Any) -> str:
        now = clock(self.env).ts()
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.endpoint,
            "jti": uuid.uuid4().hex,
            "exp": now + 60,
        }
        claims.update(over)
        claims = {k: v for k, v in claims.items() if v is not None}
        hdr = {"kid": "k1"} if headers is None else headers
        return str(jwt.encode(claims, self.pem, algorithm=self.alg, headers=hdr))

    def form(self, assertion: str) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
        }

    def ok(self, assertion: str) -> bool:
        return self.ok_form(self.form(assertion))

    def ok_form(self, form: dict[str, str]) -> bool:
        try:
            self.env.provider.token(form, None)
        except OAuthError as err:
            failure = err
        else:
            return True
        assert failure.as_dict() == BAD_CLIENT
        assert failure.status == 401
        return False


def test_private_key_jwt_claims(env: TokenEnv) -> None:
    a = Assertions(env)
    now = clock(env).ts()
    skew = env.provider.config.clock_skew
    assert a.ok(a.make())
    assert a.ok(a.make(aud=env.issuer))
    assert a.ok(a.make(aud=["https://elsewhere", a.endpoint]))
    assert a.ok(a.make(headers={}))  # no kid: every key is tried
    assert a.ok(a.make(exp=now - skew))  # last second of the allowed skew
    assert a.ok(a.make(exp=now + 600))
    assert a.ok(a.make(exp=float(now + 60)))
    assert not a.ok(a.make(exp=now - skew - 1))
    assert not a.ok(a.make(exp=now + 601))
    assert not a.ok(a.make(exp=None))
    assert not a.ok(a.make(exp=str(now + 60)))
    assert not a.ok(a.make(jti=None))
    assert not a.ok(a.make(jti=12345))
    assert not a.ok(a.make(aud="https://elsewhere"))
    assert not a.ok(a.make(aud=["https://elsewhere"]))
    assert not a.ok(a.make(aud=None))
    assert not a.ok(a.make(sub="someone-else"))
    assert not a.ok(a.make(sub=None))
    assert not a.ok(a.make(headers={"kid": "k0"}))  # the other key of the set
    assert not a.ok(a.make(headers={"kid": "nope"}))
    other_client = Assertions(env)
    # signed by another client's key, claiming to be this client
    assert not a.ok(other_client.make(iss=a.client_id, sub=a.client_id))
    # a claim set whose iss is not this client, signed by its key
    assert not a.ok(a.make(iss=other_client.client_id))
    # replay of the same jti
    once = a.make()
    assert a.ok(once)
    assert not a.ok(once)
    # the same jti from another client is another assertion
    assert other_client.ok(other_client.make(jti="shared"))
    assert a.ok(a.make(jti="shared"))


def test_private_key_jwt_malformed_and_wrong_algorithms(env: TokenEnv) -> None:
    a = Assertions(env)
    for junk in ("", "abc", "e30", "a.b", "a.!!!.c", "e30.bm90IGpzb24.c", "e30.WzFd.c"):
        assert not a.ok(junk), junk
    body = a.make().split(".")[1]
    for alg in ("HS256", "none", "ES384"):
        head = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "k1"}).encode())
        assert not a.ok(f"{head.rstrip(b'=').decode()}.{body}.c2ln"), alg
    # a client registered for another method cannot use assertions
    secret_client, _ = client(env, grant_types=["client_credentials"])
    assert not a.ok(a.make(iss=secret_client, sub=secret_client))
    assert not a.ok(a.make(iss="no-such-client", sub="no-such-client"))
    # the header's alg must be the key's alg when the key names one
    ps = Assertions(env, key_alg="PS256")
    assert not ps.ok(ps.make())
    # discovery lists exactly the algorithms an assertion may use; PS256 is not among them
    listed = env.provider.discovery()["token_endpoint_auth_signing_alg_values_supported"]
    assert listed == ["ES256", "RS256"]
    # an RSA key
    rsa_client = Assertions(env, key_alg="RS256", alg="RS256")
    assert rsa_client.ok(rsa_client.make())
    # no assertion at all, or an issuer that is not a string
    assert not a.ok_form({"client_assertion_type": JWT_BEARER, "grant_type": "client_credentials"})
    assert not a.ok(a.make(iss=[a.client_id]))
    assert not a.ok(a.make(iss=None))
    # a key that names no alg is used with the header's alg
    free = Assertions(env, key_alg=None)
    assert free.ok(free.make())


@pytest.fixture
def beijing_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to UTC+8 (a host that does not run in UTC)."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("beijing_local_time")
def test_private_key_jwt_replay_store(env: TokenEnv) -> None:
    a = Assertions(env)
    skew = env.provider.config.clock_skew
    start = clock(env).at
    long_jti = "j" * 400
    first = a.make(jti=long_jti, exp=clock(env).ts() + 10)
    assert a.ok(first)
    stored_id = f"{a.client_id}:{long_jti}"[:300]
    with env.db.read() as session:
        row = session.get(OidcAssertionJtiRow, stored_id)
        assert row is not None
        expires = as_utc(row.expires_at)
        assert expires == start + timedelta(seconds=10 + skew)
        assert session.get(OidcAssertionJtiRow, f"{a.client_id}:{long_jti}"[:299]) is None
    # at its expiry the id is still kept; one second later the next assertion purges it
    clock(env).at = expires
    assert a.ok(a.make())
    with env.db.read() as session:
        assert session.get(OidcAssertionJtiRow, stored_id) is not None
    clock(env).at = expires + timedelta(seconds=1)
    assert a.ok(a.make())
    with env.db.read() as session:
        assert session.get(OidcAssertionJtiRow, stored_id) is None


# ============================================================================ authorization_code


def test_code_exchange_mints_the_tokens(env: TokenEnv) -> None:
    cid, secret = client(env)
    verifier, challenge = pkce()
    code = issue_code(env, cid, challenge=challenge)
    at = clock(env).ts()
    result = exchange(env, cid, secret, code, code_verifier=verifier)
    assert set(result) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "id_token",
        "refresh_token",
    }
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == env.provider.config.access_token_ttl
    assert result["scope"] == "openid profile"
    access = jwt.get_unverified_claims(result["access_token"])
    header = jwt.get_unverified_header(result["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    grant = grant_of(env, result["access_token"])
    # <grant id>.<12 random bytes>; the refresh token carries 256 random bits
    assert access["jti"].startswith(f"{grant.id}.") and len(access["jti"]) == len(grant.id) + 17
    assert len(result["refresh_token"]) == 43
    auth_time = at - 30
    assert {k: v for k, v in access.items() if k != "jti"} == {
        "iss": env.issuer,
        "sub": env.citizen_id,
        "aud": env.issuer,
        "client_id": cid,
        "scope": "openid profile",
        "iat": at,
        "exp": at + env.provider.config.access_token_ttl,
        "auth_time": auth_time,
        "acr": ACR,
        "sid": grant.sid,
    }
    info = env.provider.validate_access_token(result["access_token"])
    assert info.grant_id == grant.id and info.scopes == {"openid", "profile"}
    id_claims = jwt.get_unverified_claims(result["id_token"])
    digest = hashlib.sha256(result["access_token"].encode()).digest()[:16]
    assert id_claims == {
        "iss": env.issuer,
        "sub": env.citizen_id,
        "aud": cid,
        "azp": cid,
        "iat": at,
        "exp": at + env.provider.config.id_token_ttl,
        "auth_time": auth_time,
        "acr": ACR,
        "amr": ["pwd", "otp"],
        "sid": grant.sid,
        "nonce": "n-0S6",
        "at_hash": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
    }
    assert env.provider.verify_id_token_hint(result["id_token"])["sub"] == env.citizen_id
    row = refresh_row(env, result["refresh_token"])
    assert (row.grant_id, row.client_id, row.scope) == (grant.id, cid, "openid profile")
    assert as_utc(row.created_at) == clock(env).at
    assert as_utc(row.expires_at) == clock(env).at + timedelta(
        seconds=env.provider.config.refresh_token_ttl
    )
    assert row.used_at is None and row.revoked_at is None
    assert as_utc(code_row(env, code).used_at) == clock(env).at  # type: ignore[arg-type]
    (record,) = audits(env, "oidc.token.code", f"oidc-grant:{grant.id}")
    assert (record.actor, record.outcome) == (f"client:{cid}", "ok")


def test_code_without_nonce_openid_or_refresh(env: TokenEnv) -> None:
    cid, secret = client(env, grant_types=["authorization_code"])
    code = issue_code(env, cid, nonce="")
    result = exchange(env, cid, secret, code)
    assert "refresh_token" not in result
    assert "nonce" not in jwt.get_unverified_claims(result["id_token"])
    code = issue_code(env, cid, scope=("profile",))
    result = exchange(env, cid, secret, code)
    assert set(result) == {"access_token", "token_type", "expires_in", "scope"}
    assert result["scope"] == "profile"


def test_code_is_bound_to_client_redirect_uri_and_pkce(env: TokenEnv) -> None:
    cid, secret = client(env)
    other, other_secret = client(env)
    verifier, challenge = pkce()
    code = issue_code(env, cid, challenge=challenge)
    base = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    # another client: the code is invalid for it
    err = refused(env, other, other_secret, **base, redirect_uri=REDIRECT)
    assert err.as_dict() == BAD_CODE
    # another registered redirect URI, or none
    for form in ({"redirect_uri": OTHER_REDIRECT}, {}):
        err = refused(env, cid, secret, **base, **form)
        assert err.as_dict() == {
            "error": "invalid_grant",
            "error_description": "redirect_uri does not match",
        }
    # a well-formed verifier of another request, none, a non-ASCII one
    stranger, _ = pkce()
    for bad in (stranger, "", "é" * 43):
        err = refused(env, cid, secret, **{**base, "code_verifier": bad}, redirect_uri=REDIRECT)
        assert err.as_dict() == {
            "error": "invalid_grant",
            "error_description": "PKCE verification failed",
        }
    no_verifier = {k: v for k, v in base.items() if k != "code_verifier"}
    err = refused(env, cid, secret, **no_verifier, redirect_uri=REDIRECT)
    assert err.description == "PKCE verification failed"
    # none of the refusals consumed the code nor revoked its grant
    assert code_row(env, code).used_at is None
    result = exchange(env, cid, secret, code, code_verifier=verifier)
    assert not dead(env, result["access_token"])


def test_code_redirect_uri_of_the_request_is_the_one_bound(env: TokenEnv) -> None:
    cid, secret = client(env)
    code = issue_code(env, cid, redirect_uri=OTHER_REDIRECT)
    err = refused(
        env, cid, secret, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert err.description == "redirect_uri does not match"
    assert "access_token" in exchange(env, cid, secret, code, redirect_uri=OTHER_REDIRECT)


def test_code_without_challenge_refuses_a_verifier(env: TokenEnv) -> None:
    cid, secret = client(env)
    code = issue_code(env, cid)
    verifier, _ = pkce()
    err = refused(
        env,
        cid,
        secret,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert err.description == "PKCE verification failed"
    assert "access_token" in exchange(env, cid, secret, code)


def test_pkce_verifier_length_bounds() -> None:
    for length in (43, 128):
        verifier, challenge = pkce(length)
        assert _pkce_ok(challenge, verifier), length
    for length in (42, 129):
        verifier, challenge = pkce(length)
        assert not _pkce_ok(challenge, verifier), length
    verifier, challenge = pkce()
    assert _pkce_ok(challenge, verifier)
    assert not _pkce_ok(challenge, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"))
    assert not _pkce_ok(challenge, "")
    assert _pkce_ok("", "")
    assert not _pkce_ok("", verifier)
    assert not _pkce_ok(challenge, "é" * 50)


def test_code_expires_on_its_last_second(env: TokenEnv) -> None:
    cid, secret = client(env)
    issued = clock(env).at
    code = issue_code(env, cid)
    ttl = env.provider.config.code_ttl
    clock(env).at = issued + timedelta(seconds=ttl)
    err = refused(
        env, cid, secret, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert err.as_dict() == BAD_CODE
    assert code_row(env, code).used_at is None
    clock(env).at = issued + timedelta(seconds=ttl - 1)
    assert "access_token" in exchange(env, cid, secret, code)


def test_unknown_empty_and_revoked_codes(env: TokenEnv) -> None:
    cid, secret = client(env)
    for code in ("", "no-such-code"):
        err = refused(env, cid, secret, grant_type="authorization_code", code=code)
        assert err.as_dict() == BAD_CODE
    err = refused(env, cid, secret, grant_type="authorization_code")
    assert err.as_dict() == BAD_CODE
    # a code whose grant was revoked (here: by the reuse of a sibling code of the same grant)
    code = issue_code(env, cid)
    with env.db.transaction() as tx:
        row = tx.get(OidcAuthCodeRow, code_row(env, code).code_hash)
        assert row is not None
        grant = tx.get(OidcGrantRow, row.grant_id)
        assert grant is not None
        grant.revoked_at = clock(env).at
    err = refused(
        env, cid, secret, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert err.as_dict() == BAD_CODE
    assert code_row(env, code).used_at is None


def test_code_reuse_revokes_the_whole_grant(env: TokenEnv) -> None:
    cid, secret = client(env)
    other, other_secret = client(env)
    code = issue_code(env, cid)
    first = exchange(env, cid, secret, code)
    grant = grant_of(env, first["access_token"])
    refreshed = token(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    # another client replaying the code: refused, and no revocation
    err = refused(env, other, other_secret, grant_type="authorization_code", code=code)
    assert err.as_dict() == BAD_CODE
    assert not dead(env, refreshed["access_token"])
    assert audits(env, "oidc.code.reuse", f"oidc-grant:{grant.id}") == []
    later = clock(env).at + timedelta(seconds=5)
    clock(env).at = later
    err = refused(
        env, cid, secret, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert err.as_dict() == BAD_CODE
    revoked = grant_of(env, first["access_token"])
    assert as_utc(revoked.revoked_at) == later  # type: ignore[arg-type]
    assert revoked.revoke_reason == "code_reuse"
    assert dead(env, first["access_token"]) and dead(env, refreshed["access_token"])
    for refresh in (first["refresh_token"], refreshed["refresh_token"]):
        assert as_utc(refresh_row(env, refresh).revoked_at) == later  # type: ignore[arg-type]
    (record,) = audits(env, "oidc.code.reuse", f"oidc-grant:{grant.id}")
    assert (record.actor, record.outcome) == (f"client:{cid}", "denied")
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=refreshed["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    # a second replay revokes nothing new (the revocation time stays)
    clock(env).at = later + timedelta(seconds=5)
    refused(env, cid, secret, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert as_utc(grant_of(env, first["access_token"]).revoked_at) == later  # type: ignore[arg-type]
    assert as_utc(refresh_row(env, first["refresh_token"]).revoked_at) == later  # type: ignore[arg-type]


def test_code_reuse_leaves_other_grants_alone(env: TokenEnv) -> None:
    cid, secret = client(env)
    kept = exchange(env, cid, secret, issue_code(env, cid))
    code = issue_code(env, cid)
    exchange(env, cid, secret, code)
    refused(env, cid, secret, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert not dead(env, kept["access_token"])
    assert refresh_row(env, kept["refresh_token"]).revoked_at is None


# ============================================================================ refresh_token


def test_refresh_rotates_and_keeps_the_grant(env: TokenEnv) -> None:
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    grant = grant_of(env, first["access_token"])
    issued = clock(env).at
    clock(env).at = issued + timedelta(seconds=100)
    at = clock(env).ts()
    second = token(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert set(second) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "id_token",
        "refresh_token",
    }
    assert second["refresh_token"] != first["refresh_token"]
    assert (second["token_type"], second["scope"]) == ("Bearer", "openid profile")
    assert second["expires_in"] == env.provider.config.access_token_ttl
    access = jwt.get_unverified_claims(second["access_token"])
    assert access["jti"].startswith(f"{grant.id}.")
    assert (access["iat"], access["sub"], access["client_id"]) == (at, env.citizen_id, cid)
    assert (access["auth_time"], access["acr"], access["sid"]) == (
        int(issued.timestamp()) - 30,
        ACR,
        grant.sid,
    )
    id_claims = jwt.get_unverified_claims(second["id_token"])
    assert "nonce" not in id_claims
    assert (id_claims["sub"], id_claims["amr"], id_claims["sid"]) == (
        env.citizen_id,
        ["pwd", "otp"],
        grant.sid,
    )
    assert id_claims["auth_time"] == int(issued.timestamp()) - 30
    old = refresh_row(env, first["refresh_token"])
    assert as_utc(old.used_at) == clock(env).at  # type: ignore[arg-type]
    new = refresh_row(env, second["refresh_token"])
    assert (new.grant_id, new.client_id, new.scope, new.used_at) == (
        grant.id,
        cid,
        "openid profile",
        None,
    )
    assert as_utc(new.created_at) == clock(env).at
    assert as_utc(new.expires_at) == clock(env).at + timedelta(
        seconds=env.provider.config.refresh_token_ttl
    )
    assert not dead(env, first["access_token"]) and not dead(env, second["access_token"])
    third = token(
        env, cid, secret, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert "refresh_token" in third


def test_refresh_reuse_revokes_the_family_once(env: TokenEnv) -> None:
    """Without a reuse interval (0), any reuse revokes the family: the behaviour before it."""
    reuse_interval(env, 0)
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    grant = grant_of(env, first["access_token"])
    second = token(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    later = clock(env).at + timedelta(seconds=7)
    clock(env).at = later
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    revoked = grant_of(env, first["access_token"])
    assert as_utc(revoked.revoked_at) == later  # type: ignore[arg-type]
    assert revoked.revoke_reason == "refresh_reuse"
    assert dead(env, second["access_token"])
    assert as_utc(refresh_row(env, second["refresh_token"]).revoked_at) == later  # type: ignore[arg-type]
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    (record,) = audits(env, "oidc.refresh.reuse", f"oidc-grant:{grant.id}")
    assert (record.actor, record.outcome) == (f"client:{cid}", "denied")
    # presented again: already revoked, nothing more is written
    clock(env).at = later + timedelta(seconds=3)
    refused(env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert len(audits(env, "oidc.refresh.reuse", f"oidc-grant:{grant.id}")) == 1
    assert as_utc(grant_of(env, first["access_token"]).revoked_at) == later  # type: ignore[arg-type]


def test_refresh_reuse_by_another_client_or_unknown_token_revokes_nothing(env: TokenEnv) -> None:
    cid, secret = client(env)
    other, other_secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    second = token(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    for presented in (first["refresh_token"], second["refresh_token"]):
        err = refused(env, other, other_secret, grant_type="refresh_token", refresh_token=presented)
        assert err.as_dict() == BAD_REFRESH
    err = refused(env, cid, secret, grant_type="refresh_token", refresh_token="no-such-token")
    assert err.as_dict() == BAD_REFRESH
    err = refused(env, cid, secret, grant_type="refresh_token")
    assert err.as_dict() == {
        "error": "invalid_request",
        "error_description": "refresh_token is required",
    }
    assert grant_of(env, first["access_token"]).revoked_at is None
    assert refresh_row(env, second["refresh_token"]).used_at is None
    assert not dead(env, second["access_token"])
    assert "access_token" in token(
        env, cid, secret, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )


def test_refresh_scope_narrowing(env: TokenEnv) -> None:
    cid, secret = client(env)
    code = issue_code(env, cid, scope=("openid", "profile", "email"))
    first = exchange(env, cid, secret, code)
    err = refused(
        env,
        cid,
        secret,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        scope="openid phone",
    )
    assert err.as_dict() == {
        "error": "invalid_scope",
        "error_description": "scope exceeds the original grant",
    }
    assert refresh_row(env, first["refresh_token"]).used_at is None
    whole = token(
        env,
        cid,
        secret,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        scope="email profile openid",
    )
    assert whole["scope"] == "openid profile email"
    narrowed = token(
        env,
        cid,
        secret,
        grant_type="refresh_token",
        refresh_token=whole["refresh_token"],
        scope="email openid",
    )
    assert narrowed["scope"] == "openid email"  # in the grant's order
    assert "id_token" in narrowed
    assert jwt.get_unverified_claims(narrowed["access_token"])["scope"] == "openid email"
    assert refresh_row(env, narrowed["refresh_token"]).scope == "openid email"
    err = refused(
        env,
        cid,
        secret,
        grant_type="refresh_token",
        refresh_token=narrowed["refresh_token"],
        scope="profile",
    )
    assert err.error == "invalid_scope"
    no_openid = token(
        env,
        cid,
        secret,
        grant_type="refresh_token",
        refresh_token=narrowed["refresh_token"],
        scope="email",
    )
    assert no_openid["scope"] == "email" and "id_token" not in no_openid


def test_refresh_token_expires_on_its_last_second(env: TokenEnv) -> None:
    cid, secret = client(env)
    issued = clock(env).at
    first = exchange(env, cid, secret, issue_code(env, cid))
    second = exchange(env, cid, secret, issue_code(env, cid))
    ttl = env.provider.config.refresh_token_ttl
    clock(env).at = issued + timedelta(seconds=ttl)
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    assert grant_of(env, first["access_token"]).revoked_at is None
    clock(env).at = issued + timedelta(seconds=ttl - 1)
    assert "access_token" in token(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert "access_token" in token(
        env, cid, secret, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )


def test_refresh_of_a_revoked_grant_is_refused(env: TokenEnv) -> None:
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    grant = grant_of(env, first["access_token"])
    with env.db.transaction() as tx:
        row = tx.get(OidcGrantRow, grant.id)
        assert row is not None
        row.revoked_at = clock(env).at
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    assert refresh_row(env, first["refresh_token"]).used_at is None


# ============================================================================ client_credentials


def test_client_credentials(env: TokenEnv) -> None:
    cid, secret = client(env, grant_types=["client_credentials"])
    at = clock(env).ts()
    result = token(env, cid, secret, grant_type="client_credentials")
    assert result == {
        "access_token": result["access_token"],
        "token_type": "Bearer",
        "expires_in": env.provider.config.access_token_ttl,
        "scope": "",
    }
    claims = jwt.get_unverified_claims(result["access_token"])
    assert {k: v for k, v in claims.items() if k != "jti"} == {
        "iss": env.issuer,
        "sub": cid,
        "aud": env.issuer,
        "client_id": cid,
        "scope": "",
        "iat": at,
        "exp": at + env.provider.config.access_token_ttl,
    }
    assert "." not in claims["jti"] and len(claims["jti"]) == 22  # 16 random bytes
    info = env.provider.validate_access_token(result["access_token"])
    assert info.grant_id is None and info.client_id == cid and info.scopes == frozenset()
    asked = token(
        env,
        cid,
        secret,
        grant_type="client_credentials",
        scope="email openid offline_access identity profile",
    )
    assert asked["scope"] == "email profile"
    assert jwt.get_unverified_claims(asked["access_token"])["scope"] == "email profile"
    assert "id_token" not in asked and "refresh_token" not in asked


def test_refresh_on_the_loop_defers_instead_of_waiting(env: TokenEnv) -> None:
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    if env.db.engine.dialect.name != "sqlite":
        # one writer at a time is SQLite's: on PostgreSQL the loop's call just answers
        rotated = env.provider.token(form, (cid, secret), wait=False)
        assert refresh_row(env, rotated["refresh_token"]).used_at is None
        return
    database = env.db.engine.url.database
    assert database
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # a writer outside the token gate
        with unchanged(env.db, env.keystore), pytest.raises(WriteWouldBlock) as deferred:
            env.provider.token(form, (cid, secret), wait=False)
        assert str(deferred.value) == "the write would wait"
        assert refresh_row(env, first["refresh_token"]).used_at is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    resumed = deferred.value.resume()
    assert refresh_row(env, first["refresh_token"]).used_at is not None
    assert (
        refresh_row(env, resumed["refresh_token"]).grant_id
        == grant_of(env, first["access_token"]).id
    )
    # without contention the loop's call just answers
    assert "refresh_token" in env.provider.token(
        {**form, "refresh_token": resumed["refresh_token"]}, (cid, secret), wait=False
    )


def test_rotated_refresh_token_expires_on_its_last_instant(env: TokenEnv) -> None:
    clock(env).at = clock(env).at.replace(microsecond=500_000)  # sub-second stored times
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    rotated_at = clock(env).at
    second = token(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    expiry = rotated_at + timedelta(seconds=env.provider.config.refresh_token_ttl)
    clock(env).at = expiry
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    clock(env).at = expiry - timedelta(microseconds=1)
    assert "access_token" in token(
        env, cid, secret, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )


def _held_sqlite_lock(env: TokenEnv) -> sqlite3.Connection:
    database = env.db.engine.url.database
    assert database
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # a writer outside the token gate
    return other


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_refresh_that_may_wait_waits_for_the_write_lock(env: TokenEnv) -> None:
    """wait=True (the default, and ``resume()``) waits for SQLite's lock instead of deferring.

    The lock is released only after the waiting call had a second to give up: a call that
    deferred instead has its WriteWouldBlock recorded by then; one that waits succeeds.
    """
    if env.db.engine.dialect.name != "sqlite":
        cid, secret = client(env)
        first = exchange(env, cid, secret, issue_code(env, cid))
        assert "access_token" in token(
            env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
        return
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    second = exchange(env, cid, secret, issue_code(env, cid))
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    other = _held_sqlite_lock(env)
    try:
        with unchanged(env.db, env.keystore), pytest.raises(WriteWouldBlock) as deferred:
            env.provider.token(form, (cid, secret), wait=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    calls = [
        deferred.value.resume,
        lambda: env.provider.token(
            {**form, "refresh_token": second["refresh_token"]}, (cid, secret)
        ),
    ]
    for call in calls:  # one at a time: a waiting call holds the token gate
        other = _held_sqlite_lock(env)
        try:
            thread, outcome = _in_thread(call)
            thread.join(timeout=1.0)
            assert outcome == [] and thread.is_alive(), outcome
        finally:
            other.execute("ROLLBACK")
            other.close()
        thread.join()
        (result,) = outcome
        assert isinstance(result, dict) and "refresh_token" in result, result


def test_refresh_raced_by_its_own_token_counts_as_reuse(env: TokenEnv) -> None:
    """Two presentations of one token at once: the loser of the claim is refused as reuse
    (without a reuse interval; with one, it is answered in turn, as in
    test_reuse_interval_race_is_answered_in_turn)."""
    reuse_interval(env, 0)
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    if env.db.engine.dialect.name != "sqlite":
        # the race is staged with SQLite's write lock; here the presentations come in turn
        form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        env.provider.token(form, (cid, secret))
        with (
            unchanged(env.db, env.keystore, allow=REUSE_REVOKES),  # the reuse revokes the grant
            pytest.raises(OAuthError) as reused,
        ):
            env.provider.token(form, (cid, secret))
        assert reused.value.as_dict() == BAD_REFRESH
        return
    grant = grant_of(env, first["access_token"])
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    other = _held_sqlite_lock(env)
    try:
        # read and minted, not yet claimed
        with unchanged(env.db, env.keystore), pytest.raises(WriteWouldBlock) as deferred:
            env.provider.token(form, (cid, secret), wait=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    winner = env.provider.token(form, (cid, secret))
    with (
        unchanged(env.db, env.keystore, allow=REUSE_REVOKES),  # the loser's reuse revokes the grant
        pytest.raises(OAuthError) as lost,
    ):
        deferred.value.resume()
    assert lost.value.as_dict() == BAD_REFRESH
    assert grant_of(env, first["access_token"]).revoke_reason == "refresh_reuse"
    assert dead(env, winner["access_token"])
    (record,) = audits(env, "oidc.refresh.reuse", f"oidc-grant:{grant.id}")
    assert record.actor == f"client:{cid}"
    with env.db.read() as session:
        family = session.scalars(
            select(OidcRefreshTokenRow).where(OidcRefreshTokenRow.grant_id == grant.id)
        ).all()
    assert len(family) == 2  # the first token and the winner's: the loser stored none


def test_concurrent_refreshes_share_one_audited_transaction(
    env: TokenEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotations arriving while one is being written share the next transaction (issue 15
    item 7): each is audited once, the chain verifies, and a token presented twice in the
    batch is claimed once, the loser treated as reuse (its family revoked; without a reuse
    interval, which would answer it)."""
    from concurrent.futures import ThreadPoolExecutor

    reuse_interval(env, 0)

    from govtrust import audit
    from idp.oidc.clients import hash_secret

    cid, secret = client(env)
    firsts = [exchange(env, cid, secret, issue_code(env, cid)) for _ in range(4)]
    committer = env.provider._rotations()
    batches: list[int] = []
    real_commit = committer._commit

    def counting(batch: list[Any]) -> None:
        batches.append(len(batch))
        real_commit(batch)

    monkeypatch.setattr(committer, "_commit", counting)
    presented = [f["refresh_token"] for f in firsts] + [firsts[0]["refresh_token"]]

    def present(refresh: str) -> str:
        try:
            form = {"grant_type": "refresh_token", "refresh_token": refresh}
            return str(env.provider.token(form, (cid, secret))["refresh_token"])
        except OAuthError as exc:
            return exc.error

    # Hold the database (SQLite's write lock / PostgreSQL's audit-chain lock) so the first
    # rotation waits inside its write and the others pile up behind it.
    if env.db.engine.dialect.name == "sqlite":
        holder: Any = _held_sqlite_lock(env)
        release = lambda: holder.execute("ROLLBACK")  # noqa: E731
    else:
        from sqlalchemy import text

        holder = env.db.engine.connect()
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": audit.PG_AUDIT_LOCK})
        release = lambda: holder.execute(  # noqa: E731
            text("SELECT pg_advisory_unlock(:k)"), {"k": audit.PG_AUDIT_LOCK}
        )
    try:
        with ThreadPoolExecutor(len(presented)) as pool:
            futures = [pool.submit(present, refresh) for refresh in presented]
            deadline = time.monotonic() + 120
            while sum(batches) + len(committer._queue) < len(presented):
                assert time.monotonic() < deadline, batches
                time.sleep(0.02)
            release()
    finally:
        holder.close()
    outcomes = [f.result() for f in futures]
    assert sum(batches) == len(presented) and max(batches) > 1, batches  # each written once
    first, rest, again = outcomes[0], outcomes[1:4], outcomes[4]
    assert all(o != "invalid_grant" for o in rest), outcomes
    assert sorted([first, again]).count("invalid_grant") == 1, outcomes  # one claim of token 0
    for index, (fresh, refresh) in enumerate(zip(firsts, presented[:4], strict=True)):
        grant = grant_of(env, fresh["access_token"])
        records = audits(env, "oidc.token.refresh", f"oidc-grant:{grant.id}")
        assert len(records) == 1, (index, records)
        assert json.loads(records[0].details)["rotated"] == hash_secret(refresh).hex()
        # token 0 came twice: its family is revoked as a reuse; the others are live
        assert grant.revoke_reason == ("refresh_reuse" if index == 0 else "")
    with env.db.read() as session:
        assert audit.verify_chain(session, audit.chain_key(env.db)).ok
    # A rotated token presented again later is still detected as reuse.
    with (
        unchanged(env.db, env.keystore, allow=REUSE_REVOKES),
        pytest.raises(OAuthError) as reused,
    ):
        env.provider.token(
            {"grant_type": "refresh_token", "refresh_token": presented[1]}, (cid, secret)
        )
    assert reused.value.as_dict() == BAD_REFRESH
    assert grant_of(env, firsts[1]["access_token"]).revoke_reason == "refresh_reuse"


# ============================================================================ reuse interval


def refresh(env: TokenEnv, client_id: str, secret: str, presented: str) -> dict[str, Any]:
    return token(env, client_id, secret, grant_type="refresh_token", refresh_token=presented)


def digest_of(refresh_token: str) -> str:
    from idp.oidc.clients import hash_secret

    return hash_secret(refresh_token).hex()


def refresh_records(env: TokenEnv, grant_id: str) -> list[dict[str, Any]]:
    """The details of the grant's ``oidc.token.refresh`` records, in chain order."""
    records = sorted(
        audits(env, "oidc.token.refresh", f"oidc-grant:{grant_id}"), key=lambda r: r.seq
    )
    return [json.loads(r.details) for r in records]


def live_tokens(env: TokenEnv, grant_id: str) -> list[str]:
    """The digests of the grant's unused, unrevoked refresh tokens."""
    with env.db.read() as session:
        rows = session.scalars(
            select(OidcRefreshTokenRow).where(
                OidcRefreshTokenRow.grant_id == grant_id,
                OidcRefreshTokenRow.used_at.is_(None),
                OidcRefreshTokenRow.revoked_at.is_(None),
            )
        ).all()
    return [row.token_hash.hex() for row in rows]


def test_reuse_interval_answers_a_lost_rotation_again(env: TokenEnv) -> None:
    """Issue #20's finding: a rotation whose answer was lost, retried with the rotated token
    within the interval, is answered again; the successor nobody received is superseded and,
    presented later (the lost answer in someone else's hands), counts as reuse."""
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    grant = grant_of(env, first["access_token"])
    rotated_at = clock(env).at
    lost = refresh(env, cid, secret, first["refresh_token"])  # the answer the client never got
    clock(env).at = rotated_at + timedelta(seconds=12)
    retried = refresh(env, cid, secret, first["refresh_token"])
    assert set(retried) == set(lost)
    assert retried["refresh_token"] not in {first["refresh_token"], lost["refresh_token"]}
    assert (retried["token_type"], retried["scope"]) == ("Bearer", "openid profile")
    access = jwt.get_unverified_claims(retried["access_token"])
    assert access["jti"].startswith(f"{grant.id}.") and access["iat"] == clock(env).ts()
    assert jwt.get_unverified_claims(retried["id_token"])["sid"] == grant.sid
    assert not dead(env, retried["access_token"])
    superseded = refresh_row(env, lost["refresh_token"])
    assert as_utc(superseded.used_at) == clock(env).at  # type: ignore[arg-type]
    assert superseded.revoked_at is None
    assert superseded.rotated_from == bytes.fromhex(digest_of(first["refresh_token"]))
    new = refresh_row(env, retried["refresh_token"])
    assert (new.grant_id, new.client_id, new.used_at, new.revoked_at) == (grant.id, cid, None, None)
    assert new.rotated_from == superseded.rotated_from  # it answers the same rotation
    # the interval still counts from the rotation: the re-answer does not move it
    assert as_utc(refresh_row(env, first["refresh_token"]).used_at) == rotated_at  # type: ignore[arg-type]
    assert refresh_records(env, grant.id) == [
        {
            "rotated": digest_of(first["refresh_token"]),
            "issued": [digest_of(lost["refresh_token"])],
        },
        {
            "rotated": digest_of(first["refresh_token"]),
            "issued": [digest_of(retried["refresh_token"])],
            "superseded": digest_of(lost["refresh_token"]),
        },
    ]
    assert audits(env, "oidc.refresh.reuse", f"oidc-grant:{grant.id}") == []
    assert grant_of(env, first["access_token"]).revoked_at is None
    # the client goes on with the token it got
    clock(env).at += timedelta(seconds=1)
    onward = refresh(env, cid, secret, retried["refresh_token"])
    assert live_tokens(env, grant.id) == [digest_of(onward["refresh_token"])]
    # the superseded successor comes back: a reuse, the family is revoked
    revoked_at = clock(env).at
    with unchanged(env.db, env.keystore, allow=REUSE_REVOKES):
        err = refused(
            env, cid, secret, grant_type="refresh_token", refresh_token=lost["refresh_token"]
        )
    assert err.as_dict() == BAD_REFRESH
    revoked = grant_of(env, first["access_token"])
    assert (revoked.revoke_reason, as_utc(revoked.revoked_at)) == ("refresh_reuse", revoked_at)  # type: ignore[arg-type]
    assert dead(env, onward["access_token"]) and dead(env, retried["access_token"])
    (record,) = audits(env, "oidc.refresh.reuse", f"oidc-grant:{grant.id}")
    assert (record.actor, record.outcome) == (f"client:{cid}", "denied")


def test_reuse_interval_answers_each_retry_in_turn(env: TokenEnv) -> None:
    """Every retry within the interval supersedes the answer before it: one successor is live."""
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    grant = grant_of(env, first["access_token"])
    answers = [refresh(env, cid, secret, first["refresh_token"])]
    for _ in range(3):
        clock(env).at += timedelta(seconds=5)
        answers.append(refresh(env, cid, secret, first["refresh_token"]))
    assert live_tokens(env, grant.id) == [digest_of(answers[-1]["refresh_token"])]
    assert [r.get("superseded") for r in refresh_records(env, grant.id)] == [
        None,
        *(digest_of(a["refresh_token"]) for a in answers[:-1]),
    ]
    assert "refresh_token" in refresh(env, cid, secret, answers[-1]["refresh_token"])
    for earlier in answers[:-1]:  # each earlier answer is a reuse now
        assert refresh_row(env, earlier["refresh_token"]).used_at is not None
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=answers[0]["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    assert grant_of(env, first["access_token"]).revoke_reason == "refresh_reuse"


def test_reuse_interval_ends_on_its_last_instant(env: TokenEnv) -> None:
    """Answered up to the last microsecond of the interval after the rotation; at its end, a
    reuse (the family revoked)."""
    clock(env).at = clock(env).at.replace(microsecond=500_000)  # sub-second stored times
    interval = timedelta(seconds=ProviderConfig.refresh_reuse_interval)
    cid, secret = client(env)
    inside = exchange(env, cid, secret, issue_code(env, cid))
    outside = exchange(env, cid, secret, issue_code(env, cid))
    rotated_at = clock(env).at
    for family in (inside, outside):
        refresh(env, cid, secret, family["refresh_token"])
    clock(env).at = rotated_at + interval - timedelta(microseconds=1)
    assert "refresh_token" in refresh(env, cid, secret, inside["refresh_token"])
    clock(env).at = rotated_at + interval
    with unchanged(env.db, env.keystore, allow=REUSE_REVOKES):
        err = refused(
            env, cid, secret, grant_type="refresh_token", refresh_token=outside["refresh_token"]
        )
    assert err.as_dict() == BAD_REFRESH
    assert grant_of(env, outside["access_token"]).revoke_reason == "refresh_reuse"
    assert grant_of(env, inside["access_token"]).revoked_at is None
    # a longer interval is read from the configuration
    reuse_interval(env, 3 * ProviderConfig.refresh_reuse_interval)
    assert "refresh_token" in refresh(env, cid, secret, inside["refresh_token"])


def test_reuse_after_the_successor_was_used_revokes_the_family(env: TokenEnv) -> None:
    """The client got the answer and moved on: the rotated token coming back, even within the
    interval, is a reuse."""
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    second = refresh(env, cid, secret, first["refresh_token"])
    clock(env).at += timedelta(seconds=1)
    third = refresh(env, cid, secret, second["refresh_token"])
    clock(env).at += timedelta(seconds=1)
    with unchanged(env.db, env.keystore, allow=REUSE_REVOKES):
        err = refused(
            env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
    assert err.as_dict() == BAD_REFRESH
    grant = grant_of(env, first["access_token"])
    assert grant.revoke_reason == "refresh_reuse"
    assert dead(env, third["access_token"])
    assert len(audits(env, "oidc.refresh.reuse", f"oidc-grant:{grant.id}")) == 1
    assert [r.get("superseded") for r in refresh_records(env, grant.id)] == [None, None]


def test_reuse_interval_zero_revokes_at_once(env: TokenEnv) -> None:
    """``refresh_reuse_interval = 0``: the retry of a lost answer revokes the family, as before."""
    reuse_interval(env, 0)
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    lost = refresh(env, cid, secret, first["refresh_token"])
    clock(env).at += timedelta(seconds=1)
    with unchanged(env.db, env.keystore, allow=REUSE_REVOKES):
        err = refused(
            env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
        )
    assert err.as_dict() == BAD_REFRESH
    assert grant_of(env, first["access_token"]).revoke_reason == "refresh_reuse"
    assert refresh_row(env, lost["refresh_token"]).used_at is None  # not superseded: revoked
    assert refresh_row(env, lost["refresh_token"]).revoked_at is not None


def test_reuse_interval_is_for_the_tokens_own_client(env: TokenEnv) -> None:
    """Another client presenting a just-rotated token is refused and writes nothing; the
    owner's retry is still answered."""
    cid, secret = client(env)
    other, other_secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    lost = refresh(env, cid, secret, first["refresh_token"])
    clock(env).at += timedelta(seconds=2)
    with unchanged(env.db, env.keystore):
        err = refused(
            env,
            other,
            other_secret,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
        )
    assert err.as_dict() == BAD_REFRESH
    assert refresh_row(env, lost["refresh_token"]).used_at is None
    assert "refresh_token" in refresh(env, cid, secret, first["refresh_token"])


def test_reuse_interval_needs_a_live_grant_and_scope_within_it(env: TokenEnv) -> None:
    """A retry asking for more than the grant holds is ``invalid_scope`` (nothing written, as a
    normal refresh); one asking for less is narrowed; a revoked grant answers nothing."""
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    refresh(env, cid, secret, first["refresh_token"])
    clock(env).at += timedelta(seconds=2)
    with unchanged(env.db, env.keystore):
        err = refused(
            env,
            cid,
            secret,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
            scope="openid phone",
        )
    assert err.error == "invalid_scope"
    narrowed = token(
        env,
        cid,
        secret,
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        scope="openid",
    )
    assert narrowed["scope"] == "openid"
    assert refresh_row(env, narrowed["refresh_token"]).scope == "openid"
    grant = grant_of(env, first["access_token"])
    with env.db.transaction() as tx:
        row = tx.get(OidcGrantRow, grant.id)
        assert row is not None
        row.revoked_at = clock(env).at
    err = refused(
        env, cid, secret, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert err.as_dict() == BAD_REFRESH
    assert live_tokens(env, grant.id) == []


def test_reuse_interval_on_the_loop_defers_instead_of_waiting(env: TokenEnv) -> None:
    """The re-answer is a rotation: on the event loop (``wait=False``) it defers rather than
    wait for SQLite's write lock, having written nothing; ``resume()`` answers."""
    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    lost = refresh(env, cid, secret, first["refresh_token"])
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    if env.db.engine.dialect.name != "sqlite":
        answered = env.provider.token(form, (cid, secret), wait=False)
        assert refresh_row(env, answered["refresh_token"]).used_at is None
        return
    other = _held_sqlite_lock(env)
    try:
        with unchanged(env.db, env.keystore), pytest.raises(WriteWouldBlock) as deferred:
            env.provider.token(form, (cid, secret), wait=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert refresh_row(env, lost["refresh_token"]).used_at is None
    answered = deferred.value.resume()
    assert refresh_row(env, lost["refresh_token"]).used_at is not None
    assert refresh_row(env, answered["refresh_token"]).used_at is None


def test_reuse_interval_race_is_answered_in_turn(
    env: TokenEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two re-presentations of one rotated token at once, on two providers (two hosts, each its
    own rotation committer): each supersedes with one conditional UPDATE, so the successor is
    taken once; the loser then finds the winner's token and supersedes that one. Both are
    answered, in turn, and exactly one successor is live (never two).

    Staged deterministically: the database is held (SQLite's write lock; PostgreSQL's audit-chain
    lock, so on PostgreSQL one supersession holds the successor's row and the other waits for
    it) until both re-answers are inside their writes."""
    import copy

    from govtrust import audit

    cid, secret = client(env)
    first = exchange(env, cid, secret, issue_code(env, cid))
    grant = grant_of(env, first["access_token"])
    lost = refresh(env, cid, secret, first["refresh_token"])
    clock(env).at += timedelta(seconds=5)
    twin = copy.copy(env.provider)
    twin.__dict__.pop("_rotation_committer", None)
    entered: list[int] = []
    for provider in (env.provider, twin):
        committer = provider._rotations()
        real_commit = committer._commit

        def counting(batch: list[Any], real: Any = real_commit) -> None:
            entered.append(len(batch))
            real(batch)

        monkeypatch.setattr(committer, "_commit", counting)
    assert twin._rotations() is not env.provider._rotations()
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    sqlite = env.db.engine.dialect.name == "sqlite"
    if sqlite:
        holder: Any = _held_sqlite_lock(env)
        release = lambda: holder.execute("ROLLBACK")  # noqa: E731

        def waiting() -> bool:
            return len(entered) >= 2
    else:
        from sqlalchemy import text

        holder = env.db.engine.connect()
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": audit.PG_AUDIT_LOCK})
        holder.commit()
        release = lambda: holder.execute(  # noqa: E731
            text("SELECT pg_advisory_unlock(:k)"), {"k": audit.PG_AUDIT_LOCK}
        )

        def waiting() -> bool:
            # one waits for the chain's lock holding the successor's row, the other for the row
            count = holder.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            holder.commit()
            return int(count) >= 2

    try:
        runs = [
            _in_thread(lambda p=provider: p.token(form, (cid, secret)))
            for provider in (env.provider, twin)
        ]
        deadline = time.monotonic() + 60
        while not waiting():
            assert time.monotonic() < deadline, entered
            assert all(thread.is_alive() for thread, _ in runs), [o for _, o in runs]
            time.sleep(0.02)
        release()
    finally:
        holder.close()
    answers = []
    for thread, outcome in runs:
        thread.join()
        (result,) = outcome
        assert isinstance(result, dict), result
        answers.append(result["refresh_token"])
    live = live_tokens(env, grant.id)
    assert len(live) == 1 and live[0] in {digest_of(a) for a in answers}, (live, answers)
    (winner,) = [a for a in answers if digest_of(a) != live[0]]  # answered first, superseded
    assert [r.get("superseded") for r in refresh_records(env, grant.id)] == [
        None,
        digest_of(lost["refresh_token"]),
        digest_of(winner),
    ]
    with env.db.read() as session:
        assert audit.verify_chain(session, audit.chain_key(env.db)).ok
    # the earlier answer comes back: a reuse
    err = refused(env, cid, secret, grant_type="refresh_token", refresh_token=winner)
    assert err.as_dict() == BAD_REFRESH
    assert grant_of(env, first["access_token"]).revoke_reason == "refresh_reuse"
