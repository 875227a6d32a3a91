"""The records the reference PIM serves, in the shapes Akeneo's REST API documents (the
examples in akeneo/pim-api-docs; tests/fixtures/akeneo_api/ holds them, and a contract test
compares the reference PIM's answers with them). Development tooling: production code never
imports it.

A dataset names only what pimsync needs; the documented fields it lacks are filled with the
values Akeneo gives a record that does not use them (null, empty lists and objects).
"""

from __future__ import annotations

from typing import Any

from app.pim.catalog import IDENTIFIER_TYPE, CatalogDefinitions

# Every field of an attribute (``/attributes``), with the value of an attribute not using it.
ATTRIBUTE_DEFAULTS: dict[str, Any] = {
    "group": None,
    "group_labels": {},
    "unique": False,
    "useable_as_grid_filter": False,
    "allowed_extensions": [],
    "metric_family": None,
    "default_metric_unit": None,
    "reference_data_name": None,
    "available_locales": [],
    "max_characters": None,
    "validation_rule": None,
    "validation_regexp": None,
    "wysiwyg_enabled": None,
    "number_min": None,
    "number_max": None,
    "decimals_allowed": None,
    "negative_allowed": None,
    "date_min": None,
    "date_max": None,
    "max_file_size": None,
    "minimum_input_length": None,
    "sort_order": 0,
    "localizable": False,
    "scopable": False,
    "default_value": None,
    "labels": {},
    "is_mandatory": False,
    "decimal_places_strategy": None,
    "decimal_places": None,
    "is_main_identifier": False,
}
# Akeneo's currency names, for the codes a demo catalog uses (others are named by their code).
CURRENCY_NAMES = {"EUR": "Euro", "USD": "US Dollar", "GBP": "British Pound", "CHF": "Swiss Franc"}


def documented_product(product: dict[str, Any]) -> dict[str, Any]:
    """A ``products-uuid`` item with every documented field (in place; returns it)."""
    product.setdefault("enabled", True)
    product.setdefault("family", None)
    product.setdefault("categories", [])
    product.setdefault("groups", [])
    product.setdefault("parent", None)
    product.setdefault("associations", {})
    product.setdefault("quantified_associations", {})
    if "updated" in product:
        product.setdefault("created", product["updated"])
    return product


def documented_model(model: dict[str, Any]) -> dict[str, Any]:
    """A ``product-models`` item with every documented field (in place; returns it)."""
    model.setdefault("family", None)
    model.setdefault("family_variant", None)
    model.setdefault("parent", None)
    model.setdefault("categories", [])
    model.setdefault("values", {})
    model.setdefault("associations", {})
    model.setdefault("quantified_associations", {})
    if "updated" in model:
        model.setdefault("created", model["updated"])
    return model


def documented_records(defs: CatalogDefinitions) -> dict[str, list[dict[str, Any]]]:
    """The definition endpoints' records: ``attributes``, ``families``, ``channels``,
    ``categories``, ``locales``, ``currencies`` and ``measurement-families``."""
    data = defs.to_dict()
    identifiers = [a for a in data["attributes"] if a["type"] == IDENTIFIER_TYPE]
    main = defs.identifier_attribute()
    attributes = []
    for order, record in enumerate(data["attributes"], start=1):
        full = {**ATTRIBUTE_DEFAULTS, "sort_order": order, **record}
        if record["type"] == IDENTIFIER_TYPE:
            full["unique"] = True
            full["is_main_identifier"] = record["code"] == main or len(identifiers) == 1
        attributes.append(full)
    families = [{"attribute_as_image": None, **f} for f in data["families"]]
    channels = [{"conversion_units": {}, **c} for c in data["channels"]]
    locales = sorted({loc for c in data["channels"] for loc in c["locales"]})
    currencies = sorted({cur for c in data["channels"] for cur in c["currencies"]})
    return {
        "attributes": attributes,
        "families": families,
        "channels": channels,
        "categories": data["categories"],
        "locales": [{"code": code, "enabled": True} for code in locales],
        "currencies": [
            {"code": code, "enabled": True, "label": f"{code} ({CURRENCY_NAMES.get(code, code)})"}
            for code in currencies
        ],
        "measurement-families": measurement_families(defs),
    }


def measurement_families(defs: CatalogDefinitions) -> list[dict[str, Any]]:
    """One measurement family per metric family the attributes name (its units: their default
    units), and ``OTHER`` for the remaining units the catalog has symbols for. Conversions are
    not modelled (each unit says "multiply by 1"): pimsync reads the symbols only."""
    families: dict[str, list[str]] = {}
    for attribute in defs.attributes.values():
        if attribute.metric_family and attribute.default_metric_unit:
            units = families.setdefault(attribute.metric_family, [])
            if attribute.default_metric_unit not in units:
                units.append(attribute.default_metric_unit)
    placed = {u for units in families.values() for u in units}
    rest = sorted(u for u in defs.unit_symbols if u not in placed)
    if rest:
        families["OTHER"] = rest
    return [
        {
            "code": code,
            "labels": {"en_US": code.replace("_", " ").title()},
            "standard_unit_code": units[0],
            "units": {
                unit: {
                    "code": unit,
                    "labels": {"en_US": unit.replace("_", " ").title()},
                    "convert_from_standard": [{"operator": "mul", "value": "1"}],
                    "symbol": defs.unit_symbols.get(unit, unit),
                }
                for unit in units
            },
        }
        for code, units in sorted(families.items())
    ]
