"""Configuration: command-line flags > environment (``GOVTRUST_*``) > TOML file > defaults.

``load_settings`` validates everything up front and raises ``ConfigError`` with one clear line,
which the CLI prints and exits non-zero on (no traceback).

Packages with many settings of their own keep them in a section (:data:`SECTIONS`): the TOML
table ``[ca]`` (or ``[govtrust.ca]``) and the variables ``GOVTRUST_CA_<FIELD>``, the
environment winning. :func:`section_config` turns a section into the package's own frozen
dataclass (``ca.config.CaConfig``, ``verify.service.VerifyConfig``), with the same coercion and
one-line errors naming where a bad value came from. No package reads ``os.environ`` itself,
with one documented exception (docs/architecture.md): ``hsm.load_master_key`` (in
:mod:`hsm.master`) reads ``GOVTRUST_MASTER_KEY``, the master key being a secret, never a setting.
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from govtrust.db import Database, sqlite_url
from govtrust.principal import LICENCE_ISSUER_PREFIX, ROLES

DEFAULT_HTTP_MAX_BODY_BYTES = 1024 * 1024  # routes that declare no limit of their own
# the longest OIDC refresh reuse interval (s): every second of it is a second in which a stolen,
# just-rotated refresh token is answered (docs/oidc.md)
MAX_REFRESH_REUSE_INTERVAL = 300
# Packages whose settings are a section of their own: ``[ca]`` / ``GOVTRUST_CA_*``, ...
SECTIONS = ("ca", "verify")
T = TypeVar("T")


class ConfigError(Exception):
    """The configuration is invalid; the message is one line for the operator."""


@dataclass(frozen=True)
class Settings:
    """Every setting govtrust reads, already validated."""

    data_dir: Path = Path("var")
    database_url: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    workers: int = 1
    hsm: str = "soft"
    pkcs11_module: str | None = None
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = None
    # SM2 on a PKCS#11 token: the vendor's CKK_/CKM_ constants (decimal or 0x hex); unset: no SM2
    pkcs11_sm2_key_type: str | None = None
    pkcs11_sm2_keygen_mechanism: str | None = None
    pkcs11_sm2_mechanism: str | None = None
    public_base_url: str | None = None
    crl_base_url: str | None = None  # http base of CRL/OCSP/caIssuers URLs (default: derived)
    # Default key algorithm per certificate profile for server-side key generation when a
    # request names none: ``profile=algorithm`` items, e.g. ("seal=sm2", "legal-person=sm2").
    ca_key_algorithms: tuple[str, ...] = ()
    # key algorithm of new seals when an application names none: sm2 (GB/T 38540; an SM2 seal
    # also holds a P-256 key for PDF), ec-p256 or ec-p384; unset: sm2 where the key store can
    # make SM2 keys (soft, or PKCS#11 with the vendor's SM2 constants), else ec-p256
    seal_default_key_algorithm: str = ""
    # the cipher new values at rest are written under (personal data, licence secrets):
    # aes-256-gcm or sm4-gcm (GB/T 39786); values under either stay readable (hsm.atrest), and
    # ``govtrust reencrypt --to`` moves existing rows
    at_rest_scheme: str = "aes-256-gcm"
    # the licence text font's file (a TrueType collection or font); empty: WenQuanYi Micro Hei
    seal_font: str = ""
    # USCCs accepted though their check character fails (real codes issued wrongly), besides
    # the file <data-dir>/uscc-allow-list.txt
    uscc_allow_list: tuple[str, ...] = ()
    seal_maker_name: str | None = None  # the seal-making unit (default: a development unit)
    seal_maker_uscc: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    migrate: bool = True
    log_level: str = "info"
    max_message_bytes: int = 64 * 1024 * 1024
    # the gRPC server: "aio", grpc.aio on the HTTP side's event loop, or "sync", grpc's
    # thread-pool server driving our servicers inline (cheaper for a call that does nothing,
    # not yet for the real ones: docs/performance.md "gRPC transport"); and the sync server's
    # threads (calls in progress at once; domain work is bounded separately)
    grpc_transport: str = "aio"
    grpc_threads: int = 16
    audit_checkpoint_seconds: int = 600  # 0: no periodic audit checkpoints
    # a cluster job's lease (govtrust.lease): another replica takes a dead holder's jobs over
    # within this plus a third of it
    cluster_lease_seconds: int = 30
    # a serving process's cluster membership (govtrust.lease.Membership) lives this long after
    # its last renewal (renewed every quarter of it): after a process dies, its request-ledger
    # claims are taken over within this
    cluster_member_seconds: int = 4
    # the period of the ca.refresh cluster job (OCSP pre-production, CRL republication)
    ca_refresh_seconds: int = 120
    # PostgreSQL sessions (govtrust.db.postgresql_connect_args): the server ends a session idle
    # inside a transaction after this many seconds (0: never), releasing a lost client's locks;
    # TCP keepalives on both ends start after this many idle seconds (0: the OS's defaults)
    database_idle_in_transaction_seconds: int = 60
    database_keepalive_seconds: int = 5
    # Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto the
    # HTTP server believes; none by default, so the peer address is the client's.
    trusted_proxies: tuple[str, ...] = ()
    # Staff roles an identity-registrar may give (only an admin gives any other); none by default.
    registrar_grantable_roles: tuple[str, ...] = ()
    http_max_body_bytes: int = DEFAULT_HTTP_MAX_BODY_BYTES
    # untrusted documents (public licence PDF checks, VerifyPdf): their own pool and limits
    document_workers: int = 2  # the public page's pool
    document_queue: int = 4
    verify_document_workers: int = 0  # VerifyPdf's pool; 0: as many as the shared pool
    verify_document_queue: int = 256
    document_budget_seconds: int = 20
    pdf_max_revisions: int = 100
    pdf_max_objects: int = 100_000
    pdf_max_signatures: int = 50
    # the public licence check page's per-client token bucket
    verify_rate: float = 1.0  # requests per second refilled
    verify_burst: int = 30
    # the OIDC token endpoint's token bucket per client id and address, shared by every replica
    token_rate: float = 0.0  # requests per second refilled; 0: no limit
    token_burst: int = 60
    # the OIDC refresh tokens' reuse interval (s; 0: none): a rotated refresh token presented
    # again by its client this soon after its rotation, while the token that rotation minted is
    # still unused, is answered again instead of revoking the family (a retry after a lost
    # answer; idp/oidc/reuse.py, docs/oidc.md)
    oidc_refresh_reuse_interval_seconds: int = 30
    # the web console's sessions: ended after this long without a request, and this long after
    # the login whatever happens
    console_idle_seconds: int = 900
    console_absolute_seconds: int = 8 * 3600
    # the sections' values as given: section → field → (value, where it came from)
    sections: Mapping[str, Mapping[str, tuple[Any, str]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file in the data directory."""
        return self.database_url or sqlite_url(self.data_dir)

    def open_database(self) -> Database:
        """The configured database (:attr:`effective_database_url`) with its session bounds."""
        return Database(
            self.effective_database_url,
            idle_in_transaction_seconds=self.database_idle_in_transaction_seconds,
            keepalive_idle_seconds=self.database_keepalive_seconds,
        )

    @property
    def effective_public_base_url(self) -> str:
        """Base URL written into certificates (CRL, OCSP, caIssuers) and pages."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.http_port}"

    @property
    def effective_seal_key_algorithm(self) -> str:
        """The key algorithm of new seals when an application names none (see the field)."""
        if self.seal_default_key_algorithm:
            return self.seal_default_key_algorithm
        sm2_keys = self.hsm == "soft" or all(getattr(self, n) for n in PKCS11_SM2_FIELDS)
        return "sm2" if sm2_keys else "ec-p256"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @property
    def is_loopback(self) -> bool:
        """Whether the server listens only on a loopback address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


_INT_FIELDS = {
    "grpc_port",
    "http_port",
    "workers",
    "max_message_bytes",
    "grpc_threads",
    "audit_checkpoint_seconds",
    "cluster_lease_seconds",
    "cluster_member_seconds",
    "ca_refresh_seconds",
    "database_idle_in_transaction_seconds",
    "database_keepalive_seconds",
    "http_max_body_bytes",
    "document_workers",
    "document_queue",
    "verify_document_workers",
    "verify_document_queue",
    "document_budget_seconds",
    "pdf_max_revisions",
    "pdf_max_objects",
    "pdf_max_signatures",
    "verify_burst",
    "token_burst",
    "oidc_refresh_reuse_interval_seconds",
    "console_idle_seconds",
    "console_absolute_seconds",
}
_FLOAT_FIELDS = {"verify_rate", "token_rate"}
_AT_LEAST = {
    "grpc_threads": 2,
    "document_workers": 1,
    "document_queue": 0,
    "verify_document_workers": 0,
    "verify_document_queue": 0,
    "document_budget_seconds": 1,
    "pdf_max_revisions": 1,
    "pdf_max_objects": 1,
    "pdf_max_signatures": 1,
    "verify_burst": 1,
    "token_burst": 1,
    "database_idle_in_transaction_seconds": 0,
    "database_keepalive_seconds": 0,
    "console_idle_seconds": 60,
    "console_absolute_seconds": 300,
}
_PATH_FIELDS = {"data_dir", "tls_cert", "tls_key", "tls_client_ca"}
_BOOL_FIELDS = {"migrate"}
_LIST_FIELDS = {
    "trusted_proxies",
    "registrar_grantable_roles",
    "ca_key_algorithms",
    "uscc_allow_list",
}
# Never grantable by a registrar, whatever the allow-list says.
# roles only an admin gives: a registrar allowed to give key-recovery could mint the two officers
# of a dual-control key recovery (ca/recovery.py)
_ADMIN_ONLY_ROLES = frozenset({"admin", "identity-registrar", "key-recovery"})
_KNOWN = {f.name for f in fields(Settings)} - {"sections"}
ENV_PREFIX = "GOVTRUST_"
# the names of hsm.atrest.AtRestScheme (config sits below hsm; a test keeps the two equal)
AT_REST_SCHEMES = ("aes-256-gcm", "sm4-gcm")
GRPC_TRANSPORTS = ("sync", "aio")
PKCS11_SM2_FIELDS = ("pkcs11_sm2_key_type", "pkcs11_sm2_keygen_mechanism", "pkcs11_sm2_mechanism")


def pkcs11_constant(value: str | None) -> int | None:
    """A PKCS#11 vendor constant written as decimal or ``0x`` hex; ``None`` if unset or invalid."""
    if value is None:
        return None
    try:
        number = int(value.strip(), 0)
    except ValueError:
        return None
    return number if 0 <= number <= 0xFFFFFFFF else None


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _coerce(name: str, value: Any, source: str) -> Any:
    if value is None:
        return None
    if name in _INT_FIELDS:
        if isinstance(value, bool):
            raise ConfigError(f"{name} ({source}): expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} ({source}): expected an integer, got {value!r}") from None
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool):
            raise ConfigError(f"{name} ({source}): expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} ({source}): expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name} ({source}): expected a finite number, got {value!r}")
        return number
    if name in _BOOL_FIELDS:
        return _boolean(value, f"{name} ({source})")
    if name in _LIST_FIELDS:
        # a TOML array, or a string of items separated by commas or spaces (environment, flags)
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{name} ({source}): expected a list of strings, got {value!r}")
        return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if name in _PATH_FIELDS:
        return Path(str(value))
    if not isinstance(value, str):
        raise ConfigError(f"{name} ({source}): expected a string, got {value!r}")
    return value


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = raw.get("govtrust", raw)
    values: dict[str, Any] = {}
    sections: dict[str, dict[str, tuple[Any, str]]] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name in SECTIONS and isinstance(value, dict):
            where = f"config file {path} [{name}]"
            sections[name] = {k.replace("-", "_"): (v, where) for k, v in value.items()}
            continue
        if name not in _KNOWN:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values[name] = _coerce(name, value, f"config file {path}")
    if sections:
        values["sections"] = sections
    return values


def _sections_from_env(env: Mapping[str, str]) -> dict[str, dict[str, tuple[Any, str]]]:
    """``GOVTRUST_<SECTION>_<FIELD>`` variables that are no top-level setting of their own
    (``GOVTRUST_CA_KEY_ALGORITHMS`` is ``ca_key_algorithms``, not the CA's ``key_algorithms``)."""
    found: dict[str, dict[str, tuple[Any, str]]] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or value == "":
            continue
        name = key.removeprefix(ENV_PREFIX).lower()
        if name in _KNOWN:
            continue
        for section in SECTIONS:
            if name.startswith(section + "_"):
                found.setdefault(section, {})[name.removeprefix(section + "_")] = (
                    value,
                    f"environment {key}",
                )
    return found


def _coerce_field(kind: Any, value: Any, where: str) -> Any:
    """A section value as its dataclass field's type (``str``, ``int``, ``float``, ``bool``)."""
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = int(value) if kind == "int" else float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
            ) from None
        if kind == "float" and not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if kind == "bool":
        return _boolean(value, where)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def section_config(cls: type[T], settings: Settings | None, section: str, **overrides: Any) -> T:
    """The frozen dataclass ``cls`` of a package's settings: its defaults, then the section's
    values (TOML, then environment), then ``overrides`` (what the platform's own settings
    decide, e.g. the public base URL). An unknown name in the TOML table is a
    :class:`ConfigError`; an unknown variable is not read (the environment holds much else)."""
    if section not in SECTIONS:
        raise ValueError(f"no settings section {section!r}")
    given = (settings or Settings()).sections.get(section, {})
    kinds = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, (value, where) in given.items():
        if name not in kinds:
            if where.startswith("environment"):
                continue
            raise ConfigError(f"{where}: unknown setting {name!r}")
        values[name] = _coerce_field(kinds[name], value, f"{section}.{name} ({where})")
    values.update(overrides)
    return replace(cls(), **values)  # type: ignore[type-var]


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _KNOWN:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            values[name] = _coerce(name, env[key], f"environment {key}")
    return values


def _validate(settings: Settings) -> Settings:
    for port_name in ("grpc_port", "http_port"):
        port = getattr(settings, port_name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{port_name}: {port} is not a TCP port (0-65535)")
    if settings.workers < 1 or settings.workers > 64:
        raise ConfigError(f"workers: {settings.workers} is out of range (1-64)")
    if not 0 <= settings.audit_checkpoint_seconds <= 86_400:
        raise ConfigError(
            f"audit_checkpoint_seconds: {settings.audit_checkpoint_seconds} is out of range "
            "(0 to disable, at most 86400)"
        )
    if not 2 <= settings.cluster_member_seconds <= 300:
        raise ConfigError(
            f"cluster_member_seconds: {settings.cluster_member_seconds} is out of range (2-300)"
        )
    if not 3 <= settings.cluster_lease_seconds <= 3600:
        raise ConfigError(
            f"cluster_lease_seconds: {settings.cluster_lease_seconds} is out of range (3-3600)"
        )
    if not 5 <= settings.ca_refresh_seconds <= 86_400:
        raise ConfigError(
            f"ca_refresh_seconds: {settings.ca_refresh_seconds} is out of range (5-86400)"
        )
    if not 0 <= settings.oidc_refresh_reuse_interval_seconds <= MAX_REFRESH_REUSE_INTERVAL:
        raise ConfigError(
            "oidc_refresh_reuse_interval_seconds: "
            f"{settings.oidc_refresh_reuse_interval_seconds} is out of range "
            f"(0 to disable, at most {MAX_REFRESH_REUSE_INTERVAL})"
        )
    if settings.http_max_body_bytes < 1024:
        raise ConfigError(
            f"http_max_body_bytes: {settings.http_max_body_bytes} is below the minimum of 1024"
        )
    if settings.verify_rate <= 0:
        raise ConfigError(f"verify_rate: {settings.verify_rate} must be above 0 requests a second")
    if not settings.token_rate >= 0:
        raise ConfigError(
            f"token_rate: {settings.token_rate} must be 0 (no limit) or above 0 requests a second"
        )
    for name, least in _AT_LEAST.items():
        if getattr(settings, name) < least:
            raise ConfigError(f"{name}: {getattr(settings, name)} is below {least}")
    if settings.hsm not in {"soft", "pkcs11"}:
        raise ConfigError(f"hsm: {settings.hsm!r} is not a key store (soft or pkcs11)")
    if settings.hsm == "pkcs11":
        missing = [
            n
            for n in ("pkcs11_module", "pkcs11_token_label", "pkcs11_pin")
            if not getattr(settings, n)
        ]
        if missing:
            names = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise ConfigError(f"hsm=pkcs11 needs {names}")
    for name in PKCS11_SM2_FIELDS:
        value = getattr(settings, name)
        if value is not None and pkcs11_constant(value) is None:
            raise ConfigError(
                f"{name}: {value!r} is not a PKCS#11 constant (decimal or 0x hex, 32 bits)"
            )
    if settings.database_url is not None and not settings.database_url.startswith(
        ("sqlite", "postgresql", "postgres://")
    ):
        raise ConfigError("database_url: only sqlite:// and postgresql:// URLs are supported")
    if settings.crl_base_url and not settings.crl_base_url.startswith("http://"):
        raise ConfigError(
            f"crl_base_url: {settings.crl_base_url!r} must be a plain http:// URL "
            "(validators fetch CRLs and OCSP over http; ETSI EN 319 412-2)"
        )
    if (settings.seal_maker_name is None) != (settings.seal_maker_uscc is None):
        raise ConfigError("seal_maker_name and seal_maker_uscc must be given together")
    if settings.seal_default_key_algorithm not in {"", "sm2", "ec-p256", "ec-p384"}:
        raise ConfigError(
            f"seal_default_key_algorithm: {settings.seal_default_key_algorithm!r} is not "
            "sm2, ec-p256 or ec-p384"
        )
    if settings.at_rest_scheme not in AT_REST_SCHEMES:
        raise ConfigError(
            f"at_rest_scheme: {settings.at_rest_scheme!r} is not {' or '.join(AT_REST_SCHEMES)}"
        )
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("tls_cert and tls_key must be given together")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise ConfigError("tls_client_ca needs tls_cert and tls_key")
    if settings.grpc_transport not in GRPC_TRANSPORTS:
        raise ConfigError(
            f"grpc_transport: {settings.grpc_transport!r} is not {' or '.join(GRPC_TRANSPORTS)}"
        )
    if settings.log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log_level: {settings.log_level!r} is not debug/info/warning/error")
    for proxy in settings.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"trusted_proxies: {proxy!r} is not an IP address or network"
            ) from None
    for item in settings.ca_key_algorithms:
        profile, sep, algorithm = item.partition("=")
        if not sep or not profile.strip() or not algorithm.strip():
            raise ConfigError(f"ca_key_algorithms: expected profile=algorithm, got {item!r}")
    for role in settings.registrar_grantable_roles:
        if role in _ADMIN_ONLY_ROLES:
            raise ConfigError(f"registrar_grantable_roles: only an admin may give {role!r}")
        if role not in ROLES and not (
            role.startswith(LICENCE_ISSUER_PREFIX) and role != LICENCE_ISSUER_PREFIX
        ):
            raise ConfigError(f"registrar_grantable_roles: {role!r} is not a role")
    if not settings.tls_enabled and not settings.is_loopback:
        raise ConfigError(
            f"host {settings.host}: listening beyond loopback needs TLS (tls_cert, tls_key)"
        )
    return settings


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, the environment and flags (highest wins), then validate."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    env_file = env.get(ENV_PREFIX + "CONFIG")
    path = config_file or (Path(env_file) if env_file else None)
    if path is not None:
        merged.update(_from_toml(path))
    merged.update(_from_env(env))
    sections = {name: dict(values) for name, values in merged.get("sections", {}).items()}
    for name, values in _sections_from_env(env).items():
        sections.setdefault(name, {}).update(values)
    merged["sections"] = sections
    for name, value in (flags or {}).items():
        if value is not None:
            if name not in _KNOWN:
                raise ConfigError(f"unknown setting {name!r}")
            merged[name] = _coerce(name, value, "command line")
    return _validate(Settings(**merged))
