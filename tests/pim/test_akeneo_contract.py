"""Issue 16: a contract suite from Akeneo's documented examples (tests/fixtures/akeneo_api,
see its SOURCES). The reference PIM must answer in exactly those shapes (no field Akeneo does
not document, none it documents missing, the same types), and pimsync's client and webhook
parsers must read them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.dev.reference_server import ReferenceCatalog
from app.pim.catalog import build_definitions
from app.sync.pim_events.formats import parse_cloudevents, parse_events_api
from tests.pim.reference_data import (
    RunningPim,
    catalog,
    definitions,
    product,
    running_pim,
    value,
)
from tests.pim.test_akeneo import make_source
from tests.pim.test_reference_server import login

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "akeneo_api"
API = "/api/rest/v1"
# objects whose keys are codes (attributes, locales, channels, association types, units)
CODE_KEYED = {
    "labels",
    "group_labels",
    "attribute_requirements",
    "units",
    "associations",
    "quantified_associations",
    "conversion_units",
}
VALUE_FIELDS = {"locale", "scope", "data"}
VALUE_EXTRAS = {"linked_data", "attribute_type", "_links"}  # documented, on request only


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def same_shape(served: Any, documented: Any, path: str, optional: frozenset[str]) -> None:
    """``served`` has ``documented``'s shape; raises AssertionError naming the path."""
    if documented is None or served is None:
        return  # a nullable field: either side may be null
    assert kind(served) == kind(documented), (
        f"{path}: {kind(served)}, documented {kind(documented)}"
    )
    if isinstance(documented, list):
        for i, item in enumerate(served):
            if documented:
                same_shape(item, documented[0], f"{path}[{i}]", optional)
        return
    if not isinstance(documented, dict):
        return
    field = path.rsplit(".", 1)[-1]
    if field == "values":
        for attribute, entries in served.items():
            assert isinstance(entries, list), f"{path}.{attribute}: not a list of values"
            for entry in entries:
                keys = set(entry)
                assert VALUE_FIELDS <= keys <= VALUE_FIELDS | VALUE_EXTRAS, (
                    f"{path}.{attribute}: value fields {sorted(keys)}"
                )
        return
    if field in CODE_KEYED:
        samples = list(documented.values())
        for code, item in served.items():
            if samples:
                same_shape(item, samples[0], f"{path}.{code}", optional)
        return
    extra = set(served) - set(documented)
    assert not extra, f"{path}: fields Akeneo does not document: {sorted(extra)}"
    missing = set(documented) - set(served) - optional
    assert not missing, f"{path}: documented fields missing: {sorted(missing)}"
    for name in set(served) & set(documented):
        same_shape(served[name], documented[name], f"{path}.{name}", optional)


# --- the reference PIM answers in Akeneo's documented shapes ---------------------------------


@pytest.fixture(scope="module")
def pim() -> Iterator[RunningPim]:
    defs = build_definitions(
        attributes=[
            {"code": "sku", "type": "pim_catalog_identifier"},
            {"code": "name", "type": "pim_catalog_text", "localizable": True},
            {
                "code": "weight",
                "type": "pim_catalog_metric",
                "metric_family": "Weight",
                "default_metric_unit": "KILOGRAM",
            },
        ],
        families=[{"code": "shoes", "attributes": ["sku", "name"]}],
        channels=[{"code": "ecommerce", "locales": ["en_US"], "currencies": ["EUR"]}],
        categories=[{"code": "master", "parent": None}],
        unit_symbols={"FURLONG": "fur"},
    )
    items = [
        product("SKU-1", parent="boot_red", root_parent="boots"),
        product("SKU-2", values={"weight": [value({"amount": "1.5", "unit": "KILOGRAM"})]}),
    ]
    models = [
        {"code": "boots", "family": "shoes", "family_variant": "by_color", "values": {}},
        {"code": "boot_red", "parent": "boots", "family": "shoes", "values": {}},
    ]
    pim_catalog = ReferenceCatalog.from_products(items, defs, models)
    with running_pim(pim_catalog, identifier_endpoints=False) as running:
        yield running


@pytest.fixture(scope="module")
def api(pim: RunningPim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pim.url, timeout=10) as client:
        token = login(client)
        same_shape(token, fixture("token.json"), "token", frozenset())
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        yield client


def items(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    found = response.json()["_embedded"]["items"]
    assert found
    return list(found)


def test_products_uuid_list_and_item(api: httpx.Client) -> None:
    page = api.get(f"{API}/products-uuid", params={"pagination_type": "search_after", "limit": 1})
    documented = fixture("products_uuid_list.json")
    # root_parent: only variants carry it; next: not on the last page
    same_shape(page.json(), documented, "list", frozenset({"root_parent", "next"}))
    for item in items(page):
        one = api.get(f"{API}/products-uuid/{item['uuid']}")
        same_shape(one.json(), fixture("product_uuid.json"), "product", frozenset({"root_parent"}))


def test_product_models(api: httpx.Client) -> None:
    for model in items(api.get(f"{API}/product-models", params={"limit": 10})):
        same_shape(model, fixture("product_model.json"), "model", frozenset())
    one = api.get(f"{API}/product-models/boot_red")
    same_shape(one.json(), fixture("product_model.json"), "model", frozenset())


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("attributes", "attribute_identifier.json"),
        ("families", "family.json"),
        ("channels", "channel.json"),
        ("locales", "locale.json"),
        ("currencies", "currency.json"),
    ],
)
def test_definition_records(api: httpx.Client, path: str, name: str) -> None:
    for record in items(api.get(f"{API}/{path}", params={"limit": 100})):
        same_shape(record, fixture(name), path, frozenset())


def test_the_identifier_attribute_and_its_filters(api: httpx.Client) -> None:
    search = '{"type":[{"operator":"IN","value":["pim_catalog_identifier"]}]}'
    [identifier] = items(api.get(f"{API}/attributes", params={"search": search}))
    assert (identifier["code"], identifier["is_main_identifier"]) == ("sku", True)
    main = '{"is_main_identifier":[{"operator":"=","value":true}]}'
    assert [a["code"] for a in items(api.get(f"{API}/attributes", params={"search": main}))] == [
        "sku"
    ]


def test_measurement_families(api: httpx.Client) -> None:
    response = api.get(f"{API}/measurement-families")
    assert response.status_code == 200
    families = response.json()
    assert isinstance(families, list) and families
    for family in families:
        same_shape(family, fixture("measurement_family.json"), "family", frozenset())


def test_error_bodies(pim: RunningPim, api: httpx.Client) -> None:
    anonymous = httpx.get(f"{pim.url}{API}/products-uuid")
    assert anonymous.status_code == 401
    same_shape(anonymous.json(), fixture("error_401.json"), "401", frozenset())
    refused = api.get(f"{API}/products/SKU-1")  # this reference PIM refuses them
    assert refused.status_code == 403
    same_shape(refused.json(), fixture("error_403.json"), "403", frozenset())
    unknown = api.get(f"{API}/products-uuid/00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404
    same_shape(unknown.json(), fixture("error_404.json"), "404", frozenset())
    invalid = api.get(f"{API}/products-uuid", params={"limit": 1000})
    assert invalid.status_code == 422
    same_shape(invalid.json(), fixture("error_422.json"), "422", frozenset({"errors"}))
    pim.faults(fail_next=[429], retry_after=3)
    throttled = api.get(f"{API}/products-uuid")
    pim.faults()
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    same_shape(throttled.json(), fixture("error_429.json"), "429", frozenset())


def test_the_shape_check_can_fail() -> None:
    documented = fixture("product_uuid.json")
    with pytest.raises(AssertionError, match="does not document"):
        same_shape({**documented, "identifier": "X"}, documented, "p", frozenset())
    with pytest.raises(AssertionError, match="missing"):
        same_shape(
            {k: v for k, v in documented.items() if k != "uuid"}, documented, "p", frozenset()
        )
    with pytest.raises(AssertionError, match="enabled"):
        same_shape({**documented, "enabled": "yes"}, documented, "p", frozenset())


# --- pimsync reads the documented shapes -----------------------------------------------------


def test_the_client_reads_unit_symbols_from_the_measurement_families(pim: RunningPim) -> None:
    source = make_source(pim.url)
    try:
        defs = source.definitions()
        assert defs.unit_symbols["FURLONG"] == "fur"  # known only to this PIM
        assert defs.identifier_attribute() == "sku"
        assert [p["values"]["sku"][0]["data"] for p in source.iter_variants("boots")] == ["SKU-1"]
    finally:
        source.close()


def test_documented_list_and_item_parse_as_products() -> None:
    from app.pim.product import parse_product

    [item] = fixture("products_uuid_list.json")["_embedded"]["items"]
    parsed = parse_product(item)
    assert (parsed.identifier, parsed.uuid, parsed.has_identifier) == (
        "MUG-RED",
        "3f1c2b9a-6d4e-4a71-9b0c-8e2f5a7d1c40",
        True,
    )
    assert "_links" not in parsed.raw


def test_documented_events_parse() -> None:
    uid = "3f1c2b9a-6d4e-4a71-9b0c-8e2f5a7d1c40"
    [updated] = parse_events_api(fixture("event_api_product_updated.json"))
    assert (updated.kind, updated.key) == ("product.upsert", "MUG-RED")
    assert updated.product is not None and updated.product["uuid"] == uid
    [removed] = parse_events_api(fixture("event_api_product_removed.json"))
    assert (removed.kind, removed.key) == ("product.remove", "MUG-RED")
    [model] = parse_events_api(fixture("event_api_product_model_updated.json"))
    assert (model.kind, model.key) == ("model.upsert", "mug_classic")
    [platform] = parse_cloudevents(fixture("event_platform_product_updated.json"))
    assert (platform.kind, platform.key) == ("product.upsert", f"uuid:{uid}")
    [deleted] = parse_cloudevents(fixture("event_platform_product_deleted.json"))
    assert (deleted.kind, deleted.key) == ("product.remove", f"uuid:{uid}")


def test_catalog_helper_still_serves_the_shapes() -> None:
    """The shared small catalog (other Akeneo tests) is served in the documented shapes too."""
    with running_pim(catalog(2)) as pim, httpx.Client(base_url=pim.url) as client:
        client.headers["Authorization"] = f"Bearer {login(client)['access_token']}"
        page = client.get(f"{API}/products-uuid", params={"pagination_type": "search_after"})
        same_shape(
            page.json(),
            fixture("products_uuid_list.json"),
            "list",
            frozenset({"root_parent", "next"}),
        )
        assert definitions().identifier_attribute() == "sku"
