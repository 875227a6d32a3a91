"""End-to-end full and delta sync of a generated catalog on real parts, against a bare COPY.

    python -m bench.full_sync [--skus 50000] [--seed 7] [--delta 400] [--memory-compare 200000]
                              [--copy-repeats 3] [--keep-logs]

What runs (everything on this machine):

- the reference PIM (``python -m app reference-pim``) in its own process, serving a generated
  catalog (``app.dev.generator``, ~200 attributes per product) over Akeneo's REST API; the
  catalog is data, generated once into ``bench/.cache/catalog-N-SEED-vV/`` and reused;
- the Akeneo REST client (``PIMSYNC_PIM_SOURCE=http://127.0.0.1:PORT``) in the workers;
- Redis as broker and for the shared PIM-call limit: a free database (12 preferred), claimed
  like the tests claim theirs and flushed before and after;
- one ``celery -A tasks worker --pool=prefork --concurrency=2 --queues=sync,publish``;
- a scratch PostgreSQL database (``bench.common.scratch_database``), dropped at the end;
- the bundled channels (de_storefront, at_storefront, uk_marketplace, b2b_portal):
  units = SKUs x 4.

Phases, each timed from ``start_full``/``start_delta`` to the last channel run finished (the
runs' own ``finished_at``), with VACUUM ANALYZE + CHECKPOINT before each:

1. ``cold``: full sync into an empty database;
2. ``warm``: full sync again, nothing changed in the PIM (must write no ``channel_product`` row);
3. ``delta``: ``--delta`` products renamed through the reference PIM's admin PATCH (untimed),
   then a delta sync.

After the cold phase the ``channel_product`` rows it wrote are exported (COPY TO) and loaded
``--copy-repeats`` times with one bare ``COPY FROM`` into an empty table with the same indexes
and TOAST compression (likewise ``pim_product``): the cold/bare-COPY ratio is the figure that
holds on a noisy machine. ``--memory-compare M`` adds a cold full sync of M SKUs (own PIM,
database and worker) to compare the workers' peak memory, which must not grow with the
catalog.

Measured per phase: wall seconds, units/s, the runs' counters per channel, rows written
(``channel_product`` inserts and version bumps, rows tagged with the phase's runs;
``pim_product`` rows whose change position moved; WAL bytes and checkpoints), peak RSS/PSS of
the worker processes (sampled every 0.2 s), CPU seconds per process group (reference PIM,
worker parent and children, PostgreSQL backends of the scratch database, other PostgreSQL
processes, Redis, this process, everything else: the top "noise" processes are named), what
the scratch database's backends were doing (``pg_stat_activity`` sampled every 0.2 s: share of
active samples per statement and wait event), Celery task durations from the worker log, the
reference PIM's request statistics and what went wrong (log errors and warnings, retries,
deadlocks, dead letters, retried batches). The report also names the commit and the
uncommitted files of the code under test, and the PostgreSQL settings.

Output: the JSON report on stdout; progress and a short table on stderr. Worker and PIM logs
go to a temporary folder, kept with ``--keep-logs`` (or when a phase fails).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import create_engine, text

from bench.common import checkpoint, machine, run_bench, say, scratch_database

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
TERMINAL = {"completed", "aborted", "failed", "skipped", "abandoned", "cancelled"}
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


def _mib(value: float) -> float:
    return round(value / MIB, 1)


def _median_range(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "all": [round(v, 3) for v in values],
    }


# --- the catalog --------------------------------------------------------------------------


def ensure_catalog(count: int, seed: int) -> Path:
    """The generated catalog folder for (count, seed), written once and reused."""
    from app.dev.generator import GENERATOR_VERSION, write_generated_catalog

    path = CACHE / f"catalog-{count}-{seed}-v{GENERATOR_VERSION}"
    if (path / "products.jsonl").exists():
        say(f"catalog: reusing {path}")
        return path
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    say(f"catalog: generating {count} products (seed {seed}) into {path} (untimed)")
    started = time.perf_counter()
    write_generated_catalog(tmp, count, seed)
    tmp.rename(path)  # complete or absent, never half-written
    say(f"catalog: generated in {time.perf_counter() - started:.0f}s")
    return path


# --- services -----------------------------------------------------------------------------


@contextmanager
def redis_database(preferred: int = 12) -> Iterator[str]:
    """A Redis database of our own (claimed with SET NX like the tests do), flushed after."""
    import redis

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
    import redis

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
        import redis

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
    from kombu import pools

    from app.config import reset_settings_cache
    from app.db import dispose_engines
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
class _Seen:
    group: str
    label: str
    first: float  # cpu seconds when first seen (0 for processes born during the phase)
    last: float


class PgActivity:
    """Samples what the scratch database's backends are doing (``pg_stat_activity``), from a
    connection to another database so the sampler is not one of the backends it counts."""

    def __init__(self, url: str, database: str) -> None:
        import psycopg

        admin = url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
        self.conn = psycopg.connect(f"{admin}/postgres", autocommit=True)
        self.database = database
        self.samples = 0
        self.states: dict[str, int] = {}
        self.waits: dict[str, int] = {}
        self.queries: dict[str, int] = {}

    def sample(self) -> None:
        try:
            rows = self.conn.execute(
                "SELECT state, wait_event_type, wait_event, left(query, 400) "
                "FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                (self.database,),
            ).fetchall()
        except Exception:  # a sample lost is no reason to stop the bench
            return
        self.samples += 1
        for state, wait_type, wait, query in rows:
            self.states[state or "?"] = self.states.get(state or "?", 0) + 1
            if state != "active":
                continue
            key = f"{wait_type}:{wait}" if wait_type else "running (CPU)"
            self.waits[key] = self.waits.get(key, 0) + 1
            q = _normalise_sql(query or "")
            self.queries[q] = self.queries.get(q, 0) + 1

    def close(self) -> None:
        with suppress(Exception):
            self.conn.close()

    def report(self) -> dict[str, Any]:
        n = self.samples or 1
        active = sum(self.queries.values()) or 1

        def top(counts: dict[str, int], k: int) -> list[dict[str, Any]]:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:k]
            return [{"share": round(c / active, 3), "what": q} for q, c in ranked]

        return {
            "samples": self.samples,
            "avg_backends_by_state": {s: round(c / n, 2) for s, c in sorted(self.states.items())},
            "active_by_wait": top(self.waits, 8),
            "active_by_query": top(self.queries, 12),
        }


def _normalise_sql(query: str) -> str:
    q = " ".join(query.split())
    q = re.sub(r"'(?:[^']|'')*'", "?", q)
    q = re.sub(r"\$\d+|%s|%\(\w+\)s|\b\d+\b", "?", q)
    cast = r"(?:::(?:TIMESTAMP WITH TIME ZONE|[A-Z]+))?"
    q = re.sub(rf"\?{cast}(?:\s*,\s*\?{cast})+", "?...", q)
    return q[:240]


@dataclass
class ProcessSampler:
    """Peak memory of the worker tree (every 0.2 s) and CPU seconds per process group."""

    worker_pid: int
    pim_pid: int
    database: str
    memory: dict[int, dict[str, Any]] = field(default_factory=dict)
    max_rss_sum: int = 0
    max_pss_sum: int = 0
    max_pim_rss: int = 0
    cpu: dict[tuple[int, float], _Seen] = field(default_factory=dict)
    _groups: dict[tuple[int, float], str] = field(default_factory=dict)
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    activity: PgActivity | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0
    _system_start: Any = None
    _system_end: Any = None

    def start(self) -> None:
        self._started = time.time()
        self._system_start = psutil.cpu_times()
        self._sample_cpu(baseline=True)
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.activity is not None:
            self.activity.close()
        self._sample_cpu(baseline=False)
        self._system_end = psutil.cpu_times()

    def _loop(self) -> None:
        next_cpu = time.monotonic() + CPU_INTERVAL
        while not self._stop.wait(MEMORY_INTERVAL):
            full = time.monotonic() >= next_cpu
            self._sample_memory(pss=full)
            if self.activity is not None:
                self.activity.sample()
            if full:
                self._sample_cpu(baseline=False)
                next_cpu += CPU_INTERVAL

    def _worker_tree(self) -> list[psutil.Process]:
        try:
            parent = self._procs.setdefault(self.worker_pid, psutil.Process(self.worker_pid))
            children = parent.children(recursive=True)
        except psutil.Error:
            return []
        # keep Process objects: cpu_percent-free, but creation time checked once
        return [parent, *(self._procs.setdefault(c.pid, c) for c in children)]

    def _sample_memory(self, pss: bool) -> None:
        rss_sum = pss_sum = 0
        for proc in self._worker_tree():
            try:
                info = proc.memory_full_info() if pss else proc.memory_info()
            except psutil.Error:
                continue
            entry = self.memory.setdefault(
                proc.pid,
                {"role": "parent" if proc.pid == self.worker_pid else "child", "max_rss": 0},
            )
            entry["max_rss"] = max(entry["max_rss"], info.rss)
            rss_sum += info.rss
            if pss:
                entry["max_pss"] = max(entry.get("max_pss", 0), info.pss)
                entry["max_uss"] = max(entry.get("max_uss", 0), info.uss)
                pss_sum += info.pss
        self.max_rss_sum = max(self.max_rss_sum, rss_sum)
        self.max_pss_sum = max(self.max_pss_sum, pss_sum)
        with suppress(psutil.Error):
            pim = self._procs.setdefault(self.pim_pid, psutil.Process(self.pim_pid))
            self.max_pim_rss = max(self.max_pim_rss, pim.memory_info().rss)

    def _classify(self, proc: psutil.Process, worker_tree: set[int]) -> str:
        pid = proc.pid
        if pid == os.getpid():
            return "bench"
        if pid == self.worker_pid:
            return "worker_parent"
        if pid in worker_tree:
            return "worker_children"
        try:
            if pid == self.pim_pid or self.pim_pid in {p.pid for p in proc.parents()}:
                return "reference_pim"
            name = proc.name()
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            return "other"
        if name.startswith("postgres") or cmdline.startswith("postgres"):
            if f" {self.database} " in f"{cmdline} ":
                return "postgres_autovacuum" if "autovacuum" in cmdline else "postgres_backends"
            if "(" in cmdline or "[local]" in cmdline:
                return "postgres_other_databases"
            return "postgres_background"
        if name.startswith("redis-server"):
            return "redis"
        return "other"

    @staticmethod
    def _label(proc: psutil.Process) -> str:
        try:
            return f"{proc.pid} {' '.join(proc.cmdline()) or proc.name()}"[:100]
        except psutil.Error:
            return str(proc.pid)

    def _sample_cpu(self, baseline: bool) -> None:
        tree = {p.pid for p in self._worker_tree()}
        for proc in psutil.process_iter(["create_time"]):
            try:
                key = (proc.pid, proc.info["create_time"])
                times = proc.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            seen = self.cpu.get(key)
            if seen is None:
                group = self._groups.get(key)
                if group is None:
                    group = self._groups[key] = self._classify(proc, tree)
                born_during = not baseline and key[1] >= self._started
                label = self._label(proc) if group in NOISE_GROUPS else ""
                self.cpu[key] = _Seen(group, label, 0.0 if born_during else used, used)
            else:
                seen.last = used

    def report(self, wall: float) -> dict[str, Any]:
        per_process = {
            str(pid): {
                (f"{k}_mib" if k.startswith("max_") else k): (
                    _mib(v) if k.startswith("max_") else v
                )
                for k, v in e.items()
            }
            for pid, e in sorted(self.memory.items())
        }
        groups: dict[str, float] = {}
        noise: list[tuple[float, str]] = []
        per_worker: dict[str, float] = {}
        for key, seen in self.cpu.items():
            used = max(0.0, seen.last - seen.first)
            groups[seen.group] = groups.get(seen.group, 0.0) + used
            if seen.group.startswith("worker_"):
                per_worker[str(key[0])] = round(used, 1)
            if seen.label and used >= 0.5:
                noise.append((used, f"{seen.group}: {seen.label}"))
        s0, s1 = self._system_start, self._system_end
        total = sum(s1) - sum(s0)
        idle = (s1.idle - s0.idle) + (s1.iowait - s0.iowait)
        busy = total - idle
        cores = psutil.cpu_count() or 1
        cpu = {
            g: {"cpu_s": round(v, 1), "avg_cores": round(v / wall, 2) if wall else None}
            for g, v in sorted(groups.items(), key=lambda kv: -kv[1])
        }
        return {
            "postgres_activity": self.activity.report() if self.activity else None,
            "worker_memory": {
                "per_process": per_process,
                "max_rss_mib": max((e["max_rss_mib"] for e in per_process.values()), default=0),
                "max_rss_sum_mib": _mib(self.max_rss_sum),
                "max_pss_sum_mib": _mib(self.max_pss_sum),
            },
            "reference_pim_max_rss_mib": _mib(self.max_pim_rss),
            "cpu": {
                "machine_busy_cpu_s": round(busy, 1),
                "machine_capacity_cpu_s": round(wall * cores, 1),
                "machine_iowait_s": round(s1.iowait - s0.iowait, 1),
                "by_group": cpu,
                "worker_process_cpu_s": per_worker,
                "noise_top": [
                    {"cpu_s": round(u, 1), "process": label}
                    for u, label in sorted(noise, reverse=True)[:5]
                ],
            },
        }


# --- the database -------------------------------------------------------------------------


def _run_fields(run: Any) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "kind": run.kind,
        "channel": run.channel,
        "status": run.status,
        "error": run.error,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "read": run.read,
        "rejected": run.rejected,
        "planned_units": run.planned_units,
        "planned_batches": run.planned_batches,
        "pending_batches": run.pending_batches,
        "orphans_disabled": run.orphans_disabled,
        **{c: getattr(run, c) for c in COUNTERS},
    }


def run_state(run_id: uuid.UUID) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    from app.db import session_scope
    from app.sync import repository as repo

    with session_scope() as s:
        parent = repo.get_run(s, run_id)
        children = repo.child_runs(s, run_id)
        return (
            None if parent is None else _run_fields(parent),
            [_run_fields(c) for c in children],
        )


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def table_snapshot(url: str) -> dict[str, int]:
    """What is needed to count rows written: channel rows and versions, the mirror's clock."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows, versions = conn.execute(
                text("SELECT count(*), coalesce(sum(version), 0) FROM channel_product")
            ).one()
            mirror = conn.execute(text("SELECT count(*) FROM pim_product")).scalar_one()
            wal, checkpoints = wal_position(conn)
    finally:
        engine.dispose()
    from app.db import session_scope
    from app.pim.repository import high_watermark

    with session_scope() as session:  # the mirror's change log position, as the engine sees it
        clock = high_watermark(session)
    return {
        "rows": int(rows),
        "versions": int(versions),
        "mirror": mirror,
        "clock": int(clock),
        "wal": wal,
        "checkpoints": checkpoints,
    }


def wal_position(conn: Any) -> tuple[int, int]:
    """Bytes of WAL written so far and checkpoints done (cluster-wide: noise included)."""
    row = conn.execute(
        text(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
            "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)"
        )
    ).one()
    return int(row[0]), int(row[1])


def postgres_settings(url: str) -> dict[str, str]:
    names = (
        "server_version",
        "shared_buffers",
        "max_wal_size",
        "checkpoint_timeout",
        "synchronous_commit",
        "wal_level",
        "wal_compression",
        "default_toast_compression",
        "autovacuum",
        "plan_cache_mode",
        "work_mem",
    )
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                n: str(conn.execute(text("SELECT current_setting(:n)"), {"n": n}).scalar_one())
                for n in names
            }
    finally:
        engine.dispose()


def rows_written(
    url: str, before: dict[str, int], after: dict[str, int], run_ids: list[str]
) -> dict[str, Any]:
    """channel_product rows inserted or changed (every change bumps version by one), rows
    tagged with the phase's runs, and pim_product rows whose change position moved."""
    inserted = after["rows"] - before["rows"]
    bumped = after["versions"] - before["versions"] - inserted  # new rows start at version 1
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tagged = conn.execute(
                text("SELECT count(*) FROM channel_product WHERE sync_run_id = ANY(:ids)"),
                {"ids": [uuid.UUID(i) for i in run_ids]},
            ).scalar_one()
            mirror_changed = conn.execute(
                text("SELECT count(*) FROM pim_product WHERE change_seq >= :clock"),
                {"clock": before["clock"]},
            ).scalar_one()
            mirror_seen = conn.execute(
                text("SELECT count(*) FROM pim_product WHERE last_seen_run = ANY(:ids)"),
                {"ids": [uuid.UUID(i) for i in run_ids]},
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "postgres_wal_mib": _mib(after["wal"] - before["wal"]),
        "postgres_checkpoints": after["checkpoints"] - before["checkpoints"],
        "channel_product": {
            "inserted": inserted,
            "updated": bumped,
            "written": inserted + bumped,
            "tagged_with_phase_runs": tagged,
            "rows_after": after["rows"],
        },
        "pim_product": {
            "inserted": after["mirror"] - before["mirror"],
            "content_changed": mirror_changed,
            "marked_seen": mirror_seen,
        },
    }


def health(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            letters: dict[str, int] = {
                k: int(v)
                for k, v in conn.execute(
                    text("SELECT kind || ':' || status, count(*) FROM dead_letter GROUP BY 1")
                ).all()
            }
            batches = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE attempt > 1), "
                    "count(*) FILTER (WHERE status <> 'done'), count(*) FROM sync_batch"
                )
            ).one()
            deadlocks = conn.execute(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "dead_letters": letters,
        "batches_retried_total": batches[0],
        "batches_not_done": batches[1],
        "batches_total": batches[2],
        "pg_deadlocks_total": deadlocks,
    }


def log_findings(log: Path, offset: int) -> tuple[dict[str, Any], int]:
    """What the worker log says since ``offset``: errors, warnings, retries, notable events."""
    with log.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    counts = {
        k: 0
        for k in (
            "errors",
            "warnings",
            "tracebacks",
            "celery_retries",
            "deadlocks",
            "unit_error",
            "dead_lettered",
            "product_rejected",
            "aborted_or_failed_runs",
            "pim_retries",
        )
    }
    samples: list[str] = []
    durations: dict[str, list[float]] = {}
    for raw in data.decode(errors="replace").splitlines():
        done = TASK_DONE.search(raw)
        if done:
            durations.setdefault(done.group(1), []).append(float(done.group(2)))
        line = raw.lower()
        level = None
        if raw.startswith("{"):
            with suppress(ValueError):
                level = json.loads(raw).get("level")
        if level in ("error", "critical") or "error/" in line:
            counts["errors"] += 1
            if len(samples) < 8:
                samples.append(raw[:400])
        elif level == "warning" or "warning/" in line:
            counts["warnings"] += 1
            if len(samples) < 8:
                samples.append(raw[:400])
        if "traceback" in line:
            counts["tracebacks"] += 1
        if "retry in" in line:
            counts["celery_retries"] += 1
        if "deadlock" in line:
            counts["deadlocks"] += 1
        for event in ("unit_error", "dead_lettered", "product_rejected"):
            if f'"{event}"' in line:
                counts[event] += 1
        if any(e in line for e in ('"full_sync_aborted"', '"run_failed"', "_sync_failed")):
            counts["aborted_or_failed_runs"] += 1
        if "akeneo" in line and ("retry" in line or "429" in line or "backoff" in line):
            counts["pim_retries"] += 1
    tasks = {
        name: {
            "count": len(d),
            "total_s": round(sum(d), 1),
            "median_s": round(statistics.median(d), 3),
            "max_s": round(max(d), 3),
        }
        for name, d in sorted(durations.items())
    }
    return {**counts, "task_seconds": tasks, "samples": samples}, offset + len(data)


# --- bare COPY ----------------------------------------------------------------------------


def bare_copy(url: str, table: str, repeats: int, work: Path) -> dict[str, Any]:
    """Export ``table`` (COPY TO, text format) and load it with one bare COPY FROM into an empty
    table with the same indexes and TOAST compression, ``repeats`` times."""
    engine = create_engine(url)
    export = work / f"{table}.copy"
    twin = f"bare_copy_{table}"
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        columns = [
            r[0]
            for r in cur.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum",
                (table,),
            )
        ]
        cols = ", ".join(columns)
        with export.open("wb") as out, cur.copy(f"COPY {table} ({cols}) TO STDOUT") as cp:
            for chunk in cp:
                out.write(chunk)
        raw.commit()
        compression = cur.execute(
            "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND attcompression <> ''",
            (table,),
        ).fetchall()
        raw.commit()
        rows = int(cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        raw.commit()
        seconds: list[float] = []
        backend_cpu: list[float] = []
        wal: list[int] = []
        # the database's side of the floor (bench.floor): what the backend burns in a COPY
        backend = psutil.Process(int(cur.execute("SELECT pg_backend_pid()").fetchone()[0]))
        raw.commit()
        for i in range(repeats):
            cur.execute(f"DROP TABLE IF EXISTS {twin}")
            cur.execute(f"CREATE TABLE {twin} (LIKE {table} INCLUDING ALL)")
            for column, method in compression:
                kind = {"l": "lz4", "p": "pglz"}[method]
                cur.execute(f"ALTER TABLE {twin} ALTER COLUMN {column} SET COMPRESSION {kind}")
            raw.commit()
            checkpoint(url)
            wal0 = int(cur.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])
            raw.commit()
            cpu0 = backend.cpu_times()
            started = time.perf_counter()
            with cur.copy(f"COPY {twin} ({cols}) FROM STDIN") as cp, export.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            raw.commit()
            seconds.append(time.perf_counter() - started)
            cpu1 = backend.cpu_times()
            backend_cpu.append(cpu1.user + cpu1.system - cpu0.user - cpu0.system)
            wal.append(int(cur.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0]) - wal0)
            raw.commit()
            say(f"bare COPY {table}: {rows} rows in {seconds[-1]:.1f}s ({i + 1}/{repeats})")
        size = int(cur.execute(f"SELECT pg_total_relation_size('{twin}')").fetchone()[0])
        cur.execute(f"DROP TABLE IF EXISTS {twin}")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    median = statistics.median(seconds)
    result = {
        "rows": rows,
        "export_bytes": export.stat().st_size,
        "table_bytes": size,
        "seconds": _median_range(seconds),
        "rows_per_s": round(rows / median) if median else None,
        "backend_cpu_s": _median_range(backend_cpu),
        "postgres_wal_mib": _mib(statistics.median(wal)),
        "compression": {c: m for c, m in compression},
    }
    export.unlink()
    return result


# --- phases -------------------------------------------------------------------------------


class Autoanalyze:
    """``ANALYZE`` every ``every`` seconds during a phase: what autovacuum's autoanalyze does
    on a server where it is on (it is off on this machine's CI configuration). Off when 0."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.runs, self.seconds = 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autoanalyze", daemon=True)

    def start(self) -> None:
        if self.every > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def _loop(self) -> None:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            while not self._stop.wait(self.every):
                started = time.perf_counter()
                with engine.connect() as conn:
                    conn.execute(text("ANALYZE"))
                self.runs += 1
                self.seconds += time.perf_counter() - started
        finally:
            engine.dispose()

    def report(self) -> dict[str, Any] | None:
        if self.every <= 0:
            return None
        return {"every_s": self.every, "runs": self.runs, "seconds": round(self.seconds, 1)}


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

    def context(self) -> Any:
        from tasks.dispatch import process_context

        return process_context()


def run_phase(stack: Stack, name: str, units: int) -> dict[str, Any]:
    """Start a full (cold, warm) or delta sync and wait for every channel run to finish."""
    from app.db import session_scope
    from app.sync import ingest

    checkpoint(stack.url)
    stack.pim.reset_stats()
    before = table_snapshot(stack.url)
    sampler = ProcessSampler(
        stack.worker.pid,
        stack.pim.pid,
        stack.database,
        activity=PgActivity(stack.url, stack.database),
    )
    sampler.start()
    analyzer = Autoanalyze(stack.url, stack.analyze_every)
    analyzer.start()
    say(f"phase {name}: started ({units} units)")
    t0 = datetime.now(UTC)
    p0 = time.perf_counter()
    with session_scope() as s:
        if name == "delta":
            run_id = ingest.start_delta(s, stack.context(), trigger="bench").id
        else:
            started = ingest.start_full(s, stack.context(), trigger="bench")
            if started is None:
                raise RuntimeError("start_full refused: every channel is already syncing")
            run_id = started.id
    parent, children = wait_for_run(stack, name, run_id, units, sampler)
    observed = time.perf_counter() - p0
    analyzer.stop()
    sampler.stop()
    finished = [c["finished_at"] for c in children if c["finished_at"]]
    if parent and parent["finished_at"]:
        finished.append(parent["finished_at"])
    wall = (max(finished) - t0).total_seconds() if finished else observed
    after = table_snapshot(stack.url)
    findings, stack.log_offset = log_findings(stack.worker.log, stack.log_offset)
    written = rows_written(stack.url, before, after, [parent["id"]] + [c["id"] for c in children])
    totals = {c: sum(ch[c] for ch in children) for c in COUNTERS}
    problems = [
        f"{r['channel'] or 'ingest'} run {r['status']}: {r['error']}"
        for r in [parent, *children]
        if r and r["status"] != "completed"
    ]
    processed = sum(totals.values())
    if name != "delta" and processed != units:
        problems.append(f"counters add up to {processed} units, expected {units}")
    result = {
        "wall_seconds": round(wall, 2),
        "observed_seconds": round(observed, 2),
        "units": units,
        "units_per_s": round(units / wall, 1) if wall else None,
        "ingest": {
            "status": parent["status"] if parent else None,
            "read": parent["read"] if parent else None,
            "rejected": parent["rejected"] if parent else None,
            "seconds": (
                round((parent["finished_at"] - parent["started_at"]).total_seconds(), 2)
                if parent and parent["finished_at"]
                else None
            ),
        },
        "channels": {
            c["channel"]: {
                "status": c["status"],
                "seconds": (
                    round((c["finished_at"] - t0).total_seconds(), 2) if c["finished_at"] else None
                ),
                "planned_units": c["planned_units"],
                "planned_batches": c["planned_batches"],
                **{k: c[k] for k in COUNTERS},
                "orphans_disabled": c["orphans_disabled"],
            }
            for c in sorted(children, key=lambda c: c["channel"] or "")
        },
        "counters_total": totals,
        "rows_written": written,
        **sampler.report(wall),
        "reference_pim": stack.pim.stats(),
        "emulated_autoanalyze": analyzer.report(),
        "worker_log": findings,
        "database": health(stack.url),
        "problems": problems,
    }
    cw = written["channel_product"]
    saved = stack.logs / f"phase-{stack.skus}-{name}.json"
    saved.write_text(json.dumps(result, indent=2, default=str))
    say(f"phase {name}: result saved to {saved}")
    say(
        f"phase {name}: finished in {wall:.1f}s ({result['units_per_s']} units/s), "
        f"channel rows written {cw['written']}, problems: {len(problems)}"
    )
    return result


def wait_for_run(
    stack: Stack, name: str, run_id: uuid.UUID, units: int, sampler: ProcessSampler
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    expected = len(stack.channels)
    started = time.monotonic()
    last_progress, last_change, last_mark = started, started, (-1, -1)
    while True:
        time.sleep(0.5)
        stack.worker.check_alive()
        stack.pim.check_alive()
        parent, children = run_state(run_id)
        if parent is None:
            continue
        done_units = sum(c[k] for c in children for k in COUNTERS)
        mark = (parent["read"], done_units)
        now = time.monotonic()
        if mark != last_mark:
            last_mark, last_change = mark, now
        elif now - last_change > STALL_SECONDS:
            raise RuntimeError(
                f"phase {name}: no progress for {STALL_SECONDS:.0f}s (read {parent['read']}, "
                f"units {done_units}); runs: "
                + str([(c["channel"], c["status"], c["pending_batches"]) for c in children])
                + f"\nworker log:\n{stack.worker.tail()}"
            )
        finished = (
            parent["status"] in TERMINAL
            and len(children) >= expected
            and all(c["status"] in TERMINAL for c in children)
        )
        if finished or parent["status"] == "skipped":
            return parent, children
        if now - last_progress >= PROGRESS_INTERVAL:
            last_progress = now
            elapsed = now - started
            say(
                f"phase {name}: {elapsed:6.0f}s  read {parent['read']}/{stack.skus}  "
                f"units {done_units}/{units} ({done_units / elapsed:.0f}/s)  "
                f"channel runs done {sum(c['status'] in TERMINAL for c in children)}/{expected}  "
                f"worker RSS peak {_mib(sampler.max_rss_sum):.0f} MiB"
            )


def rename_products(pim: ReferencePim, skus: int, count: int) -> list[str]:
    """Rename ``count`` products spread over the catalog through the admin PATCH."""
    from app.dev.generator import PIM_LOCALES, sku_of

    step = max(1, skus // count)
    chosen = [sku_of(i) for i in range(0, skus, step)][:count]
    stamp = datetime.now(UTC).strftime("%H%M%S")
    for sku in chosen:
        values = {
            "name": [
                {"locale": loc, "scope": None, "data": f"Renamed {sku} {stamp} {loc}"}
                for loc in PIM_LOCALES
            ]
        }
        pim.admin.patch(f"/_admin/products/{sku}", json={"values": values}).raise_for_status()
    return chosen


@contextmanager
def stack_for(
    skus: int, seed: int, redis_url: str, logs: Path, args: argparse.Namespace
) -> Iterator[Stack]:
    from app.channels.config import load_channels
    from app.config import SAMPLE_DIR

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
        pim.start(timeout=120 + skus / 200)
        say(f"reference PIM: ready after {time.perf_counter() - started:.0f}s")
        env = {
            "PIMSYNC_DATABASE_URL": url,
            "PIMSYNC_BROKER_URL": redis_url,
            "PIMSYNC_REDIS_URL": redis_url,
            "PIMSYNC_PIM_SOURCE": pim.base,
            "PIMSYNC_CHANNELS_FILE": str(SAMPLE_DIR / "channels.yaml"),
            "PIMSYNC_CONTRACTS_DIR": str(SAMPLE_DIR / "contracts"),
            "PIMSYNC_LOG_JSON": "true",
            **CREDENTIALS,
        }
        point_this_process_at(env)
        worker = Worker(env, logs / f"worker-{skus}.log", args.concurrency)
        stack.callback(worker.stop)
        worker.start()
        say(f"worker: ready (pid {worker.pid}, concurrency {args.concurrency})")
        channels = sorted(load_channels(SAMPLE_DIR / "channels.yaml"))
        yield Stack(skus, url, database, pim, worker, channels, logs, catalog, args.analyze_every)


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
    from app.config import get_settings

    s = get_settings()
    return {
        "publish_batch_size": s.publish_batch_size,
        "channel_inflight_batches": s.channel_inflight_batches,
        "akeneo_page_size": s.akeneo_page_size,
        "akeneo_max_concurrency": s.akeneo_max_concurrency,
        "ingest_slice_seconds": s.ingest_slice_seconds,
        "db_pool_size": s.db_pool_size,
    }


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {**machine(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "command": " ".join(["python -m bench.full_sync", *sys.argv[1:]]),
        "skus": args.skus,
        "seed": args.seed,
        "worker_concurrency": args.concurrency,
        "analyze_every_s": args.analyze_every or None,
        "code": code_version(),
    }
    with redis_database(args.redis_db) as redis_url:
        report["redis"] = redis_url
        with stack_for(args.skus, args.seed, redis_url, logs, args) as st:
            units = args.skus * len(st.channels)
            report.update(
                channels=st.channels,
                units=units,
                settings=settings_in_force(),
                postgres=postgres_settings(st.url),
            )
            phases: dict[str, Any] = {}
            report["phases"] = phases
            phases["cold"] = run_phase(st, "cold", units)
            if not args.cold_only:
                with tempfile.TemporaryDirectory(prefix="pimsync-bench-copy-") as tmp:
                    report["bare_copy"] = {
                        t: bare_copy(st.url, t, args.copy_repeats, Path(tmp))
                        for t in ("channel_product", "pim_product")
                    }
                report["floor"] = python_floor(st, report["bare_copy"], args.floor_products)
                phases["warm"] = run_phase(st, "warm", units)
                say(f"delta: renaming {args.delta} products in the reference PIM (untimed)")
                renamed = rename_products(st.pim, args.skus, args.delta)
                phases["delta"] = run_phase(st, "delta", len(renamed) * len(st.channels))
                phases["delta"]["renamed_products"] = len(renamed)
        if not args.cold_only:
            report["summary"] = summary(report)
        if args.memory_compare:
            with stack_for(args.memory_compare, args.seed, redis_url, logs, args) as big:
                units_m = args.memory_compare * len(big.channels)
                cold_m = run_phase(big, "cold", units_m)
            report["memory_compare"] = memory_compare(report, args.memory_compare, cold_m)
    return report


def python_floor(st: Stack, copies: dict[str, Any], products: int) -> dict[str, Any]:
    """The cold sync's floor (see bench.floor): the workers' per-product Python work measured
    in this process on the catalog's first ``products`` products, with the channels' runtimes
    as the workers built them, plus the database CPU of a bare COPY of both tables."""
    from app.config import get_settings
    from app.db import session_scope
    from app.sync.runtime import REGISTRY
    from bench import floor

    settings = get_settings()
    say(f"floor: the per-product Python work, {products} products in this process")
    with session_scope() as session:
        runtimes = [REGISTRY.runtime(session, settings, code) for code in st.channels]
    python = floor.measure(
        st.catalog / "products.jsonl", runtimes, settings.identifier_attribute, products
    )
    copy_cpu = sum(c["backend_cpu_s"]["median"] for c in copies.values())
    result = floor.floor(
        python,
        st.skus,
        copy_cpu,
        copies["channel_product"]["seconds"]["median"],
        len(os.sched_getaffinity(0)),  # the cores this machine lets us use
    )
    return {"python": python, **result}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    phases = report["phases"]
    cold, warm, delta = phases["cold"], phases["warm"], phases["delta"]
    copy_cp = report["bare_copy"]["channel_product"]
    copy_s = copy_cp["seconds"]["median"]
    warm_written = warm["rows_written"]["channel_product"]["written"]
    return {
        "cold_seconds": cold["wall_seconds"],
        "warm_seconds": warm["wall_seconds"],
        "delta_seconds": delta["wall_seconds"],
        "cold_units_per_s": cold["units_per_s"],
        "warm_units_per_s": warm["units_per_s"],
        "bare_copy_channel_product_seconds": copy_s,
        "bare_copy_channel_product_rows_per_s": copy_cp["rows_per_s"],
        "bare_copy_pim_product_seconds": report["bare_copy"]["pim_product"]["seconds"]["median"],
        "ratio_cold_to_bare_copy": round(cold["wall_seconds"] / copy_s, 2) if copy_s else None,
        "ratio_warm_to_cold": round(warm["wall_seconds"] / cold["wall_seconds"], 3),
        "floor_seconds": report["floor"]["seconds"],
        "ratio_floor_to_bare_copy": report["floor"]["ratio_to_bare_copy"],
        "python_floor_cpu_ms_per_product": report["floor"]["python"]["total_cpu_ms_per_product"],
        "cold_channel_rows_written": cold["rows_written"]["channel_product"]["written"],
        "warm_channel_rows_written": warm_written,
        "warm_synced_counter": warm["counters_total"]["synced"],
        "warm_wrote_nothing": warm_written == 0 and warm["counters_total"]["synced"] == 0,
        "delta_channel_rows_written": delta["rows_written"]["channel_product"]["written"],
        "worker_peak_rss_sum_mib": max(
            p["worker_memory"]["max_rss_sum_mib"] for p in phases.values()
        ),
        "worker_peak_pss_sum_mib": max(
            p["worker_memory"]["max_pss_sum_mib"] for p in phases.values()
        ),
        "problems": {k: p["problems"] for k, p in phases.items() if p["problems"]},
    }


def memory_compare(report: dict[str, Any], m: int, cold_m: dict[str, Any]) -> dict[str, Any]:
    cold_n = report["phases"]["cold"]
    n = report["skus"]

    def peak(phase: dict[str, Any]) -> dict[str, Any]:
        mem = phase["worker_memory"]
        return {
            "max_rss_sum_mib": mem["max_rss_sum_mib"],
            "max_pss_sum_mib": mem["max_pss_sum_mib"],
            "max_rss_per_process_mib": mem["max_rss_mib"],
            "per_process": mem["per_process"],
        }

    a, b = peak(cold_n), peak(cold_m)
    return {
        "skus": {"n": n, "m": m},
        "cold_n": a,
        "cold_m": b,
        "rss_sum_ratio_m_to_n": (
            round(b["max_rss_sum_mib"] / a["max_rss_sum_mib"], 2) if a["max_rss_sum_mib"] else None
        ),
        "reference_pim_max_rss_mib": {
            "n": cold_n["reference_pim_max_rss_mib"],
            "m": cold_m["reference_pim_max_rss_mib"],
        },
        "cold_m_phase": cold_m,
    }


def print_table(report: dict[str, Any]) -> None:
    out = sys.stderr
    print("", file=out)
    head = f"{'phase':<10}{'seconds':>10}{'units/s':>10}{'rows written':>14}"
    head += f"{'worker RSS MiB':>16}{'problems':>10}"
    print(head, file=out)
    phases = dict(report.get("phases", {}))
    if "memory_compare" in report:
        phases[f"cold@{report['memory_compare']['skus']['m']}"] = report["memory_compare"][
            "cold_m_phase"
        ]
    for name, p in phases.items():
        print(
            f"{name:<10}{p['wall_seconds']:>10.1f}{p['units_per_s']:>10.0f}"
            f"{p['rows_written']['channel_product']['written']:>14}"
            f"{p['worker_memory']['max_rss_sum_mib']:>16.0f}{len(p['problems']):>10}",
            file=out,
        )
    for table, c in report.get("bare_copy", {}).items():
        print(
            f"bare COPY {table}: {c['rows']} rows in {c['seconds']['median']:.1f}s "
            f"(range {c['seconds']['min']:.1f}-{c['seconds']['max']:.1f}), "
            f"{c['rows_per_s']} rows/s",
            file=out,
        )
    s = report.get("summary")
    if s:
        print(
            f"cold / bare COPY = {s['ratio_cold_to_bare_copy']}, warm / cold = "
            f"{s['ratio_warm_to_cold']}, warm wrote nothing: {s['warm_wrote_nothing']}",
            file=out,
        )
        f = report["floor"]
        print(
            f"floor: {f['seconds']}s = {f['ratio_to_bare_copy']}x bare COPY (Python "
            f"{f['python']['total_cpu_ms_per_product']} ms/product x {report['skus']} = "
            f"{f['python_cpu_s']}s, COPY of both tables {f['postgres_copy_cpu_s']}s of database "
            f"CPU, over {f['cpus']} cores; stages {f['python']['cpu_ms_per_product']})",
            file=out,
        )
    for name, p in phases.items():
        groups = p["cpu"]["by_group"]
        shown = ", ".join(f"{g} {v['avg_cores']}" for g, v in list(groups.items())[:6])
        read = p.get("ingest", {}).get("read") or 0
        worker = groups.get("worker_children", {}).get("cpu_s")
        # the figure that holds across machines of one speed: CPU per product, all channels
        per_product = (
            f"; worker CPU {worker * 1000 / read:.2f} ms/product" if read and worker else ""
        )
        print(f"{name} CPU (avg cores): {shown}{per_product}", file=out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delta", type=int, default=400, help="products renamed for the delta")
    parser.add_argument(
        "--memory-compare", type=int, default=0, metavar="M", help="also a cold sync of M SKUs"
    )
    parser.add_argument("--copy-repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--redis-db", type=int, default=12, help="preferred Redis database")
    parser.add_argument(
        "--analyze-every",
        type=float,
        default=0.0,
        metavar="S",
        help="run ANALYZE every S seconds during phases (autoanalyze where autovacuum is off)",
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold full sync (no COPY, warm, delta)"
    )
    parser.add_argument(
        "--floor-products",
        type=int,
        default=5000,
        metavar="N",
        help="products the floor's Python work is measured on (bench.floor)",
    )
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()

    run_bench(run, args, "pimsync-bench-logs-", print_table)


if __name__ == "__main__":
    main()
