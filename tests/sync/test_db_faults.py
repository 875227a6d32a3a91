"""The database going away under a running full sync, for real: the worker's PostgreSQL
backends terminated (pg_terminate_backend, on this test's own database only) and a private
PostgreSQL server stopped mid-run and started again. A real Celery worker, Redis and the
reference PIM; nothing patched. Once the database is back the run ends exactly as a clean run
would: every unit decided once (nothing lost, nothing doubled), the counters equal the rows.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from app.db import session_scope
from app.pages.models import ProductPage
from app.pages.schemas import DomainEvent
from app.sync import ingest
from app.sync.models import SyncBatch, SyncRun
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database, flush_redis_db
from tests.e2e_support import (
    Worker,
    admin,
    apply_env,
    reference_pim,
    restore_env,
    run_finished,
    stack_env,
    wait_until,
)
from tests.pg_private import PrivatePostgres, private_pg  # noqa: F401 (a fixture)
from tests.sync.flow_support import assert_counters_are_the_rows, letters, rows, runs

pytestmark = [pytest.mark.slow, pytest.mark.worker]

CATALOG = "generated:60"
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]


class Env:
    def __init__(self, env: dict[str, str], base: str, log: Path) -> None:
        self.env, self.base, self.log = env, base, log

    def worker(self, **extra: str) -> Worker:
        return Worker({**self.env, **extra}, self.log, name=self.log.stem)

    def full(self) -> Any:
        from tasks.dispatch import process_context

        with session_scope() as s:
            run = ingest.start_full(s, process_context(), None, trigger="test")
            assert run is not None
            return run.id

    def wait(self, run_id: Any, timeout: float = 180) -> dict[Any, SyncRun]:
        try:
            wait_until(lambda: run_finished(run_id, 4), timeout, what=f"run {run_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text(errors='replace')[-4000:]}") from None
        return runs(run_id)

    def retries(self) -> list[str]:
        """The worker's log lines of tasks retried after a database error."""
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if "Retry in" in line and "OperationalError" in line
        ]


@pytest.fixture
def slow_pim() -> Iterator[tuple[str, Any]]:
    with reference_pim(CATALOG) as (base, catalog):
        # slow enough that reading and publishing overlap the fault
        admin(base).post("/_admin/faults", json={"latency_ms": 150}).raise_for_status()
        yield base, catalog


def _stack(db: str, redis_url: str, base: str, log: Path, worker_db: str | None = None) -> Env:
    env = stack_env(
        db,
        redis_url,
        base,
        PIMSYNC_AKENEO_PAGE_SIZE="10",
        PIMSYNC_PUBLISH_BATCH_SIZE="5",
        PIMSYNC_AKENEO_BACKOFF_BASE_SECONDS="0.05",
        PIMSYNC_RETRY_BACKOFF_BASE_SECONDS="0.2",
    )
    stack = Env(env, base, log)
    if worker_db is not None:
        stack.env = {**env, "PIMSYNC_DATABASE_URL": worker_db}
    return stack


def _done_batches() -> int:
    with session_scope() as s:
        q = select(func.count()).select_from(SyncBatch).where(SyncBatch.status == "done")
        return int(s.execute(q).scalar_one())


def assert_exact_clean_outcome(by: dict[Any, SyncRun]) -> None:
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 60, 0)
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.error, run.failed) == ("completed", None, 0), channel
        # every unit decided exactly once: a batch applied twice would count twice
        assert run.processed == 60 and run.unchanged == 0, (channel, run.processed)
        assert_counters_are_the_rows(run)
        got = rows(channel)
        assert len(got) == 60 and {r.version for r in got.values()} == {1}
        assert all(r.sync_run_id == run.id for r in got.values())
    assert letters() == []
    with session_scope() as s:
        open_ = select(func.count()).select_from(SyncBatch).where(SyncBatch.status != "done")
        assert s.execute(open_).scalar_one() == 0


def test_full_sync_survives_its_connections_being_terminated(
    redis_url: str, pg_url: str, slow_pim: tuple[str, Any], tmp_path: Path
):
    db = create_pg_database("pimsync_faults")
    name = db.rsplit("/", 1)[1]
    tag = f"pimsync-worker-{uuid.uuid4().hex[:8]}"
    # the worker's connections carry a name: the test kills those and no others
    stack = _stack(
        db, redis_url, slow_pim[0], tmp_path / "terminated.log", f"{db}?application_name={tag}"
    )
    old = apply_env(stack.env | {"PIMSYNC_DATABASE_URL": db})
    killer = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with stack.worker():
            run_id = stack.full()
            killed = 0
            for _ in range(3):  # three rounds while the run reads and publishes
                done = _done_batches()
                wait_until(
                    lambda d=done: _done_batches() > d or run_finished(run_id, 4),
                    60,
                    interval=0.05,
                    what="a batch",
                )
                if run_finished(run_id, 4):
                    break
                with killer.connect() as conn:
                    killed += len(
                        conn.execute(
                            text(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = :db AND application_name = :tag"
                            ),
                            {"db": name, "tag": tag},
                        ).all()
                    )
            assert killed > 0
            by = stack.wait(run_id)
        assert stack.retries(), "the terminated connections must have failed some task"
        assert_exact_clean_outcome(by)
    finally:
        killer.dispose()
        restore_env(old)
        drop_pg_database(db)


def test_full_sync_survives_the_database_server_stopping_mid_run(
    redis_url: str,
    private_pg: PrivatePostgres,  # noqa: F811 (the fixture imported above)
    slow_pim: tuple[str, Any],
    tmp_path: Path,
):
    db = private_pg.create_database("pimsync")
    stack = _stack(db, redis_url, slow_pim[0], tmp_path / "stopped.log")
    old = apply_env(stack.env)
    try:
        with stack.worker():
            run_id = stack.full()
            wait_until(lambda: _done_batches() >= 2, 60, interval=0.05, what="some batches")
            assert not run_finished(run_id, 4)
            private_pg.stop("fast")  # every session terminated, no new connection accepted
            time.sleep(4)  # the worker's tasks fail meanwhile and are retried with backoff
            private_pg.start()
            by = stack.wait(run_id)
        assert stack.retries(), "the stopped server must have failed some task"
        assert_exact_clean_outcome(by)
    finally:
        restore_env(old)


def test_domain_events_survive_the_database_server_stopping(
    redis_url: str,
    private_pg: PrivatePostgres,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
):
    """Pricing events arriving while the database server is down are retried by the worker
    and, once it is back, applied exactly: the newest version of each SKU on every channel."""
    import redis

    from tasks import celery_app

    db = private_pg.create_database("pimsync")
    env = stack_env(db, redis_url, "sample")
    old = apply_env(env)
    broker = redis.Redis.from_url(redis_url)
    flush_redis_db(broker)
    log = tmp_path / "events.log"

    def send(*events: dict[str, Any]) -> None:
        celery_app.send_task(
            "events.pricing.apply", args=[list(events), "erp"], queue="events.pricing"
        )

    try:
        with Worker(env, log, queues="events.pricing", concurrency=1, name="events"):
            send(price("WARM", 1))
            wait_until(lambda: pricing() == {"WARM": (1, "1.00")}, 60, what="a first event")
            private_pg.stop("fast")
            for i in range(20):
                send(price(f"SKU-{i}", 1), price(f"SKU-{i}", 2))
            send(price("SKU-0", 1))  # late and stale: must not win
            time.sleep(3)  # the consumer fails meanwhile, puts what it took back, retries
            private_pg.start()
            expected = {"WARM": (1, "1.00"), **{f"SKU-{i}": (2, "2.00") for i in range(20)}}
            wait_until(lambda: pricing() == expected, 120, what="every event applied")
            wait_until(
                lambda: broker.llen("events.pricing") == 0 and broker.hlen("unacked") == 0,
                30,
                what="the queue drained and acknowledged",
            )
        retried = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if "Retry in" in line and "OperationalError" in line
        ]
        assert retried, "the stopped server must have failed the consumer"
        with session_scope() as s:
            pages = s.execute(select(ProductPage.channel, ProductPage.sku)).all()
        assert Counter(channel for channel, _ in pages) == {c: 21 for c in CHANNELS}
    finally:
        restore_env(old)
        flush_redis_db(broker)


def price(sku: str, version: int) -> dict[str, Any]:
    return DomainEvent.model_validate(
        {
            "type": "pricing",
            "sku": sku,
            "source_version": version,
            "occurred_at": datetime.now(UTC).isoformat(),
            "payload": {"amount": f"{version}.00"},
        }
    ).model_dump(mode="json")


def pricing() -> dict[str, tuple[int, str]]:
    """Each SKU's pricing on de_storefront, if every channel holds the same."""
    with session_scope() as s:
        rows = s.execute(
            select(
                ProductPage.channel,
                ProductPage.sku,
                ProductPage.pricing_version,
                ProductPage.pricing,
            )
        ).all()
    per_sku: dict[str, set[tuple[int, str]]] = {}
    for _channel, sku, version, payload in rows:
        per_sku.setdefault(sku, set()).add((int(version), (payload or {}).get("amount")))
    return {sku: next(iter(v)) for sku, v in per_sku.items() if len(v) == 1}
