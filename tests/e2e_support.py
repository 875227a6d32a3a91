"""Real parts for end-to-end tests: a Celery worker process, a reference PIM, shared settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def stack_env(db: str, redis_url: str, pim_url: str, **extra: str) -> dict[str, str]:
    """Settings for a process of the test stack: its database, broker, reference PIM."""
    return {
        "PIMSYNC_DATABASE_URL": db,
        "PIMSYNC_BROKER_URL": redis_url,
        "PIMSYNC_REDIS_URL": redis_url,
        "PIMSYNC_PIM_SOURCE": pim_url,
        # the reference PIM's default connection
        "PIMSYNC_AKENEO_CLIENT_ID": "pimsync",
        "PIMSYNC_AKENEO_SECRET": "pimsync-secret",
        "PIMSYNC_AKENEO_USERNAME": "pimsync",
        "PIMSYNC_AKENEO_PASSWORD": "pimsync",
        "PIMSYNC_LOG_JSON": "true",
        **extra,
    }


def apply_env(env: dict[str, str]) -> dict[str, str | None]:
    """Point this process at the test services; returns what to restore."""
    from app.config import reset_settings_cache
    from app.db import dispose_engines

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings_cache()
    dispose_engines()
    from tasks import celery_app
    from tasks.dispatch import reset_process_context

    celery_app.conf.broker_url = env.get("PIMSYNC_BROKER_URL", celery_app.conf.broker_url)
    reset_broker_connections()
    reset_process_context()
    return old


def reset_broker_connections() -> None:
    """Forget pooled broker connections so the next send uses the current broker URL."""
    from kombu import pools

    from tasks import celery_app

    pools.reset()  # kombu's process-wide connection and producer pools
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def restore_env(old: dict[str, str | None]) -> None:
    from app.config import reset_settings_cache
    from app.db import dispose_engines
    from tasks.dispatch import reset_process_context

    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings_cache()
    dispose_engines()
    reset_broker_connections()
    reset_process_context()


class Worker:
    """``celery -A tasks worker`` in its own process group, stopped (or killed) by the test."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        concurrency: int = 2,
        queues: str = "sync,publish",
        name: str = "e2e",
        heartbeat: bool = False,
        metrics_port: int = 0,
    ) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        # with a metrics port the worker starts the way operators start it: `pimsync worker`
        self.metrics_port = metrics_port
        self.heartbeat = heartbeat  # Flower needs the worker's heartbeats
        self.log = log
        self.concurrency = concurrency
        self.queues = queues
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        if self.metrics_port:
            command = [
                *(sys.executable, "-m", "app", "worker", f"--queues={self.queues}"),
                f"--concurrency={self.concurrency}",
                f"--metrics-port={self.metrics_port}",
                f"--hostname={self.name}@%h",
            ]
        else:
            command = [
                *(sys.executable, "-m", "celery", "-A", "tasks", "worker"),
                f"--queues={self.queues}",
                f"--concurrency={self.concurrency}",
                "--pool=prefork",
                "--without-gossip",
                "--without-mingle",
                *([] if self.heartbeat else ["--without-heartbeat"]),
                f"--hostname={self.name}@%h",
                "--loglevel=INFO",
            ]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            if "ready." in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool children): a crashed host."""
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextmanager
def reference_pim(spec: str, **app_options: Any) -> Iterator[tuple[str, Any]]:
    """A reference PIM in a thread: yields (base URL, its ReferenceCatalog)."""
    from app.dev.reference_server import ReferenceCatalog, create_app, serve_in_thread

    catalog = ReferenceCatalog.load(spec)
    app = create_app(catalog, **app_options)
    with serve_in_thread(app) as base:
        yield base, catalog


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30)


def wait_until(
    predicate: Any, timeout: float = 120, interval: float = 0.25, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_finished(run_id: Any, expected_children: int) -> bool:
    from app.db import session_scope
    from app.sync import repository as repo
    from app.sync.models import TERMINAL as terminal

    with session_scope() as s:
        run = repo.get_run(s, run_id)
        children = repo.child_runs(s, run_id)
        return bool(
            run is not None
            and run.status in terminal
            and len(children) >= expected_children
            and all(c.status in terminal for c in children)
        )


@contextmanager
def web_process(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`pimsync web` in its own process on a free port, with ``env`` over this one's; yields
    its base URL (once /healthz answers) and the process; stopped on exit. Its output goes to
    ``log``."""
    port = free_port()
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "web", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pimsync web exited early:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pimsync web not up after 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        out.close()
