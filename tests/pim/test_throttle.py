"""The PIM connection's shared "not before" instant and health, on a real Redis: what one
worker learns, every worker (and the web process) sees."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from app.pim.throttle import (
    LocalGate,
    RedisGate,
    connection_key,
    health_note,
    read_health,
    waiting_note,
)

pytestmark = pytest.mark.redis


def test_connection_key_is_stable_and_holds_no_secret() -> None:
    key = connection_key("https://pim.example.com/", "client-1")
    assert key == connection_key("https://pim.example.com", "client-1")
    assert key != connection_key("https://pim.example.com", "client-2")
    assert key != connection_key("https://other.example.com", "client-1")
    assert len(key) == 16 and "pim.example" not in key and "client" not in key


def test_the_later_instant_wins_across_processes(redis_url: str) -> None:
    key = uuid.uuid4().hex[:16]
    one = RedisGate(redis_url, key, "http://pim.test")
    two = RedisGate(redis_url, key, "http://pim.test")  # another worker
    try:
        assert one.not_before() is None
        now = time.time()
        assert one.hold(now + 120, "429") == pytest.approx(now + 120, abs=0.001)
        # a shorter wait does not shorten it; both see the same instant
        assert two.hold(now + 2, "503") == pytest.approx(now + 120, abs=0.001)
        assert two.not_before() == pytest.approx(now + 120, abs=0.001)
        # the key lives as long as the wait (and a second): it is gone after
        client = redis.Redis.from_url(redis_url)
        ttl = client.pttl(f"pimsync:pim:{key}:not-before")
        client.close()
        assert 110_000 < ttl <= 121_000  # less by the time this test took
    finally:
        one.close()
        two.close()


def test_health_as_the_web_process_reads_it(redis_url: str) -> None:
    key = uuid.uuid4().hex[:16]
    gate = RedisGate(redis_url, key, "http://user:pw@pim.test:8080")
    try:
        gate.record("200", ok=True)
        gate.record("503", ok=False)
        gate.record("503", ok=False)
        until = gate.hold(time.time() + 40, "503")
        mine = {h.key: h for h in read_health(redis_url)}[key]
        assert mine.base_url == "http://pim.test:8080"  # no credentials shown
        assert (mine.up, mine.last_status, mine.requests) == (False, "503", {"200": 1, "503": 2})
        assert mine.since is not None and mine.not_before == pytest.approx(until, abs=0.001)
        # less by the time this test took; the instant is kept in whole milliseconds, rounded
        # up, so a check within the same millisecond may read up to 1 ms more than 40 s
        assert 30 < mine.backoff_seconds() <= 40.001
        note = health_note(mine)
        assert note is not None and note.startswith("waiting for PIM: 503 since ")
        assert f"next try {time.strftime('%H:%M:%S', time.gmtime(until))}" in note

        gate.record("200", ok=True)  # it answers again
        mine = {h.key: h for h in read_health(redis_url)}[key]
        assert (mine.up, mine.since, mine.last_status) == (True, None, None)
        assert mine.requests == {"200": 2, "503": 2}
    finally:
        gate.close()


def test_an_unreachable_redis_never_fails_the_read() -> None:
    gate = RedisGate("redis://127.0.0.1:1/0", "k", "http://pim.test")
    now = time.time()
    assert gate.not_before() is None
    assert gate.hold(now + 5, "429") == now + 5
    gate.record("429", ok=False)  # nothing raised
    gate.close()


def test_waiting_note() -> None:
    now = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    assert waiting_note(None, None, None, now) is None
    assert waiting_note("429", None, now - 1, now) is None  # the wait is over
    assert (
        waiting_note("429", now - 120, now + 60, now)
        == "waiting for PIM: 429 since 22:11:20, next try 22:14:20"
    )
    assert waiting_note("ConnectError", now - 5, None, now) == (
        "waiting for PIM: ConnectError since 22:13:15"
    )
    local = LocalGate()
    local.record("502", ok=False)
    assert local.health().up is False and local.health().last_status == "502"
