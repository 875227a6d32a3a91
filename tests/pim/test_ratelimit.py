"""The shared concurrency limiter, on a real Redis and across real OS processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid

import pytest
import redis

from app.pim.ratelimit import (
    LocalSemaphore,
    RedisSemaphore,
    SemaphoreTimeout,
    SemaphoreUnavailable,
)

pytestmark = pytest.mark.redis

# INCR the in-flight counter and keep the highest value seen, atomically.
_ENTER = """
local current = redis.call('INCR', KEYS[1])
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
if current > seen then redis.call('SET', KEYS[2], current) end
return current
"""

SPAWN = multiprocessing.get_context("spawn")


def _contend(url: str, name: str, limit: int, prefix: str, threads: int, rounds: int) -> None:
    """One OS process: ``threads`` threads each taking the slot ``rounds`` times."""
    client = redis.Redis.from_url(url)
    enter = client.register_script(_ENTER)
    semaphore = RedisSemaphore(url, name, limit, lease_seconds=30)

    def work() -> None:
        for _ in range(rounds):
            with semaphore.slot(timeout=20):
                enter(keys=[f"{prefix}:current", f"{prefix}:max"])
                time.sleep(0.03)
                client.decr(f"{prefix}:current")
                client.incr(f"{prefix}:done")

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _hold_forever(url: str, name: str, held: multiprocessing.synchronize.Event) -> None:
    semaphore = RedisSemaphore(url, name, 1, lease_seconds=1)
    with semaphore.slot(timeout=5):
        held.set()
        time.sleep(60)


@pytest.fixture()
def name() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_limit_holds_across_processes_and_is_reached(redis_url: str, name: str) -> None:
    limit, processes, threads, rounds = 3, 3, 3, 6
    prefix = f"pimsync:test:{name}"
    workers = [
        SPAWN.Process(target=_contend, args=(redis_url, name, limit, prefix, threads, rounds))
        for _ in range(processes)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0, "a contending process failed"

    client = redis.Redis.from_url(redis_url)
    assert int(client.get(f"{prefix}:done") or 0) == processes * threads * rounds
    # never more than the limit at once, and the limit is actually used under load
    assert int(client.get(f"{prefix}:max") or 0) == limit
    assert int(client.get(f"{prefix}:current") or 0) == 0
    assert RedisSemaphore(redis_url, name, limit).holders() == 0


def test_slot_is_released_after_the_block_even_on_error(redis_url: str, name: str) -> None:
    semaphore = RedisSemaphore(redis_url, name, 1)
    with pytest.raises(KeyError), semaphore.slot(timeout=1):
        assert semaphore.holders() == 1
        raise KeyError("boom")
    assert semaphore.holders() == 0
    with semaphore.slot(timeout=0.1):
        pass


def test_timeout_raises_a_clear_error(redis_url: str, name: str) -> None:
    semaphore = RedisSemaphore(redis_url, name, 2)
    other = RedisSemaphore(redis_url, name, 2)
    with semaphore.slot(), other.slot():
        started = time.monotonic()
        timeout = pytest.raises(SemaphoreTimeout, match=r"no free slot \(limit 2\) within 0.2 s")
        with timeout, semaphore.slot(timeout=0.2):
            pass
        assert 0.18 <= time.monotonic() - started < 1.0
    # both released: a slot is free again
    with semaphore.slot(timeout=0.1):
        assert semaphore.holders() == 1


def test_crashed_holders_slot_is_reclaimed_after_the_lease(redis_url: str, name: str) -> None:
    held = SPAWN.Event()
    holder = SPAWN.Process(target=_hold_forever, args=(redis_url, name, held))
    holder.start()
    try:
        assert held.wait(timeout=20), "the holder process never got the slot"
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=10)
        assert holder.exitcode == -signal.SIGKILL
    finally:
        if holder.is_alive():
            holder.kill()

    semaphore = RedisSemaphore(redis_url, name, 1, lease_seconds=1)
    # the dead process still holds the only slot until its lease runs out...
    with pytest.raises(SemaphoreTimeout), semaphore.slot(timeout=0.1):
        pass
    # ...then the slot is reclaimed
    started = time.monotonic()
    with semaphore.slot(timeout=5):
        assert semaphore.holders() == 1
    assert time.monotonic() - started < 1.5


def test_unreachable_redis_is_a_clear_error(name: str) -> None:
    semaphore = RedisSemaphore("redis://:s3cret@127.0.0.1:1/0", name, 1)
    with pytest.raises(SemaphoreUnavailable, match="unreachable") as info, semaphore.slot(0.1):
        pass
    assert "s3cret" not in str(info.value)


def test_bad_arguments_are_rejected(redis_url: str) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        RedisSemaphore(redis_url, "x", 0)
    with pytest.raises(ValueError, match="lease_seconds must be positive"):
        RedisSemaphore(redis_url, "x", 1, lease_seconds=0)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        LocalSemaphore(0)


def test_local_semaphore_limits_threads_and_times_out() -> None:
    semaphore = LocalSemaphore(2)
    lock = threading.Lock()
    current = peak = 0

    def work() -> None:
        nonlocal current, peak
        for _ in range(5):
            with semaphore.slot(timeout=10):
                with lock:
                    current += 1
                    peak = max(peak, current)
                time.sleep(0.01)
                with lock:
                    current -= 1

    pool = [threading.Thread(target=work) for _ in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert peak == 2

    full = pytest.raises(SemaphoreTimeout, match="limit 2")
    with semaphore.slot(), semaphore.slot(), full, semaphore.slot(timeout=0.05):
        pass
    with semaphore.slot(timeout=0.05):
        pass
