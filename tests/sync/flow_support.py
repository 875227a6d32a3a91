"""Reading a run's outcome back from the database, for the worker-driven sync tests."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.channels.models import ChannelProduct
from app.db import session_scope
from app.sync import repository as repo
from app.sync.models import DeadLetter, SyncBatch, SyncRun


def runs(run_id: Any) -> dict[Any, SyncRun]:
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        return {None: run, run.channel: run, **{c.channel: c for c in repo.child_runs(s, run_id)}}


def rows(channel: str) -> dict[str, ChannelProduct]:
    with session_scope() as s:
        q = select(ChannelProduct).where(ChannelProduct.channel == channel)
        return {r.sku: r for r in s.execute(q).scalars()}


def letters(**where: Any) -> list[DeadLetter]:
    with session_scope() as s:
        q = select(DeadLetter).order_by(DeadLetter.channel, DeadLetter.sku)
        for key, value in where.items():
            q = q.where(getattr(DeadLetter, key) == value)
        return list(s.execute(q).scalars())


def batches(run_id: Any) -> list[SyncBatch]:
    with session_scope() as s:
        q = select(SyncBatch).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        return list(s.execute(q).scalars())


def written_by(run: SyncRun) -> Counter[str]:
    """The statuses of the rows a run wrote, read from channel_product."""
    return Counter(r.status for r in rows(run.channel or "").values() if r.sync_run_id == run.id)


def assert_counters_are_the_rows(run: SyncRun) -> None:
    """A run never lies: what it counts is what channel_product and dead_letter hold."""
    got = written_by(run)
    assert run.synced == got["published"], (run.synced, got)
    assert run.skipped_incomplete == got["incomplete"], (run.skipped_incomplete, got)
    assert run.filtered == got["filtered"], (run.filtered, got)
    assert run.disabled == got["disabled_in_pim"] + got["removed"], (run.disabled, got)
    # its own units' dead letters, and the products its read rejected (channel "*"): a
    # product that cannot be parsed fails in every channel of the run
    rejected = letters(run_id=run.parent_id, kind="ingest") if run.parent_id else []
    assert run.failed == len(letters(run_id=run.id)) + len(rejected), run.failed


def run_row(run_id: uuid.UUID) -> SyncRun:
    """The run's row as committed, detached (its columns readable after the session)."""
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        s.expunge(run)
        return run


def ended_meanwhile(
    run_id: uuid.UUID, status: str, at: datetime, change: Callable[[], Any]
) -> None:
    """Another transaction ends the run (``status`` at ``at``) and holds its row while
    ``change`` runs in a thread: ``change`` reads the run, so it waits for that commit and
    must then see the run ended. Bounded: both threads are joined, neither may hang."""
    locked, release = threading.Event(), threading.Event()

    def other_transaction() -> None:
        with session_scope() as s:
            run = repo.get_run(s, run_id, for_update=True)
            assert run is not None
            repo.finish_run(s, run, status, at)
            s.flush()
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=other_transaction)
    holder.start()
    assert locked.wait(10)
    worker = threading.Thread(target=change)
    worker.start()
    worker.join(0.5)  # it reads the run, and so waits for the other transaction's lock
    release.set()
    holder.join(10)
    worker.join(10)
    assert not holder.is_alive() and not worker.is_alive()
