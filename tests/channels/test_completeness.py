from __future__ import annotations

from typing import Any

import pytest

from app.channels.completeness import (
    Completeness,
    LocaleCompleteness,
    compute_completeness,
    required_attributes,
)
from tests.catalog_builders import make_channel, make_product, small_defs, v

DEFS = small_defs()

FULL_VALUES: dict[str, list[dict[str, Any]]] = {
    "sku": [v("SKU-1")],
    "name": [v("Fernseher", "de_DE"), v("Television", "en_US")],
    "description": [v("Beschreibung", "de_DE", "ecommerce"), v("Text", "en_US", "ecommerce")],
    "price": [v([{"amount": "10.00", "currency": "EUR"}, {"amount": "9.00", "currency": "GBP"}])],
    "weight": [v({"amount": "1.5", "unit": "KILOGRAM"})],
}


def values(**changes: list[dict[str, Any]] | None) -> dict[str, list[dict[str, Any]]]:
    out = dict(FULL_VALUES)
    for attr, entries in changes.items():
        if entries is None:
            out.pop(attr, None)
        else:
            out[attr] = entries
    return out


def completeness(vals: dict[str, Any], family: str | None = "tv", **channel: Any) -> Completeness:
    return compute_completeness(make_product(vals, family=family), make_channel(**channel), DEFS)


def missing_de(vals: dict[str, Any], **channel: Any) -> tuple[str, ...]:
    return completeness(vals, **channel).per_locale["de_DE"].missing


def test_complete_product() -> None:
    c = completeness(values())
    assert c.complete and c.ratio == 100 and c.missing == []
    assert c.per_locale["de_DE"] == LocaleCompleteness("de_DE", 5, ())


def test_family_requirements_for_the_channels_pim_scope() -> None:
    p = make_product(values(), family="tv")
    assert required_attributes(p, make_channel(), DEFS) == [
        "sku",
        "name",
        "description",
        "price",
        "weight",
    ]
    assert required_attributes(p, make_channel(pim_scope="b2b"), DEFS) == ["sku", "name"]
    assert required_attributes(p, make_channel(pim_scope="print"), DEFS) == []
    both = make_channel(completeness={"required": ["ean", "name"]})
    assert required_attributes(p, both, DEFS, extra=["rating"]) == [
        "sku",
        "name",
        "description",
        "price",
        "weight",
        "ean",
        "rating",
    ]
    only_channel = make_channel(completeness={"required": ["ean"], "family_requirements": False})
    assert required_attributes(p, only_channel, DEFS) == ["ean"]


# --- scopable / localizable combinations -------------------------------------------------------


def test_localizable_attribute_needs_the_channel_locale() -> None:
    assert missing_de(values(name=[v("Television", "en_US")])) == ("name",)
    assert missing_de(values(name=[v("Fernseher")])) == ("name",)  # no locale: not the slot
    assert missing_de(values(name=[v("Fernseher", "de_DE", "ecommerce")])) == ("name",)


def test_scopable_localizable_attribute_needs_scope_and_locale() -> None:
    assert missing_de(values(description=[v("x", "de_DE", "print")])) == ("description",)
    assert missing_de(values(description=[v("x", "de_DE")])) == ("description",)
    assert missing_de(values(description=[v("x", "en_US", "ecommerce")])) == ("description",)
    assert missing_de(values(description=[v("x", "de_DE", "ecommerce")])) == ()
    # the same product read through another PIM scope
    b2b = dict(values(), description=[v("x", "de_DE", "b2b")])
    c = completeness(b2b, pim_scope="b2b", completeness={"required": ["description"]})
    assert c.complete


def test_scopable_non_localizable_attribute() -> None:
    req = {"required": ["teaser"], "family_requirements": False}
    assert missing_de({"teaser": [v("t", None, "ecommerce")]}, completeness=req) == ()
    assert missing_de({"teaser": [v("t")]}, completeness=req) == ("teaser",)
    assert missing_de({"teaser": [v("t", None, "print")]}, completeness=req) == ("teaser",)


def test_plain_attribute_needs_the_unlocalized_unscoped_slot() -> None:
    req = {"required": ["ean"], "family_requirements": False}
    assert missing_de({"ean": [v("4006381333931")]}, completeness=req) == ()
    assert missing_de({"ean": [v("4006381333931", "de_DE")]}, completeness=req) == ("ean",)
    assert missing_de({"ean": [v("4006381333931", None, "ecommerce")]}, completeness=req) == (
        "ean",
    )


# --- fallback chains ----------------------------------------------------------------------------


AT = [{"code": "de_AT", "fallback": ["de_DE"]}]


def test_fallback_chain_de_at_to_de_de() -> None:
    german_only = values(
        name=[v("Fernseher", "de_DE")],
        description=[v("Beschreibung", "de_DE", "ecommerce")],
    )
    c = completeness(german_only, locales=AT)
    assert c.complete and list(c.per_locale) == ["de_AT"]
    # without the fallback, de_AT has neither name nor description
    c = completeness(german_only, locales=["de_AT"])
    assert c.per_locale["de_AT"].missing == ("name", "description")
    assert c.ratio == 60


def test_fallback_skips_an_empty_value() -> None:
    vals = values(
        name=[v("  ", "de_AT"), v("Fernseher", "de_DE")],
        description=[v("", "de_AT", "ecommerce"), v("x", "de_DE", "ecommerce")],
    )
    assert completeness(vals, locales=AT).complete
    vals = values(name=[v("  ", "de_AT"), v("", "de_DE")])
    assert completeness(vals, locales=AT).per_locale["de_AT"].missing == ("name",)


def test_fallback_does_not_reach_beyond_the_chain() -> None:
    vals = values(name=[v("Television", "en_US")])
    assert completeness(vals, locales=AT).missing == ["name"]


# --- prices ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prices", "currencies", "present"),
    [
        ([{"amount": "10", "currency": "EUR"}], ["EUR"], True),
        ([{"amount": 0, "currency": "EUR"}], ["EUR"], True),
        ([{"amount": "10", "currency": "EUR"}], ["EUR", "GBP"], False),
        (
            [{"amount": "10", "currency": "EUR"}, {"amount": "8", "currency": "GBP"}],
            ["EUR", "GBP"],
            True,
        ),
        (
            [{"amount": "10", "currency": "EUR"}, {"amount": None, "currency": "GBP"}],
            ["EUR", "GBP"],
            False,
        ),
        ([{"amount": "", "currency": "EUR"}], ["EUR"], False),
        ([{"amount": "10", "currency": "USD"}], ["EUR"], False),
        ([], ["EUR"], False),
        (["EUR"], ["EUR"], False),
        ({"amount": "10", "unit": "EUR"}, ["EUR"], False),
        ("10 EUR", ["EUR"], False),
    ],
)
def test_price_collection_needs_every_channel_currency(
    prices: Any, currencies: list[str], present: bool
) -> None:
    c = completeness(values(price=[v(prices)]), currencies=currencies)
    assert ("price" not in c.missing) is present


# --- locale-specific attributes ---------------------------------------------------------------


def test_locale_specific_attribute_only_required_in_its_locales() -> None:
    req = {"required": ["legal_notice"], "family_requirements": False}
    c = completeness({}, locales=["de_DE", "en_US"], completeness=req)
    assert c.per_locale["de_DE"] == LocaleCompleteness("de_DE", 1, ("legal_notice",))
    assert c.per_locale["en_US"] == LocaleCompleteness("en_US", 0, ())
    assert c.missing == ["legal_notice[de_DE]"]
    assert c.ratio == 0
    c = completeness(
        {"legal_notice": [v("Impressum", "de_DE")]}, locales=["de_DE", "en_US"], completeness=req
    )
    assert c.complete and c.ratio == 100


# --- empty values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attr", "data"),
    [
        ("name", ""),
        ("name", "   "),
        ("name", "\t\n"),
        ("name", None),
        ("weight", {"amount": None, "unit": "KILOGRAM"}),
        ("weight", {"amount": "", "unit": "KILOGRAM"}),
    ],
)
def test_empty_values_do_not_count(attr: str, data: Any) -> None:
    locale = "de_DE" if attr == "name" else None
    assert missing_de(values(**{attr: [v(data, locale)]})) == (attr,)


def test_empty_list_does_not_count() -> None:
    req = {"required": ["colors"], "family_requirements": False}
    assert missing_de({"colors": [v([])]}, completeness=req) == ("colors",)
    assert missing_de({"colors": [v(["red"])]}, completeness=req) == ()


@pytest.mark.parametrize("data", [0, False, "0", {"amount": 0, "unit": "GRAM"}])
def test_falsy_but_real_values_count(data: Any) -> None:
    req = {"required": ["rating"], "family_requirements": False}
    assert missing_de({"rating": [v(data)]}, completeness=req) == ()


# --- families and unknown attributes ------------------------------------------------------------


# (no family at all is not "no requirements": Akeneo computes no completeness then, see the
# issue 16 tests at the end)
@pytest.mark.parametrize("family", ["bare", "no_such_family"])
def test_no_requirements_means_complete(family: str | None) -> None:
    c = completeness({}, family=family)
    assert c.complete and c.ratio == 100
    assert c.per_locale["de_DE"].required == 0


def test_identifier_is_always_present() -> None:
    c = completeness(values(sku=None))
    assert c.complete


def test_unknown_attribute_accepts_any_matching_slot() -> None:
    req = {"required": ["mystery"], "family_requirements": False}
    for entries in (
        [v("x")],
        [v("x", "de_DE")],
        [v("x", None, "ecommerce")],
        [v("x", "de_DE", "ecommerce")],
    ):
        assert missing_de({"mystery": entries}, completeness=req) == (), entries
    for entries in ([v("x", "fr_FR")], [v("x", None, "print")], [v("")], [v([])], []):
        assert missing_de({"mystery": entries}, completeness=req) == ("mystery",), entries
    assert missing_de({}, completeness=req) == ("mystery",)
    # through the fallback chain too
    assert completeness({"mystery": [v("x", "de_DE")]}, locales=AT, completeness=req).complete


# --- ratio and the report ------------------------------------------------------------------------


def test_ratio_is_floored() -> None:
    # 5 required, 2 missing -> 60; 3 required, 1 missing -> 66 (not 67)
    assert completeness(values(price=None, weight=None)).ratio == 60
    req = {"required": ["name", "ean", "rating"], "family_requirements": False}
    c = completeness({"name": [v("n", "de_DE")], "ean": [v("e")]}, completeness=req)
    assert c.ratio == 66 and not c.complete
    assert LocaleCompleteness("x", 3, ("a", "b", "c")).ratio == 0
    assert LocaleCompleteness("x", 200, ("a",)).ratio == 99


def test_missing_report_over_locales() -> None:
    vals = values(name=[v("Television", "en_US")], weight=None)
    c = completeness(vals, locales=["de_DE", "en_US"])
    assert c.per_locale["de_DE"].missing == ("name", "weight")
    assert c.per_locale["en_US"].missing == ("weight",)
    assert c.missing == ["name[de_DE]", "weight"]
    assert c.ratio == 60  # the worst locale


def test_completeness_with_no_locales_is_complete() -> None:
    assert Completeness({}).complete and Completeness({}).ratio == 100


# --- issue 16: products without a family ----------------------------------------------------


def test_a_product_without_a_family_is_incomplete_with_the_reason_no_family() -> None:
    from app.channels.completeness import NO_FAMILY
    from app.channels.config import ChannelConfig
    from app.pim.catalog import build_definitions
    from app.pim.product import parse_product

    defs = build_definitions(attributes=[{"code": "sku", "type": "pim_catalog_identifier"}])
    channel = ChannelConfig.model_validate(
        {
            "code": "web",
            "pim_scope": "ecommerce",
            "locales": [{"code": "en_US"}, {"code": "de_DE"}],
            "currencies": ["EUR"],
            "completeness": {"required": []},
        }
    )
    orphan = parse_product({"identifier": "NOFAM", "family": None, "values": {}})
    result = compute_completeness(orphan, channel, defs)
    assert not result.complete and result.reason == NO_FAMILY and result.ratio == 0
    assert {lc.locale: (lc.complete, lc.reason) for lc in result.per_locale.values()} == {
        "en_US": (False, "no family"),
        "de_DE": (False, "no family"),
    }
    opted_in = channel.model_copy(
        update={
            "completeness": channel.completeness.model_copy(update={"publish_without_family": True})
        }
    )
    assert compute_completeness(orphan, opted_in, defs).complete
