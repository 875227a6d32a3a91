"""Planner statistics stay current without autovacuum (some servers run with it off)."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.db import session_scope, utcnow
from app.maintenance import analyze_if_stale
from app.pim import repository as pim_repo
from app.pim.product import content_hash, parse_product


def _load(n: int, start: int = 0) -> None:
    products = [
        parse_product({"identifier": f"SKU-{i:06d}", "values": {}}) for i in range(start, start + n)
    ]
    with session_scope() as s:
        pim_repo.upsert_products(s, [(p, content_hash(p.raw)) for p in products], None, utcnow())


def _stats_flushed(table: str, changed: int) -> None:
    """Backends publish their statistics at most once a second: wait until they show."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with session_scope() as s:
            n = s.execute(
                text("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = :t"),
                {"t": table},
            ).scalar_one()
        if n >= changed:
            return
        time.sleep(0.2)
    raise AssertionError(f"statistics of {table} never showed {changed} changes")


def test_a_table_that_grew_is_analyzed_and_lookups_use_the_index(pg_db):
    with session_scope() as s:
        s.execute(text("ANALYZE pim_product"))  # statistics of an empty table, as after install
    _load(3000)
    _stats_flushed("pim_product", 3000)
    with session_scope() as s:
        assert analyze_if_stale(s, ("pim_product",), share=1.0) == ["pim_product"]
    with session_scope() as s:
        assert analyze_if_stale(s, ("pim_product",), share=1.0) == []  # nothing changed since
        plan = "\n".join(
            r[0]
            for r in s.execute(
                text("EXPLAIN SELECT raw FROM pim_product WHERE identifier = ANY(:ids)"),
                {"ids": ["SKU-000010", "SKU-001500", "SKU-002999"]},
            ).all()
        )
    assert "Seq Scan" not in plan
    _load(100, start=3000)  # a few percent more: not yet worth an analysis
    _stats_flushed("pim_product", 100)
    with session_scope() as s:
        assert analyze_if_stale(s, ("pim_product",), share=1.0) == []
