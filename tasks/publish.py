"""Publish tasks (queue ``publish``): one message per batch of units of one channel."""

from __future__ import annotations

from app.errors import task_retry_policy
from app.sync import publish
from tasks import PimsyncTask, celery_app
from tasks.dispatch import process_context as context


@celery_app.task(name="publish.units", base=PimsyncTask, **task_retry_policy())
def units(
    batch_ids: list[int] | int, channels: list[str] | None = None, units: int | None = None
) -> None:
    """Publish batches of (sku, channel) units: one batch, or the batches of several channels
    over the same SKUs. Batch rows hold the SKUs; the message only their ids. A retry skips
    the batches already done. If the database stays unreachable past the retries, the batches
    stay enqueued and the sweeper sends them again: nothing is lost. ``channels`` and
    ``units`` are there for people reading Flower, not for the task."""
    ids = [batch_ids] if isinstance(batch_ids, int) else list(batch_ids)
    publish.publish_batches(context(), ids)
