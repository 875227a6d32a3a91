"""All SQL of the PIM events: event ids recorded once, each product's pending work added,
claimed, finished or handed back, and what the sweeper and the intake's back-pressure read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, Table, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.db import affected, among, dialect_insert
from app.pim.models import PimProduct
from app.sync.pim_events.models import PendingSku, WebhookEvent


@dataclass(slots=True)
class Work:
    """A product's pending work, as a task claimed it."""

    key: str
    action: str
    product: dict[str, Any] | None
    events: int  # as claimed: the row goes only if no event arrived since


@cache
def _record_events(insert: Any) -> Any:
    """Record event ids, returning those not seen before (built once per dialect)."""
    return (
        insert(WebhookEvent.__table__)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.__table__.c.event_id)
    )


@cache
def _add_pending_statement(insert: Any) -> Any:
    """Add to a product's pending row, the newest state winning (built once per dialect)."""
    t = PendingSku.__table__
    stmt = insert(t)
    ex = stmt.excluded
    newer = or_(ex.event_time.is_(None), t.c.event_time.is_(None), ex.event_time >= t.c.event_time)
    return stmt.on_conflict_do_update(
        index_elements=[t.c.key],
        set_={
            "events": t.c.events + 1,
            "action": case((newer, ex.action), else_=t.c.action),
            "product": case((newer, ex.product), else_=t.c.product),
            "event_time": case((newer, ex.event_time), else_=t.c.event_time),
        },
    ).returning(t.c.key, t.c.events)


def record_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Record event ids ({event_id, kind, subject, received_at}); returns those not seen
    before. Parameters apart from the statement (executemany): its compiled form is cached,
    where a multi-row VALUES is compiled again for every delivery."""
    stmt = _record_events(dialect_insert(session))
    return set(session.execute(stmt, list(rows)).scalars())


def add_pending(session: Session, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Add each product's work to its pending row, the newest state winning inside the
    statement; returns the keys whose row this statement inserted (a row counts 1 event
    only then)."""
    stmt = _add_pending_statement(dialect_insert(session))
    return sorted(key for key, events in session.execute(stmt, list(rows)).all() if events == 1)


def due_unclaimed(key: str, due: datetime, limit: int) -> Select[tuple[str]]:
    """Up to ``limit`` other pending products due by ``due``, oldest first, skipping rows
    another task holds (the index on unclaimed rows' age serves it)."""
    t = cast(Table, PendingSku.__table__)
    return (
        select(t.c.key)
        .where(t.c.key != key, t.c.claimed_at.is_(None), t.c.first_event_at <= due)
        .order_by(t.c.first_event_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def claim(session: Session, key: str, due: datetime, extra: int, now: datetime) -> list[Work]:
    """Claim this key's pending row, then up to ``extra`` other due, unclaimed ones. The
    others are taken with SKIP LOCKED: rows another task holds are skipped, never waited for,
    so two tasks claiming at once cannot deadlock (each waits at most for its own key)."""
    t = cast(Table, PendingSku.__table__)
    returning = (t.c.key, t.c.action, t.c.product, t.c.events)
    stmt = update(t).values(claimed_at=now, claimed_events=t.c.events).returning(*returning)
    rows = list(session.execute(stmt.where(t.c.key == key)).all())
    if extra > 0:
        others = due_unclaimed(key, due, extra)
        rows += session.execute(stmt.where(t.c.key.in_(others.scalar_subquery()))).all()
    work = [Work(r.key, r.action, r.product, int(r.events)) for r in rows]
    return sorted(work, key=lambda w: w.key)


def finish(session: Session, claimed: Sequence[Work]) -> set[str]:
    """Delete the claimed rows no event reached since the claim; returns their keys."""
    if not claimed:
        return set()
    unchanged = or_(*((PendingSku.key == w.key) & (PendingSku.events == w.events) for w in claimed))
    return set(
        session.execute(delete(PendingSku).where(unchanged).returning(PendingSku.key)).scalars()
    )


def unclaim(session: Session, keys: Sequence[str]) -> None:
    """Hand work back: due for the next task of any product."""
    session.execute(
        update(PendingSku)
        .where(PendingSku.key.in_(list(keys)))
        .values(claimed_at=None, claimed_events=None)
    )


def identifiers_of_uuids(session: Session, uuids: Sequence[str]) -> dict[str, str]:
    """The SKU the mirror holds for each product uuid it knows (one query)."""
    if not uuids:
        return {}
    rows = session.execute(
        select(PimProduct.uuid, PimProduct.identifier).where(PimProduct.uuid.in_(list(uuids)))
    ).all()
    return {u: ident for u, ident in rows if u is not None}


def uuids_of_identifiers(session: Session, identifiers: Sequence[str]) -> dict[str, str]:
    """The uuid the mirror holds for each SKU it knows with one (one query)."""
    if not identifiers:
        return {}
    rows = session.execute(
        select(PimProduct.identifier, PimProduct.uuid).where(
            PimProduct.identifier.in_(list(identifiers)), PimProduct.uuid.is_not(None)
        )
    ).all()
    return {ident: u for ident, u in rows if u is not None}


def written_since(session: Session, keys: Sequence[str], since: datetime) -> dict[str, datetime]:
    """The keys (SKU or ``uuid:<uuid>``) whose product the mirror wrote at ``since`` or later,
    each with its last write, in one query per kind of key; a key the mirror does not know is
    not among them."""
    skus = [k for k in keys if not k.startswith("uuid:")]
    uuids = [k[5:] for k in keys if k.startswith("uuid:")]
    found: dict[str, datetime] = {}
    # one statement per kind of key, each on its index (an OR of both could scan the table)
    if skus:
        q = select(PimProduct.identifier, PimProduct.ingested_at).where(
            among(session, PimProduct.identifier, skus), PimProduct.ingested_at >= since
        )
        found.update((ident, at) for ident, at in session.execute(q).tuples())
    if uuids:
        by_uuid = select(PimProduct.uuid, func.max(PimProduct.ingested_at)).where(
            among(session, PimProduct.uuid, uuids), PimProduct.ingested_at >= since
        )
        rows = session.execute(by_uuid.group_by(PimProduct.uuid)).tuples()
        found.update((f"uuid:{u}", at) for u, at in rows if u is not None)
    return found


def stale_pending(session: Session, older_than: datetime, limit: int = 1000) -> list[str]:
    """Pending work nobody finished: its task was lost, or died."""
    q = (
        select(PendingSku.key)
        .where(
            ((PendingSku.claimed_at.is_(None)) & (PendingSku.first_event_at < older_than))
            | (PendingSku.claimed_at < older_than)
        )
        .limit(limit)
    )
    return list(session.execute(q).scalars())


def backlog(session: Session) -> int:
    """Products with pending work (the Event Platform is asked to slow down past a limit)."""
    return int(session.execute(select(func.count()).select_from(PendingSku)).scalar_one())


def purge_events(session: Session, received_before: datetime, limit: int = 10_000) -> int:
    """Forget accepted event ids older than the retention (at most ``limit`` per call, so one
    sweep never holds a long delete)."""
    old = (
        select(WebhookEvent.event_id)
        .where(WebhookEvent.received_at < received_before)
        .limit(limit)
        .scalar_subquery()
    )
    return affected(session, delete(WebhookEvent).where(WebhookEvent.event_id.in_(old)))
