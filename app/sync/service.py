"""The sync engine's entry points, as the tasks, the CLI and the web app call them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from app.db import after_commit, session_scope
from app.logging import get_logger
from app.maintenance import analyze_if_stale
from app.pim import repository as pim_repo
from app.pim.product import ProductParseError, content_hash, parse_product
from app.pim.source import SourceError
from app.sync import repository as repo
from app.sync.context import SyncContext
from app.sync.ingest import _abandon, configured_channels, ingest_slice, start_delta, start_full
from app.sync.models import (
    CANCELLED,
    FAILED,
    REPLAY,
    REPUBLISH,
    RUNNING,
    SyncRun,
)
from app.sync.publish import finalize_if_done, publish_batch, publish_batches, start_catchup

log = get_logger("pimsync.sync")

__all__ = [
    "cancel_run",
    "fail_ingest",
    "ingest_slice",
    "publish_batch",
    "publish_batches",
    "replay_dead_letters",
    "republish",
    "start_catchup",
    "start_delta",
    "start_full",
    "sweep",
]


def republish(session: Session, ctx: SyncContext, channel: str, trigger: str = "cli") -> SyncRun:
    """Re-publish a channel from the mirror, without reading the PIM (e.g. a new contract)."""
    configured_channels(ctx, [channel])
    return start_catchup(session, ctx, channel, REPUBLISH, trigger=trigger)


def fail_ingest(ctx: SyncContext, run_id: uuid.UUID, error: str) -> None:
    """The PIM could not be read (retries exhausted or a permanent error): the run and its
    channel runs fail, and nothing is disabled."""
    from app.sync.ingest import DELTA_INGEST_LOCK, channel_lock

    now = ctx.now()
    with session_scope() as session:
        run = repo.get_run(session, run_id, for_update=True)
        if run is None or run.status != RUNNING:
            return
        repo.finish_run(session, run, FAILED, now, error=error)
        repo.release_lock(session, DELTA_INGEST_LOCK, run.id)
        repo.release_lock(session, f"ingest-run:{run.id}", run.id)
        for child in repo.child_runs(session, run.id):
            if child.status == RUNNING:
                repo.finish_run(session, child, FAILED, now, error=f"PIM read failed: {error}")
                repo.discard_open_batches(session, child.id, now)
                repo.release_lock(session, channel_lock(child.kind, child.channel or ""), child.id)
    log.error("run_failed", run_id=str(run_id), error=error)


def cancel_run(session: Session, ctx: SyncContext, run_id: uuid.UUID) -> list[SyncRun]:
    """Cancel a run (and its channel runs): nothing more is published, nothing is disabled."""
    from app.sync.ingest import DELTA_INGEST_LOCK, channel_lock

    now = ctx.now()
    run = repo.get_run(session, run_id, for_update=True)
    if run is None:
        raise LookupError(f"no run {run_id}")
    stopped = []
    for r in [run, *repo.child_runs(session, run.id)]:
        if r.status == RUNNING:
            repo.finish_run(session, r, CANCELLED, now, error="cancelled by an operator")
            repo.discard_open_batches(session, r.id, now)
            repo.release_lock(session, channel_lock(r.kind, r.channel or ""), r.id)
            stopped.append(r)
    repo.release_lock(session, DELTA_INGEST_LOCK, run.id)
    return stopped


def replay_dead_letters(
    session: Session,
    ctx: SyncContext,
    ids: list[int] | None = None,
    channel: str | None = None,
    limit: int = 10_000,
) -> dict[str, Any]:
    """Replay open dead letters: publish units go back through a replay run of their channel;
    rejected products are fetched from the PIM again."""
    letters = repo.list_dead_letters(session, channel=channel, ids=ids, limit=limit)
    if not letters:
        return {"replayed": 0, "runs": []}
    now = ctx.now()
    by_channel: dict[str, list[str]] = defaultdict(list)
    refetch: list[str] = []
    for dl in letters:
        if dl.kind == "ingest":
            refetch.append(dl.sku)
        else:
            by_channel[dl.channel].append(dl.sku)
    runs = []
    size = ctx.settings.publish_batch_size
    channels = set(configured_channels(ctx))
    for code, skus in sorted(by_channel.items()):
        if code not in channels:
            continue
        run = repo.create_run(session, REPLAY, code, now, trigger="cli")
        chunks = [skus[i : i + size] for i in range(0, len(skus), size)]
        repo.create_batches(session, run.id, code, chunks)
        run.planned_units, run.planned_batches = len(skus), len(chunks)
        run.pending_batches, run.planning_done = len(chunks), True
        session.flush()
        released = repo.release_batches(session, run.id, ctx.settings.channel_inflight_batches, now)
        ctx.enqueue_publish(session, released)
        runs.append(run)
    refetched = _refetch(session, ctx, refetch) if refetch else 0
    replayed = repo.mark_replayed(session, [dl.id for dl in letters], now)
    log.info(
        "dead_letters_replayed", count=replayed, runs=[str(r.id) for r in runs], refetched=refetched
    )
    return {"replayed": replayed, "runs": runs, "refetched": refetched}


def _refetch(session: Session, ctx: SyncContext, identifiers: list[str]) -> int:
    """Fetch rejected products again; what now parses goes into the mirror (delta publishes)."""
    source = ctx.source()
    good = []
    now = ctx.now()
    for ident in identifiers:
        try:
            raw = source.get(ident)
        except SourceError as exc:
            log.warning("refetch_failed", sku=ident, error=str(exc))
            continue
        if raw is None:
            continue
        try:
            product = parse_product(raw, ctx.settings.identifier_attribute)
        except ProductParseError as exc:
            log.warning("refetch_still_malformed", sku=ident, error=str(exc))
            continue
        good.append((product, content_hash(product.raw)))
    pim_repo.upsert_products(session, good, None, now)
    return len(good)


def sweep(ctx: SyncContext) -> dict[str, int]:
    """Repair what a lost message or a dead worker left behind (runs every minute).

    - enqueued batches nobody processed for a while are enqueued again (idempotent);
    - reads whose slice message vanished resume;
    - channel runs with nothing left pending finish;
    - runs whose lease expired are marked abandoned (their locks free for the next run).
    """
    now = ctx.now()
    stale = now - timedelta(seconds=ctx.settings.sweep_stale_seconds)
    out = {"batches": 0, "ingests": 0, "finalized": 0, "abandoned": 0}
    with session_scope() as session:
        ids = repo.stale_enqueued_batches(session, stale)
        repo.touch_batches(session, ids, now)
        for batch_id in ids:
            after_commit(session, partial(ctx.dispatcher.publish, [batch_id]))
        out["batches"] = len(ids)
        for lock in repo.expired_locks(session, now):
            if not lock.name.startswith("ingest-run:"):
                _abandon(session, ctx, lock.run_id, f"its lease {lock.name!r} expired")
                repo.release_lock(session, lock.name, lock.run_id)
                out["abandoned"] += 1
        from app.sync.pim_events import stale_pending

        for key in stale_pending(session, stale):
            after_commit(session, partial(ctx.dispatcher.pim_product, key))
            out["pim_events"] = out.get("pim_events", 0) + 1
        for run in repo.running_runs(session):
            if run.channel is None and run.kind == "full":
                children = repo.child_runs(session, run.id)
                if children and all(c.status != RUNNING for c in children):
                    # nobody left to feed: the read stops here
                    repo.finish_run(
                        session,
                        run,
                        "abandoned",
                        now,
                        error="every channel run of this full sync has ended",
                    )
                    repo.release_lock(session, f"ingest-run:{run.id}", run.id)
                    out["abandoned"] += 1
                    continue
            if run.channel is None and run.heartbeat_at is not None and run.heartbeat_at < stale:
                run.heartbeat_at = now
                after_commit(session, partial(ctx.dispatcher.ingest, run.id))
                out["ingests"] += 1
            elif run.channel is not None and run.planning_done and run.pending_batches == 0:
                locked = repo.get_run(session, run.id, for_update=True)  # decide on fresh data
                if locked is not None:
                    session.refresh(locked)
                    if finalize_if_done(session, ctx, locked):
                        out["finalized"] += 1
    with session_scope() as session:
        out["batches_deleted"] = repo.delete_finished_batches(
            session, now - timedelta(days=ctx.settings.batch_retention_days)
        )
        out["tables_analyzed"] = len(analyze_if_stale(session))
    if any(out.values()):
        log.info("sweep", **out)
    return out
