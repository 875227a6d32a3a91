"""The stack a benchmark runs on: a scratch database, a Redis database of its own, the
reference PIM and Celery workers in processes of their own, and this process pointed at them."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from kombu import pools
from sqlalchemy import create_engine, text

from app.channels.config import load_channels
from app.config import SAMPLE_DIR, reset_settings_cache
from app.db import dispose_engines
from app.migrations import upgrade
from bench.harness.catalog import ensure_catalog
from bench.harness.report import say

PG_ADMIN_URL = os.environ.get(
    "PIMSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
REDIS_BASE_URL = os.environ.get("PIMSYNC_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# The key the test suite claims Redis databases with: a test run never takes ours.
REDIS_CLAIM_KEY = "pimsync:test-run-claim"
CREDENTIALS = {
    "PIMSYNC_AKENEO_CLIENT_ID": "pimsync",
    "PIMSYNC_AKENEO_SECRET": "pimsync-secret",
    "PIMSYNC_AKENEO_USERNAME": "pimsync",
    "PIMSYNC_AKENEO_PASSWORD": "pimsync",
}

# What a sync to the storefront consumes: the sync itself, publishing and the catalog events
# that project channel_product rows onto product pages.
STOREFRONT_QUEUES = "sync,publish,events.catalog"
COUNTERS = ("synced", "unchanged", "skipped_incomplete", "filtered", "disabled", "failed")
MEMORY_INTERVAL = 0.2
CPU_INTERVAL = 1.0
PROGRESS_INTERVAL = 5.0
# A phase whose counters do not move for this long is declared stuck.
STALL_SECONDS = 600.0
MIB = 2**20
TASK_DONE = re.compile(r"Task (\S+)\[[^\]]+\] succeeded in ([\d.]+)s")
# Process groups that are not part of the system under test (their top processes are named).
NOISE_GROUPS = ("other", "postgres_other_databases")


@contextmanager
def redis_database(preferred: int = 12) -> Iterator[str]:
    """A Redis database of our own (claimed with SET NX like the tests do), flushed after."""

    token = uuid.uuid4().hex
    for db in dict.fromkeys([preferred, *range(2, 16)]):
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
        if not client.set(REDIS_CLAIM_KEY, token, nx=True, ex=24 * 3600):
            continue
        if client.dbsize() > 1:  # someone else's data: leave it alone
            client.delete(REDIS_CLAIM_KEY)
            continue
        try:
            yield f"{REDIS_BASE_URL}/{db}"
        finally:
            client.flushdb()
            client.close()
        return
    raise RuntimeError(f"no free Redis database (2..15) at {REDIS_BASE_URL}")


def flush_redis(url: str) -> None:
    """Empty the database but keep our claim on it."""

    client = redis.Redis.from_url(url)
    token = client.get(REDIS_CLAIM_KEY)
    client.flushdb()
    client.set(REDIS_CLAIM_KEY, token or uuid.uuid4().hex, ex=24 * 3600)
    client.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A subprocess in its own session (process group), logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.log = name, args, log
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the whole process group, SIGKILL if it does not go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # pool children or a server thread may outlive the leader: kill what is left
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None


class ReferencePim(Service):
    def __init__(self, data: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "app", "reference-pim", "--data", str(data)]
        super().__init__("reference PIM", [*args, "--port", str(self.port)], env, log)
        self.admin = httpx.Client(base_url=self.base, timeout=60)

    def start(self, timeout: float) -> ReferencePim:
        self.spawn()
        return self.ready(timeout)

    def ready(self, timeout: float) -> ReferencePim:
        """Wait until the spawned PIM answers (it loads its catalog first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with suppress(httpx.HTTPError):
                if self.admin.get("/_admin/stats", timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        raise RuntimeError(f"reference PIM not ready after {timeout:.0f}s:\n{self.tail()}")

    def stats(self) -> dict[str, Any]:
        return dict(self.admin.get("/_admin/stats").json())

    def reset_stats(self) -> None:
        self.admin.post("/_admin/stats/reset").raise_for_status()

    def stop(self, timeout: float = 30) -> None:
        self.admin.close()
        super().stop(timeout)


class Worker(Service):
    """``celery -A tasks worker`` (prefork by default) on ``queues``; ready when it answers a
    ping over the broker (this process must point at the same broker: ``point_this_process_at``)."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        concurrency: int,
        queues: str = "sync,publish",
        loglevel: str = "INFO",
        extra: tuple[str, ...] = (),
        pool: str = "prefork",
        nice: int = 0,
    ) -> None:
        args = [
            *(("nice", "-n", str(nice)) if nice else ()),
            *(sys.executable, "-m", "celery", "-A", "tasks", "worker"),
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            *extra,
            f"--pool={pool}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname=bench-{uuid.uuid4().hex[:6]}@%h",
            f"--loglevel={loglevel}",
        ]
        super().__init__("worker", args, env, log)

    def start(self, timeout: float = 90) -> Worker:
        # tasks reads the settings when imported: only once this process points at the stack
        from tasks import celery_app

        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with suppress(redis.RedisError, OSError):
                if celery_app.control.ping(timeout=1.0):
                    return self
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready after {timeout:.0f}s:\n{self.tail()}")


def point_this_process_at(env: dict[str, str]) -> None:
    """Settings, engines, broker connections and the sync context of this process follow env."""
    # tasks reads the settings when imported: only once this process points at the stack
    from tasks import celery_app
    from tasks.dispatch import reset_process_context

    os.environ.update(env)
    reset_settings_cache()
    dispose_engines()
    celery_app.conf.broker_url = env["PIMSYNC_BROKER_URL"]
    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    reset_process_context()


# --- sampling -----------------------------------------------------------------------------


@dataclass
class Stack:
    """One catalog size: a reference PIM, a database, a worker, this process pointed at them."""

    skus: int
    url: str
    database: str
    pim: ReferencePim
    worker: Worker
    channels: list[str]
    logs: Path
    catalog: Path
    analyze_every: float = 0.0
    log_offset: int = 0
    env: dict[str, str] = field(default_factory=dict)
    concurrency: int = 0

    def context(self) -> Any:
        # tasks reads the settings when imported: only once this process points at the stack
        from tasks.dispatch import process_context

        return process_context()


@contextmanager
def stack_for(
    skus: int,
    seed: int,
    redis_url: str,
    logs: Path,
    args: argparse.Namespace,
    concurrency: int | None = None,
) -> Iterator[Stack]:
    """A reference PIM serving the catalog of ``skus``, a fresh database and a worker of
    ``concurrency`` pool processes (``args.concurrency`` by default) on the storefront's
    queues; this process pointed at them. Stopped and dropped on leaving."""

    catalog = ensure_catalog(skus, seed)
    flush_redis(redis_url)
    # services are stopped (ExitStack) before the database is dropped, on errors too
    with scratch_database() as url, ExitStack() as stack:
        stack.callback(flush_redis, redis_url)
        database = url.rsplit("/", 1)[1]
        # generous: loading parses and re-serialises every product (~1.5 min per 100k)
        pim = ReferencePim(catalog, CREDENTIALS, logs / f"reference-pim-{skus}.log")
        stack.callback(pim.stop)
        say(f"reference PIM: loading {skus} products on port {pim.port}")
        started = time.perf_counter()
        pim.spawn()  # it loads while the worker starts
        env = stack_env(url, redis_url, pim.base)
        point_this_process_at(env)
        # the catalog events queue too: a cold sync is over when the storefront's pages are
        # written, not when channel_product is (the page projection is in the timed path)
        processes = concurrency or args.concurrency
        worker = Worker(
            env, logs / f"worker-{skus}-c{processes}.log", processes, queues=STOREFRONT_QUEUES
        )
        stack.callback(worker.stop)
        worker.start()
        say(f"worker: ready (pid {worker.pid}, concurrency {processes})")
        # it is watched for dying meanwhile: the limit is for a hung load, and generous (200,000
        # products took over 18 minutes on the two loaded cores)
        pim.ready(timeout=300 + skus / 40)
        say(f"reference PIM: ready after {time.perf_counter() - started:.0f}s")
        channels = sorted(load_channels(SAMPLE_DIR / "channels.yaml"))
        yield Stack(
            skus,
            url,
            database,
            pim,
            worker,
            channels,
            logs,
            catalog,
            args.analyze_every,
            env=env,
            concurrency=processes,
        )


def stack_env(url: str, redis_url: str, pim_base: str, **extra: str) -> dict[str, str]:
    """The settings every process of a bench stack runs with (``extra`` added)."""
    return {
        "PIMSYNC_DATABASE_URL": url,
        "PIMSYNC_BROKER_URL": redis_url,
        "PIMSYNC_REDIS_URL": redis_url,
        "PIMSYNC_PIM_SOURCE": pim_base,
        "PIMSYNC_CHANNELS_FILE": str(SAMPLE_DIR / "channels.yaml"),
        "PIMSYNC_CONTRACTS_DIR": str(SAMPLE_DIR / "contracts"),
        "PIMSYNC_LOG_JSON": "true",
        **CREDENTIALS,
        **extra,
    }


@contextmanager
def scratch_database(prefix: str = "pimsync_bench") -> Iterator[str]:
    """A fresh, migrated database, dropped afterwards."""

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def checkpoint(url: str) -> None:
    """VACUUM ANALYZE + CHECKPOINT between phases, as the limits measurements did."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
        conn.execute(text("CHECKPOINT"))
    engine.dispose()
