"""Prometheus metrics counted where they happen (prometheus-client): webhook refusals,
projection lag, events applied. In the web app and in worker processes; workers are several
processes (prefork), so with ``PROMETHEUS_MULTIPROC_DIR`` set every process writes its samples
to that folder and a scrape aggregates them (``pimsync web`` and ``pimsync worker
--metrics-port`` both read it; ``pimsync worker`` sets the folder if you did not).

The metrics read from the database at scrape time are the web app's (``app.web.metrics``).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

WEBHOOK_REFUSED = Counter(
    "pimsync_webhook_refusals_total", "Webhook requests refused, by reason.", ["reason"]
)
WEBHOOK_ACCEPTED = Counter(
    "pimsync_webhook_events_total", "Webhook events accepted (new) or duplicate.", ["result"]
)
READS_REFUSED = Counter(
    "pimsync_reads_refused_total",
    "Reads answered 503 busy (more at once than admitted), by read and reason.",
    ["read", "reason"],
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


def process_registry() -> CollectorRegistry:
    """This process's samples, or every process's of the host (``PROMETHEUS_MULTIPROC_DIR``)."""
    reg = CollectorRegistry()
    # prometheus-client's own switch: set by `pimsync worker`/`web` or by the operator
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(reg)
    else:
        for collector in (WEBHOOK_REFUSED, WEBHOOK_ACCEPTED, EVENTS_APPLIED, PROJECTION_LAG):
            reg.register(collector)
    return reg
