"""The PIM's "not before" instant and its health, shared by every process of one connection.

A PIM that answers 429 (or 503) with ``Retry-After`` asks the *connection* for quiet, not the
one worker that happened to ask: the instant it named is kept in Redis under a key derived
from the PIM's base URL and API client id (hashed: no URL credentials in keys), and every
worker checks it before any request to that PIM. The same place keeps the connection's
health (up or down, since when, the last failing status, requests by status), so the web
process, which never talks to the PIM, shows what the workers see: ``pimsync runs``, the
dashboard and ``/metrics`` read it from here.

``RedisGate`` is the shared store; ``LocalGate`` the same interface in one process (no Redis,
tests). A gate never fails its caller: if Redis is unreachable the read goes on (the
concurrency limiter reports Redis itself) and the state is simply not shared.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis

from app.config import Settings

KEY_PREFIX = "pimsync:pim:"
# Every connection's key, for the web process to list them (metrics, dashboard).
CONNECTIONS_KEY = KEY_PREFIX + "connections"
# Health and request counts outlive any outage worth showing, then vanish if unused.
STATE_TTL_SECONDS = 7 * 24 * 3600

# Keep the later of the stored and the new instant: a worker told "wait 2 s" must not
# shorten another's "wait 120 s". ARGV: until (epoch ms), ttl ms.
_HOLD = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ms = tonumber(ARGV[1])
if until_ms > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return until_ms
end
return current
"""


def connection_key(base_url: str, client_id: str) -> str:
    """A PIM connection's key: the same for every worker, with nothing secret in it."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}|{client_id}".encode()).hexdigest()
    return digest[:16]


def shown_url(url: str) -> str:
    """``url`` without user info, fit for keys' values, logs and the dashboard."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class PimHealth:
    """What the workers last saw of one PIM connection (times are epoch seconds)."""

    key: str
    base_url: str
    up: bool
    since: float | None  # the first failure of the current outage (None while up)
    last_status: str | None  # the answer that failed last: "429", "503", "ConnectError"...
    not_before: float | None  # no request before this instant (None: free now)
    checked_at: float | None
    requests: dict[str, int]

    def backoff_seconds(self, now: float | None = None) -> float:
        """How long until the PIM may be called again (0 when it may be now)."""
        if self.not_before is None:
            return 0.0
        return max(0.0, self.not_before - (time.time() if now is None else now))

    @property
    def throttling(self) -> bool:
        return self.last_status in ("429", "503") and not self.up


class Gate(Protocol):
    key: str

    def not_before(self) -> float | None:
        """The instant (epoch seconds) before which nobody calls this PIM, or None (it may
        be past already: the caller compares it with its clock)."""
        ...

    def hold(self, until: float, status: str) -> float:
        """Nobody calls before ``until``; the instant now in force (the later one)."""
        ...

    def record(self, status: str, ok: bool) -> None:
        """One answer (``status``: the HTTP status or the transport error's name)."""
        ...

    def close(self) -> None: ...


class LocalGate:
    """The gate of one process (no Redis)."""

    def __init__(self, key: str = "local", base_url: str = "") -> None:
        self.key = key
        self.base_url = base_url
        self._lock = threading.Lock()
        self._until = 0.0
        self._down_since: float | None = None
        self._last: str | None = None
        self._checked: float | None = None
        self.requests: dict[str, int] = {}

    def not_before(self) -> float | None:
        with self._lock:
            return self._until or None

    def hold(self, until: float, status: str) -> float:
        with self._lock:
            self._until = max(self._until, until)
            return self._until

    def record(self, status: str, ok: bool) -> None:
        now = time.time()
        with self._lock:
            self.requests[status] = self.requests.get(status, 0) + 1
            self._checked = now
            if ok:
                self._down_since, self._last = None, None
            else:
                self._last = status
                if self._down_since is None:
                    self._down_since = now

    def health(self) -> PimHealth:
        with self._lock:
            return PimHealth(
                key=self.key,
                base_url=self.base_url,
                up=self._down_since is None,
                since=self._down_since,
                last_status=self._last,
                not_before=self._until if self._until > time.time() else None,
                checked_at=self._checked,
                requests=dict(self.requests),
            )

    def close(self) -> None:
        pass


class RedisGate:
    """The gate of one PIM connection, shared through Redis by every process and host."""

    def __init__(self, url: str, key: str, base_url: str) -> None:
        self.key = key
        self.base_url = shown_url(base_url)
        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self._hold = self._client.register_script(_HOLD)
        self._registered = False

    def not_before(self) -> float | None:
        try:
            raw = self._client.get(_until_key(self.key))
        except redis.RedisError:
            return None
        if raw is None:
            return None
        until = int(raw) / 1000
        return until if until > time.time() else None

    def hold(self, until: float, status: str) -> float:
        until_ms = math.ceil(until * 1000)
        ttl_ms = max(1, until_ms - int(time.time() * 1000)) + 1000
        try:
            kept = self._hold(keys=[_until_key(self.key)], args=[until_ms, ttl_ms])
        except redis.RedisError:
            return until
        return max(until, int(kept) / 1000)

    def record(self, status: str, ok: bool) -> None:
        now = time.time()
        state = _state_key(self.key)
        try:
            pipe = self._client.pipeline(transaction=True)
            if not self._registered:
                pipe.sadd(CONNECTIONS_KEY, self.key)
                pipe.hset(state, "base_url", self.base_url)
            pipe.hincrby(_requests_key(self.key), status, 1)
            pipe.hset(state, mapping={"checked_at": f"{now:.3f}", "up": "1" if ok else "0"})
            if ok:
                pipe.hdel(state, "since", "last_status")
            else:
                pipe.hset(state, "last_status", status)
                pipe.hsetnx(state, "since", f"{now:.3f}")
            for key in (state, _requests_key(self.key)):
                pipe.expire(key, STATE_TTL_SECONDS)
            pipe.execute()
            self._registered = True
        except redis.RedisError:
            pass  # health is for display: the read itself goes on

    def close(self) -> None:
        self._client.close()


def _until_key(key: str) -> str:
    return f"{KEY_PREFIX}{key}:not-before"


def _state_key(key: str) -> str:
    return f"{KEY_PREFIX}{key}:health"


def _requests_key(key: str) -> str:
    return f"{KEY_PREFIX}{key}:requests"


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read_health(url: str) -> list[PimHealth]:
    """Every PIM connection the workers have talked to (through the Redis at ``url``), for
    the processes that do not talk to the PIM themselves. Raises ``redis.RedisError``."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = sorted(_text(k) or "" for k in client.smembers(CONNECTIONS_KEY))
        found = []
        for key in keys:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(_state_key(key))
            pipe.hgetall(_requests_key(key))
            pipe.get(_until_key(key))
            state, requests, until = pipe.execute()
            if not state:
                client.srem(CONNECTIONS_KEY, key)  # expired: nobody used it for a week
                continue
            state = {_text(k): v for k, v in state.items()}
            not_before = _float(until)
            found.append(
                PimHealth(
                    key=key,
                    base_url=_text(state.get("base_url")) or "?",
                    up=_text(state.get("up")) != "0",
                    since=_float(state.get("since")),
                    last_status=_text(state.get("last_status")),
                    not_before=None if not_before is None else not_before / 1000,
                    checked_at=_float(state.get("checked_at")),
                    requests={_text(k) or "?": int(v) for k, v in requests.items()},
                )
            )
        return found
    finally:
        client.close()


def health_or_none(url: str | None) -> list[PimHealth] | None:
    """``read_health``, or None when there is no Redis to ask (or it cannot be reached)."""
    if not url or url.lower() in ("none", "local"):
        return None
    try:
        return read_health(url)
    except redis.RedisError:
        return None


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def waiting_note(
    status: str | None, since: float | None, until: float | None, now: float | None = None
) -> str | None:
    """``waiting for PIM: 429 since 12:04:10, next try 12:06:10`` (UTC), or None when the PIM
    is neither failing nor asking for quiet."""
    now = time.time() if now is None else now
    if since is None and (until is None or until <= now):
        return None
    parts = [f"waiting for PIM: {status}" if status else "waiting for PIM"]
    if since is not None:
        parts.append(f" since {_clock(since)}")
    if until is not None and until > now:
        parts.append(f", next try {_clock(until)}")
    return "".join(parts)


def health_note(health: PimHealth, now: float | None = None) -> str | None:
    """The waiting note of a connection's health (None while it answers)."""
    return waiting_note(health.last_status, health.since, health.not_before, now)


def connection_health(settings: Settings) -> PimHealth | None:
    """The live health of the PIM connection the settings name (None: not an Akeneo PIM,
    no Redis, or no worker has called it yet)."""
    source = settings.pim_source
    if not source.lower().startswith(("http://", "https://")):
        return None
    key = connection_key(source.rstrip("/"), settings.akeneo_client_id)
    for health in health_or_none(settings.redis_url) or ():
        if health.key == key:
            return health
    return None
