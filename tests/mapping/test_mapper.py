from __future__ import annotations

from typing import Any

import pytest

from app.channels.config import ChannelConfig
from app.mapping.contract import CompiledContract
from app.mapping.errors import DriftError, MappingError, TransformError
from app.mapping.mapper import MappingPlan, MapResult, map_product
from app.mapping.transforms import COMPUTED, register_computed
from app.ownership import OwnershipTable, Violation
from tests.catalog_builders import make_channel, make_contract, make_product, small_defs, v

DEFS = small_defs()
SKU = "SKU-5"
AT = [{"code": "de_AT", "fallback": ["de_DE"]}]


def mapped(
    values: dict[str, list[dict[str, Any]]],
    mappings: list[dict[str, Any]],
    channel: ChannelConfig | None = None,
    ownership: OwnershipTable | None = None,
    **contract: Any,
) -> MapResult:
    cc = make_contract(mappings, **contract)
    return map_product(
        make_product(values, identifier=SKU), channel or make_channel(), cc, DEFS, ownership
    )


def doc(values: dict[str, Any], mappings: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return mapped(values, mappings, **kw).doc


# --- documents ----------------------------------------------------------------------------------


def test_basic_document_with_nested_targets() -> None:
    values = {
        "sku": [v(SKU)],
        "ean": [v("4006381333931")],
        "weight": [v({"amount": "1.5000", "unit": "KILOGRAM"})],
        "rating": [v("4.50")],
    }
    mappings = [
        {"pim": "ean", "target": "gtin"},
        {"pim": "weight", "target": "dimensions.weight", "transform": "metric_to_string"},
        {"pim": "rating", "target": "dimensions.extra.rating", "transform": "number"},
    ]
    result = mapped(values, mappings, unmapped="fail")
    assert result.doc == {
        "gtin": "4006381333931",
        "dimensions": {"weight": "1.5 kg", "extra": {"rating": 4.5}},
    }
    # the identifier is the document's key: neither mapped nor drift
    assert result.drift == [] and result.missing_required == [] and result.violations == []


def test_empty_values_are_left_out() -> None:
    values = {
        "ean": [v("  ")],
        "colors": [v([])],
        "weight": [v({"amount": None, "unit": "G"})],
        "rating": [v(None)],
    }
    mappings = [
        {"pim": "ean", "target": "ean"},
        {"pim": "colors", "target": "colors"},
        {"pim": "weight", "target": "weight", "transform": "metric_to_string"},
        {"pim": "rating", "target": "rating", "transform": "number"},
    ]
    assert doc(values, mappings) == {}


def test_scope_resolution() -> None:
    values = {"teaser": [v("web", None, "ecommerce"), v("trade", None, "b2b"), v("plain")]}
    mappings = [{"pim": "teaser", "target": "teaser"}]
    assert doc(values, mappings) == {"teaser": "web"}
    assert doc(values, mappings, channel=make_channel(pim_scope="b2b")) == {"teaser": "trade"}
    assert doc(values, mappings, channel=make_channel(pim_scope="print")) == {}
    # a non-scopable attribute reads the unscoped value only
    assert doc({"ean": [v("scoped", None, "ecommerce")]}, [{"pim": "ean", "target": "e"}]) == {}


def test_localizable_attribute_in_a_plain_mapping_reads_the_first_locale_chain() -> None:
    values = {"name": [v("Fernseher", "de_DE"), v("TV", "en_US")]}
    mappings = [{"pim": "name", "target": "title"}]
    assert doc(values, mappings) == {"title": "Fernseher"}
    assert doc(values, mappings, channel=make_channel(locales=AT)) == {"title": "Fernseher"}
    assert doc(values, mappings, channel=make_channel(locales=["en_US", "de_DE"])) == {
        "title": "TV"
    }
    assert doc(values, mappings, channel=make_channel(locales=["fr_FR"])) == {}


# --- localized -----------------------------------------------------------------------------------


def test_localized_gives_one_value_per_channel_locale() -> None:
    channel = make_channel(locales=[*AT, "en_US"])
    values = {
        "name": [v("Fernseher", "de_DE"), v("TV", "en_US")],
        "description": [
            v("Text DE", "de_DE", "ecommerce"),
            v("Text EN", "en_US", "ecommerce"),
            v("Druck", "de_AT", "print"),
        ],
        "ean": [v("123")],
    }
    mappings = [
        {"pim": "name", "target": "title", "transform": "localized"},
        {"pim": "description", "target": "body", "transform": "localized", "required": True},
        {"pim": "ean", "target": "ean", "transform": "localized"},  # not localizable: copied
    ]
    assert doc(values, mappings, channel=channel) == {
        "title": {"de_AT": "Fernseher", "en_US": "TV"},
        "body": {"de_AT": "Text DE", "en_US": "Text EN"},
        "ean": {"de_AT": "123", "en_US": "123"},
    }


def test_localized_prefers_the_locale_then_falls_back_over_empty_values() -> None:
    channel = make_channel(locales=AT)
    mappings = [{"pim": "name", "target": "title", "transform": "localized"}]
    values = {"name": [v("Fernseher AT", "de_AT"), v("Fernseher", "de_DE")]}
    assert doc(values, mappings, channel=channel) == {"title": {"de_AT": "Fernseher AT"}}
    values = {"name": [v(" ", "de_AT"), v("Fernseher", "de_DE")]}
    assert doc(values, mappings, channel=channel) == {"title": {"de_AT": "Fernseher"}}


def test_localized_with_inner_transform_and_labels() -> None:
    channel = make_channel(locales=["de_DE", "en_US"])
    values = {"colors": [v(["red", "blue"])], "tv_spec_003": [v("a", "de_DE"), v("b", "en_US")]}
    mappings = [
        {
            "pim": "colors",
            "target": "colors",
            "transform": "localized",
            "of": "multi_to_csv",
            "labels": True,
        },
        {
            "pim": "tv_spec_003",
            "target": "spec",
            "transform": "localized",
            "of": "lookup",
            "table": "t",
        },
    ]
    result = doc(values, mappings, channel=channel, lookups={"t": {"a": "A", "b": "B"}})
    assert result == {
        "colors": {"de_DE": "Rot, blue", "en_US": "Red, Blue"},
        "spec": {"de_DE": "A", "en_US": "B"},
    }


def test_localized_required_missing_one_locale_is_a_transform_error() -> None:
    channel = make_channel(locales=["de_DE", "en_US"])
    mappings = [{"pim": "name", "target": "title", "transform": "localized", "required": True}]
    with pytest.raises(TransformError) as info:
        mapped({"name": [v("Fernseher", "de_DE")]}, mappings, channel=channel)
    err = info.value
    assert (err.sku, err.attribute, err.contract) == (SKU, "name", "web@3")
    assert "no value for locale en_US (tried en_US)" in str(err)


def test_localized_not_required_missing_one_locale_is_partial() -> None:
    channel = make_channel(locales=["de_DE", "en_US"])
    mappings = [{"pim": "name", "target": "title", "transform": "localized"}]
    assert doc({"name": [v("Fernseher", "de_DE")]}, mappings, channel=channel) == {
        "title": {"de_DE": "Fernseher"}
    }


def test_localized_required_missing_everywhere_is_missing_required() -> None:
    channel = make_channel(locales=["de_DE", "en_US"])
    mappings = [{"pim": "name", "target": "title", "transform": "localized", "required": True}]
    result = mapped({"name": [v("Nom", "fr_FR")]}, mappings, channel=channel)
    assert result.doc == {} and result.missing_required == ["name"]


# --- required mappings --------------------------------------------------------------------------


def test_required_attribute_missing() -> None:
    mappings = [
        {"pim": "ean", "target": "gtin", "required": True},
        {
            "pim": "weight",
            "target": "dims.weight",
            "transform": "metric_to_string",
            "required": True,
        },
        {"pim": "brand", "target": "brand", "required": True},
    ]
    result = mapped({"brand": [v("acme")], "ean": [v("")]}, mappings)
    assert result.missing_required == ["ean", "weight"]
    assert result.doc == {"brand": "acme"}


def test_required_attribute_outside_the_attribute_scope_is_not_missing() -> None:
    channel = make_channel(attribute_scope=["*", "!ean"])
    mappings = [{"pim": "ean", "target": "gtin", "required": True}]
    result = mapped({"ean": [v("123")]}, mappings, channel=channel)
    assert result.doc == {} and result.missing_required == []


def test_required_identifier_mapping() -> None:
    # The identifier is not drift when unmapped, but a contract may map it explicitly.
    result = mapped({"sku": [v(SKU)]}, [{"pim": "sku", "target": "number", "required": True}])
    assert result.doc == {"number": SKU} and result.missing_required == []
    unmapped = mapped({"sku": [v(SKU)]}, [{"pim": "name", "target": "title"}], unmapped="warn")
    assert unmapped.drift == [] and unmapped.doc == {}


# --- drift ---------------------------------------------------------------------------------------

DRIFT_VALUES = {
    "sku": [v(SKU)],
    "name": [v("Fernseher", "de_DE")],
    "ean": [v("123")],
    "rating": [v(4)],
    "internal_note": [v("x")],
    "internal_code": [v("y")],
}
DRIFT_MAPPINGS = [{"pim": "name", "target": "title", "transform": "localized"}]


def test_drift_skip_records_nothing() -> None:
    result = mapped(DRIFT_VALUES, DRIFT_MAPPINGS, unmapped="skip")
    assert result.drift == []
    assert result.doc == {"title": {"de_DE": "Fernseher"}}


def test_drift_warn_returns_the_unmapped_attributes() -> None:
    result = mapped(DRIFT_VALUES, DRIFT_MAPPINGS, unmapped="warn")
    assert result.drift == ["ean", "internal_code", "internal_note", "rating"]  # sorted
    assert result.doc == {"title": {"de_DE": "Fernseher"}}


def test_drift_fail_raises() -> None:
    with pytest.raises(DriftError) as info:
        mapped(DRIFT_VALUES, DRIFT_MAPPINGS, unmapped="fail")
    err = info.value
    assert isinstance(err, MappingError)
    assert err.sku == SKU and err.contract == "web@3"
    assert err.attributes == ["ean", "internal_code", "internal_note", "rating"]
    assert str(err) == (
        "SKU 'SKU-5': 4 attribute(s) not in contract web@3 (unmapped strategy: fail): "
        "ean, internal_code, internal_note, rating"
    )


def test_drift_fail_message_is_shortened() -> None:
    values = {f"attr_{i:02d}": [v(i)] for i in range(25)}
    with pytest.raises(DriftError) as info:
        mapped(values, DRIFT_MAPPINGS, unmapped="fail")
    assert len(info.value.attributes) == 25
    message = str(info.value)
    assert "25 attribute(s)" in message and "attr_19" in message and "attr_20" not in message
    assert message.endswith(" ...")


def test_drift_fail_without_drift_maps() -> None:
    values = {"sku": [v(SKU)], "name": [v("Fernseher", "de_DE")]}
    assert mapped(values, DRIFT_MAPPINGS, unmapped="fail").doc == {"title": {"de_DE": "Fernseher"}}


def test_ignored_attributes_are_not_drift() -> None:
    result = mapped(DRIFT_VALUES, DRIFT_MAPPINGS, ignore=["internal_*", "rating"])
    assert result.drift == ["ean"]
    with pytest.raises(DriftError) as info:
        mapped(DRIFT_VALUES, DRIFT_MAPPINGS, unmapped="fail", ignore=["internal_*", "rating"])
    assert info.value.attributes == ["ean"]


def test_out_of_scope_attributes_are_neither_drift_nor_mapped() -> None:
    channel = make_channel(attribute_scope=["*", "!internal_*", "!ean", "!rating"])
    result = mapped(
        DRIFT_VALUES,
        [*DRIFT_MAPPINGS, {"pim": "ean", "target": "gtin"}],
        channel=channel,
        unmapped="fail",
    )
    assert result.doc == {"title": {"de_DE": "Fernseher"}}
    assert result.drift == []


def test_foreign_domain_attributes_are_violations_not_drift() -> None:
    values = {
        "name": [v("Fernseher", "de_DE")],
        "price": [v([{"amount": "9", "currency": "EUR"}])],
        "picture": [v("files/a.jpg")],
        "stock": [v(5)],
    }
    mappings = [*DRIFT_MAPPINGS, {"pim": "price", "target": "price", "transform": "price"}]
    result = mapped(values, mappings, ownership=OwnershipTable(), unmapped="fail")
    assert result.doc == {"title": {"de_DE": "Fernseher"}}  # mapped but foreign: left out
    assert result.drift == []
    assert result.violations == [
        Violation("pim", "pricing", "price"),
        Violation("pim", "media", "picture"),
        Violation("pim", "inventory", "stock"),
    ]
    # without an ownership table nothing is stripped: the price is mapped, the rest is drift
    result = mapped(values, mappings, unmapped="warn")
    assert result.doc["price"] == {"amount": "9.00", "currency": "EUR"}
    assert result.drift == ["picture", "stock"] and result.violations == []


def test_identifier_is_never_drift_nor_violation() -> None:
    owners_nothing = OwnershipTable(
        owners={
            "identity": "erp",
            "pricing": "erp",
            "inventory": "wms",
            "content": "erp",
            "attributes": "erp",
            "taxonomy": "erp",
            "localisation": "erp",
            "media": "dam",
        }
    )
    result = mapped({"sku": [v(SKU)]}, DRIFT_MAPPINGS, ownership=owners_nothing, unmapped="fail")
    assert result == MapResult(doc={})


# --- globs ---------------------------------------------------------------------------------------


def test_glob_targets_with_auto() -> None:
    values = {
        "tv_spec_001": [v({"amount": "55.0000", "unit": "INCH"})],
        "tv_spec_002": [v(["hdmi", "usb"])],
        "tv_spec_003": [v("matt", "de_DE"), v("matte", "en_US")],
        "tv_spec_004": [v(True)],
        "tv_spec_006": [v(12)],
    }
    mappings = [
        {"pim": "tv_spec_006", "target": "count", "transform": "number", "precision": 0},
        {"pim": "*_spec_*", "target": "specs.{attribute}", "transform": "auto"},
    ]
    assert doc(values, mappings, unmapped="fail") == {
        "count": 12,
        "specs": {
            "tv_spec_001": "55 in",
            "tv_spec_002": "hdmi, usb",
            "tv_spec_003": {"de_DE": "matt"},  # localizable: one value per channel locale
            "tv_spec_004": True,
        },
    }


def test_glob_target_at_top_level() -> None:
    assert doc({"tv_spec_004": [v(False)]}, [{"pim": "tv_*", "target": "{attribute}"}]) == {
        "tv_spec_004": False
    }


def test_several_mappings_of_one_attribute() -> None:
    values = {"weight": [v({"amount": "2.5", "unit": "KILOGRAM"})]}
    mappings = [
        {"pim": "weight", "target": "weight_text", "transform": "metric_to_string"},
        {"pim": "weight", "target": "weight_kg", "transform": "number", "precision": 1},
    ]
    assert doc(values, mappings) == {"weight_text": "2.5 kg", "weight_kg": 2.5}


# --- errors -------------------------------------------------------------------------------------


def test_transform_error_names_the_unit() -> None:
    with pytest.raises(TransformError) as info:
        mapped(
            {"color": [v("purple")]},
            [{"pim": "color", "target": "c", "transform": "lookup", "table": "t"}],
            lookups={"t": {"red": 1}},
        )
    err = info.value
    assert (err.sku, err.attribute, err.value, err.contract) == (SKU, "color", "purple", "web@3")
    assert str(err) == (
        "SKU 'SKU-5': attribute 'color' value 'purple' (contract web@3): "
        "no option mapping for 'purple' in lookup table 't'"
    )


def test_computed_fields() -> None:
    channel = make_channel(extra={"vat_rate": 19}, category_tree="master")
    mappings = [
        {"target": "slug", "transform": "computed", "function": "slug"},
        {"target": "tax.vat", "transform": "computed", "function": "vat_rate"},
        {"target": "tax.cats", "transform": "computed", "function": "category_codes"},
    ]
    product = make_product(
        {"name": [v("Fernseher", "de_DE")]}, identifier="TV-1", categories=["master_tv", "b2b_tv"]
    )
    result = map_product(product, channel, make_contract(mappings), DEFS)
    assert result.doc == {"slug": "fernseher-tv-1", "tax": {"vat": 19, "cats": ["master_tv"]}}
    with pytest.raises(TransformError, match=r"has no extra\.vat_rate") as info:
        mapped({}, mappings)
    assert info.value.attribute == "vat_rate"


def test_unexpected_exception_in_a_transform_becomes_a_transform_error() -> None:
    @register_computed("test_broken")
    def broken(ctx: Any, spec: Any) -> Any:
        return 1 / 0

    try:
        with pytest.raises(TransformError) as info:
            mapped({}, [{"target": "x", "transform": "computed", "function": "test_broken"}])
    finally:
        COMPUTED.pop("test_broken", None)
    err = info.value
    assert err.sku == SKU and err.contract == "web@3"
    assert "ZeroDivisionError" in err.reason
    assert isinstance(err.__cause__, ZeroDivisionError)


# --- plans ---------------------------------------------------------------------------------------


def test_plan_reused_over_products_gives_the_same_answers() -> None:
    cc: CompiledContract = make_contract(
        [
            {"pim": "name", "target": "title", "transform": "localized"},
            {"pim": "*_spec_*", "target": "specs.{attribute}", "transform": "auto"},
        ],
        unmapped="warn",
    )
    channel = make_channel()
    plan = MappingPlan(channel, cc, DEFS, OwnershipTable())
    products = [
        make_product(
            {
                "name": [v(f"n{i}", "de_DE")],
                "tv_spec_001": [v({"amount": i, "unit": "GRAM"})],
                "ean": [v("1")],
            },
            identifier=f"P{i}",
        )
        for i in range(5)
    ]
    for p in products:
        assert plan.map(p) == map_product(p, channel, cc, DEFS, OwnershipTable())


def test_undefined_attribute_is_decided_per_product() -> None:
    # An attribute the catalog does not define is judged by its values; one product's values
    # must not decide how the next product's are read.
    cc = make_contract([{"pim": "extra", "target": "extra", "transform": "auto"}])
    channel = make_channel()
    plain = make_product({"extra": [v("text")]}, identifier="A")
    localized = make_product({"extra": [v("Text", "de_DE")]}, identifier="B")
    prices = make_product({"extra": [v([{"amount": "1", "currency": "EUR"}])]}, identifier="C")
    expected = {
        "A": ({"extra": "text"}, []),
        "B": ({"extra": {"de_DE": "Text"}}, []),
        "C": ({}, [Violation("pim", "pricing", "extra")]),
    }
    for order in (
        [plain, localized, prices],
        [prices, localized, plain],
        [localized, plain, prices],
    ):
        plan = MappingPlan(channel, cc, DEFS, OwnershipTable())
        for p in order:
            result = plan.map(p)
            assert (result.doc, result.violations) == expected[p.identifier], p.identifier


def test_undefined_attribute_reads_scope_then_unscoped_and_locale_chain() -> None:
    mappings = [{"pim": "extra", "target": "extra"}]
    values = {"extra": [v("unscoped"), v("scoped", None, "ecommerce")]}
    assert doc(values, mappings) == {"extra": "scoped"}
    values = {"extra": [v("other scope", None, "print"), v("unscoped")]}
    assert doc(values, mappings) == {"extra": "unscoped"}
    values = {"extra": [v("Deutsch", "de_DE"), v("English", "en_US")]}
    assert doc(values, mappings, channel=make_channel(locales=AT)) == {"extra": "Deutsch"}
