"""Concurrency limits on calls to a remote API, shared by every worker process.

Akeneo allows a few concurrent calls per API connection; ten Celery workers each reading pages
would exceed that. ``RedisSemaphore`` counts holders in Redis so the limit holds across
processes and hosts; ``LocalSemaphore`` is the same interface for runs without Redis.

Holders are members of a sorted set scored by lease expiry. A holder that crashes (killed
worker, lost host) never releases its slot, so acquiring first drops the expired leases. No one
renews a lease: a slot covers one HTTP call, so the lease only has to outlive the HTTP timeout.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import redis

KEY_PREFIX = "pimsync:semaphore:"

# Server time (not the caller's clock) scores the leases: workers on hosts with skewed clocks
# must agree on which leases have expired.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ACQUIRE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
-- the key outlives every lease, then vanishes when nobody uses the limit any more
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease + 1000)
end
return 1
"""
)

_RELEASE = "return redis.call('ZREM', KEYS[1], ARGV[1])"

_HOLDERS = (
    _NOW_MS
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
)

# Short polls keep the wait close to the moment a slot frees up; the jitter keeps waiting
# processes from hitting Redis in lockstep.
POLL_MIN_SECONDS = 0.01
POLL_MAX_SECONDS = 0.05


class SemaphoreTimeout(TimeoutError):
    """No slot became free within the timeout."""


class SemaphoreUnavailable(RuntimeError):
    """The shared store behind the semaphore (Redis) could not be reached."""


class Limiter(Protocol):
    """What API clients need from a limiter: a slot held for the duration of one call."""

    def slot(self, timeout: float | None = None) -> AbstractContextManager[None]: ...


def _redacted(url: str) -> str:
    """The URL without a password, fit for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisSemaphore:
    """A counting semaphore in Redis, shared by every process that uses the same ``name``.

    ``lease_seconds`` bounds how long a crashed holder keeps its slot; it must exceed the
    longest call made while holding a slot (the HTTP timeout), or a slow call would lose its
    slot to another process and the limit would be exceeded.
    """

    def __init__(self, url: str, name: str, limit: int, lease_seconds: float = 60) -> None:
        if limit < 1:
            raise ValueError(f"semaphore {name!r}: limit must be at least 1, got {limit}")
        if lease_seconds <= 0:
            raise ValueError(f"semaphore {name!r}: lease_seconds must be positive")
        self.name = name
        self.limit = limit
        self.lease_seconds = lease_seconds
        self.key = KEY_PREFIX + name
        self._url = url
        self._client = redis.Redis.from_url(url)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._holders = self._client.register_script(_HOLDERS)

    def __repr__(self) -> str:
        return f"RedisSemaphore({self.name!r}, limit={self.limit}, url={_redacted(self._url)!r})"

    def try_acquire(self) -> str | None:
        """Take a slot if one is free now: the holder token to release, else None."""
        token = uuid.uuid4().hex
        lease_ms = max(1, int(self.lease_seconds * 1000))
        try:
            got = self._acquire(keys=[self.key], args=[token, self.limit, lease_ms])
        except redis.RedisError as exc:
            raise SemaphoreUnavailable(
                f"semaphore {self.name!r}: Redis at {_redacted(self._url)} unreachable: {exc}"
            ) from None
        return token if got == 1 else None

    def acquire(self, timeout: float | None = None) -> str:
        """Wait for a slot (forever when ``timeout`` is None); the holder token to release."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            token = self.try_acquire()
            if token is not None:
                return token
            pause = random.uniform(POLL_MIN_SECONDS, POLL_MAX_SECONDS)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SemaphoreTimeout(
                        f"semaphore {self.name!r}: no free slot (limit {self.limit}) "
                        f"within {timeout:g} s"
                    )
                pause = min(pause, left)
            time.sleep(pause)

    def release(self, token: str) -> bool:
        """Give the slot back; False when the lease had already expired and been reclaimed."""
        try:
            return bool(self._release(keys=[self.key], args=[token]))
        except redis.RedisError:
            # The lease expires on its own; failing the caller's finished call would be worse.
            return False

    def holders(self) -> int:
        """How many unexpired leases are held right now."""
        try:
            return int(self._holders(keys=[self.key]))
        except redis.RedisError as exc:
            raise SemaphoreUnavailable(
                f"semaphore {self.name!r}: Redis at {_redacted(self._url)} unreachable: {exc}"
            ) from None

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """Hold one slot for the body of the ``with`` block."""
        token = self.acquire(timeout)
        try:
            yield
        finally:
            self.release(token)

    def close(self) -> None:
        self._client.close()


class LocalSemaphore:
    """``RedisSemaphore``'s interface over a thread semaphore (one process only)."""

    def __init__(self, limit: int, name: str = "local") -> None:
        if limit < 1:
            raise ValueError(f"semaphore {name!r}: limit must be at least 1, got {limit}")
        self.name = name
        self.limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)

    def __repr__(self) -> str:
        return f"LocalSemaphore({self.name!r}, limit={self.limit})"

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[None]:
        """Hold one slot for the body of the ``with`` block."""
        if not self._semaphore.acquire(timeout=timeout):
            raise SemaphoreTimeout(
                f"semaphore {self.name!r}: no free slot (limit {self.limit}) within {timeout:g} s"
            )
        try:
            yield
        finally:
            self._semaphore.release()

    def close(self) -> None:
        pass
