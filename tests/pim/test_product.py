from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from app.pim.product import (
    MAX_ATTRIBUTES,
    MAX_IDENTIFIER_LENGTH,
    MISSING,
    Product,
    ProductParseError,
    content_hash,
    is_empty,
    is_missing,
    parse_datetime,
    parse_product,
)
from tests.catalog_builders import v


def raw_product(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "identifier": "SKU-1",
        "uuid": "8d2b6d3c-0000-4000-8000-000000000001",
        "family": "tv",
        "parent": None,
        "categories": ["master_tv"],
        "enabled": True,
        "updated": "2026-01-02T03:04:05+02:00",
        "values": {
            "sku": [v("SKU-1")],
            "name": [v("Fernseher", "de_DE"), v("Television", "en_US")],
            "description": [v("<p>x</p>", "de_DE", "ecommerce")],
            "weight": [v({"amount": "12.5000", "unit": "KILOGRAM"})],
            "price": [
                v([{"amount": "499.00", "currency": "EUR"}, {"amount": 420, "currency": "GBP"}])
            ],
            "colors": [v(["red", "blue"])],
            "active": [v(True)],
            "rating": [v(4.5)],
            "stock": [v(12)],
        },
    }
    raw.update(overrides)
    return raw


def parse_error(raw: Any, **kwargs: Any) -> ProductParseError:
    with pytest.raises(ProductParseError) as info:
        parse_product(raw, **kwargs)
    return info.value


# --- valid payloads --------------------------------------------------------------------------


def test_parse_full_product() -> None:
    p = parse_product(raw_product(_links={"self": {"href": "http://pim/x"}}))
    assert p.identifier == "SKU-1"
    assert p.uuid == "8d2b6d3c-0000-4000-8000-000000000001"
    assert p.family == "tv"
    assert p.parent is None
    assert p.categories == ("master_tv",)
    assert p.enabled is True
    assert p.updated == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert p.value("name", "de_DE") == "Fernseher"
    assert p.value("description", "de_DE", "ecommerce") == "<p>x</p>"
    assert p.value("weight") == {"amount": "12.5000", "unit": "KILOGRAM"}
    assert p.attribute_codes()[:2] == ["sku", "name"]
    # bookkeeping that is not product content is dropped from the stored raw payload
    assert "_links" not in p.raw
    assert p.raw["identifier"] == "SKU-1"


def test_parse_minimal_product_defaults() -> None:
    p = parse_product({"identifier": "A"})
    assert (p.family, p.parent, p.uuid, p.root_parent, p.updated) == (None, None, None, None, None)
    assert p.categories == ()
    assert p.enabled is True
    assert p.values == {}
    p = parse_product({"identifier": "A", "values": None, "categories": None})
    assert p.values == {} and p.categories == ()


def test_identifier_taken_from_identifier_attribute() -> None:
    raw = raw_product()
    del raw["identifier"]
    assert parse_product(raw).identifier == "SKU-1"
    assert parse_product(raw).raw["identifier"] == "SKU-1"
    raw["values"]["code"] = [v("CODE-9")]
    assert parse_product(raw, identifier_attribute="code").identifier == "CODE-9"


def test_identifier_attribute_ignores_non_text_values() -> None:
    raw = {"values": {"sku": [v(12), v("REAL", "de_DE")]}}
    assert parse_product(raw).identifier == "REAL"


def test_value_matches_locale_and_scope_exactly() -> None:
    p = parse_product(raw_product())
    assert p.value("name") is MISSING  # localizable: no value without locale
    assert p.value("description", "de_DE") is MISSING  # scopable: no value without scope
    assert p.value("description", "de_DE", "print") is MISSING
    assert is_missing(p.value("nope"))
    assert not is_missing(p.value("active"))
    assert p.value("active") is True


def test_unlocalized_index_agrees_with_value() -> None:
    values = {
        "name": [v("TV", "en_US")],  # localized only: not indexed
        "weight": [v({"amount": "2.5", "unit": "KILOGRAM"})],
        "blank": [v("   ")],
        "no_amount": [v({"amount": None, "unit": "KILOGRAM"})],
        "tags": [v([])],
        "zero": [v(0)],
        "off": [v(False)],
        "copy": [v("ecommerce text", None, "ecommerce"), v("print text", None, "print")],
        # two entries for the same (scope, locale): the first wins, even when it is empty
        "twice": [v(""), v("second")],
        "mixed": [v("Hallo", "de_DE"), v("plain")],
    }
    p = parse_product({"identifier": "SKU-1", "values": values})
    index = p.unlocalized()
    assert index is p.unlocalized()  # built once per product
    assert set(index) == {None, "ecommerce", "print"}
    for scope, by_attribute in index.items():
        for attribute, data in by_attribute.items():
            expected = p.value(attribute, None, scope)
            assert data == (None if is_empty(expected) else expected), attribute
    assert "name" not in index[None]
    assert index[None]["weight"] == {"amount": "2.5", "unit": "KILOGRAM"}
    # empty values are left out: the index holds only values a channel can publish
    assert {"blank", "no_amount", "tags"}.isdisjoint(index[None])
    assert index[None]["zero"] == 0 and index[None]["off"] is False
    assert index["ecommerce"] == {"copy": "ecommerce text"}
    assert index["print"] == {"copy": "print text"}
    assert "twice" not in index[None]  # its first entry is empty: no value, not "second"
    assert index[None]["mixed"] == "plain"
    assert Product.trusted(p.raw, p.identifier).unlocalized() == index
    # a copy with other values builds its own index
    other = dataclasses.replace(p, values={"twice": [v("only")]})
    assert other.unlocalized() == {None: {"twice": "only"}}
    assert p.unlocalized() is index


def test_trusted_rebuilds_the_same_product() -> None:
    p = parse_product(raw_product())
    again = Product.trusted(p.raw, p.identifier)
    assert again.values == p.values
    assert again.categories == p.categories
    assert again.updated == p.updated
    assert again.family == p.family


def test_parse_datetime_naive_is_utc() -> None:
    assert parse_datetime("2026-01-01T10:00:00") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    dt = parse_datetime("2026-01-01T10:00:00+02:00")
    assert dt.utcoffset() == timedelta(hours=2)
    assert dt == datetime(2026, 1, 1, 8, tzinfo=timezone.utc)  # noqa: UP017


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        0,
        -1.5,
        False,
        "text",
        ["a", "b"],
        [],
        {"amount": None, "unit": None},
        {"amount": "1", "unit": "GRAM"},
        [{"amount": None, "currency": "EUR"}],
        ["opt", {"amount": "1", "currency": "EUR"}],
        2**64 - 1,
        -(2**63),
    ],
)
def test_accepted_data_shapes(data: Any) -> None:
    p = parse_product({"identifier": "X", "values": {"a": [v(data)]}})
    assert p.value("a") == data


# --- rejected payloads: each names the product and the field ----------------------------------


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"a": "text"}, "values.a", "must be a list"),
        ({"a": {"data": 1}}, "values.a", "must be a list"),
        ({"a": ["x"]}, "values.a[0]", "locale, scope, data"),
        ({"a": [v(1), {"locale": None, "scope": None}]}, "values.a[1]", "locale, scope, data"),
        ({"a": [{"locale": 1, "scope": None, "data": 1}]}, "values.a[0].locale", "code or null"),
        ({"a": [{"locale": None, "scope": ["x"], "data": 1}]}, "values.a[0].scope", "code or null"),
        ({"a": [v({"unit": "GRAM"})]}, "values.a[0].data", "metric {amount, unit}"),
        ({"a": [v({"amount": [1], "unit": "GRAM"})]}, "values.a[0].data", "must be a number"),
        ({"a": [v({"amount": "1"})]}, "values.a[0].data", "without a unit"),
        ({"a": [v({"amount": 1, "unit": 5})]}, "values.a[0].data", "without a unit"),
        ({"a": [v([{"amount": 1}])]}, "values.a[0].data[0]", "currency"),
        (
            {"a": [v([{"amount": {}, "currency": "EUR"}])]},
            "values.a[0].data[0]",
            "must be a number",
        ),
        ({"a": [v(["ok", 3])]}, "values.a[0].data[1]", "option codes or prices"),
        ({"a": [v(["ok", ["nested"]])]}, "values.a[0].data[1]", "option codes or prices"),
        ({"a": [v(("tuple",))]}, "values.a[0].data", "unsupported value tuple"),
        ({"a": [v({1, 2})]}, "values.a[0].data", "unsupported value set"),
        # numbers a JSON document (and the orjson-backed mirror) cannot hold
        ({"a": [v(2**64)]}, "values.a[0].data", "out of range"),
        ({"a": [v(-(2**63) - 1)]}, "values.a[0].data", "out of range"),
        ({"a": [v(float("nan"))]}, "values.a[0].data", "out of range"),
        ({"a": [v(float("inf"))]}, "values.a[0].data", "out of range"),
        ({"a": [v({"amount": float("nan"), "unit": "G"})]}, "values.a[0].data", "number"),
        ({"a": [v([{"amount": 10**30, "currency": "EUR"}])]}, "values.a[0].data[0]", "number"),
    ],
)
def test_bad_values_name_product_and_field(values: dict[str, Any], field: str, words: str) -> None:
    err = parse_error({"identifier": "SKU-7", "values": values})
    assert err.product_ref == "SKU-7"
    assert err.field == field
    assert words in err.message
    assert str(err).startswith(f"product 'SKU-7': field {field!r}: ")


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"uuid": 5}, "uuid", "string or null"),
        ({"family": ["tv"]}, "family", "string or null"),
        ({"parent": 1}, "parent", "string or null"),
        ({"root_parent": {}}, "root_parent", "string or null"),
        ({"categories": "master"}, "categories", "list of category codes"),
        ({"categories": ["a", 2]}, "categories", "list of category codes"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"enabled": 1}, "enabled", "true or false"),
        ({"updated": 1700000000}, "updated", "ISO 8601"),
        ({"updated": "yesterday"}, "updated", "not an ISO 8601 date-time: 'yesterday'"),
        ({"values": ["a"]}, "values", "must be an object"),
    ],
)
def test_bad_product_fields(overrides: dict[str, Any], field: str, words: str) -> None:
    err = parse_error(raw_product(**overrides))
    assert err.product_ref == "SKU-1"
    assert err.field == field
    assert words in err.message


def test_not_an_object() -> None:
    err = parse_error(["SKU-1"])
    assert (err.product_ref, err.field) == ("<unknown>", "<root>")
    assert "expected an object, got list" in str(err)


@pytest.mark.parametrize(
    "raw",
    [
        {"values": {}},
        {"identifier": "   "},
        {"identifier": ""},
        {"identifier": 42},
        {"values": {"sku": [v(42)]}},
    ],
)
def test_missing_identifier(raw: dict[str, Any]) -> None:
    err = parse_error(raw)
    assert err.field == "identifier"
    assert "missing" in err.message


def test_identifier_too_long() -> None:
    parse_product({"identifier": "x" * MAX_IDENTIFIER_LENGTH})
    err = parse_error({"identifier": "x" * (MAX_IDENTIFIER_LENGTH + 1)})
    assert err.field == "identifier"
    assert f"longer than {MAX_IDENTIFIER_LENGTH}" in err.message


def test_product_without_identifier_is_named_by_uuid() -> None:
    err = parse_error({"uuid": "u-1", "values": {"a": "x"}})
    assert err.product_ref == "u-1"
    err = parse_error({"values": {"a": "x"}})
    assert err.product_ref == "<unknown>"


def test_too_many_attributes() -> None:
    values = {f"a{i}": [v(1)] for i in range(MAX_ATTRIBUTES + 1)}
    err = parse_error({"identifier": "X", "values": values})
    assert err.field == "values"
    assert str(MAX_ATTRIBUTES) in err.message


# --- is_empty ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "empty"),
    [
        (MISSING, True),
        (None, True),
        ("", True),
        ("   \t\n", True),
        ([], True),
        ({"amount": None, "unit": "GRAM"}, True),
        ({"amount": "", "unit": "GRAM"}, True),
        ({}, True),
        ("x", False),
        (" x ", False),
        (0, False),
        (0.0, False),
        (False, False),
        (["a"], False),
        ([{"amount": None, "currency": "EUR"}], False),  # a list is judged by its length
        ({"amount": 0, "unit": "GRAM"}, False),
        ({"amount": "0", "unit": "GRAM"}, False),
    ],
)
def test_is_empty(data: Any, empty: bool) -> None:
    assert is_empty(data) is empty


# --- content_hash --------------------------------------------------------------------------------


def test_content_hash_ignores_when_the_product_was_touched() -> None:
    a = raw_product()
    b = raw_product(updated="2030-01-01T00:00:00+00:00", created="2020-01-01T00:00:00+00:00")
    b["_links"] = {"self": {"href": "x"}}
    assert content_hash(a) == content_hash(b)
    assert content_hash(parse_product(a).raw) == content_hash(parse_product(b).raw)


def test_content_hash_ignores_category_order_and_default_enabled() -> None:
    a = raw_product(categories=["x", "y"])
    b = raw_product(categories=["y", "x"])
    assert content_hash(a) == content_hash(b)
    c = raw_product()
    del c["enabled"]
    assert content_hash(c) == content_hash(raw_product(enabled=True))


@pytest.mark.parametrize(
    "change",
    [
        {"enabled": False},
        {"family": "other"},
        {"parent": "model_1"},
        {"categories": ["master_tv", "b2b_tv"]},
        {"identifier": "SKU-2"},
    ],
)
def test_content_hash_sees_content_changes(change: dict[str, Any]) -> None:
    assert content_hash(raw_product()) != content_hash(raw_product(**change))


def test_content_hash_sees_value_changes() -> None:
    a, b = raw_product(), raw_product()
    b["values"]["name"][0]["data"] = "Fernseher 2"
    assert content_hash(a) != content_hash(b)
    h = content_hash(a)
    assert isinstance(h, str) and len(h) == 32


def test_every_accepted_number_can_be_hashed_and_stored() -> None:
    # The mirror stores with orjson: whatever parse_product accepts must serialise.
    raw = {
        "identifier": "X",
        "values": {"big": [v(2**64 - 1)], "neg": [v(-(2**63))], "f": [v(1e308)]},
    }
    p = parse_product(raw)
    assert orjson.loads(orjson.dumps(p.raw))["values"]["big"][0]["data"] == 2**64 - 1
    assert content_hash(p.raw)


# --- issue 16: products without an identifier -------------------------------------------------


def test_a_product_with_only_a_uuid_is_keyed_by_its_uuid() -> None:
    uid = "2A6E9F4C-1B8D-4C3E-9F00-5D1E2C3B4A59"
    product = parse_product({"uuid": uid, "family": "shoes", "values": {"name": [v("x")]}})
    assert product.identifier == uid.lower() and not product.has_identifier
    assert product.raw["identifier"] is None  # stored as the PIM gave it: no identifier
    again = Product.trusted(product.raw, product.identifier)
    assert again.identifier == uid.lower() and not again.has_identifier
    assert Product.trusted({"identifier": "SKU-1"}, "SKU-1").has_identifier
    # a uuid that is not one, or an empty identifier, is still refused
    for raw in ({"uuid": "not-a-uuid"}, {"uuid": uid, "identifier": ""}):
        assert parse_error(raw).field == "identifier"
