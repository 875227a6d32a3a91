"""`pimsync status` on real parts: PostgreSQL, Redis, the reference PIM and a Celery worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from celeryconfig import ALL_QUEUES
from tests.conftest import flush_redis_db
from tests.e2e_support import Worker, apply_env, reference_pim, restore_env, stack_env

pytestmark = [pytest.mark.worker]


@pytest.fixture
def stack(pg_db: str, redis_url: str) -> Iterator[Any]:
    """This process pointed at the test's database, Redis database and a reference PIM."""
    import redis

    flush_redis_db(redis.Redis.from_url(redis_url))
    with reference_pim("generated:40") as (base, _catalog):
        env = stack_env(pg_db, redis_url, base)
        old = apply_env(env)
        try:
            yield env, base
        finally:
            restore_env(old)


def status(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["status", "--json", *args])
    assert "Traceback" not in result.output, result.output
    body = json.loads(result.stdout)
    return result.exit_code, body


def scrape() -> dict[tuple[str, str], float]:
    """The queue metrics of `/metrics`, as the web app exports them (consumers asked afresh)."""
    from prometheus_client.parser import text_string_to_metric_families

    from app.config import get_settings
    from app.web import metrics

    metrics._consumers_cache = None
    out = {}
    for family in text_string_to_metric_families(metrics.exposition(get_settings()).decode()):
        for sample in family.samples:
            if sample.name.startswith("pimsync_queue"):
                out[(sample.name, sample.labels["queue"])] = sample.value
    return out


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["checks"]}


def test_with_a_worker_running_every_part_answers(stack: Any, tmp_path: Path) -> None:
    env, base = stack
    with Worker(env, tmp_path / "worker.log", queues=",".join(ALL_QUEUES), name="st"):
        code, body = status()
        checks = by_name(body)
        assert code == 0 and body["ok"], body
        for name in ("database", "broker", "shared limits", "PIM", "workers"):
            assert checks[name]["state"] == "ok", checks[name]
        assert checks["PIM"]["data"]["source"] == base
        assert checks["PIM"]["data"]["latency_ms"] > 0
        (worker, queues), *others = checks["workers"]["data"]["workers"].items()
        assert not others and worker.startswith("st@") and sorted(queues) == sorted(ALL_QUEUES)
        for queue in ALL_QUEUES:
            assert checks[f"queue {queue}"]["state"] == "ok"
            assert checks[f"queue {queue}"]["data"]["consumers"] == [worker]
        metrics = scrape()
        for queue in ALL_QUEUES:
            assert metrics[("pimsync_queue_consumers", queue)] == 1
            assert metrics[("pimsync_queue_without_consumer", queue)] == 0
        # nothing synced yet: said, but not a failure
        assert checks["cursor lag"]["state"] == "warn"
        # a full sync through the worker: the last full run, the cursor and the pages
        result = CliRunner().invoke(app, ["sync", "full", "--wait", "--timeout", "300"])
        assert result.exit_code == 0, result.output
        assert "no worker consumes" not in result.output
        code, body = status()
        checks = by_name(body)
    assert code == 0, body
    assert checks["last full"]["state"] == "ok"
    assert checks["last full"]["data"]["status"] == "completed"
    assert checks["cursor lag"]["state"] == "ok"
    assert checks["dead letters"]["data"]["open"] == {}
    assert checks["runs"]["reason"] == "none in progress"


def test_with_the_pim_down_and_no_worker_it_fails_saying_which(pg_db: str, redis_url: str) -> None:
    import redis

    flush_redis_db(redis.Redis.from_url(redis_url))
    with reference_pim("generated:10") as (base, _catalog):
        pass  # started and stopped: nothing listens there any more
    old = apply_env(stack_env(pg_db, redis_url, base))
    try:
        from tasks.dispatch import process_context

        # a catalog event waits on its queue, and no worker consumes it
        process_context().dispatcher.catalog_changed({"de_storefront": ["SKU-1"]})
        code, body = status()
        plain = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "80"})
        metrics = scrape()
    finally:
        restore_env(old)
    # the same in the metrics, for the alert on a queue nobody consumes
    assert metrics[("pimsync_queue_without_consumer", "events.catalog")] == 1
    assert metrics[("pimsync_queue_without_consumer", "publish")] == 0
    assert metrics[("pimsync_queue_consumers", "events.catalog")] == 0
    assert metrics[("pimsync_queue_depth", "events.catalog")] == 1
    assert metrics[("pimsync_queue_oldest_message_age_seconds", "events.catalog")] >= 0
    checks = by_name(body)
    assert code == 1 and body["ok"] is False
    assert checks["PIM"]["state"] == "fail" and base.split("//")[1] in checks["PIM"]["reason"]
    assert checks["workers"]["state"] == "fail" and "pimsync worker" in checks["workers"]["reason"]
    queue = checks["queue events.catalog"]
    assert queue["state"] == "fail" and queue["data"]["waiting"] == 1
    assert queue["data"]["consumers"] == [] and queue["data"]["oldest_age_seconds"] is not None
    assert checks["queue publish"]["state"] == "warn"  # empty, but nobody would take work
    assert checks["database"]["state"] == "ok" and checks["broker"]["state"] == "ok"
    # the same as a screen (`doctor` is `status`): every line fits 80 columns, exit 1
    assert plain.exit_code == 1
    lines = plain.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert "something is wrong" in plain.stdout and "events.catalog" in plain.stdout


def test_a_database_that_cannot_answer_is_one_failed_check(redis_url: str) -> None:
    old = apply_env(
        stack_env("postgresql+psycopg://postgres@127.0.0.1:1/nothing", redis_url, "sample")
    )
    try:
        code, body = status()
    finally:
        restore_env(old)
    checks = by_name(body)
    assert code == 1
    assert checks["database"]["state"] == "fail"
    assert "PIMSYNC_DATABASE_URL" in checks["database"]["reason"]
    assert checks["PIM"]["state"] == "ok"  # the sample catalog needs nothing
    assert "runs" not in checks  # no state read from a database that is not there
