from __future__ import annotations

import pytest

from app.pim.catalog import (
    DEFAULT_UNIT_SYMBOLS,
    AttributeDef,
    DefinitionError,
    build_definitions,
    definitions_from_dict,
)
from tests.catalog_builders import small_defs


def test_build_definitions_parses_rest_shapes() -> None:
    defs = small_defs()
    desc = defs.attributes["description"]
    assert (desc.localizable, desc.scopable, desc.type) == (True, True, "pim_catalog_textarea")
    assert defs.attributes["legal_notice"].available_locales == frozenset({"de_DE", "de_AT"})
    assert defs.families["tv"].requirements["ecommerce"] == (
        "sku",
        "name",
        "description",
        "price",
        "weight",
    )
    assert defs.families["bare"].requirements == {}
    assert defs.channels["ecommerce"].currencies == ("EUR",)
    assert defs.categories["master_tv"] == "master"
    assert defs.categories["master"] is None
    assert defs.attribute_type("brand") == "pim_catalog_simpleselect"
    assert defs.attribute_type("nope") is None
    # default unit symbols, overridable by the catalog
    assert defs.unit_symbols["KILOGRAM"] == "kg"
    custom = build_definitions(unit_symbols={"KILOGRAM": "Kilo"})
    assert custom.unit_symbols["KILOGRAM"] == "Kilo"
    assert custom.unit_symbols["GRAM"] == DEFAULT_UNIT_SYMBOLS["GRAM"]


def test_to_dict_round_trips() -> None:
    defs = small_defs()
    again = definitions_from_dict(defs.to_dict())
    assert again.attributes == defs.attributes
    assert again.families == defs.families
    assert again.channels == defs.channels
    assert again.categories == defs.categories
    assert again.options == defs.options


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"attributes": [{"code": "a"}]}, "attribute 'a': field 'type' is required"),
        ({"attributes": [{"type": "pim_catalog_text"}]}, "field 'code' is required"),
        ({"families": [{"code": ""}]}, "field 'code' is required"),
        ({"families": [{"code": "f", "attribute_requirements": ["x"]}]}, "family 'f'"),
        ({"channels": [{"locales": []}]}, "channel '<unknown>'"),
        ({"categories": [{"parent": "x"}]}, "category"),
        ({"options": [{"code": "red"}]}, "field 'attribute' is required"),
    ],
)
def test_bad_definitions(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(DefinitionError, match=words):
        build_definitions(**kwargs)  # type: ignore[arg-type]


def test_option_label_follows_chain_and_falls_back_to_code() -> None:
    defs = small_defs()
    assert defs.option_label("brand", "acme", ("de_DE",)) == "ACME GmbH"
    assert defs.option_label("brand", "acme", ("fr_FR", "en_US")) == "ACME Corp"
    # an empty label does not count: the chain goes on
    assert defs.option_label("brand", "acme", ("de_AT", "de_DE")) == "ACME GmbH"
    assert defs.option_label("brand", "acme", ("fr_FR",)) == "acme"
    assert defs.option_label("brand", "nolabel", ("de_DE",)) == "nolabel"
    assert defs.option_label("brand", "unknown", ("de_DE",)) == "unknown"
    assert defs.option_label("nope", "acme", ("de_DE",)) == "acme"
    # cached answers stay per chain
    assert defs.option_label("colors", "red", ("de_DE",)) == "Rot"
    assert defs.option_label("colors", "red", ("en_US",)) == "Red"


def test_category_root_and_is_under() -> None:
    defs = small_defs()
    assert defs.category_root("master_tv_oled") == "master"
    assert defs.category_root("master") == "master"
    assert defs.category_root("b2b_tv") == "b2b"
    assert defs.category_root("unknown") is None
    assert defs.is_under("master_tv_oled", "master")
    assert defs.is_under("master_tv_oled", "master_tv")
    assert defs.is_under("master", "master")
    assert not defs.is_under("master", "master_tv")
    assert not defs.is_under("b2b_tv", "master")
    assert not defs.is_under("unknown", "master")


def test_category_cycles_do_not_hang() -> None:
    defs = build_definitions(
        categories=[
            {"code": "a", "parent": "b"},
            {"code": "b", "parent": "a"},
            {"code": "c", "parent": "a"},
        ]
    )
    assert defs.category_root("c") is None
    assert defs.is_under("c", "b")
    assert not defs.is_under("c", "root")


def test_required_in_locale() -> None:
    anywhere = AttributeDef("a", "pim_catalog_text")
    assert anywhere.required_in_locale("fr_FR")
    specific = AttributeDef("b", "pim_catalog_text", available_locales=frozenset({"de_DE"}))
    assert specific.required_in_locale("de_DE")
    assert not specific.required_in_locale("de_AT")
