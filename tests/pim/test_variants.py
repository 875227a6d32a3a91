from __future__ import annotations

from typing import Any

import pytest

from app.pim.variants import (
    index_models,
    merge_values,
    model_lineage,
    resolve_model,
    resolve_product,
    variants_of,
)


def v(data: Any, locale: str | None = None, scope: str | None = None) -> dict[str, Any]:
    return {"locale": locale, "scope": scope, "data": data}


ROOT = {
    "code": "Jacket",
    "family": "clothing",
    "family_variant": "clothing_color_size",
    "parent": None,
    "categories": ["men", "jackets"],
    "values": {
        "name": [v("Jacket")],
        "description": [
            v("root en ecommerce", "en_US", "ecommerce"),
            v("root fr ecommerce", "fr_FR", "ecommerce"),
            v("root en print", "en_US", "print"),
        ],
        "care": [v("dry clean only")],
        "brand": [v("zaro")],
    },
}
SUB = {
    "code": "jacket-blue",
    "family": "clothing",
    "family_variant": "clothing_color_size",
    "parent": "jacket",  # the root spelled in another case
    "categories": ["jackets", "blue_things"],
    "values": {
        "color": [v("blue")],
        "description": [v("sub en ecommerce", "en_US", "ecommerce")],
        "brand": [v("zaro blue line")],
    },
}
ONE_LEVEL = {
    "code": "tv-sam",
    "family": "led_tvs",
    "family_variant": "tv",
    "parent": None,
    "categories": ["tvs"],
    "values": {"name": [v("Samsung TV")]},
}


def product(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "identifier": "jacket-blue-m",
        "family": "clothing",
        "parent": "JACKET-BLUE",
        "categories": ["sale"],
        "enabled": True,
        "values": {
            "sku": [v("jacket-blue-m")],
            "size": [v("m")],
            "description": [v("product en ecommerce", "en_US", "ecommerce")],
        },
    }
    base.update(fields)
    return base


@pytest.fixture
def index() -> dict[str, dict[str, Any]]:
    return index_models([ROOT, SUB, ONE_LEVEL])


def entry(raw: dict[str, Any], attribute: str, locale: str | None = None, scope: str | None = None):
    matches = [
        e["data"]
        for e in raw["values"].get(attribute, [])
        if e["locale"] == locale and e["scope"] == scope
    ]
    assert len(matches) <= 1, f"{attribute} has duplicate entries for {locale}/{scope}"
    return matches[0] if matches else None


def test_index_is_case_insensitive_and_rejects_duplicates() -> None:
    index = index_models([ROOT, SUB])
    assert set(index) == {"jacket", "jacket-blue"}
    with pytest.raises(ValueError, match="defined twice"):
        index_models([ROOT, {**SUB, "code": "JACKET"}])
    with pytest.raises(ValueError, match="without a code"):
        index_models([{"family_variant": "x"}])


def test_precedence_per_attribute_locale_scope(index: dict[str, dict[str, Any]]) -> None:
    resolved = resolve_product(product(), index)
    # product beats sub-model beats root for the same (attribute, locale, scope)
    assert entry(resolved, "description", "en_US", "ecommerce") == "product en ecommerce"
    # other locale/scope combinations of the same attribute still come from the root
    assert entry(resolved, "description", "fr_FR", "ecommerce") == "root fr ecommerce"
    assert entry(resolved, "description", "en_US", "print") == "root en print"
    assert len(resolved["values"]["description"]) == 3
    # sub-model beats root
    assert entry(resolved, "brand") == "zaro blue line"
    # root-only and sub-only attributes are inherited; product-only ones kept
    assert entry(resolved, "care") == "dry clean only"
    assert entry(resolved, "name") == "Jacket"
    assert entry(resolved, "color") == "blue"
    assert entry(resolved, "size") == "m"
    assert entry(resolved, "sku") == "jacket-blue-m"


def test_categories_are_the_union(index: dict[str, dict[str, Any]]) -> None:
    resolved = resolve_product(product(), index)
    assert sorted(resolved["categories"]) == ["blue_things", "jackets", "men", "sale"]
    assert len(resolved["categories"]) == len(set(resolved["categories"]))


def test_parent_case_is_canonicalised_and_root_set(index: dict[str, dict[str, Any]]) -> None:
    resolved = resolve_product(product(parent="jAcKeT-bLuE"), index)
    assert resolved["parent"] == "jacket-blue"
    assert resolved["root_parent"] == "Jacket"


def test_one_level_variant(index: dict[str, dict[str, Any]]) -> None:
    raw = product(identifier="tv-32", family="led_tvs", parent="TV-SAM", categories=[])
    resolved = resolve_product(raw, index)
    assert resolved["parent"] == "tv-sam"
    assert resolved["root_parent"] == "tv-sam"
    assert entry(resolved, "name") == "Samsung TV"
    assert resolved["categories"] == ["tvs"]


def test_missing_family_is_taken_from_the_model(index: dict[str, dict[str, Any]]) -> None:
    assert resolve_product(product(family=None), index)["family"] == "clothing"


def test_unknown_parent_names_product_and_parent(index: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(ValueError) as exc:
        resolve_product(product(parent="no-such-model"), index)
    assert "jacket-blue-m" in str(exc.value)
    assert "no-such-model" in str(exc.value)


def test_broken_model_chain_names_the_product() -> None:
    orphan = {**SUB, "parent": "gone"}
    index = index_models([orphan])
    with pytest.raises(ValueError, match=r"jacket-blue-m.*gone"):
        resolve_product(product(), index)


def test_cycle_is_an_error_not_a_hang() -> None:
    a = {"code": "a", "parent": "b", "values": {}}
    b = {"code": "b", "parent": "a", "values": {}}
    index = index_models([a, b])
    with pytest.raises(ValueError, match="cycle"):
        model_lineage(a, index)


def test_product_without_parent_is_unchanged(index: dict[str, dict[str, Any]]) -> None:
    raw = product(parent=None)
    assert resolve_product(raw, index) is raw


def test_resolution_does_not_mutate_inputs(index: dict[str, dict[str, Any]]) -> None:
    raw = product()
    before_root = repr(ROOT)
    before_raw = repr(raw)
    resolved = resolve_product(raw, index)
    resolved["values"]["name"][0]["data"] = "changed"
    resolved["categories"].append("x")
    assert repr(ROOT) == before_root
    assert repr(raw) == before_raw
    # resolving twice (e.g. an already complete API product) changes nothing
    assert resolve_product(resolve_product(raw, index), index) == resolve_product(raw, index)


def test_resolve_model_merges_the_root(index: dict[str, dict[str, Any]]) -> None:
    model = resolve_model(SUB, index)
    assert model["parent"] == "Jacket"
    assert entry(model, "care") == "dry clean only"
    assert entry(model, "brand") == "zaro blue line"
    assert set(model["categories"]) == {"men", "jackets", "blue_things"}


def test_merge_values_keeps_first_seen_order() -> None:
    merged = merge_values(
        {"a": [v(1)], "b": [v(1, "en_US")]},
        {"b": [v(2, "en_US"), v(3, "fr_FR")], "c": [v(4)]},
    )
    assert list(merged) == ["a", "b", "c"]
    assert merged["b"] == [v(2, "en_US"), v(3, "fr_FR")]


def test_variants_of(index: dict[str, dict[str, Any]]) -> None:
    products = [
        product(identifier="p1", parent="jacket-blue"),
        product(identifier="p2", parent="TV-SAM"),
        product(identifier="p3", parent=None),
        product(identifier="p4", parent="unknown"),
    ]
    assert [p["identifier"] for p in variants_of("JACKET", products, index)] == ["p1"]
    assert [p["identifier"] for p in variants_of("jacket-blue", products, index)] == ["p1"]
    assert [p["identifier"] for p in variants_of("tv-sam", products, index)] == ["p2"]
