"""Per-process wiring that is not a servicer or a router: the platform's component choices
(the CA's subject directory), resolvers and the periodic jobs.

Each serving process (every worker is a fresh interpreter) calls :func:`wire` once, after the
platform is open and before it accepts calls, and runs :func:`periodic_jobs` while it serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ca.directory import SubjectDirectory
from govtrust.audit import AuditCheckpoint, CheckpointSigner, TokenCheck, make_checkpoint
from govtrust.config import Settings
from govtrust.platform import Platform
from govtrust.rpc.offload import run_sync

log = logging.getLogger("govtrust.server")

CA_REFRESH_SECONDS = 120.0


def check_package_settings(settings: Settings) -> None:
    """Read each package's settings section once, so that a bad value stops the start with its
    one line (``ConfigError``) before anything is migrated or created."""
    from ca.authority import ca_config
    from verify.service import VerifyConfig

    ca_config(settings)
    VerifyConfig.from_settings(settings)


def wire(platform: Platform) -> None:
    """Define the platform's components (:func:`define_components`), then install the
    bearer-token resolver and the service-certificate resolver (mTLS callers get the roles of
    their registered service identity)."""
    from govtrust.api.oidc_grpc import install_token_resolver
    from govtrust.rpc.auth import register_certificate_resolver
    from idp.services import certificate_principal

    define_components(platform)
    install_token_resolver()
    register_certificate_resolver(certificate_principal)


def define_components(platform: Platform) -> None:
    """What this deployment chooses for the platform's components: the CA checks subjects
    against the identity registry. Every process that serves or runs a command calls it once,
    after opening the platform; without it the CA refuses to start."""
    from ca.authority import SUBJECT_DIRECTORY

    platform.components.define(SUBJECT_DIRECTORY, lambda: _registry_directory(platform))


def open_wired(settings: Settings, *, migrate: bool | None = None) -> Platform:
    """:func:`govtrust.platform.open_platform` with its components defined, as a server's are
    (benchmarks and tests that run the domain in process)."""
    from govtrust.platform import open_platform

    platform = open_platform(settings, migrate=migrate)
    define_components(platform)
    return platform


def _registry_directory(platform: Platform) -> SubjectDirectory:
    from idp.ca_directory import RegistryDirectory
    from idp.runtime import identity_registry_for

    return RegistryDirectory(identity_registry_for(platform))


def audit_checkpoint_signer(platform: Platform) -> CheckpointSigner:
    """Checkpoints signed by the key store's checkpoint key and time-stamped by our own TSA."""
    from ca.authority import authority_for
    from hsm.audit_key import checkpoint_key
    from hsm.keystore import SignatureScheme
    from seal.fastpdf import timestamp_request, timestamp_token

    ref = checkpoint_key(platform.keystore)

    def sign(body: bytes) -> bytes:
        return platform.keystore.sign(ref, body, SignatureScheme.ECDSA_SHA256)

    def timestamp(signature: bytes) -> tuple[bytes, datetime]:
        request, nonce = timestamp_request(signature)
        return timestamp_token(authority_for(platform).timestamp(request).der, nonce, signature)

    return CheckpointSigner(key_id=ref.key_id, sign=sign, timestamp=timestamp)


def audit_token_check(platform: Platform) -> TokenCheck:
    """Checks a checkpoint's time-stamp as the verification service checks any: signed by our
    TSA's certificate (EKU timeStamping, chained to our roots, valid at genTime, not revoked)."""

    def check(token: bytes, signature: bytes) -> str | None:
        from verify.report import Verdict
        from verify.seal_signatures import verify_timestamp
        from verify.service import context_for

        report = verify_timestamp(
            context_for(platform), token, signature, "en", now=datetime.now(UTC)
        )
        if report.verdict is Verdict.VALID:
            return None
        return "; ".join(r.message for r in report.reasons) or report.verdict.value

    return check


def checkpoint_audit(platform: Platform) -> AuditCheckpoint | None:
    """Checkpoint the audit chain's head now (None when the head is already checkpointed)."""
    return make_checkpoint(platform.db, audit_checkpoint_signer(platform))


async def _every(seconds: float, job: Callable[[], object], name: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_sync(job)
        except Exception:  # a failed round is logged; the next one tries again
            log.exception("periodic %s failed", name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            continue


async def periodic_jobs(platform: Platform, stop: asyncio.Event) -> None:
    """Until ``stop``: re-sign OCSP responses nearing nextUpdate and republish aged CRLs; and
    checkpoint the audit chain every ``audit_checkpoint_seconds`` (unless 0)."""
    from ca.authority import authority_for

    jobs = [
        _every(CA_REFRESH_SECONDS, lambda: authority_for(platform).refresh(), "CA refresh", stop)
    ]
    interval = platform.settings.audit_checkpoint_seconds
    if interval > 0:
        jobs.append(_every(interval, lambda: checkpoint_audit(platform), "audit checkpoint", stop))
    await asyncio.gather(*jobs)
