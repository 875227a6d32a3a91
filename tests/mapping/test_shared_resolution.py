"""Plans resolve values through the product's indexes and share pure transform results across
channels (issue 18): the documents must be exactly what each channel maps on its own.

The oracles are independent of the new paths: ``Product.value`` (a scan of the entries) for
the indexes, ``_pick`` (the entry-scanning reader the plans used before) for locale chains,
and each channel mapping its own fresh copy of the product (nothing shared) for documents,
compared as JSON bytes, key order included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.channels.config import ChannelConfig, channels_from_pim, load_channels
from app.config import SAMPLE_DIR
from app.dev import generator
from app.mapping import transforms
from app.mapping.contract import CompiledContract, ContractStore
from app.mapping.errors import MappingError, TransformError
from app.mapping.mapper import MappingPlan, _pick, _resolve
from app.ownership import OwnershipTable
from app.pim.catalog import CatalogDefinitions
from app.pim.icecat import IcecatSource
from app.pim.product import Product, is_empty, parse_product
from tests.catalog_builders import make_channel, make_contract, make_product, small_defs, v


def _outcome(plan: MappingPlan, product: Product) -> bytes:
    """Everything a mapping decides, as bytes (document key order included), or its error."""
    try:
        r = plan.map(product)
    except MappingError as exc:
        return f"{type(exc).__name__}: {exc}".encode()
    return orjson.dumps(
        [r.doc, r.drift, r.missing_required, [repr(x) for x in r.violations]],
        default=str,
    )


def _fresh(product: Product) -> Product:
    return parse_product(orjson.loads(orjson.dumps(product.raw)))


def _assert_shared_equals_alone(plans: list[MappingPlan], products: list[Product]) -> int:
    """Each product mapped for every plan on one shared instance (both orders) equals each
    plan mapping a fresh copy on its own; returns how many memo entries were shared."""
    shared = 0
    for product in products:
        alone = [_outcome(plan, _fresh(product)) for plan in plans]
        forward = _fresh(product)
        assert [_outcome(plan, forward) for plan in plans] == alone, product.identifier
        backward = _fresh(product)
        assert [_outcome(plan, backward) for plan in reversed(plans)] == alone[::-1]
        shared += len(forward.memo)
    return shared


# --- the product's indexes --------------------------------------------------------------------


def _check_indexes(product: Product) -> None:
    unlocalized, localized = product.unlocalized(), product.localized()
    slots = {
        (e.get("locale"), e.get("scope"), attr)
        for attr, entries in product.values.items()
        for e in entries
    }
    filled = 0
    for locale, scope, attr in slots:
        expected = product.value(attr, locale, scope)
        held = unlocalized if locale is None else localized
        key = scope if locale is None else (locale, scope)
        got = (held.get(key) or {}).get(attr, "absent")  # type: ignore[call-overload]
        # an empty value (its slot's first entry) is left out: the indexes hold no empty one
        assert got == ("absent" if is_empty(expected) else expected), (attr, locale, scope)
        filled += not is_empty(expected)
    indexed = sum(len(d) for d in unlocalized.values()) + sum(len(d) for d in localized.values())
    assert indexed == filled


def test_the_indexes_hold_what_value_reads() -> None:
    values = {
        "name": [v("TV", "en_US"), v("", "de_DE"), v("Fernseher", "de_DE")],
        "description": [v("web", "en_US", "ecommerce"), v("print", "en_US", "print")],
        "weight": [v({"amount": "2.5", "unit": "KILOGRAM"})],
        "blank": [v("   ", "fr_FR")],
        "no_amount": [v({"amount": " ", "unit": "KILOGRAM"}, "de_DE")],
        "tags": [v([], "en_US")],
        "off": [v(False, "en_US")],
    }
    p = make_product(values)
    _check_indexes(p)
    # the first entry of a slot wins, even an empty one, as in value(): no value there
    assert "name" not in p.localized()[("de_DE", None)]
    assert p.localized()[("fr_FR", None)] == {}
    assert p.localized()[("en_US", "print")] == {"description": "print"}
    assert p.localized()[("en_US", None)]["off"] is False
    assert p.localized() is p.localized()


def test_the_indexes_hold_what_value_reads_on_a_generated_catalog() -> None:
    for raw in generator.iter_products(150, seed=5):
        _check_indexes(parse_product(raw))


# --- locale chains through the indexes ----------------------------------------------------------


def _check_chains(product: Product, defs: CatalogDefinitions, scopes: list[str]) -> int:
    chains: list[tuple[str, ...]] = [
        (),
        ("de_DE",),
        ("en_US",),
        ("fr_FR",),
        ("de_AT", "de_DE"),
        ("en_GB", "en_US"),
        ("fr_FR", "en_US", "de_DE"),
    ]
    checked = 0
    for attr, entries in product.values.items():
        adef = defs.attributes.get(attr)
        if adef is None:
            continue
        for scope in scopes:
            sc = scope if adef.scopable else None
            for chain in chains:
                old = _pick(entries, adef, scope, chain)
                new = _resolve(product.localized(), product.unlocalized(), attr, sc, chain)
                assert new == (None if is_empty(old) else old), (attr, scope, chain)
                checked += 1
    return checked


def test_chains_resolve_as_the_entry_scan_did_on_a_generated_catalog() -> None:
    defs = generator.generated_definitions()
    checked = sum(
        _check_chains(parse_product(raw), defs, ["ecommerce", "b2b"])
        for raw in generator.iter_products(60, seed=9)
    )
    assert checked > 10_000


# --- catalogs: shared results, same documents ---------------------------------------------------


def _sample_plans(defs: CatalogDefinitions) -> list[MappingPlan]:
    channels = load_channels(SAMPLE_DIR / "channels.yaml")
    store = ContractStore.load(SAMPLE_DIR / "contracts")
    plans = []
    for ch in channels.values():
        assert ch.contract is not None
        cc = store.get(ch.contract.id, ch.contract.version)
        plans.append(MappingPlan(ch, cc, defs, OwnershipTable()))
    return plans


def test_the_bundled_channels_map_a_generated_catalog_as_each_did_alone() -> None:
    defs = generator.generated_definitions()
    products = [parse_product(raw) for raw in generator.iter_products(120, seed=21)]
    plans = _sample_plans(defs)
    # twins (another channel code, same scope, locales and contract) share every question
    twins = [
        MappingPlan(
            plan.channel.model_copy(update={"code": plan.channel.code + "_twin"}),
            plan.contract,
            defs,
            OwnershipTable(),
        )
        for plan in plans[:2]
    ]
    shared = _assert_shared_equals_alone([*plans, *twins], products)
    assert shared > 0  # the sharing is exercised, not bypassed


def _icecat_contract() -> CompiledContract:
    """Every transform the plans may share, over icecat's own attributes."""
    return make_contract(
        [
            {"pim": "name", "target": "title", "transform": "localized", "required": True},
            {"pim": "description", "target": "text", "transform": "localized"},
            {"pim": "color", "target": "color", "transform": "direct", "labels": True},
            {"pim": "color", "target": "color_code"},
            {"pim": "weight", "target": "weight", "transform": "metric_to_string"},
            {"pim": "weight", "target": "kg", "transform": "number", "precision": 1},
            {"pim": "price", "target": "price", "transform": "price"},
            {"pim": "*", "target": "all.{attribute}", "transform": "auto"},
        ],
        unmapped="warn",
    )


def _icecat(icecat_dir: Path) -> Iterator[tuple[CatalogDefinitions, list[Product]]]:
    source = IcecatSource(icecat_dir)
    try:
        defs = source.definitions()
        items = [item for page in source.iter_pages() for item in page.items]
        yield defs, [parse_product(item) for item in items]
    finally:
        source.close()


@pytest.mark.icecat
def test_icecat_channels_map_its_catalog_as_each_did_alone(icecat_dir: Path) -> None:
    for defs, products in _icecat(icecat_dir):
        assert len(products) > 1000
        contract = _icecat_contract()
        channels: list[ChannelConfig] = list(channels_from_pim(defs).values())
        plans = [MappingPlan(ch, contract, defs, OwnershipTable()) for ch in channels]
        twins = [
            MappingPlan(ch.model_copy(update={"code": ch.code + "_twin"}), contract, defs)
            for ch in channels
        ]
        shared = _assert_shared_equals_alone([*plans, *twins], products)
        assert shared > 0
        scopes = [ch.pim_scope for ch in channels]
        assert sum(_check_chains(p, defs, scopes) for p in products[:200]) > 1000


# --- what is never shared -----------------------------------------------------------------------


def test_an_error_is_each_channels_own_and_lookup_tables_are_not_confused() -> None:
    """Two contracts with the same lookup table name: one maps an unknown code to its default,
    the other refuses it, naming its own contract; a failed transform is not remembered."""
    values = {"brand": [v("acme")]}
    channel = make_channel()
    mapping = [{"pim": "brand", "target": "brand", "transform": "lookup", "table": "brands"}]
    lenient = make_contract(mapping, lookups={"brands": {"__default__": "other"}})
    strict = make_contract(mapping, contract="strict", lookups={"brands": {"x": "y"}})
    defs = small_defs()
    a, b = MappingPlan(channel, lenient, defs), MappingPlan(channel, strict, defs)
    for first, second in ((a, b), (b, a)):
        product = make_product(values)
        outcomes: dict[str, Any] = {}
        for plan in (first, second, first, second):
            try:
                outcomes[plan.contract.key] = plan.map(product).doc
            except TransformError as exc:
                outcomes[plan.contract.key] = exc.contract
        assert outcomes == {"web@3": {"brand": "other"}, "strict@3": "strict@3"}


def test_a_transform_replaced_in_the_registry_is_not_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    original = transforms.TRANSFORMS["boolean"]

    def counting(data: Any, ctx: Any, spec: Any) -> Any:
        calls.append(ctx.channel.code)
        return original(data, ctx, spec)

    monkeypatch.setitem(transforms.TRANSFORMS, "boolean", counting)
    contract = make_contract([{"pim": "active", "target": "on", "transform": "boolean"}])
    defs = small_defs()
    plans = [MappingPlan(make_channel(code), contract, defs) for code in ("one", "two")]
    product = make_product({"active": [v("yes")]})
    assert [p.map(product).doc for p in plans] == [{"on": True}, {"on": True}]
    assert calls == ["one", "two"]  # each channel called it: nothing kept for the other


def test_a_shared_localized_value_is_each_documents_own() -> None:
    contract = make_contract([{"pim": "name", "target": "title", "transform": "localized"}])
    defs = small_defs()
    plans = [MappingPlan(make_channel(code), contract, defs) for code in ("one", "two")]
    product = make_product({"name": [v("Name", "de_DE")]})
    first, second = (p.map(product).doc for p in plans)
    assert first == second == {"title": {"de_DE": "Name"}}
    assert first["title"] is not second["title"]


def test_plans_over_other_catalog_definitions_share_nothing() -> None:
    """Unit symbols live in the definitions: two sets of definitions, two answers, even for
    the same question about the same product (and a copy of a set is another set)."""
    import dataclasses

    contract = make_contract([{"pim": "weight", "target": "w", "transform": "metric_to_string"}])
    grams = small_defs()
    grams.unit_symbols = {"KILOGRAM": "kg"}
    other = dataclasses.replace(grams, unit_symbols={"KILOGRAM": "Kilo"})
    assert other.token != grams.token
    plans = [MappingPlan(make_channel(), contract, d) for d in (grams, other, grams)]
    product = make_product({"weight": [v({"amount": "2.5000", "unit": "KILOGRAM"})]})
    docs = [p.map(product).doc for p in plans]
    assert docs == [{"w": "2.5 kg"}, {"w": "2.5 Kilo"}, {"w": "2.5 kg"}]
