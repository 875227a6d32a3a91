"""Map N generated products (~200 attributes each) for the 4 sample channels and bulk-upsert
the rows into channel_product; time a bare PostgreSQL COPY of the very same rows.

    python -m bench.mapping_upsert [--products 50000]

Prints products/s for mapping (4 channels each), rows/s for the upsert and for the bare COPY,
and their ratio. Generation and parsing are timed apart from mapping.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import create_engine, text

from app.channels.repository import ChannelRow, upsert_rows
from app.config import reset_settings_cache
from app.db import dispose_engines, session_scope
from app.dev import generator
from app.pim.product import content_hash, parse_product
from app.sync.units import evaluate
from bench.harness.catalog import sample_runtimes
from bench.harness.report import Timer, machine
from bench.harness.stack import checkpoint, scratch_database

CHUNK = 500  # products per mapping chunk = the engine's publish batch size


def _copy_line(row: ChannelRow) -> bytes:
    """One row in COPY text format (the same columns the upsert writes)."""

    def esc(value: object) -> str:
        if value is None:
            return "\\N"
        s = value if isinstance(value, str) else str(value)
        return (
            s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        )

    doc = orjson.dumps(row.doc).decode() if row.doc is not None else None
    detail = orjson.dumps(row.detail).decode() if row.detail is not None else None
    fields = [
        row.channel,
        row.sku,
        doc,
        row.contract_version,
        row.input_hash,
        row.status,
        "t" if row.enabled else "f",
        row.disabled_reason,
        detail,
        None if row.completeness is None else str(row.completeness),
        None if row.sync_run_id is None else str(row.sync_run_id),
        row.synced_at.isoformat(),
        str(row.source_seq),
        "1",
    ]
    return ("\t".join(esc(f) for f in fields) + "\n").encode()


COLUMNS = (
    "channel, sku, doc, contract_version, input_hash, status, enabled, disabled_reason, "
    "detail, completeness, sync_run_id, synced_at, source_seq, version"
)


def run(products: int) -> dict[str, object]:
    timer = Timer()
    runtimes = sample_runtimes()
    run_id = uuid.uuid4()
    now = datetime.now(UTC)
    rows_written = 0
    copy_file = Path(tempfile.mkstemp(prefix="pimsync-bench-", suffix=".copy")[1])
    with scratch_database() as url:
        os.environ["PIMSYNC_DATABASE_URL"] = url

        reset_settings_cache()
        dispose_engines()
        with copy_file.open("wb") as out:
            for start in range(0, products, CHUNK):
                with timer("generate"):
                    raws = list(generator.iter_products(min(start + CHUNK, products), 7, start))
                with timer("parse"):
                    parsed = [parse_product(r) for r in raws]
                    hashes = [content_hash(p.raw) for p in parsed]
                with timer("map"):
                    rows = []
                    for rt in runtimes:
                        for p, h in zip(parsed, hashes, strict=True):
                            o = evaluate(p, rt)
                            rows.append(
                                ChannelRow(
                                    channel=rt.channel.code,
                                    sku=p.identifier,
                                    doc=o.doc,
                                    contract_version=rt.contract.key if o.doc else None,
                                    input_hash=rt.input_hash(h),
                                    status=o.status,
                                    enabled=o.enabled,
                                    disabled_reason=None if o.enabled else o.status,
                                    detail=o.detail,
                                    completeness=o.completeness,
                                    sync_run_id=run_id,
                                    synced_at=now,
                                    source_seq=1,
                                )
                            )
                with timer("serialize_copy_rows"):
                    out.writelines(_copy_line(r) for r in rows)
                with timer("upsert"):
                    for i in range(0, len(rows), CHUNK):
                        with session_scope() as s:
                            upsert_rows(s, rows[i : i + CHUNK])
                rows_written += len(rows)
        checkpoint(url)
        # The bare COPY: the same rows into an identical empty table (same indexes, same
        # TOAST compression), one COPY, nothing else.
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bare_copy (LIKE channel_product INCLUDING ALL)"))
            comp = conn.execute(
                text(
                    "SELECT attcompression FROM pg_attribute WHERE attrelid = "
                    "'channel_product'::regclass AND attname = 'doc'"
                )
            ).scalar()
            if comp == "l":
                conn.execute(text("ALTER TABLE bare_copy ALTER COLUMN doc SET COMPRESSION lz4"))
        raw = engine.raw_connection()
        try:
            with timer("bare_copy"):
                cur = raw.cursor()
                with (
                    cur.copy(f"COPY bare_copy ({COLUMNS}) FROM STDIN") as cp,
                    copy_file.open("rb") as fh,
                ):
                    while chunk := fh.read(1 << 20):
                        cp.write(chunk)
                raw.commit()
        finally:
            raw.close()
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM channel_product")).scalar()
            copied = conn.execute(text("SELECT count(*) FROM bare_copy")).scalar()
            avg_doc = conn.execute(
                text(
                    "SELECT avg(octet_length(doc::text)) FROM channel_product WHERE doc IS NOT NULL"
                )
            ).scalar()
        engine.dispose()
    copy_file.unlink()
    t = timer.totals
    return {
        "machine": machine(),
        "products": products,
        "channels": len(runtimes),
        "rows": rows_written,
        "rows_stored": stored,
        "rows_copied": copied,
        "avg_doc_json_bytes": round(float(avg_doc or 0)),
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "parse_products_per_s": round(products / t["parse"]),
        "map_products_per_s": round(products / t["map"]),
        "map_units_per_s": round(rows_written / t["map"]),
        "upsert_rows_per_s": round(rows_written / t["upsert"]),
        "bare_copy_rows_per_s": round(rows_written / t["bare_copy"]),
        "upsert_vs_copy_time_ratio": round(t["upsert"] / t["bare_copy"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=50_000)
    args = parser.parse_args()
    print(json.dumps(run(args.products), indent=2))


if __name__ == "__main__":
    main()
