"""Run bookkeeping: the names of leases and cursors, taking and giving back leases, and every
change of a run's state. Ingest, publish, operations and the sweeper all go through here, so a
run ends the same way (finished, its batches closed, its lease released) wherever it ends.

The SQL is in ``app.sync.repository``; this module holds the rules around it.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import after_commit, session_scope
from app.logging import get_logger
from app.pim.throttle import PimHealth, health_note
from app.pim.throttle import waiting_note as throttle_note
from app.sync import repository as repo
from app.sync.context import DispatchError, SyncContext
from app.sync.models import ABANDONED, CANCELLED, FAILED, FULL, RUNNING, SKIPPED, SyncRun

log = get_logger("pimsync.runs")

# The PIM's `updated` up to which the mirror holds every product (delta syncs read from it).
INGEST_CURSOR = "ingest"
# One delta read of the PIM at a time, whatever the channels.
DELTA_INGEST_LOCK = "ingest:delta"


def channel_lock(kind: str, channel: str) -> str:
    """The lease of a channel run: one run of a kind per channel at a time."""
    return f"{kind}:{channel}"


def run_lock(run: SyncRun) -> str:
    """The lease a channel run holds while it works."""
    return channel_lock(run.kind, run.channel or "")


def ingest_lease(run_id: uuid.UUID) -> str:
    """The lease of one read of the PIM: one slice of a run reads at a time."""
    return f"ingest-run:{run_id}"


def is_ingest_lease(name: str) -> bool:
    return name.startswith("ingest-run:")


def ingest_lease_ttl(settings: Settings) -> timedelta:
    """A slice's lease outlives the slice, so a slow page does not hand the read on early."""
    return timedelta(seconds=max(settings.ingest_slice_seconds * 3, 60))


def channel_cursor_name(channel: str) -> str:
    """A channel's progress marker in the mirror's change log (``pim_product.change_seq``)."""
    return f"channel:{channel}"


def skip(session: Session, run: SyncRun, now: datetime, reason: str) -> None:
    """The run will not run (another holds its lease, nothing to do): recorded, with why."""
    repo.finish_run(session, run, SKIPPED, now, error=reason)
    log.info(f"{run.kind}_sync_skipped", run_id=str(run.id), channel=run.channel, reason=reason)


def take_lock(session: Session, ctx: SyncContext, name: str, run: SyncRun) -> str | None:
    """Acquire ``name`` for ``run``; None on success, else why not. A run whose lease expired
    (its worker died) is abandoned when its lease is taken over."""
    now = ctx.now()
    lease = repo.acquire_lock(session, name, run.id, ctx.lock_ttl(), now)
    if not lease.acquired:
        holder = repo.lock_holder(session, name)
        held_by = f" (run {holder.run_id})" if holder else ""
        return f"a run holding {name!r} is still in progress{held_by}"
    if lease.previous is not None:
        abandon(session, ctx, lease.previous, f"its lease {name!r} expired (worker lost?)")
    return None


def abandon(session: Session, ctx: SyncContext, run_id: uuid.UUID, reason: str) -> None:
    """A run nobody works on any more: abandoned, its open batches closed."""
    old = repo.get_run(session, run_id)
    if old is not None and old.status == RUNNING:
        repo.finish_run(session, old, ABANDONED, ctx.now(), error=reason)
        repo.discard_open_batches(session, old.id, ctx.now())
        log.warning("run_abandoned", run_id=str(old.id), channel=old.channel, reason=reason)


def stop(session: Session, ctx: SyncContext, run: SyncRun, status: str, reason: str) -> None:
    """End a channel run before its work is done (aborted, failed): its open batches closed,
    its lease released, nothing disabled."""
    now = ctx.now()
    repo.finish_run(session, run, status, now, error=reason)
    repo.discard_open_batches(session, run.id, now)
    repo.release_lock(session, run_lock(run), run.id)
    event = "full_sync_aborted" if run.kind == FULL else f"{run.kind}_sync_{status}"
    log.error(event, run_id=str(run.id), channel=run.channel, reason=reason, failed=run.failed)


def fail_ingest(ctx: SyncContext, run_id: uuid.UUID, error: str) -> None:
    """The PIM could not be read (retries exhausted or a permanent error): the run and its
    channel runs fail, and nothing is disabled."""
    with session_scope() as session:
        run = repo.get_run(session, run_id, for_update=True)
        if run is None or run.status != RUNNING:
            return
        fail_ingest_run(session, ctx, run, error)


def fail_ingest_run(session: Session, ctx: SyncContext, run: SyncRun, error: str) -> None:
    """``fail_ingest`` inside the caller's transaction, on a run row it holds locked."""
    now = ctx.now()
    repo.finish_run(session, run, FAILED, now, error=error)
    repo.release_lock(session, DELTA_INGEST_LOCK, run.id)
    repo.release_lock(session, ingest_lease(run.id), run.id)
    for child in repo.child_runs(session, run.id):
        if child.status == RUNNING:
            repo.finish_run(session, child, FAILED, now, error=f"PIM read failed: {error}")
            repo.discard_open_batches(session, child.id, now)
            repo.release_lock(session, run_lock(child), child.id)
    log.error("run_failed", run_id=str(run.id), error=error)


def defer_read(
    ctx: SyncContext,
    run_id: uuid.UUID,
    reader: str | None,
    not_before: datetime,
    status: int | None,
    reason: str,
) -> float:
    """The PIM asked for quiet until ``not_before``: the read's next slice is sent for that
    instant instead of holding a worker, and the run says it is waiting, since when and
    until when (``details["waiting"]``, cleared by the next page it commits). The read
    lease is given back (the deferred message is a new reader); the run's own leases and
    its channel runs' are extended past the wait, so neither the sweeper nor another run
    takes a run that waits as the PIM asked. Not a failure: no retry is used up. Returns
    the countdown (seconds)."""
    now = ctx.now()
    wait = max(0.0, (not_before - now).total_seconds())
    # whole seconds, rounded up: the message never runs before the PIM allows it
    countdown = float(math.ceil(wait)) + 1.0
    ttl = ctx.lock_ttl() + timedelta(seconds=countdown)
    with session_scope() as session:
        run = repo.get_run(session, run_id, for_update=True)
        if run is None or run.status != RUNNING:
            return 0.0
        details = dict(run.details or {})
        previous = details.get("waiting") or {}
        details["waiting"] = {
            "status": status,
            "since": previous.get("since") or now.isoformat(),
            "until": not_before.isoformat(),
            "reason": reason,
        }
        details["deferrals"] = int(details.get("deferrals", 0)) + 1
        run.details = details
        run.heartbeat_at = now
        repo.release_lock(session, ingest_lease(run_id), run_id, reader[:32] if reader else None)
        if run.kind != FULL:
            repo.renew_lock(session, DELTA_INGEST_LOCK, run_id, ttl, now)
        for child in repo.child_runs(session, run_id):
            if child.status == RUNNING:
                repo.renew_lock(session, run_lock(child), child.id, ttl, now)
        after_commit(session, partial(ctx.dispatcher.ingest, run_id, countdown))
    log.warning(
        "pim_read_deferred",
        run_id=str(run_id),
        status=status,
        not_before=not_before.isoformat(),
        countdown=countdown,
    )
    return countdown


def waiting_until(run: SyncRun) -> datetime | None:
    """When a read that waits for the PIM (``defer_read``) goes on, or None."""
    waiting = (run.details or {}).get("waiting")
    if not isinstance(waiting, dict) or not waiting.get("until"):
        return None
    try:
        return datetime.fromisoformat(str(waiting["until"]))
    except ValueError:
        return None


def waiting_note(run: SyncRun, health: PimHealth | None = None) -> str | None:
    """``waiting for PIM: 429 since 12:04:10, next try 12:06:10`` for a running read that
    waits for the PIM: deferred as it asked (the run's own record), or, given the
    connection's live ``health``, retrying while the PIM fails or throttles."""
    if run.status != RUNNING or run.channel is not None:
        return None
    waiting = (run.details or {}).get("waiting")
    until = waiting_until(run)
    if isinstance(waiting, dict) and until is not None and until.timestamp() > time.time():
        try:
            since = datetime.fromisoformat(str(waiting.get("since"))).timestamp()
        except ValueError:
            since = None
        status = waiting.get("status")
        return throttle_note(str(status) if status else None, since, until.timestamp())
    return health_note(health) if health is not None else None


def cancel(session: Session, ctx: SyncContext, run_id: uuid.UUID) -> list[SyncRun]:
    """Cancel a run (and its channel runs): nothing more is published, nothing is disabled."""
    now = ctx.now()
    run = repo.get_run(session, run_id, for_update=True)
    if run is None:
        raise LookupError(f"no run {run_id}")
    stopped = []
    for r in [run, *repo.child_runs(session, run.id)]:
        if r.status == RUNNING:
            repo.finish_run(session, r, CANCELLED, now, error="cancelled by an operator")
            repo.discard_open_batches(session, r.id, now)
            repo.release_lock(session, run_lock(r), r.id)
            stopped.append(r)
    repo.release_lock(session, DELTA_INGEST_LOCK, run.id)
    return stopped


def send_read_or_fail(ctx: SyncContext, run_id: uuid.UUID) -> None:
    """Send a run's read once its transaction committed; a broker that cannot take it fails
    the run (its leases released, its channel runs failed) instead of leaving a run that says
    `running` which nothing will ever run."""
    try:
        ctx.dispatcher.ingest(run_id)
    except DispatchError as exc:
        fail_ingest(ctx, run_id, str(exc))
        raise


def resume(session: Session, ctx: SyncContext, name: str, run_id: uuid.UUID) -> bool:
    """A run whose lease ``name`` expired (its worker died, or stalled past the lease): it
    resumes from its checkpoint, its lease taken again and its committed state kept, with its
    enqueued batches and (for a read) its next slice sent again; True. After
    ``max_resumptions`` it is abandoned instead, with the reason; False. Sending work again is
    safe: a batch is claimed once, and a read has one reader at a time."""
    now = ctx.now()
    run = repo.get_run(session, run_id, for_update=True)
    if run is None or run.status != RUNNING:
        repo.release_lock(session, name, run_id)
        return False
    details = dict(run.details or {})
    resumed = int(details.get("resumptions", 0))
    limit = ctx.settings.max_resumptions
    if resumed >= limit:
        reason = (
            f"its lease {name!r} expired again after {resumed} resumption(s) "
            f"(PIMSYNC_MAX_RESUMPTIONS={limit}): its workers keep dying or stalling"
        )
        abandon(session, ctx, run_id, reason)
        repo.release_lock(session, name, run_id)
        return False
    details["resumptions"] = resumed + 1
    run.details = details
    repo.renew_lock(session, name, run_id, ctx.lock_ttl(), now)
    batches = repo.enqueued_batches(session, run_id)
    repo.touch_batches(session, batches, now)
    for batch_id in batches:
        after_commit(session, partial(ctx.dispatcher.publish, [batch_id]))
    if run.channel is None:  # a delta's read: its next slice, from its resume token
        run.heartbeat_at = now
        after_commit(session, partial(ctx.dispatcher.ingest, run_id))
    log.warning(
        "run_resumed",
        run_id=str(run_id),
        channel=run.channel,
        lease=name,
        resumption=resumed + 1,
        batches=len(batches),
    )
    return True
