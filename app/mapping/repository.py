"""All SQL of drift and ownership records: counted upserts, one row per key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import dialect_insert
from app.mapping.models import DriftEvent, OwnershipViolation


@dataclass(slots=True)
class Tally:
    count: int = 0
    sample_sku: str | None = None

    def add(self, sku: str, n: int = 1) -> None:
        self.count += n
        if self.sample_sku is None:
            self.sample_sku = sku


def record_drift(
    session: Session,
    contract_id: str,
    contract_version: int,
    channel: str,
    strategy: str,
    tallies: Mapping[str, Tally],
    now: datetime,
) -> None:
    """Add a batch's drift counts: one statement, one row per (contract version, attribute)."""
    if not tallies:
        return
    insert = dialect_insert(session)
    stmt = insert(DriftEvent)
    t = DriftEvent.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.contract_id, t.c.contract_version, t.c.attribute],
        set_={
            "count": t.c.count + stmt.excluded.count,
            "last_seen": stmt.excluded.last_seen,
            "strategy": stmt.excluded.strategy,
        },
    )
    session.execute(
        stmt,
        [
            {
                "contract_id": contract_id,
                "contract_version": contract_version,
                "attribute": attr,
                "channel": channel,
                "strategy": strategy,
                "count": tally.count,
                "first_seen": now,
                "last_seen": now,
                "sample_sku": tally.sample_sku,
            }
            # sorted: concurrent batches lock rows in the same order (no deadlocks)
            for attr, tally in sorted(tallies.items())
        ],
    )


def record_violations(
    session: Session,
    tallies: Mapping[tuple[str, str, str], Tally],
    now: datetime,
) -> None:
    """Add ownership violation counts keyed (source, domain, attribute)."""
    if not tallies:
        return
    insert = dialect_insert(session)
    stmt = insert(OwnershipViolation)
    t = OwnershipViolation.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.source, t.c.domain, t.c.attribute],
        set_={"count": t.c.count + stmt.excluded.count, "last_seen": stmt.excluded.last_seen},
    )
    session.execute(
        stmt,
        [
            {
                "source": source,
                "domain": domain,
                "attribute": attr,
                "count": tally.count,
                "first_seen": now,
                "last_seen": now,
                "sample_sku": tally.sample_sku,
            }
            for (source, domain, attr), tally in sorted(tallies.items())
        ],
    )


def list_drift(session: Session, since: datetime | None = None) -> list[DriftEvent]:
    q = select(DriftEvent).order_by(DriftEvent.first_seen.desc(), DriftEvent.attribute)
    if since is not None:
        q = q.where(DriftEvent.first_seen >= since)
    return list(session.execute(q).scalars())


def list_violations(session: Session) -> list[OwnershipViolation]:
    return list(
        session.execute(
            select(OwnershipViolation).order_by(OwnershipViolation.last_seen.desc())
        ).scalars()
    )
