"""Runs, cursors, locks, batches and dead letters: the sync engine's state, all in the database.

Batch completion is tracked here, not with Celery chords: a run is done when its pending batch
count reaches zero, decremented in the same transaction that commits the batch's rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime

# sync_run.kind
DELTA = "delta"
FULL = "full"
REPUBLISH = "republish"
REPLAY = "replay"
EVENT = "event"
# sync_run.status
RUNNING = "running"
COMPLETED = "completed"
ABORTED = "aborted"
FAILED = "failed"
SKIPPED = "skipped"
ABANDONED = "abandoned"
CANCELLED = "cancelled"
# A run in one of these states is over: nothing of it runs or will run again.
TERMINAL = frozenset({COMPLETED, ABORTED, FAILED, SKIPPED, ABANDONED, CANCELLED})


class SyncRun(Base):
    """One cycle. A run without a channel is the PIM read (ingest) that feeds channel runs."""

    __tablename__ = "sync_run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    channel: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False, default="cli")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Ingest: products read from the PIM, rejected as malformed.
    read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Channel runs: unit outcomes.
    synced: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    unchanged: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    skipped_incomplete: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    filtered: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    disabled: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    orphans_disabled: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    planned_units: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    planned_batches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pending_batches: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The ingest feeding this run has read its last page.
    planning_done: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    cursor_from: Mapped[str | None] = mapped_column(String(64))
    cursor_to: Mapped[str | None] = mapped_column(String(64))
    # Where a sliced ingest continues (the PIM's next-page token).
    resume_token: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The PIM source a reading run reads (app.pim.sources.describe_source): its kind
    # (akeneo, sample, generated, files) and its URL or path, never a credential. The worker
    # reads this source, not its own setting (or refuses the run, saying why).
    source_kind: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (
        Index("ix_sync_run_channel_kind_started", "channel", "kind", "started_at"),
        Index("ix_sync_run_parent_id", "parent_id"),
        Index("ix_sync_run_status", "status"),
    )

    @property
    def processed(self) -> int:
        """Units decided so far, whatever the outcome."""
        return (
            self.synced
            + self.unchanged
            + self.skipped_incomplete
            + self.filtered
            + self.disabled
            + self.failed
        )

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class SyncCursor(Base):
    """Progress markers: ``ingest`` (the PIM's `updated`) and ``channel:<code>`` (change_seq)."""

    __tablename__ = "sync_cursor"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class SyncLock(Base):
    """A lease: held by one run, renewed while it works, expired if its worker died.

    Each acquisition draws a new ``token`` (a fencing token): a holder renews and releases
    with it, so a copy of the same run whose lease expired and was taken over cannot renew,
    release or write under the new holder's lease."""

    __tablename__ = "sync_lock"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    token: Mapped[str | None] = mapped_column(String(32))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


# sync_batch.status
BATCH_PENDING = "pending"
BATCH_ENQUEUED = "enqueued"
BATCH_DONE = "done"


class SyncBatch(Base):
    """A batch of publish units of one channel: the plan, durable before any message is sent."""

    __tablename__ = "sync_batch"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    channel: Mapped[str] = mapped_column(String(64), nullable=False)
    skus: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    units: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    # Batches of different channels over the same SKUs (a full sync's page group) share a
    # key: one message carries them, so the products are read and decoded once.
    group_key: Mapped[str | None] = mapped_column(String(80))
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_sync_batch_run_status", "run_id", "status"),
        Index("ix_sync_batch_status_enqueued_at", "status", "enqueued_at"),
    )


# dead_letter.status
DL_OPEN = "open"
DL_REPLAYED = "replayed"
DL_RESOLVED = "resolved"


class DeadLetter(Base):
    """A unit that kept failing or failed permanently: visible, replayable, never dropped."""

    __tablename__ = "dead_letter"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    channel: Mapped[str] = mapped_column(String(64), nullable=False)
    sku: Mapped[str] = mapped_column(String(255), nullable=False)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="publish")
    error_type: Mapped[str] = mapped_column(String(100), nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    permanent: Mapped[bool] = mapped_column(Boolean, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # One open dead letter per unit: a unit failing again updates it.
        Index(
            "uq_dead_letter_open_unit",
            "channel",
            "sku",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        Index("ix_dead_letter_status_last_failed_at", "status", "last_failed_at"),
    )
