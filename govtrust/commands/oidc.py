"""``govtrust oidc …``: operator commands of the OpenID Connect provider (act on a data dir).

* ``govtrust oidc client add NAME --redirect-uri URI … [--public] [--grant-type …]`` prints the
  client id and (once) the secret;
* ``govtrust oidc client list`` / ``govtrust oidc client remove CLIENT_ID``;
* ``govtrust oidc key rotate [--alg ES256|RS256]`` rotates a signing key with overlap;
* ``govtrust oidc password set IDENTITY_ID LOGIN_NAME`` sets a password (read from stdin/tty).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any, cast

from govtrust.commands import EXIT_OK, add_data_dir, open_instance
from govtrust.principal import Principal


def _operator() -> Principal:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(
        kind="operator", subject=user, roles=frozenset({"admin", "identity-registrar"})
    )


def cmd_client_add(args: argparse.Namespace) -> int:
    """Register a client and print its id and secret (the secret is shown only now)."""
    from idp.oidc.clients import client_to_dict
    from idp.oidc.factory import provider_for

    platform = open_instance(args)
    try:
        result = provider_for(platform).clients.register(
            _operator(),
            client_name=args.name,
            client_type="public" if args.public else "confidential",
            redirect_uris=args.redirect_uri or [],
            post_logout_redirect_uris=args.post_logout_redirect_uri or [],
            backchannel_logout_uri=args.backchannel_logout_uri or "",
            grant_types=args.grant_type or None,
            token_endpoint_auth_method=args.auth_method or "",
            allowed_scopes=args.scope or None,
            subject_type="pairwise" if args.pairwise else "public",
            sector_identifier=args.sector_identifier or "",
            connection_mode=args.connection_mode or "",
            system_id=args.system_id or "",
            id_token_signing_alg=args.id_token_alg,
            client_id=args.client_id or "",
            roles=args.role or None,
            jwks=args.jwks_file.read_text("utf-8") if args.jwks_file else "",
        )
    finally:
        platform.close()
    output = client_to_dict(result.client)
    if result.client_secret:
        output["client_secret"] = result.client_secret
    print(json.dumps(output, ensure_ascii=False, indent=2))
    return EXIT_OK


def cmd_client_list(args: argparse.Namespace) -> int:
    """Print every client (without secrets)."""
    from idp.oidc.clients import client_to_dict
    from idp.oidc.factory import provider_for

    platform = open_instance(args)
    try:
        registry = provider_for(platform).clients
        after, rows = "", cast(list[dict[str, Any]], [])
        while True:
            clients, after = registry.list(page_size=500, after=after)
            rows.extend(client_to_dict(c) for c in clients)
            if not after:
                break
    finally:
        platform.close()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            print(
                f"{row['client_id']}\t{row['client_type']}\t{row['client_name']}\t"
                f"{' '.join(row['redirect_uris'])}"
            )
    return EXIT_OK


def cmd_client_remove(args: argparse.Namespace) -> int:
    """Remove a client and revoke its tokens."""
    from idp.oidc.factory import provider_for

    platform = open_instance(args)
    try:
        count = provider_for(platform).clients.remove(_operator(), args.client_id)
    finally:
        platform.close()
    print(f"removed {args.client_id}; revoked {count} grants and refresh tokens")
    return EXIT_OK


def cmd_key_rotate(args: argparse.Namespace) -> int:
    """Rotate a signing key (the old one stays in JWKS until its tokens expire)."""
    from idp.oidc.factory import provider_for

    platform = open_instance(args)
    try:
        provider = provider_for(platform)
        provider.ensure_keys()
        kid = provider.keys.rotate(args.alg, _operator())
        pruned = provider.keys.prune(_operator())
    finally:
        platform.close()
    print(f"new {args.alg} key {kid}; destroyed expired keys: {', '.join(pruned) or 'none'}")
    return EXIT_OK


def cmd_password_set(args: argparse.Namespace) -> int:
    """Set an identity's login name and password (argon2id)."""
    from idp.oidc.factory import provider_for

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
    platform = open_instance(args)
    try:
        provider_for(platform).passwords.set_password(
            _operator(),
            identity_id=args.identity_id,
            login_name=args.login_name,
            password=password,
        )
    finally:
        platform.close()
    print(f"password set for {args.identity_id}")
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``govtrust oidc …`` to the CLI."""
    oidc = commands.add_parser("oidc", help="OpenID Connect provider: clients, keys, passwords")
    groups = oidc.add_subparsers(dest="oidc_command", metavar="COMMAND", required=True)

    client = groups.add_parser("client", help="relying parties")
    client_cmds = client.add_subparsers(dest="client_command", metavar="COMMAND", required=True)
    add = client_cmds.add_parser("add", help="register a client; prints id and secret")
    add_data_dir(add)
    add.add_argument("name", help="name shown on the consent page")
    add.add_argument("--client-id", help="client id (default: generated)")
    add.add_argument("--redirect-uri", action="append", help="redirect URI (repeat)")
    add.add_argument("--post-logout-redirect-uri", action="append", help="(repeat)")
    add.add_argument("--backchannel-logout-uri")
    add.add_argument("--public", action="store_true", help="public client (PKCE, no secret)")
    add.add_argument(
        "--grant-type",
        action="append",
        choices=["authorization_code", "refresh_token", "client_credentials"],
    )
    add.add_argument(
        "--auth-method",
        choices=["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
    )
    add.add_argument("--jwks-file", type=Path, help="JWKS for private_key_jwt")
    add.add_argument("--scope", action="append", help="allowed scope (repeat)")
    add.add_argument("--pairwise", action="store_true", help="pairwise sub")
    add.add_argument("--sector-identifier")
    add.add_argument("--connection-mode", choices=["unified", "mapped"])
    add.add_argument("--system-id", help="business system id (mapped mode)")
    add.add_argument("--id-token-alg", choices=["ES256", "RS256"], default="ES256")
    add.add_argument("--role", action="append", help="govtrust role of client_credentials tokens")
    add.set_defaults(handler=cmd_client_add)

    lst = client_cmds.add_parser("list", help="list clients")
    add_data_dir(lst)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_client_list)

    rm = client_cmds.add_parser("remove", help="remove a client and revoke its tokens")
    add_data_dir(rm)
    rm.add_argument("client_id")
    rm.set_defaults(handler=cmd_client_remove)

    key = groups.add_parser("key", help="signing keys")
    key_cmds = key.add_subparsers(dest="key_command", metavar="COMMAND", required=True)
    rotate = key_cmds.add_parser("rotate", help="rotate a signing key with overlap")
    add_data_dir(rotate)
    rotate.add_argument("--alg", choices=["ES256", "RS256"], default="ES256")
    rotate.set_defaults(handler=cmd_key_rotate)

    password = groups.add_parser("password", help="password credentials")
    pw_cmds = password.add_subparsers(dest="password_command", metavar="COMMAND", required=True)
    set_pw = pw_cmds.add_parser("set", help="set a password (read from stdin or the terminal)")
    add_data_dir(set_pw)
    set_pw.add_argument("identity_id")
    set_pw.add_argument("login_name")
    set_pw.set_defaults(handler=cmd_password_set)
