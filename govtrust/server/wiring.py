"""Per-process wiring that is not a servicer or a router: the platform's component choices
(the CA's subject directory), resolvers and the periodic jobs.

Each serving process (every worker is a fresh interpreter) calls :func:`wire` once, after the
platform is open and before it accepts calls, and runs :func:`periodic_jobs` while it serves.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ca.directory import SubjectDirectory
from govtrust.audit import AuditCheckpoint, CheckpointSigner, make_checkpoint
from govtrust.config import Settings
from govtrust.lease import ClusterJob, ClusterJobs, Fence, Membership
from govtrust.platform import Platform
from govtrust.rpc.offload import run_sync

log = logging.getLogger("govtrust.server")

CA_REFRESH_SECONDS = 120.0  # the default of settings.ca_refresh_seconds
STATUS_LIST_SECONDS = 300.0  # lists live an hour; each is re-signed once half of it passed
OIDC_KEY_SWEEP_SECONDS = 3600.0
SEAL_RECONCILE_SECONDS = 600.0
CA_REFRESH_JOB = "ca.refresh"
STATUS_LIST_JOB = "licence.status-lists"
OIDC_KEY_SWEEP_JOB = "oidc.key-sweep"
SEAL_RECONCILE_JOB = "seal.reconcile"
AUDIT_CHECKPOINT_JOB = "audit.checkpoint"


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


def checkpoint_audit(platform: Platform, fence: Fence | None = None) -> AuditCheckpoint | None:
    """Checkpoint the audit chain's head now (None when the head is already checkpointed);
    ``fence``: the cluster job's lease (checked before the signer's key is looked up or made)."""
    if fence is not None:
        with platform.db.transaction() as session:
            fence.check(session)
    return make_checkpoint(platform.db, audit_checkpoint_signer(platform), fence)


def _refresh_ca(platform: Platform, fence: Fence) -> object:
    from ca.authority import authority_for

    return authority_for(platform).refresh(fence)


def _refresh_status_lists(platform: Platform, fence: Fence) -> object:
    from license.runtime import runtime_for

    return runtime_for(platform).service.refresh_status_lists(fence)


def _prune_oidc_keys(platform: Platform, fence: Fence) -> object:
    from idp.oidc.factory import provider_for

    return provider_for(platform).keys.prune(fence=fence)


def _reconcile_seals(platform: Platform, fence: Fence) -> object:
    from seal.runtime import runtime_for

    return runtime_for(platform).service.reconcile_revocations(fence)


def cluster_job_list(platform: Platform) -> list[ClusterJob]:
    """The periodic work that runs once per cluster (docs/scaling.md "Cluster jobs and
    caches"): OCSP pre-production and full and delta CRL republication, licence status-list
    re-signing, the expiry sweep of retired OIDC keys, the revocation at the CA of recently
    revoked seals' certificates left good (``seal.reconcile``), and audit checkpoints every
    ``audit_checkpoint_seconds`` (unless 0)."""
    jobs = [
        ClusterJob(
            CA_REFRESH_JOB,
            float(platform.settings.ca_refresh_seconds),
            lambda f: _refresh_ca(platform, f),
        ),
        ClusterJob(
            STATUS_LIST_JOB, STATUS_LIST_SECONDS, lambda f: _refresh_status_lists(platform, f)
        ),
        ClusterJob(
            OIDC_KEY_SWEEP_JOB, OIDC_KEY_SWEEP_SECONDS, lambda f: _prune_oidc_keys(platform, f)
        ),
        ClusterJob(
            SEAL_RECONCILE_JOB, SEAL_RECONCILE_SECONDS, lambda f: _reconcile_seals(platform, f)
        ),
    ]
    interval = platform.settings.audit_checkpoint_seconds
    if interval > 0:
        jobs.append(
            ClusterJob(AUDIT_CHECKPOINT_JOB, interval, lambda f: checkpoint_audit(platform, f))
        )
    return jobs


def cluster_jobs(platform: Platform, *, holder: str | None = None) -> ClusterJobs:
    """This replica's side of the cluster jobs, leased for ``cluster_lease_seconds``."""
    return ClusterJobs(
        platform.db,
        cluster_job_list(platform),
        ttl_seconds=platform.settings.cluster_lease_seconds,
        holder=holder,
    )


async def periodic_jobs(platform: Platform, stop: asyncio.Event) -> None:
    """Until ``stop``: every replica ticks the cluster jobs; each runs in the one replica that
    holds its lease, once per period (:mod:`govtrust.lease`). Leases held are released at the
    end, so another replica takes over at its next tick. Alongside, this process renews its
    cluster membership (:class:`govtrust.lease.Membership`): a process that dies stops renewing,
    and its idempotency claims are taken over within the membership's bound."""
    membership = Membership(platform.db, ttl_seconds=platform.settings.cluster_member_seconds)
    await asyncio.gather(
        membership.serve(stop, run_sync), cluster_jobs(platform).serve(stop, run_sync)
    )
