"""All SQL of the channel catalog (``channel_product``): set-based, keyed on (channel, sku)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from app.channels.models import ORPHAN, REMOVED, ChannelProduct
from app.db import among, dialect_insert, is_postgres
from app.pgbulk import execute_many
from app.pim.models import PimProduct


@dataclass(slots=True)
class RowState:
    input_hash: str
    status: str
    enabled: bool
    version: int
    source_seq: int


@dataclass(slots=True)
class ChannelRow:
    channel: str
    sku: str
    doc: dict[str, Any] | None
    contract_version: str | None
    input_hash: str
    status: str
    enabled: bool
    disabled_reason: str | None
    detail: dict[str, Any] | None
    completeness: int | None
    sync_run_id: uuid.UUID | None
    synced_at: datetime
    source_seq: int


@dataclass(slots=True)
class RowChange:
    """A committed change of one row: what the catalog domain event carries."""

    channel: str
    sku: str
    version: int
    enabled: bool
    status: str


def load_states(
    session: Session, channels: Sequence[str], skus: Sequence[str]
) -> dict[tuple[str, str], RowState]:
    """The rows of ``skus`` in each of ``channels``, keyed (channel, sku): one statement."""
    if not skus or not channels:
        return {}
    t = ChannelProduct
    rows = session.execute(
        select(t.channel, t.sku, t.input_hash, t.status, t.enabled, t.version, t.source_seq).where(
            among(session, t.channel, channels), among(session, t.sku, skus)
        )
    ).all()
    return {
        (r.channel, r.sku): RowState(r.input_hash, r.status, r.enabled, r.version, r.source_seq)
        for r in rows
    }


_UPSERT = """
INSERT INTO channel_product AS t (channel, sku, doc, contract_version, input_hash, status,
    enabled, disabled_reason, detail, completeness, sync_run_id, synced_at, source_seq, version)
VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, 1)
ON CONFLICT (channel, sku) DO UPDATE SET
    doc = COALESCE(excluded.doc, t.doc),
    contract_version = COALESCE(excluded.contract_version, t.contract_version),
    input_hash = excluded.input_hash, status = excluded.status, enabled = excluded.enabled,
    disabled_reason = excluded.disabled_reason, detail = excluded.detail,
    completeness = excluded.completeness, sync_run_id = excluded.sync_run_id,
    synced_at = excluded.synced_at, source_seq = excluded.source_seq, version = t.version + 1
WHERE excluded.source_seq >= t.source_seq
  AND (t.input_hash <> excluded.input_hash OR t.status <> excluded.status)
RETURNING t.channel, t.sku, t.version, t.enabled, t.status
"""


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def upsert_rows(session: Session, rows: Sequence[ChannelRow]) -> list[RowChange]:
    """Insert or update rows in one statement; returns the rows that actually changed.

    A row is rewritten only when its input hash or status differs, and never by a unit computed
    from an older product than the row holds (``source_seq``): two workers racing on one SKU
    leave the newer result. A disabled row keeps its last published document. On PostgreSQL
    the statements are pipelined (see ``app.pgbulk``).
    """
    if not rows:
        return []
    rows = list({(r.channel, r.sku): r for r in rows}.values())  # one row per key
    if is_postgres(session):
        result = execute_many(
            session,
            _UPSERT,
            [
                (
                    r.channel,
                    r.sku,
                    _json_text(r.doc),
                    r.contract_version,
                    r.input_hash,
                    r.status,
                    r.enabled,
                    r.disabled_reason,
                    _json_text(r.detail),
                    r.completeness,
                    r.sync_run_id,
                    r.synced_at,
                    r.source_seq,
                )
                for r in rows
            ],
        )
        return [RowChange(c, s, int(v), bool(e), st) for c, s, v, e, st in result]
    insert = dialect_insert(session)
    stmt = insert(ChannelProduct)
    t = ChannelProduct.__table__
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.channel, t.c.sku],
        set_={
            "doc": func.coalesce(ex.doc, t.c.doc),
            "contract_version": func.coalesce(ex.contract_version, t.c.contract_version),
            "input_hash": ex.input_hash,
            "status": ex.status,
            "enabled": ex.enabled,
            "disabled_reason": ex.disabled_reason,
            "detail": ex.detail,
            "completeness": ex.completeness,
            "sync_run_id": ex.sync_run_id,
            "synced_at": ex.synced_at,
            "source_seq": ex.source_seq,
            "version": t.c.version + 1,
        },
        where=and_(
            ex.source_seq >= t.c.source_seq,
            or_(t.c.input_hash != ex.input_hash, t.c.status != ex.status),
        ),
    ).returning(t.c.channel, t.c.sku, t.c.version, t.c.enabled, t.c.status)
    params = [
        {
            "channel": r.channel,
            "sku": r.sku,
            "doc": r.doc,
            "contract_version": r.contract_version,
            "input_hash": r.input_hash,
            "status": r.status,
            "enabled": r.enabled,
            "disabled_reason": r.disabled_reason,
            "detail": r.detail,
            "completeness": r.completeness,
            "sync_run_id": r.sync_run_id,
            "synced_at": r.synced_at,
            "source_seq": r.source_seq,
            "version": 1,
        }
        for r in rows
    ]
    returned = session.execute(stmt, params)
    return [RowChange(c, s, int(v), bool(e), st) for c, s, v, e, st in returned.all()]


def disable_rows_not_in(
    session: Session, channel: str, run_id: uuid.UUID, run_started_at: datetime, now: datetime
) -> list[RowChange]:
    """Disable, in one statement, the channel's rows whose product the run's PIM export did not
    contain (orphans). Never deletes.

    "Contained" is read from the mirror: the full sync marks every product it reads there
    (``last_seen_at``/``last_seen_run``) before any of its channels finalise, whether the
    product was then published, skipped, filtered or failed. Comparing the seen time with the
    run's start (not the run id) keeps two overlapping full runs of different channels from
    blinding each other: a product seen by either since this run began exists in the PIM.
    """
    cp = cast(Table, ChannelProduct.__table__)
    p = PimProduct.__table__
    seen = exists().where(
        p.c.identifier == cp.c.sku,
        p.c.last_seen_at >= run_started_at,
        p.c.removed_at.is_(None),
    )
    stmt = (
        update(cp)
        .where(cp.c.channel == channel, cp.c.status.notin_([ORPHAN, REMOVED]), ~seen)
        .values(
            enabled=False,
            status=ORPHAN,
            disabled_reason=ORPHAN,
            input_hash="",  # a product that comes back is evaluated again
            sync_run_id=run_id,
            synced_at=now,
            version=cp.c.version + 1,
        )
        .returning(cp.c.channel, cp.c.sku, cp.c.version, cp.c.enabled, cp.c.status)
    )
    return [RowChange(c, s, int(v), bool(e), st) for c, s, v, e, st in session.execute(stmt).all()]


def disable_skus(
    session: Session,
    skus: Sequence[str],
    status: str,
    reason: str,
    run_id: uuid.UUID | None,
    now: datetime,
    channels: Sequence[str] | None = None,
) -> list[RowChange]:
    """Disable these SKUs (in ``channels``, or all) with a reason, in one statement; rows
    stay, docs stay."""
    if not skus:
        return []
    cp = cast(Table, ChannelProduct.__table__)
    cond = [among(session, cp.c.sku, skus), or_(cp.c.status != status, cp.c.enabled.is_(True))]
    if channels is not None:
        cond.append(among(session, cp.c.channel, channels))
    stmt = (
        update(cp)
        .where(*cond)
        .values(
            enabled=False,
            status=status,
            disabled_reason=reason,
            sync_run_id=run_id,
            synced_at=now,
            version=cp.c.version + 1,
            # Forget the input hash: when the product comes back, it must be re-evaluated.
            input_hash="",
        )
        .returning(cp.c.channel, cp.c.sku, cp.c.version, cp.c.enabled, cp.c.status)
    )
    return [RowChange(c, s, int(v), bool(e), st) for c, s, v, e, st in session.execute(stmt).all()]


def status_counts(session: Session, channel: str | None = None) -> dict[str, dict[str, int]]:
    t = ChannelProduct
    q = select(t.channel, t.status, func.count()).group_by(t.channel, t.status)
    if channel is not None:
        q = q.where(t.channel == channel)
    out: dict[str, dict[str, int]] = {}
    for ch, status, n in session.execute(q).all():
        out.setdefault(ch, {})[status] = int(n)
    return out


def get_row(session: Session, channel: str, sku: str) -> ChannelProduct | None:
    return session.get(ChannelProduct, (channel, sku))


# (channel, sku, version, doc, enabled, status): what a product page's catalog part is built from
CatalogRow = tuple[str, str, int, dict[str, Any] | None, bool, str]


def catalog_rows(session: Session, changes: Mapping[str, Sequence[str]]) -> list[CatalogRow]:
    """The current rows of ``changes`` ({channel: skus}), read in one statement."""
    cp = ChannelProduct
    wanted = [and_(cp.channel == ch, among(session, cp.sku, skus)) for ch, skus in changes.items()]
    if not wanted:
        return []
    rows = session.execute(
        select(cp.channel, cp.sku, cp.version, cp.doc, cp.enabled, cp.status).where(or_(*wanted))
    ).all()
    return [(r.channel, r.sku, int(r.version), r.doc, r.enabled, r.status) for r in rows]


def catalog_rows_after(
    session: Session, last: tuple[str, str] | None, limit: int
) -> list[CatalogRow]:
    """Every row in (channel, sku) order after ``last``, ``limit`` at a time (keyset)."""
    cp = ChannelProduct
    q = select(cp.channel, cp.sku, cp.version, cp.doc, cp.enabled, cp.status)
    if last is not None:
        q = q.where((cp.channel > last[0]) | ((cp.channel == last[0]) & (cp.sku > last[1])))
    rows = session.execute(q.order_by(cp.channel, cp.sku).limit(limit)).all()
    return [(r.channel, r.sku, int(r.version), r.doc, r.enabled, r.status) for r in rows]
