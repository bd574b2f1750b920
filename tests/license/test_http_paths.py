"""HTTP paths are spelled ``license``; every ``licence`` spelling is a permanent alias with the
same handler (licences issued before carry ``/licence/status/…`` status URIs)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.license.test_http import Licences, client, lic  # noqa: F401 - fixtures
from tests.seal.conftest import USCC, world  # noqa: F401 - fixture
from tests.unchanged import unchanged


@pytest.mark.parametrize(
    "template",
    ["/license/status/{uscc}", "/license/trust-list", "/verify/license/{ident}", "/verify/license"],
)
def test_license_paths_and_their_licence_aliases(
    lic: Licences,  # noqa: F811
    client: TestClient,  # noqa: F811
    template: str,
) -> None:
    path = template.format(uscc=USCC, ident=lic.ids["valid"])
    canonical = client.get(path)
    alias = client.get(path.replace("license", "licence"))
    assert canonical.status_code == 200, path
    assert alias.status_code == 200, path
    assert alias.headers["content-type"] == canonical.headers["content-type"]
    if "status" in path or "trust-list" in path:
        assert alias.headers["etag"] == canonical.headers["etag"]


def test_post_alias_reaches_the_same_handler(
    lic: Licences,  # noqa: F811
    client: TestClient,  # noqa: F811
) -> None:
    with unchanged(lic.world.db, lic.world.keystore):  # an empty form is refused (400)
        canonical = client.post("/verify/license", data={})
        alias = client.post("/verify/licence", data={})
    assert canonical.status_code != 404 and canonical.status_code != 405
    assert alias.status_code == canonical.status_code
    assert alias.headers["content-type"] == canonical.headers["content-type"]
