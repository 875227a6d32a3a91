"""``open_source``: the PIM source a spec names (an Akeneo URL, an export on disk, or the
embedded sample)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.pim.akeneo import AkeneoRestSource
from app.pim.files import CatalogDirSource, JsonLinesSource
from app.pim.icecat import IcecatSource
from app.pim.source import PimSource, SourceError


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
        return AkeneoRestSource.from_settings(text, **options)
    if text == "sample" or text.startswith("generated:"):
        # The embedded default and generated catalogs are the development package's: it is
        # loaded only when the settings ask for one of them, never on a real PIM's path.
        from app.dev.generator import GeneratedSource, sample_catalog_dir

        if text == "sample":
            return open_source(sample_catalog_dir(), **options)
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
            return IcecatSource(path)
        if (path / "products.jsonl").exists():
            return CatalogDirSource(path)
        raise SourceError(
            f"{path} holds neither Akeneo CSV fixtures (products.csv, attributes.csv) "
            "nor a catalog (products.jsonl)"
        )
    return JsonLinesSource(path)


def describe_source(spec: str | Path) -> tuple[str, str]:
    """(kind, where) of a source spec, safe to store and print: an Akeneo URL loses any
    user-info, query and fragment (credentials never travel in a run); a path stays a path.
    Kinds: ``akeneo``, ``sample``, ``generated``, ``files``."""
    text = str(spec).strip()
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return "akeneo", urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if text == "sample":
        return "sample", text
    if text.startswith("generated:"):
        return "generated", text
    return "files", text
