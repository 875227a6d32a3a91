"""Issue 16: the client reads through the UUID endpoints only, and finds the identifier
attribute itself (against the reference PIM over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.config import reset_settings_cache
from app.dev.reference_server import ReferenceCatalog
from app.pim.catalog import build_definitions
from app.pim.source import SourceError
from tests.pim.reference_data import catalog, definitions, product, running_pim, value
from tests.pim.test_akeneo import make_source, skus


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", raising=False)
    reset_settings_cache()
    yield
    reset_settings_cache()


def paths(pim: Any) -> list[str]:
    return [r for r in pim.requests]


def test_refetch_by_uuid_is_one_request_per_hundred_products() -> None:
    pim_catalog = catalog(250)
    with running_pim(pim_catalog, identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        listed = [item for page in source.iter_pages() for item in page.items]
        uuids = [item["uuid"] for item in listed]
        wanted = [*uuids[:230], "00000000-0000-4000-8000-000000000000"]  # one unknown
        pim.reset_stats()
        found = source.get_many_by_uuid([u.upper() for u in wanted])
        # 231 uuids: three searches (100 + 100 + 31), never one request per product
        assert pim.stats()["requests"] == 3
        assert sorted(found) == sorted(uuids[:230])
        assert all(found[u]["uuid"] == u for u in uuids[:230])
        source.close()


def test_get_by_identifier_searches_products_uuid_never_the_identifier_endpoint() -> None:
    with running_pim(catalog(5), identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        found = source.get("SKU-0003")
        assert found is not None and skus([found]) == ["SKU-0003"]
        assert source.get("SKU-9999") is None
        assert pim.stats()["by_status"].get("403", 0) == 0
        source.close()


def test_identifier_endpoints_refused_are_refused() -> None:
    """The check above can fail: the reference PIM does refuse the identifier endpoint."""
    with running_pim(catalog(1), identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        with pytest.raises(SourceError, match="403"):
            source._get_one("/api/rest/v1/products/SKU-0000")
        source.close()


def test_variants_of_a_model_through_the_parent_search() -> None:
    items = [
        product("ROOT-ONLY", parent="Model-Boot"),
        product("SUB-1", parent="boot-red"),
        product("SUB-2", parent="BOOT-RED"),  # codes ignore case
        product("OTHER", parent="elsewhere"),
        product("SIMPLE"),
    ]
    models = [
        {"code": "Model-Boot", "family": "shoes", "values": {}},
        {"code": "boot-red", "parent": "Model-Boot", "family": "shoes", "values": {}},
        {"code": "elsewhere", "family": "shoes", "values": {}},
    ]
    pim_catalog = ReferenceCatalog.from_products(items, definitions(), models)
    with running_pim(pim_catalog, identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        assert sorted(skus(list(source.iter_variants("model-boot")))) == [
            "ROOT-ONLY",
            "SUB-1",
            "SUB-2",
        ]
        assert sorted(skus(list(source.iter_variants("boot-red")))) == ["SUB-1", "SUB-2"]
        source.close()


def renamed_definitions(*identifiers: dict[str, Any]) -> Any:
    return build_definitions(
        attributes=[
            *identifiers,
            {"code": "name", "type": "pim_catalog_text", "localizable": True},
        ],
        families=[{"code": "shoes", "attributes": ["name"]}],
    )


def test_identifier_attribute_is_discovered_with_the_type_filter() -> None:
    defs = renamed_definitions({"code": "ean", "type": "pim_catalog_identifier"})
    item = product("X", values={"ean": [value("EAN-1")]})
    del item["values"]["sku"]
    pim_catalog = ReferenceCatalog.from_products([item], defs, identifier_attribute="ean")
    with running_pim(pim_catalog, identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        assert source.identifier_attribute() == "ean"
        assert source.identifier_attribute() == "ean"  # cached: asked once
        attribute_calls = pim.stats()["requests"]
        found = source.get("EAN-1")
        assert found is not None and found["values"]["ean"] == [value("EAN-1")]
        assert attribute_calls == 2  # the token, then one filtered /attributes page
        source.close()


def test_the_main_identifier_wins_where_several_exist() -> None:
    defs = renamed_definitions(
        {"code": "ean", "type": "pim_catalog_identifier"},
        {"code": "code", "type": "pim_catalog_identifier", "is_main_identifier": True},
    )
    assert defs.identifier_attribute() == "code"
    with running_pim(ReferenceCatalog.from_products([], defs)) as pim:
        source = make_source(pim.url)
        assert source.identifier_attribute() == "code"
        source.close()


def test_several_identifiers_none_main_is_a_clear_error_and_the_setting_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defs = renamed_definitions(
        {"code": "ean", "type": "pim_catalog_identifier"},
        {"code": "code", "type": "pim_catalog_identifier"},
    )
    with running_pim(ReferenceCatalog.from_products([], defs)) as pim:
        source = make_source(pim.url)
        with pytest.raises(SourceError, match="PIMSYNC_IDENTIFIER_ATTRIBUTE"):
            source.identifier_attribute()
        source.close()
        monkeypatch.setenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", "ean")
        reset_settings_cache()
        overridden = make_source(pim.url)
        assert overridden.identifier_attribute() == "ean"
        overridden.close()
