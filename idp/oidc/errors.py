"""OAuth 2.0 / OpenID Connect protocol errors (RFC 6749 §5.2, OIDC Core §3.1.2.6)."""

from __future__ import annotations


class OAuthError(Exception):
    """A protocol error answered to the client as ``{"error": ..., "error_description": ...}``.

    ``status`` is the HTTP status the token-style endpoints use (400, or 401 for a failed client
    authentication). Descriptions never reveal whether an account or token exists.
    """

    def __init__(self, error: str, description: str = "", *, status: int = 400) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    def as_dict(self) -> dict[str, str]:
        """The JSON body of the error response."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class InvalidToken(Exception):
    """A JWT failed verification (signature, algorithm, issuer, audience, expiry, revocation)."""


class AuthorizationPageError(Exception):
    """An authorization request that must NOT be redirected (unknown client or redirect_uri).

    The user sees an error page instead: redirecting to an unregistered URI would make us an
    open redirector and could leak a code.
    """
