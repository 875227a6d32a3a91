"""Run bookkeeping (app/sync/runs.py) called directly on real PostgreSQL: each way a run ends
(skipped, abandoned, stopped, failed, cancelled, resumed) leaves the run, its channel runs,
its batches and its leases exactly so, with the reason and the log line an operator reads.

The sync service tests drive these through whole syncs; here each rule is pinned down alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from app.config import Settings
from app.db import session_scope
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import DispatchError, SyncContext
from app.sync.models import SyncBatch, SyncLock
from tests.sync.flow_support import run_row

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


class Recorder:
    """A dispatcher that records what it was asked to send (or refuses, like a broker down)."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.ingested: list[uuid.UUID] = []
        self.published: list[list[int]] = []

    def ingest(self, run_id: uuid.UUID) -> None:
        if self.broken:
            raise DispatchError("broker unreachable: connection refused")
        self.ingested.append(run_id)

    def catch_up(self, channel: str, parent_id: uuid.UUID | None, kind: str) -> None:
        raise AssertionError("not expected")

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        self.published.append(batch_ids)


def context(dispatcher: Recorder | None = None, at: datetime = T0, **settings: Any) -> SyncContext:
    return SyncContext(
        Settings(**settings),
        dispatcher or Recorder(),  # type: ignore[arg-type]
        lambda: None,  # type: ignore[arg-type,return-value]
        clock=lambda: at,
    )


def new_run(kind: str = "full", channel: str | None = "web", parent: uuid.UUID | None = None):
    with session_scope() as s:
        return repo.create_run(s, kind, channel, T0, parent_id=parent).id


def locks() -> dict[str, uuid.UUID]:
    with session_scope() as s:
        return {lk.name: lk.run_id for lk in s.execute(select(SyncLock)).scalars()}


def batch_states(run_id: uuid.UUID) -> list[tuple[str, datetime | None]]:
    with session_scope() as s:
        q = select(SyncBatch).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        return [(b.status, b.done_at) for b in s.execute(q).scalars()]


def take(ctx: SyncContext, name: str, run_id: uuid.UUID) -> str | None:
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        return runs.take_lock(s, ctx, name, run)


# --- names ---------------------------------------------------------------------------------


def test_lease_and_cursor_names_are_stable() -> None:
    run_id = uuid.UUID("00000000-0000-0000-0000-00000000000a")
    assert runs.channel_lock("full", "web") == "full:web"
    assert runs.ingest_lease(run_id) == f"ingest-run:{run_id}"
    assert runs.is_ingest_lease(runs.ingest_lease(run_id))
    assert not runs.is_ingest_lease("full:web")
    assert not runs.is_ingest_lease("x-ingest-run:1")
    assert runs.channel_cursor_name("web") == "channel:web"
    assert (runs.INGEST_CURSOR, runs.DELTA_INGEST_LOCK) == ("ingest", "ingest:delta")


def test_a_channel_run_holds_the_lease_of_its_kind_and_channel(pg_db: str) -> None:
    assert runs.run_lock(run_row(new_run("delta", "de"))) == "delta:de"
    assert runs.run_lock(run_row(new_run("delta", None))) == "delta:"


def test_an_ingest_lease_outlives_three_slices_and_at_least_a_minute() -> None:
    assert runs.ingest_lease_ttl(Settings(ingest_slice_seconds=120)) == timedelta(seconds=360)
    assert runs.ingest_lease_ttl(Settings(ingest_slice_seconds=20)) == timedelta(seconds=60)
    assert runs.ingest_lease_ttl(Settings(ingest_slice_seconds=20.5)) == timedelta(seconds=61.5)


# --- skip, take_lock, abandon ----------------------------------------------------------------


def test_a_skipped_run_ends_with_its_reason_and_a_log_line(pg_db: str) -> None:
    run_id = new_run("delta", "de")
    with capture_logs() as logs, session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        runs.skip(s, run, T0 + MIN, "nothing to do")
    run = run_row(run_id)
    assert (run.status, run.error, run.finished_at) == ("skipped", "nothing to do", T0 + MIN)
    assert logs == [
        {
            "event": "delta_sync_skipped",
            "log_level": "info",
            "run_id": str(run_id),
            "channel": "de",
            "reason": "nothing to do",
        }
    ]


def test_a_lease_is_taken_once_and_a_second_run_is_told_who_holds_it(pg_db: str) -> None:
    first, second = new_run(), new_run()
    ctx = context()
    assert take(ctx, "full:web", first) is None
    assert take(ctx, "full:web", second) == (
        f"a run holding 'full:web' is still in progress (run {first})"
    )
    assert locks() == {"full:web": first}
    assert run_row(first).status == "running"


def test_an_expired_lease_is_taken_over_and_its_holder_abandoned(pg_db: str) -> None:
    dead, live = new_run(), new_run()
    with session_scope() as s:
        repo.create_batches(s, dead, "web", [["A"], ["B"]])
    assert take(context(lock_ttl_seconds=60), "full:web", dead) is None
    later = context(at=T0 + 2 * MIN, lock_ttl_seconds=60)
    with capture_logs() as logs:
        assert take(later, "full:web", live) is None
    assert locks() == {"full:web": live}
    run = run_row(dead)
    assert (run.status, run.finished_at) == ("abandoned", T0 + 2 * MIN)
    assert run.error == "its lease 'full:web' expired (worker lost?)"
    assert batch_states(dead) == [("done", T0 + 2 * MIN)] * 2
    assert logs == [
        {
            "event": "run_abandoned",
            "log_level": "warning",
            "run_id": str(dead),
            "channel": "web",
            "reason": "its lease 'full:web' expired (worker lost?)",
        }
    ]


def test_abandoning_touches_only_a_running_run(pg_db: str) -> None:
    done = new_run()
    with session_scope() as s:
        run = repo.get_run(s, done)
        assert run is not None
        repo.finish_run(s, run, "done", T0)
    with session_scope() as s:
        runs.abandon(s, context(at=T0 + MIN), done, "late")
        runs.abandon(s, context(), uuid.uuid4(), "no such run")
    run = run_row(done)
    assert (run.status, run.error, run.finished_at) == ("done", None, T0)


# --- stop ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "event"),
    [
        ("full", "failed", "full_sync_aborted"),
        ("delta", "failed", "delta_sync_failed"),
        ("republish", "aborted", "republish_sync_aborted"),
    ],
)
def test_a_stopped_run_closes_its_batches_and_gives_its_lease_back(
    pg_db: str, kind: str, status: str, event: str
) -> None:
    run_id, other = new_run(kind, "web"), new_run(kind, "app")
    ctx = context(at=T0 + MIN)
    assert take(ctx, f"{kind}:web", run_id) is None
    assert take(ctx, f"{kind}:app", other) is None
    with session_scope() as s:
        repo.create_batches(s, run_id, "web", [["A"], ["B"]])
        repo.create_batches(s, other, "app", [["C"]])
    with session_scope() as s:
        repo.add_counts(s, run_id, T0, failed=3)
    with capture_logs() as logs, session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        runs.stop(s, ctx, run, status, "error budget spent")
    run = run_row(run_id)
    assert (run.status, run.error, run.finished_at) == (status, "error budget spent", T0 + MIN)
    assert batch_states(run_id) == [("done", T0 + MIN)] * 2
    assert batch_states(other) == [("pending", None)]
    assert locks() == {f"{kind}:app": other}
    assert logs == [
        {
            "event": event,
            "log_level": "error",
            "run_id": str(run_id),
            "channel": "web",
            "reason": "error budget spent",
            "failed": 3,
        }
    ]


# --- fail_ingest, send_read_or_fail ----------------------------------------------------------


def read_with_children() -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A delta's read with two running channel runs and one already done."""
    parent = new_run("delta", None)
    web, app_, done = (new_run("delta", ch, parent) for ch in ("web", "app", "zz"))
    ctx = context()
    for name, holder in [
        (runs.DELTA_INGEST_LOCK, parent),
        (runs.ingest_lease(parent), parent),
        ("delta:web", web),
        ("delta:app", app_),
        ("unrelated", done),
    ]:
        assert take(ctx, name, holder) is None
    with session_scope() as s:
        repo.create_batches(s, web, "web", [["A"]])
        finished = repo.get_run(s, done)
        assert finished is not None
        repo.finish_run(s, finished, "done", T0)
    return parent, web, app_, done


def test_a_failed_read_fails_its_channel_runs_and_frees_every_lease(pg_db: str) -> None:
    parent, web, app_, done = read_with_children()
    with capture_logs() as logs:
        runs.fail_ingest(context(at=T0 + MIN), parent, "PIM answered 403")
    assert (run_row(parent).status, run_row(parent).error) == ("failed", "PIM answered 403")
    assert run_row(parent).finished_at == T0 + MIN
    for child in (web, app_):
        run = run_row(child)
        assert (run.status, run.error) == ("failed", "PIM read failed: PIM answered 403")
        assert run.finished_at == T0 + MIN
    assert (run_row(done).status, run_row(done).error) == ("done", None)
    assert batch_states(web) == [("done", T0 + MIN)]
    assert locks() == {"unrelated": done}
    assert logs == [
        {
            "event": "run_failed",
            "log_level": "error",
            "run_id": str(parent),
            "error": "PIM answered 403",
        }
    ]


def test_failing_a_read_that_already_ended_changes_nothing(pg_db: str) -> None:
    parent, web, *_ = read_with_children()
    with session_scope() as s:
        run = repo.get_run(s, parent)
        assert run is not None
        repo.finish_run(s, run, "done", T0)
    runs.fail_ingest(context(at=T0 + MIN), parent, "late failure")
    runs.fail_ingest(context(at=T0 + MIN), uuid.uuid4(), "no such run")
    assert (run_row(parent).status, run_row(parent).error) == ("done", None)
    assert run_row(web).status == "running"
    assert runs.DELTA_INGEST_LOCK in locks()


def test_a_read_is_sent_or_the_run_fails_with_the_brokers_reason(pg_db: str) -> None:
    parent, web, *_ = read_with_children()
    sent = Recorder()
    runs.send_read_or_fail(context(sent), parent)
    assert sent.ingested == [parent] and run_row(parent).status == "running"
    with pytest.raises(DispatchError):
        runs.send_read_or_fail(context(Recorder(broken=True)), parent)
    assert run_row(parent).status == "failed"
    assert run_row(parent).error == "broker unreachable: connection refused"
    assert run_row(web).status == "failed"


# --- cancel ----------------------------------------------------------------------------------


def test_cancelling_stops_the_run_and_its_running_channel_runs_only(pg_db: str) -> None:
    parent, web, app_, done = read_with_children()
    with session_scope() as s:
        stopped = runs.cancel(s, context(at=T0 + MIN), parent)
        assert sorted(r.id for r in stopped) == sorted([parent, web, app_])
    for rid in (parent, web, app_):
        run = run_row(rid)
        assert (run.status, run.error, run.finished_at) == (
            "cancelled",
            "cancelled by an operator",
            T0 + MIN,
        )
    assert run_row(done).status == "done"
    assert batch_states(web) == [("done", T0 + MIN)]
    assert set(locks()) == {runs.ingest_lease(parent), "unrelated"}
    with session_scope() as s, pytest.raises(LookupError, match="no run"):
        runs.cancel(s, context(), uuid.uuid4())


# --- resume ----------------------------------------------------------------------------------


def test_a_resumed_channel_run_sends_its_enqueued_batches_again(pg_db: str) -> None:
    run_id = new_run("full", "web")
    assert take(context(lock_ttl_seconds=60), "full:web", run_id) is None
    with session_scope() as s:
        ids = repo.create_batches(s, run_id, "web", [["A"], ["B"], ["C"]])
        repo.release_batches(s, run_id, 2, T0)
    sent = Recorder()
    at = T0 + 5 * MIN
    with capture_logs() as logs, session_scope() as s:
        assert runs.resume(s, context(sent, at=at, lock_ttl_seconds=60), "full:web", run_id)
    assert sent.published == [[ids[0]], [ids[1]]] and sent.ingested == []
    run = run_row(run_id)
    assert (run.status, run.details["resumptions"], run.heartbeat_at) == ("running", 1, T0)
    with session_scope() as s:
        lease = repo.lock_holder(s, "full:web")
        assert lease is not None and lease.expires_at == at + MIN
        enqueued = {b.id: b.enqueued_at for b in s.execute(select(SyncBatch)).scalars()}
    assert enqueued == {ids[0]: at, ids[1]: at, ids[2]: None}
    assert logs == [
        {
            "event": "run_resumed",
            "log_level": "warning",
            "run_id": str(run_id),
            "channel": "web",
            "lease": "full:web",
            "resumption": 1,
            "batches": 2,
        }
    ]


def test_a_resumed_read_sends_its_next_slice(pg_db: str) -> None:
    parent = new_run("delta", None)
    lease = runs.ingest_lease(parent)
    assert take(context(), lease, parent) is None
    sent = Recorder()
    with session_scope() as s:
        assert runs.resume(s, context(sent, at=T0 + MIN), lease, parent)
    assert sent.ingested == [parent] and sent.published == []
    assert run_row(parent).heartbeat_at == T0 + MIN


def test_a_run_that_keeps_dying_is_abandoned_after_its_resumptions(pg_db: str) -> None:
    run_id = new_run("full", "web")
    assert take(context(), "full:web", run_id) is None
    ctx = context(at=T0 + MIN, max_resumptions=2)
    for expected in (1, 2):
        with session_scope() as s:
            assert runs.resume(s, ctx, "full:web", run_id)
        assert run_row(run_id).details["resumptions"] == expected
    with session_scope() as s:
        assert not runs.resume(s, ctx, "full:web", run_id)
    run = run_row(run_id)
    assert run.status == "abandoned"
    assert run.error == (
        "its lease 'full:web' expired again after 2 resumption(s) "
        "(PIMSYNC_MAX_RESUMPTIONS=2): its workers keep dying or stalling"
    )
    assert locks() == {}


def test_resuming_a_run_that_ended_only_frees_its_lease(pg_db: str) -> None:
    run_id = new_run("full", "web")
    assert take(context(), "full:web", run_id) is None
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        repo.finish_run(s, run, "done", T0)
    sent = Recorder()
    with session_scope() as s:
        assert not runs.resume(s, context(sent), "full:web", run_id)
        assert not runs.resume(s, context(sent), "full:gone", uuid.uuid4())
    assert locks() == {} and sent.published == [] and sent.ingested == []
    assert run_row(run_id).status == "done"


# --- concurrent changes of one run ---------------------------------------------------------


def finished_meanwhile(run_id: uuid.UUID, change: Any) -> None:
    """Another transaction finishes the run (done) while ``change`` runs: ``change`` must wait
    for it and see the run as it is after that commit, never overwrite the ending."""
    import threading

    locked, release = threading.Event(), threading.Event()

    def other_transaction() -> None:
        with session_scope() as s:
            run = repo.get_run(s, run_id, for_update=True)
            assert run is not None
            repo.finish_run(s, run, "done", T0 + MIN)
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
    run = run_row(run_id)
    assert (run.status, run.error, run.finished_at) == ("done", None, T0 + MIN)


def test_cancelling_a_run_that_ends_meanwhile_leaves_its_ending(pg_db: str) -> None:
    run_id = new_run("full", "web")

    def cancel() -> None:
        with session_scope() as s:
            runs.cancel(s, context(at=T0 + 2 * MIN), run_id)

    finished_meanwhile(run_id, cancel)


def test_failing_a_read_that_ends_meanwhile_leaves_its_ending(pg_db: str) -> None:
    run_id = new_run("delta", None)
    finished_meanwhile(run_id, lambda: runs.fail_ingest(context(at=T0 + 2 * MIN), run_id, "x"))


def test_resuming_a_run_that_ends_meanwhile_leaves_its_ending(pg_db: str) -> None:
    run_id = new_run("full", "web")

    def resume() -> None:
        with session_scope() as s:
            runs.resume(s, context(at=T0 + 2 * MIN), "full:web", run_id)

    finished_meanwhile(run_id, resume)
    assert "resumptions" not in (run_row(run_id).details or {})
