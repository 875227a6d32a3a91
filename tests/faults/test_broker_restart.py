"""The broker restarted mid full sync: a private Redis (no persistence, so every queued and
reserved message dies with it) is killed and started again while a real worker publishes. The
worker reconnects; the batches whose messages died stay ``enqueued`` in the database, and the
sweeper sends them again once they are stale. The run completes by itself and the invariant
holds. (The shared Redis is never touched: this module's stack has a Redis of its own.)

Found here: with Celery 5.7.0 / kombu 5.7.0 the worker itself usually exits when the broker
goes away while it holds unacknowledged messages (see ``supervised_until_done``); pimsync then
relies on the process supervisor to start it again, as docker compose's restart policy does."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e_support import free_port, wait_until
from tests.faults.stack import CHANNELS, FAST_SWEEP, FaultStack, open_stack
from tests.faults.test_worker_death import SLOW_CHAIN, mid_publish

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.worker]


class PrivateRedis:
    """``redis-server`` on a free port, no persistence; killed and started again by the test."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not found")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 20, interval=0.1, what="the private Redis")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def stack(broker: PrivateRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    tmp = tmp_path_factory.mktemp("broker")
    with open_stack("broker", broker.url, tmp, **SLOW_CHAIN) as s:
        s.reset(broker.url)
        yield s


def test_broker_restarted_mid_full_sync(stack: FaultStack, broker: PrivateRedis):
    worker = stack.worker("broker").start()
    restarts = 0

    def supervised_until_done(_totals: dict[str, int]) -> bool:
        """The process supervisor's part (docker compose: ``restart: unless-stopped``): a
        worker that exited is started again. Celery 5.7 / kombu 5.7 workers holding unacked
        messages when the broker goes away may exit with "Unrecoverable error:
        AttributeError("'NoneType' object has no attribute 'hostname'")" (kombu's channel close
        restores the unacked messages through a connection it has already dropped)."""
        nonlocal restarts
        if worker.proc is not None and worker.proc.poll() is not None:
            restarts += 1
            worker.start()
        return all(r.status != "running" for r in stack.runs(run_id).values())

    try:
        run_id = stack.full()
        wait_until(lambda: mid_publish(stack, run_id), 60, interval=0.05, what="mid publish")
        broker.kill()  # every message queued or reserved is gone
        # down long enough for the tasks in flight to end: the messages they send for the next
        # batches fail too, so every channel's chain of batches is broken
        time.sleep(3)
        at_restart = {c: r.processed for c, r in stack.runs(run_id).items() if c}
        broker.start()
        # the worker reconnects; what the lost messages carried is sent again by the sweeper
        totals = stack.sweep_until(supervised_until_done, timeout=90, **FAST_SWEEP)
        by = stack.wait(run_id)
    finally:
        worker.stop()
    assert restarts in (0, 1)  # 1: the worker died of the upstream bug above
    assert all(n < 60 for n in at_restart.values()), at_restart
    assert totals["batches"] >= 1, totals  # stale enqueued batches sent again
    assert totals["resumed"] == totals["abandoned"] == 0, totals  # the worker lived on
    assert (by[None].status, by[None].read) == ("completed", 60)
    outcome = stack.check()
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.error, run.failed) == ("completed", None, 0)
        assert run.processed == run.planned_units == 60
        assert "resumptions" not in (run.details or {})
        assert sum(outcome.count(channel).values()) == 60
