"""Shared bench plumbing: a throw-away PostgreSQL database, timers, machine facts."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get(
    "PIMSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def scratch_database(prefix: str = "pimsync_bench") -> Iterator[str]:
    """A fresh, migrated database, dropped afterwards."""
    from app.migrations import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        from app.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


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
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def checkpoint(url: str) -> None:
    """VACUUM ANALYZE + CHECKPOINT between phases, as the limits measurements did."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
        conn.execute(text("CHECKPOINT"))
    engine.dispose()


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
    from app.logging import configure_logging

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


def sample_runtimes(definitions_file: Path | None = None) -> list[Any]:
    """The bundled channels' runtimes (``ChannelRuntime``) over a generated catalog's
    definitions: ``definitions_file`` (its ``catalog.json``), else the generator's own."""
    import orjson

    from app.channels.config import load_channels
    from app.config import SAMPLE_DIR
    from app.dev import generator
    from app.mapping.contract import ContractStore
    from app.ownership import OwnershipTable
    from app.pim.catalog import definitions_from_dict
    from app.sync.units import ChannelRuntime

    if definitions_file is not None and definitions_file.exists():
        defs = definitions_from_dict(orjson.loads(definitions_file.read_bytes()))
    else:
        defs = generator.generated_definitions()
    channels = load_channels(SAMPLE_DIR / "channels.yaml")
    store = ContractStore.load(SAMPLE_DIR / "contracts")
    return [
        ChannelRuntime(
            ch, store.get(ch.contract.id, ch.contract.version), defs, OwnershipTable(), "bench"
        )
        for ch in channels.values()
        if ch.contract
    ]
