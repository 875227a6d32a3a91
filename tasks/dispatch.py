"""The Celery side of the sync context: enqueue by task name, keep the PIM client per process."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from typing import Any

from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.pages.projection import project_committed_with
from app.pages.schemas import serialise
from app.pim.source import PimSource
from app.pim.sources import open_source
from app.sync.context import DispatchError, SyncContext
from tasks import celery_app
from tasks.workers import SENT_AT_HEADER

# What publishing a message raises when the broker cannot be reached (kombu wraps most).
BROKER_ERRORS = (KombuOperationalError, RedisConnectionError, ConnectionError, OSError)


def _send(name: str, **options: Any) -> None:
    """``send_task``, with a broker that cannot be reached said as ``DispatchError``. Every
    message carries when it was sent (``pimsync status`` shows the oldest waiting one's age)."""
    options["headers"] = {**(options.get("headers") or {}), SENT_AT_HEADER: time.time()}
    try:
        celery_app.send_task(name, **options)
    except BROKER_ERRORS as exc:
        raise DispatchError(f"broker unreachable ({_where()}): {exc}") from exc


def _where() -> str:
    url = str(celery_app.conf.broker_url or "")
    return url.rsplit("@", 1)[-1] if "@" in url else url  # no credentials in messages


class CeleryDispatcher:
    """Enqueue by stable task name; arguments stay small (ids, counts), never payloads."""

    def ingest(self, run_id: uuid.UUID, countdown: float = 0.0) -> None:
        _send("sync.ingest", args=[str(run_id)], queue="sync", countdown=countdown or None)

    def catch_up(self, channels: list[str], parent_id: uuid.UUID | None, kind: str) -> None:
        _send(
            "sync.catch_up",
            args=[list(channels)],
            kwargs={"parent_id": str(parent_id) if parent_id else None, "kind": kind},
            queue="sync",
        )

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        _send(
            "publish.units",
            args=[batch_ids],
            kwargs=summary or {},
            queue="publish",
            countdown=countdown or None,
        )

    def catalog_changed(self, changes: dict[str, list[str]]) -> None:
        _send("events.catalog.apply", args=[changes], queue="events.catalog")

    def pim_product(self, key: str, countdown: float = 0.0) -> None:
        _send("events.pim.product", args=[key], queue="events.pim", countdown=countdown or None)

    def project_catalog(
        self, session: Session, changes: dict[str, list[str]], now: datetime
    ) -> int:
        """A run's publish batch writes its product pages in its own transaction: no catalog
        event, no second transaction re-reading the rows it just wrote."""
        return project_committed_with(session, changes, now)


_lock = threading.Lock()
_context: SyncContext | None = None
_source: PimSource | None = None


def _source_factory() -> PimSource:
    global _source
    with _lock:
        if _source is None:
            _source = open_source(get_settings().pim_source)
        return _source


def process_context() -> SyncContext:
    global _context
    with _lock:
        if _context is None:
            _context = SyncContext(get_settings(), CeleryDispatcher(), _source_factory)
        return _context


def reset_process_context() -> None:
    """Forget the cached context and PIM client (tests, settings reloads)."""
    global _context, _source
    with _lock:
        if _source is not None:
            _source.close()
        _context, _source = None, None


def send_domain_events(domain: str, source: str, events: list[Any]) -> None:
    """Domain events onto their own queue (events.pricing, events.inventory, events.media)."""
    _send(f"events.{domain}.apply", args=[serialise(events), source], queue=f"events.{domain}")


def send(name: str, *args: Any, **kwargs: Any) -> None:
    _send(name, args=list(args), kwargs=kwargs)
