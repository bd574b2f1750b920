"""CA configuration: names, validity and key algorithms of the hierarchy, URLs, intervals.

Defaults are sensible for the embedded set-up; every value is a setting of the ``ca`` section
(:func:`govtrust.config.section_config`): ``[ca]`` in the TOML file or ``GOVTRUST_CA_<FIELD>``
in the environment, e.g. ``GOVTRUST_CA_ROOT_KEY_ALGORITHM=ec-p384``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from govtrust.config import ConfigError, Settings, section_config
from govtrust.errors import InvalidArgument
from hsm.keystore import KeyAlgorithm, parse_algorithm

# The OID arc for our own policies and extensions. The default is IANA enterprise number 32473,
# reserved for documentation (RFC 5612): a deployment sets its registered arc
# (GOVTRUST_CA_OID_ARC). 2.25.<UUID> would need no registration, but its 128-bit arc breaks
# common decoders (pkilint refuses arcs above 32 bits).
DEFAULT_OID_ARC = "1.3.6.1.4.1.32473.1"

ISSUING_CAS: tuple[str, ...] = ("citizen", "legal-person", "seal", "service")
# The SM2 hierarchy beside the ECDSA one (issue 16 item 2): its CAs carry this prefix
# (``sm2-root``, ``sm2-citizen``, ``sm2-citizen-ocsp``, ``sm2-tsa``) and are always SM2.
SM2_PREFIX = "sm2-"


def sm2_name(name: str) -> str:
    """The SM2 hierarchy's counterpart of ``name`` (``citizen`` → ``sm2-citizen``)."""
    return SM2_PREFIX + name


def status_base_url(public_base_url: str, crl_base_url: str = "") -> str:
    """``crl_base_url`` if set, else ``public_base_url`` with https replaced by http."""
    if crl_base_url:
        return crl_base_url.rstrip("/")
    base = public_base_url.rstrip("/")
    return "http://" + base.removeprefix("https://") if base.startswith("https://") else base


@dataclass(frozen=True)
class CaConfig:
    """Everything the CA reads from configuration."""

    public_base_url: str = "http://127.0.0.1:8080"
    # Base of the URLs written into certificates for revocation and the chain (CRL DP, AIA OCSP
    # and caIssuers). Plain http (ETSI EN 319 412-2 GEN-4.3.11-4; the responses are signed, and
    # a validator fetching over https would need revocation data for the TLS chain first). Empty:
    # public_base_url when that is http, else the same host over http.
    crl_base_url: str = ""
    country: str = "CN"
    organization: str = "govtrust"
    root_common_name: str = "govtrust Root CA"
    sm2_root_common_name: str = "govtrust SM2 Root CA"
    issuing_common_name_format: str = "govtrust {title} CA"
    root_key_algorithm: str = KeyAlgorithm.EC_P384.value
    issuing_key_algorithm: str = KeyAlgorithm.EC_P256.value
    responder_key_algorithm: str = KeyAlgorithm.EC_P256.value
    tsa_key_algorithm: str = KeyAlgorithm.EC_P256.value
    root_validity_days: int = 25 * 365
    issuing_validity_days: int = 10 * 365
    responder_validity_days: int = 2 * 365
    tsa_validity_days: int = 5 * 365
    oid_arc: str = DEFAULT_OID_ARC
    crl_validity_hours: int = 24
    delta_crl_validity_hours: int = 4
    ocsp_validity_hours: int = 24
    ocsp_refresh_before_hours: int = 8
    tsa_accuracy_ms: int = 1000
    identity_hash_salt_bytes: int = 16
    # Default key algorithm per profile for server-side key generation when a request names
    # none, e.g. ``seal=sm2,legal-person=sm2`` (GOVTRUST_CA_PROFILE_KEY_ALGORITHMS); a profile
    # not listed generates EC P-256.
    profile_key_algorithms: str = ""
    # Intake threads per process preparing issuances (see ca.intake). One gives the largest
    # group-commit batches with the in-process soft key store; a PKCS#11 store gets at least
    # PKCS11_ISSUE_THREADS so that HSM round trips overlap.
    issue_threads: int = 1

    @classmethod
    def from_settings(cls, settings: Settings | None, **overrides: str | int) -> CaConfig:
        """Defaults, then the ``ca`` section of ``settings`` (``[ca]`` in the TOML file,
        ``GOVTRUST_CA_<FIELD>`` in the environment), then keyword overrides; validated."""
        config = section_config(cls, settings, "ca", **overrides)
        try:
            config.validate()
        except InvalidArgument as exc:
            raise ConfigError(f"ca.{exc.message}") from None
        return config

    def validate(self) -> None:
        """Reject unknown algorithms and non-positive validities with a clear message."""
        for name in (
            "root_key_algorithm",
            "issuing_key_algorithm",
            "responder_key_algorithm",
            "tsa_key_algorithm",
        ):
            try:
                parse_algorithm(getattr(self, name))
            except InvalidArgument as exc:
                why = exc.violations[0].description if exc.violations else exc.message
                raise InvalidArgument.field(name, why) from None
        self.profile_key_algorithm_map()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value <= 0:
                raise InvalidArgument.field(f.name, "must be positive")
        if not self.status_base_url.startswith("http://"):
            raise InvalidArgument.field(
                "crl_base_url", f"must be a plain http:// URL, got {self.crl_base_url!r}"
            )

    def profile_key_algorithm_map(self) -> dict[str, KeyAlgorithm]:
        """``profile_key_algorithms`` parsed: profile name → default key algorithm."""
        result: dict[str, KeyAlgorithm] = {}
        for item in filter(None, (p.strip() for p in self.profile_key_algorithms.split(","))):
            profile, sep, algorithm = item.partition("=")
            if not sep or profile.strip() not in ISSUING_CAS:
                raise InvalidArgument.field(
                    "profile_key_algorithms",
                    f"expected profile=algorithm with a profile of {', '.join(ISSUING_CAS)}, "
                    f"got {item!r}",
                )
            result[profile.strip()] = parse_algorithm(algorithm.strip())
        return result

    def default_key_algorithm(self, profile: str, fallback: KeyAlgorithm) -> KeyAlgorithm:
        """The key algorithm generated for ``profile`` when a request names none."""
        return self.profile_key_algorithm_map().get(profile, fallback)

    @property
    def status_base_url(self) -> str:
        """The http base of the CRL, OCSP and caIssuers URLs (see ``crl_base_url``)."""
        return status_base_url(self.public_base_url, self.crl_base_url)

    def ocsp_url(self) -> str:
        """Where the OCSP responder is reachable (written into AIA)."""
        return f"{self.status_base_url}/ocsp"

    def crl_url(self, ca: str, *, delta: bool = False) -> str:
        """Where the full (or delta) CRL of ``ca`` is published (CRLDP)."""
        return f"{self.status_base_url}/crl/{ca}{'-delta' if delta else ''}.crl"

    def ca_cert_url(self, ca: str) -> str:
        """Where the certificate of ``ca`` is published (AIA caIssuers)."""
        return f"{self.status_base_url}/ca/{ca}.crt"

    def issuing_common_name(self, ca: str) -> str:
        """The common name of an issuing CA (``govtrust Legal Person CA``)."""
        title = " ".join(
            part.upper() if part == "sm2" else part.capitalize() for part in ca.split("-")
        )
        return self.issuing_common_name_format.format(title=title, name=ca)
