"""Projecting onto product pages: committed channel catalog changes (catalog events) and the
pricing, inventory and media events of their systems of record. Flushes; the caller's session
scope commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.db import is_postgres
from app.logging import get_logger
from app.metrics import EVENTS_APPLIED, PROJECTION_LAG
from app.ownership import OwnershipError, OwnershipTable
from app.pages.repository import Projection, apply_projections, project_catalog_rows
from app.pages.schemas import DomainEvent
from app.textcheck import printable

log = get_logger("pimsync.pages")


def catalog_projections(session: Session, changes: Mapping[str, Sequence[str]]) -> list[Projection]:
    """The channel catalog's current rows ({channel: skus}) as catalog projections (version
    = row version), read in one statement."""
    return [Projection(*row) for row in channel_repo.catalog_rows(session, changes)]


def apply_catalog(session: Session, changes: Mapping[str, Sequence[str]], now: datetime) -> int:
    """Project committed channel catalog changes ({channel: skus}) onto product pages."""
    written = apply_projections(session, "catalog", catalog_projections(session, changes), now)
    total = sum(len(skus) for skus in changes.values())
    EVENTS_APPLIED.labels("catalog", "applied").inc(len(written))
    EVENTS_APPLIED.labels("catalog", "stale").inc(max(0, total - len(written)))
    return len(written)


def project_committed_with(
    session: Session, changes: Mapping[str, Sequence[str]], now: datetime
) -> int:
    """Project channel catalog changes ({channel: skus}) onto product pages inside the
    transaction that wrote them (the publish batch's), instead of a catalog event and a second
    transaction re-reading what was just written: the pages commit with the rows, under the
    same version guard as the catalog events' consumer. On PostgreSQL one INSERT ... SELECT
    (``project_catalog_rows``); elsewhere the consumer's own path."""
    if not is_postgres(session):
        return apply_catalog(session, changes, now)
    keys = sorted((channel, sku) for channel, skus in changes.items() for sku in set(skus))
    written = project_catalog_rows(session, keys, now)
    EVENTS_APPLIED.labels("catalog", "applied").inc(len(written))
    EVENTS_APPLIED.labels("catalog", "stale").inc(max(0, len(keys) - len(written)))
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


def validate_events(
    domain: str,
    bodies: Any,
    source: str,
    ownership: OwnershipTable,
    channels: Sequence[str],
    max_version: int = 2**53,
) -> tuple[list[DomainEvent], list[dict[str, Any]]]:
    """A queued message's events, each validated on its own (schema, meaning, ownership, a
    configured channel): the good ones, and a dead letter for each other one."""
    good: list[DomainEvent] = []
    refused: list[dict[str, Any]] = []
    items = bodies if isinstance(bodies, list) else [bodies]
    for i, raw in enumerate(items):
        try:
            event = DomainEvent.model_validate(raw)
            ownership.check(source, event.type)
            if event.type != domain:
                raise ValueError(f"a {event.type} event on the {domain} queue")
            if event.channel is not None and event.channel not in channels:
                raise ValueError(f"channel {event.channel!r} is not configured")
            if event.source_version > max_version:
                raise ValueError(
                    f"source_version {event.source_version} is past the highest accepted "
                    f"({max_version}, PIMSYNC_EVENT_MAX_SOURCE_VERSION)"
                )
        except (ValidationError, OwnershipError, ValueError) as exc:
            sku = raw.get("sku") if isinstance(raw, dict) else None
            refused.append(_event_letter(domain, sku, f"event {i} from {source}: {exc}"))
            continue
        good.append(event)
    return good, refused


def _event_letter(domain: str, sku: Any, error: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    shown = printable(sku, 255) if isinstance(sku, str) and sku else "<no sku>"
    return {
        "channel": f"events.{domain}",
        "sku": shown,
        "run_id": None,
        "kind": "event",
        "error_type": "InvalidEvent",
        "error": error[:4000],
        "permanent": True,
        "attempts": 1,
        "status": "open",
        "first_failed_at": now,
        "last_failed_at": now,
    }
