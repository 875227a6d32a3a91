"""The sync-health dashboard in a real browser (headless Chromium): charts render, replay works."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.sync.models import DeadLetter
from tests.prereq import found

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):  # publish, ingest, catch_up, catalog_changed, ...
        return lambda *args, **kwargs: self.sent.append((name, args))


@pytest.fixture
def harness(pg_db: str):
    from tests.sync.conftest import Harness
    from tests.sync.memory_source import MemorySource

    return Harness(MemorySource.generated(40))


@pytest.fixture
def browser():
    chromium = found("chromium", CHROMIUM, "not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def test_dashboard_renders_and_replays(harness, browser, monkeypatch):
    from app.config import reset_settings_cache
    from app.dev.reference_server import serve_in_thread
    from app.web.app import create_app

    # A database with runs, drift (sustainability_score) and a dead letter.
    victim = sorted(
        k for k, p in harness.source.products.items() if p["enabled"] and p["family"] == "laptops"
    )[0]
    harness.source.products[victim]["values"]["color"] = [
        {"locale": None, "scope": None, "data": "ultraviolet"}
    ]
    harness.full()
    harness.delta()
    monkeypatch.setenv("PIMSYNC_DASHBOARD_PASSWORD", "s3cret")
    reset_settings_cache()
    recorder = Recorder()
    with serve_in_thread(create_app(dispatcher=recorder, events_sender=lambda *a: None)) as base:
        context = browser.new_context(
            http_credentials={"username": "operator", "password": "s3cret"},
            viewport={"width": 1400, "height": 1600},
        )
        page = context.new_page()
        response = page.goto(f"{base}/dashboard")
        assert response is not None and response.status == 200
        assert page.locator("section.card").count() == 4
        charts = page.locator("svg.chart")
        assert charts.count() == 5  # run durations + one outcome chart per channel
        drawn = page.locator("svg.chart polyline, svg.chart circle, svg.chart rect").count()
        assert drawn > 0
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 30
        drift = page.locator("#drift + .scroll table")
        assert drift.get_by_text("sustainability_score").count() >= 1
        rows = page.locator(f"tr[data-dead-letter]:has-text('{victim}')")
        assert rows.count() == 2  # the two storefronts whose contract looks colours up
        row = rows.filter(has_text="de_storefront")
        assert row.count() == 1 and "ultraviolet" in row.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        row.get_by_role("button", name="Replay").click()
        page.wait_for_url("**/dashboard?replayed=1*")
        assert "Replayed 1 dead letter" in page.locator("#flash").inner_text()
        left = page.locator(f"tr[data-dead-letter]:has-text('{victim}')")
        assert left.count() == 1 and "at_storefront" in left.inner_text()
        context.close()
        # without credentials: refused, with a Basic challenge
        import httpx

        denied = httpx.get(f"{base}/dashboard")
        assert denied.status_code == 401 and "Basic" in denied.headers["www-authenticate"]
        assert httpx.get(f"{base}/dashboard", auth=("operator", "wrong")).status_code == 401
    with session_scope() as s:
        letters = {
            d.channel: d.status
            for d in s.execute(select(DeadLetter).where(DeadLetter.sku == victim)).scalars()
        }
    assert letters == {"de_storefront": "replayed", "at_storefront": "open"}
    assert any(name == "publish" for name, _ in recorder.sent)  # the replay run was enqueued
