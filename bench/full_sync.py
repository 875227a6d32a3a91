"""End-to-end full and delta sync of a generated catalog on real parts, against a bare COPY.

    python -m bench.full_sync [--skus 50000] [--seed 7] [--delta 400] [--copy-repeats 3]
                              [--growth 10000,200000] [--scale-skus 10000] [--scale 1,2,4]
                              [--events-at-200 2000] [--events-at-1000 3000]
                              [--skip events,growth,scale | --quick] [--keep-logs]

One run measures every figure of issue 18's table and prints it beside its target, "met" or
"not met" (stderr; ``targets`` in the JSON report); ``--skip`` (or ``--quick``: all three)
leaves out the event, growth and scale-out parts, whose rows then read "skipped".

What runs (everything on this machine):

- the reference PIM (``python -m app reference-pim``) in its own process, serving a generated
  catalog (``app.dev.generator``, ~200 attributes per product) over Akeneo's REST API; the
  catalog is data, generated once into ``bench/.cache/catalog-N-SEED-vV/`` and reused;
- the Akeneo REST client (``PIMSYNC_PIM_SOURCE=http://127.0.0.1:PORT``) in the workers;
- Redis as broker and for the shared PIM-call limit: a free database (12 preferred), claimed
  like the tests claim theirs and flushed before and after;
- one ``celery -A tasks worker --pool=prefork --concurrency=2
  --queues=sync,publish,events.catalog``: the catalog events that project channel rows onto
  product pages are consumed by the same worker, inside the timed phases;
- a scratch PostgreSQL database (``bench.common.scratch_database``), dropped at the end;
- the bundled channels (de_storefront, at_storefront, uk_marketplace, b2b_portal):
  units = SKUs x 4.

Phases, each timed from ``start_full``/``start_delta`` to the storefront: the last channel run
finished (the runs' own ``finished_at``) *and* every ``channel_product`` row on its product page
(``product_page.catalog_version`` = the row's version, polled every 0.1 s once the runs are
over: the figure is an upper bound by one poll), with VACUUM ANALYZE + CHECKPOINT before each:

1. ``cold``: full sync into an empty database;
2. ``warm``: full sync again, nothing changed in the PIM (must write no ``channel_product`` row);
3. ``delta``: ``--delta`` products renamed through the reference PIM's admin PATCH (untimed),
   then a delta sync.

After the cold phase the ``channel_product`` rows it wrote are exported (COPY TO) and loaded
``--copy-repeats`` times with one bare ``COPY FROM`` into an empty table with the same indexes
and TOAST compression (likewise ``product_page`` and ``pim_product``): the ratio of the cold
sync to the bare COPY of the two tables the storefront reads (channel_product + product_page)
is the figure that holds on a noisy machine. Then ``bench.floor`` measures the per-product
Python work in this process on ``--floor-products`` products of the catalog.

4. ``events`` (on the same catalog and pages, after the delta): the sync's worker makes way for
   one on every queue and ``pimsync web``, as ``bench.events`` runs them, and its paced phase
   runs twice: ``--events-at-200`` events offered at 200/s, then ``--events-at-1000`` at
   1,000/s (the senders may not reach it: the rate they did is reported); event -> page
   visible p99 of each.
5. ``growth``: a cold full sync of each ``--growth`` size (own PIM, database and worker):
   worker CPU per product at every size beside the main one (linear cost: within 10 %), and
   the workers' peak RSS at the largest size over the main one (flat: within 10 %).
6. ``scale``: a cold full sync of ``--scale-skus`` with each of ``--scale`` worker processes
   (own PIM, database and worker): products/s per worker process, PostgreSQL's CPU per wall
   second, and the fewest processes within 10 % of the most products/s or database CPU any
   concurrency reached (the saturation point); the sizing rule: worker processes (a core
   each) per database core = worker CPU ms per product / PostgreSQL CPU ms per product.

Measured per phase: wall seconds, units/s, the runs' counters per channel, rows written
(``channel_product`` inserts and version bumps, rows tagged with the phase's runs;
``pim_product`` rows whose change position moved; WAL bytes and checkpoints), peak RSS/PSS of
the worker processes (sampled every 0.2 s), CPU seconds per process group (reference PIM,
worker parent and children, PostgreSQL backends of the scratch database, other PostgreSQL
processes, Redis, this process, everything else: the top "noise" processes are named), what
the scratch database's backends were doing (``pg_stat_activity`` sampled every 0.2 s: share of
active samples per statement and wait event), Celery task durations from the worker log, the
reference PIM's request statistics and what went wrong (log errors and warnings, retries,
deadlocks, dead letters, retried batches). The report also names the commit and the
uncommitted files of the code under test, and the PostgreSQL settings.

Output: the JSON report on stdout; progress and a short table on stderr. Worker and PIM logs
go to a temporary folder, kept with ``--keep-logs`` (or when a phase fails).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.db import session_scope
from app.dev.generator import PIM_LOCALES, sku_of
from app.sync import ingest
from app.sync.runtime import REGISTRY
from bench import events, floor
from bench.harness.measure import (
    Autoanalyze,
    PgActivity,
    ProcessSampler,
    bare_copy,
    health,
    log_findings,
    postgres_settings,
    rows_written,
    table_snapshot,
    wait_for_pages,
    wait_for_run,
)
from bench.harness.report import code_version, machine, run_bench, say, settings_in_force
from bench.harness.stack import COUNTERS, ReferencePim, Stack, checkpoint, redis_database, stack_for


def run_phase(stack: Stack, name: str, units: int) -> dict[str, Any]:
    """Start a full (cold, warm) or delta sync and wait for every channel run to finish."""

    checkpoint(stack.url)
    stack.pim.reset_stats()
    before = table_snapshot(stack.url)
    sampler = ProcessSampler(
        stack.worker.pid,
        stack.pim.pid,
        stack.database,
        activity=PgActivity(stack.url, stack.database),
    )
    sampler.start()
    analyzer = Autoanalyze(stack.url, stack.analyze_every)
    analyzer.start()
    say(f"phase {name}: started ({units} units)")
    t0 = datetime.now(UTC)
    p0 = time.perf_counter()
    with session_scope() as s:
        if name == "delta":
            run_id = ingest.start_delta(s, stack.context(), trigger="bench").id
        else:
            started = ingest.start_full(s, stack.context(), trigger="bench")
            if started is None:
                raise RuntimeError("start_full refused: every channel is already syncing")
            run_id = started.id
    parent, children = wait_for_run(stack, name, run_id, units, sampler)
    # the storefront waits for the pages too: the phase ends when every channel_product row
    # is on its product page, and the CPU sampled until then includes the projection
    pages = wait_for_pages(stack, name, t0)
    observed = time.perf_counter() - p0
    analyzer.stop()
    sampler.stop()
    finished = [c["finished_at"] for c in children if c["finished_at"]]
    if parent and parent["finished_at"]:
        finished.append(parent["finished_at"])
    runs_wall = (max(finished) - t0).total_seconds() if finished else observed
    # upper bound: the first poll that saw every page written (PAGES_POLL apart)
    wall = max(runs_wall, (pages["pages_seen_complete_at"] - t0).total_seconds())
    last_page = pages["last_page_written_at"]
    after = table_snapshot(stack.url)
    findings, stack.log_offset = log_findings(stack.worker.log, stack.log_offset)
    written = rows_written(stack.url, before, after, [parent["id"]] + [c["id"] for c in children])
    totals = {c: sum(ch[c] for ch in children) for c in COUNTERS}
    problems = [
        f"{r['channel'] or 'ingest'} run {r['status']}: {r['error']}"
        for r in [parent, *children]
        if r and r["status"] != "completed"
    ]
    processed = sum(totals.values())
    if name != "delta" and processed != units:
        problems.append(f"counters add up to {processed} units, expected {units}")
    result = {
        # to the storefront: channel_product and product_page both written
        "wall_seconds": round(wall, 2),
        "channel_runs_seconds": round(runs_wall, 2),
        "pages": {
            "written": pages["pages_written"],
            "last_written_seconds": (
                round((last_page - t0).total_seconds(), 2) if last_page else None
            ),
            "seen_complete_seconds": round(wall, 2),
            "polls": pages["polls"],
            "slowest_poll_s": pages["slowest_poll_s"],
        },
        "observed_seconds": round(observed, 2),
        "units": units,
        "units_per_s": round(units / wall, 1) if wall else None,
        "ingest": {
            "status": parent["status"] if parent else None,
            "read": parent["read"] if parent else None,
            "rejected": parent["rejected"] if parent else None,
            "seconds": (
                round((parent["finished_at"] - parent["started_at"]).total_seconds(), 2)
                if parent and parent["finished_at"]
                else None
            ),
        },
        "channels": {
            c["channel"]: {
                "status": c["status"],
                "seconds": (
                    round((c["finished_at"] - t0).total_seconds(), 2) if c["finished_at"] else None
                ),
                "planned_units": c["planned_units"],
                "planned_batches": c["planned_batches"],
                **{k: c[k] for k in COUNTERS},
                "orphans_disabled": c["orphans_disabled"],
            }
            for c in sorted(children, key=lambda c: c["channel"] or "")
        },
        "counters_total": totals,
        "rows_written": written,
        **sampler.report(wall),
        "reference_pim": stack.pim.stats(),
        "emulated_autoanalyze": analyzer.report(),
        "worker_log": findings,
        "database": health(stack.url),
        "problems": problems,
    }
    cw = written["channel_product"]
    saved = stack.logs / f"phase-{stack.skus}-{name}.json"
    saved.write_text(json.dumps(result, indent=2, default=str))
    say(f"phase {name}: result saved to {saved}")
    say(
        f"phase {name}: finished in {wall:.1f}s ({result['units_per_s']} units/s), "
        f"channel rows written {cw['written']}, pages written {pages['pages_written']} "
        f"(channel runs done at {runs_wall:.1f}s), problems: {len(problems)}"
    )
    return result


def rename_products(pim: ReferencePim, skus: int, count: int) -> list[str]:
    """Rename ``count`` products spread over the catalog through the admin PATCH."""

    step = max(1, skus // count)
    chosen = [sku_of(i) for i in range(0, skus, step)][:count]
    stamp = datetime.now(UTC).strftime("%H%M%S")
    for sku in chosen:
        values = {
            "name": [
                {"locale": loc, "scope": None, "data": f"Renamed {sku} {stamp} {loc}"}
                for loc in PIM_LOCALES
            ]
        }
        pim.admin.patch(f"/_admin/products/{sku}", json={"values": values}).raise_for_status()
    return chosen


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {**machine(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "command": " ".join(["python -m bench.full_sync", *sys.argv[1:]]),
        "skus": args.skus,
        "seed": args.seed,
        "worker_concurrency": args.concurrency,
        "analyze_every_s": args.analyze_every or None,
        "skipped": sorted(args.skip),
        "code": code_version(),
    }
    with redis_database(args.redis_db) as redis_url:
        report["redis"] = redis_url
        with stack_for(args.skus, args.seed, redis_url, logs, args) as st:
            units = args.skus * len(st.channels)
            report.update(
                channels=st.channels,
                units=units,
                settings=settings_in_force(),
                postgres=postgres_settings(st.url),
            )
            phases: dict[str, Any] = {}
            report["phases"] = phases
            phases["cold"] = run_phase(st, "cold", units)
            if not args.cold_only:
                with tempfile.TemporaryDirectory(prefix="pimsync-bench-copy-") as tmp:
                    report["bare_copy"] = {
                        t: bare_copy(st.url, t, args.copy_repeats, Path(tmp))
                        for t in ("channel_product", "product_page", "pim_product")
                    }
                report["floor"] = python_floor(st, report["bare_copy"], args.floor_products)
                phases["warm"] = run_phase(st, "warm", units)
                say(f"delta: renaming {args.delta} products in the reference PIM (untimed)")
                renamed = rename_products(st.pim, args.skus, args.delta)
                phases["delta"] = run_phase(st, "delta", len(renamed) * len(st.channels))
                phases["delta"]["renamed_products"] = len(renamed)
            save_partial(report, logs)
            if "events" not in args.skip:
                report["events"] = event_latency(st, args)
                save_partial(report, logs)
        if not args.cold_only:
            report["summary"] = summary(report)
        if "growth" not in args.skip:
            report["growth"] = cost_growth(report, args, redis_url, logs)
            save_partial(report, logs)
        if "scale" not in args.skip:
            report["scale_out"] = scale_out(args, redis_url, logs)
    report["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = targets(report)
    return report


def save_partial(report: dict[str, Any], logs: Path) -> None:
    """What is measured so far, in the logs folder (kept when a later part fails)."""
    (logs / "report-partial.json").write_text(json.dumps(report, indent=2, default=str))


# the event rates of issue 18's table: event -> page visible p99 at each
EVENT_RATES = (200, 1000)


def event_latency(st: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """bench.events' paced phases against the pages the cold sync wrote: the sync's worker
    makes way for one on every queue, as bench.events runs it, and ``pimsync web`` takes the
    events; ``--events-at-200`` then ``--events-at-1000`` events (20 % webhooks, 10 %
    re-delivered, out of order), each phase timed until every event is visible on its page."""

    st.worker.stop()
    env = {**st.env, **events.event_env(args.coalesce)}
    with ExitStack() as services:
        web, worker = events.event_services(env, st.logs, services, args.concurrency)
        phases = [
            (f"at_{rate}", float(rate), count, seed)
            for rate, count, seed in zip(
                EVENT_RATES, (args.events_at_200, args.events_at_1000), (11, 12), strict=True
            )
        ]
        found, _ = events.event_phases(st.url, web, worker, phases, sample=args.event_skus)
    return {"coalesce_seconds": args.coalesce, **found}


def cold_figures(phase: dict[str, Any], skus: int) -> dict[str, Any]:
    """A cold phase's figures that growth and scale-out compare."""
    groups = phase["cpu"]["by_group"]
    wall = phase["wall_seconds"]
    postgres = groups.get("postgres_backends", {}).get("cpu_s", 0.0)
    busy, capacity = phase["cpu"]["machine_busy_cpu_s"], phase["cpu"]["machine_capacity_cpu_s"]
    return {
        "wall_seconds": wall,
        "products_per_s": round(skus / wall, 1) if wall else None,
        "worker_cpu_ms_per_product": _worker_cpu_ms_per_product(phase, skus),
        "postgres_cpu_s": postgres,
        "postgres_cpu_ms_per_product": round(postgres * 1000 / skus, 3),
        # the database's CPU per wall second: the cores it kept busy
        "postgres_cores": round(postgres / wall, 2) if wall else None,
        "machine_busy_share": round(busy / capacity, 2) if capacity else None,
        "worker_peak_rss_sum_mib": phase["worker_memory"]["max_rss_sum_mib"],
        "problems": phase["problems"],
    }


def _ratio_of(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _ratio(values: list[float]) -> float | None:
    return round(max(values) / min(values), 3) if values and min(values) > 0 else None


def cost_growth(
    report: dict[str, Any], args: argparse.Namespace, redis_url: str, logs: Path
) -> dict[str, Any]:
    """A cold sync of each ``--growth`` size (own PIM, database and worker) beside the main
    one: worker CPU per product at each size (linear cost: the same at every size) and the
    workers' peak RSS (flat: the largest catalog's over the main one's)."""

    main = args.skus
    by_size = {main: cold_figures(report["phases"]["cold"], main)}
    phases: dict[int, Any] = {}
    for size in sorted(set(args.growth) - {main}):
        with stack_for(size, args.seed, redis_url, logs, args) as st:
            phases[size] = run_phase(st, f"cold-{size}", size * len(st.channels))
        by_size[size] = cold_figures(phases[size], size)
    by_size = dict(sorted(by_size.items()))
    largest = max(by_size)
    cpu = [f["worker_cpu_ms_per_product"] for f in by_size.values()]
    return {
        "sizes": list(by_size),
        "by_size": by_size,
        "cpu_per_product_ratio": _ratio([c for c in cpu if c is not None]),
        "rss_sizes": [main, largest],
        "rss_ratio": round(
            by_size[largest]["worker_peak_rss_sum_mib"] / by_size[main]["worker_peak_rss_sum_mib"],
            3,
        ),
        "reference_pim_max_rss_mib": {
            size: p["reference_pim_max_rss_mib"] for size, p in phases.items()
        },
        "phases": phases,
    }


GROWS = 1.10  # scale-out: a step that gains less than this has reached saturation


def scale_out(args: argparse.Namespace, redis_url: str, logs: Path) -> dict[str, Any]:
    """A cold sync of ``--scale-skus`` with 1, 2, 4 worker processes (``--scale``), each on
    its own PIM, database and worker: products/s per worker process, the database's CPU per
    wall second, and where adding processes stops paying."""

    skus = args.scale_skus
    points: dict[int, dict[str, Any]] = {}
    for c in sorted(args.scale):
        with stack_for(skus, args.seed, redis_url, logs, args, concurrency=c) as st:
            phase = run_phase(st, f"scale-c{c}", skus * len(st.channels))
        points[c] = cold_figures(phase, skus)
        points[c]["products_per_s_per_worker_process"] = round(points[c]["products_per_s"] / c, 1)
    return {"skus": skus, "by_concurrency": points, **saturation(points)}


def saturation(points: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Where PostgreSQL saturates: the fewest worker processes whose products/s, or whose
    database CPU per wall second, is within GROWS of the most any concurrency reached (more
    processes gained less than 10 %); None when that is only the largest concurrency (every
    step paid). And the sizing figures."""
    at: int | None = None
    for key in ("products_per_s", "postgres_cores"):
        best = max(p[key] for p in points.values())
        least = min(c for c, p in points.items() if p[key] * GROWS >= best)
        at = least if at is None else min(at, least)
    if at == max(points):
        at = None
    steps = sorted(points.items())
    why = ", ".join(
        f"{c}: {p['products_per_s']} products/s, PostgreSQL {p['postgres_cores']} cores, "
        f"machine busy {p['machine_busy_share']:.0%}"
        for c, p in steps
    )
    # sizing, at the fewest processes (the least contention): one database core does
    # 1000 / (its CPU ms per product) products/s; a worker process with a core of its own
    # 1000 / (its CPU ms per product), and what it did here at its share of the machine
    first = steps[0][1]
    db_core_products_per_s = 1000 / first["postgres_cpu_ms_per_product"]
    return {
        "saturates_at_concurrency": at,
        "saturation": why,
        "database_core_products_per_s": round(db_core_products_per_s, 1),
        "worker_core_products_per_s": round(1000 / first["worker_cpu_ms_per_product"], 1),
        # the rule: worker processes (a core each) that keep one database core busy
        "workers_per_database_core": round(
            first["worker_cpu_ms_per_product"] / first["postgres_cpu_ms_per_product"], 2
        ),
        "workers_per_database_core_at_measured_throughput": round(
            db_core_products_per_s / first["products_per_s_per_worker_process"], 2
        ),
    }


def python_floor(st: Stack, copies: dict[str, Any], products: int) -> dict[str, Any]:
    """The cold sync's floor (see bench.floor): the workers' per-product Python work measured
    in this process on the catalog's first ``products`` products, with the channels' runtimes
    as the workers built them, plus the database CPU of a bare COPY of the three tables; its
    ratio is to the bare COPY of the two the storefront reads (channel_product, product_page)."""

    settings = get_settings()
    say(f"floor: the per-product Python work, {products} products in this process")
    with session_scope() as session:
        runtimes = [REGISTRY.runtime(session, settings, code) for code in st.channels]
    python = floor.measure(
        st.catalog / "products.jsonl", runtimes, settings.identifier_attribute, products
    )
    copy_cpu = sum(c["backend_cpu_s"]["median"] for c in copies.values())
    result = floor.floor(
        python,
        st.skus,
        copy_cpu,
        sum(copies[t]["seconds"]["median"] for t in STOREFRONT_TABLES),
        len(os.sched_getaffinity(0)),  # the cores this machine lets us use
    )
    return {"python": python, **result}


STOREFRONT_TABLES = ("channel_product", "product_page")


def _worker_cpu_ms_per_product(phase: dict[str, Any], products: int) -> float | None:
    groups = phase["cpu"]["by_group"]
    cpu = sum(groups.get(g, {}).get("cpu_s", 0.0) for g in ("worker_parent", "worker_children"))
    return round(cpu * 1000 / products, 3) if products else None


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's table, as far as one run measures it: every figure to the storefront
    (channel_product and product_page both written) beside the bare COPY of the same rows."""
    phases = report["phases"]
    cold, warm, delta = phases["cold"], phases["warm"], phases["delta"]
    copies = report["bare_copy"]
    copy_cp = copies["channel_product"]
    copy_s = copy_cp["seconds"]["median"]
    copy_storefront = sum(copies[t]["seconds"]["median"] for t in STOREFRONT_TABLES)
    copy_cpu_all = sum(c["backend_cpu_s"]["median"] for c in copies.values())
    pg_cold = cold["cpu"]["by_group"].get("postgres_backends", {}).get("cpu_s")
    warm_written = warm["rows_written"]["channel_product"]["written"]
    warm_pages = warm["pages"]["written"]
    skus = report["skus"]
    return {
        "cold_seconds": cold["wall_seconds"],
        "cold_channel_runs_seconds": cold["channel_runs_seconds"],
        "cold_pages_written": cold["pages"]["written"],
        "warm_seconds": warm["wall_seconds"],
        "delta_seconds": delta["wall_seconds"],
        "delta_channel_runs_seconds": delta["channel_runs_seconds"],
        "delta_pages_written": delta["pages"]["written"],
        "cold_units_per_s": cold["units_per_s"],
        "warm_units_per_s": warm["units_per_s"],
        "bare_copy_channel_product_seconds": copy_s,
        "bare_copy_channel_product_rows_per_s": copy_cp["rows_per_s"],
        "bare_copy_product_page_seconds": copies["product_page"]["seconds"]["median"],
        "bare_copy_storefront_seconds": round(copy_storefront, 3),
        "bare_copy_pim_product_seconds": copies["pim_product"]["seconds"]["median"],
        # the first figure: to the storefront, over the COPY of both tables it writes
        "ratio_cold_to_bare_copy_storefront": (
            round(cold["wall_seconds"] / copy_storefront, 2) if copy_storefront else None
        ),
        # the earlier figure (channel_product alone), kept for comparison with older runs
        "ratio_cold_to_bare_copy": round(cold["wall_seconds"] / copy_s, 2) if copy_s else None,
        "ratio_warm_to_cold": round(warm["wall_seconds"] / cold["wall_seconds"], 3),
        "worker_cpu_ms_per_product_cold": _worker_cpu_ms_per_product(cold, skus),
        "worker_cpu_ms_per_product_warm": _worker_cpu_ms_per_product(warm, skus),
        # the same ratio in worker CPU: what other load on the machine changes least
        "ratio_worker_cpu_warm_to_cold": _ratio_of(
            _worker_cpu_ms_per_product(warm, skus), _worker_cpu_ms_per_product(cold, skus)
        ),
        # the sync's database CPU (its backends) over the bare COPYs' of the three tables
        "postgres_cpu_cold_s": pg_cold,
        "postgres_copy_cpu_s": round(copy_cpu_all, 1),
        "ratio_postgres_cpu_to_copy_cpu": (
            round(pg_cold / copy_cpu_all, 2) if pg_cold is not None and copy_cpu_all else None
        ),
        "floor_seconds": report["floor"]["seconds"],
        "ratio_floor_to_bare_copy": report["floor"]["ratio_to_bare_copy"],
        "python_floor_cpu_ms_per_product": report["floor"]["python"]["total_cpu_ms_per_product"],
        "python_floor_stages_ms": report["floor"]["python"]["cpu_ms_per_product"],
        "cold_channel_rows_written": cold["rows_written"]["channel_product"]["written"],
        "warm_channel_rows_written": warm_written,
        "warm_pages_written": warm_pages,
        "warm_synced_counter": warm["counters_total"]["synced"],
        "warm_wrote_nothing": (
            warm_written == 0 and warm_pages == 0 and warm["counters_total"]["synced"] == 0
        ),
        "delta_channel_rows_written": delta["rows_written"]["channel_product"]["written"],
        "worker_peak_rss_sum_mib": max(
            p["worker_memory"]["max_rss_sum_mib"] for p in phases.values()
        ),
        "worker_peak_pss_sum_mib": max(
            p["worker_memory"]["max_pss_sum_mib"] for p in phases.values()
        ),
        "problems": {k: p["problems"] for k, p in phases.items() if p["problems"]},
    }


def _get(report: dict[str, Any], *path: Any) -> Any:
    for key in path:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's table: every figure beside its target, met or not (None: not measured)."""
    s = report.get("summary", {})
    cold = report["phases"]["cold"]
    delta = report["phases"].get("delta", {})
    rows = [
        (
            "cold full sync to storefront / bare COPY of channel_product + product_page",
            s.get("ratio_cold_to_bare_copy_storefront"),
            2.5,
            "x",
            f"{cold['wall_seconds']} s / {s.get('bare_copy_storefront_seconds')} s",
        ),
        (
            "worker CPU per product, all channels",
            _worker_cpu_ms_per_product(cold, report["skus"]),
            1.0,
            " ms",
            f"{len(report.get('channels', []))} channels",
        ),
        (
            "Python work per product (bench.floor)",
            _get(report, "floor", "python", "total_cpu_ms_per_product"),
            0.5,
            " ms",
            f"{_get(report, 'floor', 'python', 'products')} products",
        ),
        (
            "PostgreSQL CPU of the sync / its bare COPY CPU",
            s.get("ratio_postgres_cpu_to_copy_cpu"),
            1.3,
            "x",
            f"{s.get('postgres_cpu_cold_s')} s / {s.get('postgres_copy_cpu_s')} s",
        ),
        (
            "warm full sync (no change) / cold, zero rows written",
            s.get("ratio_warm_to_cold"),
            0.15,
            "",
            f"rows {s.get('warm_channel_rows_written')}, pages {s.get('warm_pages_written')}; "
            f"worker CPU warm / cold {s.get('ratio_worker_cpu_warm_to_cold')}",
        ),
        (
            f"delta of {delta.get('renamed_products')} changed SKUs, to storefront",
            s.get("delta_seconds"),
            1.0,
            " s",
            f"{s.get('delta_pages_written')} pages",
        ),
    ]
    for rate, limit in zip(EVENT_RATES, (250.0, 1000.0), strict=True):
        phase = _get(report, "events", f"at_{rate}") or {}
        rows.append(
            (
                f"event -> page visible p99 at {rate} ev/s",
                _get(phase, "event_to_visible", "p99_ms"),
                limit,
                " ms",
                f"{phase.get('events')} events, sent at {phase.get('intake_events_per_s')}/s",
            )
        )
    growth = report.get("growth", {})
    rows += [
        (
            "worker peak RSS, largest / main catalog (flat)",
            growth.get("rss_ratio"),
            1.1,
            "x",
            " vs ".join(
                f"{growth['by_size'][n]['worker_peak_rss_sum_mib']} MiB at {n}"
                for n in growth.get("rss_sizes", [])
            ),
        ),
        (
            "cost growth: worker CPU per product, max / min over sizes (linear)",
            growth.get("cpu_per_product_ratio"),
            1.1,
            "x",
            ", ".join(
                f"{f['worker_cpu_ms_per_product']} ms at {n}"
                for n, f in growth.get("by_size", {}).items()
            ),
        ),
    ]
    table = []
    for figure, value, limit, unit, detail in rows:
        met = None if value is None else value <= limit
        if met and figure.startswith("warm"):
            met = bool(s.get("warm_wrote_nothing"))
        table.append(
            {
                "figure": figure,
                "value": value,
                "target": f"<= {limit}{unit}",
                "met": met,
                "detail": detail if value is not None else "not measured (--skip, --cold-only)",
            }
        )
    return table


def print_table(report: dict[str, Any]) -> None:
    out = sys.stderr
    print("", file=out)
    head = f"{'phase':<10}{'seconds':>10}{'units/s':>10}{'rows written':>14}{'pages':>8}"
    head += f"{'worker RSS MiB':>16}{'problems':>10}"
    print(head, file=out)
    phases = dict(report.get("phases", {}))
    for size, phase in report.get("growth", {}).get("phases", {}).items():
        phases[f"cold@{size}"] = phase
    for name, p in phases.items():
        print(
            f"{name:<10}{p['wall_seconds']:>10.1f}{p['units_per_s']:>10.0f}"
            f"{p['rows_written']['channel_product']['written']:>14}"
            f"{p.get('pages', {}).get('written', 0):>8}"
            f"{p['worker_memory']['max_rss_sum_mib']:>16.0f}{len(p['problems']):>10}",
            file=out,
        )
    for table, c in report.get("bare_copy", {}).items():
        print(
            f"bare COPY {table}: {c['rows']} rows in {c['seconds']['median']:.1f}s "
            f"(range {c['seconds']['min']:.1f}-{c['seconds']['max']:.1f}), "
            f"{c['rows_per_s']} rows/s",
            file=out,
        )
    s = report.get("summary")
    if s:
        print(
            f"cold to storefront {s['cold_seconds']}s (channel runs "
            f"{s['cold_channel_runs_seconds']}s, {s['cold_pages_written']} pages) / bare COPY "
            f"of channel_product + product_page "
            f"{s['bare_copy_storefront_seconds']}s = {s['ratio_cold_to_bare_copy_storefront']}x "
            f"(channel_product alone: {s['ratio_cold_to_bare_copy']}x)",
            file=out,
        )
        print(
            f"worker CPU {s['worker_cpu_ms_per_product_cold']} ms/product (cold), PostgreSQL "
            f"CPU {s['postgres_cpu_cold_s']}s / bare COPY CPU {s['postgres_copy_cpu_s']}s = "
            f"{s['ratio_postgres_cpu_to_copy_cpu']}x",
            file=out,
        )
        print(
            f"warm / cold = {s['ratio_warm_to_cold']}, warm wrote nothing (rows, pages): "
            f"{s['warm_wrote_nothing']}; delta to storefront {s['delta_seconds']}s "
            f"({s['delta_pages_written']} pages)",
            file=out,
        )
        f = report["floor"]
        print(
            f"floor: {f['seconds']}s = {f['ratio_to_bare_copy']}x bare COPY of both (Python "
            f"{f['python']['total_cpu_ms_per_product']} ms/product x {report['skus']} = "
            f"{f['python_cpu_s']}s, COPY of the 3 tables {f['postgres_copy_cpu_s']}s of database "
            f"CPU, over {f['cpus']} cores; stages {f['python']['cpu_ms_per_product']})",
            file=out,
        )
    for name, p in phases.items():
        groups = p["cpu"]["by_group"]
        shown = ", ".join(f"{g} {v['avg_cores']}" for g, v in list(groups.items())[:6])
        read = p.get("ingest", {}).get("read") or 0
        worker = groups.get("worker_children", {}).get("cpu_s")
        # the figure that holds across machines of one speed: CPU per product, all channels
        per_product = (
            f"; worker CPU {worker * 1000 / read:.2f} ms/product" if read and worker else ""
        )
        print(f"{name} CPU (avg cores): {shown}{per_product}", file=out)
    scale = report.get("scale_out")
    if scale:
        print(
            f"\nscale-out, {scale['skus']} SKUs: worker processes, products/s, per process, "
            "PostgreSQL cores, machine busy",
            file=out,
        )
        for c, f in scale["by_concurrency"].items():
            print(
                f"  {c:>2} {f['products_per_s']:>10.1f} "
                f"{f['products_per_s_per_worker_process']:>10.1f} "
                f"{f['postgres_cores']:>8.2f} {f['machine_busy_share']:>8.0%}",
                file=out,
            )
        print(
            f"  PostgreSQL saturates at {scale['saturates_at_concurrency']} worker processes "
            f"(None: not reached); one database core: {scale['database_core_products_per_s']} "
            f"products/s, one worker core {scale['worker_core_products_per_s']}: "
            f"{scale['workers_per_database_core']} worker processes per database core "
            f"({scale['workers_per_database_core_at_measured_throughput']} at the products/s "
            "measured)",
            file=out,
        )
    print(f"\n{'figure':<76}{'value':>10}  {'target':<14}{'':<9}detail", file=out)
    for row in report.get("targets", []):
        value = "-" if row["value"] is None else row["value"]
        met = {True: "met", False: "not met", None: "skipped"}[row["met"]]
        print(
            f"{row['figure']:<76}{value:>10}  {row['target']:<14}{met:<9}{row['detail']}",
            file=out,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delta", type=int, default=400, help="products renamed for the delta")
    parser.add_argument(
        "--growth",
        type=_sizes,
        default=[10_000, 200_000],
        metavar="N,M",
        help="catalog sizes also synced cold (own PIM, database, worker) for the cost growth "
        "and the workers' memory beside --skus",
    )
    parser.add_argument(
        "--scale-skus", type=int, default=10_000, help="catalog size of the scale-out runs"
    )
    parser.add_argument(
        "--scale",
        type=_sizes,
        default=[1, 2, 4],
        metavar="C,C",
        help="worker processes of the scale-out runs",
    )
    parser.add_argument("--events-at-200", type=int, default=2000, metavar="N")
    parser.add_argument("--events-at-1000", type=int, default=3000, metavar="N")
    parser.add_argument(
        "--event-skus", type=int, default=1000, help="SKUs the events go to (spread out)"
    )
    parser.add_argument(
        "--coalesce", type=float, default=0.25, help="PIM event coalescing (s), as bench.events"
    )
    parser.add_argument(
        "--skip",
        type=lambda v: set(filter(None, v.split(","))),
        default=set(),
        metavar="PARTS",
        help=f"comma-separated, of {','.join(PARTS)}",
    )
    parser.add_argument("--quick", action="store_true", help=f"--skip {','.join(PARTS)}")
    parser.add_argument("--copy-repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--redis-db", type=int, default=12, help="preferred Redis database")
    parser.add_argument(
        "--analyze-every",
        type=float,
        default=0.0,
        metavar="S",
        help="run ANALYZE every S seconds during phases (autoanalyze where autovacuum is off)",
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold full sync (no COPY, warm, delta)"
    )
    parser.add_argument(
        "--floor-products",
        type=int,
        default=5000,
        metavar="N",
        help="products the floor's Python work is measured on (bench.floor)",
    )
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.skip |= set(PARTS)
    if args.skip - set(PARTS):
        parser.error(f"--skip: unknown {sorted(args.skip - set(PARTS))}, of {','.join(PARTS)}")

    run_bench(run, args, "pimsync-bench-logs-", print_table)


# what --skip and --quick leave out
PARTS = ("events", "growth", "scale")


def _sizes(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


if __name__ == "__main__":
    main()
