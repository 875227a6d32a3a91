"""Events end to end: webhook and domain-event bursts, then product page reads, on real parts.

    python -m bench.events [--skus 500] [--events 10000] [--rate 200] [--read-rate 500]
                           [--event-skus 1000]

What runs (everything on this machine):

- the reference PIM with a generated catalog of ``--skus`` products, fully synced first (the
  pages the events land on exist, as in production);
- ``pimsync web`` (uvicorn, one process): the webhook (Akeneo Events API, HMAC-signed) and
  ``POST /events/{pricing,inventory,media}`` (bearer token per source), and the page reads;
- one Celery worker (prefork, ``--concurrency``) on every queue, Redis, a scratch PostgreSQL.

Events: ``--events`` of them, to every published SKU or to ``--event-skus`` of them (needed on
a large catalog: the webhooks carry each product, fetched from the PIM first), 20 % webhooks
(a product renamed: mirror, publish to every channel, catalog event, page) and 80 %
pricing/inventory/media events for every channel; one in ten is a re-delivery of an earlier
one (same event id, same source version), and each domain's versions are shuffled in windows
of 20, so older versions often arrive after newer ones.

Phases:

1. ``paced``: the events sent at ``--rate`` per second (16 keep-alive connections). Event-to-visible
   latency is from the moment a request is sent to the moment a poller (every 20 ms, one
   query by primary key for the SKUs with events in flight) sees the page in de_storefront
   carry it: the new title, or a domain version at least
   the event's (an event a newer one overtook counts as visible when it is). Also the webhook
   acknowledgement latency as the sender saw it (client overhead included).
2. ``burst``: as many again, sent as fast as the senders go: intake events/s, and events/s
   until the last one is visible.
3. ``reads``: ``GET /channels/de_storefront/products/{sku}`` at ``--read-rate`` per second for
   ``--read-seconds``, random SKUs: latency p50/p99 as the client saw it.
4. ``listings``: for ``--read-seconds``, 16 clients (a process of their own) list the channel's
   pages, 200 a page, as fast as they are answered, while signed webhooks arrive at 20 a
   second, each followed by a ``/healthz``: the acknowledgement and health check latency
   under the crowd (issue 15 wants p99 < 100 ms), the pages listed, the web process's memory.

PIM events coalesce per SKU for ``--coalesce`` seconds (the setting
``PIMSYNC_EVENT_COALESCE_SECONDS``, default 1 s in production): webhook latency includes it.

Output: the JSON report on stdout; progress and a short table on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg
from sqlalchemy import create_engine, text

from app.config import get_settings
from app.db import session_scope
from app.pim.sources import open_source
from app.sync import ingest
from app.sync.models import SyncRun
from bench.harness.catalog import ensure_catalog
from bench.harness.report import machine, run_bench, say
from bench.harness.stack import (
    CREDENTIALS,
    ReferencePim,
    Service,
    Worker,
    flush_redis,
    free_port,
    point_this_process_at,
    redis_database,
    scratch_database,
    stack_env,
)

SECRET = "bench-webhook-secret"
TOKENS = {"erp": "bench-erp", "wms": "bench-wms", "dam": "bench-dam"}
SOURCE_OF = {"pricing": "erp", "inventory": "wms", "media": "dam"}
QUEUES = "sync,publish,events.pim,events.catalog,events.pricing,events.inventory,events.media"
CHANNEL = "de_storefront"
POLL_SECONDS = 0.02
SENDERS = 16  # keep-alive connections of the event senders
SHUFFLE_WINDOW = 20
VISIBLE_TIMEOUT = 180.0


@dataclass
class Event:
    kind: str  # webhook | pricing | inventory | media
    sku: str
    key: str  # event id (webhook) or source version (domain)
    body: bytes
    marker: str = ""  # the title a webhook sets
    version: int = 0  # domain: source version; webhook: order of the PIM's `updated`
    duplicate: bool = False
    sent_at: float = 0.0
    acked_at: float = 0.0
    status: int = 0
    visible_at: float = 0.0


@dataclass
class Tracker:
    """What the poller saw: per SKU, the newest title and domain versions in de_storefront."""

    url: str
    events: list[Event] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    polls: int = 0
    state: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # per SKU, the events not yet visible; events sent since the last poll
    _waiting: dict[str, list[Event]] = field(default_factory=dict)
    _sent: deque[Event] = field(default_factory=deque)
    _order: dict[str, int] = field(default_factory=dict)
    _left: int = 0

    def watch(self, events: list[Event]) -> None:
        """Track these events (before any is sent); duplicates are not waited for."""
        self.events = events
        self._order = {e.marker: e.version for e in events if e.kind == "webhook"}
        waiting: dict[str, list[Event]] = {}
        for e in events:
            if not e.duplicate:
                waiting.setdefault(e.sku, []).append(e)
        self._waiting, self._left = waiting, sum(map(len, waiting.values()))

    def sent(self, e: Event) -> None:
        self._sent.append(e)  # from the senders (deque appends are thread-safe)

    def stuck(self, limit: int = 10) -> list[dict[str, Any]]:
        """Events not visible yet, with what the page shows (for a failure report)."""
        out = []
        for e in self.events:
            if e.duplicate or e.visible_at:
                continue
            out.append(
                {
                    "kind": e.kind,
                    "sku": e.sku,
                    "version": e.version,
                    "marker": e.marker,
                    "status": e.status,
                    "page": self.state.get(e.sku),
                }
            )
            if len(out) >= limit:
                break
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def pending(self) -> int:
        return self._left

    def _loop(self) -> None:

        conn = psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"))
        conn.autocommit = True
        watched: set[str] = set()  # SKUs with an event sent and not yet seen on the page
        try:
            while not self._stop.wait(POLL_SECONDS):
                while self._sent:
                    watched.add(self._sent.popleft().sku)
                if not watched:
                    continue
                # only the pages of the SKUs waited for, by primary key: a scan of the
                # table (every page written lately, as this poller once read) costs the
                # database a core at 200,000 pages and slowed what it measured
                rows = conn.execute(
                    "SELECT sku, catalog->'title'->>'de_DE', pricing_version, "
                    "inventory_version, media_version FROM product_page "
                    "WHERE channel = %s AND sku = ANY(%s)",
                    (CHANNEL, sorted(watched)),
                ).fetchall()
                now = time.monotonic()
                self.polls += 1
                for r in rows:
                    self.state[r[0]] = r[1:5]
                self._mark(watched, now)
                watched = {
                    sku
                    for sku in watched
                    if any(e.sent_at and not e.visible_at for e in self._waiting.get(sku, ()))
                }
        finally:
            conn.close()

    def _mark(self, skus: set[str], now: float) -> None:
        column = {"pricing": 1, "inventory": 2, "media": 3}
        for sku in skus:
            row = self.state.get(sku)
            waiting = self._waiting.get(sku)
            if row is None or not waiting:
                continue
            for e in waiting:
                if not e.sent_at:
                    continue
                if e.kind == "webhook":
                    # the title it set is shown, or that of a newer state of the product (the
                    # mirror keeps the newest `updated`, whatever the arrival order)
                    if self._order.get(row[0], -1) >= e.version:
                        e.visible_at = now
                elif (row[column[e.kind]] or 0) >= e.version:
                    e.visible_at = now
            left = [e for e in waiting if not e.visible_at]
            self._left -= len(waiting) - len(left)
            self._waiting[sku] = left


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def stats_ms(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def signed(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Akeneo-Request-Signature": sig,
        "X-Akeneo-Request-Timestamp": ts,
        "Content-Type": "application/json",
    }


def make_events(
    skus: list[str],
    count: int,
    seed: int,
    tag: str,
    products: dict[str, dict[str, Any]],
    webhook_share: float = 0.2,
) -> list[Event]:
    """``count`` events: 20 % webhooks, the rest domain events; 10 % re-deliveries.

    A webhook carries the product as the PIM serves it (a variant with the values it
    inherits, as Akeneo sends them), renamed."""

    rng = random.Random(seed)
    base = datetime.now(UTC)
    versions: dict[tuple[str, str], int] = {}
    originals: list[Event] = []
    n_original = count - count // 10
    for n in range(n_original):
        sku = rng.choice(skus)
        if rng.random() < webhook_share:
            marker = f"bench {tag}-{n}"
            product = copy.deepcopy(products[sku])
            product.pop("_links", None)
            for entry in product["values"]["name"]:
                entry["data"] = marker
            # strictly increasing in generation order, which the shuffle below then breaks
            updated = (base + timedelta(milliseconds=n)).isoformat()
            product["updated"] = updated
            event_id = f"{tag}-{n}"
            body = orjson.dumps(
                {
                    "events": [
                        {
                            "action": "product.updated",
                            "event_id": event_id,
                            "event_datetime": updated,
                            "author": "bench",
                            "data": {"resource": product},
                        }
                    ]
                }
            )
            originals.append(Event("webhook", sku, event_id, body, marker=marker, version=n))
            continue
        domain = ("pricing", "inventory", "media")[n % 3]
        version = versions[(domain, sku)] = versions.get((domain, sku), 0) + 1
        originals.append(Event(domain, sku, str(version), b"", version=version))
    # out of order: shuffle in windows (within a domain and SKU, newer may overtake older)
    for start in range(0, len(originals), SHUFFLE_WINDOW):
        window = originals[start : start + SHUFFLE_WINDOW]
        rng.shuffle(window)
        originals[start : start + SHUFFLE_WINDOW] = window
    events = list(originals)
    for _ in range(count - n_original):  # re-deliveries, later than the original
        source = rng.choice(originals)
        at = rng.randint(events.index(source) + 1, len(events))
        events.insert(
            at,
            Event(
                source.kind,
                source.sku,
                source.key,
                source.body,
                marker=source.marker,
                version=source.version,
                duplicate=True,
            ),
        )
    return events


def domain_body(e: Event) -> bytes:
    payload: dict[str, Any]
    if e.kind == "pricing":
        payload = {"amount": f"{e.version}.99", "currency": "EUR"}
    elif e.kind == "inventory":
        payload = {"quantity": e.version}
    else:
        payload = {"images": [f"https://dam.example/{e.sku}/{e.version}.jpg"]}
    return orjson.dumps(
        {
            "sku": e.sku,
            "source_version": e.version,
            # the time it left its source: the projection lag metric starts here
            "occurred_at": datetime.now(UTC).isoformat(),
            "payload": payload,
        }
    )


def request_bytes(e: Event) -> bytes:
    """The whole HTTP/1.1 request for an event, signed (webhooks) or with its source's token."""
    if e.kind == "webhook":
        path, body = "/webhooks/akeneo", e.body
        headers = signed(body)
    else:
        path, body = f"/events/{e.kind}", domain_body(e)
        headers = {
            "Authorization": f"Bearer {TOKENS[SOURCE_OF[e.kind]]}",
            "Content-Type": "application/json",
        }
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


async def _read_status(reader: Any) -> int:
    """One HTTP/1.1 response off a keep-alive connection: its status (the body is drained)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def send(events: list[Event], web: str, rate: float, on_sent: Any = None) -> float:
    """Send every event (paced at ``rate``/s, or as fast as the connections go when 0); wall
    seconds. Open loop: event i leaves at ``i / rate`` on whichever of SENDERS keep-alive
    connections is free. Requests are written and read as raw HTTP/1.1 on asyncio streams:
    an HTTP client library would take a good share of the two cores the stack is measured on.
    """

    host, _, port = web.removeprefix("http://").partition(":")
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (i := await queue.get()) is not None:
                e = events[i]
                data = request_bytes(e)
                e.sent_at = time.monotonic()
                if on_sent is not None:
                    on_sent(e)
                writer.write(data)
                e.status = await _read_status(reader)
                e.acked_at = time.monotonic()
        finally:
            writer.close()

    async def main() -> float:
        start = time.monotonic()
        senders = [asyncio.create_task(connection()) for _ in range(SENDERS)]
        for i in range(len(events)):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            queue.put_nowait(i)
        for _ in senders:
            queue.put_nowait(None)
        await asyncio.gather(*senders)
        return time.monotonic() - start

    return asyncio.run(main())


def wait_visible(tracker: Tracker, timeout: float, web: Service, worker: Service) -> float:
    started = time.monotonic()
    last = started
    while tracker.pending():
        web.check_alive()
        worker.check_alive()
        now = time.monotonic()
        if now - started > timeout:
            raise RuntimeError(
                f"{tracker.pending()} events not visible after {timeout:.0f}s, e.g. "
                + json.dumps(tracker.stuck(), default=str)
            )
        if now - last > 5:
            last = now
            say(f"  waiting: {tracker.pending()} events not visible yet")
        time.sleep(0.05)
    return time.monotonic() - started


def event_phase(
    name: str, events: list[Event], tracker: Tracker, web: Service, worker: Service, rate: float
) -> dict[str, Any]:
    tracker.watch(events)
    say(f"phase {name}: {len(events)} events " + (f"at {rate:.0f}/s" if rate else "unpaced"))
    started = time.monotonic()
    sent_seconds = send(events, f"http://127.0.0.1:{web.port}", rate, tracker.sent)  # type: ignore[attr-defined]
    refused = [e for e in events if e.status >= 300]
    if refused:
        raise RuntimeError(f"{len(refused)} events refused, e.g. status {refused[0].status}")
    wait_visible(tracker, VISIBLE_TIMEOUT, web, worker)
    drained = max(e.visible_at for e in events if e.visible_at) - started
    originals = [e for e in events if not e.duplicate]
    by_kind: dict[str, Any] = {}
    for kind in ("webhook", "pricing", "inventory", "media"):
        of_kind = [e for e in originals if e.kind == kind]
        by_kind[kind] = stats_ms([max(0.0, e.visible_at - e.sent_at) for e in of_kind])
    domain = [e for e in originals if e.kind != "webhook"]
    result = {
        "events": len(events),
        "duplicates": len(events) - len(originals),
        "send_seconds": round(sent_seconds, 2),
        "intake_events_per_s": round(len(events) / sent_seconds, 1),
        "drain_seconds": round(drained, 2),
        "events_per_s_to_visible": round(len(events) / drained, 1),
        "event_to_visible": stats_ms([max(0.0, e.visible_at - e.sent_at) for e in originals]),
        "event_to_visible_domain": stats_ms([max(0.0, e.visible_at - e.sent_at) for e in domain]),
        "event_to_visible_by_kind": by_kind,
        "ack": {
            kind: stats_ms([e.acked_at - e.sent_at for e in events if e.kind == kind])
            for kind in ("webhook", "pricing", "inventory", "media")
        },
    }
    say(
        f"phase {name}: sent in {sent_seconds:.1f}s, all visible after {drained:.1f}s; "
        f"event-to-visible p50 {result['event_to_visible']['p50_ms']} ms, "
        f"p99 {result['event_to_visible']['p99_ms']} ms; webhook ack p99 "
        f"{result['ack']['webhook'].get('p99_ms')} ms"
    )
    return result


def read_phase(web: str, skus: list[str], rate: float, seconds: float) -> dict[str, Any]:
    total = int(rate * seconds)
    rng = random.Random(3)
    chosen = [rng.choice(skus) for _ in range(total)]
    latencies: list[float] = [0.0] * total
    statuses: list[int] = [0] * total
    local = threading.local()
    start = time.monotonic()

    def one(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=web, timeout=30)
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.monotonic()
        r = local.client.get(f"/channels/{CHANNEL}/products/{chosen[i]}")
        latencies[i] = time.monotonic() - t
        statuses[i] = r.status_code

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(one, range(total)))
    wall = time.monotonic() - start
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} reads failed, e.g. status {bad[0]}")
    result = {"requests": total, "achieved_per_s": round(total / wall, 1), **stats_ms(latencies)}
    say(
        f"phase reads: {total} at {result['achieved_per_s']}/s: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms"
    )
    return result


LISTERS = 16  # concurrent clients listing a channel's pages (issue 15: they starved intake)
READ_TOKEN = "bench-read-token"


def listing_phase(web: Web, seconds: float, webhook_rate: float = 20.0) -> dict[str, Any]:
    """Webhook acknowledgements (and /healthz) while LISTERS clients list the channel's pages
    as fast as they are answered (200 a page, with the read token): the intake must not wait
    behind them. The listers run in a process of their own (bench/harness/listers.py): in
    this one, 16 threads decoding pages held the GIL the sender's clock needs, and the bench
    measured its own client. The web process's memory is sampled meanwhile."""
    base = f"http://127.0.0.1:{web.port}"
    idle_rss = psutil.Process(web.pid).memory_info().rss
    crowd = subprocess.Popen(
        [sys.executable, "-m", "bench.harness.listers", base, READ_TOKEN, CHANNEL, str(LISTERS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    acks: list[float] = []
    health: list[float] = []
    rss: list[int] = []
    try:
        assert crowd.stdout is not None
        if crowd.stdout.readline().strip() != b"ready":
            raise RuntimeError("the listing clients did not start (see above)")
        with httpx.Client(base_url=base, timeout=30) as client:
            n, start = 0, time.monotonic()
            while time.monotonic() < start + seconds:
                delay = start + n / webhook_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event = {
                    "action": "product.removed",
                    "event_id": f"listing-phase-{n}",
                    "event_datetime": datetime.now(UTC).isoformat(),
                    "data": {"resource": {"identifier": f"NO-SUCH-{n}"}},
                }
                body = orjson.dumps({"events": [event]})
                t = time.monotonic()
                r = client.post("/webhooks/akeneo", content=body, headers=signed(body))
                acks.append(time.monotonic() - t)
                if r.status_code != 200:
                    raise RuntimeError(f"webhook answered {r.status_code}: {r.text[:200]}")
                t = time.monotonic()
                if client.get("/healthz").status_code != 200:
                    raise RuntimeError("/healthz failed under listing load")
                health.append(time.monotonic() - t)
                rss.append(psutil.Process(web.pid).memory_info().rss)
                n += 1
    finally:
        out, _ = crowd.communicate(timeout=60)  # stdin closed: the listers stop and report
    if crowd.returncode != 0:
        raise RuntimeError(f"the listing clients failed ({crowd.returncode})")
    load = orjson.loads(out.strip().splitlines()[-1])
    result = {
        "listers": LISTERS,
        "listing_pages": load["pages"],
        "listing_pages_per_s": round(load["pages"] / max(load["seconds"], 1e-9), 1),
        "listing_mib_per_s": round(load["bytes"] / 2**20 / max(load["seconds"], 1e-9), 1),
        "listing_answers": load["statuses"],
        "webhooks": len(acks),
        "webhook_ack": stats_ms(acks),
        "healthz": stats_ms(health),
        "web_rss_mib": {
            "idle": round(idle_rss / 2**20),
            "max_under_listing": round(max(rss, default=idle_rss) / 2**20),
        },
    }
    say(
        f"phase listings: {load['pages']} listing pages by {LISTERS} clients "
        f"({result['listing_pages_per_s']}/s, answers {load['statuses']}); webhook ack p50 "
        f"{result['webhook_ack']['p50_ms']} ms, p99 {result['webhook_ack']['p99_ms']} ms; "
        f"/healthz p99 {result['healthz']['p99_ms']} ms; web memory "
        f"{result['web_rss_mib']['idle']} -> {result['web_rss_mib']['max_under_listing']} MiB"
    )
    return result


WRK_SCRIPT = """
local skus = {%(skus)s}
local i = 0
local pause = %(pause)f
request = function()
  i = i + 1
  return wrk.format("GET", "/channels/%(channel)s/products/" .. skus[(i %% #skus) + 1])
end
-- a random pause (mean `pause`): connections that all waited the same time would send in
-- lockstep, 32 requests at once, and measure their own queue instead of a steady rate
delay = function() return math.random() * 2 * pause end
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""
WRK_CONNECTIONS = 32


def read_phase_wrk(web: str, skus: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """The same reads driven by wrk (C, one thread): the load generator takes far less of
    the machine's two cores than Python clients. Each of the connections waits a random time
    between requests (uniform, so arrivals spread as a steady stream's would) so that
    together they offer about ``rate`` requests/s."""

    order = list(skus)
    random.Random(3).shuffle(order)
    pause_ms = max(0.0, WRK_CONNECTIONS * 1000 / rate - 1.0)
    script = WRK_SCRIPT % {
        "skus": ",".join(f'"{s}"' for s in order),
        "pause": pause_ms,
        "channel": CHANNEL,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        done = subprocess.run(
            [
                *("wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds:.0f}s"),
                *("--timeout", "5s", "-s", f.name, web),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        Path(f.name).unlink()
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    n, duration_us, p50, p90, p99, worst, bad_status, errors = map(int, line.split()[1:])
    if bad_status or errors:
        raise RuntimeError(f"wrk: {bad_status} non-2xx answers, {errors} socket errors")
    result = {
        "driver": f"wrk, {WRK_CONNECTIONS} connections, random pauses of {pause_ms:.0f} ms mean",
        "requests": n,
        "achieved_per_s": round(n / (duration_us / 1e6), 1),
        "p50_ms": round(p50 / 1000, 2),
        "p90_ms": round(p90 / 1000, 2),
        "p99_ms": round(p99 / 1000, 2),
        "max_ms": round(worst / 1000, 2),
    }
    say(
        f"phase reads (wrk): {n} at {result['achieved_per_s']}/s: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms"
    )
    return result


def settle(idle_below: float = 20.0, timeout: float = 60.0) -> float:
    """Wait until the machine is quiet (what the event phases left: the last catalog events,
    autovacuum after thousands of updates), so the reads are measured at a steady state;
    returns the seconds waited."""

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if psutil.cpu_percent(interval=1.0) < idle_below:
            break
    waited = time.monotonic() - started
    say(f"reads: machine quiet after {waited:.0f}s")
    return round(waited, 1)


class Web(Service):
    def __init__(self, env: dict[str, str], log: Path, workers: int) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "app", "web", "--port", str(self.port)]
        args += ["--workers", str(workers)]
        super().__init__("web", args, env, log)

    def start(self, timeout: float = 60) -> Web:
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).is_success:
                    return self
            time.sleep(0.3)
        raise RuntimeError(f"web not ready after {timeout:.0f}s:\n{self.tail()}")


def full_sync(worker: Service) -> None:
    # tasks reads the settings when imported: only once this process points at the stack
    from tasks.dispatch import process_context

    with session_scope() as s:
        run_id = ingest.start_full(s, process_context(), None, trigger="bench").id
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        worker.check_alive()
        with session_scope() as s:
            run = s.get(SyncRun, run_id)
            children = s.query(SyncRun).filter(SyncRun.parent_id == run_id).all()
            done = run is not None and run.status != "running" and bool(children)
            if done and all(c.status != "running" for c in children):
                return
        time.sleep(0.5)
    raise RuntimeError("full sync did not finish in 10 minutes")


def published_skus(url: str, worker: Service, timeout: float = 120) -> list[str]:
    """The SKUs published in de_storefront, once every catalog event of the full sync is on
    the pages (they are applied after the runs finish, by the events.catalog consumer)."""

    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            worker.check_alive()
            with engine.connect() as conn:
                behind = conn.execute(
                    text(
                        "SELECT count(*) FROM channel_product c LEFT JOIN product_page p "
                        "ON p.channel = c.channel AND p.sku = c.sku "
                        "WHERE p.catalog_version IS DISTINCT FROM c.version"
                    )
                ).scalar_one()
                if not behind:
                    return list(
                        conn.execute(
                            text(
                                "SELECT sku FROM product_page WHERE channel = :c "
                                "AND catalog_enabled ORDER BY sku"
                            ),
                            {"c": CHANNEL},
                        ).scalars()
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{behind} catalog rows not on their pages after {timeout}s")
            time.sleep(0.2)
    finally:
        engine.dispose()


def event_env(coalesce: float, log_level: str = "WARNING") -> dict[str, str]:
    """The settings of the event intake: the webhook's secret, the sources' tokens, the page
    readers' token, PIM event coalescing."""
    return {
        "PIMSYNC_WEBHOOK_SECRET": SECRET,
        "PIMSYNC_READ_TOKEN": READ_TOKEN,
        "PIMSYNC_EVENT_SOURCE_TOKENS": json.dumps(TOKENS),
        "PIMSYNC_EVENT_COALESCE_SECONDS": str(coalesce),
        "PIMSYNC_LOG_LEVEL": log_level,
    }


def event_services(
    env: dict[str, str],
    logs: Path,
    services: ExitStack,
    concurrency: int,
    *,
    prefetch: int = 1,
    pool: str = "prefork",
    nice: int = 0,
    web_workers: int = 1,
) -> tuple[Web, Worker]:
    """This process pointed at ``env``, then one worker on every queue and ``pimsync web``
    started (stopped when ``services`` closes)."""
    point_this_process_at(env)
    worker = Worker(
        env,
        logs / "worker-events.log",
        concurrency,
        queues=QUEUES,
        loglevel="WARNING",
        extra=(f"--prefetch-multiplier={prefetch}",),
        pool=pool,
        nice=nice,
    )
    services.callback(worker.stop)
    worker.start()
    web = Web(env, logs / "web.log", web_workers)
    services.callback(web.stop)
    web.start()
    say(f"events: web :{web.port}, worker pid {worker.pid} on every queue")
    return web, worker


@contextmanager
def stack(args: argparse.Namespace, logs: Path) -> Iterator[tuple[str, Web, Worker]]:

    catalog = ensure_catalog(args.skus, 7)
    with redis_database(args.redis_db) as redis_url, scratch_database() as url, ExitStack() as st:
        flush_redis(redis_url)
        pim = ReferencePim(catalog, CREDENTIALS, logs / "reference-pim.log")
        st.callback(pim.stop)
        pim.start(timeout=120 + args.skus / 200)
        env = stack_env(url, redis_url, pim.base, **event_env(args.coalesce, args.log_level))
        web, worker = event_services(
            env,
            logs,
            st,
            args.concurrency,
            prefetch=args.prefetch,
            pool=args.pool,
            nice=args.worker_nice,
            web_workers=args.web_workers,
        )
        say(f"stack ready: web :{web.port}, worker pid {worker.pid}, catalog {args.skus}")
        yield url, web, worker


def event_phases(
    url: str,
    web: Web,
    worker: Service,
    phases: list[tuple[str, float, int, int]],
    webhooks: float = 0.2,
    sample: int = 0,
) -> tuple[dict[str, Any], list[str]]:
    """Event phases, each ``(name, rate per second (0: unpaced), events, seed)``, one after
    the other against the pages a full sync wrote: their results by name, the SKUs with a
    page in de_storefront and the poller's polls; and those SKUs. Events go to ``sample``
    of the SKUs (spread over the catalog; 0: all), whose products the webhooks carry."""

    skus = published_skus(url, worker)
    if not skus:
        raise RuntimeError("no published product in de_storefront")
    chosen = skus
    if sample and len(skus) > sample:
        chosen = skus[:: len(skus) // sample][:sample]
    pim = open_source(get_settings().pim_source)
    products = {sku: pim.get(sku) for sku in chosen}  # untimed: what webhooks carry
    found: dict[str, Any] = {"skus_with_pages": len(skus), "skus_sent_events": len(chosen)}
    tracker = Tracker(url)
    tracker.start()
    try:
        for name, rate, count, seed in phases:
            events = make_events(chosen, count, seed, name, products, webhooks)
            found[name] = event_phase(name, events, tracker, web, worker, rate)
    finally:
        tracker.stop()
    found["poller_polls"] = tracker.polls
    return found, skus


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "skus": args.skus,
        "event_skus": args.event_skus or args.skus,
        "coalesce_seconds": args.coalesce,
        "webhook_share": args.webhooks,
        "worker_concurrency": args.concurrency,
        "worker_pool": args.pool,
        "worker_nice": args.worker_nice,
        "worker_prefetch_multiplier": args.prefetch,
        "web_workers": args.web_workers,
    }
    with stack(args, logs) as (url, web, worker):
        say("full sync of the catalog (untimed): the pages the events land on")
        full_sync(worker)
        phases = [
            (name, rate, args.events, seed)
            for name, rate, seed in (("paced", args.rate, 11), ("burst", 0.0, 12))
            if name in args.phases
        ]
        found, skus = event_phases(url, web, worker, phases, args.webhooks, args.event_skus)
        report.update(found)
        base = f"http://127.0.0.1:{web.port}"
        if "listings" in args.phases:
            report["listings"] = listing_phase(web, args.read_seconds)
        if "reads" in args.phases:
            report["settle_seconds"] = settle()
        if "reads" not in args.phases:
            say("reads: not asked for (--phases)")
        elif shutil.which("wrk"):
            report["reads"] = read_phase_wrk(base, skus, args.read_rate, args.read_seconds)
        else:
            say("reads: wrk not installed (Debian package `wrk`): Python clients instead")
            report["reads"] = read_phase(base, skus, args.read_rate, args.read_seconds)
    return report


def print_table(report: dict[str, Any]) -> None:
    header = "phase   events/s in  events/s visible  visible p50/p99 ms  webhook ack p50/p99 ms"
    lines = ["", header]
    phases = [name for name in ("paced", "burst") if name in report]
    for name in phases:
        r = report[name]
        v, a = r["event_to_visible"], r["ack"]["webhook"]
        lines.append(
            f"{name:7} {r['intake_events_per_s']:11} {r['events_per_s_to_visible']:17} "
            f"{v['p50_ms']:>8}/{v['p99_ms']:<9} {a.get('p50_ms', '-'):>12}/{a.get('p99_ms', '-')}"
        )
    for name in phases:
        kinds = report[name]["event_to_visible_by_kind"]
        lines.append(
            f"{name} visible p99 by kind: "
            + ", ".join(f"{k} {v.get('p99_ms')} ms" for k, v in kinds.items())
        )
    if "listings" in report:
        r = report["listings"]
        lines.append(
            f"listings: {r['listing_pages']} pages by {r['listers']} clients "
            f"({r['listing_pages_per_s']}/s); webhook ack p50/p99 {r['webhook_ack']['p50_ms']}/"
            f"{r['webhook_ack']['p99_ms']} ms, /healthz p99 {r['healthz']['p99_ms']} ms; web "
            f"memory {r['web_rss_mib']['idle']} -> {r['web_rss_mib']['max_under_listing']} MiB"
        )
    if "reads" in report:
        r = report["reads"]
        lines.append(
            f"reads: {r['requests']} at {r['achieved_per_s']}/s: p50 {r['p50_ms']} ms, "
            f"p99 {r['p99_ms']} ms"
        )
    print("\n".join(lines), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--event-skus",
        type=int,
        default=0,
        help="send the events to this many of the published SKUs, spread over the catalog "
        "(0: all); the products they carry are fetched from the PIM first, one GET each",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of the paced phase")
    parser.add_argument("--read-rate", type=float, default=500.0)
    parser.add_argument("--read-seconds", type=float, default=10.0)
    parser.add_argument("--webhooks", type=float, default=0.2, help="share of webhook events")
    parser.add_argument("--coalesce", type=float, default=0.25, help="PIM event coalescing (s)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument(
        "--pool", default="prefork", choices=["prefork", "threads"], help="the worker's pool"
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=1,
        help="uvicorn processes (1: the two cores are shared with the worker and PostgreSQL; "
        "a second process measured slower on every phase here)",
    )
    parser.add_argument(
        "--prefetch", type=int, default=1, help="the worker's --prefetch-multiplier"
    )
    parser.add_argument(
        "--phases",
        type=lambda v: set(v.split(",")),
        default={"paced", "burst", "reads", "listings"},
        help="comma-separated, of paced,burst,reads,listings (default: all four)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the worker at this nice level (the HTTP app's acknowledgements first, as on "
        "a host that runs both)",
    )
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--log-level", default="WARNING", help="the stack's log level")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.event_skus < 0:
        parser.error("--event-skus must be 0 (all) or more")

    run_bench(run, args, "pimsync-bench-events-", print_table)


if __name__ == "__main__":
    main()
