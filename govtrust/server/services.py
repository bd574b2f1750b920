"""Which servicer answers each of the five govtrust.v1 services.

Until a service's issue lands, the generated base servicer answers every RPC with UNIMPLEMENTED.
A package plugs its implementation in by naming a factory in :data:`IMPLEMENTATIONS` (the
server is the one place that knows every package, so the wiring is explicit and greppable), or
at run time with :func:`register_servicer` (tests, plug-ins)::

    register_servicer("govtrust.v1.CertificateService", CertificateServicer)  # takes the Platform

Implementations subclass the generated ``…Servicer`` base, write ``async def`` methods, and call
domain code with ``await run_sync(...)`` (request-streaming methods must be ``async``). Run-time
registrations live in the registering process only: ``--workers N`` starts fresh interpreters,
which see :data:`IMPLEMENTATIONS` but not ``register_servicer`` calls — production wiring goes in
the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from govtrust.platform import Platform

ServicerFactory = Callable[["Platform"], Any]
"""Build a servicer (an instance of the generated base class or a subclass) for a platform."""


@dataclass(frozen=True)
class ServiceSpec:
    """Where the generated code of one service lives."""

    name: str  # full name, e.g. "govtrust.v1.IdentityService"
    module: str  # the generated *_pb2_grpc module
    servicer_class: str
    add_function: str


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer ready to be added to a server."""

    name: str
    servicer: Any
    add_to_server: Callable[[Any, Any], None]


def _spec(short: str, module: str) -> ServiceSpec:
    return ServiceSpec(
        name=f"govtrust.v1.{short}",
        module=f"govtrust.v1.{module}_pb2_grpc",
        servicer_class=f"{short}Servicer",
        add_function=f"add_{short}Servicer_to_server",
    )


SERVICES: tuple[ServiceSpec, ...] = (
    _spec("IdentityService", "identity"),
    _spec("CertificateService", "certificate"),
    _spec("SealService", "seal"),
    _spec("LicenseService", "license"),
    _spec("VerifyService", "verify"),
)
SERVICE_NAMES: tuple[str, ...] = tuple(spec.name for spec in SERVICES)

# Service name → "package.module:factory" (a callable taking the Platform). Later issues add
# their line here, e.g. "govtrust.v1.CertificateService": "ca.servicer:CertificateServicer".
IMPLEMENTATIONS: dict[str, str] = {
    "govtrust.v1.IdentityService": "govtrust.api.identity:servicer",
    "govtrust.v1.CertificateService": "govtrust.api.certificate:servicer",
    "govtrust.v1.SealService": "govtrust.api.seal:servicer",
    "govtrust.v1.LicenseService": "govtrust.api.license:servicer",
    "govtrust.v1.VerifyService": "govtrust.api.verify:servicer",
}

_registered: dict[str, ServicerFactory] = {}


def register_servicer(service_name: str, factory: ServicerFactory) -> None:
    """Answer ``service_name`` with the servicer ``factory(platform)`` builds."""
    if service_name not in SERVICE_NAMES:
        raise ValueError(f"{service_name!r} is not a govtrust.v1 service")
    _registered[service_name] = factory


def unregister_servicer(service_name: str) -> None:
    """Fall back to the configured or the UNIMPLEMENTED servicer (tests)."""
    _registered.pop(service_name, None)


def _load(reference: str) -> ServicerFactory:
    module_name, _, attribute = reference.partition(":")
    factory: ServicerFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


def factory_for(spec: ServiceSpec) -> ServicerFactory:
    """The registered factory, else the configured implementation, else the generated base."""
    if spec.name in _registered:
        return _registered[spec.name]
    if spec.name in IMPLEMENTATIONS:
        return _load(IMPLEMENTATIONS[spec.name])
    base = getattr(importlib.import_module(spec.module), spec.servicer_class)
    return lambda _platform: base()


def build_servicers(platform: Platform) -> list[ServiceBinding]:
    """One binding per govtrust.v1 service, in contract order."""
    bindings = []
    for spec in SERVICES:
        module = importlib.import_module(spec.module)
        bindings.append(
            ServiceBinding(
                name=spec.name,
                servicer=factory_for(spec)(platform),
                add_to_server=getattr(module, spec.add_function),
            )
        )
    return bindings
