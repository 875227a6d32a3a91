"""Reporting: the machine, the code and settings a figure was measured with, and the JSON
report every benchmark prints and saves."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from app.config import get_settings
from app.logging import configure_logging

# the checkout the figures were measured at
ROOT = Path(__file__).resolve().parents[2]


def code_version() -> dict[str, Any]:
    """The commit and the uncommitted changes of the code under test (it may change between
    runs: the figures belong to this state)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "app", "tasks", "celeryconfig.py").splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s")[:120],
        "uncommitted": [line[3:] for line in dirty],
    }


def settings_in_force() -> dict[str, Any]:

    s = get_settings()
    return {
        "publish_batch_size": s.publish_batch_size,
        "channel_inflight_batches": s.channel_inflight_batches,
        "akeneo_page_size": s.akeneo_page_size,
        "akeneo_max_concurrency": s.akeneo_max_concurrency,
        "ingest_slice_seconds": s.ingest_slice_seconds,
        "db_pool_size": s.db_pool_size,
    }


class Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start


def machine() -> dict[str, Any]:

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_bench(
    run: Callable[[Any, Path], dict[str, Any]],
    args: Any,
    prefix: str,
    table: Callable[[dict[str, Any]], None],
) -> None:
    """Run a bench scenario: a signal ends it cleanly (services stopped, databases dropped),
    the engine logs to stderr at WARNING, and the services' logs go to a folder that is kept
    when the run fails or with ``--keep-logs``. Then the short ``table`` on stderr and the
    JSON report on stdout."""

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, interrupted)

    configure_logging("WARNING", json=False)
    logs = Path(tempfile.mkdtemp(prefix=prefix))
    keep = args.keep_logs
    try:
        report = run(args, logs)
    except BaseException:
        keep = True
        say(f"failed; logs kept in {logs}")
        raise
    finally:
        if not keep:
            shutil.rmtree(logs, ignore_errors=True)
    if args.keep_logs:
        report["logs"] = str(logs)
    table(report)
    print(json.dumps(report, indent=2, default=str))
