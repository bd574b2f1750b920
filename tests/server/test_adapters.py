"""One place wires the adapters: govtrust.server.adapters names a servicer for every gRPC service
and the routers; build_servicers and create_app serve exactly the tables they are handed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from govtrust.config import Settings
from govtrust.http.app import create_app
from govtrust.observability.metrics import get_metrics
from govtrust.server.adapters import ROUTERS, SERVICERS
from govtrust.server.run import serve
from govtrust.server.services import SERVICE_NAMES, SERVICES, build_servicers
from tests.unchanged import unchanged

NO_PLATFORM = cast(Any, object())


def test_every_service_has_its_servicer_and_the_routers_are_named() -> None:
    assert list(SERVICERS) == list(SERVICE_NAMES)
    assert list(ROUTERS) == ["oidc", "ca", "license", "console"]
    for factory in (*SERVICERS.values(), *ROUTERS.values()):
        assert factory.__module__.startswith("govtrust.api.")


def test_build_servicers_binds_the_table_and_the_base_for_the_rest() -> None:
    verify_servicer = object()
    bindings = build_servicers(
        NO_PLATFORM, {"govtrust.v1.VerifyService": lambda _platform: verify_servicer}
    )
    assert [b.name for b in bindings] == list(SERVICE_NAMES)
    for binding, spec in zip(bindings, SERVICES, strict=True):
        assert binding.add_to_server is spec.add_to_server
        if spec.name == "govtrust.v1.VerifyService":
            assert binding.servicer is verify_servicer
        else:
            assert type(binding.servicer) is spec.base_servicer


def test_build_servicers_refuses_a_name_that_is_no_service() -> None:
    with pytest.raises(ValueError, match=r"not govtrust\.v1 services: govtrust\.v1\.Nope"):
        build_servicers(NO_PLATFORM, {"govtrust.v1.Nope": lambda _platform: object()})


def test_create_app_serves_only_the_routers_it_is_handed() -> None:
    def router(_platform: Any) -> APIRouter:
        routes = APIRouter()

        @routes.get("/test/handed")
        async def handed() -> dict[str, bool]:
            return {"handed": True}

        return routes

    with TestClient(create_app(NO_PLATFORM, get_metrics(), routers={"t": router})) as client:
        assert client.get("/test/handed").json() == {"handed": True}
        assert client.get("/healthz").status_code == 200
        assert client.get("/.well-known/openid-configuration").status_code == 404


def test_other_adapters_need_a_single_process(tmp_path: Path) -> None:
    """Workers are fresh interpreters serving the adapters table: a replacement cannot reach
    them, so asking for one with workers is refused before anything starts."""
    settings = Settings(data_dir=tmp_path / "data", workers=2)
    with (
        unchanged(None, None, tmp_path, tmp_path / "data"),
        pytest.raises(ValueError, match="workers == 1"),
    ):
        serve(settings, routers={})
    assert not (tmp_path / "data").exists()
