"""Who may call each govtrust.v1 RPC (:data:`RPC_ACCESS`), and the role tables rendered from it.

The server's interceptor checks every call against :data:`RPC_ACCESS`
(:func:`govtrust.rpc.access.gate`) before the servicer runs; the domain code then checks the
relation, the state and the duties. The seal rows are derived from the seal transition table
(:data:`seal.transitions.TRANSITIONS`), the certificate rows from the CA's issuing roles, the
identity rows from the registry's roles — the constants the domain checks with — so the table
cannot drift from them silently. :func:`render_role_tables` writes both tables (seal
transitions, RPC × role) into docs/security.md (``scripts/role_tables.py``; a test fails when
the committed text differs).
"""

from __future__ import annotations

from ca.issuance import ISSUE_ROLES, SEAL_ROLES
from ca.recovery import RECOVERY_ROLE
from ca.recovery import REQUEST_ROLES as RECOVERY_REQUEST_ROLES
from govtrust.principal import EXPLICIT_ROLES, LICENCE_ISSUER_PREFIX
from govtrust.rpc.access import ANY_SUFFIX, Access
from idp.registry import REGISTRAR, VERIFIER
from license.access import SCOPE_LICENCE
from seal.transitions import (
    APPLY,
    OWNER,
    SCOPE_APPLY,
    SCOPE_MANAGE,
    SCOPE_USE,
    TRANSITIONS,
    Transition,
)

ADMIN = "admin"
LICENCE_ISSUER = LICENCE_ISSUER_PREFIX + ANY_SUFFIX
_SEAL_OWNER = (
    "the owner's legal representative",
    f"an agent of the owner holding `{SCOPE_APPLY}`",
    "the citizen owning a personal seal",
)
_SEAL_MANAGER = ("the owner's legal representative", f"an agent holding `{SCOPE_MANAGE}`")
_SEAL_USER = (
    "a grantee with a current grant",
    "the owner's legal representative",
    f"an agent holding `{SCOPE_USE}`",
    "the citizen owning a personal seal",
)
_LICENCE_HOLDER = (
    "the holder",
    "the holder's legal representative",
    f"an agent holding `{SCOPE_LICENCE}`",
)
_ANYONE = Access(authenticated=True)


def _seal(*operations: str, extra: tuple[str, ...] = ()) -> Access:
    """The rule of a seal RPC: the union of its transitions' roles (OWNER as relations)."""
    transitions: list[Transition] = [
        APPLY if operation == "apply" else TRANSITIONS[operation] for operation in operations
    ]
    roles = tuple(dict.fromkeys(r for t in transitions for r in t.roles if r != OWNER))
    owner = any(OWNER in t.roles for t in transitions)
    return Access(roles=roles, relations=(_SEAL_OWNER if owner else ()) + extra)


def _rpc(service: str, rules: dict[str, Access]) -> dict[str, Access]:
    return {f"/govtrust.v1.{service}/{method}": access for method, access in rules.items()}


_CA_ROLES = tuple(dict.fromkeys((*ISSUE_ROLES, *SEAL_ROLES)))
_CA_NOTE = (
    f"the seal roles only for seal-profile certificates ({', '.join(ISSUE_ROLES)} for others)"
)
_ID_READ = Access(roles=(VERIFIER, REGISTRAR))

# Methods whose domain keys ``request_id`` itself, in the transaction of its effect (the
# interceptor's request ledger leaves them alone): IssueLicense (license.issuance).
SELF_KEYED_METHODS = frozenset({"/govtrust.v1.LicenseService/IssueLicense"})

RPC_ACCESS: dict[str, Access] = {
    **_rpc(
        "CertificateService",
        {
            "IssueCertificate": Access(_CA_ROLES, note=_CA_NOTE),
            "GenerateKeyAndIssue": Access(_CA_ROLES, note=_CA_NOTE),
            "RenewCertificate": Access(_CA_ROLES, note=_CA_NOTE),
            "GetCertificate": Access((VERIFIER, *_CA_ROLES), ("the certificate's subject",)),
            "ListCertificates": Access((VERIFIER, *_CA_ROLES), ("the certificates' subject",)),
            "RevokeCertificate": Access(_CA_ROLES, note=_CA_NOTE),
            "SuspendCertificate": Access(_CA_ROLES, note=_CA_NOTE),
            "ResumeCertificate": Access(_CA_ROLES, note=_CA_NOTE),
            "GetCaChain": _ANYONE,
            "GetCrl": _ANYONE,
            "IssueEncryptionPair": Access(ISSUE_ROLES, note="SM2 legal-person/citizen signing"),
            "RequestKeyRecovery": Access(
                RECOVERY_REQUEST_ROLES, note="legal basis and recipient certificate named"
            ),
            "ApproveKeyRecovery": Access(
                (RECOVERY_ROLE,),
                note="two distinct officers, neither the requester; `admin` does not imply it",
            ),
            "DeliverRecoveredKey": Access(RECOVERY_REQUEST_ROLES, note="after two approvals"),
        },
    ),
    **_rpc(
        "IdentityService",
        {
            "RegisterCitizen": Access((REGISTRAR,)),
            "RegisterLegalPerson": Access((REGISTRAR,)),
            "RegisterStaff": Access(
                (REGISTRAR,),
                note="roles given only by `admin` (or from `registrar_grantable_roles`)",
            ),
            "GetCitizen": Access((VERIFIER, REGISTRAR), ("the citizen itself",)),
            "GetLegalPerson": _ID_READ,
            "GetStaff": _ID_READ,
            "SearchIdentities": _ID_READ,
            "UpdateIdentityStatus": Access((REGISTRAR,)),
            "CheckCitizen": _ID_READ,
            "CheckLegalPerson": _ID_READ,
            "GrantAgent": Access(
                (REGISTRAR,),
                ("the legal representative", f"an agent holding `{SCOPE_MANAGE}` (its own scopes)"),
            ),
            "RevokeAgent": Access((REGISTRAR,), (*_SEAL_MANAGER, "the agent itself")),
            "ListAgents": Access(
                (VERIFIER, REGISTRAR), (*_SEAL_MANAGER, "the agent (its own grants)")
            ),
            "RegisterClient": Access((ADMIN,)),
            "GetClient": Access((ADMIN, VERIFIER)),
            "ListClients": Access((ADMIN, VERIFIER)),
            "RemoveClient": Access((ADMIN,)),
            "IntrospectToken": Access((VERIFIER, ADMIN)),
            "RegisterServiceIdentity": Access((ADMIN,)),
            "GetServiceIdentity": Access((ADMIN,)),
            "ListServiceIdentities": Access((ADMIN,)),
            "UpdateServiceIdentityRoles": Access((ADMIN,)),
            "DisableServiceIdentity": Access((ADMIN,)),
            "EnableServiceIdentity": Access((ADMIN,)),
        },
    ),
    **_rpc(
        "SealService",
        {
            "ApplySeal": _seal("apply"),
            "ReviewSeal": _seal("approve", "reject"),
            "MakeSeal": _seal("make"),
            "FileSeal": _seal("file"),
            "IssueSeal": _seal("issue"),
            "SuspendSeal": _seal("suspend"),
            "ResumeSeal": _seal("resume"),
            "RevokeSeal": _seal("revoke"),
            "DestroySeal": _seal("destroy"),
            "RemakeSeal": _seal("remake"),
            "GrantSealUse": Access(relations=_SEAL_MANAGER),
            "RevokeSealUse": Access(relations=(*_SEAL_MANAGER, "the grantee")),
            "ListSealGrants": _ANYONE,
            "GetSeal": _ANYONE,
            "ListSeals": _ANYONE,
            "GetSealHistory": _ANYONE,
            "GetSealImage": _ANYONE,
            "SealPdf": Access(relations=_SEAL_USER),
            "SignData": Access(relations=_SEAL_USER),
            "SealOfd": Access(relations=_SEAL_USER),
        },
    ),
    **_rpc(
        "LicenseService",
        {
            "DefineLicenseType": Access((ADMIN,)),
            "GetLicenseType": _ANYONE,
            "ListLicenseTypes": _ANYONE,
            "IssueLicense": Access((LICENCE_ISSUER,), note="for its own department only"),
            "IssueLicenses": Access((LICENCE_ISSUER,), note="each row for its own department"),
            "GetLicense": Access(
                authenticated=True, note="then: its issuer, holder or agent, or an access code"
            ),
            "ListLicenses": Access((LICENCE_ISSUER,), _LICENCE_HOLDER),
            "AnnotateLicense": Access((LICENCE_ISSUER,), note="the licence's issuer only"),
            "RevokeLicense": Access((LICENCE_ISSUER,), note="the licence's issuer only"),
            "SuspendLicense": Access((LICENCE_ISSUER,), note="the licence's issuer only"),
            "ResumeLicense": Access((LICENCE_ISSUER,), note="the licence's issuer only"),
            "GrantLicenseAccess": Access(relations=_LICENCE_HOLDER),
            "RevokeLicenseAccess": Access(relations=_LICENCE_HOLDER),
            "GetLicenseDocument": Access(
                authenticated=True, note="then: its issuer, holder or agent, or an access code"
            ),
            "GetStatusList": _ANYONE,
            "VerifyLicense": _ANYONE,
        },
    ),
    **_rpc(
        "VerifyService",
        {
            "VerifyCertificate": Access((VERIFIER,)),
            "VerifyPdf": Access((VERIFIER,)),
            "VerifyPdfStream": Access((VERIFIER,)),
            "VerifyOfd": Access((VERIFIER,)),
            "VerifyLicense": Access((VERIFIER,)),
            "VerifySealSignature": Access((VERIFIER,)),
            "VerifyIdToken": Access((VERIFIER,)),
        },
    ),
}


# --- rendering ----------------------------------------------------------------------------------


def _cell(items: tuple[str, ...]) -> str:
    return ", ".join(items) if items else "—"


def render_seal_table() -> str:
    """The seal transition table: state × action × roles × relations × separation of duties."""
    lines = [
        "| action | from | to | roles | relations | not by the actor who took |",
        "|---|---|---|---|---|---|",
    ]
    rows: list[tuple[str, Transition]] = [("apply", APPLY), *TRANSITIONS.items()]
    for action, t in rows:
        sources = ", ".join(sorted(s.value for s in t.sources)) or "(new seal)"
        roles = tuple(f"`{r}`" for r in t.roles if r != OWNER)
        relations = _SEAL_OWNER if OWNER in t.roles else ()
        earlier = tuple(f"`{a}`" for a in t.not_after)
        lines.append(
            f"| `{action}` | {sources} | {t.target.value} | {_cell(roles)} | "
            f"{_cell(relations)} | {_cell(earlier)} |"
        )
    return "\n".join(lines)


def render_rpc_table() -> str:
    """The RPC × role table: one row per RPC, one column per role, plus relations."""
    roles = [VERIFIER, REGISTRAR, "ca-operator", "seal-reviewer", "seal-maker", "seal-filing"]
    roles += [LICENCE_ISSUER, RECOVERY_ROLE, ADMIN]
    header = ["RPC", *[f"`{r}`" for r in roles], "also admitted", "then checked"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, access in RPC_ACCESS.items():
        service, name = method.lstrip("/").removeprefix("govtrust.v1.").split("/")
        if access.authenticated:
            marks = ["·"] * len(roles)
            also = "any authenticated caller"
        else:
            # admin holds every role but the explicit ones (key-recovery)
            implied = [r for r in access.roles if r not in EXPLICIT_ROLES]
            marks = [
                "✓" if role in access.roles or (role == ADMIN and implied) else "" for role in roles
            ]
            also = _cell(access.relations)
        lines.append(f"| {service}.{name} | " + " | ".join(marks) + f" | {also} | {access.note} |")
    return "\n".join(lines)


def render_role_tables() -> str:
    """Both tables, as the generated region of docs/security.md."""
    return (
        "### Seal transitions (`seal/transitions.py` `TRANSITIONS`)\n\n"
        + render_seal_table()
        + "\n\n### RPCs (`govtrust/api/access.py` `RPC_ACCESS`, checked by the interceptor)\n\n"
        "✓: the role admits the call; ·: every authenticated caller is admitted; `admin` "
        "holds every role but `key-recovery`, which is granted by name only (dual control). "
        '"Also admitted" are relations a person acting (a citizen, or for '
        "a legal person) may hold — the gate lets a person through and the domain checks the "
        'relation; "then checked" is what the domain checks next.\n\n' + render_rpc_table()
    )


BEGIN_MARK = "<!-- role-tables: generated by scripts/role_tables.py; do not edit by hand -->"
END_MARK = "<!-- /role-tables -->"


def with_role_tables(document: str) -> str:
    """``document`` (docs/security.md) with the region between the marks regenerated."""
    head, found, rest = document.partition(BEGIN_MARK)
    _, found_end, tail = rest.partition(END_MARK)
    if not found or not found_end:
        raise ValueError(f"the document lacks the marks {BEGIN_MARK!r} … {END_MARK!r}")
    return f"{head}{BEGIN_MARK}\n\n{render_role_tables()}\n\n{END_MARK}{tail}"
