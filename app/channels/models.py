"""``channel_product``: one row per (channel, sku), the channel-local catalog."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, SmallInteger, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.channels.statuses import (  # noqa: F401  (the statuses, where the rows are)
    DISABLED_IN_PIM,
    FILTERED,
    INCOMPLETE,
    ORPHAN,
    PUBLISHED,
    REMOVED,
    STATUSES,
)
from app.db import Base, JSONDoc, UTCDateTime


class ChannelProduct(Base):
    __tablename__ = "channel_product"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(255), primary_key=True)
    # The mapped document (the last published one is kept when a row is disabled).
    doc: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    contract_version: Mapped[str | None] = mapped_column(String(100))
    # Hash of everything that decided this row (product content, contract, channel config):
    # equal hash, nothing to write.
    input_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(40))
    # Missing attributes, the failing filter's name, ...
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    completeness: Mapped[int | None] = mapped_column(SmallInteger)
    sync_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The mirror change (pim_product.change_seq) this row was computed from: a unit computed
    # from an older product never overwrites one computed from a newer product.
    source_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Bumped on every change: the catalog domain's source version for product pages.
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)

    __table_args__ = (
        Index("ix_channel_product_channel_enabled", "channel", "enabled"),
        Index("ix_channel_product_sync_run_id", "sync_run_id"),
        Index("ix_channel_product_channel_status", "channel", "status"),
    )
