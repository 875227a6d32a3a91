"""The invariant every fault scenario ends with: nothing lost, nothing counted twice, nothing
different from a clean full sync, nothing left running or leased.

``check`` reads the stack's database (the one the settings point at) and returns, per
(channel, sku) of the PIM, how it is accounted for, so a scenario can assert exact outcomes on
top. It asserts:

1. every (sku, channel) of the PIM is accounted for exactly once: a ``channel_product`` row
   that says what happened (published; incomplete, filtered or disabled, each with its why) or
   an open dead letter with its reason (failed), never both, never neither; a row of a product
   the PIM does not hold is an orphan (disabled);
2. ``channel_product`` (status, doc, enabled per (channel, sku)) and the open dead letters
   (channel, sku, error) equal what a clean full sync from scratch produces on the same PIM
   data, run in this process on a second, empty database;
3. every finished channel run's counters are its rows: processed == planned_units for a
   completed one, failed == its dead letters (plus the products its read refused); the last
   run of each channel counts exactly the rows it wrote;
4. no run is left ``running`` and no lease is left in ``sync_lock``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.channels.models import ChannelProduct
from app.config import get_settings
from app.db import session_scope
from app.sync.models import COMPLETED, RUNNING, DeadLetter, SyncLock, SyncRun

FAILED_OUTCOME = "failed"
# a row of one of these statuses says why it is not published in its detail or reason
WHY_IN_DETAIL = ("incomplete", "filtered")
WHY_IN_REASON = ("disabled_in_pim", "orphan", "removed")


@dataclass
class Snapshot:
    rows: dict[tuple[str, str], ChannelProduct]
    letters: list[DeadLetter]
    runs: list[SyncRun]
    locks: list[SyncLock]

    @classmethod
    def read(cls) -> Snapshot:
        with session_scope() as s:
            rows = {(r.channel, r.sku): r for r in s.execute(select(ChannelProduct)).scalars()}
            letters = list(s.execute(select(DeadLetter).order_by(DeadLetter.id)).scalars())
            runs = list(s.execute(select(SyncRun).order_by(SyncRun.started_at)).scalars())
            locks = list(s.execute(select(SyncLock)).scalars())
            s.expunge_all()
        return cls(rows, letters, runs, locks)

    def open_letters(self) -> list[DeadLetter]:
        return [d for d in self.letters if d.status == "open"]

    def table(self) -> dict[tuple[str, str], tuple[str, Any, bool]]:
        return {k: (r.status, r.doc, r.enabled) for k, r in self.rows.items()}

    def letter_set(self) -> set[tuple[str, str, str]]:
        return {(d.channel, d.sku, d.error) for d in self.open_letters()}


@dataclass
class Outcome:
    """What ``check`` found: the outcome of every (channel, sku) and the snapshot it read."""

    by_unit: dict[tuple[str, str], str]
    snapshot: Snapshot
    why: dict[tuple[str, str], str] = field(default_factory=dict)

    def count(self, channel: str) -> Counter[str]:
        return Counter(o for (c, _s), o in self.by_unit.items() if c == channel)


def pim_products(catalog: Any) -> list[tuple[str, str]]:
    """(uuid, key) of every product the reference PIM serves now: the key is its identifier,
    or its uuid when it has none (pimsync keys such a product by its uuid)."""
    with catalog._lock:
        return sorted((uid, meta.identifier or uid) for uid, meta in catalog._meta.items())


def check(
    catalog: Any,
    reference: dict[tuple[str, str], tuple[str, Any, bool]] | None = None,
    reference_letters: set[tuple[str, str, str]] | None = None,
) -> Outcome:
    """Assert the invariant on the configured database; ``reference`` is the table (and
    ``reference_letters`` the open dead letters) of a clean full sync (``clean_sync``)."""
    from app.sync.runtime import configured_channels

    snap = Snapshot.read()
    channels = sorted(configured_channels(get_settings()))
    products = pim_products(catalog)

    # 4. nothing running, nothing leased
    running = [(r.kind, r.channel, r.status, r.error) for r in snap.runs if r.status == RUNNING]
    assert not running, f"runs left running: {running}"
    assert not snap.locks, f"leases left: {[(x.name, x.run_id) for x in snap.locks]}"

    # 1. every (sku, channel) accounted for exactly once
    letters: dict[tuple[str, str], list[DeadLetter]] = {}
    for d in snap.open_letters():
        letters.setdefault((d.channel, d.sku), []).append(d)
    assert all(len(v) == 1 for v in letters.values()), letters
    by_unit: dict[tuple[str, str], str] = {}
    why: dict[tuple[str, str], str] = {}
    seen: set[tuple[str, str]] = set()
    for uid, sku in products:
        refused = letters.get(("*", sku)) or letters.get(("*", uid))
        for channel in channels:
            found = []
            row = snap.rows.get((channel, sku))
            if row is not None:
                seen.add((channel, sku))
                found.append(row.status)
                why[(channel, sku)] = _row_why(row)
            letter = letters.get((channel, sku)) or refused
            if letter:
                (d,) = letter
                assert d.error and d.error_type, (channel, sku, d)
                found.append(FAILED_OUTCOME)
                why[(channel, sku)] = d.error
            assert len(found) == 1, f"({channel}, {sku!r}) accounted for {len(found)}x: {found}"
            by_unit[(channel, sku)] = found[0]
    strays = {k: r.status for k, r in snap.rows.items() if k not in seen}
    assert all(s in ("orphan", "removed") for s in strays.values()), strays
    assert not [k for k in strays if snap.rows[k].enabled], strays
    known = {sku for _u, sku in products} | {uid for uid, _s in products}
    stray_letters = [k for k in letters if k[1] not in known]
    assert not stray_letters, f"dead letters of products the PIM does not hold: {stray_letters}"

    # 2. the same table as a clean full sync from scratch
    if reference is not None:
        got = snap.table()
        diff = {
            k: (got.get(k), reference.get(k))
            for k in got.keys() | reference.keys()
            if got.get(k) != reference.get(k)
        }
        assert not diff, f"{len(diff)} rows differ from a clean full sync: {_head(diff)}"
    if reference_letters is not None:
        assert snap.letter_set() == reference_letters, (snap.letter_set(), reference_letters)

    # 3. every finished channel run's counters are its rows
    _check_counters(snap)
    return Outcome(by_unit, snap, why)


def _row_why(row: ChannelProduct) -> str:
    if row.status == "published":
        assert row.enabled and row.doc, (row.channel, row.sku)
        return "published"
    assert not row.enabled, (row.channel, row.sku, row.status)
    if row.status in WHY_IN_DETAIL:
        assert row.detail, f"{row.status} row without its why: {(row.channel, row.sku)}"
        return f"{row.status}: {row.detail}"
    assert row.disabled_reason, f"{row.status} row without its why: {(row.channel, row.sku)}"
    return f"{row.status}: {row.disabled_reason}"


def _check_counters(snap: Snapshot) -> None:
    by_id = {r.id: r for r in snap.runs}
    last: dict[str, SyncRun] = {}
    for run in snap.runs:
        if run.channel is None:
            continue
        letters = [d for d in snap.letters if d.run_id == run.id and d.kind != "ingest"]
        parent = by_id.get(run.parent_id) if run.parent_id else None
        refused = [
            d for d in snap.letters if parent and d.run_id == parent.id and d.kind == "ingest"
        ]
        where = (run.kind, run.channel, run.status, run.error)
        if run.status == COMPLETED:
            assert run.processed == run.planned_units, (where, run.processed, run.planned_units)
            assert run.failed == len(letters) + len(refused), (where, run.failed, letters, refused)
            assert run.pending_batches == 0 and run.planning_done, where
        if run.processed:
            last[run.channel] = run
    for channel, run in last.items():
        written = Counter(
            r.status for (c, _s), r in snap.rows.items() if c == channel and r.sync_run_id == run.id
        )
        where = (run.kind, run.channel, run.status)
        assert run.synced == written["published"], (where, run.synced, written)
        assert run.skipped_incomplete == written["incomplete"], (where, written)
        assert run.filtered == written["filtered"], (where, written)
        assert run.disabled == written["disabled_in_pim"] + written["removed"], (where, written)
        assert run.orphans_disabled == written["orphan"], (where, written)


def _head(diff: dict[Any, Any], n: int = 5) -> str:
    return "; ".join(
        f"{k}: got {a!r:.200} clean {b!r:.200}" for k, (a, b) in list(diff.items())[:n]
    )


def clean_sync(
    base: str, database_url: str
) -> tuple[dict[tuple[str, str], tuple[str, Any, bool]], set[tuple[str, str, str]]]:
    """A clean full sync from scratch of the PIM at ``base`` on ``database_url`` (emptied
    first), in this process with the in-process dispatcher; its table and open dead letters.
    The settings of the stack stay as they are, but for the database."""
    from app.dev.local import LocalDispatcher, drain
    from app.pim.sources import open_source
    from app.sync import ingest
    from app.sync.context import SyncContext
    from tests.conftest import truncate_all
    from tests.e2e_support import apply_env, restore_env

    truncate_all(database_url)
    old = apply_env({"PIMSYNC_DATABASE_URL": database_url})
    try:
        source = open_source(base)
        try:
            ctx = SyncContext(get_settings(), LocalDispatcher(), lambda: source)
            with session_scope() as s:
                run = ingest.start_full(s, ctx, None, trigger="test")
                assert run is not None
                run_id = run.id
            drain(ctx)
        finally:
            source.close()
        snap = Snapshot.read()
        statuses = {
            (r.channel, r.status) for r in snap.runs if r.id == run_id or r.parent_id == run_id
        }
        assert all(s == COMPLETED for _c, s in statuses), statuses
        return snap.table(), snap.letter_set()
    finally:
        restore_env(old)
