"""The ingest's pieces (app/sync/ingest.py) called directly: how a page is parsed, how the
products the mirror already holds are set aside, how pages are grouped, and what one group's
commit leaves in the runs, the mirror and the log.

The sync service tests (test_service.py) drive the same code through whole syncs; here each
rule is pinned down alone, with the values written out."""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import structlog
from sqlalchemy import select
from structlog.testing import capture_logs

from app.config import Settings
from app.db import session_scope
from app.dev import generator
from app.mapping.models import OwnershipViolation
from app.pim import repository as pim_repo
from app.pim.catalog import build_definitions
from app.pim.models import PimProduct
from app.pim.product import MAX_PRODUCT_BYTES, content_hash, parse_product
from app.pim.source import Page
from app.sync import ingest, runs
from app.sync import repository as repo
from app.sync.context import SyncContext
from app.sync.models import DeadLetter, SyncBatch, SyncCursor, SyncLock, SyncRun
from app.sync.runtime import REGISTRY
from tests.sync.conftest import Harness
from tests.sync.flow_support import ended_meanwhile, run_row
from tests.sync.memory_source import MemorySource

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]


def product(identifier: str | None, **fields: object) -> dict[str, object]:
    """A valid standard-format product (no ``updated``: parsing keeps it as it is)."""
    raw: dict[str, object] = {
        "identifier": identifier,
        "family": "laptops",
        "categories": ["computers"],
        "enabled": True,
        "values": {"name": [{"locale": "en_US", "scope": None, "data": f"Name {identifier}"}]},
    }
    raw.update(fields)
    return raw


# --- _identifier_in ------------------------------------------------------------------------


def test_the_identifier_is_the_top_level_field_when_there_is_one() -> None:
    item = {"identifier": "TOP", "values": {"sku": [{"locale": None, "data": "IN-VALUES"}]}}
    assert ingest._identifier_in(item, "sku") == "TOP"
    # an empty identifier is still the one the item carries (the parser refuses it)
    assert ingest._identifier_in({"identifier": "", "values": {}}, "sku") == ""


def test_without_one_the_identifier_is_the_first_text_value_of_its_attribute() -> None:
    values = {
        "sku": [{"data": "SKU-1"}],
        "ean": ["not an entry", {"data": 4006381333931}, {"data": None}, {"data": "EAN-1"}],
    }
    assert ingest._identifier_in({"identifier": None, "values": values}, "sku") == "SKU-1"
    assert ingest._identifier_in({"values": values}, "ean") == "EAN-1"


@pytest.mark.parametrize(
    "item",
    [
        {},
        {"identifier": None},
        {"values": None},
        {"values": [{"sku": [{"data": "A"}]}]},  # values not an object
        {"values": {"sku": {"data": "A"}}},  # the attribute's entries not a list
        {"values": {"sku": []}},
        {"values": {"sku": [{"data": ["A"]}, {"locale": None}]}},  # no text data
        {"values": {"name": [{"data": "A"}]}},  # another attribute
    ],
)
def test_an_item_without_a_readable_identifier_has_none(item: dict[str, object]) -> None:
    assert ingest._identifier_in(item, "sku") is None


# --- _groups -------------------------------------------------------------------------------


def pages(*spec: tuple[int, str | None]) -> list[Page]:
    """Pages of ``n`` items each, with their resume tokens."""
    return [Page(items=[{"n": i} for i in range(n)], next_cursor=token) for n, token in spec]


def test_pages_are_grouped_until_the_group_holds_the_batch_size() -> None:
    p = pages((3, "1"), (2, "2"), (4, "3"), (1, None))
    got = list(ingest._groups(iter(p), 5))
    # 3+2 reaches 5 exactly; then 4+1 ends the export
    assert got == [([p[0], p[1]], "2", False), ([p[2], p[3]], None, True)]
    assert got[0][0][0] is p[0] and got[1][0][1] is p[3]


def test_a_group_short_of_the_size_by_one_takes_the_next_page() -> None:
    p = pages((2, "1"), (2, "2"), (1, None))
    assert list(ingest._groups(iter(p), 5)) == [([p[0], p[1], p[2]], None, True)]


def test_the_last_page_ends_its_group_and_the_read_whatever_the_size() -> None:
    p = pages((1, "1"), (1, None), (9, "never read"))
    assert list(ingest._groups(iter(p), 100)) == [([p[0], p[1]], None, True)]


def test_a_group_over_the_size_is_handed_over_whole() -> None:
    p = pages((7, "a"), (7, "b"))
    assert list(ingest._groups(iter(p), 5)) == [
        ([p[0]], "a", False),
        ([p[1]], "b", False),
        ([], "b", True),
    ]


def test_pages_that_stop_without_a_last_token_end_the_read() -> None:
    # a source that stops early: what was read is one last group, the read is exhausted
    p = pages((2, "1"), (2, "2"))
    assert list(ingest._groups(iter(p), 100)) == [([p[0], p[1]], "2", True)]
    assert list(ingest._groups(iter([]), 100)) == [([], None, True)]


# --- _parse_page ---------------------------------------------------------------------------


def test_a_page_is_parsed_encoded_and_hashed() -> None:
    a, b = product("A"), product("B", categories=["b", "a"])
    good, bad = ingest._parse_page(Page(items=[a, b]), "sku")
    assert bad == []
    assert [(p.identifier, digest) for p, digest in good] == [
        ("A", content_hash(a)),
        ("B", content_hash(b)),
    ]
    assert [p.encoded for p, _ in good] == [orjson.dumps(a), orjson.dumps(b)]


def test_a_hash_already_computed_is_used_as_it_is() -> None:
    a, b = product("A"), product("B")
    good, _ = ingest._parse_page(Page(items=[a, b]), "sku", {"A": "given-hash-of-a"})
    assert [(p.identifier, digest) for p, digest in good] == [
        ("A", "given-hash-of-a"),
        ("B", content_hash(b)),
    ]


def test_the_identifier_attribute_names_where_the_sku_is() -> None:
    item = product(None, values={"ean": [{"locale": None, "scope": None, "data": "EAN-9"}]})
    good, bad = ingest._parse_page(Page(items=[item]), "ean")
    assert [p.identifier for p, _ in good] == ["EAN-9"] and bad == []
    good, bad = ingest._parse_page(Page(items=[item]), "sku")
    assert good == [] and bad == [
        (
            "<unknown>",
            "product '<unknown>': field 'identifier': missing (no `identifier`, no `sku` value,"
            " no uuid)",
        )
    ]


def test_a_product_up_to_the_size_limit_is_kept_one_byte_more_is_refused() -> None:
    item = product("BIG")
    filler = MAX_PRODUCT_BYTES - len(orjson.dumps(item)) - len(orjson.dumps({"pad": ""})) + 1
    item["pad"] = "x" * filler  # the encoded payload is now exactly the limit
    assert len(orjson.dumps(item)) == MAX_PRODUCT_BYTES
    good, bad = ingest._parse_page(Page(items=[item]), "sku")
    assert [p.identifier for p, _ in good] == ["BIG"] and bad == []
    item["pad"] += "x"
    good, bad = ingest._parse_page(Page(items=[item]), "sku")
    assert good == []
    assert bad == [
        (
            "BIG",
            "product 'BIG': field '<root>': 2,000,001 bytes, more than 2,000,000",
        )
    ]


def test_refused_items_are_named_with_the_reason_and_the_rest_is_kept() -> None:
    items = [
        product("OK-1"),
        product("BAD-FLAG", enabled="yes"),
        product("HUGE-INT", extra=2**70),  # parses, but orjson holds 64-bit integers only
        product(None, uuid="0b0e5a9e-1111-4222-8333-444455556666", extra=2**70),
        "not an object",
        product("OK-2"),
    ]
    page = Page(items=items, errors=["line 7: not JSON", "line 9: not JSON"])
    good, bad = ingest._parse_page(page, "sku")
    assert [p.identifier for p, _ in good] == ["OK-1", "OK-2"]
    assert bad == [
        ("BAD-FLAG", "product 'BAD-FLAG': field 'enabled': must be true or false, got 'yes'"),
        ("HUGE-INT", "cannot be stored as JSON: Integer exceeds 64-bit range"),
        ("?", "cannot be stored as JSON: Integer exceeds 64-bit range"),
        ("<unknown>", "product '<unknown>': field '<root>': expected an object, got str"),
        ("?", "line 7: not JSON"),
        ("?", "line 9: not JSON"),
    ]


# --- _record_progress ----------------------------------------------------------------------


def test_progress_takes_the_first_total_a_page_carries_and_when_it_moved() -> None:
    run = SyncRun(details={"channels": ["web"], "waiting": "PIM answered 503"})
    group = [Page(items=[]), Page(items=[], total=120), Page(items=[], total=7)]
    ingest._record_progress(run, group, T0)
    assert run.details == {"channels": ["web"], "total": 120, "progress_at": T0.isoformat()}


def test_progress_keeps_the_total_it_has_and_starts_from_no_details() -> None:
    run = SyncRun(details={"total": 50, "progress_at": "earlier"})
    ingest._record_progress(run, [Page(items=[], total=0)], T0)
    assert run.details == {"total": 50, "progress_at": T0.isoformat()}
    run = SyncRun(details=None)
    ingest._record_progress(run, [Page(items=[])], T0)
    assert run.details == {"progress_at": T0.isoformat()}
    run = SyncRun(details=None)
    ingest._record_progress(run, [Page(items=[], total=0)], T0)
    assert run.details == {"total": 0, "progress_at": T0.isoformat()}


# --- _split_known --------------------------------------------------------------------------


def mirror(*raws: dict[str, object], removed: tuple[str, ...] = ()) -> None:
    """The mirror holding these payloads (as a read would have stored them)."""
    with session_scope() as s:
        pim_repo.upsert_products(s, [(parse_product(r), content_hash(r)) for r in raws], None, T0)
        pim_repo.mark_removed(s, list(removed), T0)


def test_products_the_mirror_holds_unchanged_are_set_aside(pg_db: str) -> None:
    by_values = product(None, values={"sku": [{"locale": None, "scope": None, "data": "BYVAL"}]})
    stored_by_values = dict(by_values, identifier="BYVAL")
    mirror(
        product("KNOWN"),
        product("CHANGED"),
        product("GONE"),
        product("TWICE"),
        product("NO-VALUES", values=None, categories=None),
        stored_by_values,
        removed=("GONE",),
    )
    known, changed, fresh = product("KNOWN"), product("CHANGED", family="cameras"), product("NEW")
    gone, twice_1, twice_2 = product("GONE"), product("TWICE"), product("TWICE")
    no_values = product("NO-VALUES", values=None, categories=None)
    first = Page(items=[known, changed, "junk", twice_1], next_cursor="p1", errors=["bad line"])
    second = Page(items=[fresh, gone, by_values, twice_2, no_values], next_cursor=None)

    rest, held, hashes = ingest._split_known([first, second], "sku")

    assert held == [known, by_values, no_values]
    assert by_values["identifier"] == "BYVAL"  # hashed (and marked seen) under its identifier
    assert rest == [
        Page(items=[changed, "junk", twice_1], next_cursor="p1", errors=["bad line"]),
        Page(items=[fresh, gone, twice_2], next_cursor=None),
    ]
    # every hash computed, for the parser (an identifier repeated in the group has none)
    assert hashes == {
        ident: content_hash(raw)
        for ident, raw in [
            ("KNOWN", known),
            ("CHANGED", changed),
            ("NEW", fresh),
            ("GONE", gone),
            ("BYVAL", stored_by_values),
            ("NO-VALUES", no_values),
        ]
    }


def test_the_sku_is_looked_for_where_akeneo_keeps_it_unless_told(pg_db: str) -> None:
    item = product(None, values={"sku": [{"locale": None, "scope": None, "data": "BYVAL"}]})
    mirror(dict(item, identifier="BYVAL"))
    rest, held, _ = ingest._split_known([Page(items=[item])])
    assert held == [item] and rest == [Page(items=[])]


@pytest.mark.parametrize(
    "odd",
    [
        product(""),
        product(42),
        product("NUL\x00SKU"),
        product("SURROGATE\udc80"),
        product("LIST-VALUES", values=[{"data": "x"}]),
        product("TEXT-CATEGORIES", categories="computers"),
        product("HUGE", values={"weight": [{"data": 2**70}]}),
    ],
)
def test_odd_items_take_the_parsers_path(pg_db: str, odd: dict[str, object]) -> None:
    mirror(product("KNOWN"))
    group = [Page(items=[odd, product("KNOWN")], next_cursor="t")]
    rest, held, hashes = ingest._split_known(group, "sku")
    assert rest == [Page(items=[odd], next_cursor="t")] and held == [product("KNOWN")]
    assert hashes == {"KNOWN": content_hash(product("KNOWN"))}


def test_a_group_with_nothing_known_is_handed_back_as_it_is(pg_db: str) -> None:
    mirror(product("KNOWN"))
    group = [Page(items=[product("NEW"), product("KNOWN", enabled=False)], next_cursor="t")]
    rest, held, hashes = ingest._split_known(group, "sku")
    assert rest is group and held == []
    assert hashes == {
        "NEW": content_hash(product("NEW")),
        "KNOWN": content_hash(product("KNOWN", enabled=False)),
    }
    group = [Page(items=["junk", product("TWICE"), product("TWICE")])]
    assert ingest._split_known(group, "sku") == (group, [], {})
    assert ingest._split_known(group, "sku")[0] is group


# --- start_full, start_delta ---------------------------------------------------------------


def children(run_id: uuid.UUID) -> dict[str | None, SyncRun]:
    with session_scope() as s:
        found = repo.child_runs(s, run_id)
        for c in found:
            s.expunge(c)
        return {c.channel: c for c in found}


def held_locks() -> dict[str, uuid.UUID]:
    with session_scope() as s:
        return {lk.name: lk.run_id for lk in s.execute(select(SyncLock)).scalars()}


@pytest.fixture
def at_t0(harness: Harness) -> Harness:
    harness.ctx.clock = lambda: T0
    return harness


def test_a_full_sync_starts_one_read_and_a_run_per_channel(at_t0: Harness) -> None:
    mirror(product("A"), product("B"))  # the mirror's clock is at 1: its watermark is 2
    with capture_logs() as logs, session_scope() as s:
        run = ingest.start_full(
            s, at_t0.ctx, ["uk_marketplace", "de_storefront"], "api", "generated:5"
        )
        assert run is not None
        run_id = run.id
    parent = run_row(run_id)
    assert (parent.kind, parent.channel, parent.status, parent.parent_id) == (
        "full",
        None,
        "running",
        None,
    )
    assert (parent.trigger, parent.started_at, parent.source_kind, parent.source) == (
        "api",
        T0,
        "generated",
        "generated:5",
    )
    assert parent.details == {"channels": ["uk_marketplace", "de_storefront"]}
    kids = children(run_id)
    assert sorted(kids, key=str) == ["de_storefront", "uk_marketplace"]
    for code, kid in kids.items():
        assert (kid.kind, kid.status, kid.trigger, kid.started_at) == ("full", "running", "api", T0)
        assert kid.cursor_to == "2", code
    assert held_locks() == {
        "full:de_storefront": kids["de_storefront"].id,
        "full:uk_marketplace": kids["uk_marketplace"].id,
    }
    assert list(at_t0.dispatcher.queue) == [("ingest", (run_id,))]  # sent once committed
    assert logs == [
        {
            "event": "full_sync_started",
            "log_level": "info",
            "phase": "start",
            "run_id": str(run_id),
            "channels": ["uk_marketplace", "de_storefront"],
            "trigger": "api",
            "source": "generated:5",
        }
    ]


def test_a_full_sync_skips_its_busy_channels_and_none_at_all_when_every_one_is(
    at_t0: Harness,
) -> None:
    with session_scope() as s:
        first = ingest.start_full(s, at_t0.ctx, ["de_storefront"])
        assert first is not None
        first_id = first.id
    busy = children(first_id)["de_storefront"].id
    with session_scope() as s:
        second = ingest.start_full(s, at_t0.ctx, ["de_storefront", "at_storefront"])
        assert second is not None
        second_id = second.id
    parent = run_row(second_id)
    assert (parent.status, parent.trigger, parent.source_kind, parent.source) == (
        "running",
        "cli",
        "sample",
        "sample",
    )
    assert parent.details == {"channels": ["at_storefront"]}
    kids = children(second_id)
    skipped = kids["de_storefront"]
    assert (skipped.status, skipped.error, skipped.finished_at) == (
        "skipped",
        f"a run holding 'full:de_storefront' is still in progress (run {busy})",
        T0,
    )
    assert kids["at_storefront"].status == "running"

    at_t0.dispatcher.queue.clear()
    with capture_logs() as logs, session_scope() as s:
        assert ingest.start_full(s, at_t0.ctx, ["at_storefront", "de_storefront"]) is None
    with session_scope() as s:
        last = s.execute(
            select(SyncRun).where(SyncRun.parent_id.is_(None)).order_by(SyncRun.started_at)
        ).scalars()
        third = [r for r in last if r.id not in (first_id, second_id)]
        assert [(r.status, r.error, r.finished_at, r.details) for r in third] == [
            ("skipped", "every channel is already syncing", T0, None)
        ]
    assert not at_t0.dispatcher.queue  # nothing to read
    assert [e["event"] for e in logs] == ["full_sync_skipped", "full_sync_skipped"]


def test_a_full_sync_of_every_channel_when_none_is_named(at_t0: Harness) -> None:
    with session_scope() as s:
        run = ingest.start_full(s, at_t0.ctx)
        assert run is not None
        run_id = run.id
    assert sorted(children(run_id), key=str) == CHANNELS
    assert run_row(run_id).details == {"channels": CHANNELS}
    assert children(run_id)["b2b_portal"].cursor_to == "1"  # an empty mirror's watermark


def test_a_delta_reads_from_the_cursor_less_the_overlap_until_it_started(
    at_t0: Harness,
) -> None:
    with session_scope() as s:
        repo.set_cursor(s, "ingest", "2026-11-27T09:00:00+00:00", T0, None)
    with capture_logs() as logs, session_scope() as s:
        run_id = ingest.start_delta(s, at_t0.ctx, source="generated:5").id
    run = run_row(run_id)
    assert (run.kind, run.channel, run.status, run.trigger, run.started_at) == (
        "delta",
        None,
        "running",
        "beat",
        T0,
    )
    assert (run.source_kind, run.source) == ("generated", "generated:5")
    # the default overlap is 120 s
    assert (run.cursor_from, run.cursor_to) == (
        "2026-11-27T08:58:00+00:00",
        "2026-11-27T10:00:00+00:00",
    )
    assert held_locks() == {"ingest:delta": run_id}
    assert list(at_t0.dispatcher.queue) == [("ingest", (run_id,))]
    assert logs == [
        {
            "event": "delta_sync_started",
            "log_level": "info",
            "phase": "start",
            "run_id": str(run_id),
            "trigger": "beat",
            "source": "generated:5",
            "since": "2026-11-27T08:58:00+00:00",
        }
    ]


def test_a_first_delta_reads_everything_and_a_second_one_is_skipped(at_t0: Harness) -> None:
    with session_scope() as s:
        first = ingest.start_delta(s, at_t0.ctx, trigger="api").id
    run = run_row(first)
    assert (run.trigger, run.source, run.cursor_from, run.cursor_to) == (
        "api",
        "sample",
        None,
        T0.isoformat(),
    )
    at_t0.dispatcher.queue.clear()
    with capture_logs() as logs, session_scope() as s:
        second = ingest.start_delta(s, at_t0.ctx).id
    run = run_row(second)
    assert (run.status, run.error, run.finished_at, run.cursor_from, run.cursor_to) == (
        "skipped",
        f"a run holding 'ingest:delta' is still in progress (run {first})",
        T0,
        None,
        None,
    )
    assert not at_t0.dispatcher.queue
    assert [e["event"] for e in logs] == ["delta_sync_skipped"]


# --- a read, group by group ----------------------------------------------------------------

INGEST_EVENTS = {
    "definitions_refreshed",
    "ingest_page",
    "product_rejected",
    "full_ingest_complete",
    "delta_ingest_complete",
    "ingest_slice_skipped",
    "ingest_lease_lost",
}


@pytest.fixture
def debug_logs() -> Iterator[list[dict[str, Any]]]:
    """The ingest's own log lines, debug ones included, without the timestamps."""
    previous = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(wrapper_class=previous)


def ingest_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in INGEST_EVENTS]


def small_catalog(monkeypatch: pytest.MonkeyPatch, harness: Harness) -> Harness:
    """Three generated products and one the parser refuses, read two to a page and a group."""
    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_AKENEO_PAGE_SIZE", "2")
    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "2")
    reset_settings_cache()
    harness.reload_settings()
    harness.source = MemorySource.generated(3)
    bad = copy.deepcopy(harness.source.products["GEN-0000000"])
    bad.update(identifier="BAD-1", uuid="0b0e5a9e-1111-4222-8333-444455556666", enabled="yes")
    harness.source.products["BAD-1"] = bad
    harness.ctx.clock = lambda: T0
    return harness


def test_a_full_read_records_each_group_and_ends_its_read(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, debug_logs: list[dict[str, Any]]
) -> None:
    h = small_catalog(monkeypatch, harness)
    refusal = "product 'BAD-1': field 'enabled': must be true or false, got 'yes'"
    run_id = h.full(["de_storefront"])
    with session_scope() as s:
        digest = pim_repo.definitions_hash(s)
        letters = [
            (d.channel, d.sku, d.run_id, d.kind, d.error, d.first_failed_at)
            for d in s.execute(select(DeadLetter)).scalars()
        ]
        cursor = repo.get_cursor(s, "ingest")
    assert digest is not None
    r = str(run_id)
    assert ingest_lines(debug_logs) == [
        {"event": "definitions_refreshed", "log_level": "info", "source": "memory", "hash": digest},
        # the pages [BAD-1, GEN-0000000], then [GEN-0000001, GEN-0000002]
        {
            "event": "product_rejected",
            "log_level": "warning",
            "run_id": r,
            "sku": "BAD-1",
            "error": refusal,
        },
        {
            "event": "ingest_page",
            "log_level": "debug",
            "run_id": r,
            "kind": "full",
            "products": 1,
            "unchanged": 0,
            "rejected": 1,
            "read": 2,
        },
        {
            "event": "ingest_page",
            "log_level": "debug",
            "run_id": r,
            "kind": "full",
            "products": 2,
            "unchanged": 0,
            "rejected": 0,
            "read": 4,
        },
        {
            "event": "full_ingest_complete",
            "log_level": "info",
            "phase": "read",
            "run_id": r,
            "read": 4,
            "rejected": 1,
            "channels": ["de_storefront"],
        },
    ]
    parent = run_row(run_id)
    assert (parent.status, parent.read, parent.rejected, parent.resume_token) == (
        "completed",
        4,
        1,
        None,
    )
    assert (parent.finished_at, parent.heartbeat_at) == (T0, T0)
    assert parent.details == {
        "channels": ["de_storefront"],
        "total": 4,
        "progress_at": T0.isoformat(),
    }
    assert letters == [("*", "BAD-1", run_id, "ingest", refusal, T0)]
    # a read that refused a product leaves the ingest cursor where it was
    assert cursor is None
    kid = children(run_id)["de_storefront"]
    assert kid.status == "completed", kid.error
    # one batch per group; the refused product is a unit of the channel, failed at planning
    assert (kid.planned_units, kid.planned_batches, kid.failed, kid.processed) == (4, 2, 1, 4)
    assert held_locks() == {}


def test_a_clean_full_read_moves_the_ingest_cursor_to_when_it_started(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = small_catalog(monkeypatch, harness)
    del h.source.products["BAD-1"]
    with session_scope() as s:  # a cursor from before this read moves on
        repo.set_cursor(s, "ingest", "2026-11-27T09:59:59+00:00", T0, None)
    run_id = h.full(["de_storefront"])
    with session_scope() as s:
        assert repo.get_cursor(s, "ingest") == "2026-11-27T10:00:00+00:00"
    assert run_row(run_id).status == "completed"
    with session_scope() as s:  # one from after it stays
        repo.set_cursor(s, "ingest", "2026-11-27T10:00:01+00:00", T0, None)
    h.full(["de_storefront"])
    with session_scope() as s:
        assert repo.get_cursor(s, "ingest") == "2026-11-27T10:00:01+00:00"


def test_a_delta_read_sets_aside_what_the_mirror_holds_and_lets_every_channel_catch_up(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, debug_logs: list[dict[str, Any]]
) -> None:
    h = small_catalog(monkeypatch, harness)
    h.full(["de_storefront"])
    h.source.products["BAD-1"]["enabled"] = False  # fixed in the PIM
    h.dispatcher.sent.clear()
    debug_logs.clear()
    with session_scope() as s:
        run_id = ingest.start_delta(s, h.ctx, trigger="test").id
    h.drain()
    r = str(run_id)
    assert ingest_lines(debug_logs) == [
        {
            "event": "ingest_page",
            "log_level": "debug",
            "run_id": r,
            "kind": "delta",
            "products": 2,
            "unchanged": 1,
            "rejected": 0,
            "read": 2,
        },
        {
            "event": "ingest_page",
            "log_level": "debug",
            "run_id": r,
            "kind": "delta",
            "products": 2,
            "unchanged": 2,
            "rejected": 0,
            "read": 4,
        },
        {
            "event": "delta_ingest_complete",
            "log_level": "info",
            "phase": "read",
            "run_id": r,
            "read": 4,
            "rejected": 0,
            "cursor": "2026-11-27T10:00:00+00:00",
        },
    ]
    run = run_row(run_id)
    assert (run.status, run.finished_at, run.read, run.rejected) == ("completed", T0, 4, 0)
    # one message plans every channel
    assert [args for name, args in h.dispatcher.sent if name == "catch_up"] == [
        (list(CHANNELS), run_id, "delta")
    ]
    with session_scope() as s:
        assert repo.get_cursor(s, "ingest") == "2026-11-27T10:00:00+00:00"
        assert s.get(PimProduct, "BAD-1") is not None
    assert "ingest:delta" not in held_locks()


# --- definitions, planning -----------------------------------------------------------------


class DefinitionsSource:
    """A PIM whose definitions are counted as they are read (and its client's cache dropped)."""

    name = "counted"

    def __init__(self, can_invalidate: bool = True) -> None:
        self.reads = 0
        self.invalidated = 0
        if not can_invalidate:
            self.invalidate_definitions = None

    def invalidate_definitions(self) -> None:  # type: ignore[no-redef]
        self.invalidated += 1

    def definitions(self) -> Any:
        self.reads += 1
        return generator.generated_definitions()


def test_definitions_are_read_again_once_they_are_as_old_as_the_refresh_period(
    harness: Harness, debug_logs: list[dict[str, Any]]
) -> None:
    source = DefinitionsSource()
    clock = {"now": T0}
    harness.ctx.clock = lambda: clock["now"]
    period = harness.ctx.settings.definitions_refresh_seconds
    assert period == 3600

    def refresh(at: datetime, force: bool = False) -> tuple[int, datetime | None]:
        clock["now"] = at
        ingest._refresh_definitions(harness.ctx, source, force)
        with session_scope() as s:
            return source.reads, pim_repo.definitions_fetched_at(s)

    assert refresh(T0) == (1, T0)  # none stored yet
    assert refresh(T0 + timedelta(seconds=3599)) == (1, T0)
    assert refresh(T0 + timedelta(seconds=3600)) == (2, T0 + timedelta(seconds=3600))
    assert refresh(T0 + timedelta(seconds=3601), force=True) == (3, T0 + timedelta(seconds=3601))
    assert source.invalidated == 3
    with session_scope() as s:
        digest = pim_repo.definitions_hash(s)
    assert digest is not None
    line = {"event": "definitions_refreshed", "log_level": "info", "source": "counted"}
    assert ingest_lines(debug_logs) == [dict(line, hash=digest)] * 3
    # a source without a cache to drop is read all the same
    plain = DefinitionsSource(can_invalidate=False)
    ingest._refresh_definitions(harness.ctx, plain, True)
    assert (plain.reads, plain.invalidated) == (1, 0)


def test_a_channels_batches_are_planned_counted_and_released_up_to_its_cap(
    pg_db: str,
) -> None:
    sent: list[tuple[list[int], dict[str, Any] | None]] = []

    class Dispatcher:
        def publish(
            self, ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
        ) -> None:
            sent.append((ids, summary))

    ctx = SyncContext(
        Settings(publish_batch_size=2, channel_inflight_batches=2),
        Dispatcher(),  # type: ignore[arg-type]
        lambda: None,  # type: ignore[arg-type,return-value]
        clock=lambda: T0,
    )
    with session_scope() as s:
        parent = repo.create_run(s, "full", None, T0)
        child = repo.create_run(s, "full", "web", T0, parent_id=parent.id)
        child_id = child.id
        planned = ingest._plan_batches(
            s, ctx, child, ["A", "B", "C", "D", "E"], failed=1, group_key="g"
        )
        assert planned.id == child_id
        assert not sent  # sent once committed
    run = run_row(child_id)
    assert (run.planned_units, run.planned_batches, run.failed, run.heartbeat_at) == (6, 3, 1, T0)
    with session_scope() as s:
        batches = [
            (b.channel, b.skus, b.units, b.status, b.group_key, b.enqueued_at)
            for b in s.execute(
                select(SyncBatch).where(SyncBatch.run_id == child_id).order_by(SyncBatch.id)
            ).scalars()
        ]
        ids = list(
            s.execute(
                select(SyncBatch.id).where(SyncBatch.run_id == child_id).order_by("id")
            ).scalars()
        )
    # sent when (the sweeper sends again a batch enqueued too long ago)
    assert batches == [
        ("web", ["A", "B"], 2, "enqueued", "g:0", T0),
        ("web", ["C", "D"], 2, "enqueued", "g:1", T0),
        ("web", ["E"], 1, "pending", "g:2", None),
    ]
    assert sent == [
        ([ids[0]], {"channels": ["web"], "units": 2}),
        ([ids[1]], {"channels": ["web"], "units": 2}),
    ]


# --- one group's commit ----------------------------------------------------------------------


def begin_full(h: Harness, channels: list[str]) -> uuid.UUID:
    """A full sync started, its read lease taken by the reader ``reader``."""
    h.ctx.clock = lambda: T0
    with session_scope() as s:
        run = ingest.start_full(s, h.ctx, channels)
        assert run is not None
        run_id = run.id
    return take_read(h, run_id)


def take_read(h: Harness, run_id: uuid.UUID) -> uuid.UUID:
    h.dispatcher.queue.clear()
    with session_scope() as s:
        lease = repo.acquire_lock(
            s, runs.ingest_lease(run_id), run_id, timedelta(minutes=5), T0, token="reader"
        )
        assert lease.acquired
    return run_id


def commit(
    h: Harness,
    run_id: uuid.UUID,
    items: list[Any],
    exhausted: bool = False,
    lease: str = "reader",
    attribute: str = "sku",
) -> bool:
    token = None if exhausted else "next"
    group = [Page(items=items, next_cursor=token)]
    return ingest._commit_group(h.ctx, run_id, lease, group, token, exhausted, attribute)


def batch_ids(run_id: uuid.UUID) -> list[int]:
    with session_scope() as s:
        q = select(SyncBatch.id).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        return list(s.execute(q).scalars())


def mirrored() -> list[str]:
    with session_scope() as s:
        return sorted(s.execute(select(PimProduct.identifier)).scalars())


def batches_of(run_id: uuid.UUID) -> list[tuple[list[str], str]]:
    with session_scope() as s:
        q = select(SyncBatch).where(SyncBatch.run_id == run_id).order_by(SyncBatch.id)
        return [(b.skus, b.status) for b in s.execute(q).scalars()]


def test_a_reader_whose_lease_another_reader_holds_writes_nothing(
    harness: Harness, debug_logs: list[dict[str, Any]]
) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    assert commit(harness, run_id, [product("A")], lease="another reader") is False
    assert ingest_lines(debug_logs) == [
        {
            "event": "ingest_lease_lost",
            "log_level": "warning",
            "reason": "another reader of this run holds it now",
        }
    ]
    assert mirrored() == [] and run_row(run_id).read == 0
    assert commit(harness, run_id, [product("A")]) is True
    assert mirrored() == ["A"] and run_row(run_id).read == 1


def test_a_read_whose_run_stopped_writes_nothing(harness: Harness) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        repo.finish_run(s, run, "cancelled", T0)
    assert commit(harness, run_id, [product("A")]) is False
    assert mirrored() == [] and run_row(run_id).read == 0


def test_a_read_whose_run_is_cancelled_meanwhile_waits_and_writes_nothing(
    harness: Harness,
) -> None:
    """Another transaction holds the run's row (cancelling it) when a group commits: the group
    waits for it, then sees the run stopped. Read without the row lock, it would have taken
    the run as running and written its products into the mirror of a cancelled sync."""
    run_id = begin_full(harness, ["de_storefront"])
    committed: list[bool] = []
    ended_meanwhile(
        run_id,
        "cancelled",
        T0,
        lambda: committed.append(commit(harness, run_id, [product("A")])),
    )
    assert committed == [False]
    assert mirrored() == [] and run_row(run_id).read == 0
    assert run_row(run_id).status == "cancelled"


PRICE = [{"locale": None, "scope": None, "data": [{"amount": "9.99", "currency": "EUR"}]}]


def violations() -> dict[tuple[str, str, str], tuple[int, str | None]]:
    with session_scope() as s:
        return {
            (v.source, v.domain, v.attribute): (v.count, v.sample_sku)
            for v in s.execute(select(OwnershipViolation)).scalars()
        }


def test_every_product_read_counts_its_ownership_violations_changed_or_not(
    harness: Harness,
) -> None:
    """The PIM carrying a price (the ERP's domain) is counted once per product read: a product
    the mirror already holds unchanged counts again (the ownership table may have changed)."""
    run_id = begin_full(harness, ["de_storefront"])
    a, b = product("A", values={"price": PRICE}), product("B")
    assert commit(harness, run_id, [a, b]) is True
    assert violations() == {("pim", "pricing", "price"): (1, "A")}
    assert commit(harness, run_id, [a, b]) is True  # both unchanged now
    assert violations() == {("pim", "pricing", "price"): (2, "A")}


def test_the_batches_one_group_plans_for_every_channel_share_the_groups_key(
    harness: Harness,
) -> None:
    """One key per group (the run and how many products were read before it; ``:i`` the i-th
    batch of it), so the channels' batches of a group go out in one message and decode its
    products once."""
    run_id = begin_full(harness, ["de_storefront", "at_storefront"])
    assert commit(harness, run_id, [product("A"), product("B")]) is True
    assert commit(harness, run_id, [product("C")]) is True
    kids = [c.id for c in children(run_id).values()]
    with session_scope() as s:
        q = select(SyncBatch.skus, SyncBatch.group_key).where(SyncBatch.run_id.in_(kids))
        keys = sorted((b.group_key, b.skus) for b in s.execute(q))
    assert keys == [
        (f"{run_id}:0:0", ["A", "B"]),
        (f"{run_id}:0:0", ["A", "B"]),
        (f"{run_id}:2:0", ["C"]),
        (f"{run_id}:2:0", ["C"]),
    ]


def test_a_full_read_with_no_channel_run_left_ends_there(harness: Harness) -> None:
    for exhausted, status, error in [
        (False, "cancelled", "no channel run left to feed"),
        (True, "completed", None),
    ]:
        run_id = begin_full(harness, ["de_storefront"])
        kid = children(run_id)["de_storefront"]
        with session_scope() as s:
            repo.finish_run(s, s.get(SyncRun, kid.id), "cancelled", T0)
            repo.release_lock(s, "full:de_storefront", kid.id)
        assert commit(harness, run_id, [product("A")], exhausted=exhausted) is False
        run = run_row(run_id)
        assert (run.status, run.error, run.finished_at, run.read) == (status, error, T0, 0)
        assert mirrored() == []


def test_a_channel_run_whose_lease_was_taken_over_is_abandoned(harness: Harness) -> None:
    run_id = begin_full(harness, ["at_storefront", "de_storefront", "uk_marketplace"])
    kids = children(run_id)
    with session_scope() as s:  # another run holds de_storefront's lease, nobody uk's
        other = repo.create_run(s, "full", "de_storefront", T0).id
        s.delete(s.get(SyncLock, "full:de_storefront"))
        s.delete(s.get(SyncLock, "full:uk_marketplace"))
        s.flush()
        assert repo.acquire_lock(s, "full:de_storefront", other, timedelta(minutes=5), T0).acquired
    assert commit(harness, run_id, [product("A"), product("B")]) is True
    after = children(run_id)
    for code in ("de_storefront", "uk_marketplace"):
        assert (after[code].status, after[code].error, after[code].finished_at) == (
            "abandoned",
            "its lease was taken over by another run",
            T0,
        )
    assert after["at_storefront"].status == "running"
    assert batches_of(kids["at_storefront"].id) == [(["A", "B"], "enqueued")]
    assert run_row(run_id).read == 2
    # the abandoned ones are planned nothing: no batch left pending, nothing sent for them
    for code in ("de_storefront", "uk_marketplace"):
        assert batches_of(kids[code].id) == [], code
        assert (after[code].planned_units, after[code].planned_batches) == (0, 0), code
    published = [args[0] for name, args in harness.dispatcher.queue if name == "publish"]
    assert published == [batch_ids(kids["at_storefront"].id)]


def test_a_full_read_whose_every_channel_run_was_taken_over_ends_there(harness: Harness) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    kid = children(run_id)["de_storefront"]
    with session_scope() as s:
        other = repo.create_run(s, "full", "de_storefront", T0).id
        s.delete(s.get(SyncLock, "full:de_storefront"))
        s.flush()
        assert repo.acquire_lock(s, "full:de_storefront", other, timedelta(minutes=5), T0).acquired
    assert commit(harness, run_id, [product("A")]) is False
    run = run_row(run_id)
    assert (run.status, run.error, run.read) == ("cancelled", "no channel run left to feed", 0)
    assert children(run_id)["de_storefront"].status == "abandoned"
    assert batches_of(kid.id) == [] and mirrored() == []


def test_a_delta_read_whose_lease_was_taken_over_is_abandoned(harness: Harness) -> None:
    harness.ctx.clock = lambda: T0
    with session_scope() as s:
        run_id = ingest.start_delta(s, harness.ctx).id
    take_read(harness, run_id)
    assert commit(harness, run_id, [product("A")]) is True
    assert run_row(run_id).read == 1
    with session_scope() as s:
        other = repo.create_run(s, "delta", None, T0).id
        s.delete(s.get(SyncLock, "ingest:delta"))
        s.flush()
        assert repo.acquire_lock(s, "ingest:delta", other, timedelta(minutes=5), T0).acquired
    assert commit(harness, run_id, [product("B")]) is False
    run = run_row(run_id)
    assert (run.status, run.error, run.read) == (
        "abandoned",
        "its lease was taken over by another run",
        1,
    )
    assert mirrored() == ["A"]


def test_a_read_that_refused_every_product_fails_saying_why(harness: Harness) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    no_sku = product(None, values={"ean": [{"locale": None, "scope": None, "data": "E1"}]})
    assert commit(harness, run_id, [no_sku, product("B", enabled=1)], exhausted=False) is True
    assert run_row(run_id).status == "running"  # more may come
    assert commit(harness, run_id, [product("C", enabled=0)], exhausted=True) is True
    run = run_row(run_id)
    assert (run.status, run.read, run.rejected) == ("failed", 3, 3)
    assert run.error == (
        "every product read (3) was rejected (identifier attribute 'sku'; set "
        "PIMSYNC_IDENTIFIER_ATTRIBUTE if the SKU is elsewhere); first reason: product 'C': "
        "field 'enabled': must be true or false, got 0"
    )
    kid = children(run_id)["de_storefront"]
    assert (kid.status, kid.planned_units, kid.failed) == (
        "failed",
        3,
        3,
    )


def test_a_last_group_of_only_page_errors_fails_the_read_with_its_first_error(
    harness: Harness,
) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    group = [Page(items=[], errors=["line 1: not JSON", "line 2: not JSON"])]
    assert ingest._commit_group(harness.ctx, run_id, "reader", group, None, True, "ean")
    run = run_row(run_id)
    assert (run.status, run.read, run.rejected) == ("failed", 2, 2)
    assert run.error == (
        "every product read (2) was rejected (identifier attribute 'ean'; set "
        "PIMSYNC_IDENTIFIER_ATTRIBUTE if the SKU is elsewhere); first reason: line 1: not JSON"
    )


def test_a_read_whose_refusals_were_all_in_earlier_groups_points_to_the_dead_letters(
    harness: Harness,
) -> None:
    """The last group (an empty last page) has no refusal of its own to quote."""
    run_id = begin_full(harness, ["de_storefront"])
    assert commit(harness, run_id, [product("B", enabled=1)], exhausted=False) is True
    assert commit(harness, run_id, [], exhausted=True) is True
    run = run_row(run_id)
    assert (run.status, run.read, run.rejected) == ("failed", 1, 1)
    assert run.error == (
        "every product read (1) was rejected (identifier attribute 'sku'; set "
        "PIMSYNC_IDENTIFIER_ATTRIBUTE if the SKU is elsewhere); first reason: see pimsync "
        "dead-letters"
    )


def test_a_read_of_nothing_completes(harness: Harness) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    assert commit(harness, run_id, [], exhausted=True) is True
    run = run_row(run_id)
    assert (run.status, run.read, run.rejected, run.error) == ("completed", 0, 0, None)


# --- slices ----------------------------------------------------------------------------------


def sliced_catalog(monkeypatch: pytest.MonkeyPatch, harness: Harness, count: int) -> Harness:
    """``count`` generated products, two to a page and a group, on a clock the test moves."""
    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_AKENEO_PAGE_SIZE", "2")
    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "2")
    reset_settings_cache()
    harness.reload_settings()
    harness.source = MemorySource.generated(count)
    return harness


def test_a_slice_reads_until_its_time_is_up_then_hands_the_read_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, debug_logs: list[dict[str, Any]]
) -> None:
    h = sliced_catalog(monkeypatch, harness, 6)
    clock = {"now": T0}
    h.ctx.clock = lambda: clock["now"]
    assert h.ctx.settings.ingest_slice_seconds == 120
    definitions = []
    h.source.definitions = lambda: definitions.append(1) or generator.generated_definitions()

    # a minute per group written (not per page read: the next page is read ahead while a
    # group is written, see test_read_ahead.py)
    commit_group = ingest._commit_group

    def minute_per_group(*args: Any) -> bool:
        done = commit_group(*args)
        clock["now"] += timedelta(seconds=60)
        return done

    monkeypatch.setattr(ingest, "_commit_group", minute_per_group)
    with session_scope() as s:
        run = ingest.start_full(s, h.ctx, ["de_storefront"])
        assert run is not None
        run_id = run.id
    h.dispatcher.queue.clear()
    # the second page is committed at exactly the slice's end: the read is handed on
    assert ingest.ingest_slice(h.ctx, run_id, "reader-1") is False
    run = run_row(run_id)
    assert (run.status, run.read, run.resume_token) == ("running", 4, "4")
    assert [m for m in h.dispatcher.queue if m[0] == "ingest"] == [("ingest", (run_id,))]
    assert runs.ingest_lease(run_id) not in held_locks()
    assert len(definitions) == 1  # a full sync's first slice reads them, whatever their age
    h.dispatcher.queue.clear()
    assert ingest.ingest_slice(h.ctx, run_id, "reader-2") is True
    run = run_row(run_id)
    assert (run.status, run.read, run.resume_token) == ("completed", 6, None)
    assert len(definitions) == 1  # not on a later slice
    assert [e["read"] for e in ingest_lines(debug_logs) if e["event"] == "ingest_page"] == [
        2,
        4,
        6,
    ]


def test_a_slice_of_a_run_that_ended_or_is_read_by_another_reader_reads_nothing(
    harness: Harness, debug_logs: list[dict[str, Any]]
) -> None:
    harness.ctx.clock = lambda: T0
    assert ingest.ingest_slice(harness.ctx, uuid.uuid4(), "reader") is True
    with session_scope() as s:
        run = ingest.start_full(s, harness.ctx, ["de_storefront"])
        assert run is not None
        run_id = run.id
    with session_scope() as s:
        lease = repo.acquire_lock(
            s, runs.ingest_lease(run_id), run_id, timedelta(minutes=5), T0, token="first"
        )
        assert lease.acquired
    assert ingest.ingest_slice(harness.ctx, run_id, "second") is True
    assert ingest_lines(debug_logs) == [
        {
            "event": "ingest_slice_skipped",
            "log_level": "info",
            "reason": "another reader holds the run's lease",
        }
    ]
    assert harness.source.reads == 0 and run_row(run_id).read == 0
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        repo.finish_run(s, run, "cancelled", T0)
    assert ingest.ingest_slice(harness.ctx, run_id, "first") is True
    assert harness.source.reads == 0


def test_a_failed_slice_keeps_its_lease_under_the_readers_name(harness: Harness) -> None:
    from app.pim.source import TransientSourceError

    harness.ctx.clock = lambda: T0
    with session_scope() as s:
        run = ingest.start_full(s, harness.ctx, ["de_storefront"])
        assert run is not None
        run_id = run.id
    harness.source.fail_reads = 2
    reader = "0123456789abcdef0123456789abcdef-retry"  # a Celery task id is 36 characters
    with pytest.raises(TransientSourceError):
        ingest.ingest_slice(harness.ctx, run_id, reader)
    with session_scope() as s:
        lock = s.get(SyncLock, runs.ingest_lease(run_id))
        assert lock is not None
        assert (lock.run_id, lock.token) == (run_id, "0123456789abcdef0123456789abcdef")
    # the task's retry (same reader) takes it back at once; another reader may not
    with pytest.raises(TransientSourceError):
        ingest.ingest_slice(harness.ctx, run_id, reader)
    assert ingest.ingest_slice(harness.ctx, run_id, None) is True  # skipped: reads nothing
    assert harness.source.reads == 2
    assert ingest.ingest_slice(harness.ctx, run_id, reader) is True
    assert run_row(run_id).status == "completed"


def test_a_read_whose_identifier_attribute_the_pim_does_not_have_fails(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", "name")
    reset_settings_cache()
    harness.reload_settings()
    harness.ctx.clock = lambda: T0
    with session_scope() as s:
        run = ingest.start_full(s, harness.ctx, ["de_storefront"])
        assert run is not None
        run_id = run.id
    harness.dispatcher.queue.clear()
    assert ingest.ingest_slice(harness.ctx, run_id, "reader") is True
    run = run_row(run_id)
    assert (run.status, run.read) == ("failed", 0)
    assert run.error == (
        "the identifier attribute 'name' is not one of the PIM's identifier attributes "
        "('sku' is; fix or unset PIMSYNC_IDENTIFIER_ATTRIBUTE)"
    )
    assert harness.source.reads == 0


def test_a_delta_slice_reads_what_changed_since_its_cursor_with_the_definitions_it_has(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sliced_catalog(monkeypatch, harness, 3)  # updated 00:00:00, 00:00:37, 00:01:14
    definitions = []
    h.source.definitions = lambda: definitions.append(1) or generator.generated_definitions()
    h.ctx.clock = lambda: T0
    ingest._refresh_definitions(h.ctx, h.source, force=True)
    h.ctx.clock = lambda: T0 + timedelta(seconds=3599)  # still fresh for a delta
    with session_scope() as s:  # less the 120 s overlap: since 2026-01-01T00:00:00
        repo.set_cursor(s, "ingest", "2026-01-01T00:02:00+00:00", T0, None)
        run_id = ingest.start_delta(s, h.ctx).id
    h.dispatcher.queue.clear()
    assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
    run = run_row(run_id)
    assert (run.status, run.read) == ("completed", 2)
    assert len(definitions) == 1
    with session_scope() as s:
        assert repo.get_cursor(s, "ingest") == (T0 + timedelta(seconds=3599)).isoformat()
    h.ctx.clock = lambda: T0 + timedelta(seconds=3600)  # stale: a delta's first slice reads them
    with session_scope() as s:
        run_id = ingest.start_delta(s, h.ctx).id
    h.dispatcher.queue.clear()
    assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
    assert run_row(run_id).read == 0 and len(definitions) == 2


def started_full(h: Harness, channels: list[str]) -> uuid.UUID:
    """A full sync started, its read not yet taken by any reader, its message not sent."""
    with session_scope() as s:
        run = ingest.start_full(s, h.ctx, channels)
        assert run is not None
        run_id = run.id
    h.dispatcher.queue.clear()
    return run_id


# definitions the PIM changes to: its identifier attribute and a name, nothing else
SKU_AND_NAME = build_definitions(
    attributes=[
        {"code": "sku", "type": "pim_catalog_identifier"},
        {"code": "name", "type": "pim_catalog_text", "localizable": True},
    ]
)


def test_a_full_syncs_first_slice_reads_the_definitions_again_even_when_they_are_fresh(
    harness: Harness,
) -> None:
    h = harness
    h.source = MemorySource.generated(2)
    clock = {"now": T0}
    h.ctx.clock = lambda: clock["now"]
    assert h.ctx.settings.definitions_refresh_seconds == 3600
    first = started_full(h, ["de_storefront"])
    assert ingest.ingest_slice(h.ctx, first, "reader-1") is True
    # the PIM's definitions change a minute later, well within the refresh period
    h.source.defs = SKU_AND_NAME
    clock["now"] = T0 + timedelta(seconds=60)
    second = started_full(h, ["uk_marketplace"])
    assert ingest.ingest_slice(h.ctx, second, "reader-2") is True
    assert run_row(second).status == "completed"
    with session_scope() as s:
        assert pim_repo.definitions_fetched_at(s) == T0 + timedelta(seconds=60)
        assert sorted(REGISTRY.definitions(s)[0].attributes) == ["name", "sku"]


def test_a_delta_syncs_first_slice_uses_the_definitions_it_has_while_they_are_fresh(
    harness: Harness,
) -> None:
    h = harness
    h.source = MemorySource.generated(2)
    clock = {"now": T0}
    h.ctx.clock = lambda: clock["now"]
    first = started_full(h, ["de_storefront"])
    assert ingest.ingest_slice(h.ctx, first, "reader-1") is True
    h.source.defs = SKU_AND_NAME
    clock["now"] = T0 + timedelta(seconds=60)
    with session_scope() as s:
        delta = ingest.start_delta(s, h.ctx).id
    h.dispatcher.queue.clear()
    assert ingest.ingest_slice(h.ctx, delta, "reader-2") is True
    assert run_row(delta).status == "completed"
    with session_scope() as s:
        assert pim_repo.definitions_fetched_at(s) == T0
        # still the generated ones, read by the full sync
        generated = generator.generated_definitions().attributes
        assert REGISTRY.definitions(s)[0].attributes.keys() == generated.keys()


def ean_catalog(harness: Harness, items: list[dict[str, Any]]) -> Harness:
    """A PIM whose identifier attribute is ``ean`` (not ``sku``), serving ``items``."""
    assert harness.ctx.settings.identifier_attribute is None  # the definitions say where
    defs = build_definitions(
        attributes=[
            {"code": "ean", "type": "pim_catalog_identifier"},
            {"code": "name", "type": "pim_catalog_text", "localizable": True},
        ]
    )
    harness.source = MemorySource([], defs)
    harness.source.products = {f"{i:03}": item for i, item in enumerate(items)}
    harness.ctx.clock = lambda: T0
    return harness


def by_ean(ean: str, **fields: object) -> dict[str, object]:
    """A product carrying its SKU only in ``values`` (as Akeneo's products-uuid endpoint)."""
    raw = product(None, **fields)
    del raw["identifier"]
    raw["values"] = {
        "ean": [{"locale": None, "scope": None, "data": ean}],
        "name": [{"locale": "en_US", "scope": None, "data": f"Name {ean}"}],
    }
    return raw


def test_a_slice_mirrors_products_under_the_sku_the_pims_identifier_attribute_holds(
    harness: Harness,
) -> None:
    h = ean_catalog(harness, [by_ean("EAN-1"), by_ean("EAN-2")])
    run_id = started_full(h, ["de_storefront"])
    assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
    run = run_row(run_id)
    assert (run.status, run.read, run.rejected, run.error) == ("completed", 2, 0, None)
    assert mirrored() == ["EAN-1", "EAN-2"]


def test_products_identified_in_values_the_mirror_holds_unchanged_are_set_aside(
    harness: Harness, debug_logs: list[dict[str, Any]]
) -> None:
    """A second full sync of the same catalog: the products whose SKU is only in ``values``
    are recognised as held unchanged (marked seen, not parsed and written again)."""
    h = ean_catalog(harness, [by_ean("EAN-1"), by_ean("EAN-2")])
    for _ in range(2):
        h.source.products = {"000": by_ean("EAN-1"), "001": by_ean("EAN-2")}  # as served
        run_id = started_full(h, ["de_storefront"])
        assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
        assert run_row(run_id).status == "completed"
        h.ctx.clock = lambda: T0 + timedelta(hours=1)  # the next sync starts later
    pages = [(e["products"], e["unchanged"]) for e in debug_logs if e["event"] == "ingest_page"]
    assert pages == [(2, 0), (2, 2)]
    assert mirrored() == ["EAN-1", "EAN-2"]


def test_a_slice_refusing_every_product_names_the_identifier_attribute_in_use(
    harness: Harness,
) -> None:
    h = ean_catalog(harness, [by_ean("EAN-1", enabled="yes")])
    run_id = started_full(h, ["de_storefront"])
    assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
    run = run_row(run_id)
    assert (run.status, run.read, run.rejected) == ("failed", 1, 1)
    assert run.error == (
        "every product read (1) was rejected (identifier attribute 'ean'; set "
        "PIMSYNC_IDENTIFIER_ATTRIBUTE if the SKU is elsewhere); first reason: product "
        "'EAN-1': field 'enabled': must be true or false, got 'yes'"
    )


def after_each_group(monkeypatch: pytest.MonkeyPatch, then: Any) -> list[bool]:
    """``ingest._commit_group`` as it is, followed by ``then(n)`` after the n-th group's commit
    (1, 2, ...); returns what each commit answered, as they come."""
    commit_group = ingest._commit_group
    calls: list[bool] = []

    def committed_then(*args: Any) -> bool:
        done = commit_group(*args)
        calls.append(done)
        then(len(calls))
        return done

    monkeypatch.setattr(ingest, "_commit_group", committed_then)
    return calls


def take_over_after_first_group(
    monkeypatch: pytest.MonkeyPatch, run_id: uuid.UUID, clock: dict[str, datetime]
) -> None:
    """Once the slice has written its first group, another reader of the run takes its read
    lease over (a new fencing token) and the clock moves on to ``clock["then"]``."""

    def taken_over(n: int) -> None:
        if n == 1:
            with session_scope() as s:
                lock = s.get(SyncLock, runs.ingest_lease(run_id))
                assert lock is not None and lock.token == "stale-reader"
                lock.token = "other-reader"
            clock["now"] = clock["then"]

    after_each_group(monkeypatch, taken_over)


def ingest_lease_row(run_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    with session_scope() as s:
        lock = s.get(SyncLock, runs.ingest_lease(run_id))
        return None if lock is None else (lock.run_id, lock.token)


@pytest.mark.parametrize(
    ("seconds", "more_slices"),
    [(60, False), (120, True)],
    ids=["within-the-slice", "at-the-slices-end"],
)
def test_a_slice_whose_lease_another_reader_took_over_writes_no_further_group(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, seconds: int, more_slices: bool
) -> None:
    """Taken over after its first group, within its time (the next commit finds the lease
    gone: the slice ends, sending nothing) or at its end (it hands the read on without
    releasing the lease it no longer holds)."""
    h = sliced_catalog(monkeypatch, harness, 4)  # two groups
    clock = {"now": T0, "then": T0 + timedelta(seconds=seconds)}
    h.ctx.clock = lambda: clock["now"]
    run_id = started_full(h, ["de_storefront"])
    take_over_after_first_group(monkeypatch, run_id, clock)
    assert ingest.ingest_slice(h.ctx, run_id, "stale-reader") is (not more_slices)
    run = run_row(run_id)
    assert (run.status, run.read, run.resume_token) == ("running", 2, "2")
    assert mirrored() == ["GEN-0000000", "GEN-0000001"]
    assert ingest_lease_row(run_id) == (run_id, "other-reader")
    resent = [m for m in h.dispatcher.queue if m[0] == "ingest"]
    assert len(resent) == (1 if more_slices else 0)


def test_a_slice_whose_group_is_not_committed_stops_there_and_reads_no_further(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    h = sliced_catalog(monkeypatch, harness, 10)  # five pages, five groups
    h.ctx.clock = lambda: T0
    served: list[int] = []
    third_page = threading.Event()

    def count(n: int) -> None:
        served.append(n)
        if n == 3:
            third_page.set()

    h.source.on_page = count
    run_id = started_full(h, ["de_storefront"])

    def cancelled_after_the_first(n: int) -> None:
        if n == 1:
            with session_scope() as s:
                run = repo.get_run(s, run_id)
                assert run is not None
                repo.finish_run(s, run, "cancelled", T0)
        else:
            # the read-ahead thread holds the group after this one (and reads no further)
            assert third_page.wait(10)

    calls = after_each_group(monkeypatch, cancelled_after_the_first)
    assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
    assert calls == [True, False]
    assert served == [1, 2, 3]
    run = run_row(run_id)
    assert (run.status, run.read) == ("cancelled", 2)
    assert [m for m in h.dispatcher.queue if m[0] == "ingest"] == []


def test_a_product_met_again_later_in_a_slice_is_written_as_read_not_as_unchanged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, debug_logs: list[dict[str, Any]]
) -> None:
    """The group after the first is judged by the read-ahead thread before the first is
    written: a product of both takes the full path (an idempotent upsert) the second time,
    as judged then, even though the mirror holds it unchanged by the time it commits."""
    h = sliced_catalog(monkeypatch, harness, 0)  # two to a page and a group
    h.source.products = {
        "1": product("TWICE"),
        "2": product("ONCE-1"),
        "3": product("TWICE"),
        "4": product("ONCE-2"),
    }
    h.ctx.clock = lambda: T0
    run_id = started_full(h, ["de_storefront"])
    assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
    pages = [
        (e["products"], e["unchanged"], e["read"])
        for e in ingest_lines(debug_logs)
        if e["event"] == "ingest_page"
    ]
    assert pages == [(2, 0, 2), (2, 0, 4)]
    assert mirrored() == ["ONCE-1", "ONCE-2", "TWICE"]


def test_everything_a_slice_logs_carries_its_run_and_no_channel(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = sliced_catalog(monkeypatch, harness, 2)
    h.ctx.clock = lambda: T0
    seen: list[dict[str, Any]] = []
    h.source.on_page = lambda n: seen.append(structlog.contextvars.get_contextvars())
    run_id = started_full(h, ["de_storefront"])
    with structlog.contextvars.bound_contextvars(channel="uk_marketplace", task="t-1"):
        assert ingest.ingest_slice(h.ctx, run_id, "reader") is True
        assert structlog.contextvars.get_contextvars() == {
            "channel": "uk_marketplace",
            "task": "t-1",
        }
    assert seen == [{"channel": None, "task": "t-1", "run_id": str(run_id)}]


def test_batches_of_a_run_without_a_channel_or_refusals(pg_db: str) -> None:
    ctx = SyncContext(
        Settings(publish_batch_size=500, channel_inflight_batches=4),
        Recorder(),  # type: ignore[arg-type]
        lambda: None,  # type: ignore[arg-type,return-value]
        clock=lambda: T0,
    )
    with session_scope() as s:
        run = repo.create_run(s, "full", None, T0)
        run_id = run.id
        ingest._plan_batches(s, ctx, run, ["A", "B"])
    run = run_row(run_id)
    assert (run.planned_units, run.planned_batches, run.failed) == (2, 1, 0)
    with session_scope() as s:
        q = select(SyncBatch.channel, SyncBatch.skus, SyncBatch.group_key)
        assert s.execute(q.where(SyncBatch.run_id == run_id)).all() == [("", ["A", "B"], None)]


class Recorder:
    def __init__(self) -> None:
        self.published: list[list[int]] = []

    def publish(
        self, ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        self.published.append(ids)


def lease_expiries() -> dict[str, datetime]:
    with session_scope() as s:
        return {lk.name: lk.expires_at for lk in s.execute(select(SyncLock)).scalars()}


def cursor_row() -> tuple[str, datetime, uuid.UUID | None] | None:
    with session_scope() as s:
        row = s.get(SyncCursor, "ingest")
        return None if row is None else (row.value, row.updated_at, row.run_id)


def test_a_committed_group_renews_the_leases_of_its_read_and_its_channel_runs(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    analysed: list[tuple[tuple[str, ...], float]] = []
    monkeypatch.setattr(
        ingest, "analyze_if_stale", lambda s, tables, share: analysed.append((tables, share))
    )
    run_id = begin_full(harness, ["de_storefront", "uk_marketplace"])
    later = T0 + timedelta(minutes=3)
    harness.ctx.clock = lambda: later
    assert commit(harness, run_id, [product("A")]) is True
    # the read's lease: three slices (the default 120 s each); a channel run's: lock_ttl, 600 s
    assert lease_expiries() == {
        runs.ingest_lease(run_id): later + timedelta(seconds=360),
        "full:de_storefront": later + timedelta(seconds=600),
        "full:uk_marketplace": later + timedelta(seconds=600),
    }
    # the tables a read fills, analysed when half their rows or more are new
    assert analysed == [(("pim_product", "channel_product", "sync_batch"), 1.0)]
    run = run_row(run_id)
    assert (run.heartbeat_at, run.resume_token, run.read) == (later, "next", 1)
    with session_scope() as s:
        a = s.get(PimProduct, "A")
        assert a is not None
        assert (a.last_seen_run, a.last_seen_at, a.ingested_at) == (run_id, later, later)
    # the same product again, unchanged: only marked seen, by this run, now
    even_later = later + timedelta(minutes=1)
    harness.ctx.clock = lambda: even_later
    assert commit(harness, run_id, [product("A")]) is True
    with session_scope() as s:
        a = s.get(PimProduct, "A")
        assert a is not None
        assert (a.last_seen_run, a.last_seen_at, a.ingested_at) == (run_id, even_later, later)


def test_a_delta_group_renews_the_delta_lease(harness: Harness) -> None:
    harness.ctx.clock = lambda: T0
    with session_scope() as s:
        run_id = ingest.start_delta(s, harness.ctx).id
    take_read(harness, run_id)
    later = T0 + timedelta(minutes=3)
    harness.ctx.clock = lambda: later
    assert commit(harness, run_id, [product("A")]) is True
    assert lease_expiries() == {
        runs.ingest_lease(run_id): later + timedelta(seconds=360),
        "ingest:delta": later + timedelta(seconds=600),
    }


def test_a_read_refusing_a_product_the_mirror_holds_still_sees_it(harness: Harness) -> None:
    mirror(product("KNOWN"), product("?"))  # "?" also names an item that could not be decoded
    run_id = begin_full(harness, ["de_storefront"])
    later = T0 + timedelta(minutes=1)
    harness.ctx.clock = lambda: later
    items = [
        product("KNOWN", enabled="no"),
        product("OTHER", enabled=2),
        product("KNOWN", enabled=1),
    ]
    # called without the identifier attribute: the SKU is where Akeneo keeps it by default
    group = [Page(items=items, next_cursor="t", errors=["line 4: not JSON"])]
    assert ingest._commit_group(harness.ctx, run_id, "reader", group, "t", False)
    with session_scope() as s:
        known = s.get(PimProduct, "KNOWN")
        assert known is not None
        assert (known.last_seen_run, known.last_seen_at) == (run_id, later)
        odd = s.get(PimProduct, "?")
        assert odd is not None and odd.last_seen_run is None  # not seen by this read
        letters = {
            d.sku: (d.error, d.run_id, d.first_failed_at)
            for d in s.execute(select(DeadLetter)).scalars()
        }
    # one dead letter per product, with its last reason
    assert letters == {
        "KNOWN": ("product 'KNOWN': field 'enabled': must be true or false, got 1", run_id, later),
        "OTHER": ("product 'OTHER': field 'enabled': must be true or false, got 2", run_id, later),
        "?": ("line 4: not JSON", run_id, later),
    }
    assert mirrored() == ["?", "KNOWN"]
    run = run_row(run_id)
    assert (run.read, run.rejected) == (4, 4)


def test_the_default_identifier_attribute_is_named_when_every_product_is_refused(
    harness: Harness,
) -> None:
    run_id = begin_full(harness, ["de_storefront"])
    group = [Page(items=[product(None)], next_cursor=None)]
    assert ingest._commit_group(harness.ctx, run_id, "reader", group, None, True)
    assert run_row(run_id).error == (
        "every product read (1) was rejected (identifier attribute 'sku'; set "
        "PIMSYNC_IDENTIFIER_ATTRIBUTE if the SKU is elsewhere); first reason: product "
        "'<unknown>': field 'identifier': missing (no `identifier`, no `sku` value, no uuid)"
    )


def test_the_ingest_cursor_records_the_read_that_moved_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = small_catalog(monkeypatch, harness)
    del h.source.products["BAD-1"]
    run_id = h.full(["de_storefront"])
    assert cursor_row() == ("2026-11-27T10:00:00+00:00", T0, run_id)
    # a full read that started when the cursor already is leaves it (and who set it) alone
    earlier = T0 - timedelta(hours=1)
    with session_scope() as s:
        repo.set_cursor(s, "ingest", "2026-11-27T10:00:00+00:00", earlier, None)
    h.full(["de_storefront"])
    assert cursor_row() == ("2026-11-27T10:00:00+00:00", earlier, None)
    later = T0 + timedelta(minutes=5)
    h.ctx.clock = lambda: later
    with session_scope() as s:
        delta_id = ingest.start_delta(s, h.ctx).id
    h.drain()
    assert cursor_row() == ("2026-11-27T10:05:00+00:00", later, delta_id)


# --- the end of a read, called alone -------------------------------------------------------


def finish(h: Harness, run_id: uuid.UUID, at: datetime) -> None:
    h.ctx.clock = lambda: at
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        kids = [c for c in repo.child_runs(s, run_id) if c.status == "running"]
        ingest._finish_ingest(s, h.ctx, run, kids)


def test_the_end_of_a_delta_read_moves_the_cursor_and_lets_every_channel_catch_up(
    harness: Harness, debug_logs: list[dict[str, Any]]
) -> None:
    harness.ctx.clock = lambda: T0
    with session_scope() as s:
        run_id = ingest.start_delta(s, harness.ctx).id
        run = repo.get_run(s, run_id)
        assert run is not None
        run.read, run.rejected = 7, 2
    take_read(harness, run_id)
    debug_logs.clear()
    later = T0 + timedelta(minutes=2)
    finish(harness, run_id, later)
    run = run_row(run_id)
    assert (run.status, run.finished_at) == ("completed", later)
    assert held_locks() == {}
    # the cursor is where the delta started, set by it when it ended
    assert cursor_row() == ("2026-11-27T10:00:00+00:00", later, run_id)
    assert list(harness.dispatcher.queue) == [("catch_up", (list(CHANNELS), run_id, "delta"))]
    assert ingest_lines(debug_logs) == [
        {
            "event": "delta_ingest_complete",
            "log_level": "info",
            "phase": "read",
            "run_id": str(run_id),
            "read": 7,
            "rejected": 2,
            "cursor": "2026-11-27T10:00:00+00:00",
        }
    ]


def test_the_end_of_a_full_read_ends_its_channel_runs_and_moves_the_cursor(
    harness: Harness, debug_logs: list[dict[str, Any]]
) -> None:
    run_id = begin_full(harness, ["de_storefront", "uk_marketplace"])
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        run.read = 5
    debug_logs.clear()
    later = T0 + timedelta(minutes=2)
    finish(harness, run_id, later)
    run = run_row(run_id)
    assert (run.status, run.finished_at) == ("completed", later)
    kids = children(run_id)
    for code in ("de_storefront", "uk_marketplace"):
        # nothing planned, nothing pending: planning done ends them here
        assert (kids[code].planning_done, kids[code].status) == (True, "completed"), code
        assert kids[code].finished_at == later
    assert held_locks() == {}
    assert cursor_row() == ("2026-11-27T10:00:00+00:00", later, run_id)
    assert [e for e in ingest_lines(debug_logs) if e["event"] == "full_ingest_complete"] == [
        {
            "event": "full_ingest_complete",
            "log_level": "info",
            "phase": "read",
            "run_id": str(run_id),
            "read": 5,
            "rejected": 0,
            "channels": ["de_storefront", "uk_marketplace"],
        }
    ]


def test_the_end_of_a_full_read_that_refused_a_product_leaves_the_cursor(
    harness: Harness,
) -> None:
    with session_scope() as s:
        repo.set_cursor(s, "ingest", "2026-11-27T09:00:00+00:00", T0, None)
    run_id = begin_full(harness, ["de_storefront"])
    with session_scope() as s:
        run = repo.get_run(s, run_id)
        assert run is not None
        run.read, run.rejected = 5, 1
    finish(harness, run_id, T0 + timedelta(minutes=2))
    assert cursor_row() == ("2026-11-27T09:00:00+00:00", T0, None)
    assert run_row(run_id).status == "completed"
