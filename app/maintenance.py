"""Keeping PostgreSQL's planner statistics current on the tables pimsync bulk-loads.

A first full sync takes ``pim_product`` and ``channel_product`` from empty to hundreds of
thousands of rows in minutes. If the server's autovacuum is off (it is on some CI and
managed set-ups) or simply has not come round yet, the planner still believes the tables
are empty and answers every lookup by primary key with a sequential scan: minutes instead
of milliseconds. So pimsync analyses a table itself once enough of it has changed since its
last analysis, from the work that changes it (ingest, publishing) and from the sweeper.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import is_postgres
from app.logging import get_logger

log = get_logger("pimsync.maintenance")

BULK_TABLES = ("pim_product", "channel_product", "product_page", "sync_batch", "dead_letter")
# Analyse when this share of the table changed since the last analysis (at least MIN_ROWS).
# The sweeper uses autovacuum's default (10 %); the hot paths (a full sync filling the
# tables) wait until a table doubled: the planner needs the order of magnitude, and a
# 200,000-row load then costs ~9 analyses, not ~50.
CHANGED_SHARE = 0.10
HOT_PATH_SHARE = 1.0
MIN_ROWS = 500


def analyze_if_stale(
    session: Session, tables: Sequence[str] = BULK_TABLES, share: float = CHANGED_SHARE
) -> list[str]:
    """ANALYZE the tables that changed enough since their last analysis; returns them."""
    if not is_postgres(session):
        return []
    rows = session.execute(
        text(
            "SELECT relname, n_live_tup, n_mod_since_analyze, "
            "last_analyze IS NULL AND last_autoanalyze IS NULL AS never "
            "FROM pg_stat_user_tables WHERE relname = ANY(:tables)"
        ),
        {"tables": list(tables)},
    ).all()
    done = []
    for name, live, changed, never in rows:
        if changed >= MIN_ROWS and (never or changed >= share * max(live - changed, 1)):
            # ANALYZE samples the table (30,000 rows by default) and takes a lock that
            # neither reads nor writes wait for.
            session.execute(text(f'ANALYZE "{name}"'))
            done.append(name)
    if done:
        log.info("tables_analyzed", tables=done)
    return done
