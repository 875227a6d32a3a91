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

    def publish(self, batch_id: int, countdown: float = 0.0) -> None: ...


# Called inside a publish transaction with the channel rows that changed (catalog events).
ChangeListener = Callable[[Session, list[RowChange]], None]


@dataclass
class SyncContext:
    settings: Settings
    dispatcher: Dispatcher
    source_factory: Callable[[], PimSource]
    clock: Callable[[], datetime] = utcnow
    change_listeners: list[ChangeListener] = field(default_factory=list)

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

    def enqueue_publish(self, session: Session, batches: list[tuple[int, datetime | None]]) -> None:
        now = self.now()
        for batch_id, not_before in batches:
            countdown = max(0.0, (not_before - now).total_seconds()) if not_before else 0.0
            after_commit(session, lambda b=batch_id, c=countdown: self.dispatcher.publish(b, c))
