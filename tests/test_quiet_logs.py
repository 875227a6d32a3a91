"""Quiet logs: the PIM's HTTP requests at DEBUG only; a worker's temporary metrics folder
goes with it."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from app.logging import NOISY_LOGGERS, configure_logging
from tests.e2e_support import Worker, free_port, stack_env, wait_until


def test_http_requests_log_at_debug_only() -> None:
    try:
        configure_logging("INFO", force=True, stdlib=False)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        configure_logging("DEBUG", force=True, stdlib=False)
        assert all(logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in NOISY_LOGGERS)
    finally:
        configure_logging("INFO", force=True, stdlib=False)


@pytest.mark.worker
def test_a_workers_temporary_metrics_folder_is_removed_when_it_exits(
    pg_db: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    worker = Worker(
        stack_env(pg_db, redis_url, "sample"),
        tmp_path / "worker.log",
        queues="sync",
        name="metrics",
        metrics_port=free_port(),
    ).start()
    assert worker.proc is not None
    folder = Path(tempfile.gettempdir()) / f"pimsync-metrics-{worker.proc.pid}"
    try:
        wait_until(folder.is_dir, 30, what=f"{folder}")
    finally:
        worker.stop()
    assert worker.proc.returncode is not None
    assert not folder.exists(), sorted(os.listdir(folder))
