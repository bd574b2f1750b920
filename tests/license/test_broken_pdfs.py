"""PDFs whose embedded-file tree pyHanko cannot read: ``POST /verify/license`` answered 500 for
them (a pyHanko exception escaped ``embedded_from_root``); they are a 400 naming the problem,
and the gRPC check reports the same files as malformed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from govtrust.rpc.offload import shutdown_document_pool, shutdown_executor
from license.checking import Verdict
from license.document_check import check_pdf
from license.errors import LicenceVerificationFailed, Reason
from license.pdf_reader import read_licence_pdf
from tests.fuzz.pdfs import BROKEN
from tests.license.test_http import Licences, app_for, lic  # noqa: F401 - fixture
from tests.seal.conftest import world  # noqa: F401 - fixture
from tests.unchanged import unchanged


@pytest.fixture
def client(lic: Licences) -> Iterator[TestClient]:  # noqa: F811
    # fresh pools for the route's work: one inherited across a fork (mutmut runs each mutant's
    # tests in a child of the process that ran the clean tests) has no threads, and every
    # request would wait for it forever
    shutdown_executor(wait=False)
    shutdown_document_pool(wait=False)
    with TestClient(app_for(lic)) as c:
        yield c


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_unreadable_embedded_files_are_malformed(name: str) -> None:
    with pytest.raises(LicenceVerificationFailed) as info:
        read_licence_pdf(BROKEN[name])
    assert info.value.reason is Reason.MALFORMED
    assert "cannot be read" in info.value.message or "not a licence" in info.value.message


def test_upload_of_unreadable_pdfs_is_400(lic: Licences, client: TestClient) -> None:  # noqa: F811
    with unchanged(lic.world.db, lic.world.keystore):
        for name, pdf in sorted(BROKEN.items()):
            response = client.post(
                "/verify/license",
                content=pdf,
                headers={"Content-Type": "application/pdf", "Accept": "application/json"},
            )
            assert response.status_code == 400, (name, response.text[:300])
            assert response.json()["error"]["code"] == "INVALID_ARGUMENT"
            check = check_pdf(pdf, lic.roots, {})  # the gRPC path: a report, never an exception
            assert check.verdict is Verdict.INVALID and check.reasons[0] == "MALFORMED", name
