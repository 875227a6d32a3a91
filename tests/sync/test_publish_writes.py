"""The publish path's bulk write on real PostgreSQL: when the database refuses one row of a
batch, the batch falls back to one savepoint per row, so only that row fails."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from app.channels import repository as channel_repo
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


def refusing(monkeypatch: pytest.MonkeyPatch, errors: list[Exception | None]) -> None:
    """Each upsert statement in turn fails with the next error (None: runs as usual)."""
    real = channel_repo.upsert_rows

    def upsert_rows(session: Any, rows: list[ChannelRow]) -> Any:
        error = errors.pop(0)
        if error is not None:
            raise error
        return real(session, rows)

    monkeypatch.setattr(channel_repo, "upsert_rows", upsert_rows)


def lost() -> OperationalError:
    return OperationalError("INSERT", {}, Exception("server closed the connection"))


def invalidated() -> DBAPIError:
    return DBAPIError("INSERT", {}, Exception("reset"), connection_invalidated=True)


def refused() -> DBAPIError:
    return DBAPIError("INSERT", {}, Exception("invalid byte sequence"))


@pytest.mark.parametrize("error", [lost, invalidated], ids=["operational", "invalidated"])
@pytest.mark.parametrize("on_row", [False, True], ids=["bulk", "row"])
def test_a_lost_connection_fails_the_batch_instead_of_its_rows(
    pg_db: str, monkeypatch: pytest.MonkeyPatch, error: Any, on_row: bool
) -> None:
    """A transient database error is no bad row: the whole batch fails (and is retried), be
    it on the bulk statement or on one row of the fallback."""
    failure = error()
    refusing(monkeypatch, [refused(), None, failure] if on_row else [failure])
    with session_scope() as session, pytest.raises(DBAPIError) as raised:
        _write_rows(session, [row("C-1", "ok"), row("C-2", "ok")])
    assert raised.value is failure


def test_rows_refused_one_by_one_are_each_returned_with_their_error(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = refused(), refused()
    refusing(monkeypatch, [refused(), first, None, second])
    with session_scope() as session:
        changes, bad = _write_rows(session, [row("D-1", "x"), row("D-2", "y"), row("D-3", "z")])
    assert [c.sku for c in changes] == ["D-2"]
    assert [(r.sku, e) for r, e in bad] == [("D-1", first), ("D-3", second)]


def test_no_rows_no_statement(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    refusing(monkeypatch, [])  # any statement would fail: no error left to pop
    with session_scope() as session:
        assert _write_rows(session, []) == ([], [])
