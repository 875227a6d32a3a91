from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.pim.catalog import build_definitions
from app.pim.files import (
    CATALOG_FILE,
    MODELS_FILE,
    PRODUCTS_FILE,
    CatalogDirSource,
    JsonLinesSource,
    RewriteResult,
    rewrite_products,
    write_catalog_dir,
)
from app.pim.product import parse_product
from app.pim.source import Page, PimSource, SourceError
from app.pim.sources import open_source


def make_product(n: int, day: int = 1, **fields: Any) -> dict[str, Any]:
    identifier = f"sku-{n:03d}"
    product: dict[str, Any] = {
        "identifier": identifier,
        "family": "shirts",
        "parent": None,
        "categories": ["shirts"],
        "enabled": True,
        "values": {
            "sku": [{"locale": None, "scope": None, "data": identifier}],
            "name": [{"locale": "en_US", "scope": None, "data": f"Shirt {n}"}],
        },
        "updated": f"2024-05-{day:02d}T10:00:00+00:00",
    }
    product.update(fields)
    return product


def definitions():
    return build_definitions(
        attributes=[
            {"code": "sku", "type": "pim_catalog_identifier"},
            {"code": "name", "type": "pim_catalog_text", "localizable": True},
            {"code": "color", "type": "pim_catalog_simpleselect"},
        ],
        families=[{"code": "shirts", "attributes": ["sku", "name"], "attribute_requirements": {}}],
        channels=[{"code": "ecommerce", "locales": ["en_US"], "currencies": ["EUR"]}],
        categories=[{"code": "master"}, {"code": "shirts", "parent": "master"}],
        options=[{"attribute": "color", "code": "red", "labels": {"en_US": "Red"}}],
    )


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """Lines are dicts (dumped) or raw strings (written as they are, to plant bad lines)."""
    with path.open("wb") as handle:
        for line in lines:
            handle.write(line.encode() if isinstance(line, str) else orjson.dumps(line))
            handle.write(b"\n")
    return path


def pages_of(source: JsonLinesSource, **kwargs: Any) -> list[Page]:
    return list(source.iter_pages(**kwargs))


def ids(pages: list[Page]) -> list[str]:
    return [item["identifier"] for page in pages for item in page.items]


def test_pagination(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [make_product(n) for n in range(1, 26)])
    source = JsonLinesSource(path)
    assert isinstance(source, PimSource)
    pages = pages_of(source, page_size=10)
    assert [len(p.items) for p in pages] == [10, 10, 5]
    assert [p.next_cursor for p in pages] == ["11", "21", None]
    assert ids(pages) == [f"sku-{n:03d}" for n in range(1, 26)]
    for item in (i for p in pages for i in p.items):
        parse_product(item)
    # exactly one page when everything fits, with no cursor
    [single] = pages_of(source, page_size=100)
    assert len(single.items) == 25 and single.next_cursor is None


def test_resume_continues_without_gaps_or_duplicates(tmp_path: Path) -> None:
    lines: list[Any] = [make_product(n) for n in range(1, 8)]
    lines.insert(3, "")  # a blank line shifts line numbers but is not a product
    path = write_jsonl(tmp_path / "p.jsonl", lines)
    source = JsonLinesSource(path)
    full = ids(pages_of(source, page_size=3))
    first = next(source.iter_pages(page_size=3))
    assert first.next_cursor == "5"  # line 4 is blank: the next product sits on line 5
    rest = pages_of(source, page_size=3, resume=first.next_cursor)
    assert ids([first, *rest]) == full == [f"sku-{n:03d}" for n in range(1, 8)]
    with pytest.raises(SourceError, match="resume"):
        pages_of(source, resume="zero")
    with pytest.raises(SourceError, match="resume"):
        pages_of(source, resume="0")


def test_updated_since(tmp_path: Path) -> None:
    lines = [make_product(n, day=n) for n in range(1, 11)]
    lines.append(make_product(11, updated=None))  # no date: kept, the ingest decides
    path = write_jsonl(tmp_path / "p.jsonl", lines)
    source = JsonLinesSource(path)
    since = datetime(2024, 5, 7, 10, 0, tzinfo=UTC)
    pages = pages_of(source, updated_since=since, page_size=2)
    # strictly after: the product updated exactly at `since` is not returned
    assert ids(pages) == ["sku-008", "sku-009", "sku-010", "sku-011"]
    assert [len(p.items) for p in pages] == [2, 2]
    resumed = pages_of(source, updated_since=since, page_size=2, resume=pages[0].next_cursor)
    assert ids(resumed) == ["sku-010", "sku-011"]
    assert pages_of(source, updated_since=datetime(2030, 1, 1)) == [
        Page(items=[make_product(11, updated=None)], next_cursor=None, errors=[])
    ]


def test_malformed_lines_are_reported_with_their_line_number(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [make_product(1), "{not json", make_product(2), "[1, 2]", "42", make_product(3)],
    )
    pages = pages_of(JsonLinesSource(path), page_size=4)
    assert ids(pages[:1]) == ["sku-001", "sku-002"]  # good lines on the same page come through
    assert len(pages[0].errors) == 2
    assert pages[0].errors[0].startswith("line 2: invalid JSON")
    assert pages[0].errors[1] == "line 4: expected a JSON object, got list"
    assert pages[1].errors == ["line 5: expected a JSON object, got int"]
    assert ids(pages) == ["sku-001", "sku-002", "sku-003"]


def test_get_by_identifier(tmp_path: Path) -> None:
    lines: list[Any] = [make_product(n) for n in range(1, 6)]
    lines.insert(2, "garbage")
    without_identifier = make_product(9)
    del without_identifier["identifier"]  # found through its sku value
    lines.append(without_identifier)
    path = write_jsonl(tmp_path / "p.jsonl", lines)
    source = JsonLinesSource(path)
    assert source.get("sku-004") == make_product(4)
    assert source.get("sku-009") == without_identifier
    assert source.get("missing") is None
    # the index follows the file when it changes
    rewrite_products(path, {"sku-004": make_product(4, enabled=False)})
    assert source.get("sku-004")["enabled"] is False


def test_definitions_beside_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [make_product(1)])
    assert JsonLinesSource(path).definitions().attributes == {}
    (tmp_path / CATALOG_FILE).write_bytes(orjson.dumps(definitions().to_dict()))
    defs = JsonLinesSource(path).definitions()
    assert set(defs.attributes) == {"sku", "name", "color"}
    assert defs.category_root("shirts") == "master"
    (tmp_path / CATALOG_FILE).write_text("{broken")
    with pytest.raises(SourceError, match=CATALOG_FILE):
        JsonLinesSource(path).definitions()


ROOT_MODEL = {
    "code": "Shirt",
    "family": "shirts",
    "family_variant": "shirt_color",
    "parent": None,
    "categories": ["shirts"],
    "values": {"care": [{"locale": None, "scope": None, "data": "Wash cold"}]},
}
SUB_MODEL = {
    "code": "shirt-red",
    "family": "shirts",
    "family_variant": "shirt_color",
    "parent": "shirt",
    "categories": ["red"],
    "values": {"color": [{"locale": None, "scope": None, "data": "red"}]},
}


def test_write_catalog_dir_round_trip(tmp_path: Path) -> None:
    products = [make_product(n) for n in range(1, 4)]
    variant = make_product(4, parent="SHIRT-RED", categories=["sale"])
    directory = write_catalog_dir(
        tmp_path / "catalog", definitions(), iter([*products, variant]), [ROOT_MODEL, SUB_MODEL]
    )
    assert {p.name for p in directory.iterdir()} == {PRODUCTS_FILE, CATALOG_FILE, MODELS_FILE}
    source = open_source(directory)
    assert isinstance(source, CatalogDirSource)
    assert source.definitions().to_dict() == definitions().to_dict()
    items = [i for p in source.iter_pages() for i in p.items]
    assert items[:3] == products
    resolved = items[3]
    assert resolved["parent"] == "shirt-red" and resolved["root_parent"] == "Shirt"
    assert resolved["values"]["care"][0]["data"] == "Wash cold"
    assert resolved["values"]["color"][0]["data"] == "red"
    assert sorted(resolved["categories"]) == ["red", "sale", "shirts"]
    assert source.get("sku-004") == resolved
    assert [m["code"] for m in source.iter_models()] == ["Shirt", "shirt-red"]
    sub = source.get_model("SHIRT-RED")
    assert sub is not None and sub["values"]["care"][0]["data"] == "Wash cold"
    # a JSON lines file inside the folder sees the same models
    assert isinstance(open_source(directory / PRODUCTS_FILE), JsonLinesSource)


def test_variant_with_unknown_parent_is_reported(tmp_path: Path) -> None:
    directory = write_catalog_dir(
        tmp_path,
        definitions(),
        [make_product(1, parent="nowhere"), make_product(2)],
        [ROOT_MODEL],
    )
    [page] = CatalogDirSource(directory).iter_pages()
    assert ids([page]) == ["sku-002"]
    assert len(page.errors) == 1
    assert page.errors[0].startswith("line 1: ") and "nowhere" in page.errors[0]


def test_malformed_model_lines_are_reported_once(tmp_path: Path) -> None:
    products = [make_product(1), make_product(2)]
    directory = write_catalog_dir(tmp_path, definitions(), products, [ROOT_MODEL])
    with (directory / MODELS_FILE).open("ab") as handle:
        handle.write(b"{oops\n")
    source = CatalogDirSource(directory)
    first, second = source.iter_pages(page_size=1)
    assert ids([first, second]) == ["sku-001", "sku-002"]
    assert len(first.errors) == 1
    assert first.errors[0].startswith(f"{MODELS_FILE} line 2: invalid JSON")
    assert second.errors == []
    # a resumed pass does not repeat them
    assert [p.errors for p in source.iter_pages(page_size=1, resume=first.next_cursor)] == [[]]
    assert source.get_model("shirt") is not None


def test_rewrite_products(tmp_path: Path) -> None:
    directory = write_catalog_dir(
        tmp_path, definitions(), [make_product(n) for n in range(1, 5)], []
    )
    with (directory / PRODUCTS_FILE).open("ab") as handle:
        handle.write(b"{kept as is\n")
    changed = make_product(2, enabled=False, day=20)
    new = make_product(7)
    del new["identifier"]
    result = rewrite_products(directory, {"sku-002": changed, "sku-007": new})
    assert result == RewriteResult(replaced=1, appended=1)
    lines = (directory / PRODUCTS_FILE).read_bytes().splitlines()
    assert len(lines) == 6
    assert orjson.loads(lines[1]) == changed
    assert lines[4] == b"{kept as is"
    assert orjson.loads(lines[5]) == {"identifier": "sku-007", **new}
    source = CatalogDirSource(directory)
    pages = list(source.iter_pages())
    assert ids(pages) == ["sku-001", "sku-002", "sku-003", "sku-004", "sku-007"]
    assert len(pages[0].errors) == 1 and pages[0].errors[0].startswith("line 5: invalid JSON")
    # no temporary files left behind
    assert {p.name for p in directory.iterdir()} == {PRODUCTS_FILE, CATALOG_FILE, MODELS_FILE}
    with pytest.raises(ValueError, match="holds product"):
        rewrite_products(directory, {"sku-001": make_product(3)})


def test_streams_without_loading_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with path.open("wb") as handle:
        for n in range(1, 20_001):
            handle.write(orjson.dumps(make_product(n)) + b"\n")
    size = path.stat().st_size
    source = JsonLinesSource(path)
    tracemalloc.start()
    try:
        count = sum(len(page.items) for page in source.iter_pages(page_size=100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    # one page of decoded products at a time, not the file (whose dicts would weigh far more)
    assert peak < size / 4, f"peak {peak} bytes for a {size} byte file"


def test_missing_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such products file"):
        JsonLinesSource(tmp_path / "nope.jsonl")
    with pytest.raises(SourceError, match="not a catalog folder"):
        CatalogDirSource(tmp_path)
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope")
