"""A read the PIM asked to wait (a long ``Retry-After``): deferred, not failed, not swept as
lost nor abandoned while it waits, its channel runs' leases kept, and the waiting note gone
once it reads again. The service level (``runs.defer_read``, the sweeper) on real PostgreSQL;
tests/faults/test_throttled_pim.py drives the same through a real worker and the reference
PIM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.db import session_scope
from app.sync import ingest, runs, sweep
from app.sync import repository as repo

# longer than a run's lease (600 s) and the sweeper's staleness (300 s) together
WAIT = timedelta(hours=1)


def test_a_deferred_read_waits_without_being_swept_then_reads_on(harness) -> None:
    clock = {"now": datetime.now(UTC)}
    harness.ctx.clock = lambda: clock["now"]
    with session_scope() as s:
        run_id = ingest.start_full(s, harness.ctx, ["de_storefront"], trigger="test").id
    name, args = harness.dispatcher.queue.popleft()
    assert (name, args) == ("ingest", (run_id,))
    started = clock["now"]
    not_before = started + WAIT

    # what the sync.ingest task does when the source raises PimThrottled
    countdown = runs.defer_read(harness.ctx, run_id, None, not_before, 429, "asked 3600 s")

    assert countdown == 3601.0  # whole seconds, never before the PIM allows it
    assert harness.dispatcher.sent[-1] == ("ingest", (run_id,))
    harness.dispatcher.queue.clear()  # the deferred message waits in the broker meanwhile
    by = harness.runs(run_id)
    assert by[None].status == "running"
    assert by[None].details["waiting"] == {
        "status": 429,
        "since": started.isoformat(),
        "until": not_before.isoformat(),
        "reason": "asked 3600 s",
    }
    note = runs.waiting_note(by[None])
    assert note is not None and note.startswith("waiting for PIM: 429 since ")
    assert f"next try {not_before:%H:%M:%S}" in note
    child = by["de_storefront"]
    with session_scope() as s:
        lease = repo.lock_holder(s, runs.run_lock(child))
        assert lease is not None and lease.expires_at >= not_before

    # 50 minutes on (past the run's own lease and staleness): nothing swept, nothing resent
    clock["now"] = started + timedelta(minutes=50)
    out = sweep.sweep(harness.ctx)
    assert (out["ingests"], out["resumed"], out["abandoned"]) == (0, 0, 0), out
    assert harness.dispatcher.queue == type(harness.dispatcher.queue)()
    assert {r.status for r in harness.runs(run_id).values()} == {"running"}

    # the deferred message comes when the PIM allows it: the read goes on and completes
    clock["now"] = not_before + timedelta(seconds=2)
    harness.ctx.dispatcher.ingest(run_id)
    harness.drain()
    by = harness.runs(run_id)
    assert by[None].status == "completed" and "waiting" not in by[None].details
    assert by[None].details["deferrals"] == 1
    assert runs.waiting_note(by[None]) is None
    assert (by["de_storefront"].status, by["de_storefront"].processed) == ("completed", 60)


def test_a_deferred_message_that_got_lost_is_sent_again_after_the_wait(harness) -> None:
    clock = {"now": datetime.now(UTC)}
    harness.ctx.clock = lambda: clock["now"]
    with session_scope() as s:
        run_id = ingest.start_delta(s, harness.ctx, trigger="test").id
    harness.dispatcher.queue.clear()
    runs.defer_read(harness.ctx, run_id, None, clock["now"] + WAIT, 503, "asked 3600 s")
    harness.dispatcher.queue.clear()  # lost with the broker
    stale = timedelta(seconds=harness.ctx.settings.sweep_stale_seconds)
    clock["now"] += WAIT + stale + timedelta(seconds=1)
    out = sweep.sweep(harness.ctx)
    assert out["ingests"] == 1, out
    harness.drain()
    assert harness.runs(run_id)[None].status == "completed"
