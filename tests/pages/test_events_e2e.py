"""Events end to end: HTTP (uvicorn), Redis, real Celery workers, PostgreSQL, reference PIM."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from sqlalchemy import select, text, update

from app.db import session_scope
from app.dev import generator
from app.pages.models import ProductPage
from app.sync import ingest
from app.sync import repository as repo
from app.sync.pim_events.models import PendingSku, WebhookEvent
from tests.conftest import create_pg_database, drop_pg_database, truncate_all
from tests.e2e_support import (
    Worker,
    apply_env,
    free_port,
    reference_pim,
    restore_env,
    run_finished,
    stack_env,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker]
SECRET = "whsec-test"
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]
API_TOKEN = "metrics-token"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ALL_QUEUES = "sync,publish,events.pim,events.catalog,events.pricing,events.inventory,events.media"


def signed(body: bytes, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Akeneo-Request-Signature": sig,
        "X-Akeneo-Request-Timestamp": str(ts),
        "Content-Type": "application/json",
    }


def event_body(event_id: str, product: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "events": [
                {
                    "action": "product.updated",
                    "event_id": event_id,
                    "event_datetime": datetime.now(UTC).isoformat(),
                    "author": "peter",
                    "data": {"resource": product},
                }
            ]
        }
    )


class Stack:
    def __init__(self, env: dict[str, str], web: str, redis_url: str, logs: Path) -> None:
        self.env, self.web, self.redis_url, self.logs = env, web, redis_url, logs
        self.http = httpx.Client(base_url=web, timeout=30)
        self.broker = redis.Redis.from_url(redis_url)

    def worker(self, name: str, queues: str = ALL_QUEUES) -> Worker:
        return Worker(self.env, self.logs / f"{name}.log", queues=queues, name=name)

    def queued(self, queue: str) -> int:
        return int(self.broker.llen(queue))

    def page(self, channel: str, sku: str) -> ProductPage | None:
        with session_scope() as s:
            return s.get(ProductPage, (channel, sku))

    def full_sync(self) -> None:
        from tasks.dispatch import process_context

        with session_scope() as s:
            run_id = ingest.start_full(s, process_context(), None, trigger="test").id
        wait_until(lambda: run_finished(run_id, 4), 240, what="full sync")


@pytest.fixture(scope="module")
def stack(redis_url: str, pg_url: str, tmp_path_factory) -> Iterator[Stack]:
    from app.dev.reference_server import serve_in_thread
    from app.web.app import create_app

    db = create_pg_database("pimsync_events")
    with reference_pim("generated:60:7") as (base, _catalog):
        env = stack_env(
            db,
            redis_url,
            base,
            PIMSYNC_WEBHOOK_SECRET=SECRET,
            PIMSYNC_WEBHOOK_MAX_BODY_BYTES="65536",
            PIMSYNC_EVENT_COALESCE_SECONDS="0.2",
            PIMSYNC_EVENT_SOURCE_TOKENS='{"erp": "erp-token", "wms": "wms-token"}',
            PIMSYNC_API_TOKEN=API_TOKEN,
        )
        old = apply_env(env)
        try:
            with serve_in_thread(create_app()) as web:
                yield Stack(env, web, redis_url, tmp_path_factory.mktemp("event-logs"))
        finally:
            restore_env(old)
            drop_pg_database(db)


@pytest.fixture
def synced(stack: Stack) -> Stack:
    truncate_all(stack.env["PIMSYNC_DATABASE_URL"])
    for q in ALL_QUEUES.split(","):
        stack.broker.delete(q)
    with stack.worker("sync"):
        stack.full_sync()
        # the catalog events of the full sync reach the product pages
        wait_until(
            lambda: stack.queued("events.catalog") == 0 and _pages() > 0, 60, what="catalog pages"
        )
    return stack


def _pages() -> int:
    with session_scope() as s:
        return len(s.execute(select(ProductPage.sku)).all())


def _published() -> str:
    with session_scope() as s:
        return s.execute(
            text(
                "SELECT sku FROM channel_product WHERE channel = 'de_storefront' AND enabled "
                "ORDER BY sku LIMIT 1"
            )
        ).scalar_one()


def test_signed_webhook_updates_the_page_in_every_channel(synced: Stack):
    sku = _published()
    product = generator.product(generator.index_of(sku), 7)
    for entry in product["values"]["name"]:
        entry["data"] = "Renamed through the webhook"
    product["updated"] = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    body = event_body("e2e-1", product)
    with synced.worker("events"):
        r = synced.http.post("/webhooks/akeneo", content=body, headers=signed(body))
        assert r.status_code == 200 and r.json()["accepted"] == 1

        def renamed() -> bool:
            page = synced.page("de_storefront", sku)
            return bool(
                page
                and page.catalog
                and page.catalog["title"]["de_DE"] == "Renamed through the webhook"
            )

        wait_until(renamed, 60, what="page renamed")
        with session_scope() as s:
            rows = s.execute(
                text("SELECT channel, version FROM channel_product WHERE sku = :s AND enabled"),
                {"s": sku},
            ).all()
        for channel, version in rows:
            wait_until(
                lambda c=channel, v=version: (
                    (synced.page(c, sku) or ProductPage()).catalog_version == v
                ),
                30,
                what=f"page of {channel}",
            )
        # the same delivery again: acknowledged, nothing done twice
        again = synced.http.post("/webhooks/akeneo", content=body, headers=signed(body))
        assert again.status_code == 200 and again.json()["duplicates"] == 1
    with session_scope() as s:
        assert s.execute(select(WebhookEvent.event_id)).scalars().all() == ["e2e-1"]
        assert s.execute(select(PendingSku)).first() is None


def test_refused_requests_enqueue_nothing(stack: Stack):
    truncate_all(stack.env["PIMSYNC_DATABASE_URL"])
    stack.broker.delete("events.pim")
    product = generator.product(1, 7)
    body = event_body("e2e-bad", product)
    good = signed(body)
    cases = {
        "bad signature": (body, {**good, "X-Akeneo-Request-Signature": "0" * 64}, 401),
        "stale timestamp": (body, signed(body, ts=int(time.time()) - 3600), 401),
        "oversized body": (b"x" * 70_000, signed(b"x" * 70_000), 413),
        "malformed JSON": (b"{not json", signed(b"{not json"), 400),
    }
    for name, (payload, headers, status) in cases.items():
        r = stack.http.post("/webhooks/akeneo", content=payload, headers=headers)
        assert r.status_code == status, (name, r.text)
        assert r.json()["detail"], name
    assert stack.queued("events.pim") == 0
    with session_scope() as s:
        assert s.execute(select(WebhookEvent)).first() is None
        assert s.execute(select(PendingSku)).first() is None


def test_a_pricing_backlog_does_not_delay_inventory(synced: Stack):
    sku = _published()
    now = datetime.now(UTC).isoformat()
    erp = {"Authorization": "Bearer erp-token"}
    wms = {"Authorization": "Bearer wms-token"}
    # No pricing consumer is running: a backlog builds on events.pricing.
    for version in range(1, 101):
        r = synced.http.post(
            "/events/pricing",
            headers=erp,
            json={
                "sku": sku,
                "source_version": version,
                "occurred_at": now,
                "payload": {"amount": f"{version}.00", "currency": "EUR"},
            },
        )
        assert r.status_code == 202
    assert synced.queued("events.pricing") == 100
    with synced.worker("inventory", queues="events.inventory"):
        r = synced.http.post(
            "/events/inventory",
            headers=wms,
            json={
                "events": [
                    {
                        "sku": sku,
                        "source_version": 7,
                        "occurred_at": now,
                        "payload": {"quantity": 12},
                    }
                ]
            },
        )
        assert r.status_code == 202
        wait_until(
            lambda: (synced.page("de_storefront", sku) or ProductPage()).inventory_version == 7,
            30,
            what="inventory applied despite the pricing backlog",
        )
    assert synced.queued("events.pricing") == 100  # still waiting, and it did not matter
    page = synced.page("de_storefront", sku)
    assert page.inventory == {"quantity": 12} and page.pricing_version == 0
    # the pricing consumer comes back: its backlog drains, newest price wins
    with synced.worker("pricing", queues="events.pricing"):
        wait_until(
            lambda: (synced.page("de_storefront", sku) or ProductPage()).pricing_version == 100,
            120,
            what="pricing backlog drained",
        )
    page = synced.page("de_storefront", sku)
    assert page.pricing["amount"] == "100.00"
    r = synced.http.get(f"/channels/de_storefront/products/{sku}")
    assert r.status_code == 200
    doc = r.json()
    assert doc["readiness"] == {"catalog": True, "pricing": True, "inventory": True, "media": False}
    assert doc["purchasable"] is True


def test_reconciliation_repairs_a_corrupted_page(synced: Stack, tmp_path: Path):
    sku = _published()
    with session_scope() as s:
        version = s.get(ProductPage, ("de_storefront", sku)).catalog_version
        s.execute(
            update(ProductPage)
            .where(ProductPage.channel == "de_storefront", ProductPage.sku == sku)
            .values(catalog={"title": "garbage"})
        )
    prices = tmp_path / "pricing.jsonl"
    prices.write_bytes(
        orjson.dumps(
            {
                "sku": sku,
                "channel": "de_storefront",
                "source_version": 3,
                "payload": {"amount": "5.00"},
            }
        )
        + b"\n"
    )
    env = {
        **synced.env,
        "PIMSYNC_SNAPSHOT_SOURCES": orjson.dumps({"pricing": str(prices)}).decode(),
    }
    saved = apply_env(env)
    try:
        from tasks import celery_app

        with Worker(env, synced.logs / "reconcile.log", queues="sync", name="reconcile"):
            celery_app.send_task("pages.reconcile", kwargs={"trigger": "test"}, queue="sync")

            def reconciled() -> Any:
                with session_scope() as s:
                    runs = [r for r in repo.recent_runs(s, 5) if r.kind == "reconcile"]
                    return runs[0] if runs and runs[0].status == "completed" else None

            run = wait_until(reconciled, 60, what="reconcile run")
    finally:
        restore_env(saved)
    assert run.details["corrected"]["catalog"] >= 1
    assert run.details["corrected"]["pricing"] == 1
    page = synced.page("de_storefront", sku)
    assert page.catalog_version == version and page.catalog["sku"] == sku
    assert page.catalog.get("title") != "garbage" and page.pricing == {"amount": "5.00"}


def _open_dead_letters() -> int:
    with session_scope() as s:
        return int(
            s.execute(text("SELECT count(*) FROM dead_letter WHERE status = 'open'")).scalar_one()
        )


def _samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert found, f"{name}{labels} not exported"
    return sum(found)


def test_metrics_from_a_real_run(stack: Stack, tmp_path: Path):
    """A sync, a webhook, a refusal and a pricing event, then both scrapes: the HTTP app's
    /metrics (state read from the database and the broker) and a worker's exporter
    (``pimsync worker --metrics-port``, prefork children aggregated in multiprocess mode)."""
    truncate_all(stack.env["PIMSYNC_DATABASE_URL"])
    for q in ALL_QUEUES.split(","):
        stack.broker.delete(q)
    port = free_port()
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    worker = Worker(env, stack.logs / "metrics.log", queues=ALL_QUEUES, metrics_port=port)
    with worker:
        stack.full_sync()
        wait_until(lambda: _pages() > 0, 60, what="catalog pages")
        sku = _published()
        body = event_body("metrics-1", generator.product(generator.index_of(sku), 7))
        bad = {**signed(body), "X-Akeneo-Request-Signature": "0" * 64}
        assert stack.http.post("/webhooks/akeneo", content=body, headers=bad).status_code == 401
        assert stack.http.post("/webhooks/akeneo", content=body, headers=signed(body)).is_success
        # a product whose colour no lookup table knows: dead-lettered (a permanent error)
        with session_scope() as s:
            skus = s.execute(
                text("SELECT sku FROM channel_product WHERE channel = 'de_storefront' AND enabled")
            ).scalars()
            poisoned = generator.product(0, 7)
            for candidate in skus:
                poisoned = generator.product(generator.index_of(candidate), 7)
                if "color" in poisoned["values"] and candidate != sku:
                    break
        poisoned["values"]["color"] = [{"locale": None, "scope": None, "data": "ultraviolet"}]
        poisoned["updated"] = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        body = event_body("metrics-poison", poisoned)
        assert stack.http.post("/webhooks/akeneo", content=body, headers=signed(body)).is_success
        wait_until(lambda: _open_dead_letters() > 0, 60, what="the poisoned product dead-lettered")
        r = stack.http.post(
            "/events/pricing",
            headers={"Authorization": "Bearer erp-token"},
            json={
                "sku": sku,
                "source_version": 3,
                "occurred_at": datetime.now(UTC).isoformat(),
                "payload": {"amount": "9.99", "currency": "EUR"},
            },
        )
        assert r.status_code == 202
        wait_until(
            lambda: (stack.page("de_storefront", sku) or ProductPage()).pricing_version == 3,
            60,
            what="pricing applied",
        )
        wait_until(
            lambda: stack.queued("events.pim") + stack.queued("events.catalog") == 0,
            60,
            what="event queues drained",
        )
        assert stack.http.get("/metrics").status_code == 401  # not without the token
        web = stack.http.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert web.status_code == 200, web.text
        exported = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert exported.status_code == 200
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "metrics-web.txt").write_text(web.text)
    (ARTIFACTS / "metrics-worker.txt").write_text(exported.text)

    state = _samples(web.text)
    with session_scope() as s:
        synced = dict(
            s.execute(
                text(
                    "SELECT channel, sum(synced) FROM sync_run WHERE kind = 'full' "
                    "AND channel IS NOT NULL GROUP BY channel"
                )
            ).all()
        )
        cursors = s.execute(text("SELECT name FROM sync_cursor")).scalars().all()
        dead = s.execute(text("SELECT count(*) FROM dead_letter WHERE status = 'open'")).scalar()
        drift = s.execute(text("SELECT count(*) FROM drift_event")).scalar()
        pages = s.execute(text("SELECT count(*) FROM product_page")).scalar()
        priced = s.execute(
            text("SELECT count(*) FROM product_page WHERE pricing_version = 3")
        ).scalar()
    assert set(synced) == set(CHANNELS)
    for channel, n in synced.items():
        assert n > 0
        assert (
            _value(state, "pimsync_units_total", channel=channel, kind="full", outcome="published")
            == n
        )
        assert (
            _value(state, "pimsync_sync_run_duration_seconds_count", channel=channel, kind="full")
            == 1
        )
        assert _value(state, "pimsync_sync_runs_total", channel=channel, status="completed") >= 1
    for name in cursors:
        assert 0 <= _value(state, "pimsync_cursor_age_seconds", cursor=name) < 600
    assert dead > 0
    assert sum(v for (n, _), v in state.items() if n == "pimsync_dead_letters_open") == dead
    assert sum(v for (n, _), v in state.items() if n == "pimsync_drift_attributes") == drift
    assert sum(v for (n, ls), v in state.items() if ("state", "pages") in ls) == pages
    de_pages = _value(state, "pimsync_product_pages", channel="de_storefront", state="pages")
    # one price arrived, for one SKU: every other page of the channel still lacks pricing
    assert (
        _value(state, "pimsync_product_pages", channel="de_storefront", state="no_pricing")
        == de_pages - 1
    )
    assert _value(state, "pimsync_queue_depth", queue="events.pricing") == 0
    # counted where it happens: the web app refused one request and accepted one event
    assert _value(state, "pimsync_webhook_refusals_total", reason="bad_signature") >= 1
    assert _value(state, "pimsync_webhook_events_total", result="new") >= 1

    work = _samples(exported.text)
    assert priced >= 1
    # one pricing event for every channel: applied to each page of that SKU, lag observed once
    assert (
        _value(work, "pimsync_projection_events_total", domain="pricing", result="applied")
        == priced
    )
    assert (
        _value(work, "pimsync_projection_events_total", domain="catalog", result="applied") >= pages
    )
    assert _value(work, "pimsync_projection_lag_seconds_count", domain="pricing") == 1
    assert 0 <= _value(work, "pimsync_projection_lag_seconds_sum", domain="pricing") < 60
