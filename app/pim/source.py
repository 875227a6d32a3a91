"""The one protocol every PIM source speaks (``app.pim.sources.open_source`` picks one).

A source yields *pages* of raw standard-format products (dicts, unvalidated: the ingest parses
each one and isolates the bad ones) and can say what the catalog defines (attributes,
families, PIM channels, categories, options). Pages carry a resume token so a long export can
continue where a killed worker left it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from app.errors import PermanentError, TransientError
from app.pim.catalog import CatalogDefinitions


class SourceError(PermanentError):
    """The PIM could not be read (permanent: bad credentials, 404, malformed page...)."""


class TransientSourceError(SourceError, TransientError):
    """The PIM failed in a way worth retrying later (429, 5xx, timeouts, connection errors)."""


class PimThrottled(TransientSourceError):
    """The PIM asked for quiet until ``not_before`` (``Retry-After``), longer than a worker
    should sleep: the task is deferred to that instant instead (not a failure: it does not
    use up the task's retries). ``status`` is the answer that asked (429, 503...)."""

    def __init__(self, message: str, not_before: datetime, status: int | None = None) -> None:
        super().__init__(message)
        self.not_before = not_before
        self.status = status


@dataclass(slots=True)
class Page:
    items: list[dict[str, Any]]
    # Token that makes iter_pages(resume=...) start at the page *after* this one; None on the
    # last page.
    next_cursor: str | None = None
    # Raw items the source could not even decode (kept for the ingest to record, never dropped).
    errors: list[str] = field(default_factory=list)
    # How many products the whole read will yield, when the source can say (the PIM's
    # `items_count`, a file's line count); set on the first page only, None elsewhere. It is
    # what progress is measured against: an estimate (the catalog may change while it is read).
    total: int | None = None


@runtime_checkable
class PimSource(Protocol):
    name: str

    def definitions(self) -> CatalogDefinitions: ...

    def iter_pages(
        self,
        updated_since: datetime | None = None,
        page_size: int = 100,
        resume: str | None = None,
    ) -> Iterator[Page]:
        """Products updated strictly after ``updated_since`` (all when None), page by page."""
        ...

    def get(self, identifier: str) -> dict[str, Any] | None:
        """One product in standard format, or None when the PIM does not have it."""
        ...

    def get_model(self, code: str) -> dict[str, Any] | None:
        """One product model in standard format, or None."""
        ...

    def close(self) -> None: ...


def snapshot(source: PimSource, page_size: int = 100, resume: str | None = None) -> Iterator[Page]:
    """The full export: every product, streamed page by page."""
    return source.iter_pages(None, page_size=page_size, resume=resume)
