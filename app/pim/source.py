"""The one protocol every PIM source speaks, and ``open_source`` to pick one from a spec.

A source yields *pages* of raw standard-format products (dicts, unvalidated: the ingest parses
each one and isolates the bad ones) and can say what the catalog defines (attributes,
families, PIM channels, categories, options). Pages carry a resume token so a long export can
continue where a killed worker left it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from app.errors import PermanentError, TransientError
from app.pim.catalog import CatalogDefinitions


class SourceError(PermanentError):
    """The PIM could not be read (permanent: bad credentials, 404, malformed page...)."""


class TransientSourceError(SourceError, TransientError):
    """The PIM failed in a way worth retrying later (429, 5xx, timeouts, connection errors)."""


@dataclass(slots=True)
class Page:
    items: list[dict[str, Any]]
    # Token that makes iter_pages(resume=...) start at the page *after* this one; None on the
    # last page.
    next_cursor: str | None = None
    # Raw items the source could not even decode (kept for the ingest to record, never dropped).
    errors: list[str] = field(default_factory=list)


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


def open_source(spec: str | Path, **options: Any) -> PimSource:
    """Open a source from a spec.

    - ``sample``: the bundled sample catalog (generated with a fixed seed on first use),
    - ``generated:N[:SEED]``: a generated catalog of N products,
    - ``http(s)://...``: an Akeneo PIM over REST (credentials from settings or ``options``),
    - a folder holding Akeneo's icecat CSV fixtures (``products.csv`` + ``attributes.csv``),
    - a catalog folder (``products.jsonl`` [+ ``catalog.json``, ``product_models.jsonl``]),
    - a JSON lines file, one product per line (definitions from ``catalog.json`` beside it).
    """
    text = str(spec)
    if text.startswith(("http://", "https://")):
        from app.pim.akeneo import AkeneoRestSource

        return AkeneoRestSource.from_settings(text, **options)
    if text == "sample":
        from app.pim.generator import sample_catalog_dir

        return open_source(sample_catalog_dir(), **options)
    if text.startswith("generated:"):
        from app.pim.generator import GeneratedSource

        parts = text.split(":")
        try:
            count = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 42
        except (IndexError, ValueError):
            raise SourceError(f"bad generated source {text!r}: use generated:N[:SEED]") from None
        return GeneratedSource(count, seed=seed)
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(f"PIM source {text!r} not found (a folder, a .jsonl file or a URL)")
    if path.is_dir():
        if (path / "products.csv").exists() and (path / "attributes.csv").exists():
            from app.pim.icecat import IcecatSource

            return IcecatSource(path)
        if (path / "products.jsonl").exists():
            from app.pim.files import CatalogDirSource

            return CatalogDirSource(path)
        raise SourceError(
            f"{path} holds neither Akeneo CSV fixtures (products.csv, attributes.csv) "
            "nor a catalog (products.jsonl)"
        )
    from app.pim.files import JsonLinesSource

    return JsonLinesSource(path)
