"""Celery settings for pimsync: queues, routes, the beat schedule and the reliability knobs.

Every value that depends on the deployment comes from ``app.config.Settings`` (PIMSYNC_*).
"""

from __future__ import annotations

from celery.schedules import crontab
from kombu import Exchange, Queue

from app.config import get_settings

_settings = get_settings()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# A worker that loses the broker connection cancels its acks_late tasks so they are
# redelivered once, instead of running twice (Celery's planned default from 6.0).
worker_cancel_long_running_tasks_on_connection_loss = True

# Nobody reads task results: state lives in PostgreSQL (runs, batches, dead letters).
result_backend = None
task_ignore_result = True
task_store_errors_even_if_ignored = False

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# Nothing lost: a message is acknowledged after its effect is committed, and a message whose
# worker died is redelivered (our tasks are idempotent, so a second run changes nothing).
task_acks_late = True
task_reject_on_worker_lost = True
# Long tasks: reserve nothing beyond what runs.
worker_prefetch_multiplier = 1

# No task runs for long: ingest works in slices (PIMSYNC_INGEST_SLICE_SECONDS, 120 s by
# default), a publish batch takes seconds. The hard limit stops a stuck task.
task_soft_time_limit = 600
task_time_limit = 660
# Redis redelivers a message not acknowledged within this time: longer than the hard time
# limit plus the longest countdown we schedule (retry backoff <= 300 s), with margin.
VISIBILITY_TIMEOUT = 7200
broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
visibility_timeout = VISIBILITY_TIMEOUT

# Flower: task events (received, started, succeeded, failed) for the sync and publish tasks.
# The high-volume event consumers opt out (``send_events = False`` in tasks/events.py): at
# hundreds of events a second, three monitoring messages per event cost more broker round
# trips than the event itself; the pimsync_projection_* metrics and the queue depth watch
# them instead. No "task-sent" events: they cost every producer (the webhook and event intake
# included) a second Redis command per message; Flower shows a task once a worker receives it,
# and the queue depth metric shows what waits.
worker_send_task_events = True
task_send_sent_event = False
worker_hijack_root_logger = False

QUEUE_SYNC = "sync"
QUEUE_PUBLISH = "publish"
EVENT_QUEUES = (
    "events.pim",
    "events.catalog",
    "events.pricing",
    "events.inventory",
    "events.media",
)
ALL_QUEUES = (QUEUE_SYNC, QUEUE_PUBLISH, *EVENT_QUEUES)


def _queue(name: str) -> Queue:
    # Own exchange and routing key per queue: with defaults every queue would bind the
    # default exchange under the same key, and each message would land in every queue.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


task_queues = [_queue(q) for q in (QUEUE_SYNC, QUEUE_PUBLISH, *EVENT_QUEUES)]
task_default_queue = QUEUE_SYNC
task_default_exchange = QUEUE_SYNC
task_default_routing_key = QUEUE_SYNC
task_routes = {
    "sync.*": {"queue": QUEUE_SYNC},
    "publish.*": {"queue": QUEUE_PUBLISH},
    "pages.*": {"queue": QUEUE_SYNC},
    "events.pim.*": {"queue": "events.pim"},
    "events.catalog.*": {"queue": "events.catalog"},
    "events.pricing.*": {"queue": "events.pricing"},
    "events.inventory.*": {"queue": "events.inventory"},
    "events.media.*": {"queue": "events.media"},
}


def _cron(expr: str) -> crontab:
    minute, hour, day_of_month, month, day_of_week = expr.split()
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month,
        day_of_week=day_of_week,
    )


beat_schedule = {
    "delta-sync": {
        "task": "sync.delta",
        "schedule": float(_settings.delta_interval_seconds),
        "kwargs": {"trigger": "beat"},
    },
    "full-sync": {
        "task": "sync.full",
        "schedule": _cron(_settings.full_sync_cron),
        "kwargs": {"trigger": "beat"},
    },
    "sweep": {"task": "sync.sweep", "schedule": float(_settings.sweep_interval_seconds)},
    "reconcile": {
        "task": "pages.reconcile",
        "schedule": _cron(_settings.reconcile_cron),
        "kwargs": {"trigger": "beat"},
    },
}
