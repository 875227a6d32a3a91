"""Catalogs kept in files: JSON lines of standard-format products (the embedded default).

A catalog folder holds ``products.jsonl`` (one product per line), ``catalog.json`` (the
definitions in Akeneo's REST shapes) and ``product_models.jsonl`` (one model per line). A bare
JSON lines file works too, with the other two files read from beside it when present.

Product files may be hundreds of megabytes, so products are streamed line by line and never
all held in memory; only the (small) model file and, once ``get`` is used, an identifier ->
byte offset index are kept. A line that is not a JSON object is reported in ``Page.errors`` as
``line N: reason`` and the good lines around it still come through.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from app.pim.catalog import (
    IDENTIFIER_TYPE,
    CatalogDefinitions,
    DefinitionError,
    definitions_from_dict,
)
from app.pim.product import parse_datetime
from app.pim.source import Page, SourceError
from app.pim.variants import index_models, resolve_model, resolve_product

PRODUCTS_FILE = "products.jsonl"
CATALOG_FILE = "catalog.json"
MODELS_FILE = "product_models.jsonl"


@dataclass(slots=True)
class _Line:
    number: int  # 1-based line number in the file
    item: dict[str, Any] | None
    error: str | None = None


def _decode(number: int, line: bytes) -> _Line:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return _Line(number, None, f"line {number}: invalid JSON: {exc}")
    if not isinstance(item, dict):
        return _Line(
            number, None, f"line {number}: expected a JSON object, got {type(item).__name__}"
        )
    return _Line(number, item)


def _iter_lines(path: Path, start: int = 1) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each non-blank line from line ``start`` on."""
    try:
        with path.open("rb") as handle:
            offset = 0
            for number, line in enumerate(handle, start=1):
                here, offset = offset, offset + len(line)
                if number >= start and line.strip():
                    yield number, here, line
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None


def identifier_of(item: dict[str, Any], identifier_attribute: str = "sku") -> str | None:
    """A product's identifier: ``identifier``, else its identifier attribute's value."""
    identifier = item.get("identifier")
    if isinstance(identifier, str) and identifier:
        return identifier
    values = item.get("values")
    entries = values.get(identifier_attribute) if isinstance(values, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("data"), str):
            return entry["data"]
    return None


def _updated_after(item: dict[str, Any], since: datetime) -> bool:
    """Keep what cannot be proven older: the ingest reports a missing or malformed date."""
    raw = item.get("updated")
    if not isinstance(raw, str):
        return True
    try:
        return parse_datetime(raw) > since
    except ValueError:
        return True


def _resume_line(resume: str | None) -> int:
    if resume is None:
        return 1
    try:
        line = int(resume)
    except ValueError:
        line = 0
    if line < 1:
        raise SourceError(f"bad resume token {resume!r}: expected a line number")
    return line


@dataclass(slots=True)
class _Models:
    resolved: dict[str, dict[str, Any]]  # casefolded code -> model with ancestors merged in
    index: dict[str, dict[str, Any]]  # casefolded code -> model as stored
    errors: list[str]


def _load_models(path: Path) -> _Models:
    if not path.exists():
        return _Models({}, {}, [])
    raw: list[dict[str, Any]] = []
    errors: list[str] = []
    for number, _, line in _iter_lines(path):
        decoded = _decode(number, line)
        if decoded.item is None:
            errors.append(f"{path.name} {decoded.error}")
        else:
            raw.append(decoded.item)
    try:
        index = index_models(raw)
    except ValueError as exc:
        raise SourceError(f"{path}: {exc}") from None
    resolved: dict[str, dict[str, Any]] = {}
    for key, model in index.items():
        try:
            resolved[key] = resolve_model(model, index)
        except ValueError as exc:
            errors.append(f"{path.name}: {exc}")
    return _Models(resolved, index, errors)


class JsonLinesSource:
    """Standard-format products, one per line, read lazily."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such products file")
        self.name = name or f"jsonl:{self.path}"
        self._definitions: CatalogDefinitions | None = None
        self._models: _Models | None = None
        # identifier -> byte offset, valid for the file state (size, mtime) it was built from
        self._offsets: dict[str, int] | None = None
        self._offsets_state: tuple[int, int] | None = None

    @property
    def catalog_path(self) -> Path:
        return self.path.parent / CATALOG_FILE

    @property
    def models_path(self) -> Path:
        return self.path.parent / MODELS_FILE

    # -- definitions and models --

    def definitions(self) -> CatalogDefinitions:
        if self._definitions is None:
            self._definitions = self._read_definitions()
        return self._definitions

    def _read_definitions(self) -> CatalogDefinitions:
        if not self.catalog_path.exists():
            return CatalogDefinitions()
        try:
            data = orjson.loads(self.catalog_path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SourceError(f"{self.catalog_path}: cannot read: {exc}") from None
        if not isinstance(data, dict):
            raise SourceError(f"{self.catalog_path}: expected a JSON object")
        try:
            return definitions_from_dict(data)
        except DefinitionError as exc:
            raise SourceError(f"{self.catalog_path}: {exc}") from None

    def _identifier_attribute(self) -> str:
        for attr in self.definitions().attributes.values():
            if attr.type == IDENTIFIER_TYPE:
                return attr.code
        return "sku"

    def _model_state(self) -> _Models:
        if self._models is None:
            self._models = _load_models(self.models_path)
        return self._models

    def iter_models(self) -> Iterator[dict[str, Any]]:
        """Every readable product model, completed from its root as Akeneo's API returns it."""
        for model in self._model_state().resolved.values():
            yield orjson.loads(orjson.dumps(model))

    def get_model(self, code: str) -> dict[str, Any] | None:
        model = self._model_state().resolved.get(code.casefold())
        # a private copy: the cached model is shared by every variant resolved from it
        return orjson.loads(orjson.dumps(model)) if model is not None else None

    # -- products --

    def _resolve(self, decoded: _Line) -> _Line:
        item = decoded.item
        if item is None or not item.get("parent"):
            return decoded
        try:
            return _Line(decoded.number, resolve_product(item, self._model_state().index))
        except ValueError as exc:
            return _Line(decoded.number, None, f"line {decoded.number}: {exc}")

    def _entries(self, start: int, since: datetime | None) -> Iterator[_Line]:
        for number, _, line in _iter_lines(self.path, start):
            decoded = _decode(number, line)
            if (
                decoded.item is not None
                and since is not None
                and not _updated_after(decoded.item, since)
            ):
                continue
            yield self._resolve(decoded)

    def iter_pages(
        self,
        updated_since: datetime | None = None,
        page_size: int = 100,
        resume: str | None = None,
    ) -> Iterator[Page]:
        """Pages of ``page_size`` lines (products or errors); the cursor is the next line number."""
        if page_size < 1:
            raise SourceError(f"page_size must be at least 1, got {page_size}")
        start = _resume_line(resume)
        since = parse_datetime(updated_since.isoformat()) if updated_since is not None else None
        # broken model lines are reported once, with the first page of a full pass
        pending_errors = list(self._model_state().errors) if start == 1 else []
        page = Page(items=[], errors=pending_errors)
        if start == 1 and since is None:  # a full pass: one product per non-blank line
            page.total = self._line_count()
        count = 0
        for entry in self._entries(start, since):
            if count == page_size:
                page.next_cursor = str(entry.number)  # resume exactly at the next entry
                # handed over, not kept while suspended (see app.gcpause)
                out = [page]
                page, count = Page(items=[]), 0
                yield out.pop()
            if entry.item is not None:
                page.items.append(entry.item)
            else:
                page.errors.append(entry.error or f"line {entry.number}: unreadable")
            count += 1
        if count or page.errors:
            yield page

    def get(self, identifier: str) -> dict[str, Any] | None:
        offset = self._offset_index().get(identifier)
        if offset is None:
            return None
        try:
            with self.path.open("rb") as handle:
                handle.seek(offset)
                line = handle.readline()
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read: {exc}") from None
        decoded = self._resolve(_decode(0, line))
        return decoded.item

    def _line_count(self) -> int:
        """Non-blank lines: the products (or broken lines) a full pass yields."""
        try:
            with self.path.open("rb") as handle:
                return sum(1 for line in handle if line.strip())
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read: {exc}") from None

    def _offset_index(self) -> dict[str, int]:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read: {exc}") from None
        state = (stat.st_size, stat.st_mtime_ns)
        if self._offsets is None or self._offsets_state != state:
            identifier_attribute = self._identifier_attribute()
            offsets: dict[str, int] = {}
            for number, offset, line in _iter_lines(self.path):
                item = _decode(number, line).item
                identifier = identifier_of(item, identifier_attribute) if item else None
                if identifier is not None:
                    offsets.setdefault(identifier, offset)  # the first line wins, as in pages
            self._offsets, self._offsets_state = offsets, state
        return self._offsets

    def close(self) -> None:
        self._offsets = None
        self._offsets_state = None


class CatalogDirSource(JsonLinesSource):
    """A catalog folder: ``products.jsonl`` with ``catalog.json`` and ``product_models.jsonl``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        products = self.directory / PRODUCTS_FILE
        if not products.is_file():
            raise SourceError(f"{self.directory}: no {PRODUCTS_FILE} (not a catalog folder?)")
        super().__init__(products, name=f"catalog:{self.directory}")


# --- writing --------------------------------------------------------------------------------


def _write_atomically(target: Path, chunks: Iterable[bytes]) -> None:
    """Readers of ``target`` see the old file or the new one, never a half-written one."""
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _json_lines(items: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for item in items:
        yield orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE)


def write_catalog_dir(
    path: str | Path,
    definitions: CatalogDefinitions,
    products: Iterable[dict[str, Any]],
    models: Iterable[dict[str, Any]] = (),
) -> Path:
    """Write a catalog folder (products streamed, so a generator of millions is fine)."""
    directory = Path(path).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    catalog = orjson.dumps(definitions.to_dict(), option=orjson.OPT_INDENT_2)
    _write_atomically(directory / CATALOG_FILE, [catalog])
    _write_atomically(directory / MODELS_FILE, _json_lines(models))
    _write_atomically(directory / PRODUCTS_FILE, _json_lines(products))
    return directory


class RewriteResult(NamedTuple):
    replaced: int
    appended: int


def rewrite_products(path: str | Path, updates: dict[str, dict[str, Any]]) -> RewriteResult:
    """Replace the lines of the given identifiers and append the new ones (a simulated PIM edit).

    ``path`` is a catalog folder or a products file. The file is streamed to a temporary file
    and swapped in, so a reader never sees a half-written catalog. Lines that are not products
    (malformed ones included) are kept as they are.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        target = target / PRODUCTS_FILE
    if not target.is_file():
        raise SourceError(f"{target}: no such products file")
    for identifier, product in updates.items():
        given = product.get("identifier")
        if given is not None and given != identifier:
            raise ValueError(f"update for {identifier!r} holds product {given!r}")
    definitions = JsonLinesSource(target).definitions()
    identifier_attribute = next(
        (a.code for a in definitions.attributes.values() if a.type == IDENTIFIER_TYPE), "sku"
    )
    done: set[str] = set()

    def lines() -> Iterator[bytes]:
        with target.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                item = _decode(number, line).item if line.strip() else None
                identifier = identifier_of(item, identifier_attribute) if item else None
                if identifier is not None and identifier in updates:
                    # every copy is replaced: a stale duplicate later in the file would win
                    done.add(identifier)
                    yield _product_line(identifier, updates[identifier])
                else:
                    yield line if line.endswith(b"\n") else line + b"\n"
        for identifier, product in updates.items():
            if identifier not in done:
                yield _product_line(identifier, product)

    _write_atomically(target, lines())
    return RewriteResult(replaced=len(done), appended=len(updates) - len(done))


def _product_line(identifier: str, product: dict[str, Any]) -> bytes:
    if product.get("identifier") is None:
        product = {"identifier": identifier, **product}
    return orjson.dumps(product, option=orjson.OPT_APPEND_NEWLINE)
