"""The reference PIM's Akeneo API and admin endpoints, over real HTTP."""

from __future__ import annotations

import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from app.dev.reference_server import UUID_NAMESPACE, ReferenceCatalog, create_app, serve_in_thread
from app.pim.catalog import CatalogDefinitions
from app.pim.source import Page
from tests.pim.reference_data import (
    CLIENT,
    RunningPim,
    catalog,
    definitions,
    product,
    running_pim,
    value,
)

PRODUCTS = "/api/rest/v1/products-uuid"
TOKEN = "/api/oauth/v1/token"
LOGIN = {"grant_type": "password", "username": "pimsync", "password": "pimsync"}
BASIC = (CLIENT["client_id"], CLIENT["secret"])


def login(client: httpx.Client) -> dict[str, Any]:
    response = client.post(TOKEN, auth=BASIC, json=LOGIN)
    assert response.status_code == 200, response.text
    return response.json()


@contextmanager
def logged_in(pim_catalog: ReferenceCatalog, **options: Any) -> Iterator[httpx.Client]:
    """A reference PIM on ``pim_catalog`` and a client holding a valid token for it."""
    with running_pim(pim_catalog, **options) as pim, httpx.Client(base_url=pim.url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)['access_token']}"
        yield client


@pytest.fixture()
def pim() -> Iterator[RunningPim]:
    with running_pim(catalog(25)) as running:
        yield running


@pytest.fixture()
def api(pim: RunningPim) -> Iterator[httpx.Client]:
    """A client already holding a valid token."""
    with httpx.Client(base_url=pim.url, timeout=10) as client:
        client.headers["Authorization"] = f"Bearer {login(client)['access_token']}"
        yield client


def items(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["_embedded"]["items"]


def skus(found: list[dict[str, Any]]) -> list[str]:
    return [item["values"]["sku"][0]["data"] for item in found]


def search(**filters: list[dict[str, Any]]) -> dict[str, str]:
    return {"search": orjson.dumps(filters).decode()}


# --- OAuth ----------------------------------------------------------------------------------


def test_password_grant_with_json_or_form_body(pim: RunningPim) -> None:
    with httpx.Client(base_url=pim.url) as client:
        body = login(client)
        assert body["expires_in"] == 3600 and body["token_type"] == "bearer"
        assert body["access_token"] and body["refresh_token"]
        form = client.post(TOKEN, auth=BASIC, data=LOGIN)
        assert form.status_code == 200 and form.json()["access_token"] != body["access_token"]


@pytest.mark.parametrize(
    ("auth", "body", "message"),
    [
        (("pimsync", "bad"), LOGIN, 'Parameter "client_id" is missing or does not match'),
        (None, LOGIN, 'Parameter "client_id" is missing or does not match'),
        (BASIC, {**LOGIN, "password": "bad"}, "No user found for the given username and password"),
        (BASIC, {"grant_type": "client_credentials"}, "grant type is unsupported"),
        (BASIC, {"grant_type": "refresh_token", "refresh_token": "x"}, "Refresh token is invalid"),
    ],
)
def test_bad_token_requests_are_rejected(
    pim: RunningPim, auth: Any, body: dict[str, str], message: str
) -> None:
    with httpx.Client(base_url=pim.url) as client:
        response = client.post(TOKEN, auth=auth, json=body)
    assert response.status_code == 422
    assert response.json()["code"] == 422 and message in response.json()["message"]


def test_refresh_grant_rotates_the_refresh_token(pim: RunningPim) -> None:
    with httpx.Client(base_url=pim.url) as client:
        first = login(client)
        grant = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        renewed = client.post(TOKEN, auth=BASIC, json=grant)
        assert renewed.status_code == 200
        assert renewed.json()["access_token"] != first["access_token"]
        assert client.post(TOKEN, auth=BASIC, json=grant).status_code == 422  # used up


def test_api_needs_a_valid_unexpired_bearer_token() -> None:
    with running_pim(catalog(2), token_ttl=0.3) as pim, httpx.Client(base_url=pim.url) as client:
        missing = client.get(PRODUCTS)
        assert (missing.status_code, missing.json()["message"]) == (
            401,
            "Authentication is required",
        )
        bad = client.get(PRODUCTS, headers={"Authorization": "Bearer nope"})
        assert bad.json()["message"] == "The access token provided is invalid."
        token = {"Authorization": f"Bearer {login(client)['access_token']}"}
        assert client.get("/api/rest/v1/families", headers=token).status_code == 200
        time.sleep(0.35)
        expired = client.get(PRODUCTS, headers=token)
        assert (expired.status_code, expired.json()["message"]) == (
            401,
            "The access token provided has expired.",
        )


# --- product lists --------------------------------------------------------------------------


def test_page_pagination_links_and_counts(pim: RunningPim, api: httpx.Client) -> None:
    first = api.get(PRODUCTS, params={"with_count": "true"})
    body = first.json()
    assert len(items(first)) == 10  # Akeneo's default limit
    assert body["current_page"] == 1 and body["items_count"] == 25
    assert body["_links"]["next"]["href"].startswith(f"{pim.url}{PRODUCTS}?")
    assert "page=2" in body["_links"]["next"]["href"] and "previous" not in body["_links"]

    last = api.get(body["_links"]["next"]["href"].replace("page=2", "page=3"))
    assert len(items(last)) == 5
    assert (
        "next" not in last.json()["_links"]
        and "page=2" in last.json()["_links"]["previous"]["href"]
    )

    seen = [s for page in (1, 2, 3) for s in skus(items(api.get(PRODUCTS, params={"page": page})))]
    assert sorted(seen) == [f"SKU-{i:04d}" for i in range(25)]


def test_page_pagination_refuses_deep_pages(api: httpx.Client) -> None:
    response = api.get(PRODUCTS, params={"page": 101, "limit": 100})
    assert response.status_code == 422
    assert "Please use the search after pagination type" in response.json()["message"]
    assert api.get(PRODUCTS, params={"page": 100, "limit": 100}).status_code == 200


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 101}, "You cannot request more than 100 items."),
        ({"limit": 0}, '"0" is not a valid limit number.'),
        ({"limit": "ten"}, '"ten" is not a valid limit number.'),
        ({"page": 0}, '"0" is not a valid page number.'),
        ({"pagination_type": "cursor"}, "Pagination type does not exist."),
    ],
)
def test_bad_pagination_parameters(api: httpx.Client, params: dict[str, Any], message: str) -> None:
    response = api.get(PRODUCTS, params=params)
    assert response.status_code == 422
    assert response.json() == {"code": 422, "message": message}


def test_search_after_walks_uuids_in_order(pim: RunningPim, api: httpx.Client) -> None:
    url: str | None = f"{PRODUCTS}?pagination_type=search_after&limit=7"
    pages = []
    while url:
        response = api.get(url)
        pages.append(items(response))
        url = response.json()["_links"].get("next", {}).get("href")
    assert [len(p) for p in pages] == [7, 7, 7, 4]  # no empty trailing page
    uuids = [item["uuid"] for page in pages for item in page]
    assert uuids == sorted(uuids) and len(set(uuids)) == 25
    for item in pages[0]:
        assert item["_links"]["self"]["href"] == f"{pim.url}{PRODUCTS}/{item['uuid']}"
        # products-uuid items carry the SKU in values only, like Akeneo 7
        assert "identifier" not in item and item["values"]["sku"][0]["data"].startswith("SKU-")


def test_products_without_uuid_or_sku_value_get_them_deterministically() -> None:
    bare = {"identifier": "BARE-1", "values": {"name": [value("Bare", "en_US")]}}
    nameless = {"values": {"name": [value("No identifier", "en_US")]}}
    one = ReferenceCatalog.from_products([bare, nameless], CatalogDefinitions())
    two = ReferenceCatalog.from_products([bare], CatalogDefinitions())
    assert len(one) == 1 and one.skipped == 1
    expected = str(uuid.uuid5(UUID_NAMESPACE, "BARE-1"))
    assert one.product_blob(expected) == two.product_blob(expected) is not None
    with running_pim(one) as pim, httpx.Client(base_url=pim.url) as client:
        token = {"Authorization": f"Bearer {login(client)['access_token']}"}
        item = client.get(f"{PRODUCTS}/{expected.upper()}", headers=token).json()
        assert item["uuid"] == expected
        assert item["values"]["sku"] == [value("BARE-1")]
        assert "identifier" not in item  # products-uuid items carry it in values only
        assert item["updated"]  # stamped at load time: deltas need one


def test_updated_filters_in_the_server_time_zone() -> None:
    # Berlin is UTC+2 in July: 10:00:00Z is "12:00:00" for the PIM
    stamps = {"A": "10:00:00", "B": "10:00:01", "C": "10:00:02", "D": "10:30:00"}
    products = [product(k, updated=f"2024-07-01T{t}Z") for k, t in stamps.items()]
    products.append(product("RECENT", updated=(datetime.now(UTC) - timedelta(hours=1)).isoformat()))
    products.append(product("OFF", updated="2024-07-01T10:00:01Z", enabled=False))
    cases: list[tuple[dict[str, list[dict[str, Any]]], list[str]]] = [
        ({"updated": [{"operator": ">", "value": "2024-07-01 12:00:01"}]}, ["C", "D", "RECENT"]),
        ({"updated": [{"operator": "<", "value": "2024-07-01 12:00:01"}]}, ["A"]),
        ({"updated": [{"operator": "=", "value": "2024-07-01 12:00:01"}]}, ["B", "OFF"]),
        (
            {"updated": [{"operator": "!=", "value": "2024-07-01 12:00:01"}]},
            ["A", "C", "D", "RECENT"],
        ),
        (
            {
                "updated": [
                    {"operator": "BETWEEN", "value": ["2024-07-01 12:00:01", "2024-07-01 12:00:02"]}
                ]
            },
            ["B", "C", "OFF"],
        ),
        (
            {
                "updated": [
                    {
                        "operator": "NOT BETWEEN",
                        "value": ["2024-07-01 12:00:01", "2024-07-01 12:29:59"],
                    }
                ]
            },
            ["A", "D", "RECENT"],
        ),
        ({"updated": [{"operator": "SINCE LAST N DAYS", "value": 1}]}, ["RECENT"]),
        (
            {
                "updated": [{"operator": ">", "value": "2024-07-01 12:00:00"}],
                "enabled": [{"operator": "=", "value": True}],
            },
            ["B", "C", "D", "RECENT"],
        ),
        ({"enabled": [{"operator": "!=", "value": True}]}, ["OFF"]),
    ]
    with logged_in(catalog(products=products), timezone="Europe/Berlin") as client:
        for filters, expected in cases:
            for kind in ("page", "search_after"):
                params = {**search(**filters), "limit": 2, "pagination_type": kind}
                found: list[str] = []
                url: str | None = PRODUCTS
                while url:
                    response = client.get(url, params=params if url == PRODUCTS else None)
                    found += skus(items(response))
                    url = response.json()["_links"].get("next", {}).get("href")
                assert sorted(found) == expected, (filters, kind)


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        ("{not json", 400, "Search query parameter should be valid JSON."),
        ('["updated"]', 422, 'Structure of filter "search" should respect this structure'),
        ('{"family": [{"operator": "IN", "value": ["x"]}]}', 422, 'Filter on property "family"'),
        ('{"updated": [{"operator": ">", "value": "2024-07-01"}]}', 422, '"yyyy-mm-dd H:i:s"'),
        ('{"updated": [{"operator": "~", "value": "2024-07-01 00:00:00"}]}', 422, 'operator "~"'),
        ('{"enabled": [{"operator": "=", "value": "yes"}]}', 422, 'property "enabled"'),
    ],
)
def test_bad_search_filters(api: httpx.Client, raw: str, status: int, message: str) -> None:
    response = api.get(PRODUCTS, params={"search": raw})
    assert response.status_code == status
    assert message in response.json()["message"]


# --- single resources and definitions -------------------------------------------------------


def test_single_products_and_models(pim: RunningPim, api: httpx.Client) -> None:
    one = api.get("/api/rest/v1/products/SKU-0003")
    assert one.status_code == 200 and one.json()["identifier"] == "SKU-0003"
    same = api.get(f"{PRODUCTS}/{one.json()['uuid']}")
    assert same.json()["values"] == one.json()["values"]

    unknown = api.get("/api/rest/v1/products/NOPE")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == 404 and "NOPE" in unknown.json()["message"]
    assert api.get(f"{PRODUCTS}/{uuid.uuid4()}").status_code == 404

    model = api.get("/api/rest/v1/product-models/MODEL-BOOT")
    assert model.status_code == 200 and model.json()["code"] == "Model-Boot"
    assert api.get("/api/rest/v1/product-models/other").status_code == 404
    listed = items(
        api.get("/api/rest/v1/product-models", params={"pagination_type": "search_after"})
    )
    assert [m["code"] for m in listed] == ["Model-Boot"]


def test_identifier_with_a_slash() -> None:
    with (
        running_pim(catalog(products=[product("A/B")])) as pim,
        httpx.Client(base_url=pim.url) as client,
    ):
        token = {"Authorization": f"Bearer {login(client)['access_token']}"}
        response = client.get("/api/rest/v1/products/A%2FB", headers=token)
        assert response.status_code == 200 and response.json()["identifier"] == "A/B"
        assert response.json()["_links"]["self"]["href"].endswith("/products/A%2FB")


def test_definition_endpoints_are_paginated() -> None:
    with logged_in(catalog(1, extra_attributes=120, color_options=15)) as client:
        first = client.get("/api/rest/v1/attributes", params={"limit": 100})
        assert len(items(first)) == 100
        second = client.get(first.json()["_links"]["next"]["href"])
        assert len(items(second)) == 23 and "next" not in second.json()["_links"]
        assert items(second)[-1]["_links"]["self"]["href"].endswith("/attributes/attr_119")

        options = client.get("/api/rest/v1/attributes/color/options", params={"limit": 10})
        assert [o["code"] for o in items(options)][:2] == ["c000", "c001"]
        assert items(options)[0]["attribute"] == "color"
        assert "next" in options.json()["_links"]
        missing = client.get("/api/rest/v1/attributes/nope/options")
        assert missing.status_code == 404

        channel = items(client.get("/api/rest/v1/channels"))[0]
        assert channel["code"] == "ecommerce" and channel["currencies"] == ["EUR"]
        assert len(items(client.get("/api/rest/v1/families"))) == 1
        assert {c["code"] for c in items(client.get("/api/rest/v1/categories"))} == {
            "master",
            "shoes",
        }
        assert client.get("/api/rest/v1/families", params={"limit": 500}).status_code == 422


def test_a_replaced_catalog_serves_its_own_definitions_and_identifier() -> None:
    """A running server told to serve another catalog (``replace_with``, as the fault stack
    does to switch on the bad-data modes) lists that catalog's attributes: the renamed
    identifier attribute, not the one the server started with."""
    from app.dev.bad_data import BadData

    served = ReferenceCatalog.load("generated:8")
    with running_pim(served) as pim, httpx.Client(base_url=pim.url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)['access_token']}"

        def identifiers() -> set[str]:
            found = items(client.get("/api/rest/v1/attributes", params={"limit": 100}))
            return {a["code"] for a in found if a["type"] == "pim_catalog_identifier"}

        assert identifiers() == {"sku"}
        served.replace_with(ReferenceCatalog.load("generated:8", BadData("item_code")))
        assert identifiers() == {"item_code"}
        assert served.identifier_attribute == "item_code"
        listed = items(client.get(PRODUCTS))
        assert len(listed) == 8 and all("item_code" in p["values"] for p in listed)
        served.replace_with(ReferenceCatalog.load("generated:8"))
        assert identifiers() == {"sku"}


# --- admin: editing -------------------------------------------------------------------------


def test_put_patch_delete_products(api: httpx.Client) -> None:
    body = product("whatever", values={"name": [value("Fresh", "en_US")]})
    del body["updated"]
    before = datetime.now(UTC).replace(microsecond=0)
    created = api.put("/_admin/products/NEW-1", json=body)
    assert created.status_code == 200
    stored = created.json()
    assert stored["values"]["sku"] == [value("NEW-1")]  # the path names the product
    assert datetime.fromisoformat(stored["updated"]) >= before

    fetched = api.get("/api/rest/v1/products/NEW-1").json()
    assert fetched["uuid"] == stored["uuid"] and fetched["values"]["name"] == [
        value("Fresh", "en_US")
    ]

    # PUT again replaces but keeps the uuid; an explicit `updated` is kept
    again = api.put("/_admin/products/NEW-1", json={"updated": "2020-01-01T00:00:00+00:00"})
    assert again.json()["uuid"] == stored["uuid"] and "name" not in again.json()["values"]
    assert again.json()["updated"] == "2020-01-01T00:00:00+00:00"

    patched = api.patch(
        "/_admin/products/SKU-0001",
        json={"enabled": False, "values": {"name": [value("Neu", "fr_FR")]}},
    ).json()
    assert patched["enabled"] is False
    assert patched["values"]["name"] == [value("Name of SKU-0001", "en_US"), value("Neu", "fr_FR")]
    assert patched["values"]["color"] == [value("red")]

    assert api.delete("/_admin/products/SKU-0002").status_code == 204
    assert api.get("/api/rest/v1/products/SKU-0002").status_code == 404
    assert api.delete("/_admin/products/SKU-0002").status_code == 404
    assert api.patch("/_admin/products/SKU-0002", json={}).status_code == 404
    mismatch = api.put("/_admin/products/X-1", json={"identifier": "X-2"})
    assert mismatch.status_code == 422

    all_skus = [s for p in (1, 2, 3) for s in skus(items(api.get(PRODUCTS, params={"page": p})))]
    assert len(all_skus) == 25 and "SKU-0002" not in all_skus and "NEW-1" in all_skus


def test_put_in_server_time_zone_is_found_by_a_delta_search() -> None:
    with logged_in(catalog(3), timezone="America/New_York") as client:
        local_now = datetime.now(ZoneInfo("America/New_York"))
        since = (local_now - timedelta(seconds=5)).strftime("%Y-%m-%d %H:%M:%S")
        stored = client.put("/_admin/products/NEW", json={}).json()
        # stamped in the server's zone, as Akeneo writes dates
        assert datetime.fromisoformat(stored["updated"]).utcoffset() == local_now.utcoffset()
        found = items(
            client.get(PRODUCTS, params=search(updated=[{"operator": ">", "value": since}]))
        )
        assert skus(found) == ["NEW"]


# --- admin: faults and stats ----------------------------------------------------------------


def test_bad_days_long_and_dated_retry_after_408_and_bursts(
    pim: RunningPim, api: httpx.Client
) -> None:
    pim.faults(fail_next=[429, 408], retry_after=120, retry_after_date=True)
    limited = api.get(PRODUCTS)
    when = parsedate_to_datetime(limited.headers["Retry-After"])
    assert 120 <= (when - datetime.now(UTC)).total_seconds() <= 122
    timeout = api.get(PRODUCTS)
    assert timeout.status_code == 408 and timeout.json() == {
        "code": 408,
        "message": "Request timeout.",
    }
    # bursts: every 4 calls, 2 consecutive 502s
    pim.faults(burst_length=2, burst_every=4, burst_status=502)
    assert [api.get(PRODUCTS).status_code for _ in range(8)] == [502, 502, 200, 200] * 2
    pim.faults(fail_next=[422])
    refused = api.get(PRODUCTS)
    assert refused.status_code == 422
    assert refused.json()["message"] == "Validation failed."
    assert [e["property"] for e in refused.json()["errors"]] == ["values", "search"]
    for bad in ({"burst_status": 404}, {"rate_408": 2}, {"burst_length": -1}):
        assert pim.admin.post("/_admin/faults", json=bad).status_code == 422


def test_requests_log_lists_those_that_came_before_retry_after_allowed(
    pim: RunningPim, api: httpx.Client
) -> None:
    pim.reset_stats()
    pim.faults(fail_next=[429], retry_after=0.5)
    before = time.time()
    assert api.get(PRODUCTS).status_code == 429
    assert api.get(PRODUCTS).status_code == 200  # at once: too early
    time.sleep(0.6)
    assert api.get(PRODUCTS).status_code == 200  # after the wait: fine
    log = pim.admin.get("/_admin/requests").json()
    assert [e["status"] for e in log["entries"]] == [429, 200, 200]
    assert all(before <= e["at"] <= time.time() for e in log["entries"])
    assert len(log["early"]) == 1 and log["early"][0]["at"] == log["entries"][1]["at"]
    assert log["early"][0]["allowed_at"] >= log["entries"][0]["at"] + 0.5
    pim.reset_stats()
    assert pim.admin.get("/_admin/requests").json() == {
        "entries": [],
        "early": [],
        "quiet_until": 0.0,
    }


def test_fail_next_and_retry_after(pim: RunningPim, api: httpx.Client) -> None:
    pim.faults(fail_next=[429, 503], retry_after=3)
    limited = api.get(PRODUCTS)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert api.get("/api/rest/v1/products/SKU-0001").status_code == 503
    assert api.get(PRODUCTS).status_code == 200
    # definitions and the token endpoint are not faulted unless asked
    pim.faults(rate_500=1.0)
    assert api.get("/api/rest/v1/attributes").status_code == 200
    assert api.post(TOKEN, auth=BASIC, json=LOGIN).status_code == 200
    assert api.get(PRODUCTS).status_code == 500
    pim.faults(rate_500=1.0, apply_to_token=True)
    assert api.post(TOKEN, auth=BASIC, json=LOGIN).status_code == 500


def test_random_faults_follow_the_seed(pim: RunningPim, api: httpx.Client) -> None:
    def statuses() -> list[int]:
        pim.faults(rate_429=0.3, rate_500=0.3, seed=11)
        return [api.get(PRODUCTS, params={"limit": 1}).status_code for _ in range(30)]

    first = statuses()
    assert first == statuses()
    assert {200, 429, 500} == set(first)


def test_malformed_pages_then_normal(pim: RunningPim, api: httpx.Client) -> None:
    pim.faults(malformed_pages=2)
    for _ in range(2):
        broken = api.get(PRODUCTS)
        assert broken.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(broken.content)
    assert api.get("/api/rest/v1/products/SKU-0001").status_code == 200  # singles unaffected
    assert len(items(api.get(PRODUCTS))) == 10


def test_bad_fault_settings_are_rejected(pim: RunningPim) -> None:
    assert pim.admin.post("/_admin/faults", json={"latency": 5}).status_code == 422
    assert pim.admin.post("/_admin/faults", json={"rate_429": 2}).status_code == 422
    assert pim.admin.post("/_admin/faults", json={"fail_next": [200]}).status_code == 422
    assert pim.admin.get("/_admin/faults").json()["rate_429"] == 0


def test_stats_count_requests_statuses_and_peak_concurrency(
    pim: RunningPim, api: httpx.Client
) -> None:
    pim.reset_stats()
    pim.faults(latency_ms=150)
    barrier = threading.Barrier(5)

    def call() -> None:
        with httpx.Client(base_url=pim.url, headers=api.headers, timeout=10) as client:
            barrier.wait()
            client.get(PRODUCTS)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started >= 0.15  # latency applied...
    api.get("/api/rest/v1/products/NOPE")
    stats = pim.stats()
    assert stats["max_concurrent"] == 5  # ...concurrently, not one after another
    assert stats["requests"] == 6 and stats["current"] == 0
    assert stats["by_status"] == {"200": 5, "404": 1}
    pim.reset_stats()
    assert pim.stats() == {"requests": 0, "current": 0, "max_concurrent": 0, "by_status": {}}


# --- the catalog ----------------------------------------------------------------------------


class FakeSource:
    """A PimSource as the other sources implement it (pages of raw dicts, definitions, models)."""

    name = "fake"

    def __init__(self, products: list[dict[str, Any]]) -> None:
        self.products = products
        self.page_sizes: list[int] = []
        self.closed = False

    def definitions(self) -> CatalogDefinitions:
        return definitions()

    def iter_pages(
        self, updated_since: datetime | None = None, page_size: int = 100, resume: str | None = None
    ) -> Iterator[Page]:
        self.page_sizes.append(page_size)
        for start in range(0, len(self.products), page_size):
            yield Page(items=self.products[start : start + page_size])

    def iter_models(self) -> Iterator[dict[str, Any]]:
        yield {"code": "M1", "family": "shoes"}
        yield {"family": "no code"}

    def get(self, identifier: str) -> dict[str, Any] | None:
        return None

    def get_model(self, code: str) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        self.closed = True


def test_catalog_from_any_source() -> None:
    products = [product(f"P{i}") for i in range(250)] + [product("P3", values={"name": []})]
    source = FakeSource(products)
    loaded = ReferenceCatalog.from_source(source)
    assert source.page_sizes == [100]
    assert len(loaded) == 250  # the later P3 replaced the first
    assert loaded.definitions.attributes["color"].type == "pim_catalog_simpleselect"
    assert loaded.model_blob("m1") is not None and loaded.skipped == 1
    blob = loaded.identifier_blob("P3")
    assert blob is not None and b'"name":[]' in blob


def test_catalog_keeps_products_as_compact_bytes() -> None:
    count, filler = 400, "x" * 14_000

    def big_products() -> Iterator[dict[str, Any]]:
        for i in range(count):
            yield product(f"BIG-{i}", values={"description": [value(filler, "en_US")]})

    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        big = ReferenceCatalog.from_products(big_products(), CatalogDefinitions())
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    payload = sum(len(big.identifier_blob(f"BIG-{i}") or b"") for i in range(count))
    assert payload > count * 14_000
    # the bytes themselves plus a small per-product overhead, not decoded dicts
    assert grown < payload * 1.15


def test_serve_in_thread_shuts_down_cleanly() -> None:
    app = create_app(ReferenceCatalog())
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/_admin/stats").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_admin/stats", timeout=2)


def test_the_admin_endpoints_need_the_admin_token_when_one_is_set() -> None:
    app = create_app(ReferenceCatalog.load("generated:3"), admin_token="adm1n")
    with serve_in_thread(app) as base:
        assert httpx.get(f"{base}/_admin/faults").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(f"{base}/_admin/faults", json={}, headers=wrong).status_code == 401
        ok = {"Authorization": "Bearer adm1n"}
        assert httpx.get(f"{base}/_admin/faults", headers=ok).status_code == 200
        assert httpx.get(f"{base}/_health").json() == {"status": "ok"}
