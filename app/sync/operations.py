"""Operator actions on the sync engine: replaying dead letters (publish units go back through
a replay run of their channel; rejected products are fetched from the PIM again)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.orm import Session

from app.logging import get_logger
from app.pim import repository as pim_repo
from app.pim.catalog import resolve_identifier_attribute
from app.pim.product import ProductParseError, content_hash, is_uuid, parse_product
from app.pim.source import SourceError
from app.sync import repository as repo
from app.sync.context import SyncContext
from app.sync.models import REPLAY
from app.sync.runtime import REGISTRY, configured_channels

log = get_logger("pimsync.sync")


def replay_dead_letters(
    session: Session,
    ctx: SyncContext,
    ids: list[int] | None = None,
    channel: str | None = None,
    limit: int = 10_000,
    from_pim: bool = False,
) -> dict[str, Any]:
    """Replay open dead letters: publish units go back through a replay run of their channel;
    rejected products are fetched from the PIM again. With ``from_pim``, the products of the
    publish units are fetched from the PIM first (the usual fix is made there): what the PIM
    holds now replaces the mirror's copy, a product the PIM no longer has is marked removed
    (its units disable it), one that still does not parse stays dead-lettered. A PIM that
    cannot be read raises ``SourceError`` and nothing is replayed."""
    letters = [
        dl
        for dl in repo.list_dead_letters(session, channel=channel, ids=ids, limit=limit)
        # a refused domain event has no copy here to send again: its system of record
        # sends it again (or reconciliation reads its snapshot); it stays open until then
        if dl.kind != "event"
    ]
    if not letters:
        return {"replayed": 0, "runs": [], "units": []}
    now = ctx.now()
    unreadable: dict[str, str] = {}
    if from_pim:
        wanted = sorted({dl.sku for dl in letters if dl.kind != "ingest"})
        unreadable = refetch_from_pim(session, ctx, wanted)
        letters = [dl for dl in letters if dl.sku not in unreadable or dl.kind == "ingest"]
    by_channel: dict[str, list[str]] = defaultdict(list)
    refetch: list[str] = []
    for dl in letters:
        if dl.kind == "ingest":
            refetch.append(dl.sku)
        else:
            by_channel[dl.channel].append(dl.sku)
    runs = []
    size = ctx.settings.publish_batch_size
    channels = set(configured_channels(ctx.settings))
    for code, skus in sorted(by_channel.items()):
        if code not in channels:
            continue
        run = repo.create_run(session, REPLAY, code, now, trigger="cli")
        chunks = [skus[i : i + size] for i in range(0, len(skus), size)]
        repo.create_batches(session, run.id, code, chunks)
        run.planned_units, run.planned_batches = len(skus), len(chunks)
        run.pending_batches, run.planning_done = len(chunks), True
        session.flush()
        released = repo.release_batches(session, run.id, ctx.settings.channel_inflight_batches, now)
        ctx.enqueue_publish(session, released)
        runs.append(run)
    refetched = _refetch(session, ctx, refetch) if refetch else 0
    replayed = repo.mark_replayed(session, [dl.id for dl in letters], now)
    log.info(
        "dead_letters_replayed", count=replayed, runs=[str(r.id) for r in runs], refetched=refetched
    )
    units = [(code, sku) for code, skus in sorted(by_channel.items()) for sku in skus]
    return {
        "replayed": replayed,
        "runs": runs,
        "refetched": refetched,
        "units": units,
        "still_malformed": unreadable,
    }


def refetch_from_pim(session: Session, ctx: SyncContext, identifiers: list[str]) -> dict[str, str]:
    """Fetch products from the PIM into the mirror (flushes): the current copy replaces the
    mirror's, a product the PIM no longer has is marked removed. Returns the ones the PIM
    gave that still do not parse, with why (they are left as they are)."""
    if not identifiers:
        return {}
    source = ctx.source()
    now = ctx.now()
    good = []
    gone: list[str] = []
    bad: dict[str, str] = {}
    identifier_attribute = resolve_identifier_attribute(
        ctx.settings.identifier_attribute, REGISTRY.definitions(session)[0]
    )
    for ident in identifiers:
        raw = _fetch_one(source, ident)  # SourceError propagates: nothing is replayed
        if raw is None:
            gone.append(ident)
            continue
        try:
            product = parse_product(raw, identifier_attribute)
        except ProductParseError as exc:
            bad[ident] = str(exc)
            log.warning("refetch_still_malformed", sku=ident, error=str(exc))
            continue
        good.append((product, content_hash(product.raw)))
    pim_repo.upsert_products(session, good, None, now)
    pim_repo.mark_removed(session, gone, now)
    log.info("replay_refetched", fetched=len(good), removed=len(gone), malformed=len(bad))
    return bad


def _refetch(session: Session, ctx: SyncContext, identifiers: list[str]) -> int:
    """Fetch rejected products again; what now parses goes into the mirror (delta publishes)."""
    source = ctx.source()
    good = []
    now = ctx.now()
    identifier_attribute = resolve_identifier_attribute(
        ctx.settings.identifier_attribute, REGISTRY.definitions(session)[0]
    )
    for ident in identifiers:
        try:
            raw = _fetch_one(source, ident)
        except SourceError as exc:
            log.warning("refetch_failed", sku=ident, error=str(exc))
            continue
        if raw is None:
            continue
        try:
            product = parse_product(raw, identifier_attribute)
        except ProductParseError as exc:
            log.warning("refetch_still_malformed", sku=ident, error=str(exc))
            continue
        good.append((product, content_hash(product.raw)))
    pim_repo.upsert_products(session, good, None, now)
    return len(good)


def _fetch_one(source: Any, key: str) -> dict[str, Any] | None:
    """A product by its SKU, or by its uuid when that is its key (a product without an
    identifier is mirrored, and refused, under its uuid)."""
    get_by_uuid = getattr(source, "get_by_uuid", None)
    if get_by_uuid is not None and is_uuid(key):
        return get_by_uuid(key)  # type: ignore[no-any-return]
    return source.get(key)  # type: ignore[no-any-return]
