"""Plans map most attributes in groups (issue 18): read from one of the product's indexes and
placed all at once, instead of one Python step per attribute and per channel.

The oracle is the same plan mapping in the product's order, one attribute at a time (its
grouping turned off), the way every plan mapped before: the document, the drift, the missing
required targets, the violations and the error must be the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.channels.config import ChannelConfig, channels_from_pim
from app.dev import generator
from app.mapping.errors import MappingError
from app.mapping.mapper import MappingPlan, MapResult
from app.ownership import OwnershipTable
from app.pim.catalog import CatalogDefinitions
from app.pim.product import Product, parse_product
from tests.catalog_builders import make_channel, make_contract, make_product, small_defs, v
from tests.mapping.test_shared_resolution import _icecat, _icecat_contract, _sample_plans


def _in_order(plan: MappingPlan) -> MappingPlan:
    """The same plan, mapping every attribute in the product's order."""
    twin = MappingPlan(plan.channel, plan.contract, plan.defs, plan.ownership, plan.source)
    twin._grouping = False
    return twin


def _result(plan: MappingPlan, product: Product) -> Any:
    try:
        r: MapResult = plan.map(product)
    except MappingError as exc:
        return (type(exc).__name__, str(exc))
    return (r.doc, r.drift, r.missing_required, [repr(x) for x in r.violations])


def _assert_grouped_equals_in_order(plans: list[MappingPlan], products: list[Product]) -> int:
    """Every product, every plan: grouped equals in order. Returns the attributes grouped."""
    oracles = [_in_order(plan) for plan in plans]
    for product in products:
        for plan, oracle in zip(plans, oracles, strict=True):
            # a fresh copy for the oracle: nothing the grouped plan kept on the product helps it
            fresh = parse_product(dict(product.raw))
            assert _result(plan, product) == _result(oracle, fresh), (
                plan.channel.code,
                product.identifier,
            )
    for plan in plans:
        assert plan._grouping, plan.channel.code  # the groups were used, not bypassed
    return sum(len(g.attrs) for plan in plans for g in plan._group_list)


def test_the_bundled_channels_map_a_generated_catalog_in_groups_as_in_order() -> None:
    defs = generator.generated_definitions()
    products = [parse_product(raw) for raw in generator.iter_products(150, seed=33)]
    plans = _sample_plans(defs)
    assert _assert_grouped_equals_in_order(plans, products) > 100
    # the sample's channels have one locale each: their localized values are grouped too
    assert all(any(g.source == 2 for g in plan._group_list) for plan in plans)


@pytest.mark.icecat
def test_icecat_channels_map_its_catalog_in_groups_as_in_order(icecat_dir: Path) -> None:
    for defs, products in _icecat(icecat_dir):
        contract = _icecat_contract()
        channels: list[ChannelConfig] = list(channels_from_pim(defs).values())
        plans = [MappingPlan(ch, contract, defs, OwnershipTable()) for ch in channels]
        # one locale each: the localized values go in groups as well
        single = [
            MappingPlan(ch.model_copy(update={"locales": ch.locales[:1]}), contract, defs)
            for ch in channels
        ]
        assert _assert_grouped_equals_in_order([*plans, *single], products[:600]) > 100


def _defs() -> CatalogDefinitions:
    return small_defs()


def test_an_error_is_the_first_in_the_products_order() -> None:
    """Two values no transform accepts: the error names the first in the product's order,
    grouped or not, whichever group its attribute sits in."""
    contract = make_contract(
        [
            {"pim": "weight", "target": "specs.w", "transform": "metric_to_string"},
            {"pim": "brand", "target": "brand", "transform": "lookup", "table": "brands"},
        ],
        lookups={"brands": {"acme": "ACME"}},
    )
    plan = MappingPlan(make_channel(), contract, _defs())
    bad_weight = [v({"amount": "heavy", "unit": "KILOGRAM"})]
    for values in (
        {"weight": bad_weight, "brand": [v("nobody")]},
        {"brand": [v("nobody")], "weight": bad_weight},
    ):
        product = make_product(values)
        got = _result(plan, product)
        assert got == _result(_in_order(plan), make_product(values))
        assert got[0] == "TransformError" and repr(next(iter(values))) in got[1]
    # and the good ones map
    good = make_product({"weight": [v({"amount": "2", "unit": "KILOGRAM"})], "brand": [v("acme")]})
    assert plan.map(good).doc["brand"] == "ACME"


def test_two_attributes_writing_one_place_keep_the_products_order() -> None:
    """``ean`` lands on ``specs.teaser``, and so does ``teaser`` through the glob: the last in
    the product's order wins, as it always did; the plan stops grouping rather than let the
    groups' order decide."""
    contract = make_contract(
        [{"pim": "ean", "target": "specs.teaser"}, {"pim": "*", "target": "specs.{attribute}"}]
    )
    plan = MappingPlan(make_channel(), contract, _defs())
    brand = [v("acme")]
    teaser = [v("t", None, "ecommerce")]
    first = make_product({"brand": brand, "ean": [v("111")], "teaser": teaser})
    assert plan._grouping is True  # nothing planned yet
    assert plan.map(first).doc == {"specs": {"brand": "acme", "teaser": "t"}}
    assert not plan._grouping
    second = make_product({"teaser": teaser, "ean": [v("111")], "brand": brand})
    assert plan.map(second).doc == {"specs": {"teaser": "111", "brand": "acme"}}
    # a plan that met the two apart, grouping in between, answers alike
    apart = MappingPlan(make_channel(), contract, _defs())
    assert apart.map(make_product({"ean": [v("111")], "brand": brand})).doc == {
        "specs": {"teaser": "111", "brand": "acme"}
    }
    assert apart._grouping
    assert apart.map(second).doc == {"specs": {"teaser": "111", "brand": "acme"}}
    assert not apart._grouping


def test_empty_values_and_renamed_targets_in_groups() -> None:
    contract = make_contract(
        [
            {"pim": "ean", "target": "ids.gtin"},
            {"pim": "teaser", "target": "ids.teaser"},
            {"pim": "name", "target": "title", "transform": "localized"},
            {"pim": "*", "target": "specs.{attribute}"},
        ]
    )
    channel = make_channel(locales=[{"code": "de_AT", "fallback": ["de_DE"]}])
    plan = MappingPlan(channel, contract, _defs())
    values = {
        "ean": [v("  ")],  # empty: no key at all
        "teaser": [v("short", None, "ecommerce"), v("print", None, "print")],
        "name": [v("Name", "de_DE")],  # de_AT falls back to de_DE
        "brand": [v("acme")],
    }
    doc = plan.map(make_product(values)).doc
    assert doc == {
        "ids": {"teaser": "short"},
        "title": {"de_AT": "Name"},
        "specs": {"brand": "acme"},
    }
    assert _result(plan, make_product(values)) == _result(_in_order(plan), make_product(values))
    assert plan._grouping and {g.parent for g in plan._group_list} >= {"ids", None, "specs"}
