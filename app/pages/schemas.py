"""Domain events at the edges (HTTP bodies, queue messages), validated with pydantic."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

Domain = Literal["catalog", "pricing", "inventory", "media"]
MAX_PAYLOAD_BYTES = 64 * 1024  # a price, a stock level, a media set: kilobytes, not megabytes
MAX_VERSION = 2**63 - 1


class DomainEvent(BaseModel):
    """A change in one domain for one SKU (in one channel, or in every channel: None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Domain
    sku: str = Field(min_length=1, max_length=255)
    channel: str | None = Field(default=None, max_length=64)
    # Monotonically increasing at its source: the newer event wins, whatever the arrival order.
    source_version: int = Field(ge=1, le=MAX_VERSION)
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(orjson.dumps(value))
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {size:,} bytes exceeds {MAX_PAYLOAD_BYTES:,}")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (e.g. 2026-11-27T10:00:00Z)")
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[DomainEvent] = Field(min_length=1, max_length=1000)


def serialise(events: list[DomainEvent]) -> list[dict[str, Any]]:
    """Events as a queue message carries them (JSON types only)."""
    return [e.model_dump(mode="json") for e in events]
