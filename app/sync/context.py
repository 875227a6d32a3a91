"""What the sync services need from outside: settings, a dispatcher, a PIM source, a clock.

Services never import Celery: they ask the dispatcher to enqueue work, after the transaction
that caused it commits (``after_commit``). Tasks provide a Celery dispatcher; tests and the
demo may provide their own.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.channels.repository import RowChange
from app.config import Settings
from app.db import after_commit, utcnow
from app.errors import TransientError
from app.pim.source import PimSource, SourceError
from app.pim.sources import describe_source, open_source
from app.sync.repository import Released


class DispatchError(TransientError):
    """Work could not be enqueued: the broker is unreachable."""


class Dispatcher(Protocol):
    def ingest(self, run_id: uuid.UUID, countdown: float = 0.0) -> None:
        """The run's next read slice (``countdown``: not before that many seconds)."""
        ...

    def catch_up(self, channels: list[str], parent_id: uuid.UUID | None, kind: str) -> None:
        """Plan these channels' catch-ups (one run each) in one message."""
        ...

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        """One message for these batches (same SKUs, different channels, or just one)."""
        ...

    def catalog_changed(self, changes: dict[str, list[str]]) -> None:
        """Catalog events: these rows ({channel: skus}) changed; project them onto product
        pages. One message for every channel a transaction touched (a webhook's product
        changes in four channels at once: one consumer task, not four)."""
        ...

    def pim_product(self, key: str, countdown: float = 0.0) -> None:
        """Apply a product's pending PIM events (after the coalescing window)."""
        ...

    # A dispatcher may also offer ``project_catalog(session, changes, now)``: project these
    # channel catalog changes onto product pages inside ``session``'s transaction (the layer
    # that owns the pages provides it; see ``SyncContext.project_changes``).


# Catalog events travel per channel in messages of at most this many SKUs.
CATALOG_EVENT_CHUNK = 500


@dataclass
class SyncContext:
    settings: Settings
    dispatcher: Dispatcher
    source_factory: Callable[[], PimSource]
    clock: Callable[[], datetime] = utcnow
    # When set, released batches are kept here instead of sent (see publish_batches).
    held: list[Released] | None = None
    # Sources a run named that are not this process's own (see source_for), opened once.
    others: dict[str, PimSource] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    def source(self) -> PimSource:
        return self.source_factory()

    def source_record(self, spec: str | None = None) -> tuple[str, str]:
        """What a new run records as its source: ``spec`` or this process's setting."""
        return describe_source(spec or self.settings.pim_source)

    def source_for(self, recorded: str | None) -> PimSource:
        """The source a run recorded, opened here, or SourceError saying why it cannot be.

        A run reads the source it recorded, not whatever this worker is set to read. An
        Akeneo PIM other than this process's own is refused: the worker's credentials
        (PIMSYNC_AKENEO_*) are for its own PIMSYNC_PIM_SOURCE and are never sent elsewhere."""
        _, own = describe_source(self.settings.pim_source)
        if recorded is None or recorded == own:
            return self.source()
        kind, where = describe_source(recorded)
        if kind == "akeneo":
            raise SourceError(
                f"this run reads the PIM at {where}, but this worker's PIMSYNC_PIM_SOURCE is "
                f"{own}: a worker sends its Akeneo credentials only to its own PIM. Set "
                "PIMSYNC_PIM_SOURCE and PIMSYNC_AKENEO_* on the workers (and the command) "
                "alike"
            )
        opened = self.others.get(where)
        if opened is None:
            opened = self.others[where] = open_source(where)
        return opened

    def lock_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.lock_ttl_seconds)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x..."""
        base = self.settings.retry_backoff_base_seconds
        cap = self.settings.retry_backoff_max_seconds
        return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))

    def notify_changes(self, session: Session, changes: list[RowChange]) -> None:
        """Every committed channel_product change emits a catalog event, sent after commit."""
        if not changes:
            return
        pending = session.info.get("catalog_changes")
        if pending is None:
            pending = session.info["catalog_changes"] = {}
            after_commit(session, lambda: self._send_catalog(pending))
        for change in changes:
            pending.setdefault(change.channel, set()).add(change.sku)

    def project_changes(self, session: Session, changes: list[RowChange]) -> None:
        """A publish batch's changes onto product pages in the batch's own transaction, when
        the dispatcher can (``project_catalog``): the pages commit with the rows and no catalog
        event is needed. Otherwise catalog events after commit (``notify_changes``)."""
        projector = getattr(self.dispatcher, "project_catalog", None)
        if projector is None:
            self.notify_changes(session, changes)
            return
        if not changes:
            return
        by_channel: dict[str, list[str]] = {}
        for change in changes:
            by_channel.setdefault(change.channel, []).append(change.sku)
        projector(session, by_channel, self.now())

    def _send_catalog(self, pending: dict[str, set[str]]) -> None:
        """Messages of at most CATALOG_EVENT_CHUNK rows, as few as that allows."""
        message: dict[str, list[str]] = {}
        size = 0
        for channel, skus in sorted(pending.items()):
            for sku in sorted(skus):
                if size >= CATALOG_EVENT_CHUNK:
                    self.dispatcher.catalog_changed(message)
                    message, size = {}, 0
                message.setdefault(channel, []).append(sku)
                size += 1
        if message:
            self.dispatcher.catalog_changed(message)

    def enqueue_publish(self, session: Session, batches: list[Released]) -> None:
        """Enqueue released batches once ``session`` commits, one message per group key."""
        if not batches:
            return
        pending = session.info.get("publish_queue")
        if pending is None:
            pending = session.info["publish_queue"] = []
            after_commit(session, lambda: self.send_grouped(pending))
        pending.extend(batches)

    def send_grouped(self, batches: list[Released]) -> None:
        if self.held is not None:
            self.held.extend(batches)
            return
        now = self.now()
        groups: dict[tuple[object, float], list[Released]] = {}
        for batch in batches:
            batch_id, not_before, group_key = batch[0], batch[1], batch[2]
            countdown = max(0.0, (not_before - now).total_seconds()) if not_before else 0.0
            # grouped by tenths of a second, rounded up: a retry never runs before not_before
            countdown = math.ceil(countdown * 10) / 10
            groups.setdefault((group_key or batch_id, countdown), []).append(batch)
        for (_key, countdown), items in groups.items():
            # channels and unit count ride along for operators (Flower shows them)
            summary = {"channels": sorted({b[3] for b in items}), "units": sum(b[4] for b in items)}
            self.dispatcher.publish(sorted(b[0] for b in items), countdown, summary)
