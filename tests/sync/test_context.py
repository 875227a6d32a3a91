"""The sync context's message sending (pure: a recording dispatcher, a fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import Settings
from app.sync.context import SyncContext

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[list[int], float]] = []

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        self.sent.append((batch_ids, countdown))


def test_a_retry_is_never_sent_to_run_before_its_not_before() -> None:
    recorder = Recorder()
    ctx = SyncContext(Settings(), recorder, lambda: None, clock=lambda: NOW)  # type: ignore[arg-type]
    later = [
        (1, NOW + timedelta(milliseconds=40), None, "de", 1),
        (2, NOW + timedelta(milliseconds=1040), None, "de", 1),
        (3, None, "g", "de", 10),
        (4, None, "g", "at", 10),
        (5, NOW - timedelta(seconds=1), None, "de", 1),
    ]
    ctx.send_grouped(later)  # type: ignore[arg-type]
    # tenths of a second, rounded up (40 ms used to round down to "now")
    assert sorted(recorder.sent) == [([1], 0.1), ([2], 1.1), ([3, 4], 0.0), ([5], 0.0)]
