"""A run's publish batch writes its product pages in its own transaction (issue 18): one
INSERT ... SELECT from the rows it just wrote, under the catalog consumer's version guard,
instead of a catalog event and a second transaction re-reading those rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.db import session_scope, utcnow
from app.pages.projection import apply_catalog, project_committed_with
from tests.sync.memory_source import later

# Every channel_product row beside its page, read straight from the tables.
ROWS_AND_PAGES = """
SELECT cp.channel, cp.sku, cp.doc, cp.version, cp.enabled, cp.status,
       pp.catalog, pp.catalog_version, pp.catalog_enabled, pp.catalog_status,
       pp.pricing, pp.pricing_version
FROM channel_product cp LEFT JOIN product_page pp USING (channel, sku)
ORDER BY cp.channel, cp.sku
"""


def rows_and_pages() -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(ROWS_AND_PAGES)).all())


def assert_every_page_holds_its_row() -> int:
    rows = rows_and_pages()
    assert rows
    for r in rows:
        assert (r.catalog, r.catalog_version, r.catalog_enabled, r.catalog_status) == (
            r.doc,
            r.version,
            r.enabled,
            r.status,
        ), (r.channel, r.sku)
    return len(rows)


def catalog_messages(harness: Any, since: int = 0) -> list[Any]:
    return [args for name, args in harness.dispatcher.sent[since:] if name == "catalog"]


def test_a_full_sync_and_a_delta_write_every_page_with_their_rows(harness) -> None:
    harness.full()
    assert assert_every_page_holds_its_row() == 60 * 4
    assert catalog_messages(harness) == []  # nothing left for the catalog consumer

    before = len(harness.dispatcher.sent)
    for sku in sorted(harness.source.products)[:5]:
        harness.source.rename(sku, "(renamed)", when=later(5))
    harness.delta()
    rows = rows_and_pages()
    renamed = [r for r in rows if r.version > 1]
    assert renamed and all("(renamed)" in str(r.catalog) for r in renamed if r.catalog)
    assert_every_page_holds_its_row()
    assert catalog_messages(harness, before) == []


def test_a_disabled_product_keeps_its_last_published_document_on_the_page(harness) -> None:
    harness.full()
    published = [r for r in rows_and_pages() if r.status == "published"]
    sku = published[0].sku
    harness.source.set_enabled(sku, False)
    harness.source.touch(sku, later(5))
    harness.delta()
    pages = [r for r in rows_and_pages() if r.sku == sku]
    assert pages and all(not r.catalog_enabled for r in pages)
    assert all(r.catalog_status == "disabled_in_pim" for r in pages)
    before = {r.channel: r for r in published if r.sku == sku}
    for r in pages:
        if r.channel in before:  # the document it last published, as channel_product keeps it
            assert r.catalog == before[r.channel].doc == r.doc
    assert_every_page_holds_its_row()


def test_the_projection_is_version_guarded_and_idempotent(harness) -> None:
    harness.full()
    rows = rows_and_pages()
    ahead, behind, priced = rows[0], rows[1], rows[2]
    with session_scope() as s:
        # a page that already holds a newer catalog version (written by a later batch)
        s.execute(
            text(
                "UPDATE product_page SET catalog_version = 99, catalog = '{\"newer\": true}' "
                "WHERE channel = :c AND sku = :s"
            ),
            {"c": ahead.channel, "s": ahead.sku},
        )
        # a page left behind (an older version)
        s.execute(
            text(
                "UPDATE product_page SET catalog_version = 0, catalog = NULL "
                "WHERE channel = :c AND sku = :s"
            ),
            {"c": behind.channel, "s": behind.sku},
        )
        s.execute(
            text(
                'UPDATE product_page SET pricing = \'{"amount": "9.99"}\', pricing_version = 7 '
                "WHERE channel = :c AND sku = :s"
            ),
            {"c": priced.channel, "s": priced.sku},
        )
    changes: dict[str, list[str]] = {}
    for r in (ahead, behind, priced):
        changes.setdefault(r.channel, []).append(r.sku)
    with session_scope() as s:
        assert project_committed_with(s, changes, utcnow()) == 1  # only the one behind
    with session_scope() as s:
        assert project_committed_with(s, changes, utcnow()) == 0  # twice: nothing
        assert apply_catalog(s, changes, utcnow()) == 0  # a catalog event after it: stale
    after = {(r.channel, r.sku): r for r in rows_and_pages()}
    a = after[(ahead.channel, ahead.sku)]
    assert (a.catalog, a.catalog_version) == ({"newer": True}, 99)
    b = after[(behind.channel, behind.sku)]
    assert (b.catalog, b.catalog_version) == (behind.doc, behind.version)
    p = after[(priced.channel, priced.sku)]
    assert (p.pricing, p.pricing_version) == ({"amount": "9.99"}, 7)
    assert (p.catalog, p.catalog_version) == (priced.doc, priced.version)


def test_on_sqlite_the_batch_projects_through_the_consumers_path(sqlite_harness) -> None:
    sqlite_harness.full()
    with session_scope() as s:
        rows = s.execute(
            text(
                "SELECT count(*) FROM channel_product cp JOIN product_page pp "
                "ON pp.channel = cp.channel AND pp.sku = cp.sku "
                "AND pp.catalog_version = cp.version"
            )
        ).scalar_one()
    assert rows == 40 * 4
    assert catalog_messages(sqlite_harness) == []
