"""Pages and groups are handed over, not kept: while a source or the ingest's grouping is
suspended, nothing in it refers to what it yielded, so the caller frees each page or group
before the cyclic collector resumes (app.gcpause). Checked with reference counts: the only
references are the caller's variable and getrefcount's own argument."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from app.dev.generator import GeneratedSource
from app.pim.files import JsonLinesSource
from app.pim.source import Page
from app.sync.ingest import _groups
from tests.pim.test_files import make_product, write_jsonl

ALONE = 2  # the caller's variable and getrefcount's argument


def test_generated_source_keeps_no_page() -> None:
    pages = GeneratedSource(5, seed=1).iter_pages(page_size=2)
    page = next(pages)
    assert len(page.items) == 2
    assert sys.getrefcount(page) == ALONE
    items_refs = sys.getrefcount(page.items)  # (outside assert: pytest keeps its operands)
    assert items_refs == ALONE  # the page's own slot and getrefcount's argument


def test_jsonl_source_keeps_no_page(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [make_product(n) for n in range(1, 6)])
    pages = JsonLinesSource(path).iter_pages(page_size=2)
    page = next(pages)
    assert [p["identifier"] for p in page.items] == ["sku-001", "sku-002"]
    assert sys.getrefcount(page) == ALONE
    page = next(pages)
    assert page.next_cursor == "5" and sys.getrefcount(page) == ALONE


def _pages(cursors: list[str | None]) -> Iterator[Page]:
    for i, cursor in enumerate(cursors):
        yield Page(items=[{"identifier": f"p{i}"}], next_cursor=cursor)


def test_groups_keep_no_group() -> None:
    groups = _groups(_pages(["1", "2", "3", None]), size=2)
    group, token, exhausted = next(groups)
    assert (len(group), token, exhausted) == (2, "2", False)
    assert sys.getrefcount(group) == ALONE
    group, token, exhausted = next(groups)  # the last page: its cursor is None
    assert (len(group), token, exhausted) == (2, None, True)
    assert sys.getrefcount(group) == ALONE


def test_groups_hand_over_a_trailing_group_too() -> None:
    # a source that stops without a last page whose cursor is None
    groups = _groups(_pages(["1", "2", "3"]), size=2)
    next(groups)
    group, token, exhausted = next(groups)
    assert (len(group), token, exhausted) == (1, "3", True)
    assert sys.getrefcount(group) == ALONE
