"""The reader's read-ahead (app.sync.ingest._read_ahead): the next group is fetched and decoded
by a thread while the reader writes the one before; errors, order and stopping are the reader's
as they were when it read and wrote in turn."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.pim.source import Page
from app.sync import ingest
from tests.pim.reference_data import product

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class PimDown(Exception):
    pass


def _groups(
    pages: list[list[dict[str, Any]]],
    asked: list[int],
    fail_after: int | None = None,
    closed: threading.Event | None = None,
    second_asked: threading.Event | None = None,
) -> Iterator[tuple[list[Page], str | None, bool]]:
    """One page per group, as ``ingest._groups`` hands them; records which page was asked."""
    try:
        for n, items in enumerate(pages, start=1):
            if fail_after is not None and n > fail_after:
                raise PimDown(f"page {n}: the PIM answered 503")
            asked.append(n)
            if n == 2 and second_asked is not None:
                second_asked.set()
            last = n == len(pages)
            yield (
                [Page(items=items, next_cursor=None if last else f"after-{n}")],
                (None if last else f"after-{n}"),
                last,
            )
    finally:
        if closed is not None:
            closed.set()


def _pages(count: int, per_page: int = 2) -> list[list[dict[str, Any]]]:
    return [
        [product(f"RA-{p}-{i}") for i in range(per_page)]
        for p in range(count)  # distinct SKUs on every page
    ]


def test_the_next_group_is_read_while_the_reader_still_holds_the_one_before(pg_db: str) -> None:
    asked: list[int] = []
    second = threading.Event()
    with ingest._read_ahead(_groups(_pages(3), asked, second_asked=second), "sku") as ready:
        _group, token, exhausted, (good, bad, known) = next(ready)
        # the reader has group 1 and asks for nothing: page 2 is fetched all the same
        assert second.wait(5), "page 2 was not read while group 1 was being written"
        assert token == "after-1" and exhausted is False
        assert sorted(p.identifier for p, _ in good) == ["RA-0-0", "RA-0-1"]
        assert bad == [] and known == []
        rest = [(t, e, sorted(p.identifier for p, _ in g)) for _, t, e, (g, _b, _k) in ready]
    # in order, each once, the last one saying the export ended
    assert rest == [
        ("after-2", False, ["RA-1-0", "RA-1-1"]),
        (None, True, ["RA-2-0", "RA-2-1"]),
    ]
    assert asked == [1, 2, 3]


def test_a_pim_error_is_raised_after_the_groups_read_before_it(pg_db: str) -> None:
    asked: list[int] = []
    closed = threading.Event()
    got: list[str | None] = []
    with (
        pytest.raises(PimDown, match="page 3: the PIM answered 503"),
        ingest._read_ahead(_groups(_pages(5), asked, fail_after=2, closed=closed), "sku") as ready,
    ):
        for _group, token, _exhausted, _parts in ready:
            got.append(token)
    # both groups read before the error reach the reader first: their tokens can be saved
    assert got == ["after-1", "after-2"]
    assert asked == [1, 2]
    assert closed.is_set()  # the page iterator was ended


def test_leaving_early_stops_the_thread_and_ends_the_page_iterator(pg_db: str) -> None:
    asked: list[int] = []
    closed = threading.Event()
    before = {t.name for t in threading.enumerate()}
    with ingest._read_ahead(_groups(_pages(50), asked, closed=closed), "sku") as ready:
        first = next(ready)
        assert first[1] == "after-1"
        wait_until_handed_over = time.monotonic() + 5
        while len(asked) < 2 and time.monotonic() < wait_until_handed_over:
            time.sleep(0.005)  # the thread has read group 2 and waits to hand it over
        left = time.monotonic()
    # leaving wakes the waiting thread at once (it used to notice within 0.1 s): a slice
    # that ends is not held up by it
    assert time.monotonic() - left < 0.05
    # the block left at group 1 (a slice's deadline): the thread is gone, at most a group
    # or two was read ahead (read again by the next slice from the saved token), not all 50
    assert closed.is_set()
    assert "pimsync-read-ahead" not in {t.name for t in threading.enumerate()} - before
    assert len(asked) <= 3


def test_a_refused_product_is_handed_over_with_its_reason(pg_db: str) -> None:
    asked: list[int] = []
    pages = [[product("RA-ok"), {"identifier": "RA-bad", "values": "not an object"}]]
    with ingest._read_ahead(_groups(pages, asked), "sku") as ready:
        [(_group, _token, exhausted, (good, bad, known))] = list(ready)
    assert exhausted is True
    assert [p.identifier for p, _ in good] == ["RA-ok"]
    assert [ref for ref, _ in bad] == ["RA-bad"]
    assert known == []


def test_a_product_met_in_an_earlier_unwritten_group_takes_the_full_path(pg_db: str) -> None:
    from app.db import session_scope
    from app.pim import repository as pim_repo
    from app.pim.product import content_hash, parse_product

    item = {**product("RA-twice"), "identifier": "RA-twice"}  # hashed as the mirror holds it
    with session_scope() as session:  # the mirror holds the product as it is
        p = parse_product(dict(item), "sku")
        pim_repo.upsert_products(session, [(p, content_hash(dict(item)))], uuid.uuid4(), T0)
    page = [Page(items=[dict(item)])]
    # alone, it is unchanged: only marked seen
    good, bad, known = ingest._prepare_group(page, "sku")
    assert (good, bad, [k["identifier"] for k in known]) == ([], [], ["RA-twice"])
    # met in a group before it (read ahead, maybe not written yet): parsed and upserted
    page = [Page(items=[dict(item)])]
    good, bad, known = ingest._prepare_group(page, "sku", earlier={"RA-twice"})
    assert ([p.identifier for p, _ in good], bad, known) == (["RA-twice"], [], [])


def test_leaving_frees_the_group_handed_over_last(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left before its last group is released by the reader's own frame, the block frees it
    (and the page iterator its last page): the collector, resumed right after, must not walk
    a group's ~260,000 containers to promote what is about to be freed."""
    import gc
    import weakref

    class Parts(list[Any]):  # a list that can be watched dying
        pass

    alive: list[weakref.ref[Parts]] = []

    def prepare(group: Any, identifier_attribute: str, earlier: Any = None) -> Any:
        parts = Parts([[], [], []])
        alive.append(weakref.ref(parts))
        return parts

    monkeypatch.setattr(ingest, "_prepare_group", prepare)
    gc.disable()  # only reference counts free anything here, as under the reader's pause
    try:
        with ingest._read_ahead(_groups(_pages(3), []), "sku") as prepared:
            for _group, _token, exhausted, _parts in prepared:
                del _group, _parts
                if exhausted:
                    break
            assert alive[-1]() is not None  # still held by the block's iterator
        assert len(alive) == 3 and all(ref() is None for ref in alive)
    finally:
        gc.enable()
