"""One stack per fault module: a reference PIM serving a small generated catalog, the module's
own database (and a second one for the clean reference sync of the invariant), a broker, and
workers started and killed by the scenarios."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import redis

from app.db import session_scope
from app.sync import ingest, sweep
from app.sync import repository as repo
from app.sync.models import SyncRun
from tests.conftest import create_pg_database, drop_pg_database, flush_redis_db, truncate_all
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
from tests.faults import invariant

CATALOG = "generated:60"
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]
NO_FAULTS = {"latency_ms": 0, "rate_429": 0, "rate_500": 0, "malformed_pages": 0, "fail_next": []}
# Leases and staleness as short as the settings allow: a dead worker's run is found in seconds.
FAST_SWEEP = {"PIMSYNC_LOCK_TTL_SECONDS": "10", "PIMSYNC_SWEEP_STALE_SECONDS": "10"}


class FaultStack:
    def __init__(
        self, env: dict[str, str], base: str, catalog: Any, pristine: Any, tmp: Path, ref_db: str
    ) -> None:
        self.env, self.base, self.catalog, self.pristine = env, base, catalog, pristine
        self.logs = tmp / "logs"
        self.ref_db = ref_db
        self.admin = admin(base)

    def reset(self, redis_url: str | None = None) -> None:
        """Empty database (and queues, given the broker: no worker may be running then, its
        queue bindings go with them), pristine PIM, no faults."""
        truncate_all(self.env["PIMSYNC_DATABASE_URL"])
        if redis_url is not None:
            flush_redis_db(redis.Redis.from_url(redis_url))
        self.catalog.replace_with(self.pristine)
        self.faults()

    def serve(self, bad: Any) -> None:
        """Serve the stack's catalog spoiled as ``bad`` (a ``BadData``) says, as the reference
        PIM started with ``--identifier-attribute``, ``--without-identifier N`` and
        ``--without-family N`` does, until the next ``reset``."""
        from app.dev.reference_server import ReferenceCatalog

        self.catalog.replace_with(ReferenceCatalog.load(CATALOG, bad))

    def ctx(self) -> Any:
        from tasks.dispatch import process_context

        return process_context()

    def worker(self, name: str, **env: str) -> Worker:
        return Worker({**self.env, **env}, self.logs / f"{name}.log", name=name)

    def faults(self, **faults: Any) -> None:
        self.admin.post("/_admin/faults", json={**NO_FAULTS, **faults}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.admin.get("/_admin/stats").json())

    def full(self) -> Any:
        with session_scope() as s:
            run = ingest.start_full(s, self.ctx(), None, trigger="test")
            assert run is not None
            return run.id

    def delta(self) -> Any:
        with session_scope() as s:
            return ingest.start_delta(s, self.ctx(), trigger="test").id

    def runs(self, run_id: Any) -> dict[Any, SyncRun]:
        with session_scope() as s:
            run = repo.get_run(s, run_id)
            return {None: run, **{c.channel: c for c in repo.child_runs(s, run_id)}}

    def wait(self, run_id: Any, children: int = 4, timeout: float = 90) -> dict[Any, SyncRun]:
        try:
            wait_until(lambda: run_finished(run_id, children), timeout, what=f"run {run_id}")
        except AssertionError as exc:
            states = {
                c: (r.status, r.processed, r.planned_units, r.error)
                for c, r in self.runs(run_id).items()
            }
            logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs.glob("*"))
            raise AssertionError(f"{exc}; runs: {states}\nworker logs:\n{logs}") from None
        return self.runs(run_id)

    def sweep_until(self, done: Any, timeout: float = 40, **env: str) -> dict[str, int]:
        """Call the sweeper (this process's context, ``env`` on top of the stack's settings)
        every half second until ``done(totals)``; the sweeps' counts added up."""
        totals: dict[str, int] = {}
        saved = apply_env({**self.env, **env})
        try:

            def swept() -> bool:
                for key, value in sweep.sweep(self.ctx()).items():
                    totals[key] = totals.get(key, 0) + value
                return bool(done(totals))

            wait_until(swept, timeout, interval=0.5, what="the sweeper")
        finally:
            restore_env(saved)
        return totals

    def pim_skus(self) -> list[str]:
        return sorted(self.catalog._uuid_by_identifier)

    def product(self, sku: str) -> dict[str, Any]:
        uid = self.catalog._uuid_by_identifier[sku]
        return dict(orjson.loads(self.catalog._blobs[uid]))

    def patch(self, sku: str, **changes: Any) -> None:
        self.admin.patch(f"/_admin/products/{sku}", json=changes).raise_for_status()

    def check(self) -> invariant.Outcome:
        """The invariant, against a clean full sync of what the PIM serves now (no faults)."""
        self.faults()
        table, letters = invariant.clean_sync(self.base, self.ref_db)
        return invariant.check(self.catalog, table, letters)


@contextmanager
def open_stack(name: str, redis_url: str, tmp: Path, **extra: str) -> Iterator[FaultStack]:
    from app.dev.reference_server import ReferenceCatalog

    db = create_pg_database(f"pimsync_{name}")
    ref_db = create_pg_database(f"pimsync_{name}_clean")
    pristine = ReferenceCatalog.load(CATALOG)
    with reference_pim(CATALOG) as (base, catalog):
        env = stack_env(
            db,
            redis_url,
            base,
            PIMSYNC_AKENEO_BACKOFF_BASE_SECONDS="0.05",
            PIMSYNC_AKENEO_BACKOFF_MAX_SECONDS="0.5",
            PIMSYNC_RETRY_BACKOFF_BASE_SECONDS="0.2",
            PIMSYNC_AKENEO_PAGE_SIZE="10",
            **extra,
        )
        old = apply_env(env)
        try:
            yield FaultStack(env, base, catalog, pristine, tmp, ref_db)
        finally:
            restore_env(old)
            drop_pg_database(db)
            drop_pg_database(ref_db)
