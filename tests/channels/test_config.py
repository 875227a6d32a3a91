from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.channels.config import (
    AttributeFilter,
    CategoryFilter,
    ChannelConfigError,
    EnabledFilter,
    FamilyFilter,
    channels_from_pim,
    load_channels,
    parse_channels,
)
from app.config import SAMPLE_DIR
from app.pim.catalog import build_definitions
from tests.catalog_builders import make_channel

BASE: dict[str, Any] = {"pim_scope": "ecommerce", "locales": ["de_DE"], "currency": "EUR"}

GOOD_YAML = """
channels:
  shop_de:
    label: German shop
    pim_scope: ecommerce
    locales:
      - de_DE
      - code: de_AT
        fallback: [de_DE, en_US]
    currency: EUR
    attribute_scope: ["*", "!b2b_*", "!internal_note"]
    completeness:
      required: [ean]
      family_requirements: false
    category_tree: master
    filters:
      - enabled: true
      - family_in: [tv, laptops]
      - family_not_in: [spare_parts]
      - category_under: master_tv
      - attribute: {attribute: hazmat, op: not_in, value: [class_2]}
      - {type: attribute, name: heavy, attribute: weight, op: gt, value: 20}
    contract: shop_de@2
    extra: {vat_rate: 19}
"""

GOOD_TOML = """
[channels.shop_de]
pim_scope = "ecommerce"
currencies = ["EUR", "CHF"]
contract = "shop_de@1"
locales = ["de_DE", { code = "de_CH", fallback = ["de_DE"] }]

[[channels.shop_de.filters]]
type = "family_in"
families = ["tv"]

[channels.b2b]
pim_scope = "b2b"
locales = ["en_US"]
currency = "USD"
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def config_error(settings: Any, code: str = "web", source: str = "chan.yaml") -> str:
    with pytest.raises(ChannelConfigError) as info:
        parse_channels({"channels": {code: settings}}, source=source)
    return str(info.value)


# --- good files --------------------------------------------------------------------------------


def test_load_good_yaml(tmp_path: Path) -> None:
    ch = load_channels(write(tmp_path, "channels.yaml", GOOD_YAML))["shop_de"]
    assert ch.code == "shop_de" and ch.label == "German shop"
    assert ch.locale_codes == ("de_DE", "de_AT")
    assert ch.locales[0].chain == ("de_DE",)
    assert ch.locales[1].chain == ("de_AT", "de_DE", "en_US")
    assert ch.currencies == ("EUR",) and ch.currency == "EUR"
    assert ch.completeness.required == ("ean",)
    assert ch.completeness.family_requirements is False
    assert ch.category_tree == "master"
    assert ch.contract is not None and ch.contract.key == "shop_de@2"
    assert ch.extra == {"vat_rate": 19}
    enabled, fam_in, fam_not_in, cat, attr, heavy = ch.filters
    assert isinstance(enabled, EnabledFilter) and enabled.value is True
    assert enabled.name == "enabled"
    assert isinstance(fam_in, FamilyFilter) and fam_in.families == ("tv", "laptops")
    assert not fam_in.negate and fam_in.name == "family_in"
    assert isinstance(fam_not_in, FamilyFilter) and fam_not_in.negate
    assert fam_not_in.name == "family_not_in"
    assert isinstance(cat, CategoryFilter) and cat.categories == ("master_tv",)
    assert isinstance(attr, AttributeFilter) and attr.op == "not_in"
    assert attr.name == "attribute:hazmat:not_in"  # generated name
    assert isinstance(heavy, AttributeFilter) and heavy.name == "heavy" and heavy.value == 20


def test_load_good_toml(tmp_path: Path) -> None:
    chans = load_channels(write(tmp_path, "channels.toml", GOOD_TOML))
    assert list(chans) == ["shop_de", "b2b"]
    shop = chans["shop_de"]
    assert shop.currencies == ("EUR", "CHF")
    assert shop.locales[1].chain == ("de_CH", "de_DE")
    assert shop.contract is not None and (shop.contract.id, shop.contract.version) == ("shop_de", 1)
    assert isinstance(shop.filters[0], FamilyFilter)
    assert chans["b2b"].currency == "USD"
    assert chans["b2b"].contract is None
    assert chans["b2b"].attribute_scope == ("*",)


def test_list_form_and_yaml_anchors(tmp_path: Path) -> None:
    text = """
defaults: &d {pim_scope: ecommerce, locales: [en_GB], currency: GBP}
channels:
  - {code: uk, <<: *d}
  - {code: uk_outlet, <<: *d, currency: EUR}
"""
    chans = load_channels(write(tmp_path, "c.yml", text))
    assert chans["uk"].currency == "GBP"
    assert chans["uk_outlet"].currency == "EUR"


def test_sample_channels_load() -> None:
    chans = load_channels(SAMPLE_DIR / "channels.yaml")
    assert set(chans) == {"de_storefront", "at_storefront", "uk_marketplace", "b2b_portal"}
    at = chans["at_storefront"]
    assert at.locales[0].chain == ("de_AT", "de_DE")
    assert at.contract is not None and at.contract.key == "storefront_at@1"
    assert not at.in_attribute_scope("b2b_min_order_qty")
    assert at.in_attribute_scope("name")
    assert chans["b2b_portal"].pim_scope == "b2b"
    assert chans["uk_marketplace"].filters[0].name == "no_dangerous_goods"


def test_locale_chain_drops_self_from_fallbacks() -> None:
    ch = make_channel(locales=[{"code": "de_AT", "fallback": ["de_AT", "de_DE"]}])
    assert ch.locales[0].chain == ("de_AT", "de_DE")


def test_attribute_scope_with_exclusions() -> None:
    ch = make_channel(attribute_scope=["name", "spec_*", "!spec_secret*", "!b2b_*"])
    assert ch.in_attribute_scope("name")
    assert ch.in_attribute_scope("spec_01")
    assert not ch.in_attribute_scope("spec_secret_1")
    assert not ch.in_attribute_scope("price")
    assert not ch.in_attribute_scope("b2b_pack")
    # memoised answers stay right
    assert not ch.in_attribute_scope("spec_secret_1")
    assert ch.in_attribute_scope("spec_01")
    # an exclusion wins whatever its position
    ch = make_channel(attribute_scope=["!price", "*"])
    assert not ch.in_attribute_scope("price")
    assert ch.in_attribute_scope("name")
    # globs are case-sensitive, as attribute codes are
    assert not make_channel(attribute_scope=["Name"]).in_attribute_scope("name")


def test_fingerprint_changes_with_configuration() -> None:
    a = make_channel()
    assert a.fingerprint() == make_channel().fingerprint()
    assert a.fingerprint() != make_channel(currency="GBP").fingerprint()
    assert a.fingerprint() != make_channel(attribute_scope=["*", "!x"]).fingerprint()
    assert a.fingerprint() != make_channel(contract="web@2").fingerprint()


def test_channels_from_pim() -> None:
    defs = build_definitions(
        channels=[
            {
                "code": "ecommerce",
                "locales": ["de_DE", "en_US"],
                "currencies": ["EUR", "USD"],
                "category_tree": "master",
                "labels": {"en_US": "E-commerce"},
            },
            {"code": "print", "locales": ["fr_FR"], "currencies": ["EUR"]},
        ]
    )
    chans = channels_from_pim(defs)
    assert set(chans) == {"ecommerce", "print"}
    ec = chans["ecommerce"]
    assert ec.pim_scope == "ecommerce" and ec.label == "E-commerce"
    assert ec.locale_codes == ("de_DE", "en_US")
    assert ec.currencies == ("EUR", "USD")
    assert ec.completeness.family_requirements
    assert chans["print"].label == "print"


# --- bad input: ChannelConfigError naming the channel and the field ---------------------------


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({**BASE, "locales": ["german"]}, ["locales.0.code", "'german' is not a locale code"]),
        (
            {**BASE, "locales": [{"code": "de_AT", "fallback": ["de-DE"]}]},
            ["locales.0.fallback", "'de-DE'"],
        ),
        ({**BASE, "locales": []}, ["locales", "at least 1"]),
        ({**BASE, "currency": "eur"}, ["currencies", "'eur' is not an ISO 4217"]),
        ({**BASE, "currency": "EURO"}, ["currencies", "'EURO'"]),
        ({"pim_scope": "x", "locales": ["de_DE"], "currencies": []}, ["currencies", "at least 1"]),
        ({**BASE, "currencies": ["EUR"]}, ["`currency` or `currencies`, not both"]),
        ({**BASE, "filters": [{"type": "bogus"}]}, ["filters.0", "'bogus'"]),
        ({**BASE, "filters": [{"nonsense": 1}]}, ["filters.0", "discriminator 'type'"]),
        ({**BASE, "filters": ["enabled"]}, ["filter #1 must be a mapping"]),
        ({**BASE, "filters": [{"enabled": True}, {}]}, ["filter #2 must be a mapping"]),
        (
            {**BASE, "filters": [{"type": "attribute", "attribute": "a", "op": "eq"}]},
            ["filters.0.attribute", "op eq needs a value"],
        ),
        (
            {**BASE, "filters": [{"type": "attribute", "attribute": "a", "op": "in", "value": 1}]},
            ["filters.0.attribute", "op in needs a list"],
        ),
        (
            {
                **BASE,
                "filters": [{"type": "attribute", "attribute": "a", "op": "like", "value": 1}],
            },
            ["filters.0.attribute.op"],
        ),
        ({**BASE, "contract": "web"}, ["contract 'web' must look like ID@VERSION"]),
        ({**BASE, "contract": "web@v2"}, ["contract 'web@v2' must look like ID@VERSION"]),
        ({**BASE, "contract": "web@²"}, ["contract 'web@²' must look like ID@VERSION"]),
        ({**BASE, "contract": "@2"}, ["contract '@2' must look like ID@VERSION"]),
        ({**BASE, "contract": "web@0"}, ["contract.version", "greater than or equal to 1"]),
        ({**BASE, "colour": "red"}, ["colour", "Extra inputs are not permitted"]),
        ({"locales": ["de_DE"], "currency": "EUR"}, ["pim_scope", "Field required"]),
        ({**BASE, "code": "bad code"}, ["code", "'bad code' must be 1-64"]),
        ({**BASE, "completeness": {"required": "ean", "nope": 1}}, ["completeness.nope"]),
        ("just text", ["expected a mapping of settings"]),
    ],
)
def test_bad_channel_settings(settings: Any, words: list[str]) -> None:
    message = config_error(settings)
    assert message.startswith("chan.yaml: ")
    assert "channel 'web'" in message or "channel 'bad code'" in message
    for word in words:
        assert word in message


def test_duplicate_channel_in_list_form() -> None:
    with pytest.raises(ChannelConfigError, match="channel 'web' is defined twice"):
        parse_channels({"channels": [{"code": "web", **BASE}, {"code": "web", **BASE}]})


def test_duplicate_channel_through_explicit_code() -> None:
    with pytest.raises(ChannelConfigError, match="channel 'web' is defined twice"):
        parse_channels({"channels": {"web": BASE, "other": {**BASE, "code": "web"}}})


def test_duplicate_channel_key_in_yaml_file(tmp_path: Path) -> None:
    # PyYAML alone keeps the last of two equal keys: the first channel would vanish silently.
    text = (
        "channels:\n  web: {pim_scope: a, locales: [de_DE], currency: EUR}\n"
        "  web: {pim_scope: b, locales: [de_DE], currency: EUR}\n"
    )
    path = write(tmp_path, "dup.yaml", text)
    with pytest.raises(ChannelConfigError, match="'web' is defined twice") as info:
        load_channels(path)
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)


def test_duplicate_setting_in_yaml_file(tmp_path: Path) -> None:
    text = (
        "channels:\n  web:\n    pim_scope: a\n    locales: [de_DE]\n"
        "    currency: EUR\n    currency: GBP\n"
    )
    with pytest.raises(ChannelConfigError, match="'currency' is defined twice"):
        load_channels(write(tmp_path, "dup.yaml", text))


def test_duplicate_channel_in_toml_file(tmp_path: Path) -> None:
    text = '[channels.web]\npim_scope = "a"\n[channels.web]\npim_scope = "b"\n'
    with pytest.raises(ChannelConfigError, match="not valid TOML"):
        load_channels(write(tmp_path, "dup.toml", text))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (None, "expected a top-level `channels:` mapping"),
        ({"chanels": {}}, "expected a top-level `channels:` mapping"),
        ([1, 2], "expected a top-level `channels:` mapping"),
        ({"channels": "web"}, "must be a mapping or a list"),
        ({"channels": {}}, "no channels defined"),
        ({"channels": []}, "no channels defined"),
    ],
)
def test_bad_top_level(data: Any, words: str) -> None:
    with pytest.raises(ChannelConfigError, match=words):
        parse_channels(data, source="x.yaml")


def test_list_item_without_code_is_named_by_position() -> None:
    with pytest.raises(ChannelConfigError, match="channel '#2'"):
        parse_channels({"channels": [{"code": "web", **BASE}, "oops"]})


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ChannelConfigError, match="cannot read channel configuration") as info:
        load_channels(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(ChannelConfigError, match="cannot read channel configuration"):
        load_channels(tmp_path)  # a folder


def test_not_utf8_file(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.yaml", "channels:\n  caf\xe9: {}\n".encode("latin-1"))
    with pytest.raises(ChannelConfigError, match="cannot read channel configuration"):
        load_channels(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "channels:\n  web: [unclosed\n")
    with pytest.raises(ChannelConfigError, match="not valid YAML") as info:
        load_channels(path)
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="not valid TOML"):
        load_channels(write(tmp_path, "bad.toml", "[channels\n"))


def test_bad_channel_in_file_names_file_and_channel(tmp_path: Path) -> None:
    text = GOOD_YAML.replace("currency: EUR", "currency: EURO")
    path = write(tmp_path, "channels.yaml", text)
    with pytest.raises(ChannelConfigError) as info:
        load_channels(path)
    message = str(info.value)
    assert str(path) in message and "channel 'shop_de'" in message and "'EURO'" in message
    text = GOOD_YAML.replace("shop_de@2", "shop_de")
    with pytest.raises(ChannelConfigError) as info:
        load_channels(write(tmp_path, "channels.yaml", text))
    assert str(path) in str(info.value) and "channel 'shop_de'" in str(info.value)
