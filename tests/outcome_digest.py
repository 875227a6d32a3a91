"""A digest of what pimsync does to a generated catalog, to prove a refactoring changed no
behaviour: ``python -m tests.outcome_digest [--products N]`` before and after, same output.

It runs, on a fresh PostgreSQL database and in-process (the services, not Celery): a full sync
of the sample channels, a delta after edits, a burst of PIM events (updates, a removal, a
product model event, redeliveries) and pricing/inventory events; then hashes every row of
``channel_product`` and ``product_page``, every run's counters and every dead letter, leaving
out only what differs between two identical runs (ids, timestamps).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import text


def _scenario(products: int) -> None:
    from app.config import get_settings
    from app.db import session_scope, utcnow
    from app.dev.local import LocalDispatcher, drain
    from app.pages import projection as pages
    from app.pages.schemas import DomainEvent
    from app.sync import ingest
    from app.sync.context import SyncContext
    from app.sync.pim_events import apply as pim_events
    from app.sync.pim_events.formats import PimEvent
    from app.sync.runtime import REGISTRY
    from tests.sync.memory_source import MemorySource

    source = MemorySource.generated(products, seed=11)
    ctx = SyncContext(get_settings(), LocalDispatcher(), lambda: source)
    with session_scope() as s:
        ingest.start_full(s, ctx, trigger="digest")
    drain(ctx)
    skus = sorted(source.products)
    later = datetime.now(UTC) + timedelta(seconds=5)
    for sku in skus[:: max(1, len(skus) // 25)]:
        source.rename(sku, "(digest edit)", when=later)
    source.set_enabled(skus[1], False)
    source.remove(skus[2])
    with session_scope() as s:
        ingest.start_delta(s, ctx, trigger="digest")
    drain(ctx)
    # a burst of PIM events: updates carrying the product, a removal, a model, redeliveries
    events = []
    for i, sku in enumerate(skus[3:40]):
        raw = copy.deepcopy(source.products[sku])
        raw["updated"] = (later + timedelta(seconds=i)).isoformat()
        for entry in raw["values"].get("name", []):
            entry["data"] = f"{entry['data']} (event {i})"
        source.products[sku] = raw
        events.append(PimEvent(f"evt-{i}", "product.upsert", sku, raw, later))
    events.append(PimEvent("evt-removed", "product.remove", skus[41], None, later))
    models = sorted({p["parent"] for p in source.products.values() if p.get("parent")})
    if models:
        events.append(PimEvent("evt-model", "model.upsert", models[0], None, later))
    now = utcnow()
    with session_scope() as s:
        keys = pim_events.accept(s, events + events[:5], now).new_keys or []
    for key in keys:
        pim_events.process(ctx, key)
    drain(ctx)
    occurred = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    domain_events = [
        DomainEvent(
            type="pricing",
            sku=sku,
            channel=None if i % 3 else "de_storefront",
            source_version=100 + (i % 7),
            occurred_at=occurred,
            payload={"amount": f"{i}.99", "currency": "EUR"},
        )
        for i, sku in enumerate(skus[:60])
    ] + [
        DomainEvent(
            type="inventory",
            sku=sku,
            source_version=5,
            occurred_at=occurred,
            payload={"quantity": i % 4},
        )
        for i, sku in enumerate(skus[10:50])
    ]
    channels = sorted(REGISTRY.channels(ctx.settings))
    with session_scope() as s:
        pages.apply_events(s, domain_events, channels, now)


def _digest(url: str) -> tuple[str, dict[str, int]]:
    from sqlalchemy import create_engine

    queries = {
        "channel_product": "SELECT channel, sku, doc, contract_version, input_hash, status, "
        "enabled, disabled_reason, detail, completeness, version FROM channel_product "
        "ORDER BY channel, sku",
        "product_page": "SELECT channel, sku, catalog, catalog_version, catalog_enabled, "
        "catalog_status, pricing, pricing_version, inventory, inventory_version, media, "
        "media_version FROM product_page ORDER BY channel, sku",
        "sync_run": "SELECT kind, channel, status, trigger, read, rejected, synced, unchanged, "
        "skipped_incomplete, filtered, disabled, failed, orphans_disabled, planned_units, "
        "planned_batches, pending_batches, planning_done, error FROM sync_run "
        "ORDER BY kind, channel NULLS FIRST, status, synced, unchanged, read",
        "dead_letter": "SELECT channel, sku, kind, error_type, error, permanent, attempts, status "
        "FROM dead_letter ORDER BY channel, sku, status",
        "pim_product": "SELECT identifier, content_hash, enabled, removed_at IS NOT NULL "
        "FROM pim_product ORDER BY identifier",
    }
    engine = create_engine(url)
    h = hashlib.sha256()
    counts = {}
    try:
        with engine.connect() as conn:
            for name, sql in queries.items():
                rows = [list(r) for r in conn.execute(text(sql)).all()]
                counts[name] = len(rows)
                h.update(name.encode())
                h.update(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS, default=str))
    finally:
        engine.dispose()
    return h.hexdigest(), counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1500)
    args = parser.parse_args(argv)
    from app.config import reset_settings_cache
    from app.db import dispose_engines
    from tests.conftest import create_pg_database, drop_pg_database

    url = create_pg_database("pimsync_digest")
    os.environ["PIMSYNC_DATABASE_URL"] = url
    os.environ.setdefault("PIMSYNC_LOG_LEVEL", "WARNING")
    reset_settings_cache()
    dispose_engines()
    from app.logging import configure_logging

    configure_logging("WARNING", False, force=True)
    try:
        _scenario(args.products)
        digest, counts = _digest(url)
    finally:
        drop_pg_database(url)
    print(orjson.dumps({"digest": digest, "rows": counts, "products": args.products}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
