"""Why a product is, or is not, online in each channel: the read model behind ``pimsync
explain`` and the dashboard's search box (both only render it).

It gathers what pimsync holds about one SKU (the mirror's copy and when it was read, each
channel's row with its status, reason and contract, the run that last published it, open dead
letters, the product page and its readiness) and evaluates the product again from the mirror
with the channel's configuration in force now (filters, then completeness per locale), so
the answer names the filter that excludes it or the attributes missing in each locale even
when the stored row is older than the configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.channels import repository as channel_repo
from app.channels.completeness import compute_completeness
from app.channels.filters import first_failing_filter
from app.channels.statuses import (
    DISABLED_IN_PIM,
    FILTERED,
    INCOMPLETE,
    ORPHAN,
    PUBLISHED,
    REMOVED,
)
from app.config import Settings
from app.pages import document
from app.pages import repository as pages_repo
from app.pim.models import PimProduct
from app.pim.product import Product
from app.sync import repository as sync_repo
from app.sync.runtime import REGISTRY, ChannelUnavailable

# verdicts, one per channel
ONLINE = "online"
NOT_ONLINE = "not online"
NEVER_SEEN = "never seen"


@dataclass(slots=True)
class PimFacts:
    """The mirror's copy: the PIM's own ``updated``, when pimsync last read it and when its
    content last changed, its content hash."""

    uuid: str | None
    family: str | None
    enabled: bool
    pim_updated: datetime | None
    last_read_at: datetime
    content_changed_at: datetime
    content_hash: str
    last_read_run: str | None
    removed_at: datetime | None


@dataclass(slots=True)
class LastPublish:
    run_id: str | None
    run_kind: str | None
    run_status: str | None
    at: datetime
    outcome: str  # the row's status as that publish left it


@dataclass(slots=True)
class DeadLetterFact:
    id: int
    channel: str
    kind: str
    error_type: str
    error: str
    attempts: int
    last_failed_at: datetime


@dataclass(slots=True)
class PageFacts:
    versions: dict[str, int]
    readiness: dict[str, bool]
    purchasable: bool
    catalog_enabled: bool
    updated_at: datetime


@dataclass(slots=True)
class ChannelExplanation:
    channel: str
    verdict: str
    reason: str
    status: str | None = None
    contract_applied: str | None = None
    contract_pinned: str | None = None
    completeness: int | None = None
    # completeness now, per locale: the required attributes without a value
    missing_by_locale: dict[str, list[str]] = field(default_factory=dict)
    failing_filter: str | None = None
    last_publish: LastPublish | None = None
    dead_letters: list[DeadLetterFact] = field(default_factory=list)
    page: PageFacts | None = None
    # the mirror holds a newer copy than the one this row was computed from
    newer_in_mirror: bool = False
    problem: str | None = None  # the channel cannot be evaluated (no contract, bad config)


@dataclass(slots=True)
class Explanation:
    sku: str
    known: bool
    pim: PimFacts | None
    channels: list[ChannelExplanation]
    # dead letters of the product itself, before any channel (a payload the PIM sent that
    # could not be read)
    read_errors: list[DeadLetterFact] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def explain(
    session: Session, settings: Settings, sku: str, channel: str | None = None
) -> Explanation:
    """What pimsync knows about ``sku`` in every configured channel (or just ``channel``:
    an unknown one raises ``LookupError`` naming the configured ones)."""
    configured = REGISTRY.channels(settings)
    if channel is not None and channel not in configured:
        raise LookupError(
            f"unknown channel {channel!r}; configured: {', '.join(sorted(configured))}"
        )
    codes = [channel] if channel is not None else sorted(configured)
    mirror = session.get(PimProduct, sku)
    letters = [_letter(dl) for dl in sync_repo.open_dead_letters_of(session, sku)]
    pim = _pim_facts(mirror) if mirror is not None else None
    product = Product.trusted(mirror.raw, sku) if mirror is not None else None
    out: list[ChannelExplanation] = []
    known = mirror is not None or bool(letters)
    for code in codes:
        row = channel_repo.get_row(session, code, sku)
        page = pages_repo.get_page(session, code, sku)
        known = known or row is not None or page is not None
        ex = ChannelExplanation(channel=code, verdict=NOT_ONLINE, reason="")
        config = configured[code]
        ex.contract_pinned = (
            f"{config.contract.id}@{config.contract.version}" if config.contract else None
        )
        ex.dead_letters = [dl for dl in letters if dl.channel == code]
        if page is not None:
            ex.page = PageFacts(
                versions=document.versions(page),
                readiness=document.readiness(page),
                purchasable=document.purchasable(page),
                catalog_enabled=bool(page.catalog_enabled),
                updated_at=page.updated_at,
            )
        if row is not None:
            ex.status, ex.contract_applied = row.status, row.contract_version
            ex.completeness = row.completeness
            run = sync_repo.get_run(session, row.sync_run_id) if row.sync_run_id else None
            ex.last_publish = LastPublish(
                run_id=str(row.sync_run_id) if row.sync_run_id else None,
                run_kind=run.kind if run else None,
                run_status=run.status if run else None,
                at=row.synced_at,
                outcome=row.status,
            )
            if mirror is not None and row.source_seq < mirror.change_seq:
                ex.newer_in_mirror = True
        if product is not None and mirror is not None and mirror.removed_at is None:
            _evaluate(session, settings, ex, product)
        ex.verdict, ex.reason = _verdict(ex, row, mirror)
        out.append(ex)
    read_errors = [dl for dl in letters if dl.channel == "*"]
    return Explanation(sku=sku, known=known, pim=pim, channels=out, read_errors=read_errors)


def _evaluate(
    session: Session, settings: Settings, ex: ChannelExplanation, product: Product
) -> None:
    """The product judged now, from the mirror, by the channel's configuration in force."""
    try:
        rt = REGISTRY.runtime(session, settings, ex.channel)
    except ChannelUnavailable as exc:
        ex.problem = str(exc)
        return
    ex.failing_filter = first_failing_filter(product, rt.channel, rt.defs)
    if ex.failing_filter is None:
        completeness = compute_completeness(product, rt.channel, rt.defs)
        ex.missing_by_locale = {
            loc: list(lc.missing) for loc, lc in completeness.per_locale.items() if lc.missing
        }
        if ex.completeness is None:
            ex.completeness = completeness.ratio


def _verdict(ex: ChannelExplanation, row: Any, mirror: PimProduct | None) -> tuple[str, str]:
    online = (
        row is not None
        and row.enabled
        and row.status == PUBLISHED
        and ex.page is not None
        and ex.page.catalog_enabled
    )
    # a newer copy that failed is said by its dead letter, not as "waiting"
    waiting = ex.newer_in_mirror and not ex.dead_letters
    pending = " (a newer copy from the PIM waits to be published)" if waiting else ""
    if online:
        failed = (
            f"; its latest update failed: {ex.dead_letters[0].error} (dead letter "
            f"{ex.dead_letters[0].id})"
            if ex.dead_letters
            else ""
        )
        return ONLINE, f"published with contract {row.contract_version}{pending}{failed}"
    if ex.dead_letters:
        dl = ex.dead_letters[0]
        return NOT_ONLINE, f"failed: {dl.error_type}: {dl.error} (dead letter {dl.id})"
    if row is None:
        if mirror is None:
            return NEVER_SEEN, "not in pimsync's copy of the PIM, never published here"
        if mirror.removed_at is not None:
            return NOT_ONLINE, "removed from the PIM before it was published here"
        return NOT_ONLINE, "read from the PIM but not published to this channel yet"
    status = row.status
    if status == PUBLISHED:
        return NOT_ONLINE, "published, but its product page is not built yet" + pending
    if status == FILTERED:
        name = (row.detail or {}).get("filter") or ex.failing_filter
        return NOT_ONLINE, f"excluded by the channel's filter {name!r}{pending}"
    if status == INCOMPLETE:
        if ex.missing_by_locale:
            missing = "; ".join(
                f"{loc}: {', '.join(attrs)}" for loc, attrs in sorted(ex.missing_by_locale.items())
            )
        else:
            missing = ", ".join((row.detail or {}).get("missing", [])) or "?"
        return NOT_ONLINE, f"incomplete ({row.completeness} %), missing {missing}{pending}"
    if status == DISABLED_IN_PIM:
        return NOT_ONLINE, f"disabled in the PIM{pending}"
    if status == REMOVED:
        return NOT_ONLINE, "removed from the PIM"
    if status == ORPHAN:
        return NOT_ONLINE, "not in the PIM's last full export (orphan)"
    return NOT_ONLINE, f"status {status}{pending}"


def _pim_facts(p: PimProduct) -> PimFacts:
    return PimFacts(
        uuid=p.uuid,
        family=p.family,
        enabled=p.enabled,
        pim_updated=p.updated,
        last_read_at=p.last_seen_at,
        content_changed_at=p.ingested_at,
        content_hash=p.content_hash,
        last_read_run=str(p.last_seen_run) if p.last_seen_run else None,
        removed_at=p.removed_at,
    )


def _letter(dl: Any) -> DeadLetterFact:
    return DeadLetterFact(
        id=dl.id,
        channel=dl.channel,
        kind=dl.kind,
        error_type=dl.error_type,
        error=dl.error,
        attempts=dl.attempts,
        last_failed_at=dl.last_failed_at,
    )
