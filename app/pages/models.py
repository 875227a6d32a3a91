"""``product_page``: one row per (channel, sku), a projection per domain with its version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDoc, UTCDateTime
from app.pages.document import DOMAINS  # noqa: F401  (the domains, where the rows are)


class ProductPage(Base):
    __tablename__ = "product_page"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Each domain: its projection and the source version it was built from (0: none yet, so
    # "ready" is version > 0). An event applies only if it is newer than what is stored.
    catalog: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    catalog_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    catalog_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    catalog_status: Mapped[str | None] = mapped_column(String(20))
    pricing: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    pricing_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    inventory: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    inventory_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    media: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    media_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
