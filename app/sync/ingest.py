"""Reading the PIM into the mirror, once for every channel.

A full sync streams the whole export and plans one batch of units per channel for every group
of products it commits; a delta sync reads what changed since the ingest cursor and then lets
every channel catch up from the mirror on its own marker. Reading happens in time slices that
re-enqueue themselves, so no task runs for long and a killed worker resumes from the last
committed page (the run's resume token).
"""

from __future__ import annotations

import contextvars
import gc
import queue
import threading
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import orjson
import structlog
from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.db import after_commit, session_scope
from app.gcpause import collector_paused
from app.logging import get_logger
from app.maintenance import HOT_PATH_SHARE, analyze_if_stale
from app.mapping import repository as mapping_repo
from app.mapping.repository import Tally
from app.ownership import Violation
from app.pim import repository as pim_repo
from app.pim.catalog import identifier_attribute_problem, resolve_identifier_attribute
from app.pim.product import (
    MAX_PRODUCT_BYTES,
    Product,
    ProductParseError,
    content_hash,
    parse_product,
)
from app.pim.source import Page, PimSource
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import COMPLETED, DELTA, FULL, RUNNING, SKIPPED, SyncRun
from app.sync.publish import finalize_if_done, up_to_date
from app.sync.runtime import REGISTRY, ChannelUnavailable, configured_channels
from app.textcheck import text_problem

log = get_logger("pimsync.ingest")


def start_full(
    session: Session,
    ctx: SyncContext,
    channels: list[str] | None = None,
    trigger: str = "cli",
    source: str | None = None,
) -> SyncRun | None:
    """Start a full sync for some or all channels; None when every channel is already busy.
    ``source``: the PIM to read (default: this process's PIMSYNC_PIM_SOURCE); the run records
    it and its reader reads that one (or fails the run saying why it cannot)."""
    now = ctx.now()
    codes = configured_channels(ctx.settings, channels)
    kind, where = ctx.source_record(source)
    ingest = repo.create_run(
        session, FULL, None, now, trigger=trigger, source_kind=kind, source=where
    )
    hw = pim_repo.high_watermark(session)
    started = []
    for code in codes:
        child = repo.create_run(
            session, FULL, code, now, parent_id=ingest.id, trigger=trigger, cursor_to=str(hw)
        )
        reason = runs.take_lock(session, ctx, runs.channel_lock(FULL, code), child)
        if reason is not None:
            runs.skip(session, child, now, reason)
        else:
            started.append(code)
    if not started:
        repo.finish_run(session, ingest, SKIPPED, now, error="every channel is already syncing")
        return None
    ingest.details = {"channels": started}
    session.flush()
    after_commit(session, partial(runs.send_read_or_fail, ctx, ingest.id))
    log.info(
        "full_sync_started",
        phase="start",
        run_id=str(ingest.id),
        channels=started,
        trigger=trigger,
        source=where,
    )
    return ingest


def start_delta(
    session: Session, ctx: SyncContext, trigger: str = "beat", source: str | None = None
) -> SyncRun:
    """Start a delta cycle: read what changed since the cursor, then every channel catches up.
    ``source`` as in start_full."""
    now = ctx.now()
    kind, where = ctx.source_record(source)
    run = repo.create_run(
        session, DELTA, None, now, trigger=trigger, source_kind=kind, source=where
    )
    reason = runs.take_lock(session, ctx, runs.DELTA_INGEST_LOCK, run)
    if reason is not None:
        runs.skip(session, run, now, reason)
        return run
    cursor = repo.get_cursor(session, runs.INGEST_CURSOR)
    overlap = timedelta(seconds=ctx.settings.delta_overlap_seconds)
    # Products updated at or after the cursor are re-read: the overlap window catches
    # same-second updates and clock skew; content hashes make the re-read free downstream.
    run.cursor_from = (datetime.fromisoformat(cursor) - overlap).isoformat() if cursor else None
    # The next cursor is when this cycle *started*: whatever changes while it runs is newer.
    run.cursor_to = now.isoformat()
    session.flush()
    after_commit(session, partial(runs.send_read_or_fail, ctx, run.id))
    log.info(
        "delta_sync_started",
        phase="start",
        run_id=str(run.id),
        trigger=trigger,
        source=where,
        since=run.cursor_from,
    )
    return run


def _parse_page(
    page: Page, identifier_attribute: str, hashes: dict[str, str] | None = None
) -> tuple[list[tuple[Product, str]], list[tuple[str, str]]]:
    """Parse, encode and hash a page's products (``hashes``: those already computed)."""
    good: list[tuple[Product, str]] = []
    bad: list[tuple[str, str]] = []
    for item in page.items:
        try:
            product = parse_product(item, identifier_attribute)
            product.encoded = orjson.dumps(product.raw)
            if len(product.encoded) > MAX_PRODUCT_BYTES:
                raise ProductParseError(
                    product.identifier,
                    "<root>",
                    f"{len(product.encoded):,} bytes, more than {MAX_PRODUCT_BYTES:,}",
                )
            digest = (hashes or {}).get(product.identifier) or content_hash(product.raw)
        except ProductParseError as exc:
            bad.append((exc.product_ref, str(exc)))
            continue
        except (TypeError, ValueError) as exc:  # orjson: integers beyond 64 bits and the like
            bad.append(
                (
                    item.get("identifier") or "?" if isinstance(item, dict) else "?",
                    f"cannot be stored as JSON: {exc}",
                )
            )
            continue
        good.append((product, digest))
    for err in page.errors:
        bad.append(("?", err))
    return good, bad


def _identifier_in(item: dict[str, Any], identifier_attribute: str) -> Any:
    """The identifier as ``parse_product`` finds it: the top-level field (the identifier
    endpoints' shape), else the identifier attribute's value (``products-uuid`` items)."""
    ident = item.get("identifier")
    if ident is not None:
        return ident
    values = item.get("values")
    entries = values.get(identifier_attribute) if values.__class__ is dict else None
    if entries.__class__ is list:
        for entry in entries:
            if entry.__class__ is dict and entry.get("data").__class__ is str:
                return entry["data"]
    return None


def _split_known(
    pages: list[Page], identifier_attribute: str = "sku", earlier: set[str] | None = None
) -> tuple[list[Page], list[dict[str, Any]], dict[str, str]]:
    """Set aside the products whose content the mirror already holds.

    Most of a full sync (and all of a delta's overlap window) is products that did not
    change: hashing a payload costs a fraction of parsing, encoding and rewriting it, so
    those are only marked seen. The hash ignores ``updated`` like the mirror's does; a
    payload the mirror does not hold, a removed product, an identifier repeated in the
    group or met in an ``earlier`` one (which may not be written yet) or anything odd takes
    the full path (parsed, validated, upserted). Also returns the hashes it computed (by
    identifier), for the parser not to compute them again.
    """
    hashes: dict[str, str] = {}
    repeated: set[str] = set()
    for page in pages:
        for item in page.items:
            if item.__class__ is not dict:
                continue
            ident = _identifier_in(item, identifier_attribute)
            if ident.__class__ is not str or not ident or text_problem(ident):
                continue  # the parser says why (a NUL could not even be looked up)
            if ident in hashes or (earlier is not None and ident in earlier):
                repeated.add(ident)
                continue
            if not isinstance(item.get("values") or {}, dict) or not isinstance(
                item.get("categories") or [], list
            ):
                continue  # malformed: the parser says why
            if item.get("identifier") is None:
                # hashed as the parser will store it: with its identifier at the top
                item["identifier"] = ident
            try:
                hashes[ident] = content_hash(item)
            except (TypeError, ValueError):  # unhashable odd payload: the parser will say why
                continue
    for ident in repeated:
        hashes.pop(ident, None)
    if not hashes:
        return pages, [], hashes
    with session_scope() as session:
        stored = pim_repo.current_hashes(session, list(hashes))
    known = {ident for ident, digest in hashes.items() if stored.get(ident) == digest}
    if not known:
        return pages, [], hashes
    rest = [
        Page(
            items=[
                i for i in page.items if not (i.__class__ is dict and i.get("identifier") in known)
            ],
            next_cursor=page.next_cursor,
            errors=page.errors,
        )
        for page in pages
    ]
    held = [
        i
        for page in pages
        for i in page.items
        if i.__class__ is dict and i.get("identifier") in known
    ]
    return rest, held, hashes


def _groups(pages: Iterator[Page], size: int) -> Iterator[tuple[list[Page], str | None, bool]]:
    """Pages grouped to ~``size`` products: (pages, resume token after them, exhausted).

    A group is handed over, not kept: while suspended, this frame holds no page, so the
    caller frees each group before the cyclic collector resumes (see app.gcpause).
    """
    group: list[Page] = []
    count = 0
    token: str | None = None
    for page in pages:
        group.append(page)
        count += len(page.items)
        token = page.next_cursor
        del page
        if token is None or count >= size:
            out, group, count = [group], [], 0
            yield out.pop(), token, token is None
            if token is None:
                return
    out = [group]
    del group
    yield out.pop(), token, True


def ingest_slice(ctx: SyncContext, run_id: uuid.UUID, reader: str | None = None) -> bool:
    """Read the PIM for one time slice; True when the run needs no more slices. ``reader``
    names this reader (the Celery task's id: the same across its retries and redeliveries);
    one reader per run holds the run's read lease at a time."""
    with structlog.contextvars.bound_contextvars(run_id=str(run_id), channel=None):
        return _ingest_slice(ctx, run_id, reader or uuid.uuid4().hex)


def _ingest_slice(ctx: SyncContext, run_id: uuid.UUID, reader: str) -> bool:
    settings = ctx.settings
    with session_scope() as session:
        run = repo.get_run(session, run_id)
        if run is None or run.status != RUNNING:
            return True
        lease = repo.acquire_lock(
            session,
            runs.ingest_lease(run_id),
            run.id,
            runs.ingest_lease_ttl(settings),
            ctx.now(),
            token=reader[:32],
        )
        if not lease.acquired or lease.token is None:
            # another copy of this message reads (a redelivery, the sweeper's resend): one
            # reader per run; if that reader died, its lease expires and the sweeper resends
            log.info("ingest_slice_skipped", reason="another reader holds the run's lease")
            return True
        kind, resume, since = run.kind, run.resume_token, run.cursor_from
        first_slice = resume is None and run.read == 0 and run.rejected == 0
        recorded = run.source
    # A failed slice keeps its lease: the task's retry (same reader) takes it back at once,
    # and a retry that never comes lets it expire for the sweeper's resend.
    source = ctx.source_for(recorded)
    return _read_slice(ctx, run_id, lease.token, kind, resume, since, first_slice, source)


def _read_slice(
    ctx: SyncContext,
    run_id: uuid.UUID,
    lease: str,
    kind: str,
    resume: str | None,
    since: str | None,
    first_slice: bool,
    source: PimSource,
) -> bool:
    settings = ctx.settings
    if first_slice:
        _refresh_definitions(ctx, source, force=kind == FULL)
    with session_scope() as session:
        # where the SKU is in `values`: from the definitions this run read at its start
        defs = REGISTRY.definitions(session)[0]
    identifier_attribute = resolve_identifier_attribute(settings.identifier_attribute, defs)
    if problem := identifier_attribute_problem(identifier_attribute, defs):
        runs.fail_ingest(ctx, run_id, problem)
        return True
    deadline = ctx.now() + timedelta(seconds=settings.ingest_slice_seconds)
    # the page iterator is held by the groups alone: closed with them (by the read-ahead
    # thread), it frees the last page it read before the slice's pause of the collector ends
    groups = _groups(
        source.iter_pages(
            datetime.fromisoformat(since) if since else None,
            page_size=settings.akeneo_page_size,
            resume=resume,
        ),
        settings.publish_batch_size,
    )
    # One pause of the collector for the slice (bounded by PIMSYNC_INGEST_SLICE_SECONDS), with
    # a young collection every YOUNG_COLLECTION_GROUPS groups: the next group is decoded by
    # the read-ahead thread while this one is written, so a pause per group would leave the
    # collector on while one of them decodes (see app.gcpause).
    written = 0
    with collector_paused(), _read_ahead(groups, identifier_attribute) as prepared:
        for group, token, exhausted, parts in prepared:
            committed = _commit_group(
                ctx, run_id, lease, group, token, exhausted, identifier_attribute, parts
            )
            del group, parts
            if not committed or exhausted:
                return True  # the collector resumes as the slice ends, and collects then
            written += 1
            if written % YOUNG_COLLECTION_GROUPS == 0:
                # what the written groups left in reference cycles (their sessions and
                # statements) goes now; young objects only
                gc.collect(1)
            if ctx.now() >= deadline:
                with session_scope() as session:
                    repo.release_lock(session, runs.ingest_lease(run_id), run_id, lease)
                    after_commit(session, lambda: ctx.dispatcher.ingest(run_id))
                return False
    return True


# The collector is off while a slice reads; the reader collects the young generation every
# this many groups. A group leaves ~200 objects in reference cycles (its sessions and
# statements, ~0.2 MB), but a young collection also walks the group read ahead, alive
# (~260,000 containers for 500 products): 40-130 ms each on the bench machine, which after
# every group was a sixth of a warm read. Every 8 groups: at most ~2 MB of cyclic garbage.
YOUNG_COLLECTION_GROUPS = 8


# A group ready to be written: its pages, resume token, whether the export ended there, and
# its products split by _prepare_group.
_Parts = tuple[list[tuple[Product, str]], list[tuple[str, str]], list[dict[str, Any]]]
_Ready = tuple[list[Page], str | None, bool, _Parts]
_END = object()


class _ReadFailed:
    """What the read-ahead thread raised, handed to the reader to raise as its own."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _prepare_group(
    group: list[Page], identifier_attribute: str, earlier: set[str] | None = None
) -> _Parts:
    """A group's products, decoded and judged but not written: (parsed with their hashes,
    refused with their reasons, those the mirror already holds unchanged). ``earlier``: the
    identifiers of the groups before it in this slice, which may not be written yet: those
    take the full path (an upsert is idempotent), never the "unchanged" one."""
    to_parse, known, hashes = _split_known(group, identifier_attribute, earlier)
    good: list[tuple[Product, str]] = []
    bad: list[tuple[str, str]] = []
    for page in to_parse:
        g, b = _parse_page(page, identifier_attribute, hashes)
        good.extend(g)
        bad.extend(b)
    return good, bad, known


@contextmanager
def _read_ahead(
    groups: Iterator[tuple[list[Page], str | None, bool]], identifier_attribute: str
) -> Iterator[Iterator[_Ready]]:
    """The groups, each fetched from the PIM, decoded, hashed and parsed by a thread one group
    ahead of the caller, who writes them: the PIM's answer and the decoding of group N+1
    overlap the database's work on group N (the reader used to wait for each in turn).

    At most one prepared group waits, and the thread reads no further until the reader takes
    it: two groups are alive at a time (the one written, the next). What the thread raises
    (a PIM error, throttling) is raised by the iterator, where the reader read before.
    Leaving the block stops the thread
    and waits for it (at most the page it is fetching); a group it read ahead and nobody
    wrote is read again by the next slice, from the last committed resume token.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()
    taken = threading.Event()

    def hand(item: Any) -> bool:
        """Hand ``item`` over and wait until the reader takes it: it takes group N+1 once
        group N is written and freed, so no more than two groups are ever alive."""
        taken.clear()
        handoff.put(item)  # empty: the reader took the one before
        while not stop.is_set():
            if taken.wait(0.1):
                return not stop.is_set()  # woken by the reader leaving: stop here
        return False

    def produce() -> None:
        earlier: set[str] = set()
        try:
            for group, token, exhausted in groups:
                parts = _prepare_group(group, identifier_attribute, earlier)
                earlier.update(p.identifier for p, _ in parts[0])
                earlier.update(i["identifier"] for i in parts[2])
                ready = (group, token, exhausted, parts)
                del group, parts
                if not hand(ready):
                    return
                del ready
                if exhausted:
                    break
            hand(_END)
        except BaseException as exc:  # handed over whole: the reader raises it
            hand(_ReadFailed(exc))
        finally:
            close = getattr(groups, "close", None)
            if callable(close):
                close()  # the PIM's page iterator ends in the thread that ran it

    worker = threading.Thread(
        target=contextvars.copy_context().run,  # the run's log context
        args=(produce,),
        name="pimsync-read-ahead",
        daemon=True,
    )
    worker.start()

    def ready() -> Generator[_Ready, None, None]:
        while True:
            try:
                item = handoff.get(timeout=1.0)
            except queue.Empty:
                if worker.is_alive() or not handoff.empty():
                    continue
                raise RuntimeError("the PIM read-ahead thread ended without a word") from None
            taken.set()
            if item is _END:
                return
            if item.__class__ is _ReadFailed:
                raise item.exc
            yield item
            del item

    items = ready()
    try:
        yield items
    finally:
        # the group handed over last is freed now, not when the reader's frame ends: after
        # the collector resumes, its first collection would walk it (~100 ms for 500 products)
        items.close()
        stop.set()
        taken.set()  # a thread waiting to hand over a group wakes and gives up at once
        worker.join()


def _refresh_definitions(ctx: SyncContext, source: Any, force: bool) -> None:
    now = ctx.now()
    with session_scope() as session:
        fetched_at = pim_repo.definitions_fetched_at(session)
        if fetched_at is not None and not force:
            age = (now - fetched_at).total_seconds()
            if age < ctx.settings.definitions_refresh_seconds:
                return
    invalidate = getattr(source, "invalidate_definitions", None)
    if callable(invalidate):
        invalidate()  # a long-lived worker's PIM client must not keep stale definitions
    data = source.definitions().to_dict()
    with session_scope() as session:
        digest = pim_repo.save_definitions(session, data, source.name, now)
    log.info("definitions_refreshed", source=source.name, hash=digest)


def _commit_group(
    ctx: SyncContext,
    run_id: uuid.UUID,
    lease: str,
    group: list[Page],
    token: str | None,
    exhausted: bool,
    identifier_attribute: str = "sku",
    parts: _Parts | None = None,
) -> bool:
    """One transaction: the pages' products in the mirror, their units planned, the token
    saved. False when the run stopped (aborted, cancelled, lease lost): nothing is written
    by a reader whose lease another reader of the run holds now (its fencing token).
    ``parts``: the group as _prepare_group judged it (by the read-ahead thread)."""
    settings = ctx.settings
    good, bad, known = parts if parts is not None else _prepare_group(group, identifier_attribute)
    now = ctx.now()
    with session_scope() as session:
        run = repo.get_run(session, run_id, for_update=True)
        if run is None or run.status != RUNNING:
            return False
        # under the run's row lock: two readers of one run cannot both pass this
        if not repo.renew_lock(
            session, runs.ingest_lease(run_id), run_id, runs.ingest_lease_ttl(settings), now, lease
        ):
            log.warning("ingest_lease_lost", reason="another reader of this run holds it now")
            return False
        children = [c for c in repo.child_runs(session, run_id) if c.status == RUNNING]
        # Lock order everywhere: run row, then batch rows, then lease rows (publish tasks
        # do the same); so leases are only *read* here and renewed after planning.
        taken_over = set()
        for child in children:
            holder = repo.lock_holder(session, runs.run_lock(child))
            if holder is None or holder.run_id != child.id:
                runs.abandon(session, ctx, child.id, "its lease was taken over by another run")
                taken_over.add(child.id)
        # an abandoned channel run gets no batch (its open ones were just closed)
        children = [c for c in children if c.id not in taken_over]
        if run.kind == DELTA and not repo.renew_lock(
            session, runs.DELTA_INGEST_LOCK, run.id, ctx.lock_ttl(), now
        ):
            runs.abandon(session, ctx, run.id, "its lease was taken over by another run")
            return False
        if run.kind == FULL and not children:
            repo.finish_run(
                session,
                run,
                COMPLETED if exhausted else "cancelled",
                now,
                error=None if exhausted else "no channel run left to feed",
            )
            return False

        pim_repo.upsert_products(session, good, run_id, now)
        pim_repo.mark_seen(session, [i["identifier"] for i in known], run_id, now)
        _record_rejects(session, run_id, bad, now)
        # every product read counts, changed or not (the ownership table may have changed)
        _record_violations(
            session,
            ctx,
            [(p.identifier, p.values) for p, _ in good]
            + [(i["identifier"], i.get("values") or {}) for i in known],
            now,
        )
        skus = [p.identifier for p, _ in good] + [i["identifier"] for i in known]
        # every channel's batch of this group: one message, the products decoded once
        group_key = f"{run_id}:{run.read}"
        run.read += len(skus) + len(bad)
        run.rejected += len(bad)
        run.resume_token = token
        run.heartbeat_at = now
        _record_progress(run, group, now)
        if run.kind == FULL:
            current = _up_to_date(session, ctx, [c.channel or "" for c in children], known)
            for child in children:
                same = current.get(child.channel or "", set())
                todo = [s for s in skus if s not in same] if same else skus
                _plan_batches(
                    session,
                    ctx,
                    child,
                    todo,
                    failed=len(bad),
                    group_key=group_key,
                    unchanged=len(skus) - len(todo),
                )
                repo.renew_lock(session, runs.run_lock(child), child.id, ctx.lock_ttl(), now)
        log.debug(
            "ingest_page",
            run_id=str(run_id),
            kind=run.kind,
            products=len(skus),
            unchanged=len(known),
            rejected=len(bad),
            read=run.read,
        )
        if exhausted and run.read and run.rejected >= run.read:
            # Nothing of the PIM could be read: finishing would publish nothing and (a full
            # sync) call every product an orphan. Usually the identifier attribute is wrong.
            runs.fail_ingest_run(
                session,
                ctx,
                run,
                f"every product read ({run.read:,}) was rejected (identifier attribute "
                f"{identifier_attribute!r}; set PIMSYNC_IDENTIFIER_ATTRIBUTE if the SKU is "
                f"elsewhere); first reason: {bad[0][1] if bad else 'see pimsync dead-letters'}",
            )
        elif exhausted:
            _finish_ingest(session, ctx, run, children)
    with session_scope() as session:
        # the tables this read is filling up
        analyze_if_stale(
            session, ("pim_product", "channel_product", "sync_batch"), share=HOT_PATH_SHARE
        )
    return True


def _record_progress(run: SyncRun, group: list[Page], now: datetime) -> None:
    """The read's expected total (from the first page that carries one: the PIM's
    ``items_count``, a file's count) and when it last moved, in the run's details (under the
    run's row lock). ``heartbeat_at`` is not that: the sweeper touches it when it resends."""
    details = dict(run.details or {})
    total = next((p.total for p in group if p.total is not None), None)
    if total is not None and "total" not in details:
        details["total"] = total
    details["progress_at"] = now.isoformat()
    details.pop("waiting", None)  # the PIM answers again (app.sync.runs.defer_read)
    run.details = details


def _record_rejects(
    session: Session, run_id: uuid.UUID, bad: list[tuple[str, str]], now: datetime
) -> None:
    if not bad:
        return
    refs = [ref for ref, _ in bad if ref != "?"]
    # A malformed payload of a product the mirror knows: it exists in the PIM, no orphan.
    pim_repo.mark_seen(session, refs, run_id, now)
    repo.upsert_dead_letters(
        session,
        [repo.rejected_product(ref, m, run_id, now) for ref, m in dict(bad).items()],
    )
    for ref, message in bad:
        log.warning("product_rejected", run_id=str(run_id), sku=ref, error=message)


def _record_violations(
    session: Session,
    ctx: SyncContext,
    products: list[tuple[str, dict[str, Any]]],
    now: datetime,
) -> None:
    """Domains the PIM carried but does not own, counted once per product (not per channel);
    ``products`` are (identifier, values)."""
    if not products:
        return
    ownership = REGISTRY.ownership(ctx.settings)
    defs, _ = REGISTRY.definitions(session)
    tallies: dict[tuple[str, str, str], Tally] = {}
    memo: dict[str, Violation | None] = {}
    for identifier, values in products:
        for v in ownership.foreign_attributes("pim", values, defs, memo):
            tallies.setdefault((v.source, v.domain, v.attribute), Tally()).add(identifier)
    mapping_repo.record_violations(session, tallies, now)


def _up_to_date(
    session: Session, ctx: SyncContext, channels: list[str], known: list[dict[str, Any]]
) -> dict[str, set[str]]:
    """Of the products the mirror already holds unchanged, those whose row in each channel
    was decided from this very content by the channel's current runtime (configuration,
    contract, definitions, ownership): their publish would find them unchanged
    (``publish.up_to_date``) and write nothing, so they are counted unchanged at planning and
    get no batch. A warm full sync then sends no publish message at all."""
    if not known or not channels:
        return {}
    skus = [item["identifier"] for item in known]
    heads = pim_repo.heads(session, skus)
    states = channel_repo.load_states(session, channels, skus)
    found: dict[str, set[str]] = {}
    definitions = REGISTRY.definitions(session)  # read once for every channel
    for channel in channels:
        try:
            rt = REGISTRY.runtime(session, ctx.settings, channel, definitions)
        except ChannelUnavailable:
            continue  # its batches stop the run, saying why
        same = set()
        for sku in skus:
            head = heads.get(sku)
            if (
                head is not None
                and head.removed_at is None
                and up_to_date(states.get((channel, sku)), rt, head.content_hash)
            ):
                same.add(sku)
        found[channel] = same
    return found


def _plan_batches(
    session: Session,
    ctx: SyncContext,
    child: SyncRun,
    skus: list[str],
    failed: int = 0,
    group_key: str | None = None,
    unchanged: int = 0,
) -> SyncRun:
    size = ctx.settings.publish_batch_size
    chunks = [skus[i : i + size] for i in range(0, len(skus), size)]
    ids = repo.create_batches(session, child.id, child.channel or "", chunks, group_key=group_key)
    # Counters move in SQL (x = x + n): publish tasks decrement the same row concurrently, and
    # an ORM read-modify-write here would lose their updates.
    child = repo.add_counts(
        session,
        child.id,
        ctx.now(),
        # the products the read refused are units of the channel too, decided (failed) here:
        # planned as such, so that a finished run's processed equals its planned_units; so
        # are the units found up to date (_up_to_date), decided here
        planned_units=len(skus) + failed + unchanged,
        unchanged=unchanged,
        planned_batches=len(ids),
        pending_batches=len(ids),
        failed=failed,
    )
    if ids:  # with none, the batches in flight release the rest as they finish
        released = repo.release_batches(
            session, child.id, ctx.settings.channel_inflight_batches, ctx.now()
        )
        ctx.enqueue_publish(session, released)
    return child


def _finish_ingest(
    session: Session, ctx: SyncContext, run: SyncRun, children: list[SyncRun]
) -> None:
    now = ctx.now()
    repo.release_lock(session, runs.ingest_lease(run.id), run.id)
    if run.kind == DELTA:
        if run.cursor_to:
            repo.set_cursor(session, runs.INGEST_CURSOR, run.cursor_to, now, run.id)
        repo.release_lock(session, runs.DELTA_INGEST_LOCK, run.id)
        repo.finish_run(session, run, COMPLETED, now)
        # one message plans every channel: their batches of the same SKUs travel together
        codes = configured_channels(ctx.settings)
        after_commit(session, partial(ctx.dispatcher.catch_up, codes, run.id, DELTA))
        log.info(
            "delta_ingest_complete",
            phase="read",
            run_id=str(run.id),
            read=run.read,
            rejected=run.rejected,
            cursor=run.cursor_to,
        )
        return
    repo.finish_run(session, run, COMPLETED, now)
    log.info(
        "full_ingest_complete",
        phase="read",
        run_id=str(run.id),
        read=run.read,
        rejected=run.rejected,
        channels=[c.channel for c in children],
    )
    # The export held everything updated before this run started: a delta may start there
    # (products updated while it read are newer than its start, so the next delta sees them).
    if run.rejected == 0:
        current = repo.get_cursor(session, runs.INGEST_CURSOR)
        started = run.started_at.isoformat()
        if current is None or datetime.fromisoformat(current) < run.started_at:
            repo.set_cursor(session, runs.INGEST_CURSOR, started, now, run.id)
    for child in children:
        # Under the row lock, with the counters as committed: the last publish task may have
        # finished before planning did (then this finalises) or finishes after (then it does).
        repo.mark_planning_done(session, child.id)
        fresh = repo.get_run(session, child.id)
        if fresh is None:  # created by this run's planning: only a deleted row gets here
            raise RuntimeError(f"channel run {child.id} of ingest {run.id} no longer exists")
        session.refresh(fresh)
        finalize_if_done(session, ctx, fresh)
