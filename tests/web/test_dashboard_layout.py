"""The dashboard in a real browser (headless Chromium) at 1280 and 390 px wide: charts with
axis labels and legends, a badge for a channel with dead letters, live progress that moves
without a reload, the explain search; no horizontal overflow on a phone. Screenshots of each
width go to artifacts/screenshots/ (CI keeps them)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from app.db import session_scope
from app.dev.local import drain
from app.pim.throttle import RedisGate, connection_key
from tests.web.test_dashboard_browser import Recorder, browser  # noqa: F401  (the fixture)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
pytestmark = pytest.mark.slow
WIDTHS = (1280, 390)


@pytest.fixture
def harness(pg_db: str) -> Any:
    from tests.sync.conftest import Harness
    from tests.sync.memory_source import MemorySource

    return Harness(MemorySource.generated(40))


def _overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: nothing to scroll sideways)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


def test_dashboard_at_desktop_and_phone_widths(
    harness: Any,
    browser: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
) -> None:
    from app.config import reset_settings_cache
    from app.dev.reference_server import serve_in_thread
    from app.sync import ingest
    from app.web import dashboard
    from app.web.app import create_app

    products = harness.source.products
    victim = sorted(k for k, p in products.items() if p["enabled"] and p["family"] == "laptops")[0]
    harness.full()
    products[victim]["values"]["color"] = [{"locale": None, "scope": None, "data": "ultraviolet"}]
    harness.source.touch(victim)
    harness.delta()
    monkeypatch.setenv("PIMSYNC_DASHBOARD_PASSWORD", "s3cret")
    monkeypatch.setattr(dashboard, "PROGRESS_POLL_SECONDS", 1)
    reset_settings_cache()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_in_thread(create_app(dispatcher=Recorder(), events_sender=lambda *a: None)) as base:
        for width in WIDTHS:
            # a full sync under way: started, nothing read yet (its messages wait in the
            # local queue: the test is the worker); every product changed since the last one,
            # so no unit is up to date already: each waits for its batch
            for sku in list(products):
                harness.source.rename(sku, f"({width} px)")
            with session_scope() as s:
                ingest.start_full(s, harness.ctx)
            context = browser.new_context(
                http_credentials={"username": "operator", "password": "s3cret"},
                viewport={"width": width, "height": 900},
            )
            page = context.new_page()
            assert page.goto(f"{base}/dashboard").status == 200
            assert _overflow(page) == 0, f"{width} px: the page scrolls sideways"

            # charts: a titled y axis with its unit, an x axis label, round ticks, a legend
            charts = page.locator("figure.chart-box")
            assert charts.count() == 5
            for i in range(charts.count()):
                chart = charts.nth(i)
                assert chart.locator(".y-label").text_content() in ("seconds", "units")
                assert chart.locator(".x-label").text_content() == "runs, oldest to newest"
                ticks = chart.locator("text.tick").all_text_contents()
                assert len(ticks) == 5 and not any(re.search(r"\de[+-]?\d", t) for t in ticks)
                legend = chart.locator("ul.legend li").all_inner_texts()
                assert legend, "a legend"
                box = chart.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
            charts.nth(0).screenshot(path=str(SCREENSHOTS / f"chart-durations-{width}.png"))
            charts.nth(3).screenshot(path=str(SCREENSHOTS / f"chart-units-{width}.png"))
            durations = charts.first.locator("ul.legend li").all_inner_texts()
            assert set(durations) == {
                "at_storefront",
                "b2b_portal",
                "de_storefront",
                "uk_marketplace",
            }

            # badges: the channels whose units were dead-lettered say so
            de = page.locator("section.card[data-channel='de_storefront'] .badge")
            assert "1 dead letter" in de.all_inner_texts()
            uk = page.locator("section.card[data-channel='uk_marketplace'] .badge")
            assert not any("dead letter" in t for t in uk.all_inner_texts())

            # live progress: the running full sync moves on while the page stays open
            progress = page.locator("#progress")
            pim_row = progress.locator("tr", has_text="PIM read")
            assert "0 products read" in pim_row.inner_text()
            page.evaluate("window.__notReloaded = true")
            page.screenshot(path=str(SCREENSHOTS / f"dashboard-{width}.png"), full_page=True)
            drain(harness.ctx, max_steps=1)  # the worker reads the PIM's 40 products
            # polled every second (PROGRESS_POLL_SECONDS patched above): the read is done, the
            # channels have their plan of 40 units each and nothing published yet
            de_row = progress.locator("tr", has_text="de_storefront")
            expect(de_row).to_contain_text("0/40 units (0 %)", timeout=15_000)
            expect(pim_row).to_have_count(0)
            drain(harness.ctx)  # the worker publishes them all
            expect(progress.locator(".none")).to_be_visible(timeout=15_000)
            expect(progress.locator("tbody tr")).to_have_count(0)
            assert page.evaluate("window.__notReloaded") is True

            # the explain search
            page.fill("#explain-sku", victim)
            page.get_by_role("button", name="Explain").click()
            page.wait_for_url("**/dashboard/explain?sku=*")
            card = page.locator("section.card[data-channel='de_storefront']")
            assert "ultraviolet" in card.locator("[data-dead-letter]").inner_text()
            uk_card = page.locator("section.card[data-channel='uk_marketplace'] .badge")
            assert uk_card.inner_text() == "online"
            assert _overflow(page) == 0, f"{width} px: the explain page scrolls sideways"
            page.screenshot(path=str(SCREENSHOTS / f"explain-{width}.png"), full_page=True)
            page.fill("input[name=sku]", "NO-SUCH-SKU")
            page.get_by_role("button", name="Explain").click()
            page.wait_for_url("**sku=NO-SUCH-SKU*")
            assert "is unknown" in page.locator("#unknown").inner_text()
            context.close()

        # the PIM throttles (a worker recorded its 429 and the instant it named, in Redis):
        # every channel's card says so, in the header's word
        pim_url, client_id = "http://pim.layout.test:8081", "layout-client"
        monkeypatch.setenv("PIMSYNC_PIM_SOURCE", pim_url)
        monkeypatch.setenv("PIMSYNC_REDIS_URL", redis_url)
        monkeypatch.setenv("PIMSYNC_AKENEO_CLIENT_ID", client_id)
        reset_settings_cache()
        gate = RedisGate(redis_url, connection_key(pim_url, client_id), pim_url)
        gate.record("429", ok=False)
        gate.hold(time.time() + 120, "429")
        gate.close()
        context = browser.new_context(
            http_credentials={"username": "operator", "password": "s3cret"},
            viewport={"width": 390, "height": 900},
        )
        page = context.new_page()
        assert page.goto(f"{base}/dashboard").status == 200
        badge = page.locator("section.card[data-channel='de_storefront'] [data-badge^='pim-']")
        assert (badge.inner_text(), badge.get_attribute("class")) == (
            "PIM throttling",
            "badge pim-throttling",
        )
        assert _overflow(page) == 0, "390 px: the PIM badge makes the page scroll sideways"
        context.close()
    for width in WIDTHS:
        for name in ("dashboard", "explain"):
            assert (SCREENSHOTS / f"{name}-{width}.png").stat().st_size > 10_000
