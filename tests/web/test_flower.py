"""Flower on the project's broker: a real worker and a real Flower, read through its HTTP API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.db import session_scope
from app.sync import ingest
from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e_support import (
    ROOT,
    Worker,
    apply_env,
    free_port,
    reference_pim,
    restore_env,
    run_finished,
    stack_env,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker]
AUTH = ("admin", "flower-test-pw")


def test_flower_lists_the_worker_and_a_syncs_tasks(redis_url: str, pg_url: str, tmp_path: Path):
    db = create_pg_database("pimsync_flower")
    port = free_port()
    with reference_pim("generated:40:7") as (base, _):
        env = stack_env(
            db, redis_url, base, PIMSYNC_FLOWER_USER=AUTH[0], PIMSYNC_FLOWER_PASSWORD=AUTH[1]
        )
        old = apply_env(env)
        flower = subprocess.Popen(
            [sys.executable, "-m", "app", "flower", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=(tmp_path / "flower.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=AUTH, timeout=10)
            wait_until(lambda: _answers(api), 60, what="Flower up")
            assert httpx.get(f"http://127.0.0.1:{port}/api/workers").status_code == 401
            with Worker(env, tmp_path / "worker.log", name="flowertest", heartbeat=True):
                workers = wait_until(
                    lambda: [
                        w
                        for w in api.get("/api/workers", params={"refresh": True}).json()
                        if w.startswith("flowertest@")
                    ],
                    60,
                    what="worker listed",
                )
                assert workers
                from tasks.dispatch import process_context

                with session_scope() as s:
                    run_id = ingest.start_full(s, process_context(), None).id
                wait_until(lambda: run_finished(run_id, 4), 120, what="full sync")

                def publish_tasks() -> list[dict]:
                    tasks = api.get("/api/tasks").json()
                    return [
                        t
                        for t in tasks.values()
                        if t.get("name") == "publish.units" and t.get("state") == "SUCCESS"
                    ]

                done = wait_until(publish_tasks, 60, what="publish tasks in Flower")
                names = {t.get("name") for t in api.get("/api/tasks").json().values()}
                assert {"sync.ingest", "publish.units"} <= names
                kwargs = done[0]["kwargs"]
                # readable: which channels and how many units, not the payload
                assert "channels" in kwargs and "units" in kwargs and len(kwargs) < 500
                assert all(t["state"] == "SUCCESS" for t in done)
        finally:
            os.killpg(flower.pid, signal.SIGTERM)
            try:
                flower.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(flower.pid, signal.SIGKILL)
            restore_env(old)
            drop_pg_database(db)


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/api/workers").status_code == 200
    except httpx.HTTPError:
        time.sleep(0.2)
        return False
