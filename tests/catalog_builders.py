"""Small builders for the pure catalog tests: products, definitions, channels, contracts.

One hand-written catalog (``small_defs``) that exercises every attribute shape the catalog
logic cares about: localizable, scopable, both, locale-specific, metric, price collection,
selects with labels, media, an identifier.
"""

from __future__ import annotations

from typing import Any

from app.channels.config import ChannelConfig, parse_channels
from app.mapping.contract import CompiledContract, Contract, parse_contract
from app.pim.catalog import CatalogDefinitions, build_definitions
from app.pim.product import Product, parse_product


def v(data: Any, locale: str | None = None, scope: str | None = None) -> dict[str, Any]:
    """One standard-format value."""
    return {"locale": locale, "scope": scope, "data": data}


def make_product(
    values: dict[str, list[dict[str, Any]]] | None = None,
    identifier: str = "SKU-1",
    **raw: Any,
) -> Product:
    return parse_product({"identifier": identifier, "values": values or {}, **raw})


def make_channel(code: str = "web", **settings: Any) -> ChannelConfig:
    """A channel through the real loader (shorthands included)."""
    base: dict[str, Any] = {"pim_scope": "ecommerce", "locales": ["de_DE"], "currency": "EUR"}
    if "currencies" in settings:
        del base["currency"]
    base.update(settings)
    return parse_channels({"channels": {code: base}})[code]


def make_contract_model(mappings: list[dict[str, Any]], **fields: Any) -> Contract:
    data: dict[str, Any] = {"contract": "web", "version": 3, "mappings": mappings}
    data.update(fields)
    return parse_contract(data)


def make_contract(mappings: list[dict[str, Any]], **fields: Any) -> CompiledContract:
    return CompiledContract.compile(make_contract_model(mappings, **fields))


SMALL_ATTRIBUTES: list[dict[str, Any]] = [
    {"code": "sku", "type": "pim_catalog_identifier"},
    {"code": "name", "type": "pim_catalog_text", "localizable": True},
    {"code": "description", "type": "pim_catalog_textarea", "localizable": True, "scopable": True},
    {"code": "ean", "type": "pim_catalog_text"},
    {"code": "teaser", "type": "pim_catalog_text", "scopable": True},
    {"code": "brand", "type": "pim_catalog_simpleselect"},
    {"code": "colors", "type": "pim_catalog_multiselect"},
    {
        "code": "weight",
        "type": "pim_catalog_metric",
        "metric_family": "Weight",
        "default_metric_unit": "KILOGRAM",
    },
    {"code": "price", "type": "pim_catalog_price_collection"},
    {"code": "active", "type": "pim_catalog_boolean"},
    {"code": "rating", "type": "pim_catalog_number"},
    {"code": "picture", "type": "pim_catalog_image"},
    {
        "code": "legal_notice",
        "type": "pim_catalog_text",
        "localizable": True,
        "available_locales": ["de_DE", "de_AT"],
    },
    {"code": "tv_spec_001", "type": "pim_catalog_metric"},
    {"code": "tv_spec_002", "type": "pim_catalog_multiselect"},
    {"code": "tv_spec_003", "type": "pim_catalog_text", "localizable": True},
    {"code": "tv_spec_004", "type": "pim_catalog_boolean"},
    {"code": "tv_spec_005", "type": "pim_catalog_price_collection"},
    {"code": "tv_spec_006", "type": "pim_catalog_number"},
]
SMALL_OPTIONS: list[dict[str, Any]] = [
    {
        "attribute": "brand",
        "code": "acme",
        "labels": {"en_US": "ACME Corp", "de_DE": "ACME GmbH", "de_AT": ""},
    },
    {"attribute": "brand", "code": "nolabel", "labels": {}},
    {"attribute": "colors", "code": "red", "labels": {"en_US": "Red", "de_DE": "Rot"}},
    {"attribute": "colors", "code": "blue", "labels": {"en_US": "Blue"}},
    {"attribute": "tv_spec_002", "code": "hdmi", "labels": {"de_DE": "HDMI-Anschluss"}},
]
SMALL_FAMILIES: list[dict[str, Any]] = [
    {
        "code": "tv",
        "attributes": [a["code"] for a in SMALL_ATTRIBUTES],
        "attribute_requirements": {
            "ecommerce": ["sku", "name", "description", "price", "weight"],
            "b2b": ["sku", "name"],
        },
    },
    {"code": "bare", "attributes": ["sku", "name"]},
]
SMALL_CATEGORIES: list[dict[str, Any]] = [
    {"code": "master", "parent": None},
    {"code": "master_tv", "parent": "master"},
    {"code": "master_tv_oled", "parent": "master_tv"},
    {"code": "b2b", "parent": None},
    {"code": "b2b_tv", "parent": "b2b"},
]


def small_defs() -> CatalogDefinitions:
    return build_definitions(
        attributes=SMALL_ATTRIBUTES,
        families=SMALL_FAMILIES,
        channels=[{"code": "ecommerce", "locales": ["de_DE", "en_US"], "currencies": ["EUR"]}],
        categories=SMALL_CATEGORIES,
        options=SMALL_OPTIONS,
    )
