"""``pimsync demo``: the whole engine on the embedded default, no servers.

SQLite (the configured database, ./pimsync.db by default), Celery's in-memory broker and a
worker running in this process, and a copy of the bundled sample catalog as the PIM. It runs
a full sync of every channel, edits a few products in the PIM copy, runs a delta sync, and
prints per channel what was published, skipped (with the missing attributes), filtered and
failed.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import start_worker
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from app.channels.models import ChannelProduct
from app.cli.runs import runs_table, wait_for
from app.config import get_settings, reset_settings_cache
from app.db import session_scope
from app.dev.generator import sample_catalog_dir
from app.migrations import upgrade
from app.pim.files import JsonLinesSource, rewrite_products
from app.sync import ingest
from app.sync.models import DeadLetter
from app.sync.runtime import configured_channels


def _prepare_env(pim_dir: Path, db: Path) -> None:
    # A database of its own, fresh every time: a demo interrupted half-way must not leave
    # leases behind that the next demo would wait for.
    if db.exists():
        db.unlink()
    os.environ["PIMSYNC_DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["PIMSYNC_BROKER_URL"] = "memory://"
    os.environ["PIMSYNC_PIM_SOURCE"] = str(pim_dir)
    os.environ.setdefault("PIMSYNC_LOG_LEVEL", "WARNING")
    reset_settings_cache()


def _copy_sample(workdir: Path) -> Path:
    sample = sample_catalog_dir()
    pim_dir = workdir / "pim"
    if pim_dir.exists():
        shutil.rmtree(pim_dir)
    shutil.copytree(sample, pim_dir)
    return pim_dir


def _edit_pim(pim_dir: Path, skus: list[str], disable: str | None) -> int:
    """Edit products as a catalog team would: new German names, one product switched off."""
    src = JsonLinesSource(pim_dir / "products.jsonl")
    now = datetime.now(UTC).isoformat()
    updates: dict[str, dict[str, Any]] = {}
    for sku in skus:
        product = src.get(sku)
        if product is None:
            continue
        for entry in product["values"].get("name", []):
            if entry.get("locale") in ("de_DE", "en_GB", "en_US"):
                entry["data"] = f"{entry['data']} (new edition)"
        product["updated"] = now
        updates[sku] = product
    if disable:
        product = src.get(disable)
        if product is not None:
            product["enabled"] = False
            product["updated"] = now
            updates[disable] = product
    src.close()
    rewrite_products(pim_dir, updates)
    return len(updates)


def _channel_summary(session: Any, console: Console) -> None:
    rows = session.execute(
        select(ChannelProduct.channel, ChannelProduct.status, ChannelProduct.detail)
    ).all()
    failed = Counter(
        c
        for (c,) in session.execute(
            select(DeadLetter.channel).where(DeadLetter.status == "open")
        ).all()
    )
    by_channel: dict[str, Counter[str]] = {}
    missing: dict[str, Counter[str]] = {}
    filters: dict[str, Counter[str]] = {}
    for channel, status, detail in rows:
        by_channel.setdefault(channel, Counter())[status] += 1
        if status == "incomplete" and detail:
            missing.setdefault(channel, Counter()).update(detail.get("missing", []))
        if status == "filtered" and detail:
            filters.setdefault(channel, Counter())[detail.get("filter", "?")] += 1
    table = Table(
        "channel",
        "published",
        "incomplete",
        "filtered",
        "disabled",
        "failed",
        title="Channel catalogs now",
    )
    for channel in sorted(by_channel):
        counts = by_channel[channel]
        table.add_row(
            channel,
            str(counts["published"]),
            str(counts["incomplete"]),
            str(counts["filtered"]),
            str(counts["disabled_in_pim"] + counts["orphan"] + counts["removed"]),
            str(failed[channel]),
        )
    console.print(table)
    for channel in sorted(by_channel):
        top = missing.get(channel, Counter()).most_common(3)
        if top:
            console.print(
                f"  {channel} skipped as incomplete, most missing: "
                + ", ".join(f"{a} ({n})" for a, n in top)
            )
        for name, n in filters.get(channel, Counter()).most_common():
            console.print(f"  {channel} filtered {n} by {name}")


def run_demo(console: Console) -> None:
    workdir = Path.cwd() / ".pimsync" / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    pim_dir = _copy_sample(workdir)
    db = workdir / "demo.db"
    _prepare_env(pim_dir, db)
    settings = get_settings()
    console.print(f"database: {settings.database_url}")
    console.print(f"PIM: sample catalog copied to {pim_dir}")
    upgrade(settings.database_url)

    # The Celery app reads the settings when it is imported: only now, after the demo has
    # pointed them at its own database, broker and PIM copy.
    from tasks import celery_app
    from tasks.dispatch import process_context, reset_process_context

    celery_app.conf.broker_url = "memory://"
    reset_process_context()
    ctx = process_context()
    channels = configured_channels(ctx.settings)
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ):
        console.rule("1. Full sync of every channel")
        with session_scope() as session:
            run = ingest.start_full(session, ctx, None, trigger="demo")
            assert run is not None
            run_id = run.id
        runs = wait_for(run_id, len(channels), timeout=600, workers=False)
        console.print(runs_table(runs, "full sync", compact=True))
        with session_scope() as session:
            _channel_summary(session, console)

        console.rule("2. The catalog team edits products in the PIM")
        with session_scope() as session:
            published = list(
                session.execute(
                    select(ChannelProduct.sku)
                    .where(ChannelProduct.channel == channels[0], ChannelProduct.enabled.is_(True))
                    .order_by(ChannelProduct.sku)
                    .limit(6)
                ).scalars()
            )
        edited = _edit_pim(pim_dir, published[:5], published[5] if len(published) > 5 else None)
        console.print(
            f"edited {edited} products ({', '.join(published[:5])} renamed, "
            f"{published[5] if len(published) > 5 else '-'} disabled)"
        )

        console.rule("3. Delta sync")
        with session_scope() as session:
            run = ingest.start_delta(session, ctx, trigger="demo")
            run_id = run.id
        runs = wait_for(run_id, len(channels), timeout=600, workers=False)
        console.print(runs_table(runs, "delta sync", compact=True))
        with session_scope() as session:
            _channel_summary(session, console)
    reset_process_context()
    console.print(
        f"Explore the result: PIMSYNC_DATABASE_URL=sqlite:///{db} pimsync runs "
        "(or drift, dead-letters list)"
    )
