"""End to end on real parts: Akeneo's icecat catalog served over the Akeneo REST API by the
reference PIM, the Akeneo client, Redis as broker, a real Celery worker process (prefork,
two children) and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.channels.models import ChannelProduct
from app.db import session_scope
from app.pim.models import PimProduct
from app.sync import ingest, sweep
from app.sync import repository as repo
from app.sync.models import DeadLetter, SyncRun
from tests.conftest import create_pg_database, drop_pg_database, truncate_all
from tests.e2e_support import (
    FIXTURES,
    Worker,
    admin,
    apply_env,
    reference_pim,
    restore_env,
    run_finished,
    stack_env,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.icecat]
CHANNELS = ["icecat_mobile", "icecat_print", "icecat_web"]


class Stack:
    def __init__(
        self, env: dict[str, str], base: str, catalog: Any, pristine: Any, logs: Path
    ) -> None:
        self.env, self.base, self.catalog, self.pristine = env, base, catalog, pristine
        self.logs = logs
        self.admin = admin(base)

    def ctx(self) -> Any:
        from tasks.dispatch import process_context

        return process_context()

    def worker(self, name: str = "e2e", **env: str) -> Worker:
        return Worker({**self.env, **env}, self.logs / f"{name}.log", name=name)

    def full(self, channels: list[str] | None = None) -> Any:
        with session_scope() as s:
            run = ingest.start_full(s, self.ctx(), channels, trigger="test")
            return run.id if run else None

    def delta(self) -> Any:
        with session_scope() as s:
            return ingest.start_delta(s, self.ctx(), trigger="test").id

    def wait(self, run_id: Any, children: int = 3, timeout: float = 240) -> dict[Any, SyncRun]:
        try:
            wait_until(lambda: run_finished(run_id, children), timeout, what=f"run {run_id}")
        except AssertionError as exc:
            runs = _runs(run_id)
            states = {c: (r.status, r.pending_batches, r.error) for c, r in runs.items()}
            from app.sync.models import SyncBatch

            with session_scope() as s:
                open_batches = [
                    (b.id, b.channel, b.status, b.attempt, b.enqueued_at, len(b.skus))
                    for b in s.execute(
                        select(SyncBatch).where(SyncBatch.status != "done")
                    ).scalars()
                ]
            states["open batches"] = open_batches
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in self.logs.glob("*.log"))
            raise AssertionError(f"{exc}; runs: {states}\nworker logs:\n{logs}") from None
        with session_scope() as s:
            parent = repo.get_run(s, run_id)
            return {None: parent, **{c.channel: c for c in repo.child_runs(s, run_id)}}

    def rows(self, channel: str | None = None) -> dict[tuple[str, str], ChannelProduct]:
        with session_scope() as s:
            q = select(ChannelProduct)
            if channel:
                q = q.where(ChannelProduct.channel == channel)
            return {(r.channel, r.sku): r for r in s.execute(q).scalars()}

    def faults(self, **faults: Any) -> None:
        self.admin.post("/_admin/faults", json=faults).raise_for_status()

    def product(self, sku: str) -> dict[str, Any]:
        r = self.admin.get(f"/_admin/products/{sku}")
        if r.status_code == 405:  # no admin read: use the API with a token
            raise AssertionError("reference PIM has no admin read")
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def stack(icecat_dir: Path, redis_url: str, pg_url: str, tmp_path_factory) -> Iterator[Stack]:
    from app.dev.reference_server import ReferenceCatalog

    db = create_pg_database("pimsync_e2e")
    pristine = ReferenceCatalog.load(str(icecat_dir))
    with reference_pim(str(icecat_dir)) as (base, catalog):
        env = stack_env(
            db,
            redis_url,
            base,
            PIMSYNC_AKENEO_BACKOFF_BASE_SECONDS="0.05",
            PIMSYNC_AKENEO_BACKOFF_MAX_SECONDS="1",
            PIMSYNC_AKENEO_MAX_RETRIES="10",
            PIMSYNC_RETRY_BACKOFF_BASE_SECONDS="0.2",
            PIMSYNC_CHANNELS_FILE=str(FIXTURES / "icecat" / "channels.yaml"),
            PIMSYNC_CONTRACTS_DIR=str(FIXTURES / "icecat" / "contracts"),
        )
        old = apply_env(env)
        try:
            yield Stack(env, base, catalog, pristine, tmp_path_factory.mktemp("worker-logs"))
        finally:
            restore_env(old)
            drop_pg_database(db)


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    """Empty database, pristine PIM, no faults."""
    truncate_all(stack.env["PIMSYNC_DATABASE_URL"])
    stack.catalog.replace_with(stack.pristine)
    stack.faults(latency_ms=0, rate_429=0, rate_500=0, malformed_pages=0)
    return stack


def published_skus(stack: Stack, channel: str) -> list[str]:
    return sorted(k[1] for k, r in stack.rows(channel).items() if r.status == "published")


def test_full_sync_then_delta_after_edits(fresh: Stack):
    with fresh.worker():
        runs = fresh.wait(fresh.full())
        assert runs[None].status == "completed" and runs[None].read == 1239
        for channel in CHANNELS:
            assert runs[channel].status == "completed", runs[channel].error
            assert len(fresh.rows(channel)) == 1239
        web = Counter(r.status for r in fresh.rows("icecat_web").values())
        assert web["published"] == runs["icecat_web"].synced == 1234
        # AKNSTK has no family: incomplete ("no family") where family requirements decide
        # (issue 16; it was published in both before)
        assert runs["icecat_print"].synced == 110 and runs["icecat_mobile"].synced == 38
        for channel in ("icecat_print", "icecat_mobile"):
            sticker = fresh.rows(channel)[(channel, "AKNSTK")]
            assert sticker.status == "incomplete"
            assert sticker.detail == {"missing": [], "reason": "no family"}

        # the catalog team renames three products in the PIM
        before = fresh.rows("icecat_web")
        edited = published_skus(fresh, "icecat_web")[:3]
        for sku in edited:
            r = fresh.admin.patch(
                f"/_admin/products/{sku}",
                json={
                    "values": {"name": [{"locale": None, "scope": None, "data": f"Renamed {sku}"}]}
                },
            )
            r.raise_for_status()
        runs = fresh.wait(fresh.delta())
        assert runs[None].read >= 3 and runs["icecat_web"].synced == 3
        after = fresh.rows("icecat_web")
        for key, row in after.items():
            if key[1] in edited:
                assert row.doc["name"] == f"Renamed {key[1]}"
                assert row.version == before[key].version + 1
            else:
                assert row.version == before[key].version


def test_orphans_disabled_none_deleted(fresh: Stack):
    with fresh.worker():
        fresh.wait(fresh.full())
        gone = published_skus(fresh, "icecat_web")[10:12]
        for sku in gone:
            fresh.admin.delete(f"/_admin/products/{sku}").raise_for_status()
        runs = fresh.wait(fresh.full())
    rows = fresh.rows()
    assert len(rows) == 1239 * 3
    for channel in CHANNELS:
        assert runs[channel].orphans_disabled == 2
        for sku in gone:
            assert rows[(channel, sku)].status == "orphan" and not rows[(channel, sku)].enabled
    assert Counter(r.status for r in rows.values())["orphan"] == 6


def test_killed_worker_disables_nothing(fresh: Stack):
    # no resumption: this run is abandoned at its first expired lease (resuming is tested
    # in tests/sync/test_service.py)
    fast_leases = {
        "PIMSYNC_LOCK_TTL_SECONDS": "15",
        "PIMSYNC_SWEEP_STALE_SECONDS": "15",
        "PIMSYNC_MAX_RESUMPTIONS": "0",
    }
    with fresh.worker():
        fresh.wait(fresh.full())
    gone = published_skus(fresh, "icecat_web")[:5]
    for sku in gone:
        fresh.admin.delete(f"/_admin/products/{sku}").raise_for_status()
    fresh.faults(latency_ms=150)  # a slow PIM: the run is still reading when the host dies
    worker = fresh.worker("doomed", PIMSYNC_PUBLISH_BATCH_SIZE="100", **fast_leases).start()
    run_id = fresh.full()
    wait_until(lambda: _some_batches_done(run_id), 120, what="some published batches")
    worker.kill()
    runs = _runs(run_id)
    assert any(r.status == "running" for r in runs.values())
    assert not [r for r in fresh.rows().values() if r.status == "orphan"]
    # Its leases expire; the sweeper declares the run abandoned. Still nothing disabled.
    fresh.faults(latency_ms=0)
    saved = apply_env({**fresh.env, **fast_leases})
    try:

        def swept() -> bool:
            sweep.sweep(fresh.ctx())
            return all(r.status != "running" for r in _runs(run_id).values())

        wait_until(swept, 60, interval=1, what="leases to expire")
    finally:
        restore_env(saved)
    assert {r.status for r in _runs(run_id).values()} == {"abandoned"}
    assert not [r for r in fresh.rows().values() if r.status == "orphan"]
    # A healthy worker runs the next full sync to completion; now orphans are disabled.
    with fresh.worker("healthy"):
        runs = fresh.wait(fresh.full())
    assert all(r.status == "completed" for r in runs.values())
    orphans = {s for (c, s), r in fresh.rows("icecat_web").items() if r.status == "orphan"}
    assert orphans == set(gone)


def _runs(run_id: Any) -> dict[Any, SyncRun]:
    with session_scope() as s:
        parent = repo.get_run(s, run_id)
        return {None: parent, **{c.channel: c for c in repo.child_runs(s, run_id)}}


def _some_batches_done(run_id: Any) -> bool:
    runs = _runs(run_id)
    return sum(r.synced + r.unchanged + r.skipped_incomplete for c, r in runs.items() if c) > 0


def test_poisoned_product_is_dead_lettered_while_neighbours_publish(fresh: Stack):
    skus = sorted(fresh.catalog._uuid_by_identifier)
    victim = skus[100]
    r = fresh.admin.patch(
        f"/_admin/products/{victim}",
        json={
            "values": {
                "weight": [
                    {"locale": None, "scope": None, "data": {"amount": "heavy", "unit": "KILOGRAM"}}
                ]
            }
        },
    )
    r.raise_for_status()
    with fresh.worker():
        runs = fresh.wait(fresh.full(["icecat_web"]), children=1)
    web = runs["icecat_web"]
    assert web.status == "completed" and web.failed == 1
    assert web.synced == 1233
    with session_scope() as s:
        (dl,) = s.execute(select(DeadLetter)).scalars().all()
    assert (dl.channel, dl.sku, dl.permanent) == ("icecat_web", victim, True)
    assert "heavy" in dl.error and "weight" in dl.error and "icecat@1" in dl.error
    rows = fresh.rows("icecat_web")
    assert (("icecat_web", victim)) not in rows
    neighbours = [s for s in skus[95:106] if s != victim]
    assert all(
        rows[("icecat_web", s)].status == "published"
        for s in neighbours
        if ("icecat_web", s) in rows
    )


def test_pim_429_and_500_are_retried_to_success(fresh: Stack):
    fresh.admin.post("/_admin/stats/reset")
    fresh.faults(rate_429=0.25, rate_500=0.15, retry_after=0, seed=7)
    with fresh.worker():
        runs = fresh.wait(fresh.full(["icecat_web"]), children=1, timeout=300)
    assert runs[None].status == "completed" and runs[None].read == 1239
    assert runs["icecat_web"].synced == 1234
    stats = fresh.admin.get("/_admin/stats").json()
    assert stats["by_status"].get("429", 0) > 0 and stats["by_status"].get("500", 0) > 0
    assert stats["max_concurrent"] <= 4


def test_overlapping_runs_are_refused(fresh: Stack):
    fresh.faults(latency_ms=100)
    with fresh.worker():
        first = fresh.full()
        assert fresh.full() is None  # every channel busy: refused
        with session_scope() as s:
            skipped = s.execute(
                select(SyncRun).where(SyncRun.status == "skipped", SyncRun.channel.is_not(None))
            ).scalars()
            assert {r.channel for r in skipped} == set(CHANNELS)
        fresh.faults(latency_ms=0)
        runs = fresh.wait(first)
    assert all(r.status == "completed" for r in runs.values())


def test_same_second_edit_at_the_cursor_is_not_lost(fresh: Stack):
    with fresh.worker():
        fresh.wait(fresh.full())
        sku = published_skus(fresh, "icecat_web")[42]
        fresh.faults(latency_ms=200)  # the cycle is still reading when the edit lands
        run_id = fresh.delta()
        with session_scope() as s:
            cycle_start = datetime.fromisoformat(repo.get_run(s, run_id).cursor_to)
        # saved in the very second the cycle started (the PIM keeps whole seconds), i.e. at
        # or before the cursor this cycle is about to store
        stamp = cycle_start.astimezone(UTC).replace(microsecond=0)
        fresh.admin.patch(
            f"/_admin/products/{sku}",
            json={
                "updated": stamp.isoformat(),
                "values": {"name": [{"locale": None, "scope": None, "data": "Edge"}]},
            },
        ).raise_for_status()
        fresh.wait(run_id)
        fresh.faults(latency_ms=0)
        fresh.wait(fresh.delta())
    with session_scope() as s:
        raw = s.get(PimProduct, sku).raw
    assert next(e for e in raw["values"]["name"])["data"] == "Edge"
    assert fresh.rows("icecat_web")[("icecat_web", sku)].doc["name"] == "Edge"
    assert stamp <= cycle_start
