"""Event consumers, one queue per domain: a backlog or outage in one never delays another."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.db import session_scope, utcnow
from app.errors import task_retry_policy
from app.logging import get_logger
from app.metrics import EVENT_BATCH
from app.pages import projection as pages
from app.pages.reconcile import reconcile as reconcile_pages
from app.pages.schemas import DomainEvent
from app.pim.source import PimThrottled
from app.sync import repository as sync_repo
from app.sync.pim_events import apply as pim_events
from app.sync.runtime import REGISTRY
from tasks import PimsyncTask, celery_app
from tasks.dispatch import process_context as context

log = get_logger("pimsync.tasks.events")
# High volume: no Flower task events (celeryconfig says why); metrics watch these instead.
QUIET = {"base": PimsyncTask, "send_events": False}
RETRY = {**QUIET, **task_retry_policy()}


@celery_app.task(name="events.catalog.apply", **RETRY)
def catalog_apply(changes: dict[str, list[str]] | str, skus: list[str] | None = None) -> None:
    """Catalog events ({channel: skus}): project committed channel catalog rows onto product
    pages, every channel in one transaction. (Messages of earlier versions, still queued
    during an upgrade, carry one channel and its SKUs.)"""
    if isinstance(changes, str):
        changes = {changes: skus or []}
    with session_scope() as session:
        pages.apply_catalog(session, changes, utcnow())


def _apply(domain: str, events: list[dict[str, Any]], source: str) -> None:
    """Apply this message's events and, in the same transaction, those of the messages of
    the same task already waiting on the queue (up to ``event_batch_max``): under a backlog
    one transaction and one statement per domain serve a hundred messages, where each used
    to cost its own Celery round trip and commit. Without a backlog nothing waits and a
    message is applied alone, at once.

    The waiting messages are taken unacknowledged, like the worker's own prefetch: they are
    acknowledged after the commit, put back on the queue if the transaction fails (the task
    then retries), and redelivered if the process dies meanwhile.
    """
    settings = context().settings
    ownership = REGISTRY.ownership(settings)
    channels = sorted(REGISTRY.channels(settings))
    with drained(
        f"events.{domain}", f"events.{domain}.apply", settings.event_batch_max - 1
    ) as more:
        parsed: list[DomainEvent] = []
        refused: list[dict[str, Any]] = []
        for body_events, body_source in [(events, source), *more]:
            # each event on its own: one that is invalid here (its producer skipped the
            # intake's checks, or the rules changed since) is dead-lettered alone
            good, bad = pages.validate_events(
                domain,
                body_events,
                body_source,
                ownership,
                channels,
                settings.event_max_source_version,
            )
            parsed.extend(good)
            refused.extend(bad)
        with session_scope() as session:
            counts = pages.apply_events(session, parsed, channels, utcnow())
            sync_repo.upsert_dead_letters(session, refused)
        for letter in refused:
            log.warning(
                "event_dead_lettered", domain=domain, sku=letter["sku"], error=letter["error"]
            )
    EVENT_BATCH.labels(domain).observe(1 + len(more))
    # debug: hundreds a second; the pimsync_projection_* metrics count them
    log.debug("events_applied", domain=domain, messages=1 + len(more), **counts)


@contextmanager
def drained(queue: str, task: str, limit: int) -> Iterator[list[tuple[Any, str]]]:
    """Up to ``limit`` waiting messages of ``task`` on ``queue``, as (events, source) pairs:
    acknowledged when the block succeeds, put back on the queue when it raises."""
    if limit <= 0 or celery_app.conf.task_always_eager:
        yield []
        return
    taken: list[Any] = []
    bodies: list[tuple[Any, str]] = []
    with celery_app.pool.acquire(block=True) as conn:
        channel = conn.default_channel
        try:
            while len(taken) < limit:
                message = channel.basic_get(queue, no_ack=False)
                if message is None:
                    break
                headers = message.headers or {}
                args = message.decode()[0] if headers.get("task") == task else None
                if headers.get("eta") or not isinstance(args, list) or len(args) != 2:
                    # another task, a delayed retry, a body we don't know: not ours to take
                    message.requeue()
                    break
                taken.append(message)
                bodies.append((args[0], args[1]))
        except conn.connection_errors + conn.channel_errors as exc:
            # the broker failed us: apply what we hold (this message at least), no more
            log.warning("event_drain_failed", queue=queue, error=str(exc))
        try:
            yield bodies
        except BaseException:
            for message in taken:
                message.requeue()
            raise
        for message in taken:
            message.ack()


@celery_app.task(name="events.pricing.apply", **RETRY)
def pricing_apply(events: list[dict[str, Any]], source: str) -> None:
    _apply("pricing", events, source)


@celery_app.task(name="events.inventory.apply", **RETRY)
def inventory_apply(events: list[dict[str, Any]], source: str) -> None:
    _apply("inventory", events, source)


@celery_app.task(name="events.media.apply", **RETRY)
def media_apply(events: list[dict[str, Any]], source: str) -> None:
    _apply("media", events, source)


@celery_app.task(name="events.pim.product", bind=True, **RETRY)
def pim_product(self: PimsyncTask, key: str) -> None:
    """A product's coalesced PIM events: fetch once if needed, mirror, every channel."""
    try:
        outcome = pim_events.process(context(), key)
    except PimThrottled as exc:
        # the PIM asked for quiet (Retry-After): back when it allows, not at the backoff's
        # whim (which could be sooner); the pending events wait in their table meanwhile
        wait = (exc.not_before - utcnow()).total_seconds()
        raise self.retry(countdown=math.ceil(max(0.0, wait)) + 1, exc=exc) from None
    log.info("pim_event_applied", key=key, outcome=outcome)


@celery_app.task(name="pages.reconcile", base=PimsyncTask)
def reconcile(domains: list[str] | None = None, trigger: str = "beat") -> None:
    """Rebuild product pages from each domain's snapshot (beat, nightly)."""
    reconcile_pages(context().settings, domains, trigger=trigger)
