"""How far a run has come: done / total and an estimate of the time left (pure, no I/O).

A PIM read counts products read against the total the PIM announced on its first page
(``items_count``, kept in the run's details). A channel run counts decided units against its
plan: once its planning is done that is exact; while a full sync still reads, each product the
PIM announced is one unit of every channel, so the read's total stands in for the plan. The
estimate is the remaining work at the run's average pace so far; none before any work is done
or without a total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.sync.models import COMPLETED, RUNNING, SyncRun


@dataclass(frozen=True, slots=True)
class Progress:
    what: str  # "products read" or "units"
    done: int
    total: int | None
    eta_seconds: float | None
    # when the count last moved (None: never)
    updated_at: datetime | None

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return min(100.0, 100.0 * self.done / self.total)

    def text(self) -> str:
        """``1,200/4,000 units (30 %), ETA 1m 20s`` (the ETA only while one is known)."""
        if self.total is None:
            return f"{self.done:,} {self.what}"
        out = f"{self.done:,}/{self.total:,} {self.what} ({self.percent or 0:.0f} %)"
        if self.eta_seconds is not None:
            out += f", ETA {duration_text(self.eta_seconds)}"
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "what": self.what,
            "done": self.done,
            "total": self.total,
            "percent": None if self.percent is None else round(self.percent, 1),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def duration_text(seconds: float) -> str:
    """``45s``, ``3m 05s``, ``2h 10m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _announced(run: SyncRun | None) -> int | None:
    total = (run.details or {}).get("total") if run is not None else None
    return total if isinstance(total, int) and total >= 0 else None


def _progress_at(run: SyncRun) -> datetime | None:
    stamp = (run.details or {}).get("progress_at")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            return None
    return None


def _eta(done: int, total: int | None, run: SyncRun, now: datetime) -> float | None:
    if run.status != RUNNING or total is None or done <= 0:
        return None
    elapsed = (now - run.started_at).total_seconds()
    if elapsed <= 0:
        return None
    return max(0, total - done) / (done / elapsed)


def run_progress(run: SyncRun, now: datetime, parent: SyncRun | None = None) -> Progress:
    """One run's progress; ``parent``: the PIM read feeding a channel run (full sync)."""
    total: int | None
    if run.channel is None:
        done = run.read
        total = _announced(run)
        if total is not None and run.status == RUNNING:
            total = max(total, done)  # products created while it reads
        elif run.status == COMPLETED:
            total = done
        return Progress(
            "products read", done, total, _eta(done, total, run, now), _progress_at(run)
        )
    done = run.processed
    if run.planning_done:
        total = run.planned_units
    else:
        announced = _announced(parent)
        total = None if announced is None else max(announced, run.planned_units)
    updated = run.heartbeat_at if done or run.planned_units else None
    return Progress("units", done, total, _eta(done, total, run, now), updated)


def family_progress(run: SyncRun, children: Sequence[SyncRun], now: datetime) -> Progress:
    """A whole sync's progress, as ``pimsync sync --wait`` shows it: a delta's read while it
    reads, then (and for a full sync) every channel's units together."""
    if run.channel is not None:
        return run_progress(run, now)
    if not children:
        return run_progress(run, now)
    parts = [run_progress(c, now, run) for c in children]
    done = sum(p.done for p in parts)
    totals = [p.total for p in parts]
    total = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
    stamps = [p.updated_at for p in parts if p.updated_at is not None]
    active = (
        run if run.status == RUNNING else next((c for c in children if c.status == RUNNING), run)
    )
    eta = _eta(done, total, active, now) if any(c.status == RUNNING for c in children) else None
    return Progress("units", done, total, eta, max(stamps) if stamps else None)
