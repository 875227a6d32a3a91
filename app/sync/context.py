"""What the sync services need from outside: settings, a dispatcher, a PIM source, a clock.

Services never import Celery: they ask the dispatcher to enqueue work, after the transaction
that caused it commits (``after_commit``). Tasks provide a Celery dispatcher; tests and the
demo may provide their own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from app.channels.repository import RowChange
from app.config import Settings
from app.db import after_commit, utcnow
from app.pim.source import PimSource


class Dispatcher(Protocol):
    def ingest(self, run_id: uuid.UUID) -> None: ...

    def catch_up(self, channel: str, parent_id: uuid.UUID | None, kind: str) -> None: ...

    def publish(self, batch_ids: list[int], countdown: float = 0.0) -> None:
        """One message for these batches (same SKUs, different channels, or just one)."""
        ...


# Called inside a publish transaction with the channel rows that changed (catalog events).
ChangeListener = Callable[[Session, list[RowChange]], None]


@dataclass
class SyncContext:
    settings: Settings
    dispatcher: Dispatcher
    source_factory: Callable[[], PimSource]
    clock: Callable[[], datetime] = utcnow
    change_listeners: list[ChangeListener] = field(default_factory=list)
    # When set, released batches are kept here instead of sent (see publish_batches).
    held: list[tuple[int, datetime | None, str | None]] | None = None

    def now(self) -> datetime:
        return self.clock()

    def source(self) -> PimSource:
        return self.source_factory()

    def lock_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.lock_ttl_seconds)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x..."""
        base = self.settings.retry_backoff_base_seconds
        cap = self.settings.retry_backoff_max_seconds
        return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))

    def enqueue_publish(
        self, session: Session, batches: list[tuple[int, datetime | None, str | None]]
    ) -> None:
        """Enqueue released batches once ``session`` commits, one message per group key."""
        if not batches:
            return
        pending = session.info.get("publish_queue")
        if pending is None:
            pending = session.info["publish_queue"] = []
            after_commit(session, lambda: self.send_grouped(pending))
        pending.extend(batches)

    def send_grouped(self, batches: list[tuple[int, datetime | None, str | None]]) -> None:
        if self.held is not None:
            self.held.extend(batches)
            return
        now = self.now()
        groups: dict[tuple[object, float], list[int]] = {}
        for batch_id, not_before, group_key in batches:
            countdown = max(0.0, (not_before - now).total_seconds()) if not_before else 0.0
            key = (group_key or batch_id, round(countdown, 1))
            groups.setdefault(key, []).append(batch_id)
        for (_key, countdown), ids in groups.items():
            self.dispatcher.publish(sorted(ids), countdown)
