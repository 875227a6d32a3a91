"""Typed mapping errors. Mapping never raises anything else (a property test holds it to that)."""

from __future__ import annotations

from typing import Any


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MappingError(Exception):
    """Base of every error raised while mapping a product for a channel."""

    permanent = True  # retrying the same product with the same contract fails the same way


class TransformError(MappingError):
    """A value that a transform cannot convert. Names SKU, attribute, value, contract version."""

    def __init__(self, sku: str, attribute: str, value: Any, contract: str, reason: str) -> None:
        self.sku, self.attribute, self.value = sku, attribute, value
        self.contract, self.reason = contract, reason
        super().__init__(
            f"SKU {sku!r}: attribute {attribute!r} value {_short(value)} "
            f"(contract {contract}): {reason}"
        )


class DriftError(MappingError):
    """Unmapped attributes under a contract whose strategy is ``fail``."""

    def __init__(self, sku: str, contract: str, attributes: list[str]) -> None:
        self.sku, self.contract, self.attributes = sku, contract, attributes
        shown = ", ".join(attributes[:20]) + (" ..." if len(attributes) > 20 else "")
        super().__init__(
            f"SKU {sku!r}: {len(attributes)} attribute(s) not in contract {contract} "
            f"(unmapped strategy: fail): {shown}"
        )


class ContractError(ValueError):
    """A contract file that cannot be used, or a channel pinning a contract that is missing."""
