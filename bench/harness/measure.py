"""What a benchmark measures around a run: CPU and memory of every process, the database's
activity, rows and WAL written, a bare COPY of the same rows for comparison, the logs' findings."""

from __future__ import annotations

import json
import os
import re
import statistics
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from sqlalchemy import create_engine, text

from app.db import session_scope
from app.pim.repository import high_watermark
from app.sync import repository as repo
from app.sync.models import TERMINAL
from bench.harness.report import say
from bench.harness.stack import (
    COUNTERS,
    CPU_INTERVAL,
    MEMORY_INTERVAL,
    MIB,
    NOISE_GROUPS,
    PROGRESS_INTERVAL,
    STALL_SECONDS,
    TASK_DONE,
    Stack,
    checkpoint,
)


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


def wait_for_run(
    stack: Stack, name: str, run_id: uuid.UUID, units: int, sampler: ProcessSampler
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    expected = len(stack.channels)
    started = time.monotonic()
    last_progress, last_change, last_mark = started, started, (-1, -1)
    while True:
        # often: a phase's time is from its start to the first poll that sees it over, so a
        # 2 s delta polled every 0.5 s read up to 25 % long (a poll reads a few run rows)
        time.sleep(RUN_POLL)
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


# --- the storefront's side: product pages -------------------------------------------------

PAGES_BEHIND = """
SELECT count(*) FROM channel_product cp
LEFT JOIN product_page pp ON pp.channel = cp.channel AND pp.sku = cp.sku
WHERE coalesce(pp.catalog_version, 0) < cp.version
"""
PAGES_POLL = 0.1
RUN_POLL = 0.05


def pages_behind(conn: Any) -> int:
    """channel_product rows whose product page does not hold their version yet."""
    return int(conn.execute(text(PAGES_BEHIND)).scalar_one())


def pages_written_since(conn: Any, since: datetime) -> tuple[int, datetime | None]:
    """Pages written since ``since`` and the clock of the last one (``updated_at`` is the
    projection's clock when its transaction began: a lower bound of its commit)."""
    row = conn.execute(
        text("SELECT count(*), max(updated_at) FROM product_page WHERE updated_at >= :t"),
        {"t": since},
    ).one()
    return int(row[0]), row[1]


def wait_for_pages(stack: Stack, name: str, t0: datetime) -> dict[str, Any]:
    """Once the channel runs are over: wait until every channel_product row is on its product
    page (catalog_version = the row's version), written by the run's batches or the worker's
    catalog-event consumer. Returns when that was first seen (the start of the first poll
    that found it: an upper bound of the moment, by at most one poll interval) and when the
    last page was written (a lower bound)."""
    engine = create_engine(stack.url, isolation_level="AUTOCOMMIT")
    started = time.monotonic()
    polls, query_s = 0, 0.0
    last_behind, last_change = -1, started
    try:
        with engine.connect() as conn:
            while True:
                # the query's snapshot is taken when it starts: if it finds every page
                # written, they were by then (a poll's own duration is not counted)
                asked = datetime.now(UTC)
                q0 = time.perf_counter()
                behind = pages_behind(conn)
                query_s = max(query_s, time.perf_counter() - q0)
                polls += 1
                if behind == 0:
                    seen = asked
                    break
                now = time.monotonic()
                if behind != last_behind:
                    last_behind, last_change = behind, now
                elif now - last_change > STALL_SECONDS:
                    raise RuntimeError(
                        f"phase {name}: {behind} pages behind channel_product for "
                        f"{STALL_SECONDS:.0f}s\nworker log:\n{stack.worker.tail()}"
                    )
                stack.worker.check_alive()
                time.sleep(PAGES_POLL)
            written, last_write = pages_written_since(conn, t0)
    finally:
        engine.dispose()
    return {
        "pages_written": written,
        "pages_seen_complete_at": seen,
        "last_page_written_at": last_write,
        "polls": polls,
        "slowest_poll_s": round(query_s, 3),
    }
