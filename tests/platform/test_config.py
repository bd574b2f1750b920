"""Configuration precedence (flags > environment > TOML) and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from govtrust.config import ConfigError, load_settings
from tests.unchanged import unchanged


def test_defaults_are_the_embedded_instance() -> None:
    s = load_settings({}, env={})
    assert (s.host, s.grpc_port, s.http_port, s.workers, s.hsm) == (
        "127.0.0.1",
        50051,
        8080,
        1,
        "soft",
    )
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("var/govtrust.db")
    assert s.effective_public_base_url == "http://127.0.0.1:8080"


def test_precedence_flags_over_env_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "govtrust.toml"
    toml.write_text("[govtrust]\ngrpc-port = 1111\nhttp_port = 2222\nworkers = 3\n")
    env = {"GOVTRUST_HTTP_PORT": "3333", "GOVTRUST_WORKERS": "4"}
    s = load_settings({"workers": 5}, config_file=toml, env=env)
    assert (s.grpc_port, s.http_port, s.workers) == (1111, 3333, 5)


def test_cluster_and_database_bounds_are_settings() -> None:
    defaults = load_settings({}, env={})
    assert (defaults.cluster_lease_seconds, defaults.database_idle_in_transaction_seconds) == (
        30,
        60,
    )
    env = {
        "GOVTRUST_CLUSTER_LEASE_SECONDS": "12",
        "GOVTRUST_DATABASE_IDLE_IN_TRANSACTION_SECONDS": "0",
        "GOVTRUST_DATABASE_KEEPALIVE_SECONDS": "15",
    }
    given = load_settings({"cluster_lease_seconds": 9}, env=env)  # the flag wins
    assert given.cluster_lease_seconds == 9
    assert (given.database_idle_in_transaction_seconds, given.database_keepalive_seconds) == (0, 15)


def test_audit_checkpoint_interval_is_a_setting() -> None:
    assert load_settings({}, env={}).audit_checkpoint_seconds == 600
    env = {"GOVTRUST_AUDIT_CHECKPOINT_SECONDS": "0"}
    assert load_settings({}, env=env).audit_checkpoint_seconds == 0


def test_oidc_refresh_reuse_interval_is_a_setting(tmp_path: Path) -> None:
    assert load_settings({}, env={}).oidc_refresh_reuse_interval_seconds == 30
    toml = tmp_path / "govtrust.toml"
    toml.write_text("[govtrust]\noidc_refresh_reuse_interval_seconds = 0\n")
    assert load_settings({}, config_file=toml, env={}).oidc_refresh_reuse_interval_seconds == 0
    env = {"GOVTRUST_OIDC_REFRESH_REUSE_INTERVAL_SECONDS": "300"}
    assert load_settings({}, config_file=toml, env=env).oidc_refresh_reuse_interval_seconds == 300


@pytest.mark.parametrize(
    ("flags", "env", "fragment"),
    [
        ({"grpc_port": 99999}, {}, "not a TCP port"),
        ({"workers": 0}, {}, "out of range"),
        ({}, {"GOVTRUST_HTTP_PORT": "eighty"}, "expected an integer"),
        ({}, {"GOVTRUST_HSM": "magic"}, "not a key store"),
        ({}, {"GOVTRUST_HSM": "pkcs11"}, "GOVTRUST_PKCS11_MODULE"),
        ({"host": "0.0.0.0"}, {}, "needs TLS"),
        ({}, {"GOVTRUST_DATABASE_URL": "mysql://x"}, "only sqlite"),
        ({}, {"GOVTRUST_MIGRATE": "perhaps"}, "true or false"),
        ({}, {"GOVTRUST_AUDIT_CHECKPOINT_SECONDS": "-1"}, "audit_checkpoint_seconds"),
        ({"audit_checkpoint_seconds": 90_000}, {}, "audit_checkpoint_seconds"),
        ({}, {"GOVTRUST_CLUSTER_LEASE_SECONDS": "2"}, "cluster_lease_seconds: 2 is out of range"),
        ({"cluster_lease_seconds": 4000}, {}, "cluster_lease_seconds"),
        ({}, {"GOVTRUST_CLUSTER_MEMBER_SECONDS": "1"}, "cluster_member_seconds: 1 is out of range"),
        (
            {},
            {"GOVTRUST_DATABASE_IDLE_IN_TRANSACTION_SECONDS": "-1"},
            "database_idle_in_transaction_seconds: -1 is below 0",
        ),
        ({"database_keepalive_seconds": -5}, {}, "database_keepalive_seconds"),
        ({}, {"GOVTRUST_GRPC_TRANSPORT": "trio"}, "grpc_transport: 'trio' is not sync or aio"),
        ({}, {"GOVTRUST_GRPC_THREADS": "1"}, "grpc_threads: 1 is below 2"),
        (
            {},
            {"GOVTRUST_OIDC_REFRESH_REUSE_INTERVAL_SECONDS": "-1"},
            "oidc_refresh_reuse_interval_seconds: -1 is out of range",
        ),
        (
            {"oidc_refresh_reuse_interval_seconds": 301},
            {},
            r"oidc_refresh_reuse_interval_seconds: 301 is out of range \(0 to disable, at most"
            r" 300\)",
        ),
    ],
)
def test_invalid_settings_are_one_clear_error(
    flags: dict[str, object], env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(flags, env=env)


def test_bad_toml_and_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("grpc_port = [")
    with unchanged(None, None, tmp_path), pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=bad, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'red'\n")
    with (
        unchanged(None, None, tmp_path),
        pytest.raises(ConfigError, match="unknown setting 'colour'"),
    ):
        load_settings({}, config_file=unknown, env={})
    with unchanged(None, None, tmp_path), pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, config_file=tmp_path / "missing.toml", env={})


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--grpc-port", "99999"],
        ["serve", "--workers", "0"],
        ["init", "--config", "/nonexistent/govtrust.toml"],
    ],
)
def test_cli_invalid_configuration_exits_with_one_line(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "govtrust", *args, "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("govtrust: invalid configuration:")
    assert "Traceback" not in result.stderr


def test_cli_help_everywhere() -> None:
    for args in (["--help"], ["serve", "--help"], ["audit", "verify", "--help"], ["init", "-h"]):
        result = subprocess.run(
            [sys.executable, "-m", "govtrust", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0
        assert "usage: govtrust" in result.stdout


def test_list_settings_trusted_proxies_and_registrar_roles(tmp_path: Path) -> None:
    from govtrust.server.worker import settings_from_json, settings_to_json

    s = load_settings({}, env={})
    assert (s.trusted_proxies, s.registrar_grantable_roles) == ((), ())  # none by default
    toml = tmp_path / "govtrust.toml"
    toml.write_text('[govtrust]\ntrusted-proxies = ["10.0.0.0/8", "::1"]\n')
    env = {"GOVTRUST_REGISTRAR_GRANTABLE_ROLES": "verifier, licence-issuer:FZ-SCJG"}
    s = load_settings({}, config_file=toml, env=env)
    assert s.trusted_proxies == ("10.0.0.0/8", "::1")
    assert s.registrar_grantable_roles == ("verifier", "licence-issuer:FZ-SCJG")
    assert settings_from_json(settings_to_json(s)) == s  # workers get the same tuples
    for env, fragment in [
        ({"GOVTRUST_TRUSTED_PROXIES": "proxy.example"}, "not an IP address or network"),
        ({"GOVTRUST_REGISTRAR_GRANTABLE_ROLES": "admin"}, "only an admin may give 'admin'"),
        ({"GOVTRUST_REGISTRAR_GRANTABLE_ROLES": "identity-registrar"}, "only an admin"),
        ({"GOVTRUST_REGISTRAR_GRANTABLE_ROLES": "key-recovery"}, "only an admin"),
        ({"GOVTRUST_REGISTRAR_GRANTABLE_ROLES": "root"}, "'root' is not a role"),
    ]:
        with unchanged(None, None, tmp_path), pytest.raises(ConfigError, match=fragment):
            load_settings({}, env=env)


def test_package_sections_env_over_toml_and_their_errors(tmp_path: Path) -> None:
    """The CA's and the verifier's own settings come through govtrust.config: the TOML table,
    then GOVTRUST_<SECTION>_<FIELD>, then what the platform decides; bad values name where they
    came from; top-level settings that share the prefix stay top-level."""
    from ca.config import CaConfig
    from govtrust.config import section_config
    from verify.service import VerifyConfig

    toml = tmp_path / "govtrust.toml"
    toml.write_text(
        "[govtrust]\nca_key_algorithms = ['seal=sm2']\n"
        "[govtrust.ca]\noid-arc = '1.2.3'\nissue_threads = 3\ncountry = 'HK'\n"
        "[govtrust.verify]\nfetch_timeout_seconds = 1.5\ncache_size = 10\n"
        "max_ofd_bytes = 1000\nmax_pdf_bytes = 3000\n",
        encoding="utf-8",
    )
    env = {
        "GOVTRUST_CA_ISSUE_THREADS": "5",
        "GOVTRUST_CA_UNHEARD_OF": "ignored",  # the environment holds much else
        "GOVTRUST_VERIFY_CACHE_SIZE": "20",
        "GOVTRUST_VERIFY_MAX_OFD_BYTES": "2048",
        "GOVTRUST_VERIFY_DOCUMENT_WORKERS": "3",  # a top-level setting
    }
    settings = load_settings({}, config_file=toml, env=env)
    assert settings.ca_key_algorithms == ("seal=sm2",)
    assert settings.verify_document_workers == 3
    ca = CaConfig.from_settings(settings, country="CN")
    assert (ca.oid_arc, ca.issue_threads, ca.country) == ("1.2.3", 5, "CN")
    verify = VerifyConfig.from_settings(settings)
    assert (verify.fetch_timeout_seconds, verify.cache_size) == (1.5, 20)
    assert (verify.max_ofd_bytes, verify.max_pdf_bytes) == (2048, 3000)  # VerifyOfd's own limit
    assert VerifyConfig.from_settings(None) == VerifyConfig()
    assert VerifyConfig().max_ofd_bytes == VerifyConfig().max_pdf_bytes == 64 * 1024 * 1024
    assert "document_workers" not in settings.sections.get("verify", {})

    bad_env = load_settings({}, env={"GOVTRUST_CA_ISSUE_THREADS": "many"})
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[verify]\nfetch_timeout = 2\n", encoding="utf-8")
    nan = load_settings({}, env={"GOVTRUST_VERIFY_AUDIT_LINGER_MS": "nan"})
    with unchanged(None, None, tmp_path):  # a refused setting writes no file
        with pytest.raises(ConfigError, match=r"ca\.issue_threads \(environment GOVTRUST_CA_ISSUE"):
            CaConfig.from_settings(bad_env)
        with pytest.raises(
            ConfigError, match=r"bad\.toml \[verify\]: unknown setting 'fetch_timeout'"
        ):
            VerifyConfig.from_settings(load_settings({}, config_file=bad_toml, env={}))
        with pytest.raises(ConfigError, match="expected a finite number"):
            VerifyConfig.from_settings(nan)
        with pytest.raises(ValueError, match="no settings section"):
            section_config(VerifyConfig, settings, "seal")


def test_package_settings_uscc_allow_list_and_seal_font_flags_over_env_over_toml(
    tmp_path: Path,
) -> None:
    """The identity registry's USCC allow-list and the licence font are settings like any
    other (issue #15 item 4): flags > environment > TOML, the names operators already use."""
    from govtrust.server.worker import settings_from_json, settings_to_json
    from idp.identifiers import load_uscc_allow_list

    s = load_settings({}, env={})
    assert (s.uscc_allow_list, s.seal_font) == ((), "")
    toml = tmp_path / "govtrust.toml"
    toml.write_text(
        '[govtrust]\nuscc-allow-list = ["91350203M0001QAY9B"]\nseal-font = "/toml/font.ttc"\n'
    )
    s = load_settings({}, config_file=toml, env={})
    assert (s.uscc_allow_list, s.seal_font) == (("91350203M0001QAY9B",), "/toml/font.ttc")
    env = {
        "GOVTRUST_USCC_ALLOW_LIST": "91350100M000100Y44 , 91350100M000100Y45",
        "GOVTRUST_SEAL_FONT": "/env/font.ttc",
    }
    s = load_settings({}, config_file=toml, env=env)
    assert s.uscc_allow_list == ("91350100M000100Y44", "91350100M000100Y45")
    assert s.seal_font == "/env/font.ttc"
    assert settings_from_json(settings_to_json(s)) == s  # workers get the same values
    assert load_uscc_allow_list(None, s.uscc_allow_list) == frozenset(s.uscc_allow_list)
    flags = {"uscc_allow_list": "11100000000013338X", "seal_font": "/flag/font.ttc"}
    s = load_settings(flags, config_file=toml, env=env)
    assert (s.uscc_allow_list, s.seal_font) == (("11100000000013338X",), "/flag/font.ttc")
    bad = tmp_path / "bad.toml"
    bad.write_text("[govtrust]\nuscc-allow-list = 7\n")
    with unchanged(None, None, tmp_path), pytest.raises(ConfigError, match="uscc_allow_list"):
        load_settings({}, env={}, config_file=bad)
