"""``python -m govtrust.server.probe [host:port]``: ask a plaintext govtrust server how it is.

Prints the gRPC health status and the services listed by reflection; exits 0 when SERVING.
A stand-in for ``grpcurl`` on machines without it (the embedded default is plaintext loopback).
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def probe(address: str, timeout: float = 5.0) -> tuple[str, list[str]]:
    """The health status of ``""`` and the service names reflection reports."""
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = stub.ServerReflectionInfo(iter([request]), timeout=timeout)
        services = [
            service.name
            for response in responses
            for service in response.list_services_response.service
        ]
    return status, services


def main(argv: list[str] | None = None) -> int:
    """Print health and services of the server at argv[0] (default 127.0.0.1:50051)."""
    args = sys.argv[1:] if argv is None else argv
    address = args[0] if args else "127.0.0.1:50051"
    try:
        status, services = probe(address)
    except grpc.RpcError as exc:
        print(f"govtrust probe: {address}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"health: {status}")
    for name in sorted(services):
        print(f"service: {name}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
