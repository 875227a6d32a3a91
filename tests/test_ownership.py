from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.ownership import (
    DEFAULT_OWNERS,
    DOMAINS,
    OwnershipConfigError,
    OwnershipError,
    OwnershipTable,
    Violation,
    load_ownership,
    strip_foreign,
)
from tests.catalog_builders import small_defs, v

DEFS = small_defs()
PRICES = [{"amount": "1.00", "currency": "EUR"}]


def sample_values() -> dict[str, list[dict[str, Any]]]:
    return {
        "sku": [v("SKU-1")],
        "name": [v("TV", "en_US")],
        "price": [v(PRICES)],
        "picture": [v("files/a.jpg")],
        "stock_level": [v(5)],
        "special_price": [v("9.99")],
        "brand": [v("acme")],
    }


# --- the table and check() ------------------------------------------------------------------------


def test_default_owners() -> None:
    table = OwnershipTable()
    assert table.owner("pricing") == "erp"
    assert table.owner("media") == "dam"
    assert table.owns("pim", "attributes")
    assert not table.owns("pim", "pricing")
    assert table.as_rows() == sorted(DEFAULT_OWNERS.items())
    assert {d for d, _ in table.as_rows()} == set(DOMAINS)


def test_check_refuses_a_foreign_source() -> None:
    table = OwnershipTable()
    table.check("erp", "pricing")
    table.check("pim", "content")
    with pytest.raises(OwnershipError) as info:
        table.check("pim", "pricing")
    err = info.value
    assert (err.source, err.domain, err.owner) == ("pim", "pricing", "erp")
    assert str(err) == "source 'pim' does not own domain 'pricing' (owner: 'erp')"
    assert isinstance(err, PermissionError)


def test_unknown_domain_is_a_config_error() -> None:
    with pytest.raises(OwnershipConfigError, match="unknown domain 'shipping'"):
        OwnershipTable().check("pim", "shipping")


# --- attribute classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "attr_type", "data", "domain"),
    [
        ("price", None, None, "pricing"),
        ("price_b2b", "pim_catalog_text", None, "pricing"),
        ("list_price", "pim_catalog_number", None, "pricing"),
        ("msrp", None, None, "pricing"),
        ("stock", None, None, "inventory"),
        ("stock_berlin", "pim_catalog_number", None, "inventory"),
        ("qty", None, None, "inventory"),
        ("amounts", "pim_catalog_price_collection", None, "pricing"),
        ("main_image", "pim_catalog_image", None, "media"),
        ("manual", "pim_catalog_file", None, "media"),
        ("gallery", "pim_catalog_asset_collection", None, "media"),
        ("name", "pim_catalog_text", None, "attributes"),
        ("pricey_look", "pim_catalog_text", None, "attributes"),  # "price*" is not a pattern
        ("Price", None, None, "attributes"),  # codes are case-sensitive
        # an attribute without definition: judged by its value
        ("extras", None, PRICES, "pricing"),
        ("extras", None, ["red", "blue"], "attributes"),
        ("extras", None, [], "attributes"),
        ("extras", None, "text", "attributes"),
    ],
)
def test_attribute_domain(code: str, attr_type: str | None, data: Any, domain: str) -> None:
    assert OwnershipTable().attribute_domain(code, attr_type, data) == domain


def test_undefined_attribute_domain_does_not_depend_on_earlier_values() -> None:
    # Memoisation must not carry one product's answer over to another's value.
    table = OwnershipTable()
    assert table.attribute_domain("extras", None, "text") == "attributes"
    assert table.attribute_domain("extras", None, PRICES) == "pricing"
    assert table.attribute_domain("extras", None, "text") == "attributes"
    table = OwnershipTable()
    assert table.attribute_domain("extras", None, PRICES) == "pricing"
    assert table.attribute_domain("extras", None, ["a"]) == "attributes"
    # a defined type decides alone, whatever the value
    assert table.attribute_domain("extras", "pim_catalog_text", PRICES) == "attributes"


# --- strip_foreign -----------------------------------------------------------------------------


def test_pim_payload_loses_prices_stock_and_media() -> None:
    values = sample_values()
    kept, violations = strip_foreign(OwnershipTable(), "pim", values, DEFS)
    assert set(kept) == {"sku", "name", "brand"}
    assert {(x.domain, x.attribute) for x in violations} == {
        ("pricing", "price"),
        ("media", "picture"),
        ("inventory", "stock_level"),
        ("pricing", "special_price"),
    }
    assert all(x.source == "pim" for x in violations)
    assert values == sample_values()  # the input is not modified


def test_nothing_foreign_returns_the_same_values() -> None:
    values = {"name": [v("TV", "en_US")], "brand": [v("acme")]}
    kept, violations = strip_foreign(OwnershipTable(), "pim", values, DEFS)
    assert kept is values and violations == []


def test_identifier_is_never_stripped() -> None:
    # Even for a source that owns nothing the SKU attribute stays: it is the shared key.
    table = OwnershipTable(owners={d: "erp" for d in DOMAINS})
    kept, violations = strip_foreign(table, "pim", sample_values(), DEFS)
    assert "sku" in kept
    assert "sku" not in {x.attribute for x in violations}
    assert "name" not in kept
    assert Violation("pim", "attributes", "name") in violations


def test_other_source_owns_other_things() -> None:
    kept, violations = strip_foreign(OwnershipTable(), "erp", sample_values(), DEFS)
    assert set(kept) == {"sku", "price", "special_price"}
    assert {x.attribute for x in violations} == {"name", "brand", "picture", "stock_level"}


def test_undefined_attribute_with_prices_is_stripped() -> None:
    values = {"promo": [v(PRICES)], "tagline": [v("cheap")]}
    kept, violations = strip_foreign(OwnershipTable(), "pim", values, DEFS)
    assert set(kept) == {"tagline"}
    assert violations == [Violation("pim", "pricing", "promo")]


def test_memo_shared_across_products_gives_the_same_answers() -> None:
    # The ingest keeps one memo for a whole page: defined attributes are classified once,
    # undefined ones are still judged by each product's own value.
    table = OwnershipTable()
    products = [
        sample_values(),
        {"promo": [v(PRICES)], "name": [v("TV", "en_US")]},
        {"promo": [v("text")], "price": [v(PRICES)], "brand": [v("acme")]},
        {},
        # every code answered already: the memo's answers, in this product's order
        sample_values(),
        dict(reversed(sample_values().items())),
    ]
    memo: dict[str, Violation | None] = {}
    shared = [table.foreign_attributes("pim", values, DEFS, memo) for values in products]
    alone = [OwnershipTable().foreign_attributes("pim", values, DEFS) for values in products]
    assert shared == alone
    assert len(shared[-1]) > 1 and shared[-1] == shared[-2][::-1]
    assert shared[1] == [Violation("pim", "pricing", "promo")]
    assert shared[2] == [Violation("pim", "pricing", "price")]  # promo holds text here
    assert "promo" not in memo  # undefined: never memoised
    assert memo["price"] == Violation("pim", "pricing", "price")
    assert memo["brand"] is None and memo["sku"] is None


# --- custom ownership files ---------------------------------------------------------------


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "ownership.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_defaults() -> None:
    assert load_ownership(None).owners == DEFAULT_OWNERS


def test_custom_file_gives_prices_and_media_to_the_pim(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
owners:
  pricing: pim
  media: pim
attribute_domains:
  inventory: [warehouse_*]
  content: description
""",
    )
    table = load_ownership(path)
    assert table.owner("pricing") == "pim" and table.owner("inventory") == "wms"
    assert table.attribute_domains["inventory"] == ("warehouse_*",)
    assert table.attribute_domains["content"] == ("description",)
    values = dict(sample_values(), warehouse_1=[v(3)], description=[v("x", "en_US", "web")])
    kept, violations = strip_foreign(table, "pim", values, DEFS)
    # prices and pictures are the PIM's now; the replaced inventory patterns no longer match
    # stock_level, the new one matches warehouse_1
    assert {"price", "picture", "special_price", "stock_level", "description"} <= set(kept)
    assert violations == [Violation("pim", "inventory", "warehouse_1")]


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_ownership(write(tmp_path, "")).owners == DEFAULT_OWNERS


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("owners:\n  shipping: erp\n", "unknown domain 'shipping'"),
        ("owners:\n  pricing: ''\n", "domain 'pricing' needs one owning source"),
        ("owners:\n  pricing: [erp, pim]\n", "domain 'pricing' needs one owning source"),
        ("attribute_domains:\n  fun: [x]\n", "unknown domain 'fun' in attribute_domains"),
        ("owners: [a, b\n", "cannot read ownership table"),
        ("- owners\n- pricing\n", "expected a mapping"),
        ("just a sentence\n", "expected a mapping"),
        ("owners: [pricing, erp]\n", "`owners` must map each domain"),
        ("attribute_domains: price_*\n", "`attribute_domains` must map each domain"),
        ("attribute_domains:\n  pricing: 5\n", "attribute_domains.pricing must be a code pattern"),
    ],
)
def test_bad_ownership_files(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(OwnershipConfigError, match=words.replace("*", r"\*")) as info:
        load_ownership(path)
    assert str(path) in str(info.value)


def test_unreadable_ownership_files(tmp_path: Path) -> None:
    with pytest.raises(OwnershipConfigError, match="cannot read ownership table"):
        load_ownership(tmp_path / "missing.yaml")
    with pytest.raises(OwnershipConfigError, match="cannot read ownership table"):
        load_ownership(write(tmp_path, b"owners:\n  pricing: \xff\xfe\n"))
