"""What the sync-health dashboard shows, gathered in a handful of queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.channels.config import ChannelConfig
from app.mapping.models import DriftEvent, OwnershipViolation
from app.pages.models import ProductPage
from app.pages.repository import readiness_counts
from app.sync.models import DeadLetter, SyncCursor, SyncRun

RECENT_RUNS = 30
FAILED_STATES = ("failed", "aborted", "abandoned")


@dataclass
class ChannelHealth:
    code: str
    label: str
    last_delta: SyncRun | None = None
    last_full: SyncRun | None = None
    cursor_age: float | None = None
    newest_page_age: float | None = None
    runs: list[SyncRun] = field(default_factory=list)
    error_rate: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    readiness: dict[str, int] = field(default_factory=dict)
    open_dead_letters: int = 0

    @property
    def state(self) -> str:
        """ok | dead-letters | stale | failing: what an operator looks at first. A channel
        with open dead letters is never green: some of its products are not what the PIM
        says."""
        last = self.last_delta or self.last_full
        if last is not None and last.status in FAILED_STATES:
            return "failing"
        if self.error_rate > 0.05:
            return "failing"
        if self.cursor_age is None or self.cursor_age > 3 * 3600:
            return "stale"
        if self.open_dead_letters:
            return "dead-letters"
        return "ok"

    @property
    def badges(self) -> list[tuple[str, str]]:
        """(text, css class) of the channel's badges: its state, then its dead letters when
        the state does not already say so."""
        out = [(self.state.replace("-", " "), self.state)]
        if self.open_dead_letters:
            noun = "dead letter" if self.open_dead_letters == 1 else "dead letters"
            text = f"{self.open_dead_letters} {noun}"
            if self.state == "dead-letters":
                return [(text, "dead-letters")]
            out.append((text, "dead-letters"))
        return out


@dataclass
class Dashboard:
    now: datetime
    channels: list[ChannelHealth]
    drift: list[DriftEvent]
    dead_letters: list[DeadLetter]
    violations: list[OwnershipViolation]
    last_reconcile: SyncRun | None
    last_ingest: SyncRun | None
    running: list[SyncRun]


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def gather(session: Session, channels: dict[str, ChannelConfig], now: datetime) -> Dashboard:
    runs = list(
        session.execute(
            select(SyncRun)
            .where(SyncRun.channel.is_not(None))
            .order_by(SyncRun.started_at.desc())
            .limit(RECENT_RUNS * max(len(channels), 1) * 2)
        ).scalars()
    )
    cursors = {c.name: c.updated_at for c in session.execute(select(SyncCursor)).scalars()}
    newest = dict(
        session.execute(
            select(ProductPage.channel, func.max(ProductPage.updated_at)).group_by(
                ProductPage.channel
            )
        ).all()
    )
    statuses = channel_repo.status_counts(session)
    readiness = readiness_counts(session)
    dead_counts = dict(
        session.execute(
            select(DeadLetter.channel, func.count())
            .where(DeadLetter.status == "open")
            .group_by(DeadLetter.channel)
        ).all()
    )
    day_ago = now - timedelta(days=1)
    out = []
    for code, ch in sorted(channels.items()):
        mine = [r for r in runs if r.channel == code]
        h = ChannelHealth(code, ch.label or code)
        h.last_delta = next((r for r in mine if r.kind == "delta" and r.status != "skipped"), None)
        h.last_full = next((r for r in mine if r.kind == "full" and r.status != "skipped"), None)
        h.runs = [r for r in mine if r.finished_at is not None and r.status != "skipped"][
            :RECENT_RUNS
        ][::-1]
        recent = [r for r in mine if r.started_at >= day_ago]
        processed = sum(r.processed for r in recent)
        failed = sum(r.failed for r in recent)
        h.error_rate = failed / processed if processed else 0.0
        h.cursor_age = _age(now, cursors.get(f"channel:{code}"))
        h.newest_page_age = _age(now, newest.get(code))
        h.statuses = statuses.get(code, {})
        h.readiness = readiness.get(code, {})
        h.open_dead_letters = int(dead_counts.get(code, 0))
        out.append(h)
    return Dashboard(
        now=now,
        channels=out,
        drift=list(
            session.execute(
                select(DriftEvent).order_by(DriftEvent.first_seen.desc()).limit(50)
            ).scalars()
        ),
        dead_letters=list(
            session.execute(
                select(DeadLetter)
                .where(DeadLetter.status == "open")
                .order_by(DeadLetter.last_failed_at.desc())
                .limit(50)
            ).scalars()
        ),
        violations=list(
            session.execute(
                select(OwnershipViolation).order_by(OwnershipViolation.count.desc()).limit(20)
            ).scalars()
        ),
        last_reconcile=session.execute(
            select(SyncRun)
            .where(SyncRun.kind == "reconcile")
            .order_by(SyncRun.started_at.desc())
            .limit(1)
        ).scalar_one_or_none(),
        last_ingest=session.execute(
            select(SyncRun)
            .where(SyncRun.channel.is_(None), SyncRun.kind.in_(("delta", "full")))
            .order_by(SyncRun.started_at.desc())
            .limit(1)
        ).scalar_one_or_none(),
        running=list(session.execute(select(SyncRun).where(SyncRun.status == "running")).scalars()),
    )


def humanize(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
