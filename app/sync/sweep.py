"""The sweeper (beat, every minute): repairs what a lost message or a dead worker left behind."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from app.db import after_commit, session_scope
from app.logging import get_logger
from app.maintenance import analyze_if_stale
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import ABANDONED, FULL, RUNNING
from app.sync.pim_events.repository import purge_events, stale_pending
from app.sync.publish import finalize_if_done

log = get_logger("pimsync.sync")


def sweep(ctx: SyncContext) -> dict[str, int]:
    """Repair what a lost message or a dead worker left behind (runs every minute).

    - enqueued batches nobody processed for a while are enqueued again (idempotent);
    - reads whose slice message vanished resume;
    - channel runs with nothing left pending finish;
    - a run whose lease expired (its worker died) resumes from its checkpoint: its lease taken
      again, its enqueued batches and its read sent again; after
      PIMSYNC_MAX_RESUMPTIONS resumptions it is abandoned, with the reason.
    """
    now = ctx.now()
    stale = now - timedelta(seconds=ctx.settings.sweep_stale_seconds)
    out = {"batches": 0, "ingests": 0, "finalized": 0, "abandoned": 0, "resumed": 0}
    with session_scope() as session:
        ids = repo.stale_enqueued_batches(session, stale)
        repo.touch_batches(session, ids, now)
        for batch_id in ids:
            after_commit(session, partial(ctx.dispatcher.publish, [batch_id]))
        out["batches"] = len(ids)
        for lock in repo.expired_locks(session, now):
            if runs.is_ingest_lease(lock.name):
                continue  # a read's own lease: its run's heartbeat decides (below)
            if runs.resume(session, ctx, lock.name, lock.run_id):
                out["resumed"] += 1
            else:
                out["abandoned"] += 1
        for key in stale_pending(session, stale):
            after_commit(session, partial(ctx.dispatcher.pim_product, key))
            out["pim_events"] = out.get("pim_events", 0) + 1
        for run in repo.running_runs(session):
            if run.channel is None and run.kind == FULL:
                children = repo.child_runs(session, run.id)
                if children and all(c.status != RUNNING for c in children):
                    # nobody left to feed: the read stops here
                    repo.finish_run(
                        session,
                        run,
                        ABANDONED,
                        now,
                        error="every channel run of this full sync has ended",
                    )
                    repo.release_lock(session, runs.ingest_lease(run.id), run.id)
                    out["abandoned"] += 1
                    continue
            waits = runs.waiting_until(run) if run.channel is None else None
            if waits is not None and waits > stale:
                continue  # its read waits as the PIM asked (Retry-After): its message is due
            if run.channel is None and run.heartbeat_at is not None and run.heartbeat_at < stale:
                reader = repo.lock_holder(session, runs.ingest_lease(run.id))
                if reader is not None and reader.expires_at >= now:
                    continue  # its reader still holds the read: a resend would find it taken
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
        out["events_purged"] = purge_events(
            session, now - timedelta(days=ctx.settings.webhook_event_retention_days)
        )
        out["tables_analyzed"] = len(analyze_if_stale(session))
    if any(out.values()):
        log.info("sweep", **out)
    return out
