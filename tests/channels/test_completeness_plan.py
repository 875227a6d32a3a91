"""``CompletenessPlan`` (compiled once per channel, values read through the product's indexes)
gives what ``compute_completeness`` gives, product by product, on real catalogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.channels.completeness import CompletenessPlan, compute_completeness
from app.channels.config import ChannelConfig, channels_from_pim, load_channels
from app.config import SAMPLE_DIR
from app.dev import generator
from app.pim.catalog import CatalogDefinitions
from app.pim.icecat import IcecatSource
from app.pim.product import Product, parse_product
from tests.catalog_builders import make_channel, make_product, small_defs, v


def _compare(channels: list[ChannelConfig], defs: CatalogDefinitions, products: list[Product]):
    plans = [CompletenessPlan(ch, defs) for ch in channels]
    complete = incomplete = 0
    for product in products:
        for ch, plan in zip(channels, plans, strict=True):
            expected = compute_completeness(product, ch, defs)
            got = plan.compute(product)
            assert got == expected, (product.identifier, ch.code)
            assert (got.ratio, got.missing) == (expected.ratio, expected.missing)
            complete += got.complete
            incomplete += not got.complete
    assert complete and incomplete  # both outcomes are exercised
    return complete, incomplete


def test_the_bundled_channels_on_a_generated_catalog() -> None:
    defs = generator.generated_definitions()
    channels = list(load_channels(SAMPLE_DIR / "channels.yaml").values())
    products = [parse_product(raw) for raw in generator.iter_products(300, seed=13)]
    _compare(channels, defs, products)


@pytest.mark.icecat
def test_icecats_own_channels_on_its_catalog(icecat_dir: Path) -> None:
    source = IcecatSource(icecat_dir)
    try:
        defs = source.definitions()
        products = [parse_product(i) for page in source.iter_pages() for i in page.items]
    finally:
        source.close()
    _compare(list(channels_from_pim(defs).values()), defs, products)


def test_prices_unknown_attributes_and_locale_specific_ones() -> None:
    defs = small_defs()
    channel = make_channel(
        locales=[{"code": "de_AT", "fallback": ["de_DE"]}, "en_US"],
        completeness={
            "family_requirements": False,
            "required": ["name", "price", "mystery"],
            "publish_without_family": True,  # these products have no family
        },
    )
    products = [
        make_product({"name": [v("", "de_AT"), v("Name", "de_DE")]}),
        make_product({"name": [v("Name", "en_US")], "price": [v([])]}),
        make_product(
            {
                "price": [v([{"amount": "1", "currency": "EUR"}])],
                "mystery": [v("x", "de_DE"), v("y", "en_US")],
                "name": [v("N", "de_AT"), v("N", "en_US")],
            }
        ),
        make_product({"mystery": [v("only elsewhere", None, "print")]}),
    ]
    _compare([channel], defs, products)


def test_a_product_without_a_family_is_incomplete_unless_the_channel_opts_in() -> None:
    defs = small_defs()
    strict = make_channel("strict", completeness={"required": ["name"]})
    lenient = make_channel(
        "lenient", completeness={"required": ["name"], "publish_without_family": True}
    )
    product = make_product({"name": [v("Name", "de_DE")]})
    got = CompletenessPlan(strict, defs).compute(product)
    assert got == compute_completeness(product, strict, defs)
    assert (got.complete, got.reason, got.ratio) == (False, "no family", 0)
    opted = CompletenessPlan(lenient, defs).compute(product)
    assert opted == compute_completeness(product, lenient, defs)
    assert (opted.complete, opted.reason) == (True, None)
