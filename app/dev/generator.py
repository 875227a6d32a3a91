"""A generator of large, realistic catalogs with a fixed seed (and the bundled sample catalog).

Modelled on a consumer-electronics-and-more catalog published to four channels: a German
storefront (de_DE, EUR), an Austrian one (de_AT falling back to de_DE, EUR), a UK marketplace
(en_GB, GBP) and a B2B portal (en_US, EUR, with hazmat class and customs tariff numbers).

Every product carries ~200 attributes: ~40 shared ones (names, descriptions, SEO texts,
brand, dimensions as metrics, prices, compliance data, media references) and ~165 technical
specs of its family (text, numbers, metrics, booleans, simple and multi selects, some
localizable). A few products are deliberately incomplete, disabled, dangerous goods or carry
an attribute no contract maps yet (drift), so every outcome of a sync shows up.

Product ``i`` depends only on ``(seed, i)``: any product can be generated alone, in any
order, by any process (the reference PIM and the benchmarks rely on it).
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.pim.catalog import CatalogDefinitions, definitions_from_dict
from app.pim.files import write_catalog_dir
from app.pim.source import Page

GENERATOR_VERSION = 1
SAMPLE_COUNT = 240
SAMPLE_SEED = 7

PIM_LOCALES = ("de_DE", "en_GB", "en_US", "fr_FR")
PIM_CHANNELS = {
    "ecommerce": {"locales": ["de_DE", "de_AT", "en_GB", "en_US"], "currencies": ["EUR", "GBP"]},
    "b2b": {"locales": ["en_US", "de_DE"], "currencies": ["EUR"]},
}
CURRENCIES = ("EUR", "GBP", "USD")
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)

# family -> (department, has product models)
FAMILIES: dict[str, tuple[str, bool]] = {
    "laptops": ("electronics", False),
    "monitors": ("electronics", False),
    "smartphones": ("electronics", False),
    "cameras": ("electronics", False),
    "kitchen_appliances": ("home", False),
    "power_tools": ("tools", False),
    "apparel": ("fashion", True),
    "shoes": ("fashion", True),
}
SPECS_PER_FAMILY = 165
SPEC_KINDS = (
    "text",
    "number",
    "metric",
    "boolean",
    "simpleselect",
    "text_loc",
    "number_dec",
    "multiselect",
    "metric",
    "simpleselect",
    "text",
    "number",
)
METRIC_UNITS = (
    ("Weight", "GRAM"),
    ("Length", "MILLIMETER"),
    ("Power", "WATT"),
    ("Frequency", "MEGAHERTZ"),
    ("Binary", "GIGABYTE"),
    ("Voltage", "VOLT"),
)
WORDS = [
    "robust",
    "compact",
    "precise",
    "quiet",
    "efficient",
    "premium",
    "modular",
    "durable",
    "bright",
    "sleek",
    "ergonomic",
    "wireless",
    "portable",
    "smart",
    "fast",
    "reliable",
    "lightweight",
    "versatile",
    "powerful",
    "classic",
]
NOUNS = [
    "design",
    "finish",
    "housing",
    "frame",
    "motor",
    "panel",
    "sensor",
    "display",
    "lens",
    "battery",
    "sole",
    "fabric",
]
LOCALE_WORDS = {
    "de_DE": ("Qualität", "für jeden Tag", "langlebig und leise"),
    "de_AT": ("Qualität aus Österreich", "für jeden Tag", "robust und leise"),
    "en_GB": ("quality", "for every day", "hard-wearing and quiet"),
    "en_US": ("quality", "for everyday use", "durable and quiet"),
    "fr_FR": ("qualité", "pour tous les jours", "durable et silencieux"),
}
BRANDS = [f"brand_{i:02d}" for i in range(25)]
COLORS = [
    "black",
    "white",
    "silver",
    "grey",
    "red",
    "blue",
    "green",
    "yellow",
    "navy",
    "beige",
    "pink",
    "brown",
]
MATERIALS = [
    "aluminium",
    "steel",
    "plastic",
    "glass",
    "cotton",
    "polyester",
    "leather",
    "wool",
    "wood",
    "ceramic",
]
FEATURES = [f"feature_{i:02d}" for i in range(20)]
CERTIFICATIONS = ["ce", "rohs", "weee", "fcc", "tuv", "gs", "energy_star", "ukca"]
ENERGY = ["a", "b", "c", "d", "e", "f", "g"]
COUNTRIES = ["de", "at", "cn", "tw", "vn", "pl", "it", "pt", "us", "jp"]
HAZMAT = ["none", "class_2", "class_3", "class_8", "class_9"]
SIZES = ["xs", "s", "m", "l", "xl", "xxl"]

COMMON_ATTRIBUTES: list[dict[str, Any]] = [
    {"code": "sku", "type": "pim_catalog_identifier"},
    {"code": "name", "type": "pim_catalog_text", "localizable": True},
    {"code": "description", "type": "pim_catalog_textarea", "localizable": True, "scopable": True},
    {
        "code": "short_description",
        "type": "pim_catalog_textarea",
        "localizable": True,
        "scopable": True,
    },
    {"code": "meta_title", "type": "pim_catalog_text", "localizable": True},
    {"code": "meta_description", "type": "pim_catalog_textarea", "localizable": True},
    {"code": "keywords", "type": "pim_catalog_text", "localizable": True},
    {"code": "safety_warnings", "type": "pim_catalog_textarea", "localizable": True},
    {"code": "brand", "type": "pim_catalog_simpleselect"},
    {"code": "manufacturer", "type": "pim_catalog_text"},
    {"code": "mpn", "type": "pim_catalog_text"},
    {"code": "ean", "type": "pim_catalog_text"},
    {"code": "color", "type": "pim_catalog_simpleselect"},
    {"code": "material", "type": "pim_catalog_simpleselect"},
    {"code": "features", "type": "pim_catalog_multiselect"},
    {"code": "certifications", "type": "pim_catalog_multiselect"},
    {
        "code": "weight",
        "type": "pim_catalog_metric",
        "metric_family": "Weight",
        "default_metric_unit": "KILOGRAM",
        "decimals_allowed": True,
    },
    {
        "code": "width",
        "type": "pim_catalog_metric",
        "metric_family": "Length",
        "default_metric_unit": "CENTIMETER",
        "decimals_allowed": True,
    },
    {
        "code": "height",
        "type": "pim_catalog_metric",
        "metric_family": "Length",
        "default_metric_unit": "CENTIMETER",
        "decimals_allowed": True,
    },
    {
        "code": "depth",
        "type": "pim_catalog_metric",
        "metric_family": "Length",
        "default_metric_unit": "CENTIMETER",
        "decimals_allowed": True,
    },
    {"code": "release_date", "type": "pim_catalog_date"},
    {"code": "warranty_years", "type": "pim_catalog_number"},
    {"code": "energy_class", "type": "pim_catalog_simpleselect"},
    {"code": "country_of_origin", "type": "pim_catalog_simpleselect"},
    {"code": "battery_included", "type": "pim_catalog_boolean"},
    {"code": "eco_friendly", "type": "pim_catalog_boolean"},
    {"code": "picture", "type": "pim_catalog_image"},
    {"code": "image_2", "type": "pim_catalog_image"},
    {"code": "user_manual", "type": "pim_catalog_file"},
    {"code": "price", "type": "pim_catalog_price_collection", "decimals_allowed": True},
    {"code": "hazmat_class", "type": "pim_catalog_simpleselect"},
    {"code": "un_number", "type": "pim_catalog_text"},
    {"code": "customs_tariff_number", "type": "pim_catalog_text"},
    {"code": "b2b_min_order_qty", "type": "pim_catalog_number"},
    {"code": "b2b_pack_size", "type": "pim_catalog_number"},
    {"code": "datasheet_url", "type": "pim_catalog_text"},
    {"code": "clothing_size", "type": "pim_catalog_simpleselect"},
    # Added to the PIM "last Tuesday": no contract maps it yet (drift).
    {"code": "sustainability_score", "type": "pim_catalog_number"},
]
COMMON_OPTIONS = {
    "brand": BRANDS,
    "color": COLORS,
    "material": MATERIALS,
    "features": FEATURES,
    "certifications": CERTIFICATIONS,
    "energy_class": ENERGY,
    "country_of_origin": COUNTRIES,
    "hazmat_class": HAZMAT,
    "clothing_size": SIZES,
}


def _spec_code(family: str, n: int) -> str:
    return f"{family}_spec_{n:03d}"


def _spec_kind(n: int) -> str:
    return SPEC_KINDS[n % len(SPEC_KINDS)]


def _spec_definition(family: str, n: int) -> dict[str, Any]:
    code, kind = _spec_code(family, n), _spec_kind(n)
    base: dict[str, Any] = {"code": code, "group": f"{family}_specs"}
    if kind in ("text", "text_loc"):
        base.update(type="pim_catalog_text", localizable=kind == "text_loc")
    elif kind in ("number", "number_dec"):
        base.update(type="pim_catalog_number", decimals_allowed=kind == "number_dec")
    elif kind == "metric":
        fam, unit = METRIC_UNITS[n % len(METRIC_UNITS)]
        base.update(
            type="pim_catalog_metric",
            metric_family=fam,
            default_metric_unit=unit,
            decimals_allowed=True,
        )
    elif kind == "boolean":
        base.update(type="pim_catalog_boolean")
    elif kind == "simpleselect":
        base.update(type="pim_catalog_simpleselect")
    else:
        base.update(type="pim_catalog_multiselect")
    return base


def _labels(code: str) -> dict[str, str]:
    pretty = code.replace("_", " ")
    return {
        "en_US": pretty.title(),
        "en_GB": pretty.title(),
        "de_DE": pretty.capitalize(),
        "fr_FR": pretty.capitalize(),
    }


def generated_definitions() -> CatalogDefinitions:
    return definitions_from_dict(definitions_dict())


def definitions_dict() -> dict[str, Any]:
    attributes = [dict(a, labels=_labels(a["code"])) for a in COMMON_ATTRIBUTES]
    options = [
        {"attribute": attr, "code": code, "labels": _labels(code)}
        for attr, codes in COMMON_OPTIONS.items()
        for code in codes
    ]
    families = []
    categories = [{"code": "master", "parent": None}, {"code": "b2b", "parent": None}]
    for dept in sorted({d for d, _ in FAMILIES.values()}):
        categories.append({"code": f"master_{dept}", "parent": "master"})
        categories.append({"code": f"b2b_{dept}", "parent": "b2b"})
    for family, (dept, _models) in FAMILIES.items():
        specs = [_spec_definition(family, n) for n in range(SPECS_PER_FAMILY)]
        attributes.extend(dict(s, labels=_labels(s["code"])) for s in specs)
        for s in specs:
            if s["type"] in ("pim_catalog_simpleselect", "pim_catalog_multiselect"):
                options.extend(
                    {"attribute": s["code"], "code": f"opt_{k}", "labels": _labels(f"opt {k}")}
                    for k in range(6)
                )
        codes = [a["code"] for a in COMMON_ATTRIBUTES] + [s["code"] for s in specs]
        families.append(
            {
                "code": family,
                "attributes": codes,
                "attribute_as_label": "name",
                "attribute_requirements": {
                    "ecommerce": [
                        "sku",
                        "name",
                        "description",
                        "brand",
                        "weight",
                        _spec_code(family, 0),
                        _spec_code(family, 1),
                    ],
                    "b2b": [
                        "sku",
                        "name",
                        "description",
                        "mpn",
                        "hazmat_class",
                        "customs_tariff_number",
                    ],
                },
                "labels": _labels(family),
            }
        )
        for k in range(3):
            categories.append({"code": f"master_{family}_{k}", "parent": f"master_{dept}"})
    channels = [
        {
            "code": code,
            "locales": spec["locales"],
            "currencies": spec["currencies"],
            "category_tree": "master",
            "labels": _labels(code),
        }
        for code, spec in PIM_CHANNELS.items()
    ]
    return {
        "attributes": attributes,
        "families": families,
        "channels": channels,
        "categories": categories,
        "attribute_options": options,
    }


def _v(data: Any, locale: str | None = None, scope: str | None = None) -> dict[str, Any]:
    return {"locale": locale, "scope": scope, "data": data}


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _dec(value: float, places: int = 4) -> str:
    return f"{value:.{places}f}"


def sku_of(i: int) -> str:
    return f"GEN-{i:07d}"


def index_of(sku: str) -> int | None:
    if not sku.startswith("GEN-"):
        return None
    try:
        return int(sku[4:])
    except ValueError:
        return None


def family_of(i: int) -> str:
    return list(FAMILIES)[i % len(FAMILIES)]


def updated_of(i: int) -> datetime:
    return BASE_TIME + timedelta(seconds=37 * i)


def _models_of(i: int) -> tuple[str, str] | None:
    """(root model, sub-model) codes of product i, or None for a simple product."""
    family = family_of(i)
    if not FAMILIES[family][1] or (i // len(FAMILIES)) % 5 == 0:
        return None
    group = i // (len(FAMILIES) * 6)  # six sizes per colour
    colour = (i // len(FAMILIES)) % 2
    root = f"model_{family}_{group}"
    return root, f"{root}_{COLORS[colour]}"


def _marketing_values(rng: random.Random, sku: str, family: str) -> dict[str, list[dict[str, Any]]]:
    values: dict[str, list[dict[str, Any]]] = {}
    title = f"{rng.choice(WORDS).title()} {family.replace('_', ' ')} {rng.randint(100, 999)}"
    values["name"] = [_v(f"{title} {LOCALE_WORDS[loc][0]}", loc) for loc in PIM_LOCALES]
    for attr, size in (("description", 40), ("short_description", 12)):
        values[attr] = [
            _v(f"<p>{_text(rng, size)} — {LOCALE_WORDS[loc][2]}.</p>", loc, scope)
            for loc in PIM_LOCALES
            for scope in PIM_CHANNELS
        ]
    values["meta_title"] = [_v(f"{title} | {LOCALE_WORDS[loc][1]}", loc) for loc in PIM_LOCALES]
    values["meta_description"] = [_v(_text(rng, 20), loc) for loc in PIM_LOCALES]
    values["keywords"] = [_v(", ".join(rng.sample(WORDS, 5)), loc) for loc in PIM_LOCALES]
    values["safety_warnings"] = [_v(_text(rng, 15), loc) for loc in PIM_LOCALES]
    values["brand"] = [_v(rng.choice(BRANDS))]
    values["manufacturer"] = [_v(f"{rng.choice(WORDS).title()} GmbH")]
    values["material"] = [_v(rng.choice(MATERIALS))]
    values["features"] = [_v(sorted(rng.sample(FEATURES, rng.randint(1, 4))))]
    values["certifications"] = [_v(sorted(rng.sample(CERTIFICATIONS, rng.randint(1, 3))))]
    return values


def _spec_values(rng: random.Random, family: str) -> dict[str, list[dict[str, Any]]]:
    values: dict[str, list[dict[str, Any]]] = {}
    for n in range(SPECS_PER_FAMILY):
        if rng.random() < 0.04:  # real catalogs are never fully filled
            continue
        code, kind = _spec_code(family, n), _spec_kind(n)
        if kind == "text":
            values[code] = [_v(_text(rng, 3))]
        elif kind == "text_loc":
            values[code] = [
                _v(f"{_text(rng, 2)} {LOCALE_WORDS[loc][0]}", loc) for loc in PIM_LOCALES
            ]
        elif kind == "number":
            values[code] = [_v(rng.randint(1, 5000))]
        elif kind == "number_dec":
            values[code] = [_v(_dec(rng.uniform(0, 500)))]
        elif kind == "metric":
            _fam, unit = METRIC_UNITS[n % len(METRIC_UNITS)]
            values[code] = [_v({"amount": _dec(rng.uniform(0.1, 2000)), "unit": unit})]
        elif kind == "boolean":
            values[code] = [_v(rng.random() < 0.5)]
        elif kind == "simpleselect":
            values[code] = [_v(f"opt_{rng.randrange(6)}")]
        else:
            values[code] = [_v(sorted(f"opt_{k}" for k in rng.sample(range(6), rng.randint(1, 3))))]
    return values


def _own_values(rng: random.Random, i: int, sku: str) -> dict[str, list[dict[str, Any]]]:
    values: dict[str, list[dict[str, Any]]] = {"sku": [_v(sku)]}
    values["mpn"] = [_v(f"MPN-{rng.randint(10_000, 99_999)}-{i}")]
    values["ean"] = [_v(f"{4_000_000_000_000 + i * 7 + rng.randint(0, 6)}")]
    values["weight"] = [_v({"amount": _dec(rng.uniform(0.05, 25)), "unit": "KILOGRAM"})]
    for dim in ("width", "height", "depth"):
        values[dim] = [_v({"amount": _dec(rng.uniform(1, 120), 2), "unit": "CENTIMETER"})]
    values["release_date"] = [
        _v((BASE_TIME - timedelta(days=rng.randint(0, 1500))).strftime("%Y-%m-%dT00:00:00+00:00"))
    ]
    values["warranty_years"] = [_v(rng.choice((1, 2, 2, 3, 5)))]
    values["energy_class"] = [_v(rng.choice(ENERGY))]
    values["country_of_origin"] = [_v(rng.choice(COUNTRIES))]
    values["battery_included"] = [_v(rng.random() < 0.3)]
    values["eco_friendly"] = [_v(rng.random() < 0.4)]
    values["picture"] = [_v(f"files/{sku}/picture.jpg")]
    values["image_2"] = [_v(f"files/{sku}/detail.jpg")]
    values["user_manual"] = [_v(f"files/{sku}/manual.pdf")]
    base = rng.uniform(9, 2500)
    values["price"] = [
        _v(
            [
                {"amount": _dec(base, 2), "currency": "EUR"},
                {"amount": _dec(base * 0.86, 2), "currency": "GBP"},
                {"amount": _dec(base * 1.08, 2), "currency": "USD"},
            ]
        )
    ]
    hazmat = rng.choice(HAZMAT[1:]) if rng.random() < 0.10 else "none"
    values["hazmat_class"] = [_v(hazmat)]
    if hazmat != "none":
        values["un_number"] = [_v(f"UN{rng.randint(1000, 3500)}")]
    values["customs_tariff_number"] = [_v(f"{rng.randint(84_000_000, 95_999_999)}")]
    values["b2b_min_order_qty"] = [_v(rng.choice((1, 5, 10, 25)))]
    values["b2b_pack_size"] = [_v(rng.choice((1, 2, 6, 12)))]
    values["datasheet_url"] = [_v(f"https://cdn.example.com/datasheets/{sku}.pdf")]
    if rng.random() < 0.15:  # an Austrian name where marketing wrote one
        values.setdefault("name", []).append(_v(f"{sku} {LOCALE_WORDS['de_AT'][0]}", "de_AT"))
    if rng.random() < 0.10:
        values["sustainability_score"] = [_v(rng.randint(1, 100))]
    return values


def _apply_gaps(rng: random.Random, values: dict[str, list[dict[str, Any]]]) -> None:
    """Make some products incomplete for some channels, as in any real catalog."""
    roll = rng.random()
    if roll < 0.05:  # German description not written yet: DE and AT storefronts skip it
        values["description"] = [e for e in values.get("description", []) if e["locale"] != "de_DE"]
    elif roll < 0.08:  # no brand: incomplete everywhere ecommerce
        values.pop("brand", None)
    elif roll < 0.11:  # no tariff number: the B2B portal cannot sell it
        values.pop("customs_tariff_number", None)
    elif roll < 0.13:  # no English name at all: UK falls back to nothing
        values["name"] = [e for e in values.get("name", []) if not e["locale"].startswith("en_")]


def _merge(*layers: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for layer in layers:
        for attr, entries in layer.items():
            slots = {(e["locale"], e["scope"]): e for e in out.get(attr, [])}
            for e in entries:
                slots[(e["locale"], e["scope"])] = e
            out[attr] = list(slots.values())
    return out


def _root_values(seed: int, root: str, family: str) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(f"{seed}:model:{root}")
    return {**_marketing_values(rng, root, family), **_spec_values(rng, family)}


def _sub_values(seed: int, sub: str) -> dict[str, list[dict[str, Any]]]:
    return {"color": [_v(sub.rsplit("_", 1)[1])]}


def product(i: int, seed: int = 42) -> dict[str, Any]:
    """Product ``i`` of the catalog generated with ``seed``, in Akeneo standard format."""
    rng = random.Random(f"{seed}:{i}")
    sku, family = sku_of(i), family_of(i)
    dept = FAMILIES[family][0]
    models = _models_of(i)
    own = _own_values(rng, i, sku)
    if models is None:
        shared = {**_marketing_values(rng, sku, family), **_spec_values(rng, family)}
        shared["color"] = [_v(rng.choice(COLORS))]
        values = _merge(shared, own)
        parent = root_parent = None
    else:
        root, sub = models
        own["clothing_size"] = [_v(SIZES[(i // len(FAMILIES)) % len(SIZES)])]
        values = _merge(_root_values(seed, root, family), _sub_values(seed, sub), own)
        parent, root_parent = sub, root
    _apply_gaps(rng, values)
    categories = [f"master_{family}_{rng.randrange(3)}"]
    if rng.random() < 0.7:
        categories.append(f"b2b_{dept}")
    return {
        "identifier": sku,
        "uuid": _uuid(seed, i),
        "family": family,
        "parent": parent,
        "root_parent": root_parent,
        "groups": [],
        "categories": categories,
        "enabled": rng.random() >= 0.03,
        "values": values,
        "associations": {},
        "created": BASE_TIME.isoformat(),
        "updated": updated_of(i).isoformat(),
    }


def _uuid(seed: int, i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pimsync-generated/{seed}/{i}"))


def model(code: str, seed: int = 42) -> dict[str, Any] | None:
    """The product model ``code`` (root or sub-model), or None if the catalog has no such model."""
    if not code.startswith("model_"):
        return None
    parts = code.split("_")
    for family in FAMILIES:
        prefix = f"model_{family}_"
        if code.startswith(prefix):
            rest = code[len(prefix) :].split("_")
            if not rest or not rest[0].isdigit():
                return None
            root = f"{prefix}{rest[0]}"
            if len(rest) == 1:
                return {
                    "code": root,
                    "family": family,
                    "family_variant": f"{family}_color_size",
                    "parent": None,
                    "categories": [f"master_{family}_0"],
                    "values": _root_values(seed, root, family),
                    "updated": BASE_TIME.isoformat(),
                }
            if len(rest) == 2 and rest[1] in COLORS:
                return {
                    "code": code,
                    "family": family,
                    "family_variant": f"{family}_color_size",
                    "parent": root,
                    "categories": [],
                    "values": _sub_values(seed, code),
                    "updated": BASE_TIME.isoformat(),
                }
    del parts
    return None


def iter_products(count: int, seed: int = 42, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, count):
        yield product(i, seed)


def iter_models(count: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for i in range(count):
        models = _models_of(i)
        if models is None:
            continue
        for code in models:
            if code not in seen:
                seen.add(code)
                m = model(code, seed)
                if m is not None:
                    yield m


class GeneratedSource:
    """A PimSource over the generated catalog: nothing held in memory, product by product."""

    def __init__(self, count: int, seed: int = 42) -> None:
        if count < 0:
            raise ValueError("a generated catalog needs a product count >= 0")
        self.count, self.seed = count, seed
        self.name = f"generated:{count}:{seed}"
        self._defs: CatalogDefinitions | None = None

    def definitions(self) -> CatalogDefinitions:
        if self._defs is None:
            self._defs = generated_definitions()
        return self._defs

    def iter_pages(
        self, updated_since: datetime | None = None, page_size: int = 100, resume: str | None = None
    ) -> Iterator[Page]:
        start = int(resume) if resume else 0
        if updated_since is not None:
            # `updated` grows with the index: skip straight to the first newer product.
            delta = (updated_since - BASE_TIME).total_seconds()
            start = max(start, int(delta // 37) + 1 if delta >= 0 else 0)
        i = start
        while i < self.count:
            end = min(i + page_size, self.count)
            # no local keeps the page while suspended (see app.gcpause)
            yield Page(
                items=[product(j, self.seed) for j in range(i, end)],
                next_cursor=str(end) if end < self.count else None,
                total=self.count - start if i == start and resume is None else None,
            )
            i = end

    def get(self, identifier: str) -> dict[str, Any] | None:
        i = index_of(identifier)
        if i is None or not 0 <= i < self.count:
            return None
        return product(i, self.seed)

    def get_model(self, code: str) -> dict[str, Any] | None:
        return model(code, self.seed)

    def iter_models(self) -> Iterator[dict[str, Any]]:
        return iter_models(self.count, self.seed)

    def close(self) -> None:
        return None


def write_generated_catalog(path: Path, count: int, seed: int = 42) -> Path:
    return write_catalog_dir(
        path, generated_definitions(), iter_products(count, seed), iter_models(count, seed)
    )


def sample_catalog_dir(base: Path | None = None) -> Path:
    """The bundled sample catalog, written under ``./.pimsync`` on first use.

    It is generated (fixed seed) rather than committed, and rewritten when the generator
    changes version.
    """
    base = base or Path.cwd() / ".pimsync"
    path = base / f"sample-catalog-v{GENERATOR_VERSION}"
    if not (path / "products.jsonl").exists():
        tmp = base / f".sample-catalog-v{GENERATOR_VERSION}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        write_generated_catalog(tmp, SAMPLE_COUNT, SAMPLE_SEED)
        tmp.rename(path)
    return path
