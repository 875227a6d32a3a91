"""A dispatcher that queues work in memory and a loop that runs it here, in this process.

For unit tests of the sync services (no broker, real database) and for measuring the
services without Celery's overhead. Production and the demo use Celery.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db import session_scope, utcnow
from app.pages.projection import apply_catalog, project_committed_with
from app.sync import ingest, publish
from app.sync.context import SyncContext
from app.sync.pim_events.apply import process


@dataclass
class LocalDispatcher:
    queue: deque[tuple[str, tuple[Any, ...]]] = field(default_factory=deque)
    sent: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def ingest(self, run_id: uuid.UUID, countdown: float = 0.0) -> None:
        self._put("ingest", (run_id,))

    def catch_up(self, channels: list[str], parent_id: uuid.UUID | None, kind: str) -> None:
        self._put("catch_up", (list(channels), parent_id, kind))

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        self._put("publish", (batch_ids,))

    def pim_product(self, key: str, countdown: float = 0.0) -> None:
        self._put("pim", (key,))

    def catalog_changed(self, changes: dict[str, list[str]]) -> None:
        self._put("catalog", (changes,))

    def project_catalog(
        self, session: Session, changes: dict[str, list[str]], now: datetime
    ) -> int:
        """A run's batch projects its pages in its own transaction (as the workers do)."""
        return project_committed_with(session, changes, now)

    def _put(self, name: str, args: tuple[Any, ...]) -> None:
        self.queue.append((name, args))
        self.sent.append((name, args))


def drain(ctx: SyncContext, max_steps: int = 1_000_000) -> int:
    """Run queued work until none is left; returns how many messages ran."""
    dispatcher = ctx.dispatcher
    assert isinstance(dispatcher, LocalDispatcher)
    steps = 0
    while dispatcher.queue and steps < max_steps:
        name, args = dispatcher.queue.popleft()
        steps += 1
        if name == "ingest":
            ingest.ingest_slice(ctx, args[0])
        elif name == "publish":
            publish.publish_batches(ctx, args[0])
        elif name == "catalog":
            with session_scope() as session:
                apply_catalog(session, args[0], utcnow())
        elif name == "pim":
            process(ctx, args[0])
        elif name == "catch_up":
            with session_scope() as session:
                publish.start_catchups(session, ctx, args[0], args[2], args[1])
    return steps
