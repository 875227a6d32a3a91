"""The channel catalog store on real databases: keyed upserts and the orphan watermark."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

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
