"""Catalog definitions: attributes, families, PIM channels, categories, options, units (pure).

They come in Akeneo's REST shapes (``/attributes``, ``/families``, ``/channels``,
``/categories``), whether read from a PIM, from a catalog file or converted from the icecat
CSV fixtures, so one parser serves every source.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PRICE_TYPE = "pim_catalog_price_collection"
METRIC_TYPE = "pim_catalog_metric"
IDENTIFIER_TYPE = "pim_catalog_identifier"
MEDIA_TYPES = frozenset(
    {
        "pim_catalog_image",
        "pim_catalog_file",
        "pim_catalog_asset_collection",
        "pim_assets_collection",
    }
)
SELECT_TYPES = frozenset({"pim_catalog_simpleselect", "pim_catalog_multiselect"})


class DefinitionError(ValueError):
    """A catalog definition that cannot be used (names the record and the field)."""


@dataclass(frozen=True, slots=True)
class AttributeDef:
    code: str
    type: str
    localizable: bool = False
    scopable: bool = False
    available_locales: frozenset[str] = frozenset()
    decimals_allowed: bool = False
    metric_family: str | None = None
    default_metric_unit: str | None = None
    group: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Akeneo SaaS may define several identifier attributes; one is the main identifier.
    is_main_identifier: bool = False

    def required_in_locale(self, locale: str) -> bool:
        """A locale-specific attribute is required only in its available locales."""
        return not self.available_locales or locale in self.available_locales


@dataclass(frozen=True, slots=True)
class FamilyDef:
    code: str
    attributes: tuple[str, ...] = ()
    requirements: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attribute_as_label: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PimChannel:
    """A channel as the PIM defines it (Akeneo's ``scope``), not a pimsync target channel."""

    code: str
    locales: tuple[str, ...]
    currencies: tuple[str, ...]
    category_tree: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


_TOKENS = itertools.count(1)


@dataclass(slots=True)
class CatalogDefinitions:
    attributes: dict[str, AttributeDef] = field(default_factory=dict)
    families: dict[str, FamilyDef] = field(default_factory=dict)
    channels: dict[str, PimChannel] = field(default_factory=dict)
    # category code -> parent code (None for a tree root)
    categories: dict[str, str | None] = field(default_factory=dict)
    # attribute -> option code -> {locale: label}
    options: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # unit code -> symbol (e.g. KILOGRAM -> kg)
    unit_symbols: dict[str, str] = field(default_factory=dict)
    # (attribute, option, locale chain) -> label: mapping asks the same questions millions of times
    label_cache: dict[tuple[str, str, tuple[str, ...]], str] = field(
        default_factory=dict, repr=False, compare=False
    )
    # Names this object in keys that outlive it (the mapping plans' memo ids): never reused
    # in a process, and a copy (``dataclasses.replace``) gets its own.
    token: int = field(default_factory=lambda: next(_TOKENS), init=False, repr=False, compare=False)

    def option_label(self, attribute: str, code: str, chain: tuple[str, ...]) -> str:
        """The option's label in the first locale of ``chain`` that has one, else its code."""
        key = (attribute, code, chain)
        hit = self.label_cache.get(key)
        if hit is None:
            hit = code
            labels = self.options.get(attribute, {}).get(code)
            if labels:
                for loc in chain:
                    if labels.get(loc):
                        hit = labels[loc]
                        break
            self.label_cache[key] = hit
        return hit

    def identifier_attribute(self) -> str | None:
        """The attribute holding the product identifier: the one of type
        ``pim_catalog_identifier`` (the main identifier where several exist); None when the
        definitions name none (or several, none of them the main one)."""
        found = [a for a in self.attributes.values() if a.type == IDENTIFIER_TYPE]
        main = [a for a in found if a.is_main_identifier]
        if len(main) == 1:
            return main[0].code
        return found[0].code if len(found) == 1 else None

    def attribute_type(self, code: str) -> str | None:
        attr = self.attributes.get(code)
        return attr.type if attr else None

    def category_root(self, code: str) -> str | None:
        """The tree a category belongs to (None when the category is unknown)."""
        seen: set[str] = set()
        current: str | None = code
        while current is not None and current in self.categories:
            if current in seen:  # a cycle in bad data must not hang the sync
                return None
            seen.add(current)
            parent = self.categories[current]
            if parent is None:
                return current
            current = parent
        return None

    def is_under(self, category: str, ancestor: str) -> bool:
        seen: set[str] = set()
        current: str | None = category
        while current is not None and current not in seen:
            if current == ancestor:
                return True
            seen.add(current)
            current = self.categories.get(current)
        return False

    def to_dict(self) -> dict[str, Any]:
        """The REST shapes again (what a catalog file holds)."""
        return {
            "attributes": [
                {
                    "code": a.code,
                    "type": a.type,
                    "localizable": a.localizable,
                    "scopable": a.scopable,
                    "available_locales": sorted(a.available_locales),
                    "decimals_allowed": a.decimals_allowed,
                    "metric_family": a.metric_family,
                    "default_metric_unit": a.default_metric_unit,
                    "group": a.group,
                    "labels": a.labels,
                    **({"is_main_identifier": True} if a.is_main_identifier else {}),
                }
                for a in self.attributes.values()
            ],
            "families": [
                {
                    "code": f.code,
                    "attributes": list(f.attributes),
                    "attribute_requirements": {k: list(v) for k, v in f.requirements.items()},
                    "attribute_as_label": f.attribute_as_label,
                    "labels": f.labels,
                }
                for f in self.families.values()
            ],
            "channels": [
                {
                    "code": c.code,
                    "locales": list(c.locales),
                    "currencies": list(c.currencies),
                    "category_tree": c.category_tree,
                    "labels": c.labels,
                }
                for c in self.channels.values()
            ],
            "categories": [{"code": k, "parent": v} for k, v in self.categories.items()],
            "attribute_options": [
                {"attribute": attr, "code": code, "labels": labels}
                for attr, opts in self.options.items()
                for code, labels in opts.items()
            ],
            "unit_symbols": dict(self.unit_symbols),
        }


def _str(record: dict[str, Any], key: str, kind: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise DefinitionError(
            f"{kind} {record.get('code', '<unknown>')!r}: field {key!r} is required"
        )
    return value


def parse_attribute(record: dict[str, Any]) -> AttributeDef:
    code = _str(record, "code", "attribute")
    return AttributeDef(
        code=code,
        type=_str(record, "type", "attribute"),
        localizable=bool(record.get("localizable", False)),
        scopable=bool(record.get("scopable", False)),
        available_locales=frozenset(record.get("available_locales") or ()),
        decimals_allowed=bool(record.get("decimals_allowed") or False),
        metric_family=record.get("metric_family") or None,
        default_metric_unit=record.get("default_metric_unit") or None,
        group=record.get("group") or None,
        labels=dict(record.get("labels") or {}),
        is_main_identifier=record.get("is_main_identifier") is True,
    )


def resolve_identifier_attribute(override: str | None, defs: CatalogDefinitions) -> str:
    """The attribute that holds a product's identifier in ``values``: the setting
    (``PIMSYNC_IDENTIFIER_ATTRIBUTE``) when given, else what the catalog defines, else
    ``sku`` (Akeneo's default name) for sources that define no attributes."""
    return override or defs.identifier_attribute() or "sku"


def identifier_attribute_problem(attribute: str, defs: CatalogDefinitions) -> str | None:
    """Why ``attribute`` cannot be where the PIM keeps its SKUs (None: it can). Checked
    against the definitions when they list attributes: a wrong setting would otherwise make
    every product look like one without an identifier."""
    if not defs.attributes:
        return None
    found = defs.attributes.get(attribute)
    if found is not None and found.type == IDENTIFIER_TYPE:
        return None
    actual = defs.identifier_attribute()
    return (
        f"the identifier attribute {attribute!r} is not one of the PIM's identifier attributes "
        f"({actual!r} is; fix or unset PIMSYNC_IDENTIFIER_ATTRIBUTE)"
        if actual
        else f"the identifier attribute {attribute!r} is not an identifier attribute of the PIM"
    )


def parse_family(record: dict[str, Any]) -> FamilyDef:
    code = _str(record, "code", "family")
    reqs = record.get("attribute_requirements") or {}
    if not isinstance(reqs, dict):
        raise DefinitionError(f"family {code!r}: attribute_requirements must be an object")
    return FamilyDef(
        code=code,
        attributes=tuple(record.get("attributes") or ()),
        requirements={ch: tuple(attrs) for ch, attrs in reqs.items()},
        attribute_as_label=record.get("attribute_as_label"),
        labels=dict(record.get("labels") or {}),
    )


def parse_pim_channel(record: dict[str, Any]) -> PimChannel:
    code = _str(record, "code", "channel")
    return PimChannel(
        code=code,
        locales=tuple(record.get("locales") or ()),
        currencies=tuple(record.get("currencies") or ()),
        category_tree=record.get("category_tree"),
        labels=dict(record.get("labels") or {}),
    )


def build_definitions(
    attributes: Iterable[dict[str, Any]] = (),
    families: Iterable[dict[str, Any]] = (),
    channels: Iterable[dict[str, Any]] = (),
    categories: Iterable[dict[str, Any]] = (),
    options: Iterable[dict[str, Any]] = (),
    unit_symbols: dict[str, str] | None = None,
) -> CatalogDefinitions:
    defs = CatalogDefinitions()
    for rec in attributes:
        a = parse_attribute(rec)
        defs.attributes[a.code] = a
    for rec in families:
        f = parse_family(rec)
        defs.families[f.code] = f
    for rec in channels:
        c = parse_pim_channel(rec)
        defs.channels[c.code] = c
    for rec in categories:
        defs.categories[_str(rec, "code", "category")] = rec.get("parent") or None
    for rec in options:
        attr = _str(rec, "attribute", "attribute option")
        defs.options.setdefault(attr, {})[_str(rec, "code", "attribute option")] = dict(
            rec.get("labels") or {}
        )
    defs.unit_symbols.update(DEFAULT_UNIT_SYMBOLS)
    defs.unit_symbols.update(unit_symbols or {})
    return defs


def definitions_from_dict(data: dict[str, Any]) -> CatalogDefinitions:
    return build_definitions(
        attributes=data.get("attributes", ()),
        families=data.get("families", ()),
        channels=data.get("channels", ()),
        categories=data.get("categories", ()),
        options=data.get("attribute_options", ()),
        unit_symbols=data.get("unit_symbols"),
    )


# Symbols of the units most catalogs use; a catalog's own measurement families override them.
DEFAULT_UNIT_SYMBOLS: dict[str, str] = {
    "MILLIGRAM": "mg",
    "GRAM": "g",
    "KILOGRAM": "kg",
    "TON": "t",
    "POUND": "lb",
    "OUNCE": "oz",
    "MILLIMETER": "mm",
    "CENTIMETER": "cm",
    "METER": "m",
    "KILOMETER": "km",
    "INCH": "in",
    "FOOT": "ft",
    "MILLILITER": "ml",
    "LITER": "l",
    "CUBIC_CENTIMETER": "cm³",
    "WATT": "W",
    "KILOWATT": "kW",
    "VOLT": "V",
    "MILLIAMPERE": "mA",
    "AMPERE": "A",
    "HERTZ": "Hz",
    "KILOHERTZ": "kHz",
    "MEGAHERTZ": "MHz",
    "GIGAHERTZ": "GHz",
    "BYTE": "B",
    "KILOBYTE": "kB",
    "MEGABYTE": "MB",
    "GIGABYTE": "GB",
    "TERABYTE": "TB",
    "SECOND": "s",
    "MILLISECOND": "ms",
    "MINUTE": "min",
    "HOUR": "h",
    "CELSIUS": "°C",
    "DECIBEL": "dB",
    "MILLIAMPEREHOUR": "mAh",
}
