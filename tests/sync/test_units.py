from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from app.channels.config import ChannelConfig, load_channels
from app.channels.models import DISABLED_IN_PIM, FILTERED, INCOMPLETE, PUBLISHED
from app.config import SAMPLE_DIR
from app.dev import generator
from app.mapping.contract import CompiledContract, ContractStore
from app.mapping.errors import DriftError, TransformError
from app.ownership import OwnershipTable, Violation
from app.pim.product import Product, content_hash, parse_product
from app.sync.units import FAILED, ChannelRuntime, UnitOutcome, evaluate
from tests.catalog_builders import make_channel, make_contract, make_product, small_defs, v

DEFS = small_defs()
MAPPINGS: list[dict[str, Any]] = [
    {"pim": "name", "target": "title", "transform": "localized", "required": True},
    {"pim": "description", "target": "body", "transform": "localized"},
    {"pim": "ean", "target": "gtin", "required": True},
    {"pim": "weight", "target": "weight", "transform": "metric_to_string"},
    {"pim": "price", "target": "price", "transform": "price"},
    {"pim": "brand", "target": "brand", "transform": "lookup", "table": "brands"},
]
LOOKUPS = {"brands": {"acme": "ACME"}}


def runtime(
    channel: ChannelConfig | None = None,
    contract: CompiledContract | None = None,
    ownership: OwnershipTable | None = None,
    defs_hash: str = "defs-1",
    **contract_fields: Any,
) -> ChannelRuntime:
    return ChannelRuntime(
        channel=channel or make_channel(category_tree="master"),
        contract=contract or make_contract(MAPPINGS, lookups=LOOKUPS, **contract_fields),
        defs=DEFS,
        ownership=ownership or OwnershipTable(),
        defs_hash=defs_hash,
    )


def good_values(**changes: Any) -> dict[str, list[dict[str, Any]]]:
    values: dict[str, list[dict[str, Any]]] = {
        "sku": [v("TV-1")],
        "name": [v("Fernseher", "de_DE")],
        "description": [v("Text", "de_DE", "ecommerce")],
        "ean": [v("4006381333931")],
        "weight": [v({"amount": "12.5000", "unit": "KILOGRAM"})],
        "price": [v([{"amount": "499", "currency": "EUR"}])],
        "brand": [v("acme")],
    }
    for attr, entries in changes.items():
        if entries is None:
            values.pop(attr)
        else:
            values[attr] = entries
    return values


def good_product(values: dict[str, Any] | None = None, **raw: Any) -> Product:
    raw.setdefault("family", "tv")
    raw.setdefault("categories", ["master_tv", "b2b_tv"])
    return make_product(values or good_values(), identifier="TV-1", **raw)


# --- the order of decisions -----------------------------------------------------------------------


def test_published() -> None:
    rt = runtime()
    out = evaluate(good_product(parent="model_tv"), rt)
    assert out.status == PUBLISHED and out.enabled
    assert out.completeness == 100
    assert out.error is None and out.detail is None
    assert out.doc == {
        "sku": "TV-1",
        "family": "tv",
        "parent": "model_tv",
        "categories": ["master_tv"],  # the channel's tree only
        "title": {"de_DE": "Fernseher"},
        "body": {"de_DE": "Text"},
        "gtin": "4006381333931",
        "weight": "12.5 kg",
        "brand": "ACME",
    }
    # the PIM does not own prices: stripped and reported, not drift
    assert out.violations == [Violation("pim", "pricing", "price")]
    assert out.drift == []


def test_disabled_comes_first() -> None:
    # disabled, outside the tree and incomplete at once: the PIM's switch decides
    p = good_product(good_values(name=None), enabled=False, categories=[])
    out = evaluate(p, runtime())
    assert out.status == DISABLED_IN_PIM and not out.enabled
    assert out.detail == {"reason": "disabled in the PIM"}
    assert out.doc is None and out.completeness is None


def test_filtered_before_incomplete() -> None:
    p = good_product(good_values(name=None), categories=["b2b_tv"])
    out = evaluate(p, runtime())
    assert out.status == FILTERED and not out.enabled
    assert out.detail == {"filter": "category_tree"}
    channel = make_channel(filters=[{"family_in": ["laptops"]}])
    out = evaluate(good_product(good_values(name=None)), runtime(channel))
    assert out.status == FILTERED and out.detail == {"filter": "family_in"}


def test_incomplete_before_mapping() -> None:
    # the brand would fail the lookup, but the product is incomplete first
    p = good_product(good_values(weight=None, description=None, brand=[v("other")]))
    out = evaluate(p, runtime())
    assert out.status == INCOMPLETE and not out.enabled
    assert out.detail == {"missing": ["description", "weight"]}
    assert out.completeness == 60
    assert out.doc is None and out.error is None


def test_mapping_failure_is_captured() -> None:
    p = good_product(good_values(brand=[v("other")]))
    out = evaluate(p, runtime())
    assert out.status == FAILED and not out.enabled
    assert isinstance(out.error, TransformError)
    assert (out.error.sku, out.error.attribute, out.error.value) == ("TV-1", "brand", "other")
    assert out.completeness == 100 and out.doc is None


def test_drift_failure_is_captured() -> None:
    p = good_product(good_values(rating=[v(5)]))
    out = evaluate(p, runtime(unmapped="fail"))
    assert out.status == FAILED
    assert isinstance(out.error, DriftError) and out.error.attributes == ["rating"]
    out = evaluate(p, runtime(unmapped="warn"))
    assert out.status == PUBLISHED and out.drift == ["rating"]


def test_contract_required_missing_is_incomplete() -> None:
    # ean is not a family requirement, but the contract requires it
    p = good_product(good_values(ean=[v("  ")]))
    out = evaluate(p, runtime(unmapped="warn"))
    assert out.status == INCOMPLETE
    assert out.detail == {"missing": ["ean"], "rule": "contract"}
    assert out.completeness == 100
    assert out.violations == [Violation("pim", "pricing", "price")]


def test_every_status_says_why() -> None:
    outcomes = [
        evaluate(good_product(), runtime()),
        evaluate(good_product(enabled=False), runtime()),
        evaluate(good_product(categories=[]), runtime()),
        evaluate(good_product(good_values(name=None)), runtime()),
        evaluate(good_product(good_values(ean=None)), runtime()),
        evaluate(good_product(good_values(brand=[v("x")])), runtime()),
    ]
    assert [o.status for o in outcomes] == [
        PUBLISHED,
        DISABLED_IN_PIM,
        FILTERED,
        INCOMPLETE,
        INCOMPLETE,
        FAILED,
    ]
    assert [o.enabled for o in outcomes] == [True, False, False, False, False, False]
    for o in outcomes[1:]:
        assert o.detail is not None or o.error is not None


# --- the runtime ---------------------------------------------------------------------------------


def test_fingerprint_and_input_hash() -> None:
    rt = runtime()
    assert rt.fingerprint == runtime().fingerprint
    assert rt.input_hash("abc") == f"abc:{rt.fingerprint}"
    assert rt.input_hash("abc") != rt.input_hash("abd")
    others = [
        runtime(make_channel(category_tree="master", currency="GBP")),
        runtime(contract=make_contract(MAPPINGS[:2])),
        runtime(defs_hash="defs-2"),
        runtime(ownership=OwnershipTable(owners={**OwnershipTable().owners, "pricing": "pim"})),
        runtime(ownership=OwnershipTable(attribute_domains={"pricing": ("cost",)})),
    ]
    fingerprints = {o.fingerprint for o in others} | {rt.fingerprint}
    assert len(fingerprints) == 6


def test_unit_outcome_enabled_only_when_published() -> None:
    assert UnitOutcome("x", PUBLISHED).enabled
    for status in (INCOMPLETE, FILTERED, DISABLED_IN_PIM, FAILED):
        assert not UnitOutcome("x", status).enabled


# --- the generated sample catalog on the four sample channels -------------------------------------

SAMPLE_SIZE = 300


@pytest.fixture(scope="module")
def sample_products() -> list[Product]:
    return [parse_product(generator.product(i)) for i in range(SAMPLE_SIZE)]


@pytest.fixture(scope="module")
def sample_runtimes() -> dict[str, ChannelRuntime]:
    defs = generator.generated_definitions()
    channels = load_channels(SAMPLE_DIR / "channels.yaml")
    store = ContractStore.load(SAMPLE_DIR / "contracts")
    out = {}
    for code, channel in channels.items():
        assert channel.contract is not None
        contract = store.get(channel.contract.id, channel.contract.version)
        out[code] = ChannelRuntime(channel, contract, defs, OwnershipTable(), "generated")
    return out


@pytest.fixture(scope="module")
def sample_outcomes(
    sample_products: list[Product], sample_runtimes: dict[str, ChannelRuntime]
) -> dict[str, list[UnitOutcome]]:
    return {
        code: [evaluate(p, rt) for p in sample_products] for code, rt in sample_runtimes.items()
    }


def test_every_sample_product_maps_on_every_sample_channel(
    sample_products: list[Product], sample_runtimes: dict[str, ChannelRuntime]
) -> None:
    # Mapping alone, whatever the filters and completeness would say: no TransformError.
    errors = []
    for code, rt in sample_runtimes.items():
        for p in sample_products:
            try:
                rt.plan.map(p)
            except TransformError as exc:
                errors.append((code, str(exc)))
    assert errors == []


def test_sample_catalog_maps_without_errors(sample_outcomes: dict[str, list[UnitOutcome]]) -> None:
    assert set(sample_outcomes) == {
        "de_storefront",
        "at_storefront",
        "uk_marketplace",
        "b2b_portal",
    }
    for code, outcomes in sample_outcomes.items():
        assert len(outcomes) == SAMPLE_SIZE
        errors = [(o.sku, str(o.error)) for o in outcomes if o.status == FAILED]
        assert errors == [], code


def test_sample_catalog_outcome_counts(sample_outcomes: dict[str, list[UnitOutcome]]) -> None:
    counts = {code: Counter(o.status for o in outs) for code, outs in sample_outcomes.items()}
    for code, c in counts.items():
        assert c[PUBLISHED] > SAMPLE_SIZE // 2, (code, c)
        assert c[INCOMPLETE] > 0, (code, c)
        assert c[DISABLED_IN_PIM] > 0, (code, c)
        assert sum(c.values()) == SAMPLE_SIZE
    # the PIM's switch is the same for every channel
    assert len({c[DISABLED_IN_PIM] for c in counts.values()}) == 1
    # dangerous goods leave the marketplace, products outside the b2b tree the portal
    uk = [o for o in sample_outcomes["uk_marketplace"] if o.status == FILTERED]
    assert uk and {o.detail["filter"] for o in uk if o.detail} == {"no_dangerous_goods"}
    b2b = [o for o in sample_outcomes["b2b_portal"] if o.status == FILTERED]
    assert b2b and {o.detail["filter"] for o in b2b if o.detail} == {"category_tree"}
    assert counts["de_storefront"][FILTERED] == 0
    assert counts["at_storefront"][FILTERED] == 0


def test_sample_catalog_documents(sample_outcomes: dict[str, list[UnitOutcome]]) -> None:
    published = [o for o in sample_outcomes["at_storefront"] if o.status == PUBLISHED]
    doc = published[0].doc
    assert doc is not None
    assert set(doc["title"]) == {"de_AT"}  # de_AT falls back to de_DE
    assert doc["tax"] == {"vat_rate": 20, "class": "AT-standard"}
    assert doc["slug"].endswith(doc["sku"].lower())
    assert all(c.startswith("master") for c in doc["categories"])
    assert "price" not in doc and "picture" not in doc
    # every published unit reports the PIM's prices and media as ownership violations
    for o in published:
        assert {x.attribute for x in o.violations} == {"price", "picture", "image_2", "user_manual"}
    # sustainability_score is not in storefront_de@1 yet: drift on some products
    de = sample_outcomes["de_storefront"]
    assert any(o.drift == ["sustainability_score"] for o in de)
    assert all(set(o.drift) <= {"sustainability_score"} for o in de)
    b2b = next(o for o in sample_outcomes["b2b_portal"] if o.status == PUBLISHED)
    assert b2b.doc is not None and "customs_tariff_number" in b2b.doc["compliance"]
    assert all(c.startswith("b2b") for c in b2b.doc["categories"])


def test_sample_input_hash_is_stable() -> None:
    raw = generator.product(3)
    again = dict(generator.product(3), updated="2031-01-01T00:00:00+00:00")
    assert content_hash(parse_product(raw).raw) == content_hash(parse_product(again).raw)


# --- issue 16: products without a family --------------------------------------------------------


def test_a_product_without_a_family_is_incomplete_unless_the_channel_opts_in() -> None:
    orphan = good_product(family=None)
    out = evaluate(orphan, runtime())
    assert out.status == INCOMPLETE and not out.enabled
    assert out.detail == {"missing": [], "reason": "no family"}
    assert out.completeness == 0 and out.doc is None
    opted_in = make_channel(category_tree="master", completeness={"publish_without_family": True})
    published = evaluate(orphan, runtime(opted_in))
    assert published.status == PUBLISHED and published.doc is not None
    assert published.doc["family"] is None


# --- issue 16: products without an identifier ---------------------------------------------------


def test_a_product_without_identifier_is_skipped_or_published_under_its_uuid() -> None:
    uid = "0f8b6a1e-6d2c-4f3b-9a8e-2b7c1d0e5f43"
    values = good_values(sku=None)
    raw = {"uuid": uid, "family": "tv", "categories": ["master_tv"], "values": values}
    product = parse_product(raw)
    skipped = evaluate(product, runtime())
    assert skipped.status == FILTERED and skipped.sku == uid
    assert skipped.detail == {"filter": "no identifier"} and skipped.doc is None
    channel = make_channel(category_tree="master", without_identifier="uuid")
    published = evaluate(product, runtime(channel))
    assert published.status == PUBLISHED and published.doc is not None
    assert published.doc["sku"] == uid
