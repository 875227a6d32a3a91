"""The publish path's bulk write on real PostgreSQL: when the database refuses one row of a
batch, the batch falls back to one savepoint per row, so only that row fails."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from app.channels.models import ChannelProduct
from app.channels.repository import ChannelRow
from app.db import session_scope
from app.sync.publish import _write_rows

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def row(sku: str, title: str) -> ChannelRow:
    return ChannelRow(
        channel="de_storefront",
        sku=sku,
        doc={"sku": sku, "title": title},
        contract_version="storefront_de@1",
        input_hash=f"h-{sku}",
        status="published",
        enabled=True,
        disabled_reason=None,
        detail=None,
        completeness=100,
        sync_run_id=None,
        synced_at=NOW,
        source_seq=1,
    )


def test_a_refused_row_fails_alone_and_its_neighbours_are_written(pg_db: str) -> None:
    rows = [row("A-1", "fine"), row("A-2", "nul\x00inside"), row("A-3", "fine too")]
    with session_scope() as session:
        changes, refused = _write_rows(session, rows)
    assert sorted(c.sku for c in changes) == ["A-1", "A-3"]
    assert [(r.sku, type(e.orig).__name__) for r, e in refused] == [
        ("A-2", "UntranslatableCharacter")
    ]
    with session_scope() as session:
        stored = session.execute(select(ChannelProduct.sku).order_by(ChannelProduct.sku)).all()
        assert [s for (s,) in stored] == ["A-1", "A-3"]
        assert session.execute(select(func.count()).select_from(ChannelProduct)).scalar_one() == 2


def test_a_batch_without_refusals_is_one_bulk_write(pg_db: str) -> None:
    with session_scope() as session:
        changes, refused = _write_rows(session, [row(f"B-{i}", "ok") for i in range(5)])
    assert refused == [] and len(changes) == 5
    assert {c.version for c in changes} == {1}
