"""Domain events at the edges (HTTP bodies, queue messages), validated with pydantic."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.pages.currencies import ISO_4217
from app.textcheck import first_problem, text_problem

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

    @field_validator("sku", "channel")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and (problem := text_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("payload")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if found := first_problem(value):
            raise ValueError(f"{found[0]} {found[1]}")
        size = len(orjson.dumps(value))
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {size:,} bytes exceeds {MAX_PAYLOAD_BYTES:,}")
        return value

    @model_validator(mode="after")
    def _meaningful(self) -> DomainEvent:
        """What a payload says must make sense for its domain (the shape stays open)."""
        rule = _PAYLOAD_RULES.get(self.type)
        if rule is not None:
            rule(self.payload)
        return self

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


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"payload.{what} must be a decimal number, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"payload.{what} must be a decimal number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"payload.{what} must be a finite number, got {value!r}")
    return amount


def _pricing(payload: dict[str, Any]) -> None:
    """A price is not negative, its currency is ISO 4217, and a purchasable product has one."""
    for key in ("amount", "price", "sale_price", "list_price"):
        if key in payload and payload[key] is not None and _amount(payload[key], key) < 0:
            raise ValueError(f"payload.{key} is negative ({payload[key]!r})")
    currency = payload.get("currency")
    # a string first: a list or an object is no currency (and unhashable: a TypeError, a 500)
    if currency is not None and (not isinstance(currency, str) or currency not in ISO_4217):
        raise ValueError(f"payload.currency {currency!r} is not an ISO 4217 currency code")
    if payload.get("purchasable") is True and payload.get("amount", payload.get("price")) is None:
        raise ValueError("payload.purchasable is true but the payload carries no price")


def _inventory(payload: dict[str, Any]) -> None:
    quantity = payload.get("quantity")
    if quantity is not None and (
        isinstance(quantity, bool) or not isinstance(quantity, (int, float))
    ):
        raise ValueError(f"payload.quantity must be a number, got {quantity!r}")
    for key in ("in_stock", "available"):
        if key in payload and not isinstance(payload[key], bool):
            raise ValueError(f"payload.{key} must be true or false, got {payload[key]!r}")


_PAYLOAD_RULES = {"pricing": _pricing, "inventory": _inventory}
