"""Publishing (app/sync/publish.py) called directly, in this process, on real PostgreSQL: the
rows and dead letters a unit leaves, the error budget, a channel run's ending (cursor,
orphans, log line), a catch-up's plan and one batch's bookkeeping.

The sync service tests drive these through whole syncs; here each rule is pinned down alone,
so that mutation testing (docs/mutation.md) sees each of them fail on its own."""

from __future__ import annotations

import functools
import operator
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from structlog.testing import capture_logs

from app.channels.models import ChannelProduct
from app.config import Settings
from app.db import session_scope
from app.maintenance import HOT_PATH_SHARE
from app.mapping.errors import MappingError
from app.mapping.models import DriftEvent
from app.pim import repository as pim_repo
from app.pim.models import PimProduct
from app.pim.product import Product
from app.sync import publish, runs
from app.sync import repository as repo
from app.sync.context import SyncContext
from app.sync.models import DeadLetter, SyncBatch, SyncCursor, SyncLock, SyncRun
from app.sync.runtime import REGISTRY
from app.sync.units import ChannelRuntime, UnitOutcome
from tests.sync.conftest import Harness
from tests.sync.flow_support import run_row
from tests.sync.memory_source import MemorySource

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
RUN = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
MIN = timedelta(minutes=1)


def runtime(channel: str = "web", contract: str = "storefront_de@3") -> ChannelRuntime:
    """The two things a row takes from its channel's runtime: the code and the contract."""
    return cast(
        ChannelRuntime,
        SimpleNamespace(
            channel=SimpleNamespace(code=channel), contract=SimpleNamespace(key=contract)
        ),
    )


def counted(**counters: int) -> SyncRun:
    """A run with these counters (the others 0), not stored."""
    names = ("synced", "unchanged", "skipped_incomplete", "filtered", "disabled", "failed")
    return SyncRun(**{name: counters.get(name, 0) for name in names})


# --- rows and dead letters -------------------------------------------------------------------


def test_a_published_unit_becomes_an_enabled_row_under_its_contract() -> None:
    out = UnitOutcome("A-1", "published", doc={"sku": "A-1"}, detail=None, completeness=100)
    row = publish._row(runtime(), out, "hash-1", RUN, T0, 42)
    assert (row.channel, row.sku, row.doc, row.input_hash) == (
        "web",
        "A-1",
        {"sku": "A-1"},
        "hash-1",
    )
    assert (row.status, row.enabled, row.disabled_reason) == ("published", True, None)
    assert (row.contract_version, row.detail, row.completeness) == ("storefront_de@3", None, 100)
    assert (row.sync_run_id, row.synced_at, row.source_seq) == (RUN, T0, 42)


def test_an_unpublished_unit_becomes_a_disabled_row_saying_why_and_no_contract() -> None:
    out = UnitOutcome("A-2", "incomplete", detail={"missing": ["name"]}, completeness=60)
    row = publish._row(runtime(), out, "hash-2", None, T0, 7)
    assert (row.status, row.enabled, row.disabled_reason) == ("incomplete", False, "incomplete")
    assert (row.contract_version, row.doc, row.detail) == (None, None, {"missing": ["name"]})
    assert (row.completeness, row.sync_run_id, row.source_seq) == (60, None, 7)


def test_a_dead_letter_holds_the_unit_its_error_and_when() -> None:
    letter = publish._dead_letter("web", "A-1", RUN, ValueError("bad colour"), True, T0, 3)
    assert letter == {
        "channel": "web",
        "sku": "A-1",
        "run_id": RUN,
        "kind": "publish",
        "error_type": "ValueError",
        "error": "bad colour",
        "permanent": True,
        "attempts": 3,
        "status": "open",
        "first_failed_at": T0,
        "last_failed_at": T0,
    }
    assert publish._dead_letter("web", "A-1", None, KeyError("x"), False, T0)["attempts"] == 1


def test_a_dead_letters_error_is_cut_to_4000_characters_or_else_is_the_exceptions_repr() -> None:
    long = publish._dead_letter("web", "A-1", RUN, RuntimeError("x" * 4001), False, T0)
    assert long["error"] == "x" * 4000
    silent = publish._dead_letter("web", "A-1", RUN, RuntimeError(), False, T0)
    assert silent["error"] == "RuntimeError()"
    named = type("E" * 4100, (Exception,), {})
    assert publish._dead_letter("web", "A-1", RUN, named(), False, T0)["error"] == ("E" * 4000)


# --- a value PostgreSQL would refuse --------------------------------------------------------


def product(values: dict[str, Any]) -> Product:
    return Product.trusted({"identifier": "A-1", "values": values}, "A-1")


NUL_NAME = {"name": [{"locale": "de_DE", "scope": None, "data": "Laptop\x00 Pro"}]}


def test_a_unit_whose_document_holds_a_nul_is_refused_naming_the_value() -> None:
    out = UnitOutcome("A-1", "published", doc={"title": "Laptop\x00 Pro"})
    problems: dict[str, str | None] = {}
    refusal = publish._unstorable(out, product(NUL_NAME), problems)
    assert refusal is not None
    assert str(refusal) == "value of `name` in de_DE contains a NUL character"
    assert problems == {"A-1": "value of `name` in de_DE contains a NUL character"}


def test_a_nul_in_the_detail_alone_is_refused_too() -> None:
    out = UnitOutcome("A-1", "incomplete", detail={"missing": ["x\x00"]})
    refusal = publish._unstorable(out, product(NUL_NAME), {})
    assert str(refusal) == "value of `name` in de_DE contains a NUL character"


def test_a_unit_without_a_nul_in_what_it_writes_is_not_refused() -> None:
    out = UnitOutcome("A-1", "published", doc={"title": "Laptop"}, detail={"note": "fine"})
    problems: dict[str, str | None] = {}
    assert publish._unstorable(out, product(NUL_NAME), problems) is None
    assert problems == {}  # the product's values are not even searched


def test_the_products_values_are_searched_once_per_sku() -> None:
    out = UnitOutcome("A-1", "published", doc={"title": "bad\x00"})
    problems: dict[str, str | None] = {"A-1": "value of `cached` contains a NUL character"}
    refusal = publish._unstorable(out, product(NUL_NAME), problems)
    assert str(refusal) == "value of `cached` contains a NUL character"


def test_a_nul_no_value_explains_is_refused_as_the_documents() -> None:
    out = UnitOutcome("A-1", "published", doc={"title": "bad\x00"})
    problems: dict[str, str | None] = {}
    refusal = publish._unstorable(out, product({"name": [{"data": "fine"}]}), problems)
    assert str(refusal) == "the document holds a NUL character"
    assert problems == {"A-1": None}


# --- database errors ------------------------------------------------------------------------


def test_a_lost_connection_is_transient_and_a_refused_value_is_not() -> None:
    assert publish._is_transient_db_error(OperationalError("SELECT 1", {}, Exception("gone")))
    invalidated = DBAPIError("SELECT 1", {}, Exception("reset"), connection_invalidated=True)
    assert publish._is_transient_db_error(invalidated)
    assert not publish._is_transient_db_error(DBAPIError("SELECT 1", {}, Exception("NUL")))


# --- the error budget -----------------------------------------------------------------------


def budget(max_failed: int = 10, ratio: float = 0.05) -> Any:
    return SimpleNamespace(
        settings=Settings(error_budget_max_failed=max_failed, error_budget_max_failed_ratio=ratio)
    )


def test_a_run_without_failures_is_within_any_budget() -> None:
    assert not publish._over_budget(budget(max_failed=0, ratio=0.0), counted(synced=500))


def test_more_failures_than_the_limit_exceed_the_budget_whatever_the_sample() -> None:
    assert publish._over_budget(budget(max_failed=3), counted(failed=4))
    assert publish._over_budget(budget(max_failed=0), counted(failed=1, synced=1))
    assert not publish._over_budget(budget(max_failed=3), counted(failed=3))


def test_the_failure_ratio_counts_only_from_100_units_and_only_above_it() -> None:
    ctx = budget(max_failed=1000, ratio=0.05)
    assert not publish._over_budget(ctx, counted(failed=50, synced=49))  # 99 units: too few
    assert publish._over_budget(ctx, counted(failed=50, synced=50))  # 100 units, 50%
    assert publish._over_budget(ctx, counted(failed=6, synced=94))  # 6% of 100
    assert not publish._over_budget(ctx, counted(failed=5, synced=95))  # 5%: at the limit
    assert not publish._over_budget(ctx, counted(failed=5, unchanged=95, filtered=100))


# --- on the database: a synced channel ------------------------------------------------------

DE = "de_storefront"
# the generated 12-product catalog (seed 7) in de_storefront, written out
SKUS = [f"GEN-{i:07d}" for i in range(12)]
INCOMPLETE = ["GEN-0000003", "GEN-0000008"]


class Recorder:
    """A dispatcher that records what it was asked to send, and the pages it projected."""

    def __init__(self) -> None:
        self.published: list[tuple[list[int], dict[str, Any] | None]] = []
        self.catalog: list[dict[str, list[str]]] = []
        self.projected: list[dict[str, list[str]]] = []

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        self.published.append((batch_ids, summary))

    def catalog_changed(self, changes: dict[str, list[str]]) -> None:
        self.catalog.append(changes)

    def project_catalog(self, session: Any, changes: dict[str, list[str]], now: datetime) -> int:
        self.projected.append({c: sorted(s) for c, s in changes.items()})
        return 0


class Notifier(Recorder):
    """A dispatcher that cannot project pages itself (catalog events instead)."""

    project_catalog = None  # type: ignore[assignment]


def context(dispatcher: Recorder | None = None, at: datetime = T0, **settings: Any) -> SyncContext:
    return SyncContext(
        Settings(**settings),
        dispatcher or Recorder(),  # type: ignore[arg-type]
        lambda: None,  # type: ignore[arg-type,return-value]
        clock=lambda: at,
    )


@pytest.fixture
def synced(pg_db: str) -> Harness:
    """A full sync of 12 generated products into de_storefront, done."""
    harness = Harness(MemorySource.generated(12))
    harness.full([DE])
    return harness


def new_run(kind: str, channel: str | None = DE, **fields: Any) -> uuid.UUID:
    """A running run started at T0, with these columns set."""
    with session_scope() as s:
        run = repo.create_run(s, kind, channel, T0)
        for name, value in fields.items():
            setattr(run, name, value)
        return run.id


def cursor(name: str) -> tuple[str, datetime, uuid.UUID | None] | None:
    with session_scope() as s:
        row = s.get(SyncCursor, name)
        return None if row is None else (row.value, row.updated_at, row.run_id)


def locks() -> dict[str, tuple[uuid.UUID, datetime]]:
    with session_scope() as s:
        return {lk.name: (lk.run_id, lk.expires_at) for lk in s.execute(select(SyncLock)).scalars()}


def batches(run_id: uuid.UUID) -> list[tuple[list[str], str, int, datetime | None]]:
    with session_scope() as s:
        q = select(SyncBatch).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        return [(b.skus, b.status, b.attempt, b.not_before) for b in s.execute(q).scalars()]


def watermark() -> int:
    with session_scope() as s:
        return pim_repo.high_watermark(s)


def test_a_channel_cursor_only_moves_forward(pg_db: str) -> None:
    name = "channel:web"
    other = uuid.uuid4()
    with session_scope() as s:
        publish._advance_channel_cursor(s, "web", 5, T0, RUN)
    assert cursor(name) == ("5", T0, RUN)
    for value in (3, 5):  # back, or the same: left as it was
        with session_scope() as s:
            publish._advance_channel_cursor(s, "web", value, T0 + MIN, other)
        assert cursor(name) == ("5", T0, RUN)
    with session_scope() as s:  # compared as numbers: "12" > "5"
        publish._advance_channel_cursor(s, "web", 12, T0 + 2 * MIN, other)
    assert cursor(name) == ("12", T0 + 2 * MIN, other)
    assert cursor("channel:de_storefront") is None


# --- the log line of a completed run --------------------------------------------------------


def completed(kind: str, **fields: Any) -> SyncRun:
    run = counted(**{k: v for k, v in fields.items() if k in COUNTERS})
    run.id, run.kind, run.channel = RUN, kind, "web"
    run.started_at = T0
    run.finished_at = fields.get("finished_at", T0 + timedelta(seconds=1.5))
    run.orphans_disabled = fields.get("orphans_disabled", 0)
    run.planned_units = fields.get("planned_units", 0)
    return run


COUNTERS = ("synced", "unchanged", "skipped_incomplete", "filtered", "disabled", "failed")


def logged_fields(**overrides: Any) -> dict[str, Any]:
    return {
        "log_level": "info",
        "phase": "publish",
        "run_id": str(RUN),
        "channel": "web",
        "synced": 1,
        "unchanged": 2,
        "skipped_incomplete": 3,
        "filtered": 4,
        "disabled": 5,
        "failed": 6,
        "duration_ms": 1500,
        **overrides,
    }


COUNTS = {"synced": 1, "unchanged": 2, "skipped_incomplete": 3, "filtered": 4, "disabled": 5}


def test_a_completed_full_sync_logs_its_counts_and_orphans() -> None:
    with capture_logs() as logs:
        publish._log_complete(completed("full", **COUNTS, failed=6, orphans_disabled=7))
    assert logs == [logged_fields(event="full_sync_complete", orphans_disabled=7)]


def test_a_completed_delta_and_republish_log_their_counts() -> None:
    with capture_logs() as logs:
        publish._log_complete(completed("delta", **COUNTS, failed=6, planned_units=21))
        publish._log_complete(completed("republish", **COUNTS, failed=6, finished_at=None))
    assert logs == [
        logged_fields(event="delta_sync_complete"),
        logged_fields(event="republish_sync_complete", duration_ms=0),
    ]


def test_a_delta_with_nothing_planned_logs_that_it_was_empty() -> None:
    with capture_logs() as logs:
        publish._log_complete(completed("delta", unchanged=3))
        publish._log_complete(completed("republish"))
    assert logs == [
        {
            "event": "delta_sync_empty",
            "log_level": "info",
            "phase": "publish",
            "run_id": str(RUN),
            "channel": "web",
        },
        logged_fields(
            event="republish_sync_complete",
            **{k: 0 for k in COUNTERS},
        ),
    ]


# --- a channel run's ending -----------------------------------------------------------------


def forget_channel_cursor() -> None:
    with session_scope() as s:
        s.execute(delete(SyncCursor).where(SyncCursor.name == f"channel:{DE}"))


def last_seen_before_t0(skus: list[str]) -> None:
    """These products were last seen by a read before T0 (a run started at T0 did not see them)."""
    with session_scope() as s:
        s.execute(
            update(PimProduct).where(PimProduct.identifier.in_(skus)).values(last_seen_at=T0 - MIN)
        )


def ready(kind: str, **fields: Any) -> uuid.UUID:
    """A channel run of de_storefront started at T0, planned, every batch done, holding its
    lease."""
    values: dict[str, Any] = {"planning_done": True, **fields}
    run_id = new_run(kind, **values)
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        assert runs.take_lock(s, context(), runs.run_lock(run), run) is None
    return run_id


def finalize(run_id: uuid.UUID, dispatcher: Recorder | None = None) -> bool:
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        return publish.finalize_if_done(s, context(dispatcher, at=T0 + MIN), run)


def row_states() -> dict[str, tuple[str, bool, uuid.UUID | None, datetime]]:
    with session_scope() as s:
        q = select(ChannelProduct).where(ChannelProduct.channel == DE)
        return {r.sku: (r.status, r.enabled, r.sync_run_id, r.synced_at) for r in s.scalars(q)}


def test_a_full_sync_ends_by_disabling_its_orphans_and_moving_the_cursor(synced: Harness) -> None:
    forget_channel_cursor()
    last_seen_before_t0(["GEN-0000002", "GEN-0000005"])
    before = row_states()
    run_id = ready("full", cursor_to="1")
    sent = Recorder()
    with capture_logs() as logs:
        assert finalize(run_id, sent)
    run = run_row(run_id)
    assert (run.status, run.finished_at, run.orphans_disabled) == ("completed", T0 + MIN, 2)
    after = row_states()
    for sku in ("GEN-0000002", "GEN-0000005"):
        assert after[sku] == ("orphan", False, run_id, T0 + MIN)
    assert {s: v for s, v in after.items() if v[0] != "orphan"} == {
        s: v for s, v in before.items() if s not in ("GEN-0000002", "GEN-0000005")
    }
    assert sent.catalog == [{DE: ["GEN-0000002", "GEN-0000005"]}] and sent.projected == []
    assert cursor(f"channel:{DE}") == ("1", T0 + MIN, run_id)
    assert locks() == {}
    assert [(e["event"], e["orphans_disabled"], e["duration_ms"]) for e in logs] == [
        ("full_sync_complete", 2, 60_000)
    ]


def test_a_full_sync_of_a_read_moves_the_cursor_past_what_its_read_wrote(synced: Harness) -> None:
    """Up to the first change another writer made meanwhile: here none, so up to the mirror's
    high watermark, past the cursor the run was planned with."""
    forget_channel_cursor()
    parent = run_row(synced_parent()).id
    end = watermark()
    assert end > 1
    run_id = ready("full", cursor_to="1", parent_id=parent)
    assert finalize(run_id)
    assert cursor(f"channel:{DE}") == (str(end), T0 + MIN, run_id)


def test_a_full_sync_stops_its_cursor_at_another_writers_change(synced: Harness) -> None:
    forget_channel_cursor()
    parent = synced_parent()
    with session_scope() as s:  # e.g. an event rewrote this product after the read
        s.execute(
            update(PimProduct)
            .where(PimProduct.identifier == "GEN-0000004")
            .values(last_seen_run=None)
        )
        seq = s.execute(
            select(PimProduct.change_seq).where(PimProduct.identifier == "GEN-0000004")
        ).scalar_one()
    assert seq < watermark()
    run_id = ready("full", cursor_to=str(seq), parent_id=parent)
    assert finalize(run_id)
    assert cursor(f"channel:{DE}") == (str(seq), T0 + MIN, run_id)


def synced_parent() -> uuid.UUID:
    with session_scope() as s:
        return s.execute(
            select(SyncRun.id).where(SyncRun.kind == "full", SyncRun.channel.is_(None))
        ).scalar_one()


def test_a_full_sync_with_a_failure_or_no_marker_leaves_the_cursor(synced: Harness) -> None:
    forget_channel_cursor()
    assert finalize(ready("full", cursor_to="5", failed=1))
    assert finalize(ready("full", cursor_to=None))
    assert finalize(ready("full", cursor_to=""))
    assert cursor(f"channel:{DE}") is None


def test_a_delta_ends_at_its_marker_and_disables_no_orphan(synced: Harness) -> None:
    forget_channel_cursor()
    last_seen_before_t0(["GEN-0000002"])
    before = row_states()
    assert finalize(ready("delta", cursor_to=None))
    assert cursor(f"channel:{DE}") is None
    run_id = ready("delta", cursor_to="9")
    with capture_logs() as logs:
        assert finalize(run_id)
    assert cursor(f"channel:{DE}") == ("9", T0 + MIN, run_id)
    assert row_states() == before
    run = run_row(run_id)
    assert (run.status, run.orphans_disabled) == ("completed", 0)
    assert [e["event"] for e in logs] == ["delta_sync_empty"]


def test_a_republish_ends_without_cursor_or_orphans(synced: Harness) -> None:
    forget_channel_cursor()
    last_seen_before_t0(["GEN-0000002"])
    before = row_states()
    run_id = ready("republish", cursor_to="9")
    assert finalize(run_id)
    assert cursor(f"channel:{DE}") is None and row_states() == before
    assert run_row(run_id).status == "completed" and locks() == {}


def test_a_run_with_work_left_or_already_ended_is_not_finalised(synced: Harness) -> None:
    forget_channel_cursor()
    last_seen_before_t0(["GEN-0000002"])
    before = row_states()
    waiting = ready("full", cursor_to="1", pending_batches=1)
    planning = ready("delta", cursor_to="1", planning_done=False)
    with session_scope() as s:
        run = repo.get_run(s, waiting)
        assert run is not None
        repo.finish_run(s, run, "aborted", T0)
        run = repo.create_run(s, "republish", DE, T0)
        run.planning_done, ended = True, run.id
        repo.finish_run(s, run, "cancelled", T0)
    for run_id in (waiting, planning, ended):
        assert not finalize(run_id)
    assert [run_row(r).status for r in (waiting, planning, ended)] == [
        "aborted",
        "running",
        "cancelled",
    ]
    assert row_states() == before and cursor(f"channel:{DE}") is None
    assert set(locks()) == {"full:de_storefront", "delta:de_storefront"}
    # the last batch done: finalised
    with session_scope() as s:
        repo.add_counts(s, waiting, T0)
    still = ready("republish", pending_batches=1)
    assert not finalize(still)
    with session_scope() as s:
        repo.add_counts(s, still, T0, pending_batches=-1)
    assert finalize(still)


# --- planning a catch-up --------------------------------------------------------------------


def catchup(dispatcher: Recorder, kind: str = "delta", **kwargs: Any) -> uuid.UUID:
    ctx = context(dispatcher, publish_batch_size=5, channel_inflight_batches=2)
    with session_scope() as s:
        return publish.start_catchup(s, ctx, DE, kind, **kwargs).id


def test_a_delta_plans_the_changes_after_the_channel_cursor_in_batches(synced: Harness) -> None:
    forget_channel_cursor()
    end = watermark()
    sent = Recorder()
    parent = uuid.uuid4()
    run_id = catchup(sent, parent_id=parent, trigger="test")
    run = run_row(run_id)
    assert (run.kind, run.channel, run.parent_id, run.trigger) == ("delta", DE, parent, "test")
    assert (run.cursor_from, run.cursor_to) == ("0", str(end))
    assert (run.planned_units, run.planned_batches, run.pending_batches) == (12, 3, 3)
    assert run.planning_done and run.status == "running"
    planned = batches(run_id)
    assert [(skus, status, attempt) for skus, status, attempt, _ in planned] == [
        (SKUS[:5], "enqueued", 1),
        (SKUS[5:10], "enqueued", 1),
        (SKUS[10:], "pending", 1),
    ]
    with session_scope() as s:
        q = select(SyncBatch).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        ids, enqueued = zip(*((b.id, b.enqueued_at) for b in s.scalars(q)), strict=True)
    assert enqueued == (T0, T0, None)
    summary = {"channels": [DE], "units": 5}
    assert sent.published == [([ids[0]], summary), ([ids[1]], summary)]
    assert locks() == {"delta:de_storefront": (run_id, T0 + timedelta(seconds=600))}


def test_a_delta_pages_through_changes_of_several_positions(synced: Harness) -> None:
    """Changes at different positions of the log, read a page at a time (keyset: position,
    then identifier): each change planned once, in that order."""
    with session_scope() as s:
        start = int(repo.get_cursor(s, f"channel:{DE}") or 0)
    assert start == watermark()
    for skus in (["GEN-0000009", "GEN-0000001"], ["GEN-0000007"], ["GEN-0000004", "GEN-0000000"]):
        with session_scope() as s:  # one writer's transaction: one position
            pim_repo.mark_removed(s, skus, T0)
    run_id = catchup(Recorder())
    planned = [skus for skus, *_ in batches(run_id)]
    assert planned == [["GEN-0000001", "GEN-0000009", "GEN-0000007", "GEN-0000000", "GEN-0000004"]]
    assert (run_row(run_id).cursor_from, run_row(run_id).planned_units) == (str(start), 5)


def test_a_delta_reads_on_from_the_last_change_of_each_page(synced: Harness) -> None:
    forget_channel_cursor()
    with session_scope() as s:
        pim_repo.mark_removed(s, SKUS[:2], T0)  # 10 left at the first position, 2 after
    run_id = catchup(Recorder())
    assert [skus for skus, *_ in batches(run_id)] == [SKUS[2:7], SKUS[7:], SKUS[:2]]
    run = run_row(run_id)
    assert (run.planned_units, run.planned_batches, run.pending_batches) == (12, 3, 3)


def test_a_delta_with_nothing_to_do_completes_at_once(synced: Harness) -> None:
    end = watermark()
    sent = Recorder()
    with capture_logs() as logs:
        run_id = catchup(sent)
    run = run_row(run_id)
    assert (run.status, run.finished_at, run.cursor_from, run.cursor_to) == (
        "completed",
        T0,
        str(end),
        str(end),
    )
    assert (run.planned_units, run.planned_batches, run.pending_batches) == (0, 0, 0)
    assert batches(run_id) == [] and sent.published == [] and locks() == {}
    assert [e["event"] for e in logs] == ["delta_sync_empty"]


def test_a_republish_plans_every_product_the_pim_still_has(synced: Harness) -> None:
    with session_scope() as s:
        pim_repo.mark_removed(s, ["GEN-0000006"], T0)
    sent = Recorder()
    run_id = catchup(sent, "republish")
    kept = [s for s in SKUS if s != "GEN-0000006"]
    assert [skus for skus, *_ in batches(run_id)] == [kept[:5], kept[5:10], kept[10:]]
    run = run_row(run_id)
    assert (run.kind, run.trigger, run.cursor_from, run.cursor_to) == (
        "republish",
        "beat",
        None,
        None,
    )
    assert (run.planned_units, run.planned_batches, run.pending_batches) == (11, 3, 3)
    assert len(sent.published) == 2


def test_republishing_names_a_configured_channel_and_its_trigger(synced: Harness) -> None:
    ctx = context(Recorder())
    with session_scope() as s:
        first = publish.republish(s, ctx, DE).id
    with session_scope() as s, pytest.raises(ValueError, match="unknown channel"):
        publish.republish(s, ctx, "nowhere")
    assert (run_row(first).kind, run_row(first).trigger) == ("republish", "cli")
    assert run_row(first).planned_units == 12
    with session_scope() as s:  # the first still holds the lease: this one is skipped
        second = publish.republish(s, ctx, DE, trigger="api").id
    assert (run_row(second).trigger, run_row(second).status) == ("api", "skipped")


def test_a_catchup_whose_lease_is_held_is_skipped_saying_by_whom(synced: Harness) -> None:
    holder = new_run("delta")
    with session_scope() as s:
        run = repo.get_run(s, holder)
        assert run is not None
        assert runs.take_lock(s, context(), "delta:de_storefront", run) is None
    forget_channel_cursor()
    sent = Recorder()
    run_id = catchup(sent)
    run = run_row(run_id)
    assert (run.status, run.finished_at) == ("skipped", T0)
    assert run.error == f"a run holding 'delta:de_storefront' is still in progress (run {holder})"
    assert run.cursor_from is None and batches(run_id) == [] and sent.published == []


# --- several channels' catch-ups in one plan ---------------------------------------------------

UK = "uk_marketplace"
PARENT = uuid.UUID("00000000-0000-0000-0000-0000000000bb")


def catchups(dispatcher: Recorder, channels: list[str], **settings: Any) -> list[uuid.UUID]:
    ctx = context(
        dispatcher, **{"publish_batch_size": 5, "channel_inflight_batches": 2, **settings}
    )
    with session_scope() as s:
        return [r.id for r in publish.start_catchups(s, ctx, channels, "delta", PARENT)]


def batch_ids(run_id: uuid.UUID) -> list[int]:
    with session_scope() as s:
        q = select(SyncBatch.id).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        return list(s.scalars(q))


def test_the_channels_of_a_catch_up_send_their_batches_of_the_same_skus_together(
    synced: Harness,
) -> None:
    """One message per chunk of SKUs carries every channel's batch of it: the mirror is read
    and decoded once for all of them."""
    forget_channel_cursor()  # both channels from the start of the log: the same 12 changes
    sent = Recorder()
    de, uk = catchups(sent, [DE, UK])
    chunks = [SKUS[:5], SKUS[5:10], SKUS[10:]]
    assert [skus for skus, *_ in batches(de)] == [skus for skus, *_ in batches(uk)] == chunks
    for run_id in (de, uk):  # each channel its own run, lease and counters
        run = run_row(run_id)
        assert (run.kind, run.parent_id, run.status) == ("delta", PARENT, "running")
        assert (run.planned_units, run.planned_batches, run.pending_batches) == (12, 3, 3)
    assert set(locks()) == {"delta:de_storefront", "delta:uk_marketplace"}
    (d0, d1, _), (u0, u1, _) = batch_ids(de), batch_ids(uk)
    both = {"channels": [DE, UK], "units": 10}
    assert sent.published == [([d0, u0], both), ([d1, u1], both)]  # 2 in flight per channel


@pytest.mark.parametrize(
    ("least", "spread", "sizes"),
    [
        (2, 3, [4, 4, 4]),  # one message per publishing process
        (5, 3, [6, 6]),  # no message under `least` SKUs: fewer messages
        (7, 3, [12]),  # under twice `least`: not cut
        (2, 1, [12]),  # one process: not cut
    ],
)
def test_a_small_catch_up_is_cut_into_a_message_per_publishing_process(
    synced: Harness, monkeypatch: pytest.MonkeyPatch, least: int, spread: int, sizes: list[int]
) -> None:
    monkeypatch.setattr(publish, "MIN_SPREAD_CHUNK", least)
    forget_channel_cursor()
    sent = Recorder()
    de, uk = catchups(
        sent, [DE, UK], publish_batch_size=500, publish_spread=spread, channel_inflight_batches=9
    )
    for run_id in (de, uk):
        assert [len(skus) for skus, *_ in batches(run_id)] == sizes
        assert functools.reduce(operator.iadd, (skus for skus, *_ in batches(run_id)), []) == SKUS
        assert (run_row(run_id).planned_batches, run_row(run_id).pending_batches) == (
            len(sizes),
            len(sizes),
        )
    assert [ids for ids, _ in sent.published] == [
        list(pair) for pair in zip(batch_ids(de), batch_ids(uk), strict=True)
    ]


def test_each_channel_catches_up_from_its_own_cursor_and_lease(synced: Harness) -> None:
    """A channel whose lease is held is skipped, the others plan; a channel behind plans more
    than one that is up to date."""
    forget_channel_cursor()
    up_to_date = "at_storefront"
    with session_scope() as s:
        repo.set_cursor(s, f"channel:{up_to_date}", str(watermark()), T0, None)
    busy = catchups(Recorder(), ["b2b_portal"])[0]  # holds its lease from here on
    with session_scope() as s:
        pim_repo.mark_removed(s, ["GEN-0000004"], T0)  # after every cursor
    sent = Recorder()
    de, at, b2b = catchups(sent, [DE, up_to_date, "b2b_portal"])
    assert [skus for skus, *_ in batches(de)] == [
        SKUS[:4] + SKUS[5:6],
        SKUS[6:11],
        [*SKUS[11:], "GEN-0000004"],
    ]
    assert [skus for skus, *_ in batches(at)] == [["GEN-0000004"]]
    assert (run_row(b2b).status, batches(b2b)) == ("skipped", [])
    assert str(busy) in (run_row(b2b).error or "")
    assert run_row(de).status == run_row(at).status == "running"
    (d0, d1, _), (a0,) = batch_ids(de), batch_ids(at)
    assert sent.published == [
        ([d0, a0], {"channels": [up_to_date, DE], "units": 6}),
        ([d1], {"channels": [DE], "units": 5}),
    ]


# --- one batch ------------------------------------------------------------------------------


def decide_again(*skus: str) -> None:
    """These rows are decided again by the next batch that holds them (as after a change)."""
    with session_scope() as s:
        s.execute(
            update(ChannelProduct)
            .where(ChannelProduct.channel == DE, ChannelProduct.sku.in_(skus))
            .values(input_hash="")
        )


def planned(
    kind: str, *sku_lists: list[str], channel: str = DE, **fields: Any
) -> tuple[uuid.UUID, list[int]]:
    """A running channel run holding its lease, with these batches pending (planning done)."""
    n = len(sku_lists)
    run_id = ready(kind, channel=channel, planned_batches=n, pending_batches=n, **fields)
    with session_scope() as s:
        ids = repo.create_batches(s, run_id, channel, [list(b) for b in sku_lists])
    return run_id, ids


def counters(run_id: uuid.UUID) -> tuple[int, ...]:
    run = run_row(run_id)
    return (
        run.synced,
        run.unchanged,
        run.skipped_incomplete,
        run.filtered,
        run.disabled,
        run.failed,
        run.planned_batches,
        run.pending_batches,
    )


def run_batch(
    batch_id: int, dispatcher: Recorder, at: datetime = T0 + MIN, **settings: Any
) -> None:
    publish.publish_batch(context(dispatcher, at=at, **settings), batch_id)


def test_a_batch_writes_its_rows_counts_them_and_sends_the_next(synced: Harness) -> None:
    decide_again(*[s for s in SKUS if s not in ("GEN-0000000", "GEN-0000011")])
    run_id, (first, second, third) = planned("republish", SKUS[:6], SKUS[6:9], SKUS[9:])
    with session_scope() as s:
        repo.release_batches(s, run_id, 1, T0)  # the first is in flight
    sent = Recorder()
    run_batch(first, sent, channel_inflight_batches=1)
    # 1 unchanged (GEN-0), GEN-3 incomplete, 4 published
    assert counters(run_id) == (4, 1, 1, 0, 0, 0, 3, 2)
    assert run_row(run_id).heartbeat_at == T0 + MIN
    assert sent.projected == [
        {DE: ["GEN-0000001", "GEN-0000002", "GEN-0000003", "GEN-0000004", "GEN-0000005"]}
    ]
    assert sent.catalog == []
    assert [(ids, summary) for ids, summary in sent.published] == [
        ([second], {"channels": [DE], "units": 3})
    ]
    assert [status for _, status, *_ in batches(run_id)] == ["done", "enqueued", "pending"]
    assert locks() == {"republish:de_storefront": (run_id, T0 + MIN + timedelta(seconds=600))}
    with session_scope() as s:
        versions = {r.sku: (r.version, r.sync_run_id) for r in s.scalars(select(ChannelProduct))}
    assert versions["GEN-0000001"] == (2, run_id) and versions["GEN-0000000"][0] == 1
    assert versions["GEN-0000003"] == (2, run_id)

    run_batch(second, sent, at=T0 + 2 * MIN, channel_inflight_batches=1)
    assert counters(run_id) == (6, 1, 2, 0, 0, 0, 3, 1)
    assert run_row(run_id).status == "running"
    run_batch(third, sent, at=T0 + 3 * MIN, channel_inflight_batches=1)
    assert counters(run_id) == (8, 2, 2, 0, 0, 0, 3, 0)
    run = run_row(run_id)
    assert (run.status, run.finished_at) == ("completed", T0 + 3 * MIN)
    assert locks() == {}


def test_a_batch_adds_every_kind_of_decision_to_its_run_and_is_done_when_it_ran(
    synced: Harness,
) -> None:
    """b2b_portal (never synced here) filters 4 of the 12 products; GEN-0000006 is disabled in
    the PIM: the run counts each decision, and the batch is done at the time it ran."""
    edit_mirror("GEN-0000006", enabled=False)
    run_id, (only,) = planned("republish", SKUS, channel="b2b_portal")
    with session_scope() as s:
        repo.release_batches(s, run_id, 1, T0)
    run_batch(only, Recorder(), at=T0 + 5 * MIN)
    # (synced, unchanged, incomplete, filtered, disabled, failed, planned, pending)
    assert counters(run_id) == (7, 0, 0, 4, 1, 0, 1, 0)
    with session_scope() as s:
        batch = s.get(SyncBatch, only)
        assert batch is not None
        assert (batch.status, batch.done_at) == ("done", T0 + 5 * MIN)


def test_a_batch_delivered_again_or_unknown_changes_nothing(synced: Harness) -> None:
    decide_again(*SKUS)
    run_id, (first,) = planned("republish", SKUS[:3])
    sent = Recorder()
    run_batch(first, sent)
    assert counters(run_id) == (3, 0, 0, 0, 0, 0, 1, 0)
    run_batch(first, sent, at=T0 + 2 * MIN)  # a redelivered message
    run_batch(first + 1000, sent)  # a batch deleted meanwhile
    assert counters(run_id) == (3, 0, 0, 0, 0, 0, 1, 0)
    assert run_row(run_id).finished_at == T0 + MIN


def test_a_batch_of_a_run_that_stopped_is_discarded(synced: Harness) -> None:
    decide_again(*SKUS)
    run_id, (first,) = planned("full", SKUS[:3])
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        repo.finish_run(s, run, "cancelled", T0)
    before = row_states()
    sent = Recorder()
    run_batch(first, sent)
    assert batches(run_id) == [(SKUS[:3], "done", 1, None)]
    assert counters(run_id) == (0, 0, 0, 0, 0, 0, 1, 1)
    assert row_states() == before and sent.projected == [] and sent.published == []


def test_a_batch_of_a_channel_no_longer_configured_fails_its_run(synced: Harness) -> None:
    run_id, (first, _) = planned("full", ["GEN-0000001"], ["GEN-0000002"], channel="gone")
    sent = Recorder()
    with capture_logs() as logs:
        run_batch(first, sent)
    run = run_row(run_id)
    assert (run.status, run.finished_at) == ("failed", T0 + MIN)
    assert run.error is not None
    assert run.error.startswith("channel unavailable: channel 'gone' is not configured in ")
    assert [status for _, status, *_ in batches(run_id)] == ["done", "done"]
    assert locks() == {} and sent.published == []
    assert [e["event"] for e in logs] == ["full_sync_aborted"]  # runs.stop's name for it
    assert logs[0]["run_id"] == str(run_id) and logs[0]["channel"] == "gone"


def failing(monkeypatch: pytest.MonkeyPatch, *victims: str) -> None:
    """Deciding these products fails (a mapping error): each is dead-lettered."""
    real = publish.evaluate

    def evaluate(product: Product, rt: ChannelRuntime) -> UnitOutcome:
        if product.identifier in victims:
            return UnitOutcome(product.identifier, "failed", error=MappingError("bad colour"))
        return real(product, rt)

    monkeypatch.setattr(publish, "evaluate", evaluate)


def raising(monkeypatch: pytest.MonkeyPatch, exc: Exception, *victims: str) -> None:
    """Deciding these products raises ``exc`` (unexpectedly, as a lookup that broke)."""
    real = publish.evaluate

    def evaluate(product: Product, rt: ChannelRuntime) -> UnitOutcome:
        if product.identifier in victims:
            raise exc
        return real(product, rt)

    monkeypatch.setattr(publish, "evaluate", evaluate)


def test_a_full_sync_over_its_error_budget_is_aborted_and_stops(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    failing(monkeypatch, "GEN-0000001", "GEN-0000002")
    run_id, (first, _) = planned("full", SKUS[:6], SKUS[6:])
    sent = Recorder()
    with capture_logs() as logs:
        run_batch(first, sent, error_budget_max_failed=1, error_budget_max_failed_ratio=0.25)
    run = run_row(run_id)
    assert (run.status, run.finished_at, run.failed) == ("aborted", T0 + MIN, 2)
    assert run.error == "error budget exceeded: 2 failed of 6 units (limit 1 or 25%)"
    assert [status for _, status, *_ in batches(run_id)] == ["done", "done"]
    assert locks() == {} and sent.published == []
    assert "full_sync_aborted" in [e["event"] for e in logs]


def test_a_delta_is_never_aborted_by_the_budget(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    failing(monkeypatch, "GEN-0000001", "GEN-0000002")
    run_id, (first,) = planned("delta", SKUS[:6])
    run_batch(first, Recorder(), error_budget_max_failed=1)
    run = run_row(run_id)
    assert (run.status, run.failed, run.synced) == ("completed", 2, 3)


def test_a_unit_failing_unexpectedly_is_planned_again_alone_with_backoff(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    raising(monkeypatch, ConnectionResetError("DAM lookup reset"), "GEN-0000001", "GEN-0000004")
    run_id, (first,) = planned("republish", SKUS[:6])
    ctx = context(Recorder(), at=T0 + MIN)
    waits: list[int] = []

    def backoff(attempt: int) -> float:
        waits.append(attempt)
        return 7.5

    ctx.backoff = backoff  # type: ignore[method-assign]
    publish.publish_batch(ctx, first)
    assert waits == [1]
    # two retries planned (one batch each), the first batch done: 3 planned, 2 pending
    assert counters(run_id) == (3, 0, 1, 0, 0, 0, 3, 2)
    retry_at = T0 + MIN + timedelta(seconds=7.5)
    assert batches(run_id)[1:] == [
        (["GEN-0000001"], "enqueued", 2, retry_at),
        (["GEN-0000004"], "enqueued", 2, retry_at),
    ]


# --- deciding and writing units -------------------------------------------------------------

CHANNELS = ["at_storefront", "b2b_portal", DE, "uk_marketplace"]


def edit_mirror(sku: str, **raw: Any) -> None:
    """The mirror's copy of a product changed (a new content hash: decided again)."""
    with session_scope() as s:
        product = s.get(PimProduct, sku)
        assert product is not None
        product.raw = {**product.raw, **raw}
        product.content_hash = f"edited-{sku}"


def publish_to(
    channels: list[str],
    skus: list[str],
    dispatcher: Recorder | None = None,
    run_id: uuid.UUID | None = RUN,
    **kwargs: Any,
) -> dict[str, publish.BatchResult]:
    ctx = context(dispatcher, at=T0 + MIN, **kwargs.pop("settings", {}))
    with session_scope() as s:
        rts = [REGISTRY.runtime(s, ctx.settings, c) for c in channels]
        return publish.publish_channels(s, ctx, rts, run_id, skus, **kwargs)


def outcome(res: publish.BatchResult) -> tuple[int, ...]:
    return (
        res.synced,
        res.unchanged,
        res.skipped_incomplete,
        res.filtered,
        res.disabled,
        res.failed,
    )


def open_letters() -> list[tuple[str, str, str, str, bool, int, uuid.UUID | None]]:
    with session_scope() as s:
        q = (
            select(DeadLetter)
            .where(DeadLetter.status == "open")
            .order_by(DeadLetter.channel, DeadLetter.sku)
        )
        return [
            (d.channel, d.sku, d.error_type, d.error, d.permanent, d.attempts, d.run_id)
            for d in s.scalars(q)
        ]


def test_each_channel_counts_what_it_decided(synced: Harness) -> None:
    edit_mirror("GEN-0000006", enabled=False)
    results = publish_to(CHANNELS, SKUS)
    # (synced, unchanged, incomplete, filtered, disabled, failed), written out: de_storefront
    # was synced before, so only the product disabled since is decided again there
    assert {c: outcome(r) for c, r in results.items()} == {
        "at_storefront": (9, 0, 2, 0, 1, 0),
        "b2b_portal": (7, 0, 0, 4, 1, 0),
        DE: (0, 11, 0, 0, 1, 0),
        "uk_marketplace": (8, 0, 1, 2, 1, 0),
    }
    assert [c.sku for c in results[DE].changes] == ["GEN-0000006"]
    assert all(len(results[c].changes) == 12 for c in CHANNELS if c != DE)
    assert all(r.retried == 0 and r.retry_batches == [] for r in results.values())
    rows = row_states()
    assert rows["GEN-0000006"] == ("disabled_in_pim", False, RUN, T0 + MIN)


def test_each_product_disabled_in_the_pim_counts(synced: Harness) -> None:
    edit_mirror("GEN-0000006", enabled=False)
    edit_mirror("GEN-0000010", enabled=False)
    (res,) = publish_to([DE], SKUS).values()
    assert outcome(res) == (0, 10, 0, 0, 2, 0)
    assert sorted(c.sku for c in res.changes) == ["GEN-0000006", "GEN-0000010"]


def test_products_the_pim_removed_are_disabled_in_every_channel(synced: Harness) -> None:
    with session_scope() as s:
        pim_repo.mark_removed(s, ["GEN-0000001", "GEN-0000002"], T0)
    sent = Recorder()
    results = publish_to(
        [DE, "at_storefront"], ["GEN-0000001", "GEN-0000002", "GEN-0000004", "NEVER-SEEN"], sent
    )
    # disabled: the rows written (a run's counters are its rows); NEVER-SEEN, which no channel
    # holds, and the removed products at_storefront never held are unchanged
    assert outcome(results[DE]) == (0, 2, 0, 0, 2, 0)
    assert outcome(results["at_storefront"]) == (1, 3, 0, 0, 0, 0)
    assert sorted(c.sku for c in results[DE].changes) == ["GEN-0000001", "GEN-0000002"]
    assert [c.sku for c in results["at_storefront"].changes] == ["GEN-0000004"]
    rows = row_states()
    assert rows["GEN-0000001"] == ("removed", False, RUN, T0 + MIN)
    assert rows["GEN-0000002"] == ("removed", False, RUN, T0 + MIN)
    assert (
        sent.catalog == [{"at_storefront": ["GEN-0000004"], DE: ["GEN-0000001", "GEN-0000002"]}]
        and sent.projected == []
    )
    with session_scope() as s:
        reasons = {
            r.sku: r.disabled_reason
            for r in s.scalars(select(ChannelProduct).where(ChannelProduct.status == "removed"))
        }
    assert reasons == {"GEN-0000001": "removed", "GEN-0000002": "removed"}
    # only the channels being published: de_storefront's row of another removed product stays
    with session_scope() as s:
        pim_repo.mark_removed(s, ["GEN-0000007"], T0)
    (res,) = publish_to(["at_storefront"], ["GEN-0000007"]).values()
    assert outcome(res) == (0, 1, 0, 0, 0, 0) and res.changes == []
    assert row_states()["GEN-0000007"][0] == "published"


def test_a_product_removed_between_the_two_reads_is_left_alone(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its head said it changed, its payload is gone by the time it is loaded: nothing is
    decided for it (the removal's own publish disables it), and it is no failure."""
    decide_again(*SKUS)
    with session_scope() as s:
        repo.upsert_dead_letters(
            s, [publish._dead_letter(DE, "GEN-0000001", None, ValueError("old"), True, T0)]
        )
    real = pim_repo.load_products

    def load_products(session: Any, identifiers: list[str]) -> Any:
        loaded = real(session, identifiers)
        del loaded["GEN-0000001"]
        return loaded

    monkeypatch.setattr(pim_repo, "load_products", load_products)
    before = row_states()
    (res,) = publish_to([DE], SKUS[:3]).values()
    assert outcome(res) == (2, 0, 0, 0, 0, 0)
    assert [c.sku for c in res.changes] == ["GEN-0000000", "GEN-0000002"]
    assert row_states()["GEN-0000001"] == before["GEN-0000001"]
    assert open_letters() == []  # nothing failed: its old dead letter is resolved


def test_a_batch_projects_its_pages_itself_when_asked(synced: Harness) -> None:
    edit_mirror("GEN-0000004", enabled=False)
    edit_mirror("GEN-0000005", enabled=False)
    sent = Recorder()
    publish_to([DE], SKUS, sent, pages_here=True)
    assert sent.projected == [{DE: ["GEN-0000004", "GEN-0000005"]}] and sent.catalog == []
    nothing = Recorder()
    publish_to([DE], SKUS, nothing, pages_here=True)  # nothing changed: nothing projected
    assert nothing.projected == [] and nothing.catalog == []


def test_units_failing_are_dead_lettered_and_logged_while_the_others_publish(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    real = publish.evaluate

    def evaluate(product: Product, rt: ChannelRuntime) -> UnitOutcome:
        if product.identifier == "GEN-0000001":
            return UnitOutcome(product.identifier, "failed", error=MappingError("bad colour"))
        if product.identifier == "GEN-0000002":
            raise RuntimeError("DAM down")
        return real(product, rt)

    monkeypatch.setattr(publish, "evaluate", evaluate)
    with capture_logs() as logs:
        (res,) = publish_to(
            [DE], SKUS[:4], attempt=3, settings={"publish_max_attempts": 3}
        ).values()
    assert outcome(res) == (1, 0, 1, 0, 0, 2)
    assert (res.retried, res.retry_batches) == (0, [])
    assert open_letters() == [
        (DE, "GEN-0000001", "MappingError", "bad colour", True, 1, RUN),
        (DE, "GEN-0000002", "RuntimeError", "DAM down", False, 3, RUN),
    ]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings == [
        {
            "event": "unit_error",
            "log_level": "warning",
            "run_id": str(RUN),
            "channel": DE,
            "sku": "GEN-0000002",
            "attempt": 3,
            "error": "RuntimeError: DAM down",
        },
        {
            "event": "dead_lettered",
            "log_level": "warning",
            "run_id": str(RUN),
            "channel": DE,
            "sku": "GEN-0000001",
            "error_type": "MappingError",
            "error": "bad colour",
            "permanent": True,
        },
        {
            "event": "dead_lettered",
            "log_level": "warning",
            "run_id": str(RUN),
            "channel": DE,
            "sku": "GEN-0000002",
            "error_type": "RuntimeError",
            "error": "DAM down",
            "permanent": False,
        },
    ]
    # failing again: one open letter per unit, its attempts added up
    publish_to([DE], ["GEN-0000001"])
    assert open_letters()[0][5] == 2


def test_a_unit_failing_unexpectedly_before_its_last_attempt_is_retried_alone(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    real = publish.evaluate
    monkeypatch.setattr(
        publish,
        "evaluate",
        lambda p, rt: (
            (_ for _ in ()).throw(RuntimeError("x"))
            if p.identifier == "GEN-0000002"
            else real(p, rt)
        ),
    )
    run_id, _ = planned("republish", SKUS[:4])
    (res,) = publish_to(
        [DE],
        SKUS[:4],
        run_id=run_id,
        attempt=2,
        settings={"publish_max_attempts": 3, "retry_backoff_base_seconds": 0},
    ).values()
    assert outcome(res) == (2, 0, 1, 0, 0, 0) and res.retried == 1
    assert len(res.retry_batches) == 1 and open_letters() == []
    assert batches(run_id)[1] == (["GEN-0000002"], "pending", 3, T0 + MIN)


def test_a_unit_that_succeeds_resolves_its_open_dead_letters(synced: Harness) -> None:
    decide_again(*SKUS)
    letters = [
        publish._dead_letter(DE, sku, None, ValueError("old"), True, T0)
        for sku in ("GEN-0000001", "GEN-0000003", "GEN-0000005")
    ]
    letters.append(
        publish._dead_letter("at_storefront", "GEN-0000001", None, ValueError("x"), True, T0)
    )
    with session_scope() as s:
        repo.upsert_dead_letters(s, letters)
    publish_to([DE], ["GEN-0000001", "GEN-0000003"])
    with session_scope() as s:
        got = {(d.channel, d.sku): (d.status, d.replayed_at) for d in s.scalars(select(DeadLetter))}
    assert got == {
        (DE, "GEN-0000001"): ("resolved", T0 + MIN),
        (DE, "GEN-0000003"): ("resolved", T0 + MIN),  # incomplete is a success too
        (DE, "GEN-0000005"): ("open", None),
        ("at_storefront", "GEN-0000001"): ("open", None),
    }


def test_a_row_the_database_refuses_is_dead_lettered_alone(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value no check caught (here: a document the mapping made with a NUL) is refused by
    PostgreSQL: that unit fails, its neighbours are written."""
    decide_again(*SKUS)
    real = publish.evaluate

    def evaluate(product: Product, rt: ChannelRuntime) -> UnitOutcome:
        out = real(product, rt)
        if product.identifier in ("GEN-0000000", "GEN-0000002"):
            out.doc = {**(out.doc or {}), "title": "nul\x00inside"}
        return out

    monkeypatch.setattr(publish, "evaluate", evaluate)
    with session_scope() as s:
        repo.upsert_dead_letters(
            s, [publish._dead_letter(DE, "GEN-0000002", None, ValueError("old"), True, T0)]
        )
    (res,) = publish_to([DE], SKUS[:3]).values()
    assert outcome(res) == (1, 0, 0, 0, 0, 2)  # each refused row counts; the rest are written
    assert [c.sku for c in res.changes] == ["GEN-0000001"]
    first, second = open_letters()
    assert first[:3] == (DE, "GEN-0000000", "UntranslatableCharacter")
    assert (first[4], first[5], first[6]) == (True, 1, RUN)
    assert second[:3] == (DE, "GEN-0000002", "UntranslatableCharacter")
    assert (second[4], second[5], second[6]) == (True, 2, RUN)
    assert row_states()["GEN-0000002"][2] != RUN  # the row as it was


def test_products_decoded_for_another_channel_are_reused_when_unchanged(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    loads: list[list[str]] = []
    real = pim_repo.load_products

    def load_products(session: Any, identifiers: list[str]) -> Any:
        loads.append(list(identifiers))
        return real(session, identifiers)

    monkeypatch.setattr(pim_repo, "load_products", load_products)
    cache: dict[str, Any] = {}
    publish_to([DE], SKUS[:3], cache=cache)
    assert loads == [SKUS[:3]] and sorted(cache) == SKUS[:3]
    decide_again(*SKUS)
    edit_mirror("GEN-0000001", enabled=False)  # a new content hash: the cached copy is stale
    publish_to([DE], SKUS[:3], cache=cache)
    assert loads == [SKUS[:3], ["GEN-0000001"]]
    assert cache["GEN-0000001"].content_hash == "edited-GEN-0000001"
    assert row_states()["GEN-0000001"][0] == "disabled_in_pim"


def test_attributes_the_contract_does_not_map_are_counted_as_drift_per_batch(
    synced: Harness,
) -> None:
    """storefront_de@1 (``unmapped: warn``) has no mapping for ``sustainability_score``: each
    product carrying it publishes, and the batch adds one count per product to its drift."""
    with session_scope() as s:
        s.execute(delete(DriftEvent))
    score = [{"locale": None, "scope": None, "data": 42}]
    for sku in ("GEN-0000001", "GEN-0000004"):
        with session_scope() as s:
            row = s.get(PimProduct, sku)
            assert row is not None
            values = {k: v for k, v in row.raw["values"].items() if k != "sustainability_score"}
        edit_mirror(sku, values={**values, "sustainability_score": score})
    decide_again(*SKUS)
    publish_to([DE], ["GEN-0000001", "GEN-0000002", "GEN-0000004"])
    publish_to([DE], ["GEN-0000004"])  # decided again: unchanged, not counted
    with session_scope() as s:
        drift = [
            (d.contract_id, d.contract_version, d.attribute, d.channel, d.strategy, d.count)
            for d in s.scalars(select(DriftEvent))
        ]
    assert drift == [("storefront_de", 1, "sustainability_score", DE, "warn", 2)]
    with session_scope() as s:
        (sample,) = s.scalars(select(DriftEvent.sample_sku))
    assert sample == "GEN-0000001"  # the first product of the batch that carried it
    assert row_states()["GEN-0000004"][0] == "published"


def test_a_suspect_product_is_refused_where_its_document_holds_the_nul(synced: Harness) -> None:
    decide_again(*SKUS)
    for sku in ("GEN-0000001", "GEN-0000004"):
        with session_scope() as s:
            product = s.get(PimProduct, sku)
            assert product is not None
            values = {**product.raw["values"]}
        values["name"] = [{"locale": "de_DE", "scope": None, "data": "Bad\x00"}]
        edit_mirror(sku, values=values)
    (res,) = publish_to([DE], ["GEN-0000001", "GEN-0000002", "GEN-0000004"]).values()
    assert outcome(res) == (1, 0, 0, 0, 0, 2)  # each refused product counts
    assert open_letters() == [
        (
            DE,
            sku,
            "UnstorableText",
            "value of `name` in de_DE contains a NUL character",
            True,
            1,
            RUN,
        )
        for sku in ("GEN-0000001", "GEN-0000004")
    ]


# --- one message of batches -----------------------------------------------------------------


def grouped_runs() -> tuple[list[int], list[int]]:
    """A republish of de_storefront and one of at_storefront, each of two batches over the
    same SKUs planned under one group key; the first of each in flight."""
    firsts, seconds = [], []
    for channel in (DE, "at_storefront"):
        run_id = ready("republish", channel=channel, planned_batches=2, pending_batches=2)
        with session_scope() as s:
            ids = repo.create_batches(s, run_id, channel, [SKUS[:6], SKUS[6:]], group_key="g")
            repo.release_batches(s, run_id, 1, T0)
        firsts.append(ids[0])
        seconds.append(ids[1])
    return firsts, seconds


def test_a_message_decodes_its_products_once_and_sends_what_it_released_together(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    firsts, seconds = grouped_runs()
    loads: list[list[str]] = []
    real = pim_repo.load_products

    def load_products(session: Any, identifiers: list[str]) -> Any:
        loads.append(sorted(identifiers))
        return real(session, identifiers)

    monkeypatch.setattr(pim_repo, "load_products", load_products)
    sent = Recorder()
    structlog.contextvars.bind_contextvars(request="kept")
    publish.publish_batches(context(sent, at=T0 + MIN, channel_inflight_batches=1), firsts)
    assert loads == [SKUS[:6]]  # one read of the mirror for both channels
    # the batches both released travel in one message, as they were planned
    assert sent.published == [(sorted(seconds), {"channels": ["at_storefront", DE], "units": 12})]
    assert structlog.contextvars.get_contextvars() == {"request": "kept"}
    structlog.contextvars.clear_contextvars()


def test_a_message_failing_midway_still_sends_what_it_released(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    firsts, seconds = grouped_runs()
    real = publish.publish_units
    calls: list[int] = []

    def publish_units(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("SELECT 1", {}, Exception("connection lost"))
        return real(*args, **kwargs)

    monkeypatch.setattr(publish, "publish_units", publish_units)
    sent = Recorder()
    with pytest.raises(OperationalError):
        publish.publish_batches(context(sent, at=T0 + MIN, channel_inflight_batches=1), firsts)
    assert sent.published == [([seconds[0]], {"channels": [DE], "units": 6})]
    assert "run_id" not in structlog.contextvars.get_contextvars()
    assert "channel" not in structlog.contextvars.get_contextvars()


def test_a_batch_logs_under_its_run_and_channel_and_analyzes_the_hot_tables(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every log line of a batch names its run and channel; the hot tables' statistics are
    refreshed (if stale) when a run ends and every eighth batch, not after each batch."""
    decide_again(*SKUS)
    with session_scope() as s:  # other batches first: the run's second gets a multiple of 8
        filler = repo.create_run(s, "full", "b2b_portal", T0).id
        last = repo.create_batches(s, filler, "b2b_portal", [["X"]])[0]
        while (last + 2) % 8 or (last + 2) % 9 == 0:  # (not a multiple of 9 either)
            last = repo.create_batches(s, filler, "b2b_portal", [["X"]])[0]
    run_id, ids = planned("republish", SKUS[:4], SKUS[4:8], SKUS[8:])
    assert ids == [last + 1, last + 2, last + 3] and ids[1] % 8 == 0
    seen: list[dict[str, Any]] = []
    real = publish.publish_units

    def publish_units(*args: Any, **kwargs: Any) -> Any:
        seen.append(structlog.contextvars.get_contextvars())
        return real(*args, **kwargs)

    analyzed: list[tuple[Any, ...]] = []
    monkeypatch.setattr(publish, "publish_units", publish_units)
    monkeypatch.setattr(
        publish,
        "analyze_if_stale",
        lambda session, tables, share: analyzed.append((tables, share)),
    )
    hot = (("channel_product", "product_page"), HOT_PATH_SHARE)
    sent = Recorder()
    run_batch(ids[0], sent, channel_inflight_batches=1)
    assert analyzed == []
    with session_scope() as s:
        second = s.get(SyncBatch, ids[1])
        assert second is not None and (second.status, second.enqueued_at) == ("enqueued", T0 + MIN)
    run_batch(ids[1], sent, at=T0 + 2 * MIN)
    assert analyzed == [hot]
    run_batch(ids[2], sent, at=T0 + 3 * MIN)
    assert analyzed == [hot, hot] and run_row(run_id).status == "completed"
    assert seen == [{"run_id": str(run_id), "channel": DE}] * 3
    structlog.contextvars.clear_contextvars()


def test_without_options_a_unit_is_on_its_first_attempt_and_pages_follow_by_events(
    synced: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide_again(*SKUS)
    raising(monkeypatch, RuntimeError("DAM down"), "GEN-0000001", "GEN-0000002")
    run_id, _ = planned("republish", SKUS)
    sent = Recorder()
    ctx = context(sent, at=T0 + MIN, publish_max_attempts=2, retry_backoff_base_seconds=0)
    with session_scope() as s:
        rt = REGISTRY.runtime(s, ctx.settings, DE)
        one = publish.publish_units(s, ctx, rt, run_id, ["GEN-0000000", "GEN-0000001"])
        many = publish.publish_channels(s, ctx, [rt], run_id, ["GEN-0000002", "GEN-0000004"])
    assert (one.synced, one.retried, many[DE].synced, many[DE].retried) == (1, 1, 1, 1)
    assert [(skus, attempt) for skus, _, attempt, _ in batches(run_id)[1:]] == [
        (["GEN-0000001"], 2),
        (["GEN-0000002"], 2),
    ]
    assert sent.projected == []
    assert sent.catalog == [{DE: ["GEN-0000000", "GEN-0000004"]}]


@pytest.mark.parametrize("value", ["0", "257", "-1", "two"])
def test_publish_spread_out_of_range_is_refused_naming_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("PIMSYNC_PUBLISH_SPREAD", value)
    with pytest.raises(ValidationError, match="publish_spread"):
        Settings()
    for good in ("1", "256"):
        monkeypatch.setenv("PIMSYNC_PUBLISH_SPREAD", good)
        assert Settings().publish_spread == int(good)
