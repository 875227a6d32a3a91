"""Event-driven sync: Akeneo's change events, accepted once, coalesced per product, applied.

Both formats Akeneo delivers are understood: the Events API (``{"events": [...]}`` carrying
the product) and the Event Platform (CloudEvents carrying the product's uuid). Accepting an
event records its id (a redelivery does nothing) and adds to the product's pending work; a
burst of events for one product leaves one pending row and one task, which takes the newest
payload (or fetches the product once) and publishes it to every channel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.channels.models import PUBLISHED, REMOVED
from app.db import after_commit, session_scope
from app.logging import get_logger
from app.pim import repository as pim_repo
from app.pim.catalog import identifier_attribute_problem, resolve_identifier_attribute
from app.pim.product import ProductParseError, content_hash, parse_product
from app.sync import repository as repo
from app.sync.context import SyncContext
from app.sync.pim_events import repository as events_repo
from app.sync.pim_events.formats import REMOVE, UPSERT, PimEvent
from app.sync.pim_events.repository import Work
from app.sync.publish import BatchResult, publish_channels
from app.sync.runtime import REGISTRY, ChannelUnavailable

log = get_logger("pimsync.events")


# --- intake ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Intake:
    accepted: int = 0
    duplicates: int = 0
    new_keys: list[str] | None = None
    # of new_keys, those not due at once (their product written within the window): seconds
    # until they are (the rest of the window since that write)
    waits: dict[str, float] = field(default_factory=dict)

    @property
    def due_now(self) -> set[str]:
        """Of new_keys, those due at once (their product not written within the window)."""
        return {k for k in self.new_keys or () if k not in self.waits}


def accept(session: Session, events: list[PimEvent], now: datetime, window: float = 0.0) -> Intake:
    """Record events once and add them to per-product pending work (flushes, no commit).

    Returns the keys whose pending work is new: one task each, enqueued after commit.

    Coalescing leads, then trails: the first event of a product the mirror has not written
    within the last ``window`` seconds is due at once (its task may run now, and any task
    takes it along), so a lone edit is not held back; events for a product written within
    the window wait until that window is over (one window after the write, not after the
    event), as one piece of work. A product edited continuously is thus applied about once
    per window, and a quiet one without delay.
    """
    result = Intake(new_keys=[])
    if not events:
        return result
    # Ids are stored cut to the column's 100 characters: compare them cut, too.
    ids = list(dict.fromkeys(e.event_id[:100] for e in events))
    rows = [
        {"event_id": e.event_id[:100], "kind": e.kind, "subject": e.key[:255], "received_at": now}
        # sorted: concurrent intakes of overlapping batches lock ids in one order
        for e in sorted(
            {e.event_id[:100]: e for e in events}.values(), key=lambda e: e.event_id[:100]
        )
    ]
    fresh = events_repo.record_events(session, rows)
    result.accepted = len(fresh)
    result.duplicates = len(ids) - len(fresh)
    work: dict[str, PimEvent] = {}
    for e in events:
        if e.event_id[:100] not in fresh:
            continue
        for item in _expand(session, e):
            prev = work.get(item.key)
            if prev is None or _newer(item.event_time, prev.event_time):
                work[item.key] = item
    if work:
        since = now - timedelta(seconds=window)
        written = events_repo.written_since(session, list(work), since) if window > 0 else {}
        # a row is dated by its product's write within the window (due one window after it;
        # a write dated ahead by another machine's clock counts as now), else one window back
        dated = {key: min(at, now) for key, at in written.items()}
        result.new_keys = _add_pending(session, list(work.values()), dated, since)
        result.waits = {
            key: (dated[key] - since).total_seconds() for key in result.new_keys if key in dated
        }
    return result


def _expand(session: Session, e: PimEvent) -> list[PimEvent]:
    """A product model event becomes work for every variant under the model."""
    if not e.kind.startswith("model."):
        return [e]
    kind = "product.remove" if e.kind == "model.remove" else "product.upsert"
    variants = pim_repo.variants_of_model(session, e.key)
    return [PimEvent(e.event_id, kind, sku, None, e.event_time) for sku in variants]


def _newer(a: datetime | None, b: datetime | None) -> bool:
    return a is None or b is None or a >= b


def _add_pending(
    session: Session,
    items: list[PimEvent],
    dated: Mapping[str, datetime],
    otherwise: datetime,
) -> list[str]:
    """Add each product's work to its pending row; returns the keys whose row is new (they
    need a task; an existing row has one coming). A new row is dated as ``dated`` says, else
    ``otherwise``; an existing row keeps its date.

    One statement for all the products, the "newest state wins" decided inside it: two
    intakes of the same product at once queue on the row lock and each compares against
    what the other committed (a read, then a write, would let an older payload overwrite a
    newer one that committed in between). Rows go in key order: one lock order for all."""
    if not items:
        return []
    rows = [
        {
            "key": e.key,
            "action": REMOVE if e.kind == "product.remove" else UPSERT,
            "product": e.product,
            "event_time": e.event_time,
            "events": 1,
            "first_event_at": dated.get(e.key, otherwise),
        }
        for e in sorted(items, key=lambda e: e.key)
    ]
    return events_repo.add_pending(session, rows)


# --- processing ------------------------------------------------------------------------------


def process(ctx: SyncContext, key: str) -> str:
    """Apply the pending work of one product: mirror, then every channel. Returns what it did.

    Other products' work that is due (its coalescing window over) and unclaimed goes along,
    up to ``event_batch_max`` products in one transaction: under a burst of webhooks the
    mirror write, the publish to every channel and the catalog event are shared, where each
    product used to pay for its own. Their own tasks then find nothing pending.

    Nothing is lost if this dies midway: the pending rows stay until the transaction that
    applied them commits, and a sweep sends them again.
    """
    now = ctx.now()
    due = now - timedelta(seconds=ctx.settings.event_coalesce_seconds)
    with session_scope() as session:
        claimed = events_repo.claim(session, key, due, ctx.settings.event_batch_max - 1, now)
    if not claimed:
        return "nothing pending"
    wanted = [w for w in claimed if w.action == UPSERT and w.product is None]
    if wanted:
        # once per product, however many events were coalesced and whichever way they
        # named it (a model event names its variants by SKU, the Event Platform by uuid)
        fetched = _fetch_all(ctx, [w.key for w in wanted])
        for w in wanted:
            w.product = fetched.get(w.key)
            if w.product is None:
                w.action = REMOVE
    with session_scope() as session:
        outcomes = _apply_work(session, ctx, claimed, now)
        done = events_repo.finish(session, claimed)
        again = sorted(w.key for w in claimed if w.key not in done)
        if again:
            # Events arrived while this ran: unclaimed, the work is due for the next task of
            # any product (a claimed row would wait for its own message, at the back of the
            # queue); and one more task, so that some task comes.
            events_repo.unclaim(session, again)

            def send_again() -> None:
                for k in again:
                    ctx.dispatcher.pim_product(k)

            after_commit(session, send_again)
    outcome = outcomes.get(key, "nothing pending")
    others = len(claimed) - (key in outcomes)
    return f"{outcome} (and {others} more product(s))" if others else outcome


def _apply_work(
    session: Session, ctx: SyncContext, work: list[Work], now: datetime
) -> dict[str, str]:
    """Removals, then every upsert: one mirror write, one publish to every channel."""
    outcomes = _remove(session, ctx, [w.key for w in work if w.action == REMOVE], now)
    parsed = []
    rejected = []
    defs = REGISTRY.definitions(session)[0]
    identifier_attribute = resolve_identifier_attribute(ctx.settings.identifier_attribute, defs)
    # a wrong setting would make every product look like one without an identifier
    problem = identifier_attribute_problem(identifier_attribute, defs)
    for w in work:
        if w.action != UPSERT:
            continue
        try:
            if problem is not None:
                raise ProductParseError(w.key, "identifier", problem)
            parsed.append((w.key, parse_product(w.product, identifier_attribute)))
        except ProductParseError as exc:
            rejected.append(repo.rejected_product(exc.product_ref, str(exc), None, now))
            log.warning("product_rejected", key=w.key, error=str(exc))
            outcomes[w.key] = "rejected"
    repo.upsert_dead_letters(session, rejected)  # one statement for the batch's rejects
    # Same content, or older than what the mirror holds (by the PIM's `updated`): unchanged.
    changed = pim_repo.upsert_products(
        session, [(p, content_hash(p.raw)) for _, p in parsed], None, now
    )
    # what changed, and the old SKUs of renamed products (retired: disabled by the publish)
    skus = sorted(changed)
    published: dict[str, int] = {}
    if skus:
        for res in _publish(session, ctx, skus).values():
            for change in res.changes:
                if change.status == PUBLISHED:
                    published[change.sku] = published.get(change.sku, 0) + 1
    for key, p in parsed:
        if p.identifier not in changed:
            outcomes[key] = "unchanged"
        else:
            outcomes[key] = f"published to {published.get(p.identifier, 0)} channel(s)"
    return outcomes


def _publish(session: Session, ctx: SyncContext, skus: list[str]) -> dict[str, BatchResult]:
    definitions = REGISTRY.definitions(session)  # read once for every channel
    runtimes = []
    for channel in sorted(REGISTRY.channels(ctx.settings)):
        try:
            runtimes.append(REGISTRY.runtime(session, ctx.settings, channel, definitions))
        except ChannelUnavailable as exc:
            log.warning("channel_unavailable", channel=channel, error=str(exc))
    # Every channel in one pass; one attempt: an unexpected error dead-letters the unit
    # (replayable) at once.
    return publish_channels(
        session, ctx, runtimes, None, skus, attempt=ctx.settings.publish_max_attempts
    )


def _fetch_all(ctx: SyncContext, keys: list[str]) -> dict[str, dict[str, Any] | None]:
    """The PIM's current state of each key's product (None: the PIM no longer has it).

    Keys are turned into uuids (SKUs through the mirror), so a product named twice in one
    batch (by SKU and by uuid) is fetched once; a source that searches by uuid
    (``get_many_by_uuid``: Akeneo's ``products-uuid`` with ``uuid IN``, 100 per request)
    gets every uuid in as few requests as that takes. SKUs the mirror does not know yet are
    fetched by SKU."""
    source = ctx.source()
    get_many = getattr(source, "get_many_by_uuid", None)
    get_by_uuid = getattr(source, "get_by_uuid", None)
    known: dict[str, str] = {}
    if get_many is not None or get_by_uuid is not None:
        with session_scope() as session:
            known = events_repo.uuids_of_identifiers(
                session, [k for k in keys if not k.startswith("uuid:")]
            )
    uuid_of = {k: (k[5:] if k.startswith("uuid:") else known.get(k)) for k in keys}
    uuids = sorted({u.lower() for u in uuid_of.values() if u})
    by_uuid: dict[str, dict[str, Any] | None] = {}
    if uuids and get_many is not None:
        found = get_many(uuids)
        by_uuid = {u: found.get(u) for u in uuids}
    elif uuids:
        if get_by_uuid is None:
            raise RuntimeError(f"the PIM source {source.name} cannot fetch by uuid")
        by_uuid = {u: get_by_uuid(u) for u in uuids}
    out: dict[str, dict[str, Any] | None] = {}
    for key in keys:
        uid = uuid_of[key]
        product = by_uuid.get(uid.lower()) if uid else None
        if product is None and not key.startswith("uuid:"):
            # unknown to the mirror, or deleted and created again under a new uuid
            product = source.get(key)
        out[key] = product
    return out


def _identifiers(session: Session, keys: list[str]) -> dict[str, str]:
    """The SKU of each key (``uuid:<uuid>`` keys looked up in the mirror, in one query)."""
    found = {k: k for k in keys if not k.startswith("uuid:")}
    by_uuid = events_repo.identifiers_of_uuids(
        session, [k[5:] for k in keys if k.startswith("uuid:")]
    )
    found.update({f"uuid:{u}": ident for u, ident in by_uuid.items()})
    return found


def _remove(session: Session, ctx: SyncContext, keys: list[str], now: datetime) -> dict[str, str]:
    """Removed products: flagged in the mirror, disabled in every channel (one statement
    each, whatever their number)."""
    if not keys:
        return {}
    skus = _identifiers(session, keys)
    removed = sorted(set(skus.values()))
    pim_repo.mark_removed(session, removed, now)
    changes = channel_repo.disable_skus(session, removed, REMOVED, REMOVED, None, now)
    ctx.notify_changes(session, changes)
    per_sku = Counter(c.sku for c in changes)
    for sku in removed:
        log.info("product_removed", sku=sku, channels=per_sku[sku])
    return {k: "removed" if k in skus else "removed (unknown product)" for k in keys}
