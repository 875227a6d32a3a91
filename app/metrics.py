"""Prometheus metrics (prometheus-client).

Two kinds:

- Counted where they happen (webhook refusals, projection lag, events applied): in the web
  app and in worker processes. Workers are several processes (prefork), so with
  ``PROMETHEUS_MULTIPROC_DIR`` set every process writes its samples to that folder and a
  scrape aggregates them (``pimsync web`` and ``pimsync worker --metrics-port`` both read it;
  ``pimsync worker`` sets the folder if you did not).
- Read from the database at scrape time (``StateCollector``): units per channel and kind,
  run durations, dead letters, drift, cursor ages, queue depths, page readiness. The database
  is the one truth every worker on every host writes to, so these need no aggregation and
  survive restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

WEBHOOK_REFUSED = Counter(
    "pimsync_webhook_refusals_total", "Webhook requests refused, by reason.", ["reason"]
)
WEBHOOK_ACCEPTED = Counter(
    "pimsync_webhook_events_total", "Webhook events accepted (new) or duplicate.", ["result"]
)
EVENTS_APPLIED = Counter(
    "pimsync_projection_events_total",
    "Domain events applied to product pages, or ignored as stale or duplicate.",
    ["domain", "result"],
)
EVENT_BATCH = Histogram(
    "pimsync_event_batch_messages",
    "Messages a pricing/inventory/media consumer applied in one transaction (1 without a "
    "backlog; more when messages were waiting).",
    ["domain"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
PROJECTION_LAG = Histogram(
    "pimsync_projection_lag_seconds",
    "From an event's occurrence at its source to its projection being stored.",
    ["domain"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

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

    def __init__(self, queues: tuple[str, ...] = (), broker_url: str | None = None) -> None:
        self.queues = queues
        self.broker_url = broker_url

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only (the database may be down at start-up)

    def collect(self) -> Iterator[Metric]:
        from sqlalchemy import func, select

        from app.db import session_scope
        from app.mapping.models import DriftEvent
        from app.pages.repository import readiness_counts
        from app.sync.models import DeadLetter, SyncCursor, SyncRun

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
        yield from (units, runs, run_status, dead, drift, drift_products, cursor_age, readiness)
        if self.queues and self.broker_url and self.broker_url.startswith("redis"):
            yield self._queue_depth()

    def _queue_depth(self) -> Metric:
        import redis

        depth = GaugeMetricFamily(
            "pimsync_queue_depth", "Messages waiting per Celery queue.", labels=["queue"]
        )
        client = redis.Redis.from_url(self.broker_url or "", socket_timeout=2)
        try:
            for queue in self.queues:
                depth.add_metric([queue], float(client.llen(queue)))
        finally:
            client.close()
        return depth


def registry(with_state: bool = True, settings: Any = None) -> CollectorRegistry:
    """What a scrape exports: this process's (or every worker process's) samples + state."""
    reg = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(reg)
    else:
        from prometheus_client import REGISTRY

        for collector in (WEBHOOK_REFUSED, WEBHOOK_ACCEPTED, EVENTS_APPLIED, PROJECTION_LAG):
            reg.register(collector)
        del REGISTRY
    if with_state:
        from celeryconfig import ALL_QUEUES

        broker = settings.broker_url if settings is not None else None
        reg.register(StateCollector(ALL_QUEUES, broker))  # type: ignore[arg-type]
    return reg


def exposition(settings: Any = None) -> bytes:
    return generate_latest(registry(True, settings))
