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
from app.pim.throttle import PimHealth
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import DispatchError, SyncContext
from app.sync.models import SyncBatch, SyncLock, SyncRun
from tests.sync.flow_support import ended_meanwhile, run_row

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


class Recorder:
    """A dispatcher that records what it was asked to send (or refuses, like a broker down)."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.ingested: list[uuid.UUID] = []
        self.countdowns: list[float] = []
        self.published: list[list[int]] = []

    def ingest(self, run_id: uuid.UUID, countdown: float = 0.0) -> None:
        if self.broken:
            raise DispatchError("broker unreachable: connection refused")
        self.ingested.append(run_id)
        self.countdowns.append(countdown)

    def catch_up(self, channels: list[str], parent_id: uuid.UUID | None, kind: str) -> None:
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


# --- defer_read: the PIM asked for quiet ---------------------------------------------------

READER = "a" * 32


def waiting_read(token: str = READER) -> uuid.UUID:
    """A delta's read holding its leases (its read lease under ``token``), with one running
    channel run that holds its own."""
    parent = new_run("delta", None)
    web = new_run("delta", "web", parent)
    with session_scope() as s:
        assert repo.acquire_lock(s, runs.ingest_lease(parent), parent, MIN, T0, token).acquired
    ctx = context()
    assert take(ctx, runs.DELTA_INGEST_LOCK, parent) is None
    assert take(ctx, "delta:web", web) is None
    return parent


def expiries() -> dict[str, datetime]:
    with session_scope() as s:
        return {lk.name: lk.expires_at for lk in s.execute(select(SyncLock)).scalars()}


def test_a_deferred_read_is_sent_again_for_the_instant_the_pim_named(pg_db: str) -> None:
    parent = waiting_read()
    sent = Recorder()
    not_before = T0 + 3 * MIN + timedelta(seconds=0.5)
    countdown = runs.defer_read(context(sent, at=T0 + MIN), parent, None, not_before, 429, "x")
    assert countdown == 122.0  # 120.5 s, in whole seconds, and one more
    assert (sent.ingested, sent.countdowns) == ([parent], [122.0])


def test_a_deferred_read_says_it_waits_since_when_until_when_and_why(pg_db: str) -> None:
    parent = waiting_read()
    not_before = T0 + 3 * MIN
    runs.defer_read(context(at=T0 + MIN), parent, None, not_before, 429, "asked 120 s")
    run = run_row(parent)
    assert run.details["waiting"] == {
        "status": 429,
        "since": "2026-11-27T10:01:00+00:00",
        "until": "2026-11-27T10:03:00+00:00",
        "reason": "asked 120 s",
    }
    assert run.details["deferrals"] == 1
    assert (run.status, run.heartbeat_at) == ("running", T0 + MIN)


def test_a_deferred_read_is_logged_with_its_status_instant_and_countdown(pg_db: str) -> None:
    parent = waiting_read()
    with capture_logs() as logs:
        runs.defer_read(context(at=T0 + MIN), parent, None, T0 + 3 * MIN, 503, "asked 120 s")
    assert logs == [
        {
            "event": "pim_read_deferred",
            "log_level": "warning",
            "run_id": str(parent),
            "status": 503,
            "not_before": "2026-11-27T10:03:00+00:00",
            "countdown": 121.0,
        }
    ]


def test_a_read_deferred_again_keeps_when_its_wait_began_and_counts_each_time(
    pg_db: str,
) -> None:
    parent = waiting_read()
    runs.defer_read(context(at=T0 + MIN), parent, None, T0 + 3 * MIN, 429, "asked 120 s")
    runs.defer_read(context(at=T0 + 4 * MIN), parent, None, T0 + 9 * MIN, 503, "asked 300 s")
    run = run_row(parent)
    assert run.details["waiting"] == {
        "status": 503,
        "since": "2026-11-27T10:01:00+00:00",
        "until": "2026-11-27T10:09:00+00:00",
        "reason": "asked 300 s",
    }
    assert run.details["deferrals"] == 2


def test_a_read_the_pim_already_allows_is_sent_again_a_second_later(pg_db: str) -> None:
    parent = waiting_read()
    sent = Recorder()
    assert runs.defer_read(context(sent, at=T0 + MIN), parent, None, T0, 429, "x") == 1.0
    assert sent.countdowns == [1.0]


def test_a_deferred_read_gives_its_read_lease_back_and_extends_the_others(pg_db: str) -> None:
    parent = waiting_read()
    ctx = context(at=T0 + MIN, lock_ttl_seconds=60)
    # the reader's name is longer than a token: its first 32 characters hold the lease
    runs.defer_read(ctx, parent, READER + "-0001", T0 + 3 * MIN, 429, "x")
    assert set(locks()) == {runs.DELTA_INGEST_LOCK, "delta:web"}
    # 60 s of lease past the 121 s countdown
    assert expiries() == {
        runs.DELTA_INGEST_LOCK: T0 + MIN + timedelta(seconds=181),
        "delta:web": T0 + MIN + timedelta(seconds=181),
    }


def test_a_deferred_read_leaves_the_read_lease_another_reader_took(pg_db: str) -> None:
    parent = waiting_read(token="b" * 32)
    runs.defer_read(context(at=T0 + MIN), parent, READER, T0 + 3 * MIN, 429, "x")
    assert runs.ingest_lease(parent) in locks()


def test_deferring_a_read_that_ended_changes_nothing(pg_db: str) -> None:
    parent = waiting_read()
    with session_scope() as s:
        run = repo.get_run(s, parent)
        assert run is not None
        repo.finish_run(s, run, "completed", T0)
    sent = Recorder()
    assert runs.defer_read(context(sent), parent, None, T0 + 3 * MIN, 429, "x") == 0.0
    assert runs.defer_read(context(sent), uuid.uuid4(), None, T0 + 3 * MIN, 429, "x") == 0.0
    assert sent.ingested == []
    assert "waiting" not in (run_row(parent).details or {})
    assert runs.ingest_lease(parent) in locks()


# --- waiting_until, waiting_note ---------------------------------------------------------------

# a wait that is not over when the tests run (the notes compare with the wall clock)
LATER = datetime(2099, 1, 1, 12, 6, 10, tzinfo=UTC)


def read_with(details: dict[str, Any] | None, status: str = "running") -> SyncRun:
    """A delta's read with these details (and this status)."""
    run_id = new_run("delta", None)
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        run.details = details
        if status != "running":
            repo.finish_run(s, run, status, T0)
    return run_row(run_id)


def down_since(at: datetime) -> PimHealth:
    """A connection that has failed with 503 since ``at``."""
    return PimHealth("k", "http://pim", False, at.timestamp(), "503", None, None, {})


def test_a_run_that_does_not_wait_has_no_instant_to_go_on(pg_db: str) -> None:
    assert runs.waiting_until(read_with(None)) is None
    assert runs.waiting_until(read_with({"waiting": {"status": 429}})) is None
    assert runs.waiting_until(read_with({"waiting": {"until": "soon"}})) is None
    assert runs.waiting_until(read_with({"waiting": {"until": LATER.isoformat()}})) == LATER


def test_a_waiting_read_says_what_the_pim_answered_since_when_and_the_next_try(
    pg_db: str,
) -> None:
    parent = waiting_read()
    runs.defer_read(context(at=T0), parent, None, LATER, 429, "asked a long wait")
    assert runs.waiting_note(run_row(parent)) == (
        "waiting for PIM: 429 since 10:00:00, next try 12:06:10"
    )


def test_the_note_of_a_wait_without_a_status_names_none(pg_db: str) -> None:
    waiting = {"status": None, "since": T0.isoformat(), "until": LATER.isoformat()}
    assert runs.waiting_note(read_with({"waiting": waiting})) == (
        "waiting for PIM since 10:00:00, next try 12:06:10"
    )


def test_the_note_of_a_wait_without_a_start_gives_only_the_next_try(pg_db: str) -> None:
    waiting = {"status": 503, "until": LATER.isoformat()}
    assert runs.waiting_note(read_with({"waiting": waiting})) == (
        "waiting for PIM: 503, next try 12:06:10"
    )


def test_a_wait_that_is_over_has_no_note(pg_db: str) -> None:
    waiting = {"status": 429, "since": T0.isoformat(), "until": (T0 + MIN).isoformat()}
    assert runs.waiting_note(read_with({"waiting": waiting})) is None


def test_a_wait_is_over_at_its_instant(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = {"status": 429, "since": T0.isoformat(), "until": (T0 + 2 * MIN).isoformat()}
    run = read_with({"waiting": waiting})
    monkeypatch.setattr(runs.time, "time", lambda: (T0 + 2 * MIN).timestamp() - 1)
    assert runs.waiting_note(run) == "waiting for PIM: 429 since 10:00:00, next try 10:02:00"
    monkeypatch.setattr(runs.time, "time", lambda: (T0 + 2 * MIN).timestamp())
    assert runs.waiting_note(run) is None


def test_a_read_that_does_not_wait_tells_the_connections_failure(pg_db: str) -> None:
    note = runs.waiting_note(read_with(None), down_since(T0 - 2 * MIN))
    assert note == "waiting for PIM: 503 since 09:58:00"


def test_a_read_that_does_not_wait_has_no_note_without_the_connections_health(
    pg_db: str,
) -> None:
    assert runs.waiting_note(read_with(None)) is None
    assert runs.waiting_note(read_with({})) is None


def test_only_a_running_read_has_a_waiting_note(pg_db: str) -> None:
    waiting = {"status": 429, "since": T0.isoformat(), "until": LATER.isoformat()}
    ended = read_with({"waiting": waiting}, status="completed")
    channel_run = run_row(new_run("delta", "web"))
    assert runs.waiting_note(ended, down_since(T0)) is None
    assert runs.waiting_note(channel_run, down_since(T0)) is None


# --- concurrent changes of one run ---------------------------------------------------------


def finished_meanwhile(run_id: uuid.UUID, change: Any) -> None:
    """Another transaction finishes the run (done) while ``change`` runs: ``change`` must wait
    for it and see the run as it is after that commit, never overwrite the ending."""
    ended_meanwhile(run_id, "done", T0 + MIN, change)
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


def test_deferring_a_read_that_ends_meanwhile_leaves_its_ending(pg_db: str) -> None:
    run_id = new_run("delta", None)
    sent = Recorder()
    finished_meanwhile(
        run_id,
        lambda: runs.defer_read(context(sent, at=T0 + 2 * MIN), run_id, None, T0, 429, "x"),
    )
    assert "waiting" not in (run_row(run_id).details or {})
    assert sent.ingested == []


def test_resuming_a_run_that_ends_meanwhile_leaves_its_ending(pg_db: str) -> None:
    run_id = new_run("full", "web")

    def resume() -> None:
        with session_scope() as s:
            runs.resume(s, context(at=T0 + 2 * MIN), "full:web", run_id)

    finished_meanwhile(run_id, resume)
    assert "resumptions" not in (run_row(run_id).details or {})
