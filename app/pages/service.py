"""The rules of the Product Page Service: projecting catalog changes and domain events,
and reconciliation from snapshots. Services flush; the caller's session scope commits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.channels.models import ChannelProduct
from app.db import among
from app.logging import get_logger
from app.metrics import EVENTS_APPLIED, PROJECTION_LAG
from app.ownership import OwnershipError, OwnershipTable
from app.pages.repository import Projection, apply_projections
from app.pages.schemas import DomainEvent
from app.pages.snapshots import SnapshotRecord

log = get_logger("pimsync.pages")
BATCH = 1000


def catalog_projections(session: Session, changes: Mapping[str, Sequence[str]]) -> list[Projection]:
    """The channel catalog's current rows ({channel: skus}) as catalog projections (version
    = row version), read in one statement."""
    cp = ChannelProduct
    wanted = [and_(cp.channel == ch, among(session, cp.sku, skus)) for ch, skus in changes.items()]
    if not wanted:
        return []
    rows = session.execute(
        select(cp.channel, cp.sku, cp.version, cp.doc, cp.enabled, cp.status).where(or_(*wanted))
    ).all()
    return [Projection(r.channel, r.sku, int(r.version), r.doc, r.enabled, r.status) for r in rows]


def apply_catalog(session: Session, changes: Mapping[str, Sequence[str]], now: datetime) -> int:
    """Project committed channel catalog changes ({channel: skus}) onto product pages."""
    written = apply_projections(session, "catalog", catalog_projections(session, changes), now)
    total = sum(len(skus) for skus in changes.values())
    EVENTS_APPLIED.labels("catalog", "applied").inc(len(written))
    EVENTS_APPLIED.labels("catalog", "stale").inc(max(0, total - len(written)))
    return len(written)


def check_ownership(table: OwnershipTable, source: str, events: Iterable[DomainEvent]) -> None:
    """Refuse events of a domain ``source`` does not own (raises OwnershipError)."""
    for domain in {e.type for e in events}:
        table.check(source, domain)


def apply_events(
    session: Session,
    events: Sequence[DomainEvent],
    channels: Sequence[str],
    now: datetime,
) -> dict[str, int]:
    """Apply pricing/inventory/media events; an event for every channel (channel None) is
    projected onto each of ``channels``. Returns counts of applied and stale events."""
    by_domain: dict[str, list[Projection]] = {}
    for e in events:
        if e.type == "catalog":
            raise OwnershipError("external", "catalog", "pimsync (from the PIM)")
        targets = [e.channel] if e.channel else channels
        for ch in targets:
            by_domain.setdefault(e.type, []).append(
                Projection(ch, e.sku, e.source_version, e.payload)
            )
    counts = {"applied": 0, "stale": 0}
    for domain, projections in sorted(by_domain.items()):
        written = apply_projections(session, domain, projections, now)
        counts["applied"] += len(written)
        counts["stale"] += len(projections) - len(written)
        EVENTS_APPLIED.labels(domain, "applied").inc(len(written))
        EVENTS_APPLIED.labels(domain, "stale").inc(len(projections) - len(written))
    for e in events:
        PROJECTION_LAG.labels(e.type).observe(max(0.0, (now - e.occurred_at).total_seconds()))
    return counts


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def reconcile_catalog(session_scope_factory: Any, now: datetime) -> int:
    """Rebuild catalog projections from the channel catalog; returns pages corrected."""
    corrected = 0
    last: tuple[str, str] | None = None
    cp = ChannelProduct
    while True:
        with session_scope_factory() as session:
            q = select(cp.channel, cp.sku, cp.version, cp.doc, cp.enabled, cp.status)
            if last is not None:
                q = q.where((cp.channel > last[0]) | ((cp.channel == last[0]) & (cp.sku > last[1])))
            rows = session.execute(q.order_by(cp.channel, cp.sku).limit(BATCH)).all()
            if not rows:
                return corrected
            projections = [
                Projection(r.channel, r.sku, int(r.version), r.doc, r.enabled, r.status)
                for r in rows
            ]
            corrected += len(apply_projections(session, "catalog", projections, now, repair=True))
            last = (rows[-1].channel, rows[-1].sku)


def reconcile_records(
    session_scope_factory: Any,
    domain: str,
    records: Iterable[SnapshotRecord],
    channels: Sequence[str],
    now: datetime,
) -> int:
    """Rebuild a domain's projections from its snapshot records; returns pages corrected."""
    corrected = 0
    for chunk in _chunks(records, BATCH):
        projections = [
            Projection(ch, r["sku"], r["source_version"], r["payload"])
            for r in chunk
            for ch in ([r["channel"]] if r["channel"] else channels)
        ]
        with session_scope_factory() as session:
            corrected += len(apply_projections(session, domain, projections, now, repair=True))
    return corrected


def reconcile(settings: Any, domains: Sequence[str] | None = None, trigger: str = "cli") -> Any:
    """Rebuild projections from each domain's snapshot and count what was corrected.

    Uses the same version guard as events (plus: same version, different content is a
    corrupted document and is repaired), so it never overwrites a newer event that arrived
    meanwhile. Recorded as a ``reconcile`` run with the corrected count per domain.
    """
    from app.db import session_scope, utcnow
    from app.pages.snapshots import open_snapshot
    from app.sync import repository as sync_repo
    from app.sync.models import COMPLETED, FAILED
    from app.sync.runtime import REGISTRY

    wanted = list(domains or ["catalog", *sorted(settings.snapshot_sources)])
    unknown = [d for d in wanted if d not in ("catalog", "pricing", "inventory", "media")]
    if unknown:
        raise ValueError(f"unknown domain(s) {', '.join(unknown)}")
    missing = [d for d in wanted if d != "catalog" and d not in settings.snapshot_sources]
    if missing:
        raise ValueError(
            f"no snapshot configured for {', '.join(missing)} (PIMSYNC_SNAPSHOT_SOURCES)"
        )
    now = utcnow()
    with session_scope() as session:
        run_id = sync_repo.create_run(session, "reconcile", None, now, trigger=trigger).id
    channels = sorted(REGISTRY.channels(settings))
    corrected: dict[str, int] = {}
    status, error = COMPLETED, None
    try:
        for domain in wanted:
            if domain == "catalog":
                corrected[domain] = reconcile_catalog(session_scope, now)
            else:
                reader = open_snapshot(
                    settings.snapshot_sources[domain],
                    settings.snapshot_token.get_secret_value() or None,
                )
                corrected[domain] = reconcile_records(
                    session_scope, domain, reader.records(), channels, now
                )
            log.info(
                "reconcile_domain", run_id=str(run_id), domain=domain, corrected=corrected[domain]
            )
    except Exception as exc:
        status, error = FAILED, f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with session_scope() as session:
            run = sync_repo.get_run(session, run_id)
            assert run is not None
            run.details = {"corrected": corrected}
            run.synced = sum(corrected.values())
            sync_repo.finish_run(session, run, status, utcnow(), error)
        log.info("reconcile_complete", run_id=str(run_id), corrected=corrected, status=status)
    return run
