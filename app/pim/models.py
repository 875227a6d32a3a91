"""The ``pim_product`` mirror: the raw product as the PIM last gave it, and its content hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, Boolean, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class PimProduct(Base):
    __tablename__ = "pim_product"

    identifier: Mapped[str] = mapped_column(String(255), primary_key=True)
    uuid: Mapped[str | None] = mapped_column(String(64))
    family: Mapped[str | None] = mapped_column(String(100))
    # Model codes casefolded: Akeneo codes are case-insensitive (product model events).
    parent_key: Mapped[str | None] = mapped_column(String(255))
    root_parent_key: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # The PIM's own `updated`: an event older than this changes nothing.
    updated: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # json (not jsonb) on PostgreSQL: stored verbatim, cheaper to write and read back whole.
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(32), nullable=False)
    # Position in the mirror's change log (see pim.repository.change_token): channels catch
    # up from it, each on its own marker.
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # UUID, not uuid.UUID: inside this class `uuid` names the column above.
    last_seen_run: Mapped[UUID | None] = mapped_column(Uuid)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_pim_product_change_seq", "change_seq"),
        Index("ix_pim_product_uuid", "uuid"),
        Index("ix_pim_product_parent_key", "parent_key"),
        Index("ix_pim_product_root_parent_key", "root_parent_key"),
        {"comment": "Mirror of the PIM's products, read once for every channel."},
    )


class PimProductModel(Base):
    """Product models seen in events or exports (the variants under a model are republished)."""

    __tablename__ = "pim_product_model"

    code_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    code: Mapped[str] = mapped_column(String(255), nullable=False)
    parent_key: Mapped[str | None] = mapped_column(String(255))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MirrorClock(Base):
    """The mirror's change counter: positions handed out in commit order (one row)."""

    __tablename__ = "mirror_clock"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, server_default=text("1"))
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class PimDefinitions(Base):
    """The PIM's catalog definitions (attributes, families, channels...), as last read.

    Publishing reads them from here, never from the PIM: republishing works with the PIM down.
    """

    __tablename__ = "pim_definitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    hash: Mapped[str] = mapped_column(String(32), nullable=False)
    source: Mapped[str] = mapped_column(String(500), nullable=False)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
