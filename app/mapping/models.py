"""Drift records: one row per (contract version, attribute), counted, never one per product."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class DriftEvent(Base):
    __tablename__ = "drift_event"

    contract_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    contract_version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attribute: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(8), nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sample_sku: Mapped[str | None] = mapped_column(String(255))


class OwnershipViolation(Base):
    """A source that carried a domain it does not own, counted per (source, domain, attribute)."""

    __tablename__ = "ownership_violation"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    domain: Mapped[str] = mapped_column(String(32), primary_key=True)
    attribute: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sample_sku: Mapped[str | None] = mapped_column(String(255))
