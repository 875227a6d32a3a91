"""Reconciliation: product pages rebuilt from the channel catalog and from each domain's
snapshot (beat, nightly), through the same version guard as events, so a newer event that
arrived meanwhile always wins."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.config import Settings
from app.db import session_scope, utcnow
from app.logging import get_logger
from app.pages.repository import Projection, apply_projections
from app.pages.snapshots import SnapshotRecord, open_snapshot
from app.sync import repository as sync_repo
from app.sync.models import COMPLETED, FAILED, SyncRun
from app.sync.runtime import REGISTRY

log = get_logger("pimsync.pages")
# Pages rebuilt per transaction.
BATCH = 1000
ScopeFactory = Callable[[], AbstractContextManager[Session]]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def reconcile_catalog(session_scope_factory: ScopeFactory, now: datetime) -> int:
    """Rebuild catalog projections from the channel catalog; returns pages corrected."""
    corrected = 0
    last: tuple[str, str] | None = None
    while True:
        with session_scope_factory() as session:
            rows = channel_repo.catalog_rows_after(session, last, BATCH)
            if not rows:
                return corrected
            projections = [Projection(*row) for row in rows]
            corrected += len(apply_projections(session, "catalog", projections, now, repair=True))
            last = (rows[-1][0], rows[-1][1])


def reconcile_records(
    session_scope_factory: ScopeFactory,
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


def reconcile(
    settings: Settings, domains: Sequence[str] | None = None, trigger: str = "cli"
) -> SyncRun:
    """Rebuild projections from each domain's snapshot and count what was corrected.

    Uses the same version guard as events (plus: same version, different content is a
    corrupted document and is repaired), so it never overwrites a newer event that arrived
    meanwhile. Recorded as a ``reconcile`` run with the corrected count per domain.
    """
    wanted = list(domains or ["catalog", *sorted(settings.snapshot_sources)])
    unknown = [d for d in wanted if d not in ("catalog", "pricing", "inventory", "media")]
    if unknown:
        raise ValueError(f"unknown domain(s) {', '.join(unknown)}")
    missing = [d for d in wanted if d != "catalog" and d not in settings.snapshot_sources]
    if missing:
        raise ValueError(
            f"no snapshot configured for {', '.join(missing)} (PIMSYNC_SNAPSHOT_SOURCES)"
        )
    if settings.snapshot_token.get_secret_value():
        raise ValueError(
            "PIMSYNC_SNAPSHOT_TOKEN was one credential for every system of record (each "
            "snapshot source received the others'); set PIMSYNC_SNAPSHOT_TOKENS to "
            '{"pricing": "<ERP token>", "inventory": "<WMS token>", ...} instead'
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
                token = settings.snapshot_tokens.get(domain)
                reader = open_snapshot(
                    settings.snapshot_sources[domain],
                    token.get_secret_value() if token else None,
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
