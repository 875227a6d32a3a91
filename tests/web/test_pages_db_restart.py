"""The storefront read path across a real PostgreSQL outage: a private server (tests/pg_private)
stopped and started again under a running app."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import reset_settings_cache
from app.db import dispose_engines
from tests.pg_private import PrivatePostgres, private_pg  # noqa: F401 (a fixture)
from tests.web.support import RecordingDispatcher, RecordingSender, problem
from tests.web.test_pages_api import CH, full_page

URL = f"/channels/{CH}/products/SKU-1"


@pytest.fixture
def client(
    private_pg: PrivatePostgres,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestClient]:
    from app.web.app import create_app

    monkeypatch.setenv("PIMSYNC_DATABASE_URL", private_pg.create_database("pimsync"))
    monkeypatch.setenv("PIMSYNC_READ_TOKEN", "r")
    reset_settings_cache()
    dispose_engines()
    full_page()
    app = create_app(dispatcher=RecordingDispatcher(), events_sender=RecordingSender())
    try:
        with TestClient(app) as client:
            yield client
    finally:
        dispose_engines()
        reset_settings_cache()


def test_reads_answer_503_while_the_server_is_down_and_200_at_once_when_it_is_back(
    client: TestClient,
    private_pg: PrivatePostgres,  # noqa: F811
) -> None:
    first = client.get(URL)
    assert first.status_code == 200 and first.json()["sku"] == "SKU-1"
    private_pg.stop("fast")
    started = time.monotonic()
    down = client.get(URL)
    assert problem(down, 503) == {
        "detail": "database unavailable, try again",
        "reason": "database_unavailable",
    }
    assert down.headers["retry-after"] == "5"
    assert time.monotonic() - started < 10
    # the other reads too: "try again", not an internal error
    listing = client.get(f"/channels/{CH}/products", headers={"Authorization": "Bearer r"})
    assert (listing.status_code, listing.json()) == (503, down.json())
    assert client.get("/readyz").status_code == 503
    private_pg.start()
    # a restart closed every pooled connection: the first read after it must not fail
    for _ in range(3):
        again = client.get(URL)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
    listing = client.get(f"/channels/{CH}/products", headers={"Authorization": "Bearer r"})
    assert listing.status_code == 200 and [i["sku"] for i in listing.json()["items"]] == ["SKU-1"]
