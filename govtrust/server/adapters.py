"""The one table of adapters a serving process serves: which servicer answers each gRPC service
and which routers the HTTP application includes.

Adding an adapter is one import and one line here. Nothing is looked up by module name: the
tables hold the factories themselves, :func:`govtrust.server.services.build_servicers` and
:func:`govtrust.http.app.create_app` take them as arguments, and
:class:`govtrust.server.process.ServingProcess` passes these (or, in tests, others) in. Every
worker of ``--workers N`` imports this module, so it is the production wiring of all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from govtrust.api import (
    ca_http,
    certificate,
    console,
    identity,
    license,
    license_http,
    oidc_http,
    seal,
    verify,
)
from govtrust.http.app import RouterFactory
from govtrust.server.services import ServicerFactory

SERVICERS: Mapping[str, ServicerFactory] = MappingProxyType(
    {
        "govtrust.v1.IdentityService": identity.servicer,
        "govtrust.v1.CertificateService": certificate.servicer,
        "govtrust.v1.SealService": seal.servicer,
        "govtrust.v1.LicenseService": license.servicer,
        "govtrust.v1.VerifyService": verify.servicer,
    }
)
"""gRPC service name → servicer factory (takes the ``Platform``)."""

ROUTERS: Mapping[str, RouterFactory] = MappingProxyType(
    {
        "oidc": oidc_http.router,
        "ca": ca_http.router,
        "license": license_http.router,
        "console": console.router,
    }
)
"""Router name → factory of an ``APIRouter`` (takes the ``Platform``), included in this order."""
