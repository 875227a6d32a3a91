"""bench.floor: the per-product Python work of a cold sync, measured stage by stage."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.dev import generator
from bench import floor
from bench.harness.catalog import sample_runtimes


def _catalog(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "products.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps(p) + b"\n" for p in generator.iter_products(count, seed=3))
    )
    return path


def test_measure_runs_every_stage_on_every_product_for_every_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(floor, "CHUNK", 10)  # several chunks, the last one partial
    runtimes = sample_runtimes()
    result = floor.measure(_catalog(tmp_path, 40), runtimes, limit=25)

    assert result["products"] == 25
    assert result["channels"] == len(runtimes) == 4
    assert result["units"] == 25 * 4
    stages = result["cpu_ms_per_product"]
    assert set(stages) == set(floor.STAGES)
    assert all(v >= 0 for v in stages.values())
    assert result["total_cpu_ms_per_product"] > 0
    assert result["total_cpu_ms_per_product"] == pytest.approx(sum(stages.values()), abs=0.01)


def test_measure_refuses_a_file_without_products(tmp_path: Path) -> None:
    empty = tmp_path / "products.jsonl"
    empty.write_bytes(b"\n\n")
    with pytest.raises(ValueError, match="holds no product"):
        floor.measure(empty, sample_runtimes())


def test_floor_spreads_python_and_database_cpu_over_the_cores() -> None:
    python = {"total_cpu_ms_per_product": 3.0}
    # 1,000 products x 3 ms = 3 s of Python, plus 1 s of COPY CPU, over 2 cores: 2 s,
    # which is 4x a COPY that took 0.5 s (uneven inputs: a wrong formula shows)
    result = floor.floor(python, 1000, copy_backend_cpu_s=1.0, copy_wall_s=0.5, cpus=2)
    assert result["python_cpu_s"] == 3.0
    assert result["postgres_copy_cpu_s"] == 1.0
    assert result["seconds"] == 2.0
    assert result["ratio_to_bare_copy"] == 4.0
    # the same work on 4 cores: half the time
    assert floor.floor(python, 1000, 1.0, 0.5, cpus=4)["seconds"] == 1.0


# --- bench.full_sync: a phase ends when the pages are written too ---------------------------


def test_pages_behind_counts_rows_whose_page_lacks_their_version(pg_db: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine, text

    from bench.harness.measure import pages_behind, pages_written_since

    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    engine = create_engine(pg_db)
    try:
        with engine.begin() as conn:
            for sku, version in (("A", 1), ("B", 2), ("C", 3), ("D", 1)):
                conn.execute(
                    text(
                        "INSERT INTO channel_product (channel, sku, input_hash, status, enabled, "
                        "synced_at, source_seq, version) VALUES ('web', :s, 'h', 'published', "
                        "true, :t, 0, :v)"
                    ),
                    {"s": sku, "v": version, "t": t0},
                )
            # A: on its page; B: its page holds an older version; C: no page; D: page ahead
            for sku, version, at in (("A", 1, t0), ("B", 1, t0), ("D", 5, t0 + timedelta(1))):
                conn.execute(
                    text(
                        "INSERT INTO product_page (channel, sku, catalog_version, "
                        "catalog_enabled, pricing_version, inventory_version, media_version, "
                        "updated_at) VALUES ('web', :s, :v, true, 0, 0, 0, :t)"
                    ),
                    {"s": sku, "v": version, "t": at},
                )
        with engine.connect() as conn:
            assert pages_behind(conn) == 2  # B and C
            assert pages_written_since(conn, t0 + timedelta(hours=1)) == (1, t0 + timedelta(1))
            conn.execute(text("UPDATE product_page SET catalog_version = 2 WHERE sku = 'B'"))
            conn.execute(
                text(
                    "INSERT INTO product_page (channel, sku, catalog_version, catalog_enabled, "
                    "pricing_version, inventory_version, media_version, updated_at) "
                    "VALUES ('web', 'C', 3, true, 0, 0, 0, :t)"
                ),
                {"t": t0},
            )
            assert pages_behind(conn) == 0
    finally:
        engine.dispose()
