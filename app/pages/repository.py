"""All SQL of the Product Page Service. Applying an event is one statement guarded by the
stored version of its domain: out-of-order, duplicate and replayed events are no-ops, and
concurrent writers of different domains never overwrite each other's columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Integer, Row, and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from app.channels.models import ChannelProduct
from app.db import affected, dialect_insert
from app.pages.models import DOMAINS, ProductPage


@dataclass(slots=True)
class Projection:
    """One domain's new state for one page."""

    channel: str
    sku: str
    version: int
    payload: dict[str, Any] | None
    enabled: bool | None = None  # catalog only
    status: str | None = None  # catalog only


@cache
def _apply_statement(insert: Any, domain: str, repair: bool) -> Any:
    """The guarded upsert of one domain's columns (built once per dialect, domain and mode;
    Core, not the ORM's bulk path, which costs more than the statement on this hot path)."""
    t = ProductPage.__table__
    stmt = insert(t)
    ex = stmt.excluded
    stored_version = t.c[f"{domain}_version"]
    newer = stored_version < ex[f"{domain}_version"]
    guard = newer
    if repair:
        same = stored_version == ex[f"{domain}_version"]
        differs = t.c[domain].is_distinct_from(ex[domain])
        if domain == "catalog":
            differs = or_(
                differs,
                t.c.catalog_enabled != ex.catalog_enabled,
                t.c.catalog_status.is_distinct_from(ex.catalog_status),
            )
        guard = or_(newer, and_(same, differs))
    updates: dict[str, Any] = {
        domain: ex[domain],
        f"{domain}_version": ex[f"{domain}_version"],
        "updated_at": ex.updated_at,
    }
    if domain == "catalog":
        updates.update(catalog_enabled=ex.catalog_enabled, catalog_status=ex.catalog_status)
    return stmt.on_conflict_do_update(
        index_elements=[t.c.channel, t.c.sku], set_=updates, where=guard
    ).returning(t.c.channel, t.c.sku)


def apply_projections(
    session: Session,
    domain: str,
    rows: Sequence[Projection],
    now: datetime,
    *,
    repair: bool = False,
) -> list[tuple[str, str]]:
    """Write projections where they are newer than what is stored; returns the pages written.

    With ``repair`` (reconciliation), a projection of the *same* version whose content
    differs is written too: same version, same truth, so a corrupted document is corrected,
    while a newer event that arrived meanwhile still wins.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}")
    if not rows:
        return []
    # one row per page, the newest version
    best: dict[tuple[str, str], Projection] = {}
    for r in rows:
        key = (r.channel, r.sku)
        if key not in best or r.version > best[key].version:
            best[key] = r
    stmt = _apply_statement(dialect_insert(session), domain, repair)
    params = []
    for r in sorted(best.values(), key=lambda r: (r.channel, r.sku)):  # one lock order
        row = {
            "channel": r.channel,
            "sku": r.sku,
            "updated_at": now,
            "catalog_version": 0,
            "catalog_enabled": False,
            "pricing_version": 0,
            "inventory_version": 0,
            "media_version": 0,
        }
        row[domain] = r.payload
        row[f"{domain}_version"] = r.version
        if domain == "catalog":
            row["catalog_enabled"] = bool(r.enabled)
            row["catalog_status"] = r.status
        params.append(row)
    return [(c, s) for c, s in session.execute(stmt, params).all()]


# The catalog projection of rows this transaction just wrote, done by the database: the rows'
# documents are copied from channel_product as they are stored (a disabled row's last published
# document included), never decoded into Python and encoded again. The same guard as
# ``apply_projections``: a page takes the row only when it holds an older catalog version, so
# a redelivered batch, a catalog event for the same rows or a newer row written meanwhile are
# no-ops. Pages are locked in (channel, sku) order, like ``apply_projections``.
_PROJECT_CATALOG = text(
    """
    INSERT INTO product_page AS pp (channel, sku, catalog, catalog_version, catalog_enabled,
        catalog_status, pricing_version, inventory_version, media_version, updated_at)
    SELECT cp.channel, cp.sku, cp.doc, cp.version, cp.enabled, cp.status, 0, 0, 0, :now
    FROM channel_product cp
    JOIN unnest(CAST(:channels AS varchar[]), CAST(:skus AS varchar[])) AS k(channel, sku)
        ON cp.channel = k.channel AND cp.sku = k.sku
    ORDER BY cp.channel, cp.sku
    ON CONFLICT (channel, sku) DO UPDATE SET
        catalog = excluded.catalog,
        catalog_version = excluded.catalog_version,
        catalog_enabled = excluded.catalog_enabled,
        catalog_status = excluded.catalog_status,
        updated_at = excluded.updated_at
    WHERE pp.catalog_version < excluded.catalog_version
    RETURNING pp.channel, pp.sku
    """
)


def project_catalog_rows(
    session: Session, keys: Sequence[tuple[str, str]], now: datetime
) -> list[tuple[str, str]]:
    """Project the current channel_product rows of ``keys`` ((channel, sku)) onto their pages
    in one statement inside the caller's transaction (PostgreSQL); returns the pages written."""
    if not keys:
        return []
    rows = session.execute(
        _PROJECT_CATALOG,
        {"channels": [c for c, _ in keys], "skus": [s for _, s in keys], "now": now},
    ).all()
    return [(c, s) for c, s in rows]


def get_page(conn: Connection | Session, channel: str, sku: str) -> Row[Any] | None:
    """The storefront's read: one primary-key lookup of one row (a plain row, no ORM
    identity map on the hot path; its columns read like a ``ProductPage``'s attributes)."""
    t = ProductPage.__table__
    return conn.execute(select(t).where(t.c.channel == channel, t.c.sku == sku)).first()


def list_pages(
    conn: Connection | Session, channel: str, after: str | None, limit: int
) -> list[Row[Any]]:
    t = ProductPage.__table__
    q = select(t).where(t.c.channel == channel, t.c.catalog_version > 0)
    if after is not None:
        q = q.where(t.c.sku > after)
    return list(conn.execute(q.order_by(t.c.sku).limit(limit)).all())


def readiness_counts(session: Session) -> dict[str, dict[str, int]]:
    """Per channel: pages, and how many lack each domain (the dashboard's readiness view)."""
    p = ProductPage
    rows = session.execute(
        select(
            p.channel,
            func.count(),
            func.sum((p.catalog_version == 0).cast(Integer)),
            func.sum((p.pricing_version == 0).cast(Integer)),
            func.sum((p.inventory_version == 0).cast(Integer)),
            func.sum((p.media_version == 0).cast(Integer)),
        ).group_by(p.channel)
    ).all()
    return {
        ch: {
            "pages": int(n or 0),
            "no_catalog": int(a or 0),
            "no_pricing": int(b or 0),
            "no_inventory": int(c or 0),
            "no_media": int(d or 0),
        }
        for ch, n, a, b, c, d in rows
    }


def reset_version(
    session: Session, domain: str, sku: str, channel: str | None, now: datetime
) -> int:
    """Forget a domain's version (and projection) on a SKU's pages (one channel, or all), so
    the next event or reconciliation from the system of record writes it again: the way out
    of a version that ran ahead of its source. Returns the pages reset."""
    if domain not in DOMAINS or domain == "catalog":
        raise ValueError(f"reset one of pricing, inventory, media, not {domain!r}")
    stmt = update(ProductPage).where(ProductPage.sku == sku)
    if channel is not None:
        stmt = stmt.where(ProductPage.channel == channel)
    values = {f"{domain}_version": 0, domain: None, "updated_at": now}
    return affected(session, stmt.values(**values))


def projection_lag(session: Session, now: datetime) -> dict[str, tuple[int, float]]:
    """Per channel: catalog rows whose page does not show their version yet, and the age in
    seconds of the oldest of them (a catalog event not yet applied, or lost). Channels with
    nothing behind are left out."""
    cp, p = ChannelProduct, ProductPage
    rows = session.execute(
        select(cp.channel, func.count(), func.min(cp.synced_at))
        .select_from(cp)
        .outerjoin(p, and_(p.channel == cp.channel, p.sku == cp.sku))
        .where(cp.version > func.coalesce(p.catalog_version, 0))
        .group_by(cp.channel)
    ).all()
    return {
        channel: (int(n), max(0.0, (now - oldest).total_seconds()))
        for channel, n, oldest in rows
        if n
    }
