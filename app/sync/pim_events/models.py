"""The PIM events' tables: every event id accepted once, and each product's pending work."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDoc, UTCDateTime


class WebhookEvent(Base):
    """Every PIM event id accepted once: a redelivered event is acknowledged and ignored."""

    __tablename__ = "webhook_event"

    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(60), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class PendingSku(Base):
    """Work for one product, coalesced: a burst of events leaves one row and one task.

    ``key`` is the SKU, or ``uuid:<uuid>`` when the event carries only the product's uuid.
    """

    __tablename__ = "pending_sku"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    action: Mapped[str] = mapped_column(String(20), nullable=False)  # upsert | remove
    # The newest product payload the events carried (None: fetch it from the PIM).
    product: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    events: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
    # When the first event arrived; for a product the mirror has not written within the
    # coalescing window, one window earlier: due at once (pim_events.apply.accept).
    first_event_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # Set when a task takes the work; the row goes only when that task commits (a task that
    # dies leaves it for the sweeper), and only if no event arrived meanwhile.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_events: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # A task takes other due, unclaimed products along, oldest first (pim_events._claim):
        # under a backlog that is an index range scan, not a sort of every pending row.
        Index(
            "ix_pending_sku_unclaimed_first_event_at",
            "first_event_at",
            postgresql_where=text("claimed_at IS NULL"),
            sqlite_where=text("claimed_at IS NULL"),
        ),
    )
