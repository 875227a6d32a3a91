"""Admission for the expensive reads: a few at once, a short queue, then 503 with Retry-After.

Listing a channel's pages takes the database milliseconds of CPU per page, on the cores that
also acknowledge the PIM's webhooks. Admitting only a few listings at a time bounds their
share of the machine whatever the number of readers; the others wait their turn (a coroutine
each, holding nothing) or, past the queue or the wait, are told to come back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from app.metrics import READS_REFUSED
from app.web.security import Refused

# A client told "busy" tries again after this long: a listing takes milliseconds, so the
# queue in front of it has moved on by then.
RETRY_AFTER_SECONDS = 1


class Gate:
    """At most ``slots`` holders at once; up to ``queue`` more wait, each ``wait`` s at most."""

    def __init__(self, what: str, slots: int, queue: int, wait: float) -> None:
        self.what = what
        self.slots = anyio.Semaphore(slots)
        self.queue = queue
        self.wait = wait
        self.waiting = 0

    def _busy(self, reason: str) -> Refused:
        READS_REFUSED.labels(self.what, reason).inc()
        return Refused(
            503,
            "busy",
            f"too many {self.what} at once ({reason.replace('_', ' ')}); try again",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot for the block; Refused(503, busy) when none is free in time."""
        if self.slots.value == 0 and self.waiting >= self.queue:
            raise self._busy("queue_full")
        acquired = False
        self.waiting += 1
        try:
            with anyio.move_on_after(self.wait):
                await self.slots.acquire()
                acquired = True
        finally:
            self.waiting -= 1
        if not acquired:
            raise self._busy("waited_too_long")
        try:
            yield
        finally:
            self.slots.release()
