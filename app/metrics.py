"""Prometheus metrics (prometheus-client).

Web app and workers export the same names. Workers run several processes: with
``PROMETHEUS_MULTIPROC_DIR`` set (the docker stack and ``pimsync worker`` set it), every
process writes its samples there and ``GET /metrics`` on the web app aggregates them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UNITS = Counter(
    "pimsync_units_total",
    "Publish units by outcome (published, unchanged, incomplete, filtered, disabled, failed).",
    ["channel", "kind", "outcome"],
)
RUN_DURATION = Histogram(
    "pimsync_sync_run_duration_seconds",
    "Duration of finished channel runs.",
    ["channel", "kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200),
)
DEAD_LETTERS = Counter("pimsync_dead_letters_total", "Units dead-lettered.", ["channel", "kind"])
DRIFT = Counter(
    "pimsync_drift_attribute_events_total",
    "Products carrying attributes their contract does not map.",
    ["contract"],
)
WEBHOOK_REFUSED = Counter(
    "pimsync_webhook_refusals_total", "Webhook requests refused, by reason.", ["reason"]
)
WEBHOOK_ACCEPTED = Counter(
    "pimsync_webhook_events_total", "Webhook events accepted (new) or duplicate.", ["result"]
)
EVENTS_APPLIED = Counter(
    "pimsync_projection_events_total",
    "Domain events applied to product pages, or ignored as stale/duplicate.",
    ["domain", "result"],
)
PROJECTION_LAG = Histogram(
    "pimsync_projection_lag_seconds",
    "From an event's occurrence to its projection being stored.",
    ["domain"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
QUEUE_DEPTH = Gauge(
    "pimsync_queue_depth",
    "Messages waiting per Celery queue.",
    ["queue"],
    multiprocess_mode="livemax",
)
CURSOR_AGE = Gauge(
    "pimsync_cursor_age_seconds",
    "Age of each channel's progress marker.",
    ["cursor"],
    multiprocess_mode="livemax",
)
OPEN_DEAD_LETTERS = Gauge(
    "pimsync_open_dead_letters",
    "Open dead letters per channel.",
    ["channel"],
    multiprocess_mode="livemax",
)
