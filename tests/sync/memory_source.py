"""An in-memory PIM for service tests: products we edit, remove and break at will."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from app.dev import generator
from app.pim.catalog import CatalogDefinitions
from app.pim.product import parse_datetime
from app.pim.source import Page, TransientSourceError


class MemorySource:
    name = "memory"

    def __init__(self, products: list[dict[str, Any]], defs: CatalogDefinitions) -> None:
        self.products = {p["identifier"]: copy.deepcopy(p) for p in products}
        self.defs = defs
        self.fail_reads = 0  # the next N iter_pages calls raise a transient error
        self.on_page: Callable[[int], None] | None = None  # called as each page is served
        self.reads = 0

    @classmethod
    def generated(cls, count: int, seed: int = 7) -> MemorySource:
        return cls(list(generator.iter_products(count, seed)), generator.generated_definitions())

    def definitions(self) -> CatalogDefinitions:
        return self.defs

    def iter_pages(
        self, updated_since: datetime | None = None, page_size: int = 100, resume: str | None = None
    ) -> Iterator[Page]:
        self.reads += 1
        if self.fail_reads:
            self.fail_reads -= 1
            raise TransientSourceError("PIM answered 503 (test)")
        keys = sorted(self.products)
        if updated_since is not None:
            keys = [
                k
                for k in keys
                if self.products[k].get("updated")
                and parse_datetime(self.products[k]["updated"]) > updated_since
            ]
        start = int(resume or 0)
        i = start
        n = 0
        while i < len(keys) or (i == 0 and not keys):
            chunk = keys[i : i + page_size]
            i += page_size
            token = str(i) if i < len(keys) else None
            page = Page(
                items=[copy.deepcopy(self.products[k]) for k in chunk],
                next_cursor=token,
                total=len(keys) if resume is None and n == 0 else None,
            )
            n += 1
            if self.on_page is not None:  # the PIM changes after answering, before we commit
                self.on_page(n)
            yield page
            if token is None:
                return

    def get(self, identifier: str) -> dict[str, Any] | None:
        p = self.products.get(identifier)
        return copy.deepcopy(p) if p else None

    def get_model(self, code: str) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        return None

    # --- editing, as a catalog team would -------------------------------------------------

    def touch(self, identifier: str, when: datetime | None = None) -> dict[str, Any]:
        product = self.products[identifier]
        product["updated"] = (when or datetime.now(UTC)).isoformat()
        return product

    def rename(self, identifier: str, suffix: str, when: datetime | None = None) -> None:
        product = self.touch(identifier, when)
        for entry in product["values"].get("name", []):
            entry["data"] = f"{entry['data']} {suffix}"

    def set_enabled(self, identifier: str, enabled: bool) -> None:
        self.touch(identifier)["enabled"] = enabled

    def remove(self, identifier: str) -> None:
        del self.products[identifier]


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
