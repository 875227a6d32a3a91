"""Publishing units: a batch of SKUs of one channel, decided and written in one transaction.

A failing unit never fails, retries or delays its neighbours: the batch commits the good
ones, dead-letters a unit that failed permanently (mapping error, drift under ``fail``) and
re-plans a unit that failed unexpectedly as a batch of its own, with backoff, until its
attempts run out. The run's counters, the batch's completion and, for the last batch, the
run's finalisation (cursor, orphans) commit together with the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.channels.models import (
    DISABLED_IN_PIM,
    FILTERED,
    INCOMPLETE,
    PUBLISHED,
    REMOVED,
)
from app.channels.repository import ChannelRow, RowChange, RowState
from app.db import session_scope
from app.gcpause import collector_paused
from app.logging import get_logger
from app.maintenance import HOT_PATH_SHARE, analyze_if_stale
from app.mapping import repository as mapping_repo
from app.mapping.repository import Tally
from app.pim import repository as pim_repo
from app.pim.product import Product
from app.pim.repository import MirrorRow
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import ABORTED, COMPLETED, DELTA, FAILED, FULL, REPUBLISH, RUNNING, SyncRun
from app.sync.repository import Released
from app.sync.runtime import REGISTRY, ChannelUnavailable, configured_channels
from app.sync.units import FAILED as UNIT_FAILED
from app.sync.units import ChannelRuntime, UnitOutcome, evaluate
from app.textcheck import UnstorableText, first_problem, value_problem

log = get_logger("pimsync.publish")


@dataclass
class BatchResult:
    synced: int = 0
    unchanged: int = 0
    skipped_incomplete: int = 0
    filtered: int = 0
    disabled: int = 0
    failed: int = 0
    retried: int = 0
    changes: list[RowChange] = field(default_factory=list)
    retry_batches: list[int] = field(default_factory=list)


def _row(
    rt: ChannelRuntime,
    out: UnitOutcome,
    input_hash: str,
    run_id: uuid.UUID | None,
    now: datetime,
    source_seq: int,
) -> ChannelRow:
    return ChannelRow(
        channel=rt.channel.code,
        sku=out.sku,
        doc=out.doc,
        contract_version=rt.contract.key if out.status == PUBLISHED else None,
        input_hash=input_hash,
        status=out.status,
        enabled=out.enabled,
        disabled_reason=None if out.enabled else out.status,
        detail=out.detail,
        completeness=out.completeness,
        sync_run_id=run_id,
        synced_at=now,
        source_seq=source_seq,
    )


def _dead_letter(
    channel: str,
    sku: str,
    run_id: uuid.UUID | None,
    exc: BaseException,
    permanent: bool,
    now: datetime,
    attempts: int = 1,
) -> dict[str, Any]:
    return {
        "channel": channel,
        "sku": sku,
        "run_id": run_id,
        "kind": "publish",
        "error_type": type(exc).__name__,
        "error": str(exc)[:4000] or repr(exc)[:4000],
        "permanent": permanent,
        "attempts": attempts,
        "status": "open",
        "first_failed_at": now,
        "last_failed_at": now,
    }


def _unstorable(
    out: UnitOutcome, product: Product, problems: dict[str, str | None]
) -> UnstorableText | None:
    """The refusal of a unit whose row would carry text PostgreSQL cannot store (a NUL), named
    by the product's value that holds it; None when the row can be written (the bad value is
    not in what this channel publishes). The product's values are searched once for every
    channel."""
    if first_problem(out.doc) is None and first_problem(out.detail) is None:
        return None
    if out.sku not in problems:
        problems[out.sku] = value_problem(product.values)
    return UnstorableText(problems[out.sku] or "the document holds a NUL character")


def up_to_date(state: RowState | None, rt: ChannelRuntime, content_hash: str) -> bool:
    """The unit's row was decided from this content by the channel's current runtime:
    deciding it again would write nothing."""
    return state is not None and state.input_hash == rt.input_hash(content_hash)


def _is_transient_db_error(exc: DBAPIError) -> bool:
    return isinstance(exc, OperationalError) or bool(getattr(exc, "connection_invalidated", False))


def _write_rows(
    session: Session, rows: list[ChannelRow]
) -> tuple[list[RowChange], list[tuple[ChannelRow, DBAPIError]]]:
    """Bulk upsert; if the database refuses the statement for a data reason (e.g. a NUL byte
    PostgreSQL's jsonb rejects), fall back to one savepoint per row so only the bad ones fail."""
    if not rows:
        return [], []
    try:
        with session.begin_nested():
            return channel_repo.upsert_rows(session, rows), []
    except DBAPIError as exc:
        if _is_transient_db_error(exc):
            raise
    changes: list[RowChange] = []
    bad: list[tuple[ChannelRow, DBAPIError]] = []
    for row in rows:
        try:
            with session.begin_nested():
                changes.extend(channel_repo.upsert_rows(session, [row]))
        except DBAPIError as exc:
            if _is_transient_db_error(exc):
                raise
            bad.append((row, exc))
    return changes, bad


def publish_units(
    session: Session,
    ctx: SyncContext,
    rt: ChannelRuntime,
    run_id: uuid.UUID | None,
    skus: list[str],
    attempt: int = 1,
    cache: dict[str, MirrorRow] | None = None,
    pages_here: bool = False,
) -> BatchResult:
    """Decide and write units for ``skus`` in ``rt``'s channel (flushes, never commits)."""
    return publish_channels(session, ctx, [rt], run_id, skus, attempt, cache, pages_here)[
        rt.channel.code
    ]


def publish_channels(
    session: Session,
    ctx: SyncContext,
    rts: list[ChannelRuntime],
    run_id: uuid.UUID | None,
    skus: list[str],
    attempt: int = 1,
    cache: dict[str, MirrorRow] | None = None,
    pages_here: bool = False,
) -> dict[str, BatchResult]:
    """Decide and write units for ``skus`` in each of ``rts``' channels (flushes, never
    commits): one result per channel. With ``pages_here`` the changed rows are projected onto
    their product pages in this transaction (``SyncContext.project_changes``) instead of by
    catalog events after commit.

    Each statement runs once for all the channels (the products' heads, the rows' states, the
    mirror, the upsert, the dead letters): a PIM event publishes one product to every channel
    in about the statements one channel used to take.
    """
    now = ctx.now()
    results = {rt.channel.code: BatchResult() for rt in rts}
    heads = pim_repo.heads(session, skus)
    states = channel_repo.load_states(session, list(results), skus)
    gone = [s for s in skus if heads.get(s) is None or heads[s].removed_at is not None]
    if gone:  # every channel in one statement
        for change in channel_repo.disable_skus(
            session, gone, REMOVED, REMOVED, run_id, now, channels=list(results)
        ):
            results[change.channel].changes.append(change)
        for res in results.values():
            # the rows this run disabled; a removed SKU the channel never held, or holds
            # removed already, is a unit decided with nothing to write: unchanged
            res.disabled += len(res.changes)
            res.unchanged += len(gone) - len(res.changes)
    removed = set(gone)
    present = [s for s in skus if s not in removed]
    todo: dict[str, list[str]] = {}
    for rt in rts:
        channel, res = rt.channel.code, results[rt.channel.code]
        todo[channel] = []
        for sku in present:
            state = states.get((channel, sku))
            if up_to_date(state, rt, heads[sku].content_hash):
                res.unchanged += 1
            else:
                todo[channel].append(sku)

    # Products decoded for another channel's batch of the same group are reused (same
    # content hash, checked): the mirror is read once per group, not once per channel.
    cache = {} if cache is None else cache
    wanted = list(dict.fromkeys(sku for skus_ in todo.values() for sku in skus_))
    mirror = {
        sku: cache[sku]
        for sku in wanted
        if sku in cache and cache[sku].content_hash == heads[sku].content_hash
    }
    missing = [sku for sku in wanted if sku not in mirror]
    if missing:
        loaded = pim_repo.load_products(session, missing)
        mirror.update(loaded)
        cache.update(loaded)
    rows: list[ChannelRow] = []
    dead: list[dict[str, Any]] = []
    problems: dict[str, str | None] = {}  # per SKU: the value PostgreSQL would refuse
    for rt in rts:
        channel, res = rt.channel.code, results[rt.channel.code]
        retry: list[str] = []
        drift: dict[str, Tally] = {}
        for sku in todo[channel]:
            m = mirror.get(sku)
            if m is None:  # removed between the two reads
                continue
            product = m.product  # one per SKU, shared by every channel (its value index)
            if product is None:
                product = m.product = Product.trusted(m.raw, sku)
            try:
                out = evaluate(product, rt)
            except Exception as exc:
                if attempt >= ctx.settings.publish_max_attempts:
                    dead.append(_dead_letter(channel, sku, run_id, exc, False, now, attempt))
                    res.failed += 1
                else:
                    retry.append(sku)
                log.warning(
                    "unit_error",
                    run_id=str(run_id),
                    channel=channel,
                    sku=sku,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            if out.status == UNIT_FAILED:
                assert out.error is not None
                dead.append(_dead_letter(channel, sku, run_id, out.error, True, now))
                res.failed += 1
                continue
            if m.suspect and (refusal := _unstorable(out, product, problems)):
                dead.append(_dead_letter(channel, sku, run_id, refusal, True, now))
                res.failed += 1
                continue
            for attr in out.drift:
                drift.setdefault(attr, Tally()).add(sku)
            rows.append(_row(rt, out, rt.input_hash(m.content_hash), run_id, now, m.change_seq))
        contract = rt.contract.contract
        mapping_repo.record_drift(
            session, contract.id, contract.version, channel, contract.unmapped, drift, now
        )
        if retry:
            assert run_id is not None, "only a run's batches are retried"
            res.retried = len(retry)
            not_before = now + timedelta(seconds=ctx.backoff(attempt))
            res.retry_batches = repo.create_batches(
                session,
                run_id,
                channel,
                [[s] for s in retry],
                attempt=attempt + 1,
                not_before=not_before,
            )

    changes, refused = _write_rows(session, rows)
    for change in changes:
        results[change.channel].changes.append(change)
    refused_keys = {(row.channel, row.sku) for row, _ in refused}
    for row, db_error in refused:
        dead.append(
            _dead_letter(row.channel, row.sku, run_id, db_error.orig or db_error, True, now)
        )
        results[row.channel].failed += 1
    succeeded: dict[str, list[str]] = {
        channel: [s for s in skus_ if s not in mirror] for channel, skus_ in todo.items()
    }
    for row in rows:
        if (row.channel, row.sku) in refused_keys:
            continue
        res = results[row.channel]
        succeeded[row.channel].append(row.sku)
        if row.status == PUBLISHED:
            res.synced += 1
        elif row.status == INCOMPLETE:
            res.skipped_incomplete += 1
        elif row.status == FILTERED:
            res.filtered += 1
        elif row.status == DISABLED_IN_PIM:
            res.disabled += 1
    repo.upsert_dead_letters(session, dead)
    repo.resolve_dead_letters(session, succeeded, now)
    for d in dead:
        log.warning(
            "dead_lettered",
            run_id=str(run_id),
            channel=d["channel"],
            sku=d["sku"],
            error_type=d["error_type"],
            error=d["error"],
            permanent=d["permanent"],
        )
    changed = [c for res in results.values() for c in res.changes]
    if pages_here:
        ctx.project_changes(session, changed)
    else:
        ctx.notify_changes(session, changed)
    return results


def publish_batches(ctx: SyncContext, batch_ids: list[int]) -> None:
    """One message: batches of different channels over the same SKUs (or a single batch).

    Each batch commits in its own transaction, so one channel's failure never touches
    another's rows; the products are decoded once for all of them. Batches released meanwhile
    are sent at the end, grouped again, so a full sync keeps sharing reads to its end. If this
    process dies before that, the sweeper sends them (they are marked enqueued).
    """
    held: list[Released] = []
    local = replace(ctx, held=held)
    cache: dict[str, MirrorRow] = {}
    try:
        with collector_paused():  # see app.gcpause: the decoded products hold no cycles
            try:
                for batch_id in batch_ids:
                    try:
                        publish_batch(local, batch_id, cache)
                    finally:
                        structlog.contextvars.unbind_contextvars("run_id", "channel")
            finally:
                cache.clear()  # freed under the pause, on an error too
    finally:
        ctx.send_grouped(held)


def publish_batch(
    ctx: SyncContext, batch_id: int, cache: dict[str, MirrorRow] | None = None
) -> None:
    """Process one batch (idempotent: a redelivered message finds the batch done)."""
    with session_scope() as session:
        batch = repo.get_batch(session, batch_id)
        if batch is None or batch.status == "done":
            return
        # Claim the batch first: a concurrent copy of the message blocks on this row and
        # then finds it done, instead of computing everything twice.
        if not repo.mark_batch_done(session, batch_id, ctx.now()):
            return
        run = repo.get_run(session, batch.run_id)
        if run is None or run.status != RUNNING:
            return  # the run stopped (aborted, cancelled, abandoned): discard
        # every log line of the run says which run and channel it belongs to
        structlog.contextvars.bind_contextvars(run_id=str(run.id), channel=run.channel)
        try:
            rt = REGISTRY.runtime(session, ctx.settings, batch.channel)
        except ChannelUnavailable as exc:
            runs.stop(session, ctx, run, FAILED, f"channel unavailable: {exc}")
            return
        # a run's batch writes its pages itself: one statement, no catalog event to consume
        res = publish_units(
            session, ctx, rt, run.id, list(batch.skus), batch.attempt, cache, pages_here=True
        )
        run = repo.add_counts(
            session,
            run.id,
            ctx.now(),
            synced=res.synced,
            unchanged=res.unchanged,
            skipped_incomplete=res.skipped_incomplete,
            filtered=res.filtered,
            disabled=res.disabled,
            failed=res.failed,
            planned_batches=len(res.retry_batches),
            pending_batches=len(res.retry_batches) - 1,
        )
        repo.renew_lock(session, runs.run_lock(run), run.id, ctx.lock_ttl(), ctx.now())
        if run.kind != DELTA and _over_budget(ctx, run):
            runs.stop(
                session,
                ctx,
                run,
                ABORTED,
                f"error budget exceeded: {run.failed} failed of {run.processed} units "
                f"(limit {ctx.settings.error_budget_max_failed} or "
                f"{ctx.settings.error_budget_max_failed_ratio:.0%})",
            )
            return
        released = repo.release_batches(
            session, run.id, ctx.settings.channel_inflight_batches, ctx.now()
        )
        ctx.enqueue_publish(session, released)
        if finalize_if_done(session, ctx, run) or batch_id % 8 == 0:
            analyze_if_stale(session, ("channel_product", "product_page"), share=HOT_PATH_SHARE)


def _over_budget(ctx: SyncContext, run: SyncRun) -> bool:
    s = ctx.settings
    if run.failed == 0:
        return False
    if run.failed > s.error_budget_max_failed:
        return True
    processed = run.processed
    # The ratio is judged only on a meaningful sample: two failures out of the first three
    # units must not abort a 200,000-unit run.
    return processed >= 100 and run.failed / processed > s.error_budget_max_failed_ratio


def finalize_if_done(session: Session, ctx: SyncContext, run: SyncRun) -> bool:
    """Finish a channel run once planning is over and no batch is pending. Orphans and the
    channel cursor move only here, inside the transaction that committed the last batch."""
    if run.status != RUNNING or not run.planning_done or run.pending_batches > 0:
        return False
    now = ctx.now()
    if run.kind == FULL:
        orphans = channel_repo.disable_rows_not_in(
            session, run.channel or "", run.id, run.started_at, now
        )
        run.orphans_disabled = len(orphans)
        ctx.notify_changes(session, orphans)
        # Everything the mirror held before this run began is now published, and so is what
        # this run's read wrote since: the channel's delta marker may skip both (up to the
        # first change another writer made meanwhile), unless a product failed (then the
        # delta retries it). Without the second part the first delta after a cold full sync
        # decided every product again.
        if run.failed == 0 and run.cursor_to:
            upto = int(run.cursor_to)
            if run.parent_id is not None:
                end = pim_repo.high_watermark(session)
                upto = pim_repo.first_change_not_read_by(session, upto, end, run.parent_id)
            _advance_channel_cursor(session, run.channel or "", upto, now, run.id)
    elif run.kind == DELTA and run.cursor_to is not None:
        _advance_channel_cursor(session, run.channel or "", int(run.cursor_to), now, run.id)
    repo.finish_run(session, run, COMPLETED, now)
    repo.release_lock(session, runs.run_lock(run), run.id)
    _log_complete(run)
    return True


def _advance_channel_cursor(
    session: Session, channel: str, value: int, now: datetime, run_id: uuid.UUID
) -> None:
    name = runs.channel_cursor_name(channel)
    current = repo.get_cursor(session, name)
    if current is None or int(current) < value:
        repo.set_cursor(session, name, str(value), now, run_id)


def _log_complete(run: SyncRun) -> None:
    fields = {
        "phase": "publish",
        "run_id": str(run.id),
        "channel": run.channel,
        "synced": run.synced,
        "unchanged": run.unchanged,
        "skipped_incomplete": run.skipped_incomplete,
        "filtered": run.filtered,
        "disabled": run.disabled,
        "failed": run.failed,
        "duration_ms": int((run.duration_seconds or 0) * 1000),
    }
    if run.kind == FULL:
        log.info("full_sync_complete", orphans_disabled=run.orphans_disabled, **fields)
    elif run.kind == DELTA and run.planned_units == 0:
        log.info("delta_sync_empty", phase="publish", run_id=str(run.id), channel=run.channel)
    else:
        log.info(f"{run.kind}_sync_complete", **fields)


# A catch-up is cut into messages of at least this many SKUs, however many processes wait.
MIN_SPREAD_CHUNK = 50


def start_catchup(
    session: Session,
    ctx: SyncContext,
    channel: str,
    kind: str = DELTA,
    parent_id: uuid.UUID | None = None,
    trigger: str = "beat",
) -> SyncRun:
    """Plan a channel's catch-up from the mirror (delta) or its republish (every product)."""
    return start_catchups(session, ctx, [channel], kind, parent_id, trigger)[0]


def start_catchups(
    session: Session,
    ctx: SyncContext,
    channels: list[str],
    kind: str = DELTA,
    parent_id: uuid.UUID | None = None,
    trigger: str = "beat",
) -> list[SyncRun]:
    """Plan several channels' catch-ups in one transaction, one run per channel.

    Batch i of every channel holds the same SKUs (the channels of a delta share their cursor)
    and carries the same group key, so it travels in one publish message with the others:
    the mirror is read and decoded once for all the channels. A catch-up smaller than
    ``publish_spread`` batches is cut into that many messages (of at least MIN_SPREAD_CHUNK
    SKUs), so that many worker processes decide it side by side instead of one.
    """
    now = ctx.now()
    size = ctx.settings.publish_batch_size
    started: list[SyncRun] = []
    planned: list[tuple[SyncRun, Iterator[list[str]]]] = []
    for channel in channels:
        run = repo.create_run(session, kind, channel, now, parent_id=parent_id, trigger=trigger)
        started.append(run)
        reason = runs.take_lock(session, ctx, runs.channel_lock(kind, channel), run)
        if reason is not None:
            runs.skip(session, run, now, reason)
            continue
        if kind == DELTA:
            start = int(repo.get_cursor(session, runs.channel_cursor_name(channel)) or 0)
            end = pim_repo.high_watermark(session)
            run.cursor_from, run.cursor_to = str(start), str(end)
            planned.append((run, _changed_pages(session, start, end, size)))
        else:
            planned.append((run, _all_pages(session, size)))
    firsts = [next(pages, []) for _, pages in planned]
    chunk = size
    if all(len(first) < size for first in firsts):  # small: spread over the processes
        longest = max(map(len, firsts), default=0)
        messages = max(1, min(ctx.settings.publish_spread, longest // MIN_SPREAD_CHUNK))
        chunk = max(1, -(-longest // messages))
    group = f"catchup:{parent_id or (started[0].id if started else '')}"
    for (run, pages), page in zip(planned, firsts, strict=True):
        total = batches = 0
        while page:
            chunks = [page[i : i + chunk] for i in range(0, len(page), chunk)]
            # keyed by the batches planned before it and its place in the page: the same
            # key in every channel whose SKUs are the same
            key = f"{group}:{batches}"
            repo.create_batches(session, run.id, run.channel or "", chunks, group_key=key)
            total += len(page)
            batches += len(chunks)
            page = next(pages, [])
        run.planned_units, run.planned_batches, run.pending_batches = total, batches, batches
        run.planning_done = True
    session.flush()
    for run, _ in planned:
        released = repo.release_batches(session, run.id, ctx.settings.channel_inflight_batches, now)
        ctx.enqueue_publish(session, released)
        finalize_if_done(session, ctx, run)
    return started


def _changed_pages(session: Session, start: int, end: int, size: int) -> Iterator[list[str]]:
    after: tuple[int, str] | None = None
    while page := pim_repo.changed_identifiers(session, start, end, after, size):
        yield [ident for _, ident in page]
        after = page[-1]


def _all_pages(session: Session, size: int) -> Iterator[list[str]]:
    last: str | None = None
    while ids := pim_repo.all_identifiers(session, last, size):
        yield ids
        last = ids[-1]


def republish(session: Session, ctx: SyncContext, channel: str, trigger: str = "cli") -> SyncRun:
    """Re-publish a channel from the mirror, without reading the PIM (e.g. a new contract)."""
    configured_channels(ctx.settings, [channel])
    return start_catchup(session, ctx, channel, REPUBLISH, trigger=trigger)
