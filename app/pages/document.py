"""The document the storefront reads, composed from one product_page row (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# The domains a page is composed of, each with its own source version and readiness.
DOMAINS = ("catalog", "pricing", "inventory", "media")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PageRow(Protocol):
    """A product_page row as these functions read it: a ``ProductPage``, a SQLAlchemy ``Row``
    of its table (``pages.repository``) or a psycopg named tuple (``pages.reader``)."""

    @property
    def channel(self) -> str: ...
    @property
    def sku(self) -> str: ...
    @property
    def catalog(self) -> dict[str, Any] | None: ...
    @property
    def catalog_version(self) -> int: ...
    @property
    def catalog_enabled(self) -> bool: ...
    @property
    def catalog_status(self) -> str | None: ...
    @property
    def pricing(self) -> dict[str, Any] | None: ...
    @property
    def pricing_version(self) -> int: ...
    @property
    def inventory(self) -> dict[str, Any] | None: ...
    @property
    def inventory_version(self) -> int: ...
    @property
    def media(self) -> dict[str, Any] | None: ...
    @property
    def media_version(self) -> int: ...
    @property
    def updated_at(self) -> datetime: ...


def readiness(page: PageRow) -> dict[str, bool]:
    """Which domains have projected: a new SKU's catalog usually arrives before its price and
    stock, and the storefront shows "contact for pricing" instead of a broken page."""
    return {d: getattr(page, f"{d}_version") > 0 for d in DOMAINS}


def in_stock(inventory: dict[str, Any] | None) -> bool:
    if not inventory:
        return False
    if inventory.get("in_stock") is False or inventory.get("available") is False:
        return False
    quantity = inventory.get("quantity")
    return not (isinstance(quantity, (int, float)) and quantity <= 0)


def purchasable(page: PageRow) -> bool:
    ready = readiness(page)
    return bool(
        page.catalog_enabled
        and ready["pricing"]
        and ready["inventory"]
        and in_stock(page.inventory)
    )


def versions(page: PageRow) -> dict[str, int]:
    return {d: int(getattr(page, f"{d}_version")) for d in DOMAINS}


def etag(page: PageRow) -> str:
    """Changes exactly when the document does: every change bumps a domain's version, except
    a reconciliation repair (same version, corrected content), which still sets updated_at."""
    v = versions(page)
    written = (page.updated_at - _EPOCH) // timedelta(microseconds=1)
    return '"' + ".".join(str(v[d]) for d in DOMAINS) + f"-{written}" + '"'


def compose(page: PageRow) -> dict[str, Any]:
    return {
        "sku": page.sku,
        "channel": page.channel,
        "catalog": page.catalog,
        "pricing": page.pricing,
        "inventory": page.inventory,
        "media": page.media,
        "readiness": readiness(page),
        "purchasable": purchasable(page),
        "enabled": page.catalog_enabled,
        "status": page.catalog_status,
        "versions": versions(page),
        "updated_at": page.updated_at.isoformat(),
    }
