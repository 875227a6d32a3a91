"""app.db.among: ``column IN values`` as one array parameter on PostgreSQL, a plain IN elsewhere."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select

from app.db import among, is_postgres, session_scope
from app.sync.models import DeadLetter


def _letters(skus: Iterable[str]) -> None:
    """Open dead letters of channel ``c`` for ``skus``."""
    now = datetime(2026, 11, 27, tzinfo=UTC)
    with session_scope() as s:
        s.add_all(
            DeadLetter(
                channel="c",
                sku=sku,
                kind="publish",
                error_type="E",
                error="e",
                permanent=True,
                attempts=1,
                status="open",
                first_failed_at=now,
                last_failed_at=now,
            )
            for sku in skus
        )


def test_among_selects_exactly_the_given_values(any_db):
    _letters(f"sku-{i:04d}" for i in range(600))
    wanted = [f"sku-{i:04d}" for i in range(0, 1200, 2)]  # half of them do not exist
    with session_scope() as s:
        found = set(
            s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.sku, wanted))).scalars()
        )
        assert found == {f"sku-{i:04d}" for i in range(0, 600, 2)}
        # no values: nothing, on both backends (an empty array / an empty IN)
        assert s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.sku, []))).all() == []
        # a generator is taken as well as a list
        gen = (f"sku-{i:04d}" for i in (1, 3))
        found = set(
            s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.sku, gen))).scalars()
        )
        assert found == {"sku-0001", "sku-0003"}


def test_among_is_one_array_parameter_on_postgresql_whatever_the_count(pg_db):
    _letters(f"sku-{i:04d}" for i in range(3))
    with session_scope() as s:
        assert is_postgres(s)
        texts = set()
        for n in (1, 2, 500):
            stmt = select(DeadLetter.sku).where(
                among(s, DeadLetter.sku, [f"x{i}" for i in range(n)])
            )
            texts.add(str(stmt.compile(s.get_bind())))
        # the same statement text for 1, 2 or 500 values: one parameter, ANY(...)
        assert len(texts) == 1, texts
        (sql,) = texts
        assert "ANY" in sql and " IN " not in sql
        skus = ["sku-0001", "sku-0002"]
        rows = s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.sku, skus))).scalars()
        assert sorted(rows) == skus


def test_a_value_longer_than_the_column_matches_nothing(any_db):
    """An over-long value (e.g. an identifier from a webhook) is not cut to the column's
    length: it must not match the row holding its first 255 characters."""
    _letters(["x" * 255])
    with session_scope() as s:
        longer = ["x" * 255 + "-another-product"]
        assert s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.sku, longer))).all() == []
        exact = ["x" * 255]
        found = s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.sku, exact))).scalars()
        assert list(found) == exact
        channel = ["c" + "y" * 80]  # channel is VARCHAR(64)
        rows = s.execute(select(DeadLetter.sku).where(among(s, DeadLetter.channel, channel)))
        assert rows.all() == []
