from __future__ import annotations

from typing import Any

import pytest

from app.channels.filters import CATEGORY_TREE_FILTER, categories_in_tree, first_failing_filter
from tests.catalog_builders import make_channel, make_product, small_defs, v

DEFS = small_defs()


def failing(product_kwargs: dict[str, Any], **channel: Any) -> str | None:
    product = make_product(**product_kwargs)
    return first_failing_filter(product, make_channel(**channel), DEFS)


def attr_filter(attribute: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    f: dict[str, Any] = {"type": "attribute", "attribute": attribute, "op": op, **extra}
    if value is not None:
        f["value"] = value
    return f


# --- category tree ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "result"),
    [
        (["master_tv_oled"], None),
        (["master_tv"], None),
        (["master"], None),
        (["b2b_tv", "master_tv"], None),
        (["b2b_tv"], CATEGORY_TREE_FILTER),
        ([], CATEGORY_TREE_FILTER),
        (["unknown_category"], CATEGORY_TREE_FILTER),
    ],
)
def test_category_tree(categories: list[str], result: str | None) -> None:
    assert failing({"categories": categories}, category_tree="master") == result


def test_no_category_tree_means_no_tree_filter() -> None:
    assert failing({"categories": []}) is None


def test_categories_in_tree() -> None:
    p = make_product(categories=["b2b_tv", "master_tv_oled", "elsewhere"])
    assert categories_in_tree(p, make_channel(category_tree="master"), DEFS) == ["master_tv_oled"]
    assert categories_in_tree(p, make_channel(category_tree="b2b"), DEFS) == ["b2b_tv"]
    assert categories_in_tree(p, make_channel(), DEFS) == ["b2b_tv", "master_tv_oled", "elsewhere"]


# --- enabled, family, category ------------------------------------------------------------------


def test_enabled_filter() -> None:
    assert failing({"enabled": False}, filters=[{"enabled": True}]) == "enabled"
    assert failing({"enabled": True}, filters=[{"enabled": True}]) is None
    assert failing({"enabled": True}, filters=[{"enabled": False}]) == "enabled"


@pytest.mark.parametrize(
    ("family", "flt", "result"),
    [
        ("tv", {"family_in": ["tv", "bare"]}, None),
        ("laptops", {"family_in": ["tv", "bare"]}, "family_in"),
        (None, {"family_in": ["tv"]}, "family_in"),
        ("tv", {"family_not_in": ["tv"]}, "family_not_in"),
        ("laptops", {"family_not_in": ["tv"]}, None),
        (None, {"family_not_in": ["tv"]}, None),
        ("tv", {"type": "family_in", "families": ["tv"], "negate": True}, "family_in"),
    ],
)
def test_family_filter(family: str | None, flt: dict[str, Any], result: str | None) -> None:
    assert failing({"family": family}, filters=[flt]) == result


@pytest.mark.parametrize(
    ("categories", "under", "result"),
    [
        (["master_tv_oled"], "master_tv", None),
        (["master_tv"], "master_tv", None),
        (["master"], "master_tv", "category_under"),
        (["b2b_tv"], ["master_tv", "b2b"], None),
        ([], "master", "category_under"),
    ],
)
def test_category_under(categories: list[str], under: Any, result: str | None) -> None:
    assert failing({"categories": categories}, filters=[{"category_under": under}]) == result


# --- attribute predicates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "op", "value", "passes"),
    [
        ("acme", "eq", "acme", True),
        ("acme", "eq", "other", False),
        ("acme", "ne", "other", True),
        ("acme", "ne", "acme", False),
        ("acme", "in", ["x", "acme"], True),
        ("acme", "in", ["x"], False),
        ("acme", "not_in", ["x"], True),
        ("acme", "not_in", ["acme"], False),
        (["red", "blue"], "eq", "blue", True),  # a multi-select equals any of its codes
        (["red", "blue"], "in", ["green", "red"], True),
        (["red", "blue"], "not_in", ["red"], False),
        (["red"], "ne", "blue", True),
        (None, "eq", "acme", False),
        (None, "ne", "acme", True),
        (None, "in", ["acme"], False),
        (None, "not_in", ["acme"], True),
        (None, "gt", 1, False),
        (5, "gt", 4, True),
        (5, "gt", 5, False),
        (5, "gte", 5, True),
        (5, "lt", 5, False),
        (5, "lte", 5, True),
        ("12.5000", "gt", 12, True),
        ("12.5000", "lt", "12.6", True),
        ({"amount": "21.5", "unit": "KILOGRAM"}, "gt", 20, True),
        ({"amount": "19", "unit": "KILOGRAM"}, "gt", 20, False),
        ({"amount": None, "unit": "KILOGRAM"}, "gt", 0, False),
        ("heavy", "gt", 1, False),
        (True, "gt", 0, False),  # a boolean is not a number
        (5, "gt", "lots", False),
        (["a"], "lt", 5, False),
        ("NaN", "gt", 1, False),  # not orderable: fails the filter instead of raising
        ("NaN", "lte", 1, False),
        ("sNaN", "gte", 1, False),
        (5, "gt", "NaN", False),
    ],
)
def test_attribute_predicates(data: Any, op: str, value: Any, passes: bool) -> None:
    values = {} if data is None else {"mystery": [v(data)]}
    product = make_product(values)
    channel = make_channel(filters=[attr_filter("mystery", op, value, name="f")])
    assert (first_failing_filter(product, channel, DEFS) is None) is passes


@pytest.mark.parametrize(
    ("data", "empty"),
    [
        (None, True),
        ("", True),
        ("  ", True),
        ([], True),
        ({"amount": None, "unit": "G"}, True),
        ("x", False),
        (0, False),
        (False, False),
        (["a"], False),
    ],
)
def test_empty_and_not_empty(data: Any, empty: bool) -> None:
    product = make_product({} if data is None else {"rating": [v(data)]})
    for op, passes in (("empty", empty), ("not_empty", not empty)):
        channel = make_channel(filters=[attr_filter("rating", op)])
        assert (first_failing_filter(product, channel, DEFS) is None) is passes, op


def test_localizable_attribute_reads_first_locale_chain_or_given_locale() -> None:
    product = make_product({"name": [v("Fernseher", "de_DE"), v("TV", "en_US")]})
    at = [{"code": "de_AT", "fallback": ["de_DE"]}, "en_US"]
    f = attr_filter("name", "eq", "Fernseher", name="german")
    assert first_failing_filter(product, make_channel(locales=at, filters=[f]), DEFS) is None
    f = attr_filter("name", "eq", "TV", name="english")
    assert first_failing_filter(product, make_channel(locales=at, filters=[f]), DEFS) == "english"
    f = attr_filter("name", "eq", "TV", name="english", locale="en_US")
    assert first_failing_filter(product, make_channel(locales=at, filters=[f]), DEFS) is None


def test_scopable_attribute_reads_the_channels_pim_scope() -> None:
    product = make_product({"teaser": [v("web", None, "ecommerce"), v("b2b", None, "b2b")]})
    f = attr_filter("teaser", "eq", "b2b", name="t")
    assert first_failing_filter(product, make_channel(pim_scope="b2b", filters=[f]), DEFS) is None
    assert first_failing_filter(product, make_channel(filters=[f]), DEFS) == "t"


def test_unknown_attribute_reads_scoped_and_unscoped_values() -> None:
    f = attr_filter("mystery", "eq", "x", name="m")
    for entries in ([v("x")], [v("x", None, "ecommerce")], [v("x", "de_DE")]):
        product = make_product({"mystery": entries})
        assert first_failing_filter(product, make_channel(filters=[f]), DEFS) is None, entries
    product = make_product({"mystery": [v("x", None, "print")]})
    assert first_failing_filter(product, make_channel(filters=[f]), DEFS) == "m"


def test_first_failing_filter_wins_and_tree_comes_first() -> None:
    filters = [
        {"enabled": True},
        {"family_in": ["tv"]},
        attr_filter("brand", "eq", "acme", name="acme_only"),
    ]
    base = {"family": "tv", "categories": ["master_tv"], "values": {"brand": [v("acme")]}}
    assert failing(base, category_tree="master", filters=filters) is None
    assert failing({**base, "family": "x"}, category_tree="master", filters=filters) == "family_in"
    assert failing({**base, "family": "x", "enabled": False}, filters=filters) == "enabled"
    assert failing({**base, "values": {}}, filters=filters) == "acme_only"
    assert (
        failing({**base, "family": "x", "categories": []}, category_tree="master", filters=filters)
        == CATEGORY_TREE_FILTER
    )


def test_sample_dangerous_goods_filter() -> None:
    from app.channels.config import load_channels
    from app.config import SAMPLE_DIR

    uk = load_channels(SAMPLE_DIR / "channels.yaml")["uk_marketplace"]
    ok = make_product({"hazmat_class": [v("none")]}, categories=["master_tv"])
    assert first_failing_filter(ok, uk, DEFS) is None
    bad = make_product({"hazmat_class": [v("class_3")]}, categories=["master_tv"])
    assert first_failing_filter(bad, uk, DEFS) == "no_dangerous_goods"
    unknown = make_product({}, categories=["master_tv"])
    assert first_failing_filter(unknown, uk, DEFS) is None
