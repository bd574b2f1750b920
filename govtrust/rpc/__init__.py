"""The gRPC adapter side: error mapping, authentication, per-call context, ``run_sync``.

Servicers use::

    from govtrust.rpc import current_principal, run_sync

    async def IssueLicence(self, request, context):
        principal = current_principal()
        licence = await run_sync(issue_licence, self.platform, principal, ...)

and let domain errors propagate: the interceptor maps them (``govtrust.rpc.status``).
"""

from govtrust.rpc.context import current_principal, current_principal_or_none, current_request_id
from govtrust.rpc.offload import run_sync

__all__ = ["current_principal", "current_principal_or_none", "current_request_id", "run_sync"]
