"""The benchmarks' catalogs: a generated catalog on disk (made once, reused), and the bundled
channels' runtimes over it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import orjson

from app.channels.config import load_channels
from app.config import SAMPLE_DIR
from app.dev import generator
from app.dev.generator import GENERATOR_VERSION, write_generated_catalog
from app.mapping.contract import ContractStore
from app.ownership import OwnershipTable
from app.pim.catalog import definitions_from_dict
from app.sync.units import ChannelRuntime
from bench.harness.report import say

# where generated catalogs are kept (a test points it at a temporary folder)
CACHE = Path(
    os.environ.get("PIMSYNC_BENCH_CACHE") or Path(__file__).resolve().parents[1] / ".cache"
)


def ensure_catalog(count: int, seed: int) -> Path:
    """The generated catalog folder for (count, seed), written once and reused."""
    path = CACHE / f"catalog-{count}-{seed}-v{GENERATOR_VERSION}"
    if (path / "products.jsonl").exists():
        say(f"catalog: reusing {path}")
        return path
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    say(f"catalog: generating {count} products (seed {seed}) into {path} (untimed)")
    started = time.perf_counter()
    write_generated_catalog(tmp, count, seed)
    tmp.rename(path)  # complete or absent, never half-written
    say(f"catalog: generated in {time.perf_counter() - started:.0f}s")
    return path


# --- services -----------------------------------------------------------------------------


def sample_runtimes(definitions_file: Path | None = None) -> list[Any]:
    """The bundled channels' runtimes (``ChannelRuntime``) over a generated catalog's
    definitions: ``definitions_file`` (its ``catalog.json``), else the generator's own."""
    if definitions_file is not None and definitions_file.exists():
        defs = definitions_from_dict(orjson.loads(definitions_file.read_bytes()))
    else:
        defs = generator.generated_definitions()
    channels = load_channels(SAMPLE_DIR / "channels.yaml")
    store = ContractStore.load(SAMPLE_DIR / "contracts")
    return [
        ChannelRuntime(
            ch, store.get(ch.contract.id, ch.contract.version), defs, OwnershipTable(), "bench"
        )
        for ch in channels.values()
        if ch.contract
    ]
