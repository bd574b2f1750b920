"""The five govtrust.v1 gRPC services and how a table of servicers is bound to them.

Which servicer answers each service is not decided here: :mod:`govtrust.server.adapters` names
them (explicit imports, one table), and :func:`build_servicers` takes that table as an argument.
A service missing from the table is answered by the generated base servicer (UNIMPLEMENTED for
every RPC). Implementations subclass the generated ``…Servicer`` base, write ``async def``
methods, and call domain code with ``await run_sync(...)`` (request-streaming methods must be
``async``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from govtrust.v1 import (
    certificate_pb2_grpc,
    identity_pb2_grpc,
    license_pb2_grpc,
    seal_pb2_grpc,
    verify_pb2_grpc,
)

if TYPE_CHECKING:
    from govtrust.platform import Platform

ServicerFactory = Callable[["Platform"], Any]
"""Build a servicer (an instance of the generated base class or a subclass) for a platform."""


@dataclass(frozen=True)
class ServiceSpec:
    """The generated code of one service."""

    name: str  # full name, e.g. "govtrust.v1.IdentityService"
    base_servicer: type[Any]  # the generated servicer: UNIMPLEMENTED for every RPC
    add_to_server: Callable[[Any, Any], None]


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer ready to be added to a server."""

    name: str
    servicer: Any
    add_to_server: Callable[[Any, Any], None]


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "govtrust.v1.IdentityService",
        identity_pb2_grpc.IdentityServiceServicer,
        identity_pb2_grpc.add_IdentityServiceServicer_to_server,
    ),
    ServiceSpec(
        "govtrust.v1.CertificateService",
        certificate_pb2_grpc.CertificateServiceServicer,
        certificate_pb2_grpc.add_CertificateServiceServicer_to_server,
    ),
    ServiceSpec(
        "govtrust.v1.SealService",
        seal_pb2_grpc.SealServiceServicer,
        seal_pb2_grpc.add_SealServiceServicer_to_server,
    ),
    ServiceSpec(
        "govtrust.v1.LicenseService",
        license_pb2_grpc.LicenseServiceServicer,
        license_pb2_grpc.add_LicenseServiceServicer_to_server,
    ),
    ServiceSpec(
        "govtrust.v1.VerifyService",
        verify_pb2_grpc.VerifyServiceServicer,
        verify_pb2_grpc.add_VerifyServiceServicer_to_server,
    ),
)
SERVICE_NAMES: tuple[str, ...] = tuple(spec.name for spec in SERVICES)


def build_servicers(
    platform: Platform, servicers: Mapping[str, ServicerFactory]
) -> list[ServiceBinding]:
    """One binding per govtrust.v1 service, in contract order: ``servicers[name](platform)``,
    or the generated base servicer for a service the table does not name. A name in
    ``servicers`` that is not a govtrust.v1 service is a :class:`ValueError`."""
    unknown = sorted(set(servicers) - set(SERVICE_NAMES))
    if unknown:
        raise ValueError(f"not govtrust.v1 services: {', '.join(unknown)}")
    bindings = []
    for spec in SERVICES:
        factory = servicers.get(spec.name)
        servicer = factory(platform) if factory is not None else spec.base_servicer()
        bindings.append(
            ServiceBinding(name=spec.name, servicer=servicer, add_to_server=spec.add_to_server)
        )
    return bindings
