from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.channels.config import ChannelConfig
from app.mapping.errors import MappingError, TransformError
from app.mapping.mapper import map_product
from app.mapping.transforms import (
    COMPUTED,
    TRANSFORMS,
    TransformContext,
    _plain,
    _plain_amount,
    auto_transform_name,
    slugify,
)
from app.pim.product import Product
from tests.catalog_builders import (
    make_channel,
    make_contract,
    make_contract_model,
    make_product,
    small_defs,
    v,
)

DEFS = small_defs()
SKU = "SKU-9"
LOOKUPS = {
    "colors": {"red": 5, "blue": 6, "black": 1},
    "with_default": {"new": "N", "__default__": "other"},
}
CONTRACT = make_contract_model([{"pim": "name", "target": "name"}], lookups=LOOKUPS)
KEY = "web@3"


def context(
    attribute: str = "attr",
    channel: ChannelConfig | None = None,
    product: Product | None = None,
    locale: str | None = None,
) -> TransformContext:
    return TransformContext(
        product=product or make_product({}, identifier=SKU),
        channel=channel or make_channel(),
        contract=CONTRACT,
        defs=DEFS,
        attribute=attribute,
        locale=locale,
    )


def spec(name: str, attribute: str = "attr", **fields: Any) -> Any:
    from app.mapping.contract import MappingSpec

    return MappingSpec(pim=attribute, target="out", transform=name, **fields)


def run(
    name: str,
    data: Any,
    attribute: str = "attr",
    ctx: TransformContext | None = None,
    **fields: Any,
) -> Any:
    return TRANSFORMS[name](data, ctx or context(attribute), spec(name, attribute, **fields))


def fails(
    name: str,
    data: Any,
    reason: str,
    attribute: str = "attr",
    ctx: TransformContext | None = None,
    **fields: Any,
) -> TransformError:
    with pytest.raises(TransformError) as info:
        run(name, data, attribute, ctx, **fields)
    err = info.value
    assert err.sku == SKU
    assert err.attribute == attribute
    assert err.value == data
    assert err.contract == KEY
    assert reason in err.reason
    message = str(err)
    assert message.startswith(f"SKU {SKU!r}: attribute {attribute!r} value {data!r}"[:150])
    assert f"(contract {KEY})" in message
    assert message.endswith(err.reason)
    assert isinstance(err, MappingError) and err.permanent
    return err


def test_registry_has_every_documented_transform() -> None:
    assert set(TRANSFORMS) >= {
        "direct",
        "lookup",
        "metric_to_string",
        "multi_to_csv",
        "boolean",
        "number",
        "price",
        "localized",
        "computed",
        "auto",
    }
    assert set(COMPUTED) >= {"slug", "vat_rate", "tax_class", "category_codes"}


def test_error_message_shortens_long_values() -> None:
    err = TransformError("S", "a", "x" * 1000, "c@1", "too long")
    assert len(str(err)) < 300 and "..." in str(err)
    assert err.value == "x" * 1000


# --- direct -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["text", 5, 1.5, True, ["a", "b"], {"amount": "1", "unit": "G"}])
def test_direct_passes_values_through(data: Any) -> None:
    assert run("direct", data) == data


def test_direct_with_labels() -> None:
    assert run("direct", "acme", "brand", labels=True) == "ACME GmbH"  # channel locale de_DE
    en = context("brand", make_channel(locales=["en_US"]))
    assert run("direct", "acme", ctx=en, attribute="brand", labels=True) == "ACME Corp"
    assert run("direct", ["red", "blue"], "colors", labels=True) == ["Rot", "blue"]
    # an unknown option falls back to its code
    assert run("direct", "zzz", "brand", labels=True) == "zzz"


def test_direct_labels_follow_the_locale_being_produced() -> None:
    ch = make_channel(locales=["de_DE", "en_US"])
    ctx = context("colors", ch, locale="en_US")
    assert run("direct", ["red"], ctx=ctx, attribute="colors", labels=True) == ["Red"]
    ctx = context("colors", ch, locale=None)  # a non-localized read: the first locale
    assert run("direct", ["red"], ctx=ctx, attribute="colors", labels=True) == ["Rot"]


@pytest.mark.parametrize("data", [5, True, {"amount": 1, "unit": "G"}, ["red", 5], [["red"]]])
def test_direct_labels_on_a_non_option(data: Any) -> None:
    fails("direct", data, "labels need an option code", "brand", labels=True)


# --- lookup -------------------------------------------------------------------------------------


def test_lookup() -> None:
    assert run("lookup", "red", "color", table="colors") == 5
    assert run("lookup", ["red", "black"], "color", table="colors") == [5, 1]
    assert run("lookup", "new", "condition", table="with_default") == "N"
    assert run("lookup", "used", "condition", table="with_default") == "other"
    assert run("lookup", ["used", "new"], "condition", table="with_default") == ["other", "N"]


def test_lookup_unknown_option() -> None:
    err = fails("lookup", "purple", "no option mapping for 'purple'", "color", table="colors")
    assert "'colors'" in err.reason
    fails("lookup", ["red", "purple"], "no option mapping for 'purple'", "color", table="colors")


@pytest.mark.parametrize("data", [5, True, {"amount": 1, "unit": "G"}, ["red", 5]])
def test_lookup_wrong_type(data: Any) -> None:
    fails("lookup", data, "lookup needs an option code", "color", table="colors")


# --- metric_to_string -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fields", "text"),
    [
        ({"amount": "800.0000", "unit": "GRAM"}, {}, "800 g"),
        ({"amount": "1.5000", "unit": "KILOGRAM"}, {}, "1.5 kg"),
        ({"amount": "0.0000", "unit": "KILOGRAM"}, {}, "0 kg"),
        ({"amount": "-2.50", "unit": "CELSIUS"}, {}, "-2.5 °C"),
        ({"amount": 12, "unit": "WATT"}, {}, "12 W"),
        ({"amount": 0.25, "unit": "LITER"}, {}, "0.25 l"),
        ({"amount": "1e3", "unit": "GRAM"}, {}, "1000 g"),
        ({"amount": " 7.10 ", "unit": "GRAM"}, {}, "7.1 g"),
        ({"amount": ".5", "unit": "GRAM"}, {}, "0.5 g"),
        ({"amount": "007", "unit": "GRAM"}, {}, "7 g"),
        ({"amount": "12", "unit": "FURLONG"}, {}, "12 FURLONG"),  # unknown unit: its code
        ({"amount": "800.0000", "unit": "GRAM"}, {"unit": "code"}, "800 GRAM"),
        ({"amount": "1.2345", "unit": "KILOGRAM"}, {"precision": 2}, "1.23 kg"),
        ({"amount": "1.2350", "unit": "KILOGRAM"}, {"precision": 2}, "1.24 kg"),  # half up
        ({"amount": "2.5", "unit": "KILOGRAM"}, {"precision": 0}, "3 kg"),
        ({"amount": "1.2000", "unit": "KILOGRAM"}, {"precision": 3}, "1.2 kg"),
        ({"amount": "3", "unit": "METER"}, {"precision": 2, "unit": "code"}, "3 METER"),
    ],
)
def test_metric_to_string(data: dict[str, Any], fields: dict[str, Any], text: str) -> None:
    assert run("metric_to_string", data, "weight", **fields) == text


def test_metric_to_string_uses_catalog_symbols() -> None:
    from app.pim.catalog import build_definitions

    defs = build_definitions(
        attributes=[{"code": "w", "type": "pim_catalog_metric"}], unit_symbols={"GRAM": "Gramm"}
    )
    ctx = TransformContext(make_product({}, identifier=SKU), make_channel(), CONTRACT, defs, "w")
    assert run("metric_to_string", {"amount": "5", "unit": "GRAM"}, "w", ctx=ctx) == "5 Gramm"


@pytest.mark.parametrize(
    ("data", "fields", "reason"),
    [
        ("800 g", {}, "needs a metric"),
        (800, {}, "needs a metric"),
        ([{"amount": 1, "unit": "GRAM"}], {}, "needs a metric"),
        ({"unit": "GRAM"}, {}, "needs a metric"),
        ({"amount": "1"}, {}, "metric has no unit"),
        ({"amount": "1", "unit": ""}, {}, "metric has no unit"),
        ({"amount": "1", "unit": 5}, {}, "metric has no unit"),
        ({"amount": "heavy", "unit": "GRAM"}, {}, "not a number"),
        ({"amount": "²", "unit": "GRAM"}, {}, "not a number"),
        ({"amount": "", "unit": "GRAM"}, {}, "not a number"),
        ({"amount": "   ", "unit": "GRAM"}, {}, "not a number"),
        ({"amount": None, "unit": "GRAM"}, {}, "not a number"),
        ({"amount": True, "unit": "GRAM"}, {}, "not a number"),
        ({"amount": "NaN", "unit": "GRAM"}, {}, "not a number"),
        ({"amount": "Infinity", "unit": "GRAM"}, {"precision": 2}, "not a number"),
        ({"amount": "heavy", "unit": "GRAM"}, {"precision": 2}, "not a number"),
        ({"amount": "1e40", "unit": "GRAM"}, {"precision": 2}, "not a number"),
    ],
)
def test_metric_to_string_bad_values(data: Any, fields: dict[str, Any], reason: str) -> None:
    fails("metric_to_string", data, reason, "weight", **fields)


@pytest.mark.parametrize(
    "amount",
    ["800.0000", "0", "0.0", "-0.00", "10.0100", "5.", "12", "-3.25", "0.5", "100", "1.000001"],
)
def test_metric_fast_path_agrees_with_decimal(amount: str) -> None:
    assert _plain_amount(amount) == _plain(Decimal(amount))


# --- multi_to_csv ------------------------------------------------------------------------------


def test_multi_to_csv() -> None:
    assert run("multi_to_csv", ["red", "blue"], "colors") == "red, blue"
    assert run("multi_to_csv", ["red", "blue"], "colors", separator="|") == "red|blue"
    assert run("multi_to_csv", "red", "colors") == "red"
    assert run("multi_to_csv", ["red", "blue"], "colors", labels=True) == "Rot, blue"
    en = context("colors", make_channel(locales=["en_US"]))
    assert (
        run(
            "multi_to_csv", ["red", "blue"], ctx=en, attribute="colors", labels=True, separator="; "
        )
        == "Red; Blue"
    )


@pytest.mark.parametrize("data", [5, {"amount": 1, "unit": "G"}, ["red", 5], [None], True])
def test_multi_to_csv_bad_values(data: Any) -> None:
    fails("multi_to_csv", data, "needs a list of option codes", "colors")


# --- boolean ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("FALSE", False),
        (" yes ", True),
        ("No", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("off", False),
        ("y", True),
        ("n", False),
    ],
)
def test_boolean(data: Any, result: bool) -> None:
    assert run("boolean", data, "active") is result


@pytest.mark.parametrize("data", [2, -1, 1.0, "maybe", "", ["true"], {"amount": 1, "unit": "G"}])
def test_boolean_bad_values(data: Any) -> None:
    fails("boolean", data, "not a boolean", "active")


# --- number -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fields", "result"),
    [
        (5, {}, 5.0),
        ("12.5000", {}, 12.5),
        ("0.125", {}, 0.13),  # half up, not banker's rounding
        ("2.5", {"precision": 0}, 3),
        ("3.5", {"precision": 0}, 4),
        ("-2.5", {"precision": 0}, -3),
        (7.777, {"precision": 1}, 7.8),
        (" 42 ", {"precision": 0}, 42),
        ("1e3", {"precision": 0}, 1000),
        ({"amount": "12.3456", "unit": "KILOGRAM"}, {"precision": 2}, 12.35),
    ],
)
def test_number(data: Any, fields: dict[str, Any], result: float) -> None:
    out = run("number", data, "rating", **fields)
    assert out == result
    assert type(out) is type(result)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("five", "not a number"),
        ("", "not a number"),
        (True, "not a number"),
        (None, "not a number"),
        (["1"], "not a number"),
        ("NaN", "not a number"),
        ("-Infinity", "not a number"),
        ({"amount": None, "unit": "G"}, "not a number"),
        ({"unit": "G"}, "not a number"),
        ("1e40", "too large"),
        (10**30, "too large"),
    ],
)
def test_number_bad_values(data: Any, reason: str) -> None:
    with pytest.raises(TransformError) as info:
        run("number", data, "rating")
    err = info.value
    assert (err.sku, err.attribute, err.contract) == (SKU, "rating", KEY)
    # a metric reports its amount, the value that is not a number
    expected = data["amount"] if isinstance(data, dict) and "amount" in data else data
    assert err.value == expected
    assert reason in err.reason
    assert f"SKU {SKU!r}: attribute 'rating' value {expected!r}" in str(err)


# --- price ------------------------------------------------------------------------------------

PRICES = [{"amount": "499.5", "currency": "EUR"}, {"amount": 420, "currency": "GBP"}]


def test_price_in_the_channel_currency() -> None:
    assert run("price", PRICES, "price") == {"amount": "499.50", "currency": "EUR"}
    gbp = context("price", make_channel(currency="GBP"))
    assert run("price", PRICES, ctx=gbp, attribute="price") == {
        "amount": "420.00",
        "currency": "GBP",
    }
    assert run("price", PRICES, "price", precision=0) == {"amount": "500", "currency": "EUR"}
    # several currencies on a channel: the first is its selling currency
    multi = context("price", make_channel(currencies=["GBP", "EUR"]))
    assert run("price", PRICES, ctx=multi, attribute="price")["currency"] == "GBP"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([{"amount": "1", "currency": "USD"}], "no price in the channel's currency EUR"),
        ([], "no price in the channel's currency EUR"),
        (["EUR"], "no price in the channel's currency EUR"),
        ([{"amount": None, "currency": "EUR"}], "price amount for EUR is not a number"),
        ([{"amount": "cheap", "currency": "EUR"}], "price amount for EUR is not a number"),
        ([{"amount": True, "currency": "EUR"}], "price amount for EUR is not a number"),
        ([{"amount": "1e40", "currency": "EUR"}], "price amount for EUR is too large"),
        ("9.99", "needs a price collection"),
        ({"amount": "9.99", "currency": "EUR"}, "needs a price collection"),
        (9.99, "needs a price collection"),
    ],
)
def test_price_bad_values(data: Any, reason: str) -> None:
    fails("price", data, reason, "price")


# --- localized ----------------------------------------------------------------------------------


def test_localized_applies_its_inner_transform() -> None:
    assert run("localized", "Text", "name") == "Text"
    assert run("localized", "red", "color", of="lookup", table="colors") == 5
    metric = {"amount": "2.000", "unit": "KILOGRAM"}
    assert run("localized", metric, "weight", of="metric_to_string") == "2 kg"
    ctx = context("colors", make_channel(locales=["de_DE", "en_US"]), locale="en_US")
    assert run("localized", ["red"], ctx=ctx, attribute="colors", labels=True) == ["Red"]
    fails("localized", "purple", "no option mapping", "color", of="lookup", table="colors")
    fails("localized", "x", "needs a metric", "weight", of="metric_to_string")


def localized_map(values: dict[str, Any], channel: ChannelConfig, **mapping: Any) -> dict[str, Any]:
    cc = make_contract([{"pim": "name", "target": "title", "transform": "localized", **mapping}])
    return map_product(make_product(values, identifier=SKU), channel, cc, DEFS).doc


def test_localized_through_the_fallback_chain() -> None:
    channel = make_channel(locales=[{"code": "de_AT", "fallback": ["de_DE"]}, "en_US"])
    doc = localized_map({"name": [v("Fernseher", "de_DE"), v("TV", "en_US")]}, channel)
    assert doc == {"title": {"de_AT": "Fernseher", "en_US": "TV"}}
    doc = localized_map({"name": [v("Fernseher (AT)", "de_AT"), v("Fernseher", "de_DE")]}, channel)
    assert doc == {"title": {"de_AT": "Fernseher (AT)"}}  # en_US missing, not required


def test_localized_required_missing_locale_with_fallback() -> None:
    channel = make_channel(locales=[{"code": "de_AT", "fallback": ["de_DE"]}, "en_US"])
    with pytest.raises(TransformError) as info:
        localized_map({"name": [v("TV", "en_US"), v("", "de_DE")]}, channel, required=True)
    err = info.value
    assert (err.sku, err.attribute, err.value, err.contract) == (SKU, "name", None, KEY)
    assert err.reason == "no value for locale de_AT (tried de_AT, de_DE)"
    assert str(err) == (
        f"SKU {SKU!r}: attribute 'name' value None (contract {KEY}): "
        "no value for locale de_AT (tried de_AT, de_DE)"
    )


def test_localized_required_missing_locale_without_fallback() -> None:
    channel = make_channel(locales=["de_DE", "en_US"])
    with pytest.raises(TransformError) as info:
        localized_map({"name": [v("Fernseher", "de_DE")]}, channel, required=True)
    assert info.value.reason == "no value for locale en_US (tried en_US)"
    assert info.value.attribute == "name" and info.value.contract == KEY


# --- computed -----------------------------------------------------------------------------------


def computed(
    function: str,
    product: Product | None = None,
    channel: ChannelConfig | None = None,
    **params: Any,
) -> Any:
    from app.mapping.contract import MappingSpec

    s = MappingSpec(target="x", transform="computed", function=function, params=params)
    ctx = context(function, channel, product)
    return TRANSFORMS["computed"](None, ctx, s)


def test_slug() -> None:
    p = make_product({"name": [v("Grüne XL Fernseher!", "de_DE")]}, identifier="TV/55")
    assert computed("slug", p) == "grune-xl-fernseher-tv-55"
    assert slugify("  --Ünïcödé  Tëxt--  ") == "unicode-text"
    # fallback chain of the first channel locale, then an unlocalized name
    at = make_channel(locales=[{"code": "de_AT", "fallback": ["de_DE"]}])
    assert computed("slug", p, at) == "grune-xl-fernseher-tv-55"
    p2 = make_product({"title": [v("Plain Title")]}, identifier="A1")
    assert computed("slug", p2, attribute="title") == "plain-title-a1"
    # no usable name: the SKU alone
    assert computed("slug", make_product({"name": [v("  ", "de_DE")]}, identifier="A1")) == "a1"


def test_slug_keeps_german_sharp_s() -> None:
    assert slugify("Größe Straße") == "grosse-strasse"
    assert slugify("Smørrebrød Łódź") == "smorrebrod-lodz"


def test_slug_of_a_name_without_ascii_letters_has_no_leading_dash() -> None:
    p = make_product({"name": [v("テレビ", "de_DE")]}, identifier="TV-1")
    assert computed("slug", p) == "tv-1"


def test_vat_rate_and_tax_class() -> None:
    ch = make_channel(extra={"vat_rate": 19, "tax_class": "DE-standard"})
    assert computed("vat_rate", channel=ch) == 19
    assert computed("tax_class", channel=ch) == "DE-standard"
    for function in ("vat_rate", "tax_class"):
        with pytest.raises(TransformError) as info:
            computed(function)
        err = info.value
        assert (err.sku, err.attribute, err.value, err.contract) == (SKU, function, None, KEY)
        assert f"channel 'web' has no extra.{function}" in str(err)


def test_category_codes() -> None:
    p = make_product({}, identifier=SKU, categories=["master_tv", "b2b_tv"])
    assert computed("category_codes", p, make_channel(category_tree="b2b")) == ["b2b_tv"]
    assert computed("category_codes", p) == ["master_tv", "b2b_tv"]


# --- auto ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "data", "result"),
    [
        ("tv_spec_001", {"amount": "55.00", "unit": "INCH"}, "55 in"),
        ("tv_spec_002", ["hdmi", "usb"], "hdmi, usb"),
        ("tv_spec_003", "Text", "Text"),
        ("tv_spec_004", "yes", True),
        (
            "tv_spec_005",
            [{"amount": "5", "currency": "EUR"}],
            {"amount": "5.00", "currency": "EUR"},
        ),
        ("tv_spec_006", "12.5000", "12.5000"),  # numbers stay as the PIM wrote them
        ("undefined", {"amount": "3", "unit": "GRAM"}, "3 g"),
        ("undefined", ["a", "b"], ["a", "b"]),
    ],
)
def test_auto(attribute: str, data: Any, result: Any) -> None:
    assert run("auto", data, attribute) == result


def test_auto_bad_values_report_like_the_chosen_transform() -> None:
    fails("auto", "big", "needs a metric", "tv_spec_001")
    fails("auto", "maybe", "not a boolean", "tv_spec_004")
    fails("auto", [{"amount": "5", "currency": "USD"}], "no price", "tv_spec_005")


def test_auto_transform_name() -> None:
    assert auto_transform_name(DEFS.attributes["weight"], None) == "metric_to_string"
    assert auto_transform_name(DEFS.attributes["colors"], None) == "multi_to_csv"
    assert auto_transform_name(DEFS.attributes["price"], None) == "price"
    assert auto_transform_name(DEFS.attributes["active"], None) == "boolean"
    assert auto_transform_name(DEFS.attributes["brand"], None) == "direct"
    assert auto_transform_name(None, {"amount": 1}) == "metric_to_string"
    assert auto_transform_name(None, "x") == "direct"
