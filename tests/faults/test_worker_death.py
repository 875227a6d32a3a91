"""A worker host killed (-9) mid full sync and mid delta, on real parts: a Celery worker process,
Redis, PostgreSQL and the reference PIM. Its runs stay ``running`` holding their leases; when
the leases expire the sweeper resumes them from their checkpoint (enqueued batches sent again,
committed rows kept), a healthy worker finishes them, and the invariant holds: the catalog is
what a clean full sync produces, every counter is its rows, nothing left running or leased.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.sync.models import SyncRun
from tests.e2e_support import wait_until
from tests.faults import invariant
from tests.faults.stack import CHANNELS, FAST_SWEEP, FaultStack, open_stack

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.worker]

# Small batches, one in flight per channel: a channel's publishing is a chain of 30 batches,
# long enough to kill the worker in the middle of it.
SLOW_CHAIN = {"PIMSYNC_PUBLISH_BATCH_SIZE": "2", "PIMSYNC_CHANNEL_INFLIGHT_BATCHES": "1"}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with open_stack("death", redis_url, tmp_path_factory.mktemp("death"), **SLOW_CHAIN) as s:
        yield s


@pytest.fixture
def fresh(stack: FaultStack, redis_url: str) -> FaultStack:
    stack.reset(redis_url)
    return stack


def mid_publish(stack: FaultStack, run_id: Any) -> bool:
    """The read is over and every channel run is publishing, none done yet."""
    by = stack.runs(run_id)
    children = [r for c, r in by.items() if c is not None]
    return (
        by[None].status == "completed"
        and len(children) == len(CHANNELS)
        and any(r.processed > 0 for r in children)
        and all(r.status == "running" for r in children)
    )


def _kill_and_resume(
    stack: FaultStack, worker: Any, run_id: Any
) -> tuple[dict[str, int], set[str]]:
    """Kill the worker mid publish; sweep (short leases) until every channel run left running
    is resumed; a healthy worker then finishes them. The sweeps' totals and the runs resumed."""
    wait_until(lambda: mid_publish(stack, run_id), 60, interval=0.05, what="mid publish")
    worker.kill()
    # nothing finishes without a worker (a channel may have ended just before the kill)
    stalled = {c for c, r in stack.runs(run_id).items() if c and r.status == "running"}
    assert stalled, "the worker was killed after the run"

    def all_resumed(_totals: dict[str, int]) -> bool:
        by = stack.runs(run_id)
        return all((by[c].details or {}).get("resumptions") == 1 for c in stalled)

    totals = stack.sweep_until(all_resumed, **FAST_SWEEP)
    return totals, stalled


def _assert_resumed_once(by: dict[Any, SyncRun], stalled: set[str], totals: dict[str, int]):
    assert totals["resumed"] == len(stalled) and totals["abandoned"] == 0, totals
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.error) == ("completed", None), (channel, run.error)
        resumed = (run.details or {}).get("resumptions")
        assert resumed == (1 if channel in stalled else None), (channel, run.details)
        assert run.processed == run.planned_units == 60


def counts(run: SyncRun) -> tuple[int, ...]:
    return (run.synced, run.skipped_incomplete, run.filtered, run.disabled, run.failed)


def test_worker_killed_mid_full_sync_is_resumed_by_the_sweeper(fresh: FaultStack):
    doomed = fresh.worker("full-doomed", **FAST_SWEEP).start()
    try:
        run_id = fresh.full()
        totals, stalled = _kill_and_resume(fresh, doomed, run_id)
    finally:
        doomed.kill()
    # what the dead worker committed is kept: the resumed runs go on from there
    killed_at = {c: r.processed for c, r in fresh.runs(run_id).items() if c in stalled}
    assert all(0 <= n < 60 for n in killed_at.values()), killed_at
    with fresh.worker("full-healthy"):
        by = fresh.wait(run_id)  # by itself: no sweep after the resumption
    assert by[None].status == "completed" and by[None].read == 60
    _assert_resumed_once(by, stalled, totals)
    outcome = fresh.check()
    for channel in CHANNELS:
        assert by[channel].failed == 0 and "failed" not in outcome.count(channel)
        # a clean full sync from scratch: every row written by this run, none unchanged
        assert by[channel].unchanged == 0 and by[channel].orphans_disabled == 0
        assert sum(outcome.count(channel).values()) == 60


def test_worker_killed_mid_delta_is_resumed_by_the_sweeper(fresh: FaultStack):
    doomed = fresh.worker("delta-doomed", **FAST_SWEEP).start()
    try:
        first = fresh.wait(fresh.full())
        assert {r.status for r in first.values()} == {"completed"}
        before = invariant.check(fresh.catalog)  # (against a clean sync: the test above)
        # the catalog team renames every product: the delta has 60 units in every channel
        for sku in fresh.pim_skus():
            names = [{**e, "data": f"New {sku}"} for e in fresh.product(sku)["values"]["name"]]
            fresh.patch(sku, values={"name": names})
        run_id = fresh.delta()
        totals, stalled = _kill_and_resume(fresh, doomed, run_id)
    finally:
        doomed.kill()
    with fresh.worker("delta-healthy"):
        by = fresh.wait(run_id)
    assert (by[None].kind, by[None].status, by[None].read) == ("delta", "completed", 60)
    _assert_resumed_once(by, stalled, totals)
    after = fresh.check()
    for channel in CHANNELS:
        run = by[channel]
        assert run.kind == "delta" and run.failed == 0
        # every unit decided again (every product changed), each the way it was before
        assert run.unchanged == 0 and run.processed == 60
        assert counts(run) == counts(first[channel])
        assert before.count(channel) == after.count(channel)
    renamed = {
        (c, s): r.doc for (c, s), r in after.snapshot.rows.items() if r.status == "published"
    }
    assert renamed and all(f"New {s}" in str(doc) for (_c, s), doc in renamed.items())


def test_worker_killed_mid_read_is_read_on_from_its_checkpoint(fresh: FaultStack):
    """Killed while reading the PIM: the read's own lease (max(3 x slice, 60) s) must expire
    before another reader may take it; the sweeper sends the read again (its heartbeat is
    stale) and the new reader goes on from the run's resume token: every product read once.
    The channel leases outlive the read's (as the defaults do: 600 s against 360 s)."""
    leases = {
        "PIMSYNC_LOCK_TTL_SECONDS": "90",
        "PIMSYNC_SWEEP_STALE_SECONDS": "10",
        "PIMSYNC_INGEST_SLICE_SECONDS": "5",  # the read's lease: max(3 x 5, 60) = 60 s
    }
    fresh.faults(latency_ms=400)  # a slow PIM: the worker dies between two pages
    doomed = fresh.worker("read-doomed", **leases).start()
    try:
        run_id = fresh.full()

        def mid_read() -> bool:
            run = fresh.runs(run_id)[None]
            return run.status == "running" and 10 <= run.read < 50

        wait_until(mid_read, 60, interval=0.05, what="mid read")
    finally:
        doomed.kill()
    read_at_kill = fresh.runs(run_id)[None].read
    fresh.faults()
    with fresh.worker("read-healthy", **leases):
        totals = fresh.sweep_until(
            lambda _t: fresh.runs(run_id)[None].status != "running", timeout=120, **leases
        )
        by = fresh.wait(run_id)
    assert 10 <= read_at_kill < 50
    assert totals["ingests"] >= 1 and totals["resumed"] == totals["abandoned"] == 0, totals
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 60, 0)
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.error, run.failed) == ("completed", None, 0)
        assert "resumptions" not in (run.details or {})
        assert run.processed == run.planned_units == 60 and run.unchanged == 0
    fresh.check()
