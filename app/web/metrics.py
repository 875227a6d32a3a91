"""``GET /metrics``'s state, read from the database and the broker at scrape time: units per
channel and kind, run durations, dead letters, drift, cursor ages, queue depths, page
readiness. The database is the one truth every worker on every host writes to, so these need
no aggregation and survive restarts. The samples counted inside processes come from
``app.metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope
from app.mapping.models import DriftEvent
from app.metrics import process_registry
from app.pages.repository import readiness_counts
from app.pim.throttle import health_or_none
from app.sync import repository as sync_repo
from app.sync.models import BATCH_ENQUEUED, DeadLetter, SyncBatch, SyncCursor, SyncRun
from app.sync.pim_events.models import PendingSku
from app.sync.progress import run_progress
from celeryconfig import ALL_QUEUES
from tasks.workers import QueueState, backlog, consumers_by_queue, worker_queues

RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200)
OUTCOMES = {
    "published": "synced",
    "unchanged": "unchanged",
    "incomplete": "skipped_incomplete",
    "filtered": "filtered",
    "disabled": "disabled",
    "failed": "failed",
}


class StateCollector:
    """Metrics read from PostgreSQL (and the broker's queue lengths) at scrape time."""

    def __init__(
        self,
        queues: tuple[str, ...] = (),
        broker_url: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.queues = queues
        self.broker_url = broker_url
        self.redis_url = redis_url

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only (the database may be down at start-up)

    def collect(self) -> Iterator[Metric]:
        units = CounterMetricFamily(
            "pimsync_units",
            "Publish units by channel, sync kind and outcome (from finished and running runs).",
            labels=["channel", "kind", "outcome"],
        )
        runs = HistogramMetricFamily(
            "pimsync_sync_run_duration_seconds",
            "Duration of finished channel runs.",
            labels=["channel", "kind"],
        )
        run_status = CounterMetricFamily(
            "pimsync_sync_runs", "Channel runs by status.", labels=["channel", "kind", "status"]
        )
        dead = GaugeMetricFamily(
            "pimsync_dead_letters_open", "Open dead letters.", labels=["channel", "kind"]
        )
        drift = GaugeMetricFamily(
            "pimsync_drift_attributes",
            "Unmapped attributes per contract version (drift).",
            labels=["contract"],
        )
        drift_products = CounterMetricFamily(
            "pimsync_drift_products",
            "Products carrying unmapped attributes, per contract.",
            labels=["contract"],
        )
        cursor_age = GaugeMetricFamily(
            "pimsync_cursor_age_seconds",
            "Age of each progress marker (ingest, channel:*).",
            labels=["cursor"],
        )
        readiness = GaugeMetricFamily(
            "pimsync_product_pages",
            "Product pages per channel, and how many lack a domain.",
            labels=["channel", "state"],
        )
        now = time.time()
        with session_scope() as s:
            sums = [func.sum(getattr(SyncRun, col)) for col in OUTCOMES.values()]
            for channel, kind, *values in s.execute(
                select(SyncRun.channel, SyncRun.kind, *sums)
                .where(SyncRun.channel.is_not(None))
                .group_by(SyncRun.channel, SyncRun.kind)
            ).all():
                for outcome, value in zip(OUTCOMES, values, strict=True):
                    units.add_metric([channel, kind, outcome], float(value or 0))
            durations: dict[tuple[str, str], list[float]] = {}
            for channel, kind, started, finished in s.execute(
                select(
                    SyncRun.channel, SyncRun.kind, SyncRun.started_at, SyncRun.finished_at
                ).where(
                    SyncRun.channel.is_not(None),
                    SyncRun.status == "completed",
                    SyncRun.finished_at.is_not(None),
                )
            ).all():
                # not None: the WHERE excludes a null channel and finished_at
                durations.setdefault((cast(str, channel), kind), []).append(
                    (cast(datetime, finished) - started).total_seconds()
                )
            for (channel, kind), values in sorted(durations.items()):
                buckets = [(str(b), float(sum(1 for v in values if v <= b))) for b in RUN_BUCKETS]
                buckets.append(("+Inf", float(len(values))))
                runs.add_metric([channel, kind], buckets, sum(values))
            for channel, kind, status, n in s.execute(
                select(SyncRun.channel, SyncRun.kind, SyncRun.status, func.count())
                .where(SyncRun.channel.is_not(None))
                .group_by(SyncRun.channel, SyncRun.kind, SyncRun.status)
            ).all():
                # not None: the WHERE excludes a null channel
                run_status.add_metric([cast(str, channel), kind, status], float(n))
            for channel, kind, n in s.execute(
                select(DeadLetter.channel, DeadLetter.kind, func.count())
                .where(DeadLetter.status == "open")
                .group_by(DeadLetter.channel, DeadLetter.kind)
            ).all():
                dead.add_metric([channel, kind], float(n))
            for cid, version, n, total in s.execute(
                select(
                    DriftEvent.contract_id,
                    DriftEvent.contract_version,
                    func.count(),
                    func.sum(DriftEvent.count),
                ).group_by(DriftEvent.contract_id, DriftEvent.contract_version)
            ).all():
                drift.add_metric([f"{cid}@{version}"], float(n))
                drift_products.add_metric([f"{cid}@{version}"], float(total or 0))
            for name, updated in s.execute(select(SyncCursor.name, SyncCursor.updated_at)).all():
                cursor_age.add_metric([name], max(0.0, now - updated.timestamp()))
            for channel, counts in readiness_counts(s).items():
                for state, n in counts.items():
                    readiness.add_metric([channel, state], float(n))
            progress = list(_progress_metrics(s, now))
            backlog = _backlog_age(s, now)
        yield from (units, runs, run_status, dead, drift, drift_products, cursor_age, readiness)
        yield from (*progress, backlog)
        if self.queues and self.broker_url and self.broker_url.startswith("redis"):
            yield from self._queues()
        yield from self._pim_health(now)

    def _pim_health(self, now: float) -> Iterator[Metric]:
        """The PIM connections as the workers last saw them (kept in Redis: this process
        never calls the PIM)."""
        found = health_or_none(self.redis_url)
        if found is None:
            return
        up = GaugeMetricFamily(
            "pimsync_pim_up",
            "1 while the PIM connection answers, 0 while it fails or throttles.",
            labels=["pim"],
        )
        requests = CounterMetricFamily(
            "pimsync_pim_requests",
            "Requests to the PIM by answer (HTTP status, or the transport error's name).",
            labels=["pim", "status"],
        )
        backoff = GaugeMetricFamily(
            "pimsync_pim_backoff_seconds",
            "Seconds until workers may call the PIM again (Retry-After or backoff; 0: now).",
            labels=["pim"],
        )
        for pim in found:
            up.add_metric([pim.base_url], 1.0 if pim.up else 0.0)
            for status, n in sorted(pim.requests.items()):
                requests.add_metric([pim.base_url, status], float(n))
            backoff.add_metric([pim.base_url], pim.backoff_seconds(now))
        yield from (up, requests, backoff)

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "pimsync_queue_depth", "Messages waiting per Celery queue.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "pimsync_queue_oldest_message_age_seconds",
            "Age of the oldest message waiting per queue (0 when none waits).",
            labels=["queue"],
        )
        states = backlog(self.broker_url or "", self.queues)
        for queue, state in states.items():
            depth.add_metric([queue], float(state.waiting or 0))
            oldest.add_metric([queue], float(state.oldest_age or 0.0))
        yield from (depth, oldest)
        consumers = _consumers()
        if consumers is None:  # the workers could not be asked: no guess
            return
        count = GaugeMetricFamily(
            "pimsync_queue_consumers", "Workers consuming each queue.", labels=["queue"]
        )
        orphaned = GaugeMetricFamily(
            "pimsync_queue_without_consumer",
            "1 when messages wait on a queue that no worker consumes (they wait for ever).",
            labels=["queue"],
        )
        for queue, state in states.items():
            workers = consumers.get(queue, [])
            count.add_metric([queue], float(len(workers)))
            orphaned.add_metric([queue], 1.0 if state.waiting and not workers else 0.0)
        yield from (count, orphaned)


# Asking the workers is a broadcast that waits for their answers: one per this many seconds at
# most, whatever the number of scrapers (Prometheus scrapes every 15 s or so).
CONSUMERS_TTL_SECONDS = 30.0
_consumers_cache: tuple[float, dict[str, list[str]] | None] | None = None
_consumers_lock = threading.Lock()


def _consumers() -> dict[str, list[str]] | None:
    global _consumers_cache
    with _consumers_lock:
        now = time.monotonic()
        if _consumers_cache is not None and now - _consumers_cache[0] < CONSUMERS_TTL_SECONDS:
            return _consumers_cache[1]
        found: dict[str, list[str]] | None
        try:
            found = consumers_by_queue(worker_queues())
        except Exception:  # the broker's errors: pimsync_queue_depth says the rest
            found = None  # remembered too: asking an unreachable broker takes seconds
        _consumers_cache = (now, found)
        return found


def _progress_metrics(s: Session, now: float) -> Iterator[Metric]:
    """Running runs: done, total, when the count last moved (the "run stuck" alert's input)
    and the time left. ``channel`` is ``pim`` for a run's PIM read."""
    labels = ["kind", "channel", "run_id"]
    done = GaugeMetricFamily(
        "pimsync_run_progress_done", "Running runs: products read or units decided.", labels=labels
    )
    total = GaugeMetricFamily(
        "pimsync_run_progress_total",
        "Running runs: products the PIM announced, or units planned (absent while unknown).",
        labels=labels,
    )
    updated = GaugeMetricFamily(
        "pimsync_run_progress_updated_timestamp_seconds",
        "Running runs: when their count last moved (their start while it never did), Unix time.",
        labels=labels,
    )
    eta = GaugeMetricFamily(
        "pimsync_run_eta_seconds", "Running runs: estimated seconds left.", labels=labels
    )
    running = sync_repo.running_runs(s)
    by_id = {r.id: r for r in running}
    moment = datetime.fromtimestamp(now, UTC)
    for run in running:
        parent = by_id.get(run.parent_id) if run.parent_id else None
        p = run_progress(run, moment, parent)
        key = [run.kind, run.channel or "pim", str(run.id)]
        done.add_metric(key, float(p.done))
        if p.total is not None:
            total.add_metric(key, float(p.total))
        updated.add_metric(key, (p.updated_at or run.started_at).timestamp())
        if p.eta_seconds is not None:
            eta.add_metric(key, p.eta_seconds)
    yield from (done, total, updated, eta)


def _backlog_age(s: Session, now: float) -> Metric:
    """Age of the oldest work waiting: publish batches sent and not done, PIM events not yet
    applied (0 when nothing waits)."""
    age = GaugeMetricFamily(
        "pimsync_backlog_oldest_seconds",
        "Age of the oldest waiting work: publish batches enqueued and not done, pending PIM "
        "events.",
        labels=["backlog"],
    )
    oldest_batch = s.execute(
        select(func.min(SyncBatch.enqueued_at)).where(SyncBatch.status == BATCH_ENQUEUED)
    ).scalar()
    oldest_event = s.execute(select(func.min(PendingSku.first_event_at))).scalar()
    for name, since in (("publish_batches", oldest_batch), ("pim_events", oldest_event)):
        age.add_metric([name], max(0.0, now - since.timestamp()) if since else 0.0)
    return age


def registry(settings: Settings) -> CollectorRegistry:
    """What a scrape exports: this host's process samples, plus the state."""
    reg = process_registry()
    reg.register(StateCollector(ALL_QUEUES, settings.broker_url, settings.redis_url))
    return reg


def exposition(settings: Settings) -> bytes:
    return generate_latest(registry(settings))


def queues_without_consumer(broker_url: str) -> list[QueueState]:
    """Queues where messages wait and no worker consumes them (the dashboard's red line);
    empty when the broker or the workers cannot be asked (the dashboard says the rest)."""
    if not broker_url.startswith("redis"):
        return []
    try:  # first: fails fast when the broker is down (asking the workers would wait)
        states = backlog(broker_url, ALL_QUEUES)
    except Exception:  # redis' errors: nothing to say about consumers then
        return []
    consumers = _consumers()
    if consumers is None:
        return []
    return [s for s in states.values() if s.waiting and not consumers.get(s.name)]
