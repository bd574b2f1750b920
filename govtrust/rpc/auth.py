"""Authentication hook: who is calling, from mTLS, a bearer token, or the loopback default.

Order of evidence for one call:

1. ``authorization: Bearer <token>`` metadata → the registered *token resolver* (the OIDC issue
   installs one; until then every token is refused with UNAUTHENTICATED). A token names the
   acting user, so it wins over the transport certificate.
2. A verified TLS client certificate (``auth_context()['x509_pem_cert']``) → the registered
   *certificate resolvers*, in order; the first that returns a principal wins. The server
   registers :func:`idp.services.certificate_principal`, which maps a service certificate of our
   ``service`` CA to the roles of the registered service identity it names (and refuses a
   revoked, suspended or expired one). The fallback maps any other verified certificate to
   ``Principal(kind="service", subject=<subject CN>)`` with no roles.
3. No credentials on the insecure loopback listener of the embedded default → ``LOCAL_ADMIN``.
4. Otherwise UNAUTHENTICATED.

Resolvers are synchronous (they may query the database) and run in the ``run_sync`` pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import NameOID

from govtrust.errors import Unauthenticated
from govtrust.principal import LOCAL_ADMIN, Principal
from govtrust.rpc.offload import run_sync

if TYPE_CHECKING:
    from govtrust.platform import Platform

CertificateResolver = Callable[["Platform", x509.Certificate], Principal | None]
"""Map a verified client certificate to a principal, or None to let the next resolver try."""

TokenResolver = Callable[["Platform", str], Principal]
"""Map a bearer token to a principal; raise ``Unauthenticated`` when it is not acceptable."""

_NO_CREDENTIALS = (
    "no credentials: present a client certificate (mTLS) or an authorization bearer token"
)

_certificate_resolvers: list[CertificateResolver] = []
_token_resolver: TokenResolver | None = None


def register_certificate_resolver(resolver: CertificateResolver) -> None:
    """Add a certificate resolver; resolvers are tried in registration order."""
    if resolver not in _certificate_resolvers:
        _certificate_resolvers.append(resolver)


def set_token_resolver(resolver: TokenResolver | None) -> None:
    """Install the bearer-token resolver (None restores the default, which refuses tokens)."""
    global _token_resolver
    _token_resolver = resolver


def reset_resolvers() -> None:
    """Forget every registered resolver (tests)."""
    global _token_resolver
    _certificate_resolvers.clear()
    _token_resolver = None


def certificate_subject(cert: x509.Certificate) -> str:
    """The subject's common name, or the whole RFC 4514 subject when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        value = names[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cert.subject.rfc4514_string()


NOT_A_SERVICE_CERTIFICATE = (
    "the client certificate is not a service certificate issued by the govtrust service CA"
)


def default_certificate_principal(_platform: Platform, cert: x509.Certificate) -> Principal:
    """A verified certificate no resolver recognised is a service with no roles."""
    return Principal(
        kind="service",
        subject=certificate_subject(cert),
        roles=frozenset(),
        note=NOT_A_SERVICE_CERTIFICATE,
    )


def _refuse_tokens(_platform: Platform, _token: str) -> Principal:
    raise Unauthenticated("bearer tokens are not enabled yet")


def resolve_certificate(platform: Platform, pem: bytes) -> Principal:
    """Run the certificate resolvers over one PEM client certificate (synchronous)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthenticated("the client certificate cannot be parsed") from None
    for resolver in list(_certificate_resolvers):
        principal = resolver(platform, cert)
        if principal is not None:
            return principal
    return default_certificate_principal(platform, cert)


def resolve_token(platform: Platform, token: str) -> Principal:
    """Run the token resolver over one bearer token (synchronous)."""
    resolver = _token_resolver or _refuse_tokens
    return resolver(platform, token)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an ``authorization: Bearer …`` entry; raises on any other scheme."""
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        return token.strip()
    return None


class Authenticator:
    """Resolves the principal of a call for one server (knows whether loopback is trusted)."""

    def __init__(
        self,
        platform: Platform,
        *,
        trust_insecure_loopback: bool,
        client_certificates: bool = True,
    ) -> None:
        self.platform = platform
        self.trust_insecure_loopback = trust_insecure_loopback
        # False when the server never asks for client certificates (no TLS, or TLS without a
        # client CA): the interceptor then skips reading the TLS auth context on every call.
        self.client_certificates = client_certificates

    def authenticate_now(
        self,
        metadata: Sequence[tuple[str, str | bytes]],
        auth_context: Mapping[str, Iterable[bytes]],
    ) -> Principal | None:
        """The principal when no resolver has to run, else None (then :meth:`authenticate`).

        The per-call fast path of the interceptor: a call without an ``authorization`` entry
        and without a client certificate is decided here, without a coroutine or the thread
        pool — ``LOCAL_ADMIN`` on the trusted loopback, ``Unauthenticated`` otherwise.
        """
        for key, _ in metadata:
            if key.lower() == "authorization":
                return None
        if auth_context.get("x509_pem_cert"):
            return None
        if self.trust_insecure_loopback:
            return LOCAL_ADMIN
        raise Unauthenticated(_NO_CREDENTIALS)

    async def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]],
        auth_context: Mapping[str, Iterable[bytes]],
    ) -> Principal:
        """The principal for a call with this metadata and TLS auth context."""
        token = bearer_token(metadata)
        if token is not None:
            return await run_sync(resolve_token, self.platform, token)
        pems = list(auth_context.get("x509_pem_cert", ()))
        if pems:
            return await run_sync(resolve_certificate, self.platform, pems[0])
        if self.trust_insecure_loopback:
            return LOCAL_ADMIN
        raise Unauthenticated(_NO_CREDENTIALS)
