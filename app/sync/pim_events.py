"""Event-driven sync: Akeneo's change events, accepted once, coalesced per product, applied.

Both formats Akeneo delivers are understood: the Events API (``{"events": [...]}`` carrying
the product) and the Event Platform (CloudEvents carrying the product's uuid). Accepting an
event records its id (a redelivery does nothing) and adds to the product's pending work; a
burst of events for one product leaves one pending row and one task, which takes the newest
payload (or fetches the product once) and publishes it to every channel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, Table, case, delete, or_, select, update
from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.channels.models import PUBLISHED, REMOVED
from app.db import after_commit, dialect_insert, session_scope
from app.errors import InputError
from app.logging import get_logger
from app.pages.models import PendingSku, WebhookEvent
from app.pim import repository as pim_repo
from app.pim.models import PimProduct
from app.pim.product import ProductParseError, content_hash, parse_datetime, parse_product
from app.sync import repository as repo
from app.sync.context import SyncContext
from app.sync.runtime import REGISTRY, ChannelUnavailable

log = get_logger("pimsync.events")

UPSERT, REMOVE = "upsert", "remove"


class EventFormatError(InputError):
    """A webhook body that is JSON but not an Akeneo event payload."""


@dataclass(slots=True)
class PimEvent:
    event_id: str
    kind: str  # product.upsert | product.remove | model.upsert | model.remove
    key: str  # SKU, "uuid:<uuid>" or a product model code
    product: dict[str, Any] | None = None
    event_time: datetime | None = None


def _time(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return parse_datetime(value)
        except ValueError:
            return None
    return None


def parse_events_api(body: Any) -> list[PimEvent]:
    """The Events API: ``{"events": [{action, event_id, event_datetime, data: {resource}}]}``."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise EventFormatError('expected {"events": [...]}')
    out = []
    for i, e in enumerate(body["events"]):
        if not isinstance(e, dict):
            raise EventFormatError(f"events[{i}] is not an object")
        action, event_id = e.get("action"), e.get("event_id")
        resource = (
            (e.get("data") or {}).get("resource") if isinstance(e.get("data"), dict) else None
        )
        if not isinstance(action, str) or not isinstance(event_id, str) or not event_id:
            raise EventFormatError(f"events[{i}] needs `action` and `event_id`")
        if not isinstance(resource, dict):
            raise EventFormatError(f"events[{i}] has no data.resource")
        subject, _, verb = action.partition(".")
        when = _time(resource.get("updated")) or _time(e.get("event_datetime"))
        if subject == "product":
            ident = resource.get("identifier")
            key = ident if isinstance(ident, str) and ident else _uuid_key(resource.get("uuid"), i)
            if verb == "removed":
                out.append(PimEvent(event_id, "product.remove", key, None, when))
            elif verb in ("created", "updated"):
                out.append(PimEvent(event_id, "product.upsert", key, resource, when))
            else:
                raise EventFormatError(f"events[{i}]: unknown action {action!r}")
        elif subject == "product_model":
            code = resource.get("code")
            if not isinstance(code, str) or not code:
                raise EventFormatError(
                    f"events[{i}]: a product model event needs data.resource.code"
                )
            out.append(
                PimEvent(
                    event_id,
                    "model.remove" if verb == "removed" else "model.upsert",
                    code,
                    None,
                    when,
                )
            )
        else:
            raise EventFormatError(f"events[{i}]: unknown action {action!r}")
    return out


def _uuid_key(value: Any, i: int) -> str:
    if not isinstance(value, str) or not value:
        raise EventFormatError(f"events[{i}]: the product has neither identifier nor uuid")
    return f"uuid:{value}"


def parse_cloudevents(body: Any) -> list[PimEvent]:
    """The Event Platform: one CloudEvent (structured mode) or a list of them."""
    items = body if isinstance(body, list) else [body]
    out = []
    for i, e in enumerate(items):
        if not isinstance(e, dict):
            raise EventFormatError(f"event {i} is not an object")
        event_id, kind = e.get("id"), e.get("type")
        if not isinstance(event_id, str) or not event_id or not isinstance(kind, str):
            raise EventFormatError(f"event {i} needs `id` and `type` (CloudEvents)")
        data = e.get("data")
        if not isinstance(data, dict):
            data = {}
        when = _time(e.get("time"))
        name = kind.removeprefix("com.akeneo.pim.v1.")
        if name.endswith(".delta"):
            name = name.removesuffix(".delta")
        subject, _, verb = name.partition(".")
        if subject == "product":
            product = data.get("product")
            if not isinstance(product, dict):
                product = {}
            ident = product.get("identifier")
            key = ident if isinstance(ident, str) and ident else _uuid_key(product.get("uuid"), i)
            remove = verb in ("deleted", "removed")
            out.append(
                PimEvent(
                    event_id, "product.remove" if remove else "product.upsert", key, None, when
                )
            )
        elif subject in ("product-model", "product_model"):
            model = data.get("product_model") or data.get("product-model") or {}
            code = model.get("code") if isinstance(model, dict) else None
            if not isinstance(code, str) or not code:
                raise EventFormatError(f"event {i}: a product model event needs its code")
            remove = verb in ("deleted", "removed")
            out.append(
                PimEvent(event_id, "model.remove" if remove else "model.upsert", code, None, when)
            )
        # other types (completeness notifications...): acknowledged, nothing to do
    return out


# --- intake ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Intake:
    accepted: int = 0
    duplicates: int = 0
    new_keys: list[str] | None = None


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


def accept(session: Session, events: list[PimEvent], now: datetime) -> Intake:
    """Record events once and add them to per-product pending work (flushes, no commit).

    Returns the keys whose pending work is new: one task each, enqueued after commit.
    """
    result = Intake(new_keys=[])
    if not events:
        return result
    # Ids are stored cut to the column's 100 characters: compare them cut, too.
    ids = list(dict.fromkeys(e.event_id[:100] for e in events))
    stmt = _record_events(dialect_insert(session))
    # parameters apart from the statement (executemany): its compiled form is cached, where
    # a multi-row VALUES is compiled again for every delivery; the statement itself is built
    # once per dialect
    rows = [
        {"event_id": e.event_id[:100], "kind": e.kind, "subject": e.key[:255], "received_at": now}
        # sorted: concurrent intakes of overlapping batches lock ids in one order
        for e in sorted(
            {e.event_id[:100]: e for e in events}.values(), key=lambda e: e.event_id[:100]
        )
    ]
    fresh = set(session.execute(stmt, rows).scalars())
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
        result.new_keys = _add_pending(session, list(work.values()), now)
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


def _add_pending(session: Session, items: list[PimEvent], now: datetime) -> list[str]:
    """Add each product's work to its pending row; returns the keys whose row is new (they
    need a task; an existing row has one coming).

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
            "first_event_at": now,
        }
        for e in sorted(items, key=lambda e: e.key)
    ]
    stmt = _add_pending_statement(dialect_insert(session))
    # a row counts 1 event only when this statement inserted it
    return sorted(key for key, events in session.execute(stmt, rows).all() if events == 1)


# --- processing ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Work:
    key: str
    action: str
    product: dict[str, Any] | None
    events: int  # as claimed: the row goes only if no event arrived since


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
        claimed = _claim(session, key, due, ctx.settings.event_batch_max - 1, now)
    if not claimed:
        return "nothing pending"
    for w in claimed:
        if w.action == UPSERT and w.product is None:
            w.product = _fetch(ctx, w.key)  # once, however many events were coalesced
            if w.product is None:
                w.action = REMOVE
    with session_scope() as session:
        outcomes = _apply_work(session, ctx, claimed, now)
        done = set(
            session.execute(
                delete(PendingSku)
                .where(
                    or_(
                        *(
                            (PendingSku.key == w.key) & (PendingSku.events == w.events)
                            for w in claimed
                        )
                    )
                )
                .returning(PendingSku.key)
            ).scalars()
        )
        again = sorted(w.key for w in claimed if w.key not in done)
        if again:
            # Events arrived while this ran: unclaimed, the work is due for the next task of
            # any product (a claimed row would wait for its own message, at the back of the
            # queue); and one more task, so that some task comes.
            session.execute(
                update(PendingSku)
                .where(PendingSku.key.in_(again))
                .values(claimed_at=None, claimed_events=None)
            )

            def send_again() -> None:
                for k in again:
                    ctx.dispatcher.pim_product(k)

            after_commit(session, send_again)
    outcome = outcomes.get(key, "nothing pending")
    others = len(claimed) - (key in outcomes)
    return f"{outcome} (and {others} more product(s))" if others else outcome


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


def _claim(session: Session, key: str, due: datetime, extra: int, now: datetime) -> list[_Work]:
    """Claim this key's pending row, then up to ``extra`` other due, unclaimed ones. The
    others are taken with SKIP LOCKED: rows another task holds are skipped, never waited for,
    so two tasks claiming at once cannot deadlock (each waits at most for its own key)."""
    t = cast(Table, PendingSku.__table__)
    returning = (t.c.key, t.c.action, t.c.product, t.c.events)
    claim = update(t).values(claimed_at=now, claimed_events=t.c.events).returning(*returning)
    rows = list(session.execute(claim.where(t.c.key == key)).all())
    if extra > 0:
        others = due_unclaimed(key, due, extra)
        rows += session.execute(claim.where(t.c.key.in_(others.scalar_subquery()))).all()
    work = [_Work(r.key, r.action, r.product, int(r.events)) for r in rows]
    return sorted(work, key=lambda w: w.key)


def _apply_work(
    session: Session, ctx: SyncContext, work: list[_Work], now: datetime
) -> dict[str, str]:
    """Removals, then every upsert: one mirror write, one publish to every channel."""
    outcomes = _remove(session, ctx, [w.key for w in work if w.action == REMOVE], now)
    parsed = []
    rejected = []
    for w in work:
        if w.action != UPSERT:
            continue
        try:
            parsed.append((w.key, parse_product(w.product, ctx.settings.identifier_attribute)))
        except ProductParseError as exc:
            rejected.append(repo.rejected_product(exc.product_ref, str(exc), None, now))
            log.warning("product_rejected", key=w.key, error=str(exc))
            outcomes[w.key] = "rejected"
    repo.upsert_dead_letters(session, rejected)  # one statement for the batch's rejects
    # Same content, or older than what the mirror holds (by the PIM's `updated`): unchanged.
    changed = pim_repo.upsert_products(
        session, [(p, content_hash(p.raw)) for _, p in parsed], None, now
    )
    skus = sorted({p.identifier for _, p in parsed if p.identifier in changed})
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


def _publish(session: Session, ctx: SyncContext, skus: list[str]) -> dict[str, Any]:
    from app.sync.publish import publish_channels

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


def _fetch(ctx: SyncContext, key: str) -> dict[str, Any] | None:
    source = ctx.source()
    if key.startswith("uuid:"):
        get_by_uuid = getattr(source, "get_by_uuid", None)
        if get_by_uuid is None:
            raise RuntimeError(f"the PIM source {source.name} cannot fetch by uuid")
        return get_by_uuid(key[5:])  # type: ignore[no-any-return]
    return source.get(key)


def _identifiers(session: Session, keys: list[str]) -> dict[str, str]:
    """The SKU of each key (``uuid:<uuid>`` keys looked up in the mirror, in one query)."""
    found = {k: k for k in keys if not k.startswith("uuid:")}
    uuids = {k[5:]: k for k in keys if k.startswith("uuid:")}
    if uuids:
        for uuid, identifier in session.execute(
            select(PimProduct.uuid, PimProduct.identifier).where(PimProduct.uuid.in_(list(uuids)))
        ).all():
            if uuid is not None:
                found[uuids[uuid]] = identifier
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
