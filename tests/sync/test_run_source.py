"""A run reads the PIM source it records: never silently another one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.db import session_scope
from app.dev.generator import write_generated_catalog
from app.pim.sources import describe_source
from app.sync import ingest
from app.sync import repository as repo
from tests.conftest import flush_redis_db


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("https://user:pw@pim.example.com/?token=x#f", ("akeneo", "https://pim.example.com")),
        ("http://127.0.0.1:8081/", ("akeneo", "http://127.0.0.1:8081")),
        ("https://pim.example.com/base/", ("akeneo", "https://pim.example.com/base")),
        ("sample", ("sample", "sample")),
        ("generated:500", ("generated", "generated:500")),
        ("/data/export", ("files", "/data/export")),
    ],
)
def test_a_source_is_recorded_without_its_secrets(spec: str, expected: tuple[str, str]) -> None:
    assert describe_source(spec) == expected


def test_the_reader_reads_the_source_the_run_recorded(harness, tmp_path: Path) -> None:
    """The process's own source (60 products in memory) is not what a run naming a catalog
    on disk (25 products) reads."""
    folder = write_generated_catalog(tmp_path / "catalog", 25, seed=3)
    with session_scope() as s:
        run = ingest.start_full(s, harness.ctx, ["de_storefront"], source=str(folder))
        assert run is not None
        run_id = run.id
    harness.drain()
    runs = harness.runs(run_id)
    assert runs[None].status == "completed", runs[None].error
    assert (runs[None].source_kind, runs[None].source) == ("files", str(folder))
    assert runs[None].read == 25
    assert runs["de_storefront"].planned_units == 25
    skus = {sku for (_c, sku) in harness.rows("de_storefront")}
    assert len(skus) == 25 and len(harness.source.products) == 60  # not the process's own
    # and without --source, the run records (and reads) the process's own setting
    run_id = harness.full(["de_storefront"])
    runs = harness.runs(run_id)
    assert (runs[None].source_kind, runs[None].source) == ("sample", "sample")
    assert runs[None].read == len(harness.source.products) == 60


def test_an_akeneo_other_than_the_workers_own_fails_the_run_saying_why(harness) -> None:
    from app.pim.source import SourceError
    from app.sync.runs import fail_ingest

    with session_scope() as s:
        run = ingest.start_full(s, harness.ctx, None, source="http://pim.elsewhere:8081")
        assert run is not None
        run_id = run.id
    with pytest.raises(SourceError) as refused:
        harness.drain()
    # what the sync.ingest task does with a permanent source error
    fail_ingest(harness.ctx, run_id, str(refused.value))
    runs = harness.runs(run_id)
    assert runs[None].status == "failed" and runs[None].read == 0
    assert "http://pim.elsewhere:8081" in runs[None].error
    assert "PIMSYNC_PIM_SOURCE is sample" in runs[None].error
    assert all(r.status == "failed" for c, r in runs.items() if c)
    with session_scope() as s:
        assert repo.running_runs(s) == []
    shown = CliRunner().invoke(app, ["runs", "show", str(run_id)[:8]])
    assert shown.exit_code == 0, shown.output
    assert "source: akeneo http://pim.elsewhere:8081" in shown.stdout
    assert "failed" in shown.stdout


@pytest.mark.worker
def test_a_source_given_to_the_command_alone_is_refused_by_the_worker_not_ignored(
    pg_db: str, redis_url: str, tmp_path: Path
) -> None:
    """The issue's case: `PIMSYNC_PIM_SOURCE=http://... pimsync sync full --wait` while the
    workers read another source. The run fails saying so; before, it synced the worker's."""
    import redis

    from celeryconfig import ALL_QUEUES
    from tests.e2e_support import Worker, apply_env, reference_pim, restore_env, stack_env

    flush_redis_db(redis.Redis.from_url(redis_url))
    with reference_pim("generated:20") as (base, _catalog):
        worker_env = stack_env(pg_db, redis_url, "sample")
        with Worker(worker_env, tmp_path / "w.log", queues=",".join(ALL_QUEUES), name="src"):
            old = apply_env(stack_env(pg_db, redis_url, base))
            try:
                result = CliRunner().invoke(app, ["sync", "full", "--wait", "--timeout", "120"])
            finally:
                restore_env(old)
    assert result.exit_code == 1, result.output
    assert f"reading akeneo {base}" in result.stdout
    said = " ".join(result.stderr.split())
    assert f"this run reads the PIM at {base}" in said
    assert "this worker's PIMSYNC_PIM_SOURCE is sample" in said
    with session_scope() as s:
        assert repo.running_runs(s) == []
        runs = repo.recent_runs(s, 10)
    assert {r.status for r in runs} == {"failed"} and all(r.read == 0 for r in runs)
