"""Event-driven sync on real PostgreSQL: accept once, coalesce per product, apply newest."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.db import session_scope, utcnow
from app.pages.models import ProductPage
from app.pim.models import PimProduct
from app.sync.pim_events.apply import accept
from app.sync.pim_events.formats import parse_cloudevents, parse_events_api
from app.sync.pim_events.models import PendingSku, WebhookEvent

CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]


def legacy(event_id: str, action: str, resource: dict, when: datetime | None = None) -> dict:
    return {
        "events": [
            {
                "action": action,
                "event_id": event_id,
                "event_datetime": (when or utcnow()).isoformat(),
                "author": "peter",
                "data": {"resource": resource},
            }
        ]
    }


def deliver(harness, body: dict) -> list[str]:
    """Accept an Events API delivery and run the per-product work it enqueues."""
    with session_scope() as s:
        keys = accept(s, parse_events_api(body), utcnow()).new_keys
    for k in keys:
        harness.dispatcher.pim_product(k)
    harness.drain()
    return keys


def published_skus(harness) -> list[str]:
    """The SKUs published in de_storefront, in order."""
    rows = harness.rows("de_storefront")
    return sorted(sku for (_, sku), r in rows.items() if r.status == "published")


def published(harness) -> str:
    return published_skus(harness)[0]


def test_product_event_updates_every_channel_and_its_pages(harness):
    harness.full()
    harness.drain()  # catalog events of the full sync -> product pages
    sku = published(harness)
    product = copy.deepcopy(harness.source.products[sku])
    for entry in product["values"]["name"]:
        entry["data"] = "Renamed by webhook"
    product["updated"] = (utcnow() + timedelta(seconds=1)).isoformat()
    events = parse_events_api(legacy("ev-1", "product.updated", product))
    with session_scope() as s:
        result = accept(s, events, utcnow())
    assert result.accepted == 1 and result.new_keys == [sku]
    harness.dispatcher.pim_product(sku)
    harness.drain()
    rows = harness.rows()
    assert rows[("de_storefront", sku)].doc["title"]["de_DE"] == "Renamed by webhook"
    with session_scope() as s:
        pages = {
            p.channel: p
            for p in s.execute(select(ProductPage).where(ProductPage.sku == sku)).scalars()
        }
        assert s.execute(select(func.count()).select_from(PendingSku)).scalar_one() == 0
    published_in = [c for c in CHANNELS if rows[(c, sku)].status == "published"]
    assert published_in and set(published_in) <= set(pages)
    for channel in published_in:
        assert pages[channel].catalog_version == rows[(channel, sku)].version


def test_redelivered_event_does_nothing_twice(harness):
    harness.full()
    sku = published(harness)
    product = harness.source.products[sku]
    events = parse_events_api(legacy("ev-dup", "product.updated", product))
    with session_scope() as s:
        first = accept(s, events, utcnow())
    with session_scope() as s:
        again = accept(s, events, utcnow())
    assert (first.accepted, first.duplicates) == (1, 0)
    assert (again.accepted, again.duplicates, again.new_keys) == (0, 1, [])
    with session_scope() as s:
        assert s.execute(select(func.count()).select_from(WebhookEvent)).scalar_one() == 1
        assert s.execute(select(PendingSku.events)).scalar_one() == 1


def test_a_burst_for_one_product_is_one_fetch_and_one_publish(harness, monkeypatch):
    harness.full()
    sku = published(harness)
    uuid = harness.source.products[sku]["uuid"]
    fetches = []
    harness.source.get_by_uuid = lambda u: (
        fetches.append(u)
        or copy.deepcopy(next(p for p in harness.source.products.values() if p["uuid"] == u))
    )
    base = datetime.now(UTC)
    keys = []
    for i in range(10):  # ten Event Platform updates within a second
        body = {
            "specversion": "1.0",
            "id": f"ce-{i}",
            "source": "pim",
            "type": "com.akeneo.pim.v1.product.updated",
            "time": (base + timedelta(milliseconds=90 * i)).isoformat(),
            "data": {"product": {"uuid": uuid}},
        }
        with session_scope() as s:
            keys += accept(s, parse_cloudevents(body), utcnow()).new_keys
    assert keys == [f"uuid:{uuid}"]  # one pending row, one task
    harness.source.rename(sku, "(latest)")
    harness.dispatcher.pim_product(keys[0])
    sent_before = len(harness.dispatcher.sent)
    harness.drain()
    assert fetches == [uuid]  # fetched once, the newest state
    assert (
        harness.rows("de_storefront")[("de_storefront", sku)]
        .doc["title"]["de_DE"]
        .endswith("(latest)")
    )
    publishes = [m for m in harness.dispatcher.sent[sent_before:] if m[0] == "pim"]
    assert publishes == []  # no second round: nothing arrived while it ran


def test_older_event_changes_nothing_and_removal_disables_everywhere(harness):
    harness.full()
    sku = published(harness)
    stale = copy.deepcopy(harness.source.products[sku])
    stale["updated"] = (datetime(2020, 1, 1, tzinfo=UTC)).isoformat()
    for entry in stale["values"]["name"]:
        entry["data"] = "stale"
    deliver(harness, legacy("ev-old", "product.updated", stale))
    with session_scope() as s:
        raw = s.get(PimProduct, sku).raw
    assert all(e["data"] != "stale" for e in raw["values"]["name"])
    removal = {"identifier": sku, "uuid": harness.source.products[sku]["uuid"]}
    deliver(harness, legacy("ev-rm", "product.removed", removal))
    rows = harness.rows()
    for channel in CHANNELS:
        assert rows[(channel, sku)].status == "removed" and not rows[(channel, sku)].enabled
    with session_scope() as s:
        assert s.get(PimProduct, sku).removed_at is not None


def test_product_model_event_reaches_every_variant(harness):
    harness.full()
    models = {p["root_parent"] for p in harness.source.products.values() if p.get("root_parent")}
    root = sorted(models)[0]
    variants = sorted(k for k, p in harness.source.products.items() if p.get("root_parent") == root)
    assert len(variants) > 1
    body = legacy("ev-model", "product_model.removed", {"code": root.upper()})  # codes ignore case
    assert sorted(deliver(harness, body)) == variants
    rows = harness.rows("de_storefront")
    assert all(rows[("de_storefront", v)].status == "removed" for v in variants)


def test_concurrent_intakes_of_one_product_keep_the_newest_state(harness):
    """An older payload's intake, interrupted right before it writes the pending row while a
    newer one commits, must not overwrite the newer state."""
    import threading

    from sqlalchemy import event

    from app.db import get_engine

    sku = sorted(harness.source.products)[0]
    base = datetime.now(UTC)

    def body(event_id: str, seconds: int) -> dict:
        product = copy.deepcopy(harness.source.products[sku])
        product["updated"] = (base + timedelta(seconds=seconds)).isoformat()
        for entry in product["values"]["name"]:
            entry["data"] = event_id
        return legacy(event_id, "product.updated", product, base + timedelta(seconds=seconds))

    with session_scope() as s:  # work already pending, as from an earlier delivery
        assert accept(s, parse_events_api(body("first", -10)), utcnow()).new_keys == [sku]
    at_write, go = threading.Event(), threading.Event()
    paused = threading.get_ident

    def older_intake() -> None:
        me = paused()

        def hold(conn, cursor, statement, params, context, executemany):
            if threading.get_ident() == me and "pending_sku" in statement and "UPDATE" in statement:
                at_write.set()
                assert go.wait(30)

        engine = get_engine()
        event.listen(engine, "before_cursor_execute", hold)
        try:
            with session_scope() as s:
                accept(s, parse_events_api(body("older", 0)), utcnow())
        finally:
            event.remove(engine, "before_cursor_execute", hold)

    other = threading.Thread(target=older_intake)
    other.start()
    assert at_write.wait(30)
    with session_scope() as s:  # the newer delivery commits meanwhile
        accept(s, parse_events_api(body("newer", 10)), utcnow())
    go.set()
    other.join(30)
    with session_scope() as s:
        row = s.get(PendingSku, sku)
        assert row.events == 3
        assert {e["data"] for e in row.product["values"]["name"]} == {"newer"}


def test_one_catalog_message_per_transaction_across_channels(harness, monkeypatch):
    """A product changing in every channel makes one catalog message, not one per channel;
    large changes are cut into messages of at most CATALOG_EVENT_CHUNK rows, none lost."""
    import app.sync.context as context

    harness.full()
    sku = published(harness)
    product = copy.deepcopy(harness.source.products[sku])
    product["updated"] = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    for entry in product["values"]["name"]:
        entry["data"] = "one message"
    before = len(harness.dispatcher.sent)
    deliver(harness, legacy("ev-one", "product.updated", product))
    catalog = [args for name, args in harness.dispatcher.sent[before:] if name == "catalog"]
    changed = {
        ch for (ch, s_), r in harness.rows().items() if s_ == sku and r.status == "published"
    }
    assert len(catalog) == 1 and set(catalog[0][0]) == changed and len(changed) > 1

    monkeypatch.setattr(context, "CATALOG_EVENT_CHUNK", 3)
    before = len(harness.dispatcher.sent)
    pending = {"b": {"3", "1", "2", "4"}, "a": {"9"}}
    harness.ctx._send_catalog(pending)
    sent = [args[0] for name, args in harness.dispatcher.sent[before:] if name == "catalog"]
    assert sent == [{"a": ["9"], "b": ["1", "2"]}, {"b": ["3", "4"]}]


def _coalesce(harness, monkeypatch, seconds: float) -> None:
    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_EVENT_COALESCE_SECONDS", str(seconds))
    reset_settings_cache()
    harness.reload_settings()


def _accept_renamed(harness, event_id: str, sku: str, title: str) -> list[str]:
    body = legacy(event_id, "product.updated", _renamed(harness, sku, title))
    with session_scope() as s:
        return accept(s, parse_events_api(body), utcnow()).new_keys


def _renamed(harness, sku: str, title: str, seconds: int = 1) -> dict:
    product = copy.deepcopy(harness.source.products[sku])
    for entry in product["values"]["name"]:
        entry["data"] = title
    product["updated"] = (utcnow() + timedelta(seconds=seconds)).isoformat()
    return product


def test_a_lone_edit_is_due_at_once_and_taken_along_while_a_recent_one_waits(harness, monkeypatch):
    """Coalescing leads: the first event of a product the mirror has not written within the
    window is due at once (any task takes it along); a product written within the window
    waits for it, even from a task that runs now."""
    from sqlalchemy import update

    from app.sync.pim_events.apply import process

    window = 60.0
    _coalesce(harness, monkeypatch, window)
    harness.full()
    harness.drain()
    quiet, also_quiet, busy = published_skus(harness)[:3]
    with session_scope() as s:  # the full sync wrote them two minutes ago; `busy` just now
        s.execute(
            update(PimProduct)
            .where(PimProduct.identifier.in_([quiet, also_quiet]))
            .values(ingested_at=utcnow() - timedelta(minutes=2))
        )
    due_now: set[str] = set()
    for i, sku in enumerate((quiet, also_quiet, busy)):
        body = legacy(f"ev-l{i}", "product.updated", _renamed(harness, sku, f"lead {i}"))
        with session_scope() as s:
            result = accept(s, parse_events_api(body), utcnow(), window)
        assert result.new_keys == [sku]
        due_now |= result.due_now
    assert due_now == {quiet, also_quiet}
    assert process(harness.ctx, quiet).endswith(" (and 1 more product(s))")
    rows = harness.rows("de_storefront")
    assert rows[("de_storefront", also_quiet)].doc["title"]["de_DE"] == "lead 1"
    assert rows[("de_storefront", busy)].doc["title"]["de_DE"] != "lead 2"
    with session_scope() as s:  # only `busy` is left, until its window is over
        assert list(s.execute(select(PendingSku.key)).scalars()) == [busy]
    # the quiet product was just written: its next event waits out the window
    body = legacy("ev-l3", "product.updated", _renamed(harness, quiet, "lead 3", seconds=2))
    with session_scope() as s:
        assert accept(s, parse_events_api(body), utcnow(), window).due_now == set()


def test_due_products_of_a_burst_are_applied_together(harness, monkeypatch):
    """The first product's task takes every other due, unclaimed product along: one
    transaction; their own tasks then find nothing pending."""
    from app.sync.pim_events.apply import process

    _coalesce(harness, monkeypatch, 0)
    harness.full()
    harness.drain()
    chosen = published_skus(harness)[:6]
    keys = []
    for i, sku in enumerate(chosen):
        keys += _accept_renamed(harness, f"ev-b{i}", sku, f"batch {i}")
    assert sorted(keys) == chosen
    outcome = process(harness.ctx, keys[0])
    assert outcome.endswith("(and 5 more product(s))"), outcome
    rows = harness.rows("de_storefront")
    for i, sku in enumerate(chosen):
        assert rows[("de_storefront", sku)].doc["title"]["de_DE"] == f"batch {i}"
    with session_scope() as s:
        assert s.execute(select(func.count()).select_from(PendingSku)).scalar_one() == 0
    assert [process(harness.ctx, k) for k in keys[1:]] == ["nothing pending"] * 5
    harness.drain()  # the catalog events of the one transaction reach every page
    with session_scope() as s:
        pages = s.execute(
            select(ProductPage.sku, ProductPage.catalog).where(
                ProductPage.channel == "de_storefront", ProductPage.sku.in_(chosen)
            )
        ).all()
    assert {sku: c["title"]["de_DE"] for sku, c in pages} == {
        sku: f"batch {i}" for i, sku in enumerate(chosen)
    }


def test_work_not_due_or_held_by_another_task_is_left_alone(harness, monkeypatch):
    from app.db import get_engine
    from app.sync.pim_events.apply import process

    _coalesce(harness, monkeypatch, 60)
    harness.full()
    a, b, c = published_skus(harness)[:3]
    _accept_renamed(harness, "ev-n1", a, "x")
    _accept_renamed(harness, "ev-n2", b, "x")
    outcome = process(harness.ctx, a)  # its own message came: a is applied, b is not due
    assert outcome.startswith("published") and "more" not in outcome, outcome
    with session_scope() as s:
        assert s.execute(select(PendingSku.key)).scalars().all() == [b]

    # b is due now, but another task holds its row: skipped, not waited for
    _coalesce(harness, monkeypatch, 0)
    _accept_renamed(harness, "ev-n3", c, "y")
    with get_engine().connect() as holder:
        holder.execute(select(PendingSku.key).where(PendingSku.key == b).with_for_update())
        outcome = process(harness.ctx, c)
        holder.rollback()
    assert outcome.startswith("published") and "more" not in outcome, outcome
    with session_scope() as s:
        assert s.execute(select(PendingSku.key)).scalars().all() == [b]
    assert process(harness.ctx, b).startswith("published")  # its own message takes it


def test_work_that_changed_while_applied_is_due_again_for_any_task(harness, monkeypatch):
    """An event for a product arriving while its task runs: the row stays, unclaimed, so the
    next task of any product takes it (not only its own message, at the queue's back)."""
    from app.sync.pim_events import apply as pim_events

    _coalesce(harness, monkeypatch, 0)
    harness.full()
    a, b = published_skus(harness)[:2]
    _accept_renamed(harness, "ev-c1", a, "first")
    real = pim_events._apply_work

    def meanwhile(*args, **kwargs):
        _accept_renamed(harness, "ev-c2", a, "second")  # commits while the task runs
        return real(*args, **kwargs)

    monkeypatch.setattr(pim_events, "_apply_work", meanwhile)
    sent_before = len(harness.dispatcher.sent)
    assert pim_events.process(harness.ctx, a).startswith("published")
    monkeypatch.setattr(pim_events, "_apply_work", real)
    with session_scope() as s:
        row = s.get(PendingSku, a)
        assert row is not None and row.claimed_at is None and row.events == 2
    assert ("pim", (a,)) in [(m[0], m[1][:1]) for m in harness.dispatcher.sent[sent_before:]]
    _accept_renamed(harness, "ev-c3", b, "other")
    assert pim_events.process(harness.ctx, b).endswith("(and 1 more product(s))")
    rows = harness.rows("de_storefront")
    assert rows[("de_storefront", a)].doc["title"]["de_DE"] == "second"
    with session_scope() as s:
        assert s.execute(select(func.count()).select_from(PendingSku)).scalar_one() == 0


def test_a_burst_of_pim_events_is_applied_together_on_sqlite_too(sqlite_harness, monkeypatch):
    """The embedded default (SQLite: no row locks to skip) takes due work along as well."""
    from app.sync.pim_events.apply import process

    _coalesce(sqlite_harness, monkeypatch, 0)
    sqlite_harness.full()
    chosen = published_skus(sqlite_harness)[:3]
    keys = []
    for i, sku in enumerate(chosen):
        keys += _accept_renamed(sqlite_harness, f"ev-s{i}", sku, f"lite {i}")
    assert process(sqlite_harness.ctx, keys[0]).endswith("(and 2 more product(s))")
    rows = sqlite_harness.rows("de_storefront")
    assert [rows[("de_storefront", s)].doc["title"]["de_DE"] for s in chosen] == [
        f"lite {i}" for i in range(3)
    ]


def test_removals_of_a_burst_are_applied_together(harness, monkeypatch):
    """Removals by SKU (Events API) and by uuid (Event Platform) in one task: every product
    flagged in the mirror and disabled in every channel; an unknown uuid is said so."""
    from app.sync.pim_events.apply import process

    _coalesce(harness, monkeypatch, 0)
    harness.full()
    a, b = published_skus(harness)[:2]
    with session_scope() as s:
        keys = accept(
            s, parse_events_api(legacy("ev-r1", "product.removed", {"identifier": a})), utcnow()
        ).new_keys
        for i, uuid in enumerate((harness.source.products[b]["uuid"], "no-such-uuid")):
            body = {
                "specversion": "1.0",
                "id": f"ce-r{i}",
                "source": "pim",
                "type": "com.akeneo.pim.v1.product.deleted",
                "time": utcnow().isoformat(),
                "data": {"product": {"uuid": uuid}},
            }
            keys += accept(s, parse_cloudevents(body), utcnow()).new_keys
    assert process(harness.ctx, keys[0]) == "removed (and 2 more product(s))"
    rows = harness.rows()
    for sku in (a, b):
        for channel in CHANNELS:
            assert rows[(channel, sku)].status == "removed" and not rows[(channel, sku)].enabled
        with session_scope() as s:
            assert s.get(PimProduct, sku).removed_at is not None
    with session_scope() as s:
        assert s.execute(select(func.count()).select_from(PendingSku)).scalar_one() == 0


def test_claiming_due_work_under_a_backlog_reads_the_unclaimed_index(pg_db):
    """A task that takes other due products along reads them oldest first from the partial
    index on unclaimed rows, not by sorting every pending row (a backlog is when it matters)."""
    from sqlalchemy import text

    from app.sync.pim_events.repository import due_unclaimed

    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    with session_scope() as s:
        s.execute(
            text(
                "INSERT INTO pending_sku (key, action, events, first_event_at, claimed_at) "
                "SELECT 'sku-' || i, 'upsert', 1, :t0 + i * interval '1 millisecond', "
                "CASE WHEN i % 2 = 0 THEN :t0 END FROM generate_series(1, 20000) AS i"
            ),
            {"t0": now - timedelta(hours=1)},
        )
    with session_scope() as s:
        s.execute(text("ANALYZE pending_sku"))
        query = due_unclaimed("sku-1", now, 50)
        compiled = query.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {compiled}")))
        assert "ix_pending_sku_unclaimed_first_event_at" in plan, plan
        assert "Sort" not in plan, plan
        keys = list(s.execute(query).scalars())
    # the 50 oldest unclaimed ones (odd numbers), the task's own key left out
    assert keys == [f"sku-{i}" for i in range(3, 103, 2)]
