"""The page repository on real PostgreSQL: ``apply_projections`` (one version-guarded statement
per call), the in-transaction catalog projection, the reads, resets and lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.channels.models import ChannelProduct
from app.db import session_scope
from app.pages.models import ProductPage
from app.pages.repository import (
    Projection,
    apply_projections,
    get_page,
    list_pages,
    project_catalog_rows,
    projection_lag,
    readiness_counts,
    reset_version,
)

CH = "de_storefront"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def apply(
    domain: str, *rows: Projection, now: datetime = T0, repair: bool = False
) -> list[tuple[str, str]]:
    with session_scope() as s:
        return apply_projections(s, domain, list(rows), now, repair=repair)


def page(sku: str = "A", channel: str = CH) -> ProductPage:
    with session_scope() as s:
        found = get_page(s, channel, sku)
    assert found is not None, f"no page ({channel}, {sku})"
    return found


def corrupt(column: str, value: Any, sku: str = "A") -> None:
    with session_scope() as s:
        s.execute(
            text(f"UPDATE product_page SET {column} = :v WHERE channel = :c AND sku = :s"),
            {"v": value, "c": CH, "s": sku},
        )


def cat(
    version: int, doc: dict[str, Any] | None, enabled: bool = True, status: str = "published"
) -> Projection:
    return Projection(CH, "A", version, doc, enabled, status)


def test_first_projection_creates_the_page_with_only_its_domain(pg_db: str) -> None:
    assert apply("pricing", Projection(CH, "A", 5, {"amount": "1"})) == [(CH, "A")]
    p = page()
    assert (p.pricing, p.pricing_version) == ({"amount": "1"}, 5)
    assert (p.catalog, p.catalog_version, p.catalog_enabled, p.catalog_status) == (
        None,
        0,
        False,
        None,
    )
    assert (p.inventory_version, p.media_version) == (0, 0)
    assert p.updated_at == T0


def test_older_and_duplicate_versions_are_no_ops_newer_wins(pg_db: str) -> None:
    assert apply("pricing", Projection(CH, "A", 5, {"amount": "5"})) == [(CH, "A")]
    later = T0 + timedelta(minutes=1)
    assert apply("pricing", Projection(CH, "A", 4, {"amount": "4"}), now=later) == []
    assert apply("pricing", Projection(CH, "A", 5, {"amount": "other"}), now=later) == []
    p = page()
    assert (p.pricing, p.pricing_version, p.updated_at) == ({"amount": "5"}, 5, T0)
    assert apply("pricing", Projection(CH, "A", 6, {"amount": "6"}), now=later) == [(CH, "A")]
    p = page()
    assert (p.pricing, p.pricing_version, p.updated_at) == ({"amount": "6"}, 6, later)


def test_newest_of_one_call_wins_whatever_the_order(pg_db: str) -> None:
    rows = [
        Projection(CH, "A", 2, {"v": 2}),
        Projection(CH, "A", 9, {"v": 9}),
        Projection(CH, "A", 4, {"v": 4}),
        Projection("at_storefront", "A", 1, {"v": 1}),
    ]
    assert sorted(apply("inventory", *rows)) == [("at_storefront", "A"), (CH, "A")]
    assert (page().inventory, page().inventory_version) == ({"v": 9}, 9)
    assert page(channel="at_storefront").inventory == {"v": 1}


def test_domains_never_overwrite_each_other(pg_db: str) -> None:
    apply("catalog", cat(3, {"title": "x"}, True, "published"))
    apply("pricing", Projection(CH, "A", 100, {"amount": "1"}))
    apply("inventory", Projection(CH, "A", 1, {"quantity": 2}))
    apply("media", Projection(CH, "A", 8, {"images": ["a.jpg"]}))
    p = page()
    assert (p.catalog, p.catalog_version, p.catalog_enabled, p.catalog_status) == (
        {"title": "x"},
        3,
        True,
        "published",
    )
    assert (p.pricing_version, p.inventory_version, p.media_version) == (100, 1, 8)
    assert p.media == {"images": ["a.jpg"]}
    # a catalog update keeps the other domains
    apply("catalog", cat(4, {"title": "y"}, True, "published"))
    p = page()
    assert (p.catalog, p.pricing, p.inventory) == (
        {"title": "y"},
        {"amount": "1"},
        {"quantity": 2},
    )


def test_catalog_enabled_and_status_follow_the_newest_catalog(pg_db: str) -> None:
    apply("catalog", cat(3, {"title": "x"}, True, "published"))
    assert (page().catalog_enabled, page().catalog_status) == (True, "published")
    assert apply("catalog", cat(4, None, False, "incomplete")) == [(CH, "A")]
    p = page()
    assert (p.catalog, p.catalog_enabled, p.catalog_status) == (None, False, "incomplete")
    assert apply("catalog", cat(3, {"title": "x"}, True, "published")) == []  # older
    assert (page().catalog_enabled, page().catalog_status) == (False, "incomplete")
    # a catalog projection without a flag is a disabled page
    assert apply("catalog", Projection(CH, "B", 1, {"t": 1})) == [(CH, "B")]
    assert (page("B").catalog_enabled, page("B").catalog_status) == (False, None)


def test_non_catalog_domains_ignore_enabled_and_status(pg_db: str) -> None:
    apply("catalog", cat(3, {"title": "x"}, True, "published"))
    apply("pricing", Projection(CH, "A", 1, {"amount": "1"}, enabled=False, status="removed"))
    assert (page().catalog_enabled, page().catalog_status) == (True, "published")


def test_repair_rewrites_a_corrupted_document_of_the_same_version(pg_db: str) -> None:
    apply("pricing", Projection(CH, "A", 5, {"amount": "5"}))
    corrupt("pricing", '{"amount": "0.01"}')
    later = T0 + timedelta(hours=1)
    same = Projection(CH, "A", 5, {"amount": "5"})
    assert apply("pricing", same, now=later) == []  # events never rewrite the same version
    assert page().pricing == {"amount": "0.01"}
    assert apply("pricing", same, now=later, repair=True) == [(CH, "A")]
    p = page()
    assert (p.pricing, p.pricing_version, p.updated_at) == ({"amount": "5"}, 5, later)
    # nothing left to repair: not written again
    assert apply("pricing", same, now=later + timedelta(hours=1), repair=True) == []
    assert page().updated_at == later


def test_repair_rewrites_a_lost_document(pg_db: str) -> None:
    apply("catalog", cat(2, {"title": "x"}))
    corrupt("catalog", None)
    assert apply("catalog", cat(2, {"title": "x"}), repair=True) == [(CH, "A")]
    assert page().catalog == {"title": "x"}


def test_repair_never_overwrites_a_newer_version(pg_db: str) -> None:
    apply("inventory", Projection(CH, "A", 9, {"quantity": 9}))
    old_snapshot = Projection(CH, "A", 8, {"quantity": 1})
    assert apply("inventory", old_snapshot, repair=True) == []
    assert (page().inventory, page().inventory_version) == ({"quantity": 9}, 9)
    # and a repair carrying a newer version is an ordinary newer write
    assert apply("inventory", Projection(CH, "A", 10, {"quantity": 3}), repair=True) == [(CH, "A")]
    assert page().inventory_version == 10


def test_repair_creates_missing_pages(pg_db: str) -> None:
    assert apply("media", Projection(CH, "NEW", 1, {"images": []}), repair=True) == [(CH, "NEW")]
    assert page("NEW").media_version == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("catalog_enabled", False), ("catalog_status", "filtered")],
)
def test_repair_corrects_the_catalog_flags_of_the_same_version(
    pg_db: str, column: str, value: Any
) -> None:
    apply("catalog", cat(2, {"title": "x"}, True, "published"))
    corrupt(column, value)
    assert apply("catalog", cat(2, {"title": "x"}, True, "published")) == []
    assert apply("catalog", cat(2, {"title": "x"}, True, "published"), repair=True) == [(CH, "A")]
    p = page()
    assert (p.catalog, p.catalog_enabled, p.catalog_status) == ({"title": "x"}, True, "published")


def test_unknown_domain_and_empty_input(pg_db: str) -> None:
    with pytest.raises(ValueError, match="unknown domain 'stock'"):
        apply("stock", Projection(CH, "A", 1, {}))
    assert apply("pricing") == []
    with session_scope() as s:
        assert s.execute(text("SELECT count(*) FROM product_page")).scalar_one() == 0


def test_a_version_that_ran_ahead_is_reset_and_the_source_writes_again(pg_db: str) -> None:
    """A price stored at version 2^53 blocks every later event; resetting the SKU's pricing
    version lets the system of record's next event (or a reconciliation) write it again."""
    from datetime import UTC, datetime

    from app.db import session_scope
    from app.pages.repository import Projection, apply_projections, reset_version

    now = datetime(2026, 12, 4, tzinfo=UTC)
    with session_scope() as s:
        for ch in ("de_storefront", "at_storefront"):
            apply_projections(
                s, "pricing", [Projection(ch, "SKU-A", 2**53, {"amount": "0.01"})], now
            )
        apply_projections(
            s, "pricing", [Projection("de_storefront", "SKU-B", 5, {"amount": "5"})], now
        )
    with session_scope() as s:
        stuck = apply_projections(
            s, "pricing", [Projection("de_storefront", "SKU-A", 7, {"amount": "9.99"})], now
        )
        assert stuck == []
        assert reset_version(s, "pricing", "SKU-A", None, now) == 2
    with session_scope() as s:
        written = apply_projections(
            s, "pricing", [Projection("de_storefront", "SKU-A", 7, {"amount": "9.99"})], now
        )
        assert written == [("de_storefront", "SKU-A")]
        rows = {(r.channel, r.sku): (r.pricing_version, r.pricing) for r in s.query(ProductPage)}
    assert rows[("de_storefront", "SKU-A")] == (7, {"amount": "9.99"})
    assert rows[("at_storefront", "SKU-A")] == (0, None)
    assert rows[("de_storefront", "SKU-B")] == (5, {"amount": "5"})  # untouched


def test_readiness_counts_pages_and_missing_domains_per_channel(pg_db: str) -> None:
    other = "fr_storefront"
    # de: A has catalog+pricing, B inventory, C all four; fr: D all four. Every count is
    # above zero in de and zero in fr, and no version is 1 (the "not there yet" is 0)
    apply("catalog", cat(3, {"title": "a"}), Projection(CH, "C", 4, {}, True, "published"))
    apply("pricing", *(Projection(CH, sku, 2, {}) for sku in "AC"))
    apply("inventory", Projection(CH, "B", 5, {}), Projection(CH, "C", 6, {}))
    apply("media", Projection(CH, "C", 7, {}))
    for domain in ("catalog", "pricing", "inventory", "media"):
        apply(domain, Projection(other, "D", 2, {}, True, "published"))
    with session_scope() as s:
        counts = readiness_counts(s)
    assert counts == {
        CH: {"pages": 3, "no_catalog": 1, "no_pricing": 1, "no_inventory": 1, "no_media": 2},
        other: {"pages": 1, "no_catalog": 0, "no_pricing": 0, "no_inventory": 0, "no_media": 0},
    }


def test_without_repair_by_default_a_same_version_is_a_no_op(pg_db: str) -> None:
    # the event path calls without ``repair``: an event of the stored version changes nothing
    assert apply("pricing", Projection(CH, "A", 3, {"amount": "3"})) == [(CH, "A")]
    with session_scope() as s:
        assert apply_projections(s, "pricing", [Projection(CH, "A", 3, {"amount": "x"})], T0) == []
    assert page().pricing == {"amount": "3"}


def test_of_equal_versions_in_one_call_the_first_is_kept(pg_db: str) -> None:
    # as across calls, where a second delivery of a stored version is a no-op
    rows = [Projection(CH, "A", 4, {"v": "first"}), Projection(CH, "A", 4, {"v": "second"})]
    assert apply("media", *rows) == [(CH, "A")]
    assert page().media == {"v": "first"}


def test_list_pages_pages_through_the_channels_catalogued_pages_by_sku(pg_db: str) -> None:
    # one call per page, in reverse order: the table's order is not the sku order
    for sku in ("D", "C", "B", "A"):
        apply("catalog", Projection(CH, sku, 1, {"sku": sku}, True, "published"))
    apply("pricing", Projection(CH, "0-no-catalog", 2, {}))
    apply("catalog", Projection("fr_storefront", "A", 1, {}, True, "published"))
    with session_scope() as s:

        def skus(after: str | None, limit: int) -> list[str]:
            return [r.sku for r in list_pages(s, CH, after, limit)]

        assert skus(None, 10) == ["A", "B", "C", "D"]
        assert skus(None, 2) == ["A", "B"]
        assert skus("B", 10) == ["C", "D"]


def test_list_pages_is_in_sku_order_when_the_table_is_read_in_its_physical_order(
    pg_db: str,
) -> None:
    # stored out of sku order, then B rewritten (its new row version goes to the end of the
    # table); with index scans off the database reads the rows as stored: D, C, A, B
    for sku in ("D", "C", "B", "A"):
        apply("catalog", Projection(CH, sku, 1, {"sku": sku}, True, "published"))
    apply("catalog", Projection(CH, "B", 2, {"sku": "B2"}, True, "published"))
    with session_scope() as s:
        s.execute(text("SET LOCAL enable_indexscan = off"))
        s.execute(text("SET LOCAL enable_bitmapscan = off"))
        s.execute(text("SET LOCAL enable_indexonlyscan = off"))
        stored = s.execute(text("SELECT sku FROM product_page")).scalars().all()
        assert stored != ["A", "B", "C", "D"]  # the order the listing must not rely on
        assert [r.sku for r in list_pages(s, CH, None, 10)] == ["A", "B", "C", "D"]
        assert [r.sku for r in list_pages(s, CH, "A", 2)] == ["B", "C"]


def add_catalog_rows(
    *rows: tuple[str, str, int, dict[str, Any] | None, bool, str, datetime],
) -> None:
    """channel_product rows: (channel, sku, version, doc, enabled, status, synced_at)."""
    with session_scope() as s:
        for channel, sku, version, doc, enabled, status, synced_at in rows:
            s.add(
                ChannelProduct(
                    channel=channel,
                    sku=sku,
                    version=version,
                    doc=doc,
                    enabled=enabled,
                    status=status,
                    synced_at=synced_at,
                    input_hash="h",
                )
            )


def test_project_catalog_rows_copies_the_rows_onto_older_pages_only(pg_db: str) -> None:
    at = "at_storefront"
    add_catalog_rows(
        (CH, "A", 3, {"title": "a"}, True, "published", T0),
        # disabled: its last published document is projected with the flags
        (CH, "B", 2, {"title": "b-last"}, False, "disabled_in_pim", T0),
        (at, "A", 1, {"title": "at-a"}, True, "published", T0),
        (CH, "Z", 9, {"title": "z"}, True, "published", T0),  # not asked for
    )
    apply("catalog", Projection(CH, "B", 1, {"title": "b-old"}, True, "published"))
    apply("pricing", Projection(CH, "B", 5, {"amount": "5"}))
    apply("catalog", Projection(at, "A", 4, {"title": "at-newer"}, True, "published"))
    later = T0 + timedelta(hours=2)
    keys = [(CH, "B"), (at, "A"), (CH, "MISSING"), (CH, "A")]
    with session_scope() as s:
        written = project_catalog_rows(s, keys, later)
    assert sorted(written) == [(CH, "A"), (CH, "B")]
    a = page("A")
    assert (a.catalog, a.catalog_version, a.catalog_enabled, a.catalog_status) == (
        {"title": "a"},
        3,
        True,
        "published",
    )
    assert (a.pricing_version, a.inventory_version, a.media_version) == (0, 0, 0)
    assert (a.pricing, a.inventory, a.media, a.updated_at) == (None, None, None, later)
    b = page("B")
    assert (b.catalog, b.catalog_version, b.catalog_enabled, b.catalog_status) == (
        {"title": "b-last"},
        2,
        False,
        "disabled_in_pim",
    )
    assert (b.pricing, b.pricing_version, b.updated_at) == ({"amount": "5"}, 5, later)
    # the page holding a newer catalog version keeps it
    newer = page("A", at)
    assert (newer.catalog, newer.catalog_version, newer.updated_at) == (
        {"title": "at-newer"},
        4,
        T0,
    )
    with session_scope() as s:
        assert get_page(s, CH, "Z") is None
        assert get_page(s, CH, "MISSING") is None
        # redelivered: every page already holds the row's version
        assert project_catalog_rows(s, keys, later + timedelta(hours=1)) == []
    assert page("A").updated_at == later


def test_project_catalog_rows_of_no_keys_writes_nothing(pg_db: str) -> None:
    add_catalog_rows((CH, "A", 3, {"title": "a"}, True, "published", T0))
    with session_scope() as s:
        assert project_catalog_rows(s, [], T0) == []
        assert s.execute(text("SELECT count(*) FROM product_page")).scalar_one() == 0


def test_projection_lag_counts_rows_ahead_of_their_page_and_the_oldest_age(
    pg_db: str,
) -> None:
    at, fr = "at_storefront", "fr_storefront"
    now = T0 + timedelta(hours=1)
    add_catalog_rows(
        # de: A is on its page (and the oldest row, not counted); B's page holds an older
        # version; C has no page; D's page has no catalog yet
        (CH, "A", 3, {}, True, "published", T0 - timedelta(days=1)),
        (CH, "B", 5, {}, True, "published", T0 + timedelta(minutes=10)),
        (CH, "C", 1, {}, True, "published", T0),
        (CH, "D", 1, {}, True, "published", T0 + timedelta(minutes=30)),
        # at: on its page, left out (its page's version is below de A's row version)
        (at, "A", 2, {}, True, "published", T0 - timedelta(days=2)),
        # fr: behind, synced "after" now (a clock ahead): an age of zero, never negative
        (fr, "X", 7, {}, True, "published", now + timedelta(minutes=5)),
    )
    apply("catalog", Projection(CH, "A", 3, {}, True, "published"))
    apply("catalog", Projection(CH, "B", 4, {}, True, "published"))
    apply("pricing", Projection(CH, "D", 8, {}))
    apply("catalog", Projection(at, "A", 2, {}, True, "published"))
    apply("catalog", Projection(fr, "X", 6, {}, True, "published"))
    with session_scope() as s:
        lag = projection_lag(s, now)
    assert lag == {CH: (3, 3600.0), fr: (1, 0.0)}


def test_projection_lag_is_empty_when_every_row_is_on_its_page(pg_db: str) -> None:
    with session_scope() as s:
        assert projection_lag(s, T0) == {}
    add_catalog_rows((CH, "A", 2, {}, True, "published", T0))
    apply("catalog", Projection(CH, "A", 2, {}, True, "published"))
    with session_scope() as s:
        assert projection_lag(s, T0 + timedelta(hours=1)) == {}


@pytest.mark.parametrize("domain", ["stock", "catalog"])
def test_reset_version_refuses_unknown_domains_and_the_catalog(pg_db: str, domain: str) -> None:
    apply("catalog", cat(3, {"title": "x"}))
    with session_scope() as s, pytest.raises(ValueError) as refused:
        reset_version(s, domain, "A", None, T0 + timedelta(hours=1))
    assert str(refused.value) == f"reset one of pricing, inventory, media, not '{domain}'"
    p = page()
    assert (p.catalog, p.catalog_version, p.updated_at) == ({"title": "x"}, 3, T0)


def reset_fixture() -> None:
    """A and B in de and at, each with a catalog and media; A's media ran ahead."""
    for channel in (CH, "at_storefront"):
        apply("catalog", Projection(channel, "A", 2, {"t": "a"}, True, "published"))
        apply("media", Projection(channel, "A", 2**53, {"images": ["a.jpg"]}))
        apply("media", Projection(channel, "B", 4, {"images": ["b.jpg"]}))


def test_reset_version_in_one_channel_leaves_the_other_channels_page(pg_db: str) -> None:
    reset_fixture()
    later = T0 + timedelta(hours=1)
    with session_scope() as s:
        assert reset_version(s, "media", "A", CH, later) == 1
    a = page("A")
    assert (a.media, a.media_version, a.updated_at) == (None, 0, later)
    assert (a.catalog, a.catalog_version) == ({"t": "a"}, 2)  # other domains kept
    other = page("A", "at_storefront")
    assert (other.media, other.media_version, other.updated_at) == (
        {"images": ["a.jpg"]},
        2**53,
        T0,
    )
    b = page("B")
    assert (b.media, b.media_version, b.updated_at) == ({"images": ["b.jpg"]}, 4, T0)


def test_reset_version_without_a_channel_resets_every_channel(pg_db: str) -> None:
    reset_fixture()
    later = T0 + timedelta(hours=1)
    with session_scope() as s:
        assert reset_version(s, "media", "A", None, later) == 2
        assert reset_version(s, "inventory", "NONE", None, later) == 0
    for channel in (CH, "at_storefront"):
        a = page("A", channel)
        assert (a.media, a.media_version, a.updated_at) == (None, 0, later)
        assert (a.catalog, a.catalog_version) == ({"t": "a"}, 2)
        b = page("B", channel)
        assert (b.media, b.media_version, b.updated_at) == ({"images": ["b.jpg"]}, 4, T0)
