"""The one validator of the tokens our provider signs: header, algorithm, key, signature, claims.

:class:`TokenValidator` is used by the provider (introspection, userinfo, bearer authentication:
``Provider.validate_access_token``, which maps a fault to ``InvalidToken``) and by VerifyIdToken
(``verify/tokens.py``, which maps each fault to its own reason). The header never chooses how to
verify: ``alg`` must be one we sign with (never ``none`` or HS*), the key is looked up by ``kid``
in our own key set only, the header's ``alg`` must be that key's algorithm, and the signature is
checked through :mod:`hsm.jws` under exactly that one algorithm. Revocation is the provider's
(its token store), not this module's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from hsm import jws
from idp.oidc.keys import SUPPORTED_ALGS, SigningKeys

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret


class TokenFault(enum.Enum):
    """Why a token was refused (one specific fault)."""

    MALFORMED = "malformed"  # not a compact JWS, or a header/payload that is not a JSON object
    ALGORITHM_REJECTED = "algorithm_rejected"  # an alg we never sign with (none, HS*, ...)
    UNKNOWN_KEY = "unknown_key"  # kid not in our key set
    ALGORITHM_MISMATCH = "algorithm_mismatch"  # the header's alg is not the key's
    BAD_SIGNATURE = "bad_signature"
    NOT_ACCESS_TOKEN = "not_access_token"  # noqa: S105 - typ is not at+jwt
    CLAIMS_REJECTED = "claims_rejected"  # iss, aud, jti, client_id or sub wrong or missing
    EXPIRED = "expired"


class TokenRejected(Exception):
    """A token refused by :class:`TokenValidator`; ``fault`` says why.

    ``key_alg`` is the algorithm of the key ``kid`` names, for an ``ALGORITHM_MISMATCH``.
    """

    def __init__(self, fault: TokenFault, detail: str = "", *, key_alg: str = "") -> None:
        super().__init__(detail or fault.value)
        self.fault = fault
        self.detail = detail or fault.value
        self.key_alg = key_alg


@dataclass(frozen=True)
class AccessClaims:
    """What an access token's checked claims say."""

    claims: dict[str, Any]
    jti: str
    client_id: str
    grant_id: str | None  # the jti's ``<grant id>.`` prefix; None for client_credentials
    scopes: frozenset[str]


class TokenValidator:
    """Verify tokens signed by our keys; ``clock_skew`` seconds are allowed past ``exp``."""

    def __init__(self, keys: SigningKeys, issuer: str, *, clock_skew: int = 0) -> None:
        self.keys = keys
        self.issuer = issuer
        self.clock_skew = clock_skew

    def signed(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(header, claims) of a token whose signature verifies under our key ``kid``.

        The claims are not checked yet. Raises :class:`TokenRejected`.
        """
        try:
            header = jws.unverified_header(token)
        except jws.NotCompact:
            raise TokenRejected(TokenFault.MALFORMED, "not a compact JWS") from None
        except jws.JwsError:
            raise TokenRejected(TokenFault.MALFORMED, "malformed JOSE header") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in SUPPORTED_ALGS:
            raise TokenRejected(TokenFault.ALGORITHM_REJECTED, "algorithm not accepted")
        kid = header.get("kid")
        key = self.keys.lookup(kid) if isinstance(kid, str) and kid else None
        if key is None:
            raise TokenRejected(TokenFault.UNKNOWN_KEY, "unknown signing key")
        if alg != key.alg:
            raise TokenRejected(
                TokenFault.ALGORITHM_MISMATCH, "algorithm does not match our key", key_alg=key.alg
            )
        try:
            claims = jws.verify_json(token, key.verifier, key.alg)
        except jws.PayloadNotObject:
            raise TokenRejected(TokenFault.MALFORMED, "claims are not a JSON object") from None
        except ValueError:  # every JwsError, and what python-jose raises for a key that cannot fit
            raise TokenRejected(TokenFault.BAD_SIGNATURE, "signature verification failed") from None
        return header, claims

    def access_claims(
        self, header: dict[str, Any], claims: dict[str, Any], now: float
    ) -> AccessClaims:
        """Check a verified access token's header and claims at ``now`` (a POSIX time).

        ``typ`` must be ``at+jwt``; ``iss`` ours and in ``aud``; ``exp`` an integer not past
        (allowing the clock skew); ``jti``, ``client_id`` and ``sub`` strings.
        """
        if header.get("typ") != ACCESS_TOKEN_TYP:
            raise TokenRejected(TokenFault.NOT_ACCESS_TOKEN, "not an access token")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        exp, jti, client_id = claims.get("exp"), claims.get("jti"), claims.get("client_id")
        if not isinstance(exp, int) or exp + self.clock_skew <= now:
            raise TokenRejected(TokenFault.EXPIRED, "claims rejected")
        if (
            claims.get("iss") != self.issuer
            or self.issuer not in auds
            or not isinstance(jti, str)
            or not isinstance(client_id, str)
            or not isinstance(claims.get("sub"), str)
        ):
            raise TokenRejected(TokenFault.CLAIMS_REJECTED, "claims rejected")
        grant_id = jti.split(".", 1)[0] if "." in jti else None
        return AccessClaims(
            claims, jti, client_id, grant_id, frozenset(str(claims["scope"]).split())
        )
