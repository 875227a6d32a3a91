"""bench.full_sync: one run prints every figure of issue 18's table, at tiny sizes here."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.full_sync import saturation
from tests.conftest import PG_ADMIN_URL, REDIS_BASE_URL

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = 4  # the bundled channels (app/sample/channels.yaml)

# the rows of issue 18's table, as the bench names them
FIGURES = [
    "cold full sync to storefront / bare COPY of channel_product + product_page",
    "worker CPU per product, all channels",
    "Python work per product (bench.floor)",
    "PostgreSQL CPU of the sync / its bare COPY CPU",
    "warm full sync (no change) / cold, zero rows written",
    "delta of 20 changed SKUs, to storefront",
    "event -> page visible p99 at 200 ev/s",
    "event -> page visible p99 at 1000 ev/s",
    "worker peak RSS, largest / main catalog (flat)",
    "cost growth: worker CPU per product, max / min over sizes (linear)",
]


@pytest.mark.slow
@pytest.mark.worker
def test_one_run_reports_every_figure_with_its_target(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    # pg_url and redis_url: the services are there (else the test is skipped, with the reason)
    env = {
        **os.environ,
        "PIMSYNC_BENCH_CACHE": str(tmp_path / "catalogs"),
        "PIMSYNC_BENCH_PG_URL": PG_ADMIN_URL,
        "PIMSYNC_BENCH_REDIS_URL": REDIS_BASE_URL,
    }
    args = [
        *("--skus", "300", "--growth", "600", "--scale-skus", "200", "--scale", "1,2"),
        *("--events-at-200", "200", "--events-at-1000", "300", "--event-skus", "100"),
        *("--delta", "20", "--copy-repeats", "1", "--floor-products", "300"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bench.full_sync", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)

    rows = {row["figure"]: row for row in report["targets"]}
    assert list(rows) == FIGURES
    for figure, row in rows.items():
        value = row["value"]
        assert isinstance(value, int | float) and not isinstance(value, bool), figure
        assert math.isfinite(value) and value > 0, figure
        target = re.fullmatch(r"<= ([\d.]+)(x| ms| s)?", row["target"])
        assert target is not None, row["target"]
        limit = float(target.group(1))
        assert row["met"] is (value <= limit), figure
        # the human-readable table names it with its value, target and verdict
        verdict = "met" if value <= limit else "not met"
        line = next(x for x in done.stderr.splitlines() if x.startswith(figure))
        assert f"{value}  {row['target']:<14}{verdict:<9}" in line, line

    # what the figures are made of: every product on every channel, pages included
    phases = report["phases"]
    assert phases["cold"]["rows_written"]["channel_product"]["written"] == 300 * CHANNELS
    assert phases["cold"]["pages"]["written"] == 300 * CHANNELS
    assert report["summary"]["warm_wrote_nothing"] is True
    assert phases["delta"]["pages"]["written"] == 20 * CHANNELS
    assert report["events"]["at_200"]["events"] == 200
    assert report["events"]["at_1000"]["events"] == 300
    assert report["events"]["skus_sent_events"] == 100
    growth = report["growth"]
    assert growth["sizes"] == [300, 600]
    assert growth["phases"]["600"]["pages"]["written"] == 600 * CHANNELS
    assert growth["rss_sizes"] == [300, 600]
    scale = report["scale_out"]
    assert list(scale["by_concurrency"]) == ["1", "2"]
    for c, point in scale["by_concurrency"].items():
        assert point["products_per_s_per_worker_process"] == pytest.approx(
            200 / point["wall_seconds"] / int(c), abs=0.1
        )
    assert scale["saturates_at_concurrency"] in (1, None)  # of two steps, the first or none
    assert scale["workers_per_database_core"] > 0


def _point(products_per_s: float, processes: int, postgres_cores: float) -> dict[str, float]:
    return {
        "products_per_s": products_per_s,
        "products_per_s_per_worker_process": products_per_s / processes,
        "postgres_cores": postgres_cores,
        "postgres_cpu_ms_per_product": 0.5,
        "worker_cpu_ms_per_product": 2.0,
        "machine_busy_share": 0.9,
    }


def test_saturation_is_the_last_step_that_paid_and_sizing_fills_a_database_core() -> None:
    points = {1: _point(100, 1, 0.05), 2: _point(190, 2, 0.095), 4: _point(200, 4, 0.1)}
    found = saturation(points)
    assert found["saturates_at_concurrency"] == 2  # 2 -> 4 gained 5 %
    # one database core: 1000 / 0.5 ms = 2000 products/s; a worker core 1000 / 2 ms = 500/s:
    # 4 worker processes per database core; at the 100/s one process did, 20
    assert found["database_core_products_per_s"] == 2000.0
    assert found["worker_core_products_per_s"] == 500.0
    assert found["workers_per_database_core"] == 4.0
    assert found["workers_per_database_core_at_measured_throughput"] == 20.0
    # the database's CPU stopping while products/s still grows is saturation too
    flat_db = {1: _point(100, 1, 0.05), 2: _point(190, 2, 0.05)}
    assert saturation(flat_db)["saturates_at_concurrency"] == 1
    growing = {1: _point(100, 1, 0.05), 2: _point(190, 2, 0.095), 4: _point(360, 4, 0.18)}
    assert saturation(growing)["saturates_at_concurrency"] is None
    # a step that gained little on a busy machine, then one that gained much: not saturated
    noisy = {1: _point(126, 1, 0.09), 2: _point(135, 2, 0.10), 4: _point(239, 4, 0.17)}
    assert saturation(noisy)["saturates_at_concurrency"] is None


def test_skip_refuses_a_part_it_does_not_know() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.full_sync", "--skip", "events,pages"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--skip: unknown ['pages']" in done.stderr
