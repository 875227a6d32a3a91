"""All SQL of the sync engine: runs, cursors, leases, batches, dead letters."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from app.db import affected, among, dialect_insert, is_postgres
from app.sync.models import (
    BATCH_DONE,
    BATCH_ENQUEUED,
    BATCH_PENDING,
    DELTA,
    DL_OPEN,
    DL_REPLAYED,
    DL_RESOLVED,
    FULL,
    RUNNING,
    DeadLetter,
    SyncBatch,
    SyncCursor,
    SyncLock,
    SyncRun,
)

# --- runs ----------------------------------------------------------------------------------


def create_run(
    session: Session,
    kind: str,
    channel: str | None,
    now: datetime,
    *,
    parent_id: uuid.UUID | None = None,
    trigger: str = "cli",
    status: str = RUNNING,
    **fields: Any,
) -> SyncRun:
    run = SyncRun(
        id=uuid.uuid4(),
        kind=kind,
        channel=channel,
        parent_id=parent_id,
        status=status,
        trigger=trigger,
        started_at=now,
        heartbeat_at=now,
        read=0,
        rejected=0,
        synced=0,
        unchanged=0,
        skipped_incomplete=0,
        filtered=0,
        disabled=0,
        failed=0,
        orphans_disabled=0,
        planned_units=0,
        planned_batches=0,
        pending_batches=0,
        planning_done=False,
        **fields,
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: uuid.UUID, *, for_update: bool = False) -> SyncRun | None:
    q = select(SyncRun).where(SyncRun.id == run_id)
    if for_update and is_postgres(session):
        q = q.with_for_update()
    return session.execute(q).scalar_one_or_none()


def child_runs(session: Session, parent_id: uuid.UUID) -> list[SyncRun]:
    return list(
        session.execute(
            select(SyncRun).where(SyncRun.parent_id == parent_id).order_by(SyncRun.channel)
        ).scalars()
    )


COUNTERS = (
    "read",
    "rejected",
    "synced",
    "unchanged",
    "skipped_incomplete",
    "filtered",
    "disabled",
    "failed",
    "planned_units",
    "planned_batches",
    "pending_batches",
)


def add_counts(session: Session, run_id: uuid.UUID, now: datetime, **deltas: int) -> SyncRun:
    """Add to a run's counters in one statement (no read-modify-write) and return the run."""
    values: dict[str, Any] = {"heartbeat_at": now}
    for name, delta in deltas.items():
        if name not in COUNTERS:
            raise ValueError(f"unknown run counter {name!r}")
        if delta:
            values[name] = getattr(SyncRun, name) + delta
    session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))
    run = session.get(SyncRun, run_id, populate_existing=True)
    assert run is not None
    return run


def mark_planning_done(session: Session, run_id: uuid.UUID) -> None:
    """The ingest feeding this channel run has read its last page (in SQL: publish tasks
    update the same row concurrently)."""
    session.execute(update(SyncRun).where(SyncRun.id == run_id).values(planning_done=True))


def finish_run(
    session: Session, run: SyncRun, status: str, now: datetime, error: str | None = None
) -> None:
    run.status = status
    run.finished_at = now
    if error is not None:
        run.error = error[:4000]
    session.flush()


def recent_runs(
    session: Session,
    limit: int = 20,
    channel: str | None = None,
    kind: str | None = None,
    include_ingest: bool = True,
) -> list[SyncRun]:
    q = select(SyncRun).order_by(SyncRun.started_at.desc()).limit(limit)
    if channel is not None:
        q = q.where(SyncRun.channel == channel)
    if kind is not None:
        q = q.where(SyncRun.kind == kind)
    if not include_ingest:
        q = q.where(SyncRun.channel.is_not(None))
    return list(session.execute(q).scalars())


def runs_by_prefix(session: Session, prefix: str, limit: int = 10) -> list[SyncRun]:
    """Runs whose id starts with ``prefix`` (hex digits, dashes ignored), newest first: the
    short ids ``pimsync runs`` shows name a run the way git's short hashes name a commit.
    A full scan of sync_run (a few rows a cycle): a person types these, not a program."""
    digits = prefix.replace("-", "").lower()
    hex_id = func.replace(func.lower(func.cast(SyncRun.id, String)), "-", "")
    q = (
        select(SyncRun)
        .where(hex_id.startswith(digits, autoescape=True))
        .order_by(SyncRun.started_at.desc())
        .limit(limit)
    )
    return list(session.execute(q).scalars())


def last_finished_runs(session: Session) -> dict[str, SyncRun]:
    """The last finished run of each kind: the PIM read for delta and full syncs, the channel
    run for the others (republish, replay...)."""
    out: dict[str, SyncRun] = {}
    for kind in session.execute(select(SyncRun.kind).distinct()).scalars():
        q = select(SyncRun).where(SyncRun.kind == kind, SyncRun.finished_at.is_not(None))
        if kind in (DELTA, FULL):
            q = q.where(SyncRun.channel.is_(None))
        run = session.execute(q.order_by(SyncRun.finished_at.desc()).limit(1)).scalar()
        if run is not None:
            out[kind] = run
    return out


def running_runs(session: Session) -> list[SyncRun]:
    return list(session.execute(select(SyncRun).where(SyncRun.status == RUNNING)).scalars())


# --- cursors -------------------------------------------------------------------------------


def get_cursor(session: Session, name: str) -> str | None:
    return session.execute(select(SyncCursor.value).where(SyncCursor.name == name)).scalar()


def set_cursor(
    session: Session, name: str, value: str, now: datetime, run_id: uuid.UUID | None = None
) -> None:
    insert = dialect_insert(session)
    stmt = insert(SyncCursor).values(name=name, value=value, updated_at=now, run_id=run_id)
    stmt = stmt.on_conflict_do_update(
        index_elements=[SyncCursor.name],
        set_={"value": stmt.excluded.value, "updated_at": now, "run_id": run_id},
    )
    session.execute(stmt)


def all_cursors(session: Session) -> list[SyncCursor]:
    return list(session.execute(select(SyncCursor).order_by(SyncCursor.name)).scalars())


# --- leases ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    """An acquisition: whether it was granted, its fencing token, and the run whose expired
    lease it took over (that run must be stopped)."""

    acquired: bool
    token: str | None = None
    previous: uuid.UUID | None = None


def acquire_lock(
    session: Session,
    name: str,
    run_id: uuid.UUID,
    ttl: timedelta,
    now: datetime,
    token: str | None = None,
) -> Lease:
    """Take the lease ``name`` for ``run_id`` if it is free or expired, under the fencing
    token ``token`` (a new one when None). A lease still held is refused, whoever holds it,
    the same run included, unless the caller presents the holder's token: a task retried or
    redelivered (same task id, its first attempt gone) takes its own lease back at once, while
    another copy of the run's work (the sweeper's resend) waits for it like any other."""
    current = session.execute(
        select(SyncLock.run_id, SyncLock.expires_at).where(SyncLock.name == name)
    ).first()
    token = token or uuid.uuid4().hex
    insert = dialect_insert(session)
    stmt = insert(SyncLock).values(
        name=name, run_id=run_id, token=token, acquired_at=now, expires_at=now + ttl
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[SyncLock.name],
        set_={
            "run_id": stmt.excluded.run_id,
            "token": stmt.excluded.token,
            "acquired_at": stmt.excluded.acquired_at,
            "expires_at": stmt.excluded.expires_at,
        },
        where=or_(SyncLock.expires_at < now, SyncLock.token == token),
    ).returning(SyncLock.token)
    granted = session.execute(stmt).scalar()
    if granted != token:
        return Lease(False)
    previous = current.run_id if current is not None and current.run_id != run_id else None
    return Lease(True, token, previous)


def lock_holder(session: Session, name: str) -> SyncLock | None:
    return session.get(SyncLock, name, populate_existing=True)


def _held_by(name: str, run_id: uuid.UUID, token: str | None) -> list[ColumnElement[bool]]:
    """The lease ``name`` as ``run_id`` holds it (with ``token``: that acquisition only)."""
    held = [SyncLock.name == name, SyncLock.run_id == run_id]
    if token is not None:
        held.append(SyncLock.token == token)
    return held


def renew_lock(
    session: Session,
    name: str,
    run_id: uuid.UUID,
    ttl: timedelta,
    now: datetime,
    token: str | None = None,
) -> bool:
    """Extend the lease; False when another holder has it (this one must stop). With
    ``token``, only that acquisition renews (a process's own lease); without, any worker of
    the run (a run's lease, renewed by whichever worker publishes its batches)."""
    held = _held_by(name, run_id, token)
    touched = affected(session, update(SyncLock).where(*held).values(expires_at=now + ttl))
    return touched > 0


def release_lock(session: Session, name: str, run_id: uuid.UUID, token: str | None = None) -> None:
    """Give the lease back (with ``token``: only if this acquisition still holds it)."""
    session.execute(delete(SyncLock).where(*_held_by(name, run_id, token)))


def expired_locks(session: Session, now: datetime) -> list[SyncLock]:
    return list(session.execute(select(SyncLock).where(SyncLock.expires_at < now)).scalars())


# --- batches -------------------------------------------------------------------------------


def create_batches(
    session: Session,
    run_id: uuid.UUID,
    channel: str,
    sku_lists: Sequence[Sequence[str]],
    *,
    attempt: int = 1,
    not_before: datetime | None = None,
    group_key: str | None = None,
) -> list[int]:
    """Pending batches, one per SKU list; with ``group_key``, batch i is keyed ``key:i`` so
    the same chunk of other channels (planned with the same key) travels with it."""
    if not sku_lists:
        return []
    batches = [
        SyncBatch(
            run_id=run_id,
            channel=channel,
            skus=list(skus),
            units=len(skus),
            status=BATCH_PENDING,
            attempt=attempt,
            not_before=not_before,
            group_key=f"{group_key}:{i}" if group_key else None,
        )
        for i, skus in enumerate(sku_lists)
        if skus
    ]
    session.add_all(batches)
    session.flush()
    return [b.id for b in batches]


# (batch id, not_before, group key, channel, units)
Released = tuple[int, "datetime | None", "str | None", str, int]


def release_batches(session: Session, run_id: uuid.UUID, cap: int, now: datetime) -> list[Released]:
    """Move pending batches to enqueued while fewer than ``cap`` are in flight.

    The caller holds the run row lock, so two transactions cannot both see room for the same
    slot. Returns (batch id, not_before) for the caller to enqueue after commit.
    """
    inflight = session.execute(
        select(func.count())
        .select_from(SyncBatch)
        .where(SyncBatch.run_id == run_id, SyncBatch.status == BATCH_ENQUEUED)
    ).scalar_one()
    room = cap - int(inflight)
    if room <= 0:
        return []
    q = (
        select(
            SyncBatch.id,
            SyncBatch.not_before,
            SyncBatch.group_key,
            SyncBatch.channel,
            SyncBatch.units,
        )
        .where(SyncBatch.run_id == run_id, SyncBatch.status == BATCH_PENDING)
        .order_by(SyncBatch.id)
        .limit(room)
    )
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    rows = session.execute(q).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    session.execute(
        update(SyncBatch)
        .where(SyncBatch.id.in_(ids))
        .values(status=BATCH_ENQUEUED, enqueued_at=now)
    )
    return [(r.id, r.not_before, r.group_key, r.channel, r.units) for r in rows]


def get_batch(session: Session, batch_id: int) -> SyncBatch | None:
    return session.get(SyncBatch, batch_id, populate_existing=True)


def mark_batch_done(session: Session, batch_id: int, now: datetime) -> bool:
    """Done exactly once: False when a redelivered message finds it already done."""
    touched = affected(
        session,
        update(SyncBatch)
        .where(SyncBatch.id == batch_id, SyncBatch.status != BATCH_DONE)
        .values(status=BATCH_DONE, done_at=now),
    )
    return touched > 0


def discard_open_batches(session: Session, run_id: uuid.UUID, now: datetime) -> int:
    """Close a stopped run's batches. Batches a worker is processing right now are skipped
    (not waited for: that would invert the lock order); they find the run stopped anyway."""
    open_ids = select(SyncBatch.id).where(
        SyncBatch.run_id == run_id, SyncBatch.status != BATCH_DONE
    )
    if is_postgres(session):
        open_ids = open_ids.with_for_update(skip_locked=True)
    return affected(
        session,
        update(SyncBatch)
        .where(SyncBatch.id.in_(open_ids.scalar_subquery()))
        .values(status=BATCH_DONE, done_at=now)
        .execution_options(synchronize_session=False),
    )


def delete_finished_batches(session: Session, finished_before: datetime) -> int:
    """Batches are the plan of a run; once the run is long over they are only history."""
    finished = select(SyncRun.id).where(
        SyncRun.status != RUNNING, SyncRun.finished_at < finished_before
    )
    return affected(session, delete(SyncBatch).where(SyncBatch.run_id.in_(finished)))


def stale_enqueued_batches(session: Session, older_than: datetime, limit: int = 500) -> list[int]:
    """Enqueued batches of running runs that nobody processed: their message may be lost."""
    q = (
        select(SyncBatch.id)
        .join(SyncRun, SyncRun.id == SyncBatch.run_id)
        .where(
            SyncBatch.status == BATCH_ENQUEUED,
            SyncBatch.enqueued_at < older_than,
            or_(SyncBatch.not_before.is_(None), SyncBatch.not_before < older_than),
            SyncRun.status == RUNNING,
        )
        .order_by(SyncBatch.id)
        .limit(limit)
    )
    return list(session.execute(q).scalars())


def enqueued_batches(session: Session, run_id: uuid.UUID) -> list[int]:
    """A run's batches sent to workers and not done yet."""
    q = (
        select(SyncBatch.id)
        .where(SyncBatch.run_id == run_id, SyncBatch.status == BATCH_ENQUEUED)
        .order_by(SyncBatch.id)
    )
    return list(session.execute(q).scalars())


def touch_batches(session: Session, ids: Sequence[int], now: datetime) -> None:
    if ids:
        session.execute(
            update(SyncBatch).where(SyncBatch.id.in_(list(ids))).values(enqueued_at=now)
        )


def batch_counts(session: Session, run_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(SyncBatch.status, func.count())
        .where(SyncBatch.run_id == run_id)
        .group_by(SyncBatch.status)
    ).all()
    return {status: int(n) for status, n in rows}


# --- dead letters ----------------------------------------------------------------------------


def rejected_product(
    ref: str, message: str, run_id: uuid.UUID | None, now: datetime
) -> dict[str, Any]:
    """The dead letter of a product payload that failed to parse (every channel: ``*``)."""
    return {
        "channel": "*",
        "sku": ref,
        "run_id": run_id,
        "kind": "ingest",
        "error_type": "ProductParseError",
        "error": message[:4000],
        "permanent": True,
        "attempts": 1,
        "status": "open",
        "first_failed_at": now,
        "last_failed_at": now,
    }


def upsert_dead_letters(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """One open dead letter per (channel, sku): a unit failing again bumps its attempts."""
    if not rows:
        return
    insert = dialect_insert(session)
    stmt = insert(DeadLetter)
    t = DeadLetter.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.channel, t.c.sku],
        # a literal predicate: PostgreSQL matches the partial index only on its exact text
        index_where=text("status = 'open'"),
        set_={
            "run_id": stmt.excluded.run_id,
            "error_type": stmt.excluded.error_type,
            "error": stmt.excluded.error,
            "permanent": stmt.excluded.permanent,
            "attempts": t.c.attempts + stmt.excluded.attempts,
            "last_failed_at": stmt.excluded.last_failed_at,
        },
    )
    session.execute(stmt, sorted(rows, key=lambda r: (r["channel"], r["sku"])))


def resolve_dead_letters(
    session: Session, succeeded: Mapping[str, Sequence[str]], now: datetime
) -> int:
    """Units that succeeded ({channel: skus}): their open dead letters, and those handed to a
    replay, are resolved, not left to rot. One statement for every channel."""
    wanted = [
        and_(DeadLetter.channel == channel, among(session, DeadLetter.sku, skus))
        for channel, skus in sorted(succeeded.items())
        if skus
    ]
    if not wanted:
        return 0
    return affected(
        session,
        update(DeadLetter)
        .where(DeadLetter.status.in_((DL_OPEN, DL_REPLAYED)), or_(*wanted))
        .values(status=DL_RESOLVED, replayed_at=now),
    )


def list_dead_letters(
    session: Session,
    status: str | None = DL_OPEN,
    channel: str | None = None,
    ids: Sequence[int] | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    q = select(DeadLetter).order_by(DeadLetter.last_failed_at.desc(), DeadLetter.id.desc())
    if status is not None:
        q = q.where(DeadLetter.status == status)
    if channel is not None:
        q = q.where(DeadLetter.channel == channel)
    if ids:
        q = q.where(DeadLetter.id.in_(list(ids)))
    return list(session.execute(q.limit(limit)).scalars())


def open_dead_letters_of(session: Session, sku: str) -> list[DeadLetter]:
    """A product's open dead letters in every channel (``*``: its payload was unreadable)."""
    q = (
        select(DeadLetter)
        .where(DeadLetter.sku == sku, DeadLetter.status == DL_OPEN)
        .order_by(DeadLetter.last_failed_at.desc(), DeadLetter.id.desc())
    )
    return list(session.execute(q).scalars())


def mark_replayed(session: Session, ids: Sequence[int], now: datetime) -> int:
    if not ids:
        return 0
    return affected(
        session,
        update(DeadLetter)
        .where(DeadLetter.id.in_(list(ids)), DeadLetter.status == DL_OPEN)
        .values(status=DL_REPLAYED, replayed_at=now),
    )


def count_dead_letters(session: Session, status: str = DL_OPEN) -> dict[str, int]:
    rows = session.execute(
        select(DeadLetter.channel, func.count())
        .where(DeadLetter.status == status)
        .group_by(DeadLetter.channel)
    ).all()
    return {c: int(n) for c, n in rows}
