"""What the broker and the workers say about the queues: who consumes each, what waits.

Read by ``pimsync status``, ``--wait``, ``/metrics`` and the dashboard. Workers answer a
broadcast (Celery's remote control) within a short timeout; the backlog is the length of each
queue's Redis list, and the oldest message's age comes from the ``pimsync_sent_at`` header the
dispatcher puts on every message (tasks.dispatch).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from celeryconfig import ALL_QUEUES
from tasks import celery_app

# How long to wait for workers' answers: a worker that cannot answer within this is busy or
# gone, and the question is asked by a person waiting at a terminal.
INSPECT_TIMEOUT_SECONDS = 1.5
# The message header holding when a message was sent (epoch seconds).
SENT_AT_HEADER = "pimsync_sent_at"


@dataclass
class QueueState:
    name: str
    waiting: int | None = None  # None: unknown (not a Redis broker, or unreachable)
    oldest_age: float | None = None  # seconds; None: empty or unknown
    consumers: list[str] = field(default_factory=list)

    @property
    def without_consumer(self) -> bool:
        """Messages wait here and no worker consumes the queue: they will wait for ever."""
        return bool(self.waiting) and not self.consumers


def worker_queues(timeout: float = INSPECT_TIMEOUT_SECONDS) -> dict[str, list[str]]:
    """{worker name: queues it consumes}, for the workers that answered within ``timeout``.
    Raises the broker's error when the broker cannot be reached."""
    replies = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    return {
        worker: sorted(q["name"] for q in queues if isinstance(q, dict) and "name" in q)
        for worker, queues in sorted(replies.items())
    }


def consumers_by_queue(workers: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {q: [] for q in ALL_QUEUES}
    for worker, queues in workers.items():
        for queue in queues:
            out.setdefault(queue, []).append(worker)
    return out


def _sent_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        headers = json.loads(raw).get("headers") or {}
        return float(headers[SENT_AT_HEADER])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # a message from another producer, or an older release


def backlog(broker_url: str, queues: tuple[str, ...] = ALL_QUEUES) -> dict[str, QueueState]:
    """Each queue's waiting messages and its oldest message's age (Redis brokers only: other
    brokers give unknown). Raises redis' error when the broker cannot be reached."""
    states = {q: QueueState(q) for q in queues}
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return states
    client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            pipe.lindex(queue, -1)  # kombu pushes on the left and takes from the right
        answers: list[Any] = pipe.execute()
    finally:
        client.close()
    now = time.time()
    for i, queue in enumerate(queues):
        waiting, oldest = int(answers[2 * i]), _sent_at(answers[2 * i + 1])
        states[queue].waiting = waiting
        if waiting and oldest is not None:
            states[queue].oldest_age = max(0.0, now - oldest)
    return states


def queue_states(
    broker_url: str, timeout: float = INSPECT_TIMEOUT_SECONDS
) -> dict[str, QueueState]:
    """Backlog and consumers of every queue pimsync uses."""
    states = backlog(broker_url)
    for queue, workers in consumers_by_queue(worker_queues(timeout)).items():
        states.setdefault(queue, QueueState(queue)).consumers = workers
    return states
