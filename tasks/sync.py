"""Planning and orchestration tasks (queue ``sync``)."""

from __future__ import annotations

import uuid

from app.db import session_scope
from app.errors import TRANSIENT, task_retry_policy
from app.pim.source import PimThrottled, SourceError
from app.sync.ingest import ingest_slice, start_delta, start_full
from app.sync.publish import republish as republish_channel
from app.sync.publish import start_catchups
from app.sync.runs import defer_read, fail_ingest
from app.sync.sweep import sweep as sweep_once
from tasks import PimsyncTask, celery_app
from tasks.dispatch import process_context as context

# PIM 429/5xx and database hiccups: retried with exponential backoff and jitter, bounded.
RETRY = task_retry_policy()


@celery_app.task(name="sync.delta", base=PimsyncTask, **RETRY)
def delta(trigger: str = "beat") -> None:
    """Start a delta cycle (beat every PIMSYNC_DELTA_INTERVAL_SECONDS)."""
    with session_scope() as session:
        start_delta(session, context(), trigger=trigger)


@celery_app.task(name="sync.full", base=PimsyncTask, **RETRY)
def full(channels: list[str] | None = None, trigger: str = "beat") -> None:
    """Start a full sync of some or all channels (beat weekly)."""
    with session_scope() as session:
        start_full(session, context(), channels, trigger=trigger)


@celery_app.task(name="sync.ingest", base=PimsyncTask, bind=True, **RETRY)
def ingest(self: PimsyncTask, run_id: str) -> None:
    """Read the PIM for one time slice of a run; re-enqueues itself until the export ends."""
    ctx = context()
    # the task id stays the same across this message's retries and redeliveries: it names
    # the reader that holds the run's read lease (app.sync.ingest)
    reader = (self.request.id or "").replace("-", "") or None
    try:
        ingest_slice(ctx, uuid.UUID(run_id), reader)
    except PimThrottled as exc:  # the PIM asked for quiet: sent again for when it allows
        defer_read(ctx, uuid.UUID(run_id), reader, exc.not_before, exc.status, str(exc))
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            fail_ingest(ctx, uuid.UUID(run_id), f"{type(exc).__name__}: {exc}")
            return
        raise
    except SourceError as exc:  # permanent: bad credentials, 404, malformed page
        fail_ingest(ctx, uuid.UUID(run_id), str(exc))


@celery_app.task(name="sync.catch_up", base=PimsyncTask, **RETRY)
def catch_up(channels: list[str] | str, parent_id: str | None = None, kind: str = "delta") -> None:
    """Plan the channels' catch-ups from the mirror (delta) after an ingest, in one
    transaction (a single channel's name: a message of an earlier release)."""
    codes = [channels] if isinstance(channels, str) else list(channels)
    with session_scope() as session:
        start_catchups(session, context(), codes, kind, uuid.UUID(parent_id) if parent_id else None)


@celery_app.task(name="sync.republish", base=PimsyncTask, **RETRY)
def republish(channel: str, trigger: str = "cli") -> None:
    with session_scope() as session:
        republish_channel(session, context(), channel, trigger=trigger)


@celery_app.task(name="sync.sweep", base=PimsyncTask)
def sweep() -> None:
    """Re-enqueue lost work, finish idle runs, free expired leases (beat, every minute)."""
    sweep_once(context())
