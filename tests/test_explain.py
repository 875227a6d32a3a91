"""``pimsync explain``: why a product is or is not online, per channel, on real PostgreSQL.

Each product is put in its state by editing it in the (in-memory) PIM and syncing: the
expected reasons (the attribute removed, the filter's name, the unmappable value) are what the
test did, not what the code under test computes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.config import get_settings
from app.db import session_scope
from app.explain import NEVER_SEEN, NOT_ONLINE, ONLINE, explain


@pytest.fixture
def harness(pg_db: str) -> Any:
    from tests.sync.conftest import Harness
    from tests.sync.memory_source import MemorySource

    return Harness(MemorySource.generated(60))


def _value(data: Any, locale: str | None = None, scope: str | None = None) -> dict[str, Any]:
    return {"locale": locale, "scope": scope, "data": data}


@pytest.fixture
def catalog(harness: Any) -> dict[str, str]:
    """A synced catalog with one product of each kind; returns their SKUs."""
    harness.full()
    rows = harness.rows()
    published = sorted(
        sku
        for (channel, sku), row in rows.items()
        if channel == "de_storefront"
        and row.status == "published"
        and rows[("uk_marketplace", sku)].status == "published"
    )
    products = harness.source.products
    online, incomplete, filtered = published[0], published[1], published[2]
    broken = next(
        s for s in published[3:] if products[s]["family"] == "laptops" and products[s]["enabled"]
    )
    # incomplete in German: its German name removed, the other locales kept
    names = products[incomplete]["values"]["name"]
    products[incomplete]["values"]["name"] = [v for v in names if v["locale"] != "de_DE"]
    # dangerous goods: the UK marketplace's filter `no_dangerous_goods` refuses class_3
    products[filtered]["values"]["hazmat_class"] = [_value("class_3")]
    # a colour no contract's lookup table knows: the storefronts' mapping fails
    products[broken]["values"]["color"] = [_value("ultraviolet")]
    for sku in (incomplete, filtered, broken):
        harness.source.touch(sku)
    harness.delta()
    return {"online": online, "incomplete": incomplete, "filtered": filtered, "broken": broken}


def _by_channel(sku: str, channel: str | None = None) -> dict[str, Any]:
    with session_scope() as s:
        ex = explain(s, get_settings(), sku, channel)
    assert ex.known
    return {c.channel: c for c in ex.channels}


def test_an_online_product(catalog: dict[str, str]) -> None:
    sku = catalog["online"]
    channels = _by_channel(sku)
    de = channels["de_storefront"]
    assert de.verdict == ONLINE
    assert de.contract_applied == de.contract_pinned == "storefront_de@1"
    assert de.missing_by_locale == {} and de.failing_filter is None
    assert de.last_publish is not None and de.last_publish.run_kind == "full"
    assert de.last_publish.outcome == "published"
    assert de.page is not None and de.page.versions["catalog"] >= 1
    assert de.page.readiness == {
        "catalog": True,
        "pricing": False,
        "inventory": False,
        "media": False,
    }
    assert de.page.purchasable is False
    with session_scope() as s:
        ex = explain(s, get_settings(), sku)
    assert ex.pim is not None and ex.pim.family is not None and len(ex.pim.content_hash) > 8


def test_an_incomplete_product_lists_what_is_missing_per_locale(catalog: dict[str, str]) -> None:
    channels = _by_channel(catalog["incomplete"])
    de = channels["de_storefront"]
    assert de.verdict == NOT_ONLINE and de.status == "incomplete"
    assert de.missing_by_locale == {"de_DE": ["name"]}
    assert "de_DE: name" in de.reason
    assert channels["uk_marketplace"].verdict == ONLINE  # its English name is there


def test_a_filtered_product_names_the_filter(catalog: dict[str, str]) -> None:
    uk = _by_channel(catalog["filtered"], "uk_marketplace")
    assert list(uk) == ["uk_marketplace"]
    assert uk["uk_marketplace"].status == "filtered"
    assert uk["uk_marketplace"].failing_filter == "no_dangerous_goods"
    assert "no_dangerous_goods" in uk["uk_marketplace"].reason


def test_a_dead_lettered_product_shows_the_error(catalog: dict[str, str]) -> None:
    de = _by_channel(catalog["broken"])["de_storefront"]
    assert len(de.dead_letters) == 1
    assert "ultraviolet" in de.dead_letters[0].error
    assert "ultraviolet" in de.reason and f"dead letter {de.dead_letters[0].id}" in de.reason
    # the storefront still shows the version published before the edit
    assert de.verdict == ONLINE and "its latest update failed" in de.reason


def test_a_product_never_seen(harness: Any) -> None:
    harness.full()
    with session_scope() as s:
        ex = explain(s, get_settings(), "NO-SUCH-SKU")
    assert not ex.known and ex.pim is None
    assert {c.verdict for c in ex.channels} == {NEVER_SEEN}


def test_an_unknown_channel_lists_the_known_ones(harness: Any) -> None:
    with session_scope() as s, pytest.raises(LookupError, match="b2b_portal"):
        explain(s, get_settings(), "X", "nope")


def test_the_command_renders_it_and_exits_1_for_an_unknown_sku(catalog: dict[str, str]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["explain", catalog["incomplete"]])
    assert result.exit_code == 0, result.output
    assert "de_storefront: NOT ONLINE: incomplete" in result.output
    assert "missing in de_DE: name" in result.output
    assert "uk_marketplace: ONLINE" in result.output
    as_json = runner.invoke(app, ["explain", catalog["filtered"], "--json", "-c", "uk_marketplace"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["channels"][0]["failing_filter"] == "no_dangerous_goods"
    assert data["pim"]["content_hash"]
    unknown = runner.invoke(app, ["explain", "NO-SUCH-SKU"])
    assert unknown.exit_code == 1
    assert "unknown" in unknown.stderr and "Traceback" not in unknown.output
    nul = runner.invoke(app, ["explain", "A\x00B"])
    assert nul.exit_code == 2 and "NUL" in nul.stderr
    too_long = runner.invoke(app, ["explain", "X" * 256])
    assert too_long.exit_code == 2 and "at most 255" in too_long.stderr
    assert "Traceback" not in too_long.output
