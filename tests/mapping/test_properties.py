"""Property tests: arbitrary payloads never break parsing, mapping or the unit decision.

- ``parse_product`` returns a ``Product`` or raises ``ProductParseError``, nothing else, and
  whatever it accepts can be hashed and stored (orjson).
- A product that parses maps, for every sample channel and for a contract using every
  transform, to a ``MapResult`` or a ``MappingError`` subclass, never anything else; and
  ``evaluate`` decides a unit without raising.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.channels.completeness import compute_completeness
from app.channels.config import load_channels, parse_channels
from app.config import SAMPLE_DIR
from app.dev import generator
from app.mapping.contract import CompiledContract, ContractStore, parse_contract
from app.mapping.errors import MappingError
from app.mapping.mapper import MappingPlan, MapResult
from app.mapping.transforms import _plain, _plain_amount
from app.ownership import OwnershipTable
from app.pim.product import Product, ProductParseError, content_hash, parse_product
from app.sync.units import ChannelRuntime, UnitOutcome, evaluate

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DEFS = generator.generated_definitions()
CHANNELS = load_channels(SAMPLE_DIR / "channels.yaml")
STORE = ContractStore.load(SAMPLE_DIR / "contracts")

# A contract that uses every transform (and every option of them) on the generated catalog.
EVERY_TRANSFORM = CompiledContract.compile(
    parse_contract(
        {
            "contract": "everything",
            "version": 1,
            "unmapped": "warn",
            "ignore": ["b2b_*"],
            "lookups": {
                "colors": {"black": 1, "white": 2, "red": 3},
                "hazmat": {"none": "", "__default__": "dangerous"},
            },
            "mappings": [
                {"pim": "name", "target": "title", "transform": "localized", "required": True},
                {"pim": "description", "target": "body", "transform": "localized", "of": "direct"},
                {"pim": "short_description", "target": "teaser"},
                {
                    "pim": "meta_title",
                    "target": "seo.title",
                    "transform": "localized",
                    "of": "auto",
                },
                {
                    "pim": "keywords",
                    "target": "seo.keywords",
                    "transform": "localized",
                    "of": "multi_to_csv",
                },
                {"pim": "brand", "target": "brand", "transform": "direct", "labels": True},
                {"pim": "brand", "target": "brand_code"},
                {"pim": "color", "target": "color_id", "transform": "lookup", "table": "colors"},
                {
                    "pim": "color",
                    "target": "color_names",
                    "transform": "localized",
                    "of": "lookup",
                    "table": "colors",
                },
                {
                    "pim": "hazmat_class",
                    "target": "hazmat",
                    "transform": "lookup",
                    "table": "hazmat",
                },
                {
                    "pim": "features",
                    "target": "features",
                    "transform": "multi_to_csv",
                    "labels": True,
                    "separator": "; ",
                },
                {"pim": "certifications", "target": "certs", "transform": "multi_to_csv"},
                {"pim": "weight", "target": "dims.weight", "transform": "metric_to_string"},
                {
                    "pim": "width",
                    "target": "dims.width",
                    "transform": "metric_to_string",
                    "unit": "code",
                    "precision": 1,
                },
                {"pim": "height", "target": "dims.height", "transform": "number", "precision": 3},
                {
                    "pim": "depth",
                    "target": "dims.depth",
                    "transform": "localized",
                    "of": "metric_to_string",
                },
                {"pim": "battery_included", "target": "battery", "transform": "boolean"},
                {"pim": "eco_friendly", "target": "eco", "transform": "localized", "of": "boolean"},
                {
                    "pim": "warranty_years",
                    "target": "warranty",
                    "transform": "number",
                    "precision": 0,
                },
                {"pim": "sustainability_score", "target": "score", "transform": "number"},
                {"pim": "price", "target": "price", "transform": "price", "precision": 2},
                {"pim": "mpn", "target": "mpn", "required": True},
                {"pim": "ean", "target": "ean", "transform": "localized", "of": "number"},
                {"pim": "customs_tariff_number", "target": "customs", "transform": "auto"},
                {"pim": "un_number", "target": "un", "transform": "localized", "of": "price"},
                {"pim": "*_spec_*", "target": "specs.{attribute}", "transform": "auto"},
                {
                    "pim": "x_*",
                    "target": "extra.{attribute}",
                    "transform": "localized",
                    "of": "auto",
                },
                {"target": "slug", "transform": "computed", "function": "slug"},
                {"target": "tax.rate", "transform": "computed", "function": "vat_rate"},
                {"target": "tax.class", "transform": "computed", "function": "tax_class"},
                {"target": "cats", "transform": "computed", "function": "category_codes"},
            ],
        }
    )
)
EVERY_CHANNELS = parse_channels(
    {
        "channels": {
            "every": {
                "pim_scope": "ecommerce",
                "currencies": ["EUR", "GBP"],
                "category_tree": "master",
                "locales": [{"code": "de_AT", "fallback": ["de_DE"]}, "en_GB"],
                "extra": {"vat_rate": 20, "tax_class": "AT"},
            },
            "every_bare": {
                "pim_scope": "b2b",
                "currency": "USD",
                "locales": [{"code": "en_GB", "fallback": ["en_US", "fr_FR"]}],
                "attribute_scope": ["*", "!price", "!width"],
            },
        }
    }
)


def _runtimes() -> list[ChannelRuntime]:
    out = []
    for channel in CHANNELS.values():
        assert channel.contract is not None
        contract = STORE.get(channel.contract.id, channel.contract.version)
        out.append(ChannelRuntime(channel, contract, DEFS, OwnershipTable(), "h"))
    out.append(
        ChannelRuntime(
            CHANNELS["de_storefront"], STORE.get("storefront_de", 2), DEFS, OwnershipTable(), "h"
        )
    )
    for channel in EVERY_CHANNELS.values():
        out.append(ChannelRuntime(channel, EVERY_TRANSFORM, DEFS, OwnershipTable(), "h"))
    return out


RUNTIMES = _runtimes()
# Plans without ownership too (nothing stripped: prices and media reach the transforms).
PLANS_WITHOUT_OWNERSHIP = [MappingPlan(rt.channel, rt.contract, DEFS) for rt in RUNTIMES]

# --- strategies -----------------------------------------------------------------------------------

ATTRIBUTES = [a["code"] for a in generator.COMMON_ATTRIBUTES] + [
    "laptops_spec_000",
    "laptops_spec_001",
    "laptops_spec_002",
    "laptops_spec_003",
    "laptops_spec_004",
    "laptops_spec_005",
    "laptops_spec_006",
    "laptops_spec_007",
    "shoes_spec_010",
    "mystery_spec_1",
    "x_undefined",
    "stock",
    "cost",
    "b2b_note",
    "",
]
LOCALES = [None, None, "de_DE", "de_AT", "en_GB", "en_US", "fr_FR", "", "xx"]
SCOPES = [None, None, "ecommerce", "b2b", "print", ""]
CODES = ["black", "red", "opt_1", "none", "class_3", "brand_01", "feature_02", "", " ", "ß"]
UNITS = ["KILOGRAM", "GRAM", "CENTIMETER", "INCH", "NOPE", "", "ß"]
CURRENCIES = ["EUR", "GBP", "USD", "", "eur"]

texts = st.text(max_size=12)
# Numbers a JSON document holds, and the ones it cannot (parse_product refuses those).
json_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
odd_numbers = st.one_of(
    st.integers(min_value=2**64, max_value=2**70),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
)
numeric_texts = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.sampled_from(
        [
            "12.5000",
            "-0.00",
            ".5",
            "007",
            "1e30",
            "1e400",
            "NaN",
            "Infinity",
            "²",
            "٣",
            " 3 ",
            "1_000",
            "",
            "  ",
            "abc",
            "-",
            ".",
            "0x10",
            "1,5",
        ]
    ),
)
amounts = st.one_of(json_numbers, numeric_texts, st.none(), st.booleans())
# Metrics and prices that parse, malformed ones included (odd amounts, units, currencies).
metrics = st.one_of(
    st.fixed_dictionaries({"amount": amounts, "unit": st.sampled_from(UNITS)}),
    st.fixed_dictionaries({"amount": st.none()}),
    st.fixed_dictionaries(
        {"amount": amounts, "unit": st.sampled_from(UNITS), "extra": st.integers(-5, 5)}
    ),
)
price_collections = st.lists(
    st.one_of(
        st.fixed_dictionaries({"amount": amounts, "currency": st.sampled_from(CURRENCIES)}),
        st.sampled_from(CODES),
    ),
    max_size=4,
)
good_data = st.one_of(
    texts,
    st.sampled_from(CODES),
    json_numbers,
    numeric_texts,
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(CODES), max_size=4),
    metrics,
    price_collections,
)
# Anything at all: what a broken export or a hand-written webhook may send.
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), json_numbers, odd_numbers, texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["amount", "unit", "currency", "data", "x"]), inner, max_size=3
        ),
    ),
    max_leaves=8,
)
good_entries = st.fixed_dictionaries(
    {"locale": st.sampled_from(LOCALES), "scope": st.sampled_from(SCOPES), "data": good_data}
)
good_values = st.dictionaries(
    st.sampled_from(ATTRIBUTES), st.lists(good_entries, min_size=1, max_size=4), max_size=16
)
any_entries = st.one_of(
    good_entries,
    st.fixed_dictionaries({"data": st.one_of(good_data, junk)}),
    st.fixed_dictionaries({"locale": st.sampled_from(LOCALES), "scope": st.sampled_from(SCOPES)}),
    st.fixed_dictionaries({"locale": junk, "scope": junk, "data": junk}),
    junk,
)
any_values = st.dictionaries(
    st.sampled_from(ATTRIBUTES), st.one_of(st.lists(any_entries, max_size=4), junk), max_size=12
)
CATEGORIES = [
    "master",
    "master_electronics",
    "master_laptops_0",
    "b2b",
    "b2b_electronics",
    "nowhere",
]

# Products that mostly parse: well-formed envelopes, values of every (odd) parseable shape.
products = st.fixed_dictionaries(
    {
        "identifier": st.sampled_from(["SKU-1", "GEN-0000001", "ä/ß 1", "日本"]),
        "values": good_values,
        "family": st.sampled_from([*generator.FAMILIES, "unknown"]),
        "categories": st.lists(st.sampled_from(CATEGORIES), max_size=3),
        "enabled": st.sampled_from([True, True, True, False]),
    },
    optional={"parent": st.one_of(st.none(), texts)},
)


def _mutate(i: int, changes: dict[str, list[dict[str, Any]]], drop: list[str]) -> dict[str, Any]:
    raw = generator.product(i)
    for attr in drop:
        raw["values"].pop(attr, None)
    raw["values"].update(changes)
    return raw


# Realistic products with a few values replaced: they reach the mapping step of a unit.
mutated_products = st.builds(
    _mutate,
    st.integers(0, 299),
    st.dictionaries(
        st.sampled_from(ATTRIBUTES), st.lists(good_entries, min_size=1, max_size=3), max_size=4
    ),
    st.lists(st.sampled_from(ATTRIBUTES), max_size=3),
)
mappable = st.one_of(products, mutated_products)
# Anything: the envelope and the values may be broken anywhere.
payloads = st.one_of(
    st.fixed_dictionaries(
        {
            "identifier": st.one_of(st.sampled_from(["SKU-1", "GEN-1"]), texts, st.none(), junk),
            "values": st.one_of(any_values, good_values, junk),
        },
        optional={
            "uuid": st.one_of(texts, junk),
            "family": st.one_of(st.sampled_from(list(generator.FAMILIES)), junk),
            "parent": st.one_of(st.none(), texts, junk),
            "root_parent": st.one_of(st.none(), texts, junk),
            "categories": st.one_of(st.lists(st.sampled_from(CATEGORIES), max_size=3), junk),
            "enabled": st.one_of(st.booleans(), junk),
            "updated": st.one_of(st.just("2026-01-01T00:00:00+01:00"), texts, junk),
        },
    ),
    products,
    mutated_products,
    junk,
)


def _parsed(raw: Any) -> Product | None:
    try:
        return parse_product(raw)
    except ProductParseError:
        return None


# --- properties ----------------------------------------------------------------------------------


def test_warm_plans_on_the_sample_catalog() -> None:
    # Runs first in file order: the shared plans are warmed by realistic products.
    for i in range(40):
        product = parse_product(generator.product(i))
        for rt in RUNTIMES:
            evaluate(product, rt)


@PROPERTY_SETTINGS
@given(payloads)
def test_parse_product_returns_a_product_or_raises_product_parse_error(raw: Any) -> None:
    try:
        product = parse_product(raw)
    except ProductParseError as exc:
        assert exc.field and exc.product_ref
        assert str(exc).startswith(f"product {exc.product_ref!r}: field {exc.field!r}: ")
        return
    assert isinstance(product, Product)
    assert isinstance(product.identifier, str) and product.identifier.strip()
    # whatever is accepted can be stored and hashed (the mirror serialises with orjson)
    assert orjson.loads(orjson.dumps(product.raw))["identifier"] == product.identifier
    assert len(content_hash(product.raw)) == 32


@PROPERTY_SETTINGS
@given(mappable)
def test_mapping_returns_a_result_or_a_mapping_error(raw: dict[str, Any]) -> None:
    product = _parsed(raw)
    if product is None:
        return
    for plan in [rt.plan for rt in RUNTIMES] + PLANS_WITHOUT_OWNERSHIP:
        try:
            result = plan.map(product)
        except MappingError as exc:
            assert str(exc)
            continue
        assert isinstance(result, MapResult)
        assert isinstance(result.doc, dict)
        orjson.dumps(result.doc)  # a document the channel can be sent


@PROPERTY_SETTINGS
@given(mappable)
def test_evaluate_never_raises(raw: dict[str, Any]) -> None:
    product = _parsed(raw)
    if product is None:
        return
    for rt in RUNTIMES:
        outcome = evaluate(product, rt)
        assert isinstance(outcome, UnitOutcome)
        assert outcome.enabled == (outcome.doc is not None)
        completeness = compute_completeness(product, rt.channel, DEFS)
        assert 0 <= completeness.ratio <= 100
        # 100 means complete and nothing else does
        assert completeness.complete == (completeness.ratio == 100)


@PROPERTY_SETTINGS
@given(mappable)
def test_mapping_does_not_depend_on_earlier_products(raw: dict[str, Any]) -> None:
    # A plan compiled on the sample catalog maps a product like a fresh plan does.
    product = _parsed(raw)
    if product is None:
        return
    for rt, fresh in zip(RUNTIMES, _runtimes(), strict=True):
        try:
            expected: Any = fresh.plan.map(product)
        except MappingError as exc:
            expected = (type(exc), str(exc))
        try:
            got: Any = rt.plan.map(product)
        except MappingError as exc:
            got = (type(exc), str(exc))
        assert got == expected


@PROPERTY_SETTINGS
@given(st.from_regex(r"\A-?[0-9]{1,12}(\.[0-9]{0,8})?\Z") | st.from_regex(r"\A-?\.[0-9]{1,6}\Z"))
def test_metric_amount_fast_path_agrees_with_decimal(amount: str) -> None:
    assert _plain_amount(amount) == _plain(Decimal(amount))


@PROPERTY_SETTINGS
@given(products, st.sampled_from(["2020-01-01T00:00:00Z", "2031-05-05T10:00:00+02:00"]))
def test_content_hash_ignores_updated(raw: dict[str, Any], updated: str) -> None:
    product = _parsed(raw)
    if product is None:
        return
    touched = dict(product.raw, updated=updated, created=updated)
    assert content_hash(touched) == content_hash(product.raw)
