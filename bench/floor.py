"""The least CPU a cold full sync's per-product Python work takes, with nothing around it.

    python -m bench.floor [--products 5000] [--catalog bench/.cache/catalog-50000-7-v...]

The stages every product of a cold full sync goes through in a worker, run back to back in
this one process on products read from a generated catalog file: decode the PIM's JSON,
validate it (``parse_product``), hash it (``content_hash``), encode it for the mirror, decide
and map it for each channel (``evaluate``: filters, completeness, mapping contract), encode
the channel documents and free it all. No HTTP, no Celery, no SQL, the collector paused as in the
workers. Reported as CPU milliseconds per product, per stage.

``bench.full_sync`` runs it after its bare COPYs and adds the PostgreSQL side (the CPU the
database backend spent in those COPYs) to give the *floor*: how long the cold sync would take
if both cores did nothing but this Python work and the database nothing but a COPY of both
tables, perfectly in parallel. When that floor is above a target, no orchestration change can
reach the target; only less work per product can.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from app.gcpause import collector_paused
from app.pim.product import content_hash, parse_product
from app.sync.units import ChannelRuntime, evaluate
from bench.harness.catalog import ensure_catalog, sample_runtimes

CHUNK = 500  # products per step: the engine's publish batch size
STAGES = (
    "decode",
    "validate",
    "hash",
    "encode_mirror",
    "evaluate_channels",
    "encode_docs",
    "free",
)


def _lines(path: Path, limit: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    taken = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            chunk.append(line)
            taken += 1
            if len(chunk) == CHUNK or taken == limit:
                yield chunk
                chunk = []
            if taken == limit:
                return
    if chunk:
        yield chunk


def measure(
    products_file: Path,
    runtimes: list[ChannelRuntime],
    identifier_attribute: str = "sku",
    limit: int = 5000,
) -> dict[str, Any]:
    """CPU seconds per stage over the first ``limit`` products of a JSON-lines file."""
    cpu = dict.fromkeys(STAGES, 0.0)
    counted = units = 0

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        started = time.process_time()
        yield
        cpu[name] += time.process_time() - started

    for lines in _lines(products_file, limit):
        with collector_paused():
            with stage("decode"):
                items = [orjson.loads(x) for x in lines]
            with stage("validate"):
                parsed = [parse_product(i, identifier_attribute) for i in items]
            with stage("hash"):
                for p in parsed:
                    content_hash(p.raw)
            with stage("encode_mirror"):
                for p in parsed:
                    orjson.dumps(p.raw)
            with stage("evaluate_channels"):
                outcomes = [evaluate(p, rt) for rt in runtimes for p in parsed]
            with stage("encode_docs"):
                for o in outcomes:
                    orjson.dumps(o.doc)
                    orjson.dumps(o.detail)
            counted += len(lines)
            units += len(outcomes)
            with stage("free"):  # a worker frees what it decoded too
                del items, parsed, outcomes
        # not measured: what only the cyclic collector frees (little; the workers pay it too,
        # so the floor is, if anything, a little low)
        gc.collect()
    if not counted:
        raise ValueError(f"{products_file} holds no product")
    per_product = {k: round(v * 1000 / counted, 3) for k, v in cpu.items()}
    return {
        "products": counted,
        "units": units,
        "channels": len(runtimes),
        "cpu_ms_per_product": per_product,
        "total_cpu_ms_per_product": round(sum(cpu.values()) * 1000 / counted, 3),
    }


def floor(
    python: dict[str, Any], skus: int, copy_backend_cpu_s: float, copy_wall_s: float, cpus: int
) -> dict[str, Any]:
    """The cold sync's floor on ``cpus`` cores: all products' Python work plus the database's
    COPY CPU, spread perfectly over the cores; and its ratio to the bare COPY's wall time."""
    python_s = python["total_cpu_ms_per_product"] * skus / 1000
    seconds = (python_s + copy_backend_cpu_s) / cpus
    return {
        "python_cpu_s": round(python_s, 1),
        "postgres_copy_cpu_s": round(copy_backend_cpu_s, 1),
        "cpus": cpus,
        "seconds": round(seconds, 1),
        "ratio_to_bare_copy": round(seconds / copy_wall_s, 2) if copy_wall_s else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--catalog", type=Path, help="a generated catalog folder")
    args = parser.parse_args()
    if args.products < 1:
        parser.error("--products must be at least 1")
    catalog = args.catalog or ensure_catalog(max(args.products, 1000), 7)
    products = catalog / "products.jsonl"
    if not products.exists():
        parser.error(f"{products} does not exist (generate one with python -m bench.full_sync)")
    result = measure(products, sample_runtimes(catalog / "catalog.json"), limit=args.products)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
