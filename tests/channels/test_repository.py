"""The channel catalog store on real databases: keyed upserts and the orphan watermark."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from app.channels import repository as repo
from app.channels.models import ChannelProduct
from app.channels.repository import ChannelRow
from app.db import session_scope
from app.pim import repository as pim_repo
from app.pim.product import content_hash, parse_product

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def row(
    sku: str,
    doc: dict | None = None,
    status: str = "published",
    seq: int = 1,
    run: uuid.UUID | None = None,
    channel: str = "web",
) -> ChannelRow:
    doc = doc if doc is not None else {"sku": sku, "title": f"Title {sku}"}
    return ChannelRow(
        channel=channel,
        sku=sku,
        doc=doc if status == "published" else None,
        contract_version="web@1",
        input_hash=f"h-{sku}-{doc.get('title')}-{status}",
        status=status,
        enabled=status == "published",
        disabled_reason=None if status == "published" else status,
        detail=None,
        completeness=100,
        sync_run_id=run,
        synced_at=NOW,
        source_seq=seq,
    )


def all_rows() -> dict[tuple[str, str], tuple]:
    with session_scope() as s:
        return {
            (r.channel, r.sku): (r.version, r.status, r.enabled, r.doc, r.input_hash)
            for r in s.execute(select(ChannelProduct)).scalars()
        }


def test_upsert_twice_changes_nothing_the_second_time(any_db):
    rows = [row(f"SKU-{i}") for i in range(50)]
    with session_scope() as s:
        changes = repo.upsert_rows(s, rows)
    assert len(changes) == 50 and all(c.version == 1 for c in changes)
    first = all_rows()
    with session_scope() as s:
        assert repo.upsert_rows(s, rows) == []
    assert all_rows() == first
    # one changed document: one row rewritten, its version bumped
    rows[7] = row("SKU-7", {"sku": "SKU-7", "title": "New"})
    with session_scope() as s:
        changes = repo.upsert_rows(s, rows)
    assert [(c.sku, c.version) for c in changes] == [("SKU-7", 2)]
    assert all_rows()[("web", "SKU-7")][3]["title"] == "New"


def test_an_older_unit_never_overwrites_a_newer_one(any_db):
    with session_scope() as s:
        repo.upsert_rows(s, [row("A", {"sku": "A", "title": "new"}, seq=10)])
    with session_scope() as s:
        assert repo.upsert_rows(s, [row("A", {"sku": "A", "title": "old"}, seq=5)]) == []
    assert all_rows()[("web", "A")][3]["title"] == "new"


def test_disabled_rows_keep_their_last_document(any_db):
    with session_scope() as s:
        repo.upsert_rows(s, [row("A")])
        repo.upsert_rows(s, [row("A", status="incomplete", seq=2)])
    version, status, enabled, doc, _ = all_rows()[("web", "A")]
    assert (version, status, enabled) == (2, "incomplete", False)
    assert doc == {"sku": "A", "title": "Title A"}


def _mirror(skus: list[str], run: uuid.UUID, at: datetime) -> None:
    products = [parse_product({"identifier": s, "values": {}}) for s in skus]
    with session_scope() as s:
        pim_repo.upsert_products(s, [(p, content_hash(p.raw)) for p in products], run, at)


def test_watermark_disables_exactly_the_unseen_rows_and_deletes_none(any_db):
    old_run, run = uuid.uuid4(), uuid.uuid4()
    skus = [f"SKU-{i:03d}" for i in range(100)]
    _mirror(skus, old_run, NOW - timedelta(days=7))
    with session_scope() as s:
        repo.upsert_rows(s, [row(x, channel=c) for x in skus for c in ("web", "app")])
        repo.upsert_rows(s, [row("SKU-051", status="incomplete", seq=2)])
    started = NOW
    seen = [x for i, x in enumerate(skus) if i % 10 != 0]  # 10 products left the PIM
    _mirror(seen, run, started + timedelta(seconds=5))
    with session_scope() as s:
        changes = repo.disable_rows_not_in(s, "web", run, started, started + timedelta(minutes=1))
    unseen = set(skus) - set(seen)
    assert {c.sku for c in changes} == unseen
    rows = all_rows()
    assert len(rows) == 200  # nothing deleted
    for (channel, sku), (_v, status, enabled, doc, _h) in rows.items():
        if channel == "web" and sku in unseen:
            assert status == "orphan" and not enabled and doc is not None
        else:
            assert status != "orphan"  # other channel untouched, seen rows untouched
    assert rows[("web", "SKU-051")][1] == "incomplete"  # seen: keeps its own reason
    # the same statement again finds nothing left to disable
    with session_scope() as s:
        assert repo.disable_rows_not_in(s, "web", run, started, started) == []
        assert s.execute(select(func.count()).select_from(ChannelProduct)).scalar_one() == 200


def test_disable_skus_in_some_channels_keeps_docs_and_skips_rows_already_so(any_db):
    run = uuid.uuid4()
    with session_scope() as s:
        repo.upsert_rows(s, [row(x, channel=c) for x in ("A", "B", "C") for c in ("web", "app")])
        repo.upsert_rows(s, [row("B", status="removed", seq=2, channel="web")])
        assert repo.disable_skus(s, [], "removed", "removed", run, NOW) == []
    later = NOW + timedelta(minutes=1)
    with session_scope() as s:
        changes = repo.disable_skus(
            s, ["A", "B"], "disabled_in_pim", "pim said so", run, later, channels=["web"]
        )
    assert sorted((c.channel, c.sku, c.version, c.enabled, c.status) for c in changes) == [
        ("web", "A", 2, False, "disabled_in_pim"),
        ("web", "B", 3, False, "disabled_in_pim"),
    ]
    with session_scope() as s:
        a = repo.get_row(s, "web", "A")
        assert a is not None
        assert (a.enabled, a.status, a.disabled_reason, a.sync_run_id, a.synced_at) == (
            False,
            "disabled_in_pim",
            "pim said so",
            run,
            later,
        )
        assert (a.input_hash, a.doc) == ("", {"sku": "A", "title": "Title A"})
        assert repo.get_row(s, "app", "A").status == "published"  # type: ignore[union-attr]
        assert repo.get_row(s, "web", "Z") is None
    with session_scope() as s:
        # the same again: every row already disabled so, nothing rewritten
        assert repo.disable_skus(s, ["A", "B"], "disabled_in_pim", "x", run, later, ["web"]) == []
        # without channels: every channel; a disabled row of another status is rewritten
        changes = repo.disable_skus(s, ["A"], "removed", "removed", None, later)
    assert sorted((c.channel, c.version, c.status) for c in changes) == [
        ("app", 2, "removed"),
        ("web", 3, "removed"),
    ]
    # a row of that very status still enabled is disabled all the same
    with session_scope() as s:
        repo.upsert_rows(s, [replace(row("C", status="removed", seq=3), enabled=True)])
        changes = repo.disable_skus(s, ["C"], "removed", "removed", None, later, ["web"])
    assert [(c.sku, c.version, c.enabled, c.status) for c in changes] == [
        ("C", 3, False, "removed")
    ]


def test_status_counts_per_channel_and_status(any_db):
    with session_scope() as s:
        repo.upsert_rows(s, [row(x, channel="web") for x in ("A", "B", "C")])
        repo.upsert_rows(s, [row("C", status="incomplete", seq=2, channel="web")])
        repo.upsert_rows(s, [row("A", channel="app")])
    with session_scope() as s:
        assert repo.status_counts(s) == {
            "web": {"published": 2, "incomplete": 1},
            "app": {"published": 1},
        }
        assert repo.status_counts(s, "app") == {"app": {"published": 1}}
        assert repo.status_counts(s, "none") == {}


def test_load_states_reads_the_asked_rows_only(any_db):
    with session_scope() as s:
        repo.upsert_rows(s, [row(x, channel=c, seq=4) for x in ("A", "B") for c in ("web", "app")])
        repo.upsert_rows(s, [row("B", status="incomplete", seq=5, channel="web")])
    with session_scope() as s:
        assert repo.load_states(s, [], ["A"]) == {}
        assert repo.load_states(s, ["web"], []) == {}
        states = repo.load_states(s, ["web"], ["B", "Z"])
    assert states == {
        ("web", "B"): repo.RowState("h-B-Title B-incomplete", "incomplete", False, 2, 5)
    }


def test_watermark_edges_seen_at_the_start_counts_removed_does_not(any_db):
    run = uuid.uuid4()
    started = NOW
    with session_scope() as s:
        repo.upsert_rows(s, [row(x) for x in ("EDGE", "GONE", "OLD")])
    _mirror(["OLD"], run, started - timedelta(seconds=1))  # seen before this run began
    _mirror(["EDGE", "GONE"], run, started)  # seen at the very start: in the export
    with session_scope() as s:
        s.execute(
            text("UPDATE pim_product SET removed_at = :t WHERE identifier = 'GONE'"),
            {"t": started},
        )
    with session_scope() as s:
        changes = repo.disable_rows_not_in(s, "web", run, started, started + timedelta(minutes=1))
    assert sorted((c.channel, c.sku, c.version, c.enabled, c.status) for c in changes) == [
        ("web", "GONE", 2, False, "orphan"),
        ("web", "OLD", 2, False, "orphan"),
    ]
    with session_scope() as s:
        gone = repo.get_row(s, "web", "GONE")
        assert gone is not None
        assert (gone.disabled_reason, gone.input_hash, gone.sync_run_id, gone.synced_at) == (
            "orphan",
            "",
            run,
            started + timedelta(minutes=1),
        )


def test_upsert_returns_each_changed_row_as_it_now_stands(any_db):
    with session_scope() as s:
        changes = repo.upsert_rows(s, [row("A"), row("B", status="incomplete", channel="app")])
    assert sorted(changes, key=lambda c: c.sku) == [
        repo.RowChange("web", "A", 1, True, "published"),
        repo.RowChange("app", "B", 1, False, "incomplete"),
    ]
    with session_scope() as s:
        changes = repo.upsert_rows(s, [row("A", status="filtered", seq=2)])
    assert changes == [repo.RowChange("web", "A", 2, False, "filtered")]


def test_contract_version_follows_the_document_and_stays_when_none_comes(any_db):
    with session_scope() as s:
        repo.upsert_rows(s, [row("A")])
        repo.upsert_rows(
            s, [replace(row("A", {"sku": "A", "title": "v2"}, seq=2), contract_version="web@2")]
        )
    with session_scope() as s:
        assert repo.get_row(s, "web", "A").contract_version == "web@2"  # type: ignore[union-attr]
        repo.upsert_rows(s, [replace(row("A", status="incomplete", seq=3), contract_version=None)])
    with session_scope() as s:
        a = repo.get_row(s, "web", "A")
        assert a is not None
        assert (a.status, a.contract_version, a.doc) == (
            "incomplete",
            "web@2",
            {"sku": "A", "title": "v2"},
        )


def test_a_new_status_alone_rewrites_the_row(any_db):
    first = row("A")
    with session_scope() as s:
        repo.upsert_rows(s, [first])
    same_hash = replace(first, status="filtered", enabled=False, doc=None, source_seq=2)
    with session_scope() as s:
        changes = repo.upsert_rows(s, [same_hash])
    assert changes == [repo.RowChange("web", "A", 2, False, "filtered")]


def test_every_field_of_a_row_is_stored(any_db):
    run = uuid.uuid4()
    full = replace(
        row("A", status="incomplete", run=run),
        detail={"missing": ["price"]},
        completeness=73,
    )
    with session_scope() as s:
        repo.upsert_rows(s, [full])
    with session_scope() as s:
        a = repo.get_row(s, "web", "A")
        assert a is not None
        stored = (a.doc, a.contract_version, a.input_hash, a.status, a.enabled, a.disabled_reason)
        assert stored == (
            None,
            "web@1",
            "h-A-Title A-incomplete",
            "incomplete",
            False,
            "incomplete",
        )
        assert (a.detail, a.completeness, a.sync_run_id, a.synced_at, a.source_seq) == (
            {"missing": ["price"]},
            73,
            run,
            NOW,
            1,
        )
        assert a.version == 1


def test_catalog_rows_reads_the_asked_rows_of_each_channel_as_they_stand(any_db):
    with session_scope() as s:
        repo.upsert_rows(
            s,
            [
                row("A"),
                row("B"),
                row("C"),
                row("D", status="disabled_in_pim"),
                row("A", channel="app"),
                row("B", channel="app"),
            ],
        )
        repo.upsert_rows(s, [row("A", {"sku": "A", "title": "New A"}, seq=2)])
    with session_scope() as s:
        got = repo.catalog_rows(s, {"web": ["A", "D", "Z"], "app": ["B"]})
        assert sorted(got) == [
            ("app", "B", 1, {"sku": "B", "title": "Title B"}, True, "published"),
            ("web", "A", 2, {"sku": "A", "title": "New A"}, True, "published"),
            ("web", "D", 1, None, False, "disabled_in_pim"),
        ]
        assert repo.catalog_rows(s, {}) == []
        assert repo.catalog_rows(s, {"web": []}) == []


def test_catalog_rows_after_pages_every_row_in_channel_then_sku_order(any_db):
    # written out of order: the listing's order is its own, not the table's
    keys = [("web", "C"), ("app", "B"), ("web", "A"), ("app", "A"), ("web", "B")]
    with session_scope() as s:
        for channel, sku in keys:
            repo.upsert_rows(s, [row(sku, channel=channel)])

    def page(last: tuple[str, str] | None, limit: int = 2) -> list[tuple[str, str]]:
        with session_scope() as s:
            rows = repo.catalog_rows_after(s, last, limit)
        assert all(
            r[2:] == (1, {"sku": r[1], "title": f"Title {r[1]}"}, True, "published") for r in rows
        )
        return [(r[0], r[1]) for r in rows]

    assert page(None) == [("app", "A"), ("app", "B")]
    # the next channel starts again from its first SKU, even one before the last one's
    assert page(("app", "B")) == [("web", "A"), ("web", "B")]
    assert page(("app", "A")) == [("app", "B"), ("web", "A")]
    assert page(("web", "B")) == [("web", "C")]
    assert page(("web", "C")) == []
    assert page(None, limit=10) == [
        ("app", "A"),
        ("app", "B"),
        ("web", "A"),
        ("web", "B"),
        ("web", "C"),
    ]
