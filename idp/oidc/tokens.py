"""The one validator of the tokens our provider signs: header, algorithm, key, signature, claims.

:class:`TokenValidator` is used by the provider (introspection, userinfo, bearer authentication:
``Provider.validate_access_token``, which maps a fault to ``InvalidToken``) and by VerifyIdToken
(``verify/tokens.py``, which maps each fault and each :class:`ClaimFinding` to its own reason).
The claims are checked in one place, :meth:`TokenValidator.check_claims` (issuer, expiry and
validity start with a clock skew, audience, nonce, kind); the provider's
:meth:`TokenValidator.access_claims` is that check with the provider's expectations, refusing at
the first finding, while VerifyIdToken reports every finding. The header never chooses how to
verify: ``alg`` must be one we sign with (never ``none`` or HS*), the key is looked up by ``kid``
in our own key set only, the header's ``alg`` must be that key's algorithm, and the signature is
checked through :mod:`hsm.jws` under exactly that one algorithm. Revocation is the provider's
(its token store), not this module's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
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


class ClaimFault(enum.Enum):
    """One finding of :meth:`TokenValidator.check_claims`."""

    WRONG_KIND = "wrong_kind"  # an access token where an ID token was expected, or the reverse
    ISSUER_MISMATCH = "issuer_mismatch"
    EXPIRED = "expired"  # exp past (allowing the clock skew), or no valid exp
    NOT_YET_VALID = "not_yet_valid"  # nbf or iat in the future (allowing the clock skew)
    AUDIENCE_MISMATCH = "audience_mismatch"
    AUDIENCE_NOT_CHECKED = "audience_not_checked"  # a warning: no audience was expected
    NONCE_MISMATCH = "nonce_mismatch"


@dataclass(frozen=True)
class ClaimFinding:
    """A fault of a token's claims; ``claim`` names the claim when the fault does not (``nbf``
    or ``iat`` for NOT_YET_VALID)."""

    fault: ClaimFault
    claim: str = ""

    @property
    def is_warning(self) -> bool:
        """Whether this finding only warns (the token is not refused for it)."""
        return self.fault is ClaimFault.AUDIENCE_NOT_CHECKED


@dataclass(frozen=True)
class CheckedClaims:
    """A verified token's claims as :meth:`TokenValidator.check_claims` read them, with its
    findings (empty: nothing wrong)."""

    claims: dict[str, Any]
    access: bool  # typ at+jwt: an access token; otherwise an ID token
    issuer: str  # "" when iss is not a string
    expires_at: datetime | None
    issued_at: datetime | None
    not_before: datetime | None
    audience: tuple[str, ...]
    findings: tuple[ClaimFinding, ...]


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

    def check_claims(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        now: float,
        *,
        clock_skew: int | None = None,
        expected_access: bool | None = None,
        expected_audience: str = "",
        expected_nonce: str = "",
    ) -> CheckedClaims:
        """Check a verified token's claims at ``now`` (a POSIX time); every finding, in a fixed
        order.

        ``clock_skew`` (default: this validator's) is allowed past ``exp`` and before ``nbf`` and
        ``iat``. ``expected_access`` (True: an access token, ``typ`` ``at+jwt``; False: an ID
        token; None: either), ``expected_audience`` (empty: the audience is not checked, which is
        a warning) and ``expected_nonce`` (empty: not checked) are the caller's expectations.
        """
        skew = self.clock_skew if clock_skew is None else clock_skew
        access = header.get("typ") == ACCESS_TOKEN_TYP
        findings: list[ClaimFinding] = []
        if expected_access is not None and expected_access is not access:
            findings.append(ClaimFinding(ClaimFault.WRONG_KIND))
        issuer = claims.get("iss")
        if issuer != self.issuer:
            findings.append(ClaimFinding(ClaimFault.ISSUER_MISMATCH))
        expires = numeric_date(claims.get("exp"))
        issued = numeric_date(claims.get("iat"))
        not_before = numeric_date(claims.get("nbf"))
        if expires is None or expires.timestamp() + skew <= now:
            findings.append(ClaimFinding(ClaimFault.EXPIRED))
        for label, value in (("nbf", not_before), ("iat", issued)):
            if value is not None and value.timestamp() - skew > now:
                findings.append(ClaimFinding(ClaimFault.NOT_YET_VALID, label))
        audience = claim_strings(claims.get("aud"))
        if not expected_audience:
            findings.append(ClaimFinding(ClaimFault.AUDIENCE_NOT_CHECKED))
        elif expected_audience not in audience:
            findings.append(ClaimFinding(ClaimFault.AUDIENCE_MISMATCH))
        if expected_nonce and claims.get("nonce") != expected_nonce:
            findings.append(ClaimFinding(ClaimFault.NONCE_MISMATCH))
        return CheckedClaims(
            claims=claims,
            access=access,
            issuer=issuer if isinstance(issuer, str) else "",
            expires_at=expires,
            issued_at=issued,
            not_before=not_before,
            audience=audience,
            findings=tuple(findings),
        )

    def access_claims(
        self, header: dict[str, Any], claims: dict[str, Any], now: float
    ) -> AccessClaims:
        """Check a verified access token's header and claims at ``now`` (a POSIX time), as the
        provider requires them for a bearer token.

        :meth:`check_claims` with ``typ`` ``at+jwt`` and our issuer as the audience (expiry is its
        only time check here); then ``jti``, ``client_id`` and ``sub`` must be strings. Raises
        :class:`TokenRejected` at the first fault.
        """
        if header.get("typ") != ACCESS_TOKEN_TYP:
            raise TokenRejected(TokenFault.NOT_ACCESS_TOKEN, "not an access token")
        checked = self.check_claims(header, claims, now, expected_audience=self.issuer)
        faults = {finding.fault for finding in checked.findings}
        if ClaimFault.EXPIRED in faults:
            raise TokenRejected(TokenFault.EXPIRED, "claims rejected")
        jti, client_id = claims.get("jti"), claims.get("client_id")
        if (
            faults & {ClaimFault.ISSUER_MISMATCH, ClaimFault.AUDIENCE_MISMATCH}
            or not isinstance(jti, str)
            or not isinstance(client_id, str)
            or not isinstance(claims.get("sub"), str)
        ):
            raise TokenRejected(TokenFault.CLAIMS_REJECTED, "claims rejected")
        return AccessClaims(
            claims,
            jti,
            client_id,
            access_token_grant_id(jti),
            frozenset(str(claims["scope"]).split()),
        )


def access_token_grant_id(jti: Any) -> str | None:
    """The grant an access token's ``jti`` names (its ``<grant id>.`` prefix); None for a
    client_credentials token (no person behind it) or a jti that is not a string."""
    return jti.split(".", 1)[0] if isinstance(jti, str) and "." in jti else None


def numeric_date(value: Any) -> datetime | None:
    """A JWT NumericDate claim (RFC 7519 §2: seconds, integer or not) as a UTC time; None when
    it is absent, not a number (a boolean is not) or out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def claim_strings(value: Any) -> tuple[str, ...]:
    """A claim that is a string or a list of strings (``aud``, ``amr``) as a tuple of strings."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()
