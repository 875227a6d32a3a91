"""Publish tasks (queue ``publish``): one message per batch of units of one channel."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from app.sync import service
from tasks import PimsyncTask, celery_app, context


@celery_app.task(
    name="publish.units",
    base=PimsyncTask,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=10,
)
def units(batch_id: int) -> None:
    """Publish a batch of (sku, channel) units. The batch row holds the SKUs; the message only
    its id. If the database stays unreachable past the retries, the batch stays enqueued and
    the sweeper sends it again: nothing is lost."""
    service.publish_batch(context(), batch_id)
