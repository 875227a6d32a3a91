"""The sync engine's bookkeeping on real PostgreSQL, called directly: runs, cursors, leases,
batches and dead letters. The service tests drive these through whole syncs; here each
statement's edges (strict or not, whose rows, which fields) are pinned down one by one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db import get_engine, session_scope
from app.sync import repository as repo
from app.sync.models import DeadLetter, SyncBatch, SyncRun

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
RUN_A = uuid.UUID("00000000-0000-0000-0000-00000000000a")
RUN_B = uuid.UUID("00000000-0000-0000-0000-00000000000b")


@contextmanager
def _row_locked(table: str, row_id: object) -> Iterator[None]:
    """Another transaction holds the row's lock (SELECT ... FOR UPDATE) while the block runs."""
    with get_engine().connect() as other:
        other.execute(text(f"SELECT 1 FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id})
        yield
        other.rollback()


def _wait_for_locks_at_most(s: Session, timeout: str) -> None:
    """A statement of this transaction waiting longer than ``timeout`` for a lock fails."""
    s.execute(text(f"SET LOCAL lock_timeout = '{timeout}'"))


# --- runs ------------------------------------------------------------------------------------


def test_a_new_run_starts_at_zero_and_running(pg_db: str) -> None:
    parent = uuid.uuid4()
    with session_scope() as s:
        run_id = repo.create_run(s, "full", "web", T0, parent_id=parent, trigger="beat").id
    with session_scope() as s:
        run = repo.get_run(s, run_id, for_update=True)
        assert run is not None
        assert (run.kind, run.channel, run.parent_id, run.status, run.trigger) == (
            "full",
            "web",
            parent,
            "running",
            "beat",
        )
        assert (run.started_at, run.heartbeat_at, run.finished_at) == (T0, T0, None)
        counters = [getattr(run, name) for name in (*repo.COUNTERS, "orphans_disabled")]
        assert counters == [0] * 12
        assert run.planning_done is False
        assert repo.get_run(s, uuid.uuid4()) is None


def test_child_runs_are_the_parents_own_in_channel_order(pg_db: str) -> None:
    with session_scope() as s:
        parent = repo.create_run(s, "full", None, T0).id
        for channel in ("web", "app", "marketplace"):
            repo.create_run(s, "full", channel, T0, parent_id=parent)
        repo.create_run(s, "full", "other", T0, parent_id=uuid.uuid4())
    with session_scope() as s:
        assert [r.channel for r in repo.child_runs(s, parent)] == ["app", "marketplace", "web"]


def test_add_counts_adds_in_place_and_refuses_unknown_counters(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(s, "delta", "web", T0).id
    with session_scope() as s:
        repo.add_counts(s, run_id, T0 + MIN, read=5, synced=2, failed=0)
        run = repo.add_counts(s, run_id, T0 + 2 * MIN, read=3, pending_batches=-1)
        assert (run.read, run.synced, run.failed, run.pending_batches) == (8, 2, 0, -1)
        assert run.heartbeat_at == T0 + 2 * MIN
        with pytest.raises(ValueError, match="unknown run counter 'orphans_disabled'"):
            repo.add_counts(s, run_id, T0, orphans_disabled=1)


def test_finish_run_keeps_the_first_4000_characters_of_the_error(pg_db: str) -> None:
    with session_scope() as s:
        run = repo.create_run(s, "delta", "web", T0)
        repo.finish_run(s, run, "failed", T0 + MIN, "x" * 4000 + "cut")
        run_id = run.id
        other = repo.create_run(s, "delta", "web", T0)
        repo.finish_run(s, other, "completed", T0 + MIN)
        other_id = other.id
    with session_scope() as s:
        failed = repo.get_run(s, run_id)
        assert failed is not None
        assert (failed.status, failed.finished_at, failed.error) == ("failed", T0 + MIN, "x" * 4000)
        completed = repo.get_run(s, other_id)
        assert completed is not None
        assert (completed.status, completed.error) == ("completed", None)


def test_recent_runs_newest_first_with_filters(pg_db: str) -> None:
    with session_scope() as s:
        repo.create_run(s, "full", None, T0)  # the ingest of a full run
        repo.create_run(s, "full", "web", T0 + 1 * MIN)
        repo.create_run(s, "delta", "web", T0 + 2 * MIN)
        repo.create_run(s, "delta", "app", T0 + 3 * MIN, status="completed")
    with session_scope() as s:

        def started(**kw: object) -> list[int]:
            runs = repo.recent_runs(s, **kw)  # type: ignore[arg-type]
            return [int((r.started_at - T0) / MIN) for r in runs]

        assert started() == [3, 2, 1, 0]
        assert started(limit=2) == [3, 2]
        assert started(channel="web") == [2, 1]
        assert started(kind="full") == [1, 0]
        assert started(include_ingest=False) == [3, 2, 1]
        assert sorted(r.channel or "" for r in repo.running_runs(s)) == ["", "web", "web"]


def test_a_new_run_keeps_the_other_fields_it_is_given(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(
            s, "full", None, T0, cursor_to="42", source_kind="akeneo", source="http://pim"
        ).id
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        assert (run.cursor_to, run.source_kind, run.source) == ("42", "akeneo", "http://pim")


def test_get_run_reads_a_row_another_transaction_holds_without_waiting(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(s, "delta", "web", T0).id
    with _row_locked("sync_run", run_id), session_scope() as s:
        _wait_for_locks_at_most(s, "1s")
        run = repo.get_run(s, run_id)
        assert run is not None and run.status == "running"


def test_get_run_for_update_waits_for_the_transaction_holding_the_row(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(s, "delta", "web", T0).id
    waited = pytest.raises(OperationalError, match="canceling statement due to lock timeout")
    with _row_locked("sync_run", run_id), waited, session_scope() as s:
        _wait_for_locks_at_most(s, "200ms")
        repo.get_run(s, run_id, for_update=True)


def test_add_counts_returns_the_rows_counters_not_the_sessions_older_copy(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(s, "delta", "web", T0).id
    with session_scope() as s:
        held = repo.get_run(s, run_id)  # this session now holds the run, read and synced 0
        with session_scope() as other:  # another worker adds to the same run meanwhile
            repo.add_counts(other, run_id, T0 + MIN, read=10, synced=7)
        run = repo.add_counts(s, run_id, T0 + 2 * MIN, read=5)
        assert run is held
        assert (run.read, run.synced, run.heartbeat_at) == (15, 7, T0 + 2 * MIN)


def test_planning_done_is_marked_on_that_run_only(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(s, "full", "web", T0).id
        other_id = repo.create_run(s, "full", "app", T0).id
    with session_scope() as s:
        repo.mark_planning_done(s, run_id)
    with session_scope() as s:
        run, other = repo.get_run(s, run_id), repo.get_run(s, other_id)
        assert run is not None and other is not None
        assert (run.planning_done, other.planning_done) == (True, False)


def test_recent_runs_lists_twenty_by_default(pg_db: str) -> None:
    with session_scope() as s:
        for minute in range(21):
            repo.create_run(s, "delta", "web", T0 + minute * MIN)
    with session_scope() as s:
        started = [int((r.started_at - T0) / MIN) for r in repo.recent_runs(s)]
    assert started == [20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]


def _run_with_id(s: Session, run_id: str, started_at: datetime) -> None:
    s.add(
        SyncRun(
            id=uuid.UUID(run_id),
            kind="delta",
            channel="web",
            status="running",
            started_at=started_at,
        )
    )
    s.flush()


def test_a_run_is_found_by_the_start_of_its_id_dashes_and_case_ignored(pg_db: str) -> None:
    with session_scope() as s:
        _run_with_id(s, "abcdef01-2345-6789-abcd-ef0123456789", T0)
        _run_with_id(s, "abcdef01-9999-4000-8000-000000000000", T0 + MIN)
        _run_with_id(s, "abcdef02-0000-4000-8000-000000000000", T0 + 2 * MIN)
        _run_with_id(s, "12345678-0000-4000-8000-000000000000", T0 + 3 * MIN)
    with session_scope() as s:

        def found(prefix: str, **kw: int) -> list[str]:
            return [str(r.id)[:13] for r in repo.runs_by_prefix(s, prefix, **kw)]

        assert found("ABCDEF01") == ["abcdef01-9999", "abcdef01-2345"]
        assert found("abcdef0123") == ["abcdef01-2345"]
        assert found("abcdef01-23") == ["abcdef01-2345"]
        assert found("abcdef0") == ["abcdef02-0000", "abcdef01-9999", "abcdef01-2345"]
        assert found("abcdef0", limit=2) == ["abcdef02-0000", "abcdef01-9999"]
        assert found("123") == ["12345678-0000"]
        assert found("9") == []
        # LIKE's wildcards are plain characters here, matching no hex digit
        assert found("abcdef0_") == []
        assert found("%") == []


def test_runs_by_prefix_lists_ten_by_default(pg_db: str) -> None:
    with session_scope() as s:
        for minute in range(11):
            _run_with_id(s, f"abcdef{minute:02x}-0000-4000-8000-000000000000", T0 + minute * MIN)
    with session_scope() as s:
        started = [int((r.started_at - T0) / MIN) for r in repo.runs_by_prefix(s, "abcdef")]
    assert started == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_the_last_finished_run_of_each_kind(pg_db: str) -> None:
    with session_scope() as s:

        def run(kind: str, channel: str | None, finished_minute: int | None) -> uuid.UUID:
            made = repo.create_run(s, kind, channel, T0)
            if finished_minute is not None:
                repo.finish_run(s, made, "completed", T0 + finished_minute * MIN)
            return made.id

        run("delta", None, 3)
        delta = run("delta", None, 5)
        run("delta", "web", 9)  # a delta's channel run: not the PIM read
        run("delta", None, None)  # still running
        full = run("full", None, 2)
        run("full", "app", 8)
        run("republish", "web", 1)
        republish = run("republish", "app", 4)
        run("republish", "web", None)
        run("replay", "web", None)  # no replay has finished yet
    with session_scope() as s:
        last = {kind: r.id for kind, r in repo.last_finished_runs(s).items()}
    assert last == {"delta": delta, "full": full, "republish": republish}


# --- cursors ---------------------------------------------------------------------------------


def test_cursor_is_created_then_moved(pg_db: str) -> None:
    with session_scope() as s:
        assert repo.get_cursor(s, "delta") is None
        repo.set_cursor(s, "delta", "2026-11-27T09:00:00", T0, RUN_A)
        repo.set_cursor(s, "full", "x", T0)
        repo.set_cursor(s, "pim", "y", T0, RUN_A)
    with session_scope() as s:
        repo.set_cursor(s, "delta", "2026-11-27T10:00:00", T0 + MIN, RUN_B)
    with session_scope() as s:
        assert repo.get_cursor(s, "delta") == "2026-11-27T10:00:00"
        cursors = [(c.name, c.value, c.updated_at, c.run_id) for c in repo.all_cursors(s)]
    assert cursors == [
        ("delta", "2026-11-27T10:00:00", T0 + MIN, RUN_B),
        ("full", "x", T0, None),
        ("pim", "y", T0, RUN_A),
    ]


# --- leases ----------------------------------------------------------------------------------


def test_a_lease_is_held_until_it_expires_then_taken_over(pg_db: str) -> None:
    ttl = 5 * MIN
    with session_scope() as s:
        first = repo.acquire_lock(s, "sync", RUN_A, ttl, T0)
        assert (first.acquired, first.previous) == (True, None) and first.token
    with session_scope() as s:
        # a held lease is refused to everyone, the same run included (a second copy of its
        # work), unless the holder's fencing token is presented (a retry of the holder)
        assert repo.acquire_lock(s, "sync", RUN_A, ttl, T0 + MIN).acquired is False
        again = repo.acquire_lock(s, "sync", RUN_A, ttl, T0 + MIN, token=first.token)
        assert (again.acquired, again.token, again.previous) == (True, first.token, None)
        assert repo.acquire_lock(s, "sync", RUN_B, ttl, T0 + 2 * MIN).acquired is False
        # expires at T0+6min: still held at that very instant
        assert repo.acquire_lock(s, "sync", RUN_B, ttl, T0 + 6 * MIN).acquired is False
    with session_scope() as s:
        held = repo.lock_holder(s, "sync")
        assert held is not None
        assert (held.run_id, held.acquired_at, held.expires_at) == (RUN_A, T0 + MIN, T0 + 6 * MIN)
        assert held.token == first.token
        assert repo.expired_locks(s, T0 + 6 * MIN) == []
        assert [lk.name for lk in repo.expired_locks(s, T0 + 6 * MIN + MIN / 60)] == ["sync"]
    with session_scope() as s:
        later = T0 + 6 * MIN + MIN / 60
        taken = repo.acquire_lock(s, "sync", RUN_B, ttl, later)
        assert (taken.acquired, taken.previous) == (True, RUN_A)
        assert taken.token != first.token
    with session_scope() as s:
        held = repo.lock_holder(s, "sync")
        assert held is not None
        assert (held.run_id, held.acquired_at) == (RUN_B, T0 + 6 * MIN + MIN / 60)
        # the old holder's token renews and releases nothing now
        assert not repo.renew_lock(s, "sync", RUN_A, ttl, later, first.token)
        repo.release_lock(s, "sync", RUN_B, first.token)
        assert repo.lock_holder(s, "sync") is not None


def test_only_the_holder_renews_or_releases_a_lease(pg_db: str) -> None:
    with session_scope() as s:
        repo.acquire_lock(s, "sync", RUN_A, MIN, T0)
        repo.acquire_lock(s, "other", RUN_B, MIN, T0)
    with session_scope() as s:
        assert repo.renew_lock(s, "sync", RUN_B, 10 * MIN, T0) is False
        assert repo.renew_lock(s, "sync", RUN_A, 10 * MIN, T0 + MIN) is True
        repo.release_lock(s, "sync", RUN_B)
    with session_scope() as s:
        held = repo.lock_holder(s, "sync")
        assert held is not None and held.expires_at == T0 + 11 * MIN
        repo.release_lock(s, "sync", RUN_A)
    with session_scope() as s:
        assert repo.lock_holder(s, "sync") is None
        assert repo.lock_holder(s, "other") is not None


def test_a_wrong_token_neither_renews_nor_releases_the_lease(pg_db: str) -> None:
    with session_scope() as s:
        repo.acquire_lock(s, "sync", RUN_A, MIN, T0, token="t-1")
    with session_scope() as s:
        assert repo.renew_lock(s, "sync", RUN_A, 10 * MIN, T0 + MIN, "t-2") is False
        repo.release_lock(s, "sync", RUN_A, "t-2")
    with session_scope() as s:
        held = repo.lock_holder(s, "sync")
        assert held is not None
        assert (held.run_id, held.token, held.expires_at) == (RUN_A, "t-1", T0 + MIN)


def test_the_holders_token_renews_then_releases_the_lease(pg_db: str) -> None:
    with session_scope() as s:
        repo.acquire_lock(s, "sync", RUN_A, MIN, T0, token="t-1")
    with session_scope() as s:
        assert repo.renew_lock(s, "sync", RUN_A, 10 * MIN, T0 + MIN, "t-1") is True
        held = repo.lock_holder(s, "sync")
        assert held is not None and held.expires_at == T0 + 11 * MIN
        repo.release_lock(s, "sync", RUN_A, "t-1")
        assert repo.lock_holder(s, "sync") is None


# --- batches ---------------------------------------------------------------------------------


def _batches(run_id: uuid.UUID) -> dict[int, SyncBatch]:
    from sqlalchemy import select

    with session_scope() as s:
        rows = s.execute(select(SyncBatch).where(SyncBatch.run_id == run_id)).scalars()
        return {b.id: b for b in rows}


def test_batches_are_planned_one_per_non_empty_list(pg_db: str) -> None:
    with session_scope() as s:
        assert repo.create_batches(s, RUN_A, "web", []) == []
        ids = repo.create_batches(
            s, RUN_A, "web", [["A", "B"], [], ["C"]], attempt=2, not_before=T0, group_key="g"
        )
        plain = repo.create_batches(s, RUN_B, "app", [["D"]])
    batches = _batches(RUN_A)
    assert sorted(batches) == ids and len(ids) == 2
    got = [
        (b.channel, b.skus, b.units, b.status, b.attempt, b.not_before, b.group_key)
        for b in (batches[i] for i in ids)
    ]
    assert got == [
        ("web", ["A", "B"], 2, "pending", 2, T0, "g:0"),
        ("web", ["C"], 1, "pending", 2, T0, "g:2"),
    ]
    (only,) = _batches(RUN_B).values()
    assert (only.id, only.attempt, only.not_before, only.group_key) == (plain[0], 1, None, None)


def test_release_fills_the_free_slots_in_plan_order(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"], ["C"], ["D", "E"]])
    with session_scope() as s:
        first = repo.release_batches(s, RUN_A, 2, T0)
        assert first == [(ids[0], None, None, "web", 1), (ids[1], None, None, "web", 1)]
        assert repo.release_batches(s, RUN_A, 2, T0) == []  # two in flight: no room
    with session_scope() as s:
        repo.mark_batch_done(s, ids[0], T0 + MIN)
        assert repo.release_batches(s, RUN_A, 2, T0 + MIN) == [(ids[2], None, None, "web", 1)]
        assert repo.release_batches(s, RUN_A, 4, T0 + MIN) == [(ids[3], None, None, "web", 2)]
        assert repo.release_batches(s, RUN_A, 9, T0 + MIN) == []  # nothing pending
    got = {i: (b.status, b.enqueued_at, b.done_at) for i, b in _batches(RUN_A).items()}
    assert got == {
        ids[0]: ("done", T0, T0 + MIN),
        ids[1]: ("enqueued", T0, None),
        ids[2]: ("enqueued", T0 + MIN, None),
        ids[3]: ("enqueued", T0 + MIN, None),
    }
    with session_scope() as s:
        assert repo.batch_counts(s, RUN_A) == {"done": 1, "enqueued": 3}
        assert repo.batch_counts(s, RUN_B) == {}


def test_a_batch_is_done_once(pg_db: str) -> None:
    with session_scope() as s:
        (batch_id,) = repo.create_batches(s, RUN_A, "web", [["A"]])
    with session_scope() as s:
        assert repo.mark_batch_done(s, batch_id, T0) is True
    with session_scope() as s:
        assert repo.mark_batch_done(s, batch_id, T0 + MIN) is False
        batch = repo.get_batch(s, batch_id)
        assert batch is not None and (batch.status, batch.done_at) == ("done", T0)
        assert repo.get_batch(s, batch_id + 1000) is None


def test_discarding_a_stopped_runs_batches_closes_only_its_open_ones(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"], ["C"]])
        other = repo.create_batches(s, RUN_B, "web", [["D"]])
        repo.mark_batch_done(s, ids[0], T0)
        repo.release_batches(s, RUN_A, 1, T0)
    with session_scope() as s:
        assert repo.discard_open_batches(s, RUN_A, T0 + MIN) == 2
    done = {i: (b.status, b.done_at) for i, b in _batches(RUN_A).items()}
    assert done == {ids[0]: ("done", T0), ids[1]: ("done", T0 + MIN), ids[2]: ("done", T0 + MIN)}
    assert [b.status for b in _batches(RUN_B).values()] == ["pending"]
    assert list(_batches(RUN_B)) == other


def test_another_runs_batches_in_flight_leave_this_runs_room_alone(pg_db: str) -> None:
    with session_scope() as s:
        repo.create_batches(s, RUN_B, "web", [["X"], ["Y"]])
        repo.release_batches(s, RUN_B, 2, T0)
        ids = repo.create_batches(s, RUN_A, "app", [["A"], ["B"], ["C"]])
    with session_scope() as s:
        assert repo.release_batches(s, RUN_A, 2, T0) == [
            (ids[0], None, None, "app", 1),
            (ids[1], None, None, "app", 1),
        ]


def test_release_goes_in_plan_order_whatever_the_tables_physical_order(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"], ["C"]])
        # the first batch's row rewritten twice through an indexed column (status, then back):
        # its current version, and its index entries, now come last in the table and indexes
        for status in ("enqueued", "pending"):
            s.execute(
                text("UPDATE sync_batch SET status = :status WHERE id = :id"),
                {"status": status, "id": ids[0]},
            )
    with session_scope() as s:
        assert repo.release_batches(s, RUN_A, 2, T0) == [
            (ids[0], None, None, "web", 1),
            (ids[1], None, None, "web", 1),
        ]


def test_release_skips_a_batch_another_transaction_holds_without_waiting(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"], ["C"]])
    with _row_locked("sync_batch", ids[0]), session_scope() as s:
        _wait_for_locks_at_most(s, "1s")
        assert repo.release_batches(s, RUN_A, 2, T0) == [
            (ids[1], None, None, "web", 1),
            (ids[2], None, None, "web", 1),
        ]
    assert [b.status for _, b in sorted(_batches(RUN_A).items())] == [
        "pending",
        "enqueued",
        "enqueued",
    ]


def test_get_batch_reads_the_row_again_not_the_sessions_copy(pg_db: str) -> None:
    with session_scope() as s:
        (batch_id,) = repo.create_batches(s, RUN_A, "web", [["A"]])
    with session_scope() as s:
        first = repo.get_batch(s, batch_id)
        assert first is not None and first.status == "pending"
        with session_scope() as other:  # a worker finishes it meanwhile
            repo.mark_batch_done(other, batch_id, T0)
        again = repo.get_batch(s, batch_id)
        assert again is not None and (again.status, again.done_at) == ("done", T0)


def test_discarding_skips_a_batch_another_transaction_holds_without_waiting(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"]])
    with _row_locked("sync_batch", ids[0]), session_scope() as s:
        _wait_for_locks_at_most(s, "1s")
        assert repo.discard_open_batches(s, RUN_A, T0) == 1
    done = {i: (b.status, b.done_at) for i, b in _batches(RUN_A).items()}
    assert done == {ids[0]: ("pending", None), ids[1]: ("done", T0)}


def test_batches_of_runs_finished_before_the_cutoff_are_deleted(pg_db: str) -> None:
    with session_scope() as s:
        old = repo.create_run(s, "full", "web", T0)
        repo.finish_run(s, old, "completed", T0 + MIN)
        edge = repo.create_run(s, "full", "web", T0)
        repo.finish_run(s, edge, "completed", T0 + 2 * MIN)
        running = repo.create_run(s, "full", "web", T0)
        for run in (old, edge, running):
            repo.create_batches(s, run.id, "web", [["A"], ["B"]])
        ids = (old.id, edge.id, running.id)
    with session_scope() as s:
        assert repo.delete_finished_batches(s, T0 + 2 * MIN) == 2
    assert [len(_batches(i)) for i in ids] == [0, 2, 2]


def test_stale_enqueued_batches_are_those_of_running_runs_untouched_since(pg_db: str) -> None:
    cutoff = T0 + 10 * MIN
    with session_scope() as s:
        running = repo.create_run(s, "full", "web", T0).id
        stopped = repo.create_run(s, "full", "web", T0)
        repo.finish_run(s, stopped, "aborted", T0)
        ids = repo.create_batches(s, running, "web", [["A"], ["B"], ["C"]])
        late = repo.create_batches(s, running, "web", [["D"]], not_before=cutoff)
        edge = repo.create_batches(s, running, "web", [["E"]], not_before=cutoff - MIN)
        pending = repo.create_batches(s, running, "web", [["F"]])
        repo.create_batches(s, stopped.id, "web", [["G"]])
        repo.release_batches(s, running, 5, T0)  # A, B, C, D, E enqueued at T0
        repo.release_batches(s, stopped.id, 5, T0)
        repo.touch_batches(s, [ids[1]], cutoff)  # B: just sent again
        repo.touch_batches(s, [], cutoff)
        repo.mark_batch_done(s, ids[2], T0)  # C: done
    with session_scope() as s:
        assert repo.stale_enqueued_batches(s, cutoff) == [ids[0], edge[0]]
        assert repo.stale_enqueued_batches(s, cutoff, limit=1) == [ids[0]]
    assert late and pending  # D waits for its not_before; F was never enqueued


def test_stale_enqueued_batches_are_listed_in_id_order(pg_db: str) -> None:
    with session_scope() as s:
        running = repo.create_run(s, "full", "web", T0).id
        ids = repo.create_batches(s, running, "web", [["A"], ["B"], ["C"]])
        repo.release_batches(s, running, 3, T0)
        # A sent again, long ago too: its row's new version goes to the end of the table
        repo.touch_batches(s, [ids[0]], T0 + MIN)
    with session_scope() as s:
        assert repo.stale_enqueued_batches(s, T0 + 10 * MIN) == [ids[0], ids[1], ids[2]]


def test_stale_enqueued_batches_lists_500_by_default(pg_db: str) -> None:
    with session_scope() as s:
        running = repo.create_run(s, "full", "web", T0).id
        ids = repo.create_batches(s, running, "web", [[f"S{i}"] for i in range(501)])
        repo.release_batches(s, running, 501, T0)
    with session_scope() as s:
        stale = repo.stale_enqueued_batches(s, T0 + MIN)
    assert len(stale) == 500
    assert stale == ids[:500]


def test_touching_batches_sets_when_they_were_last_sent(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"]])
        repo.release_batches(s, RUN_A, 2, T0)
    with session_scope() as s:
        repo.touch_batches(s, [ids[1]], T0 + 5 * MIN)
    sent = {i: b.enqueued_at for i, b in _batches(RUN_A).items()}
    assert sent == {ids[0]: T0, ids[1]: T0 + 5 * MIN}


def test_enqueued_batches_are_the_runs_own_sent_and_not_done_in_id_order(pg_db: str) -> None:
    with session_scope() as s:
        ids = repo.create_batches(s, RUN_A, "web", [["A"], ["B"], ["C"], ["D"], ["E"]])
        other = repo.create_batches(s, RUN_B, "web", [["F"]])
        repo.release_batches(s, RUN_A, 4, T0)  # A, B, C, D sent; E pending
        repo.release_batches(s, RUN_B, 1, T0)
        repo.mark_batch_done(s, ids[1], T0 + MIN)  # B done
        # A sent again: its row's new version goes to the end of the table
        repo.touch_batches(s, [ids[0]], T0 + MIN)
    with session_scope() as s:
        assert repo.enqueued_batches(s, RUN_A) == [ids[0], ids[2], ids[3]]
        assert repo.enqueued_batches(s, RUN_B) == other


# --- dead letters ----------------------------------------------------------------------------


def test_a_rejected_product_is_a_permanent_ingest_dead_letter(pg_db: str) -> None:
    assert repo.rejected_product("SKU-1", "e" * 4001, RUN_A, T0) == {
        "channel": "*",
        "sku": "SKU-1",
        "run_id": RUN_A,
        "kind": "ingest",
        "error_type": "ProductParseError",
        "error": "e" * 4000,
        "permanent": True,
        "attempts": 1,
        "status": "open",
        "first_failed_at": T0,
        "last_failed_at": T0,
    }


def _letter(channel: str, sku: str, at: datetime, error: str = "boom") -> dict[str, object]:
    return {
        "channel": channel,
        "sku": sku,
        "run_id": RUN_A,
        "kind": "publish",
        "error_type": "ValueError",
        "error": error,
        "permanent": False,
        "attempts": 1,
        "status": "open",
        "first_failed_at": at,
        "last_failed_at": at,
    }


def _letters() -> dict[tuple[str, str, str], tuple[object, ...]]:
    from sqlalchemy import select

    with session_scope() as s:
        return {
            (d.channel, d.sku, d.status): (d.attempts, d.error, d.last_failed_at, d.replayed_at)
            for d in s.execute(select(DeadLetter)).scalars()
        }


def test_failing_again_bumps_the_open_dead_letter(pg_db: str) -> None:
    with session_scope() as s:
        repo.upsert_dead_letters(s, [])
        repo.upsert_dead_letters(s, [_letter("web", "A", T0), _letter("app", "A", T0)])
    with session_scope() as s:
        again = {**_letter("web", "A", T0 + MIN, "boom again"), "run_id": RUN_B}
        repo.upsert_dead_letters(s, [again])
    assert _letters() == {
        ("web", "A", "open"): (2, "boom again", T0 + MIN, None),
        ("app", "A", "open"): (1, "boom", T0, None),
    }


def test_success_resolves_only_the_open_letters_of_its_channel(pg_db: str) -> None:
    with session_scope() as s:
        repo.upsert_dead_letters(
            s, [_letter(c, sku, T0) for c in ("web", "app") for sku in ("A", "B")]
        )
    with session_scope() as s:
        assert repo.resolve_dead_letters(s, {}, T0) == 0
        assert repo.resolve_dead_letters(s, {"app": []}, T0) == 0
        assert repo.resolve_dead_letters(s, {"web": ["A", "B"], "app": ["B"]}, T0 + MIN) == 3
        assert repo.resolve_dead_letters(s, {"web": ["A"]}, T0 + 2 * MIN) == 0
    assert _letters() == {
        ("web", "A", "resolved"): (1, "boom", T0, T0 + MIN),
        ("web", "B", "resolved"): (1, "boom", T0, T0 + MIN),
        ("app", "A", "open"): (1, "boom", T0, None),
        ("app", "B", "resolved"): (1, "boom", T0, T0 + MIN),
    }


def test_listing_counting_and_replaying_dead_letters(pg_db: str) -> None:
    with session_scope() as s:
        repo.upsert_dead_letters(
            s,
            [
                _letter("web", "A", T0),
                _letter("web", "B", T0 + MIN),
                _letter("app", "C", T0 + 2 * MIN),
            ],
        )
    with session_scope() as s:

        def skus(**kw: object) -> list[str]:
            return [d.sku for d in repo.list_dead_letters(s, **kw)]  # type: ignore[arg-type]

        assert skus() == ["C", "B", "A"]  # newest failure first
        assert skus(channel="web") == ["B", "A"]
        assert skus(limit=2) == ["C", "B"]
        ids = {d.sku: d.id for d in repo.list_dead_letters(s)}
        assert skus(ids=[ids["A"], ids["C"]]) == ["C", "A"]
        assert repo.count_dead_letters(s) == {"web": 2, "app": 1}
        assert repo.mark_replayed(s, [], T0) == 0
        assert repo.mark_replayed(s, [ids["A"], ids["C"]], T0 + 5 * MIN) == 2
        assert repo.mark_replayed(s, [ids["A"]], T0 + 6 * MIN) == 0  # replayed once
    with session_scope() as s:
        assert skus() == ["B"]
        assert skus(status="replayed") == ["C", "A"]
        assert skus(status=None) == ["C", "B", "A"]
        assert repo.count_dead_letters(s) == {"web": 1}
        assert repo.count_dead_letters(s, "replayed") == {"web": 1, "app": 1}
    assert _letters()[("web", "A", "replayed")] == (1, "boom", T0, T0 + 5 * MIN)


def test_letters_failing_at_the_same_instant_are_listed_newest_first(pg_db: str) -> None:
    with session_scope() as s:
        repo.upsert_dead_letters(s, [_letter("web", "A", T0)])
        repo.upsert_dead_letters(s, [_letter("web", "B", T0 + MIN), _letter("web", "C", T0 + MIN)])
        # A fails again at the same instant as B and C: its row's new version comes last in
        # the table and in the index on the failure time (neither is in id order any more)
        repo.upsert_dead_letters(s, [_letter("web", "A", T0 + MIN)])
    with session_scope() as s:
        assert [d.sku for d in repo.list_dead_letters(s)] == ["C", "B", "A"]


def test_list_dead_letters_lists_a_hundred_by_default(pg_db: str) -> None:
    with session_scope() as s:
        repo.upsert_dead_letters(s, [_letter("web", f"S{i:03}", T0 + i * MIN) for i in range(101)])
    with session_scope() as s:
        listed = [d.sku for d in repo.list_dead_letters(s)]
    assert len(listed) == 100
    assert (listed[0], listed[-1]) == ("S100", "S001")


def test_a_products_open_dead_letters_in_every_channel_newest_first(pg_db: str) -> None:
    with session_scope() as s:
        repo.upsert_dead_letters(
            s,
            [
                _letter("*", "A", T0 + 2 * MIN),  # its payload was unreadable
                _letter("app", "A", T0 + MIN),
                _letter("shop", "A", T0 + 3 * MIN),
                _letter("web", "A", T0),
                _letter("web", "B", T0 + 3 * MIN),
                _letter("xbox", "A", T0 + 2 * MIN),
            ],
        )
        # app fails again with "*" and xbox: its row's new version comes last in the table and
        # in the index on the failure time; the three are listed newest id first all the same
        repo.upsert_dead_letters(s, [_letter("app", "A", T0 + 2 * MIN)])
        repo.resolve_dead_letters(s, {"shop": ["A"]}, T0 + 4 * MIN)
    with session_scope() as s:
        channels = [d.channel for d in repo.open_dead_letters_of(s, "A")]
    assert channels == ["xbox", "app", "*", "web"]


def test_lock_holder_reads_the_row_again_not_the_sessions_copy(pg_db: str) -> None:
    with session_scope() as s:
        repo.acquire_lock(s, "sync", RUN_A, MIN, T0)
    with session_scope() as s:
        first = repo.lock_holder(s, "sync")
        assert first is not None and first.run_id == RUN_A
        # another worker takes the lease over meanwhile
        s.execute(text("UPDATE sync_lock SET run_id = :r WHERE name = 'sync'"), {"r": RUN_B})
        again = repo.lock_holder(s, "sync")
        assert again is not None and again.run_id == RUN_B


def test_a_run_started_without_a_trigger_says_it_came_from_the_cli(pg_db: str) -> None:
    with session_scope() as s:
        run_id = repo.create_run(s, "delta", None, T0).id
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        assert (run.trigger, run.status, run.parent_id, run.channel) == (
            "cli",
            "running",
            None,
            None,
        )
