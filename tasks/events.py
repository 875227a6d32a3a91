"""Event consumers, one queue per domain: a backlog or outage in one never delays another."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from app.db import session_scope, utcnow
from app.logging import get_logger
from app.ownership import OwnershipError
from app.pages import service as pages
from app.pages.schemas import DomainEvent
from app.pim.source import TransientSourceError
from app.sync import pim_events
from app.sync.runtime import REGISTRY
from tasks import PimsyncTask, celery_app, context

log = get_logger("pimsync.tasks.events")
# High volume: no Flower task events (celeryconfig says why); metrics watch these instead.
QUIET = {"base": PimsyncTask, "send_events": False}
RETRY = {
    **QUIET,
    "autoretry_for": (OperationalError,),
    "retry_backoff": 1,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 10,
}


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
    settings = context().settings
    parsed = [DomainEvent.model_validate(e) for e in events]
    try:
        pages.check_ownership(REGISTRY.ownership(settings), source, parsed)
    except OwnershipError as exc:  # also checked at intake; a queue producer may skip it
        log.warning("event_refused", domain=domain, source=source, reason=str(exc))
        return
    channels = sorted(REGISTRY.channels(settings))
    with session_scope() as session:
        counts = pages.apply_events(session, parsed, channels, utcnow())
    # debug: hundreds a second; the pimsync_projection_* metrics count them
    log.debug("events_applied", domain=domain, source=source, **counts)


@celery_app.task(name="events.pricing.apply", **RETRY)
def pricing_apply(events: list[dict[str, Any]], source: str) -> None:
    _apply("pricing", events, source)


@celery_app.task(name="events.inventory.apply", **RETRY)
def inventory_apply(events: list[dict[str, Any]], source: str) -> None:
    _apply("inventory", events, source)


@celery_app.task(name="events.media.apply", **RETRY)
def media_apply(events: list[dict[str, Any]], source: str) -> None:
    _apply("media", events, source)


@celery_app.task(
    name="events.pim.product",
    **QUIET,
    autoretry_for=(OperationalError, TransientSourceError),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=10,
)
def pim_product(key: str) -> None:
    """A product's coalesced PIM events: fetch once if needed, mirror, every channel."""
    outcome = pim_events.process(context(), key)
    log.info("pim_event_applied", key=key, outcome=outcome)


@celery_app.task(name="pages.reconcile", base=PimsyncTask)
def reconcile(domains: list[str] | None = None, trigger: str = "beat") -> None:
    """Rebuild product pages from each domain's snapshot (beat, nightly)."""
    pages.reconcile(context().settings, domains, trigger=trigger)
