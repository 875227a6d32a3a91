"""The sync engine's services on real PostgreSQL, driven message by message in-process.

(The same flows through Redis and a real Celery worker are in test_worker_e2e.py.)
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.channels.models import ChannelProduct
from app.db import session_scope
from app.mapping.models import DriftEvent, OwnershipViolation
from app.pim.models import PimProduct
from app.sync import ingest, operations, publish, runs, sweep
from app.sync import repository as repo
from app.sync.models import DeadLetter, SyncRun
from tests.sync.memory_source import later

CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]


# What the generated 60-product catalog (seed 7) must give in each sample channel, written
# out: a change in the deciding rules shows here as a different count.
EXPECTED_STATUSES = {
    "at_storefront": Counter(published=52, incomplete=8),
    "b2b_portal": Counter(published=40, filtered=15, incomplete=5),
    "de_storefront": Counter(published=52, incomplete=8),
    "uk_marketplace": Counter(published=45, filtered=6, incomplete=9),
}
DANGEROUS = {"class_2", "class_3", "class_8", "class_9"}


def hazmat(product: dict) -> str | None:
    values = product["values"].get("hazmat_class") or [{}]
    return values[0].get("data")


def test_full_sync_publishes_every_unit_once(harness):
    run_id = harness.full()
    runs = harness.runs(run_id)
    assert runs[None].status == "completed" and runs[None].read == 60
    for channel in CHANNELS:
        run = runs[channel]
        assert run.status == "completed", run.error
        rows = harness.rows(channel)
        assert len(rows) == 60
        got = Counter(r.status for r in rows.values())
        assert got == EXPECTED_STATUSES[channel]
        assert run.synced == got["published"]
        assert run.skipped_incomplete == got["incomplete"]
        assert run.filtered == got["filtered"]
        assert run.disabled == got["disabled_in_pim"]
        assert run.failed == 0 and run.orphans_disabled == 0
        published = [r for r in rows.values() if r.status == "published"]
        assert published and all(r.enabled and r.doc["sku"] == r.sku for r in published)
        assert all(r.contract_version for r in published)
        incomplete = [r for r in rows.values() if r.status == "incomplete"]
        assert all(r.detail["missing"] and not r.enabled for r in incomplete)
    # An independent route to one channel's filter: the marketplace refuses dangerous goods,
    # read straight from the PIM's payloads.
    dangerous = {s for s, p in harness.source.products.items() if hazmat(p) in DANGEROUS}
    filtered = {
        s for (_c, s), r in harness.rows("uk_marketplace").items() if r.status == "filtered"
    }
    assert filtered == dangerous and len(dangerous) == 6
    assert all(
        r.detail == {"filter": "no_dangerous_goods"}
        for r in harness.rows("uk_marketplace").values()
        if r.status == "filtered"
    )


def test_second_full_sync_writes_nothing_yet_sees_everything(harness):
    harness.full()
    before = {k: (r.version, r.synced_at, r.input_hash) for k, r in harness.rows().items()}
    run_id = harness.full()
    after = {k: (r.version, r.synced_at, r.input_hash) for k, r in harness.rows().items()}
    assert before == after
    runs = harness.runs(run_id)
    for channel in CHANNELS:
        assert runs[channel].unchanged == 60
        assert runs[channel].synced == 0 and runs[channel].orphans_disabled == 0
    with session_scope() as s:
        seen = s.execute(
            select(func.count()).where(PimProduct.last_seen_run == run_id)
        ).scalar_one()
    assert seen == 60


def test_a_full_sync_plans_batches_only_for_units_not_up_to_date(harness):
    """Units whose row was decided from the content the mirror holds, by the channel's
    current runtime, are counted unchanged when the read plans them: no batch, no publish
    message. A changed product, or a row to decide again, is planned as before."""
    from sqlalchemy import update

    from app.sync.models import SyncBatch

    harness.full()
    skus = sorted(harness.source.products)
    renamed, again = skus[4], skus[9]
    harness.source.rename(renamed, "(v2)")
    with session_scope() as s:  # e.g. a product the last run found gone, back now
        s.execute(
            update(ChannelProduct)
            .where(ChannelProduct.channel == "de_storefront", ChannelProduct.sku == again)
            .values(input_hash="")
        )
    harness.dispatcher.sent.clear()
    run_id = harness.full()
    runs_ = harness.runs(run_id)
    with session_scope() as s:
        planned = {
            (b.channel, sku)
            for b in s.scalars(
                select(SyncBatch).where(SyncBatch.run_id.in_([runs_[c].id for c in CHANNELS]))
            )
            for sku in b.skus
        }
    assert planned == {(c, renamed) for c in CHANNELS} | {("de_storefront", again)}
    assert sum(1 for name, _ in harness.dispatcher.sent if name == "publish") == 1
    for channel in CHANNELS:
        run = runs_[channel]
        assert run.status == "completed" and run.processed == run.planned_units == 60
        assert run.unchanged == (58 if channel == "de_storefront" else 59)
    assert harness.rows("de_storefront")[("de_storefront", again)].input_hash != ""


def test_delta_publishes_only_what_changed(harness):
    harness.full()
    before = harness.rows("de_storefront")
    published = sorted(k[1] for k, r in before.items() if r.status == "published")
    for sku in published[:3]:
        harness.source.rename(sku, "(2027 edition)")
    run_id = harness.delta()
    runs = harness.runs(run_id)
    assert runs[None].read == 3
    assert runs["de_storefront"].synced == 3
    after = harness.rows("de_storefront")
    for key, row in after.items():
        if key[1] in published[:3]:
            assert row.version == before[key].version + 1
            assert row.doc["title"]["de_DE"].endswith("(2027 edition)")
        else:
            assert row.version == before[key].version
    # The next delta re-reads the overlap window (the same 3 products), finds their content
    # unchanged, and has nothing to publish.
    run_id = harness.delta()
    runs = harness.runs(run_id)
    assert runs[None].read == 3
    assert all(runs[c].planned_units == 0 and runs[c].synced == 0 for c in CHANNELS)
    assert {k: r.version for k, r in harness.rows("de_storefront").items()} == {
        k: r.version for k, r in after.items()
    }


def test_first_delta_after_a_cold_full_sync_decides_only_what_changed(harness):
    """The full sync's own writes are behind each channel's delta marker once it completes:
    the next delta decides the products changed since, not the whole catalog again."""
    harness.full()
    changed = sorted(harness.source.products)[10:14]
    for sku in changed:
        harness.source.rename(sku, "(v2)")
    run_id = harness.delta()
    runs = harness.runs(run_id)
    assert runs[None].read == len(changed)
    for channel in CHANNELS:
        assert runs[channel].status == "completed"
        assert runs[channel].planned_units == len(changed), (channel, runs[channel])
        assert runs[channel].processed == len(changed)


def test_orphans_are_disabled_never_deleted(harness):
    harness.full()
    gone = sorted(
        k[1] for k, r in harness.rows("de_storefront").items() if r.status == "published"
    )[:2]
    for sku in gone:
        harness.source.remove(sku)
    run_id = harness.full()
    runs = harness.runs(run_id)
    rows = harness.rows()
    assert len(rows) == 60 * 4  # nothing deleted
    for channel in CHANNELS:
        for sku in gone:
            row = rows[(channel, sku)]
            assert row.status == "orphan" and not row.enabled and row.disabled_reason == "orphan"
        assert runs[channel].orphans_disabled == 2
    assert rows[("de_storefront", gone[0])].doc is not None  # last document kept for review
    others = [r for (c, s), r in rows.items() if s not in gone and r.status == "orphan"]
    assert others == []


def test_disabled_in_pim_then_enabled_again(harness):
    harness.full()
    sku = sorted(k[1] for k, r in harness.rows("de_storefront").items() if r.status == "published")[
        0
    ]
    harness.source.set_enabled(sku, False)
    harness.delta()
    rows = harness.rows()
    for channel in CHANNELS:
        assert rows[(channel, sku)].status == "disabled_in_pim"
        assert not rows[(channel, sku)].enabled
    harness.source.set_enabled(sku, True)
    harness.delta()
    assert harness.rows("de_storefront")[("de_storefront", sku)].status == "published"
    assert harness.rows("de_storefront")[("de_storefront", sku)].enabled


def test_overlapping_runs_are_refused_and_recorded(harness):
    with session_scope() as s:
        first = ingest.start_full(s, harness.ctx)
        assert first is not None
    with session_scope() as s:
        second = ingest.start_full(s, harness.ctx)
        assert second is None
        skipped = (
            s.execute(
                select(SyncRun).where(SyncRun.status == "skipped", SyncRun.channel.is_not(None))
            )
            .scalars()
            .all()
        )
        assert {r.channel for r in skipped} == set(CHANNELS)
        assert all("still in progress" in r.error for r in skipped)
    with session_scope() as s:
        d1 = ingest.start_delta(s, harness.ctx)
    with session_scope() as s:
        d2 = ingest.start_delta(s, harness.ctx)
        assert d1.status == "running" and d2.status == "skipped"
    harness.drain()


def test_killed_run_disables_nothing(harness, monkeypatch):
    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "10")  # several batches per channel
    monkeypatch.setenv("PIMSYNC_MAX_RESUMPTIONS", "0")  # abandoned at once, not resumed
    reset_settings_cache()
    harness.reload_settings()
    harness.full()
    gone = sorted(harness.source.products)[:3]
    for sku in gone:
        harness.source.remove(sku)
    for sku in harness.source.products:  # every unit has work (none is up to date already)
        harness.source.rename(sku, "v2")
    with session_scope() as s:
        run = ingest.start_full(s, harness.ctx)
        run_id = run.id
    # The worker dies after reading the PIM and publishing a few batches: the rest of the
    # queue is lost with it.
    for _ in range(3):
        name, args = harness.dispatcher.queue.popleft()
        step = {"ingest": ingest.ingest_slice, "publish": publish.publish_batches}[name]
        step(harness.ctx, args[0])
    harness.dispatcher.queue.clear()
    rows = harness.rows()
    assert not [r for r in rows.values() if r.status == "orphan"]
    assert all(r.status == "running" for c, r in harness.runs(run_id).items() if c)
    # Its leases expire; the sweeper declares it abandoned, still disabling nothing.
    harness.ctx.clock = lambda: __import__("app.db").db.utcnow() + timedelta(hours=1)
    sweep.sweep(harness.ctx)
    runs = harness.runs(run_id)
    assert all(r.status == "abandoned" for c, r in runs.items() if c)
    assert not [r for r in harness.rows().values() if r.status == "orphan"]
    # The next full sync completes and only then disables the orphans.
    harness.dispatcher.queue.clear()
    run_id = harness.full()
    assert all(r.status == "completed" for r in harness.runs(run_id).values())
    orphans = {s for (c, s), r in harness.rows().items() if r.status == "orphan"}
    assert orphans == set(gone)


def test_poisoned_unit_is_dead_lettered_while_neighbours_publish(harness):
    victim = sorted(
        k for k, p in harness.source.products.items() if p["enabled"] and p["family"] == "laptops"
    )[0]
    harness.source.products[victim]["values"]["color"] = [
        {"locale": None, "scope": None, "data": "ultraviolet"}
    ]
    run_id = harness.full(["de_storefront"])
    run = harness.runs(run_id)["de_storefront"]
    rows = harness.rows("de_storefront")
    with session_scope() as s:
        letters = s.execute(select(DeadLetter)).scalars().all()
        assert [(d.channel, d.sku, d.permanent, d.attempts) for d in letters] == [
            ("de_storefront", victim, True, 1)
        ]
        assert "ultraviolet" in letters[0].error and "storefront_de@1" in letters[0].error
        assert letters[0].run_id == run.id
    assert run.failed == 1 and run.status == "completed"
    assert ("de_storefront", victim) not in rows  # never published, nothing half-written
    assert run.synced + run.skipped_incomplete + run.filtered + run.disabled == 59
    # No retry for a permanent error: the one planned batch was the only publish message.
    assert [m[0] for m in harness.dispatcher.sent].count("publish") == 1
    # A failed unit keeps the channel cursor where it was (the delta retries it).
    with session_scope() as s:
        assert repo.get_cursor(s, "channel:de_storefront") is None


def test_unexpected_unit_error_retries_alone_then_dead_letters(harness, monkeypatch):
    import app.sync.publish as publish

    victim = sorted(harness.source.products)[5]
    calls = Counter()
    real = publish.evaluate

    def flaky(product, rt):
        if product.identifier == victim:
            calls[victim] += 1
            if calls[victim] < 3:
                raise ConnectionResetError("DAM lookup reset (test)")
        return real(product, rt)

    monkeypatch.setattr(publish, "evaluate", flaky)
    run_id = harness.full(["de_storefront"])
    run = harness.runs(run_id)["de_storefront"]
    assert calls[victim] == 3  # failed twice alone, then succeeded
    assert run.status == "completed" and run.failed == 0
    assert ("de_storefront", victim) in harness.rows("de_storefront")
    with session_scope() as s:
        batches = s.execute(
            select(func.count()).select_from(__import__("app.sync.models").sync.models.SyncBatch)
        ).scalar_one()
    assert batches == 1 + 2  # the planned batch, then two single-unit retries

    # A unit that never recovers ends in a dead letter after the attempts run out.
    calls.clear()
    monkeypatch.setattr(
        publish,
        "evaluate",
        lambda p, rt: (
            (_ for _ in ()).throw(RuntimeError("always")) if p.identifier == victim else real(p, rt)
        ),
    )
    harness.source.rename(victim, "x")
    harness.delta()
    with session_scope() as s:
        letters = s.execute(select(DeadLetter).where(DeadLetter.sku == victim)).scalars().all()
    assert {d.channel for d in letters} == set(CHANNELS)  # every channel's unit, alone
    assert all(d.attempts == harness.ctx.settings.publish_max_attempts for d in letters)
    assert all(not d.permanent and "always" in d.error for d in letters)


def test_error_budget_aborts_and_disables_nothing(harness, monkeypatch):
    harness.full(["de_storefront"])
    harness.source.remove(sorted(harness.source.products)[0])
    monkeypatch.setenv("PIMSYNC_ERROR_BUDGET_MAX_FAILED", "3")
    from app.config import reset_settings_cache

    reset_settings_cache()
    harness.reload_settings()
    for p in harness.source.products.values():  # every product now breaks the contract
        p["values"]["color"] = [{"locale": None, "scope": None, "data": "ultraviolet"}]
        p["updated"] = "2030-01-01T00:00:00+00:00"
    run_id = harness.full(["de_storefront"])
    run = harness.runs(run_id)["de_storefront"]
    assert run.status == "aborted" and "error budget exceeded" in run.error
    assert run.orphans_disabled == 0
    assert not [r for r in harness.rows().values() if r.status == "orphan"]


def test_same_second_updates_at_the_cursor_edge_are_not_lost(harness):
    from datetime import UTC, datetime

    harness.full()
    sku = sorted(harness.source.products)[-1]

    def de_name() -> str:
        with session_scope() as s:
            raw = s.get(PimProduct, sku).raw
        return next(e for e in raw["values"]["name"] if e["locale"] == "de_DE")["data"]

    # While the delta reads, the catalog team saves the product. The PIM stores `updated` to
    # the second, so the product's timestamp is at or *before* the cursor the cycle is about
    # to store (the cycle's start, with sub-seconds): `updated > cursor` alone would lose it.
    def edit_during_read(page_no: int) -> None:
        with session_scope() as s:
            start = s.execute(
                select(SyncRun.cursor_to).where(SyncRun.kind == "delta", SyncRun.channel.is_(None))
            ).scalar_one()
        # saved in the very second the cycle started (the PIM keeps whole seconds)
        when = datetime.fromisoformat(start).astimezone(UTC).replace(microsecond=0)
        harness.source.rename(sku, "(edited mid-cycle)", when=when)
        harness.source.on_page = None

    harness.source.on_page = edit_during_read
    first = harness.delta()
    assert not de_name().endswith("(edited mid-cycle)")  # this cycle read before the edit
    cursor = datetime.fromisoformat(harness.runs(first)[None].cursor_to)
    assert datetime.fromisoformat(harness.source.products[sku]["updated"]) <= cursor
    harness.delta()  # the next cycle re-reads the overlap window
    assert de_name().endswith("(edited mid-cycle)")
    row = harness.rows("de_storefront")[("de_storefront", sku)]
    if row.status == "published":
        assert row.doc["title"]["de_DE"].endswith("(edited mid-cycle)")


def test_broken_channel_fails_alone(harness, channels_file):
    def break_uk(chs):
        chs["uk_marketplace"]["contract"] = "marketplace_uk@9"

    channels_file(break_uk)
    harness.reload_settings()
    run_id = harness.full()
    runs = harness.runs(run_id)
    assert runs["uk_marketplace"].status == "failed"
    assert "marketplace_uk@9 not found" in runs["uk_marketplace"].error
    for channel in ("at_storefront", "b2b_portal", "de_storefront"):
        assert runs[channel].status == "completed"
    assert not harness.rows("uk_marketplace")


def test_malformed_product_is_rejected_but_not_orphaned(harness):
    harness.full()
    sku = sorted(harness.source.products)[3]
    harness.source.products[sku]["values"]["weight"] = [
        {"locale": None, "scope": None, "data": {"amount": [1, 2]}}
    ]
    run_id = harness.full()
    runs = harness.runs(run_id)
    assert runs[None].rejected == 1
    rows = harness.rows()
    assert all(rows[(c, sku)].status != "orphan" for c in CHANNELS)
    with session_scope() as s:
        dl = s.execute(select(DeadLetter).where(DeadLetter.kind == "ingest")).scalar_one()
    assert dl.sku == sku and "values.weight[0].data" in dl.error


def test_republish_applies_a_new_contract_version(harness, channels_file):
    harness.full(["de_storefront"])
    with session_scope() as s:
        drift = s.execute(select(DriftEvent)).scalars().all()
    scored = sum(
        1 for p in harness.source.products.values() if "sustainability_score" in p["values"]
    )
    assert scored > 0
    (d,) = [d for d in drift if d.attribute == "sustainability_score"]
    assert d.contract_id == "storefront_de" and d.contract_version == 1
    published_scored = [
        k
        for k, r in harness.rows("de_storefront").items()
        if r.status == "published"
        and "sustainability_score" in harness.source.products[k[1]]["values"]
    ]
    assert d.count == len(published_scored)

    def pin_v2(chs):
        chs["de_storefront"]["contract"] = "storefront_de@2"

    channels_file(pin_v2)
    harness.reload_settings()
    with session_scope() as s:
        publish.republish(s, harness.ctx, "de_storefront")
    harness.drain()
    rows = harness.rows("de_storefront")
    for key in published_scored:
        assert rows[key].contract_version == "storefront_de@2"
        assert "sustainability_score" in rows[key].doc
    with session_scope() as s:
        v2 = s.execute(select(DriftEvent).where(DriftEvent.contract_version == 2)).scalars()
        assert list(v2) == []


def test_replay_after_the_cause_is_fixed(harness):
    victim = sorted(
        k for k, p in harness.source.products.items() if p["enabled"] and p["family"] == "laptops"
    )[0]
    good_color = harness.source.products[victim]["values"].get("color")
    harness.source.products[victim]["values"]["color"] = [
        {"locale": None, "scope": None, "data": "ultraviolet"}
    ]
    harness.full(["de_storefront"])
    with session_scope() as s:
        (dl,) = repo.list_dead_letters(s)
        dl_id = dl.id
    # The catalog team fixes the colour; the mirror gets it with the next delta...
    harness.source.products[victim]["values"]["color"] = good_color
    harness.source.touch(victim)
    with session_scope() as s:
        result = operations.replay_dead_letters(s, harness.ctx, ids=[dl_id])
    assert result["replayed"] == 1
    harness.delta()
    harness.drain()
    assert harness.rows("de_storefront")[("de_storefront", victim)].status in (
        "published",
        "incomplete",
    )
    with session_scope() as s:
        statuses = {d.status for d in s.execute(select(DeadLetter)).scalars()}
    assert statuses <= {"replayed", "resolved"}


def test_ownership_violations_are_counted_once_per_attribute(harness):
    harness.full()
    with session_scope() as s:
        rows = {
            (v.domain, v.attribute): v.count
            for v in s.execute(select(OwnershipViolation)).scalars()
        }
    assert rows[("pricing", "price")] == 60
    assert rows[("media", "picture")] == 60
    docs = [r.doc for r in harness.rows().values() if r.status == "published"]
    assert docs and not any("price" in d or "picture" in d for d in docs)


def test_pim_unreachable_fails_the_run_and_disables_nothing(harness):
    from app.pim.source import TransientSourceError

    harness.full()
    harness.source.remove(sorted(harness.source.products)[0])
    harness.source.fail_reads = 1
    with session_scope() as s:
        run_id = ingest.start_full(s, harness.ctx).id
    _name, args = harness.dispatcher.queue.popleft()
    with pytest.raises(TransientSourceError):
        ingest.ingest_slice(harness.ctx, args[0])
    runs.fail_ingest(harness.ctx, run_id, "PIM answered 503")
    ended = harness.runs(run_id)
    assert all(r.status == "failed" for r in ended.values())
    assert not [r for r in harness.rows().values() if r.status == "orphan"]
    with session_scope() as s:
        assert s.execute(select(func.count()).select_from(ChannelProduct)).scalar_one() == 240


def test_engine_runs_on_sqlite_too(sqlite_harness):
    run_id = sqlite_harness.full()
    assert all(r.status == "completed" for r in sqlite_harness.runs(run_id).values())
    assert len(sqlite_harness.rows()) == 160
    sku = sorted(sqlite_harness.source.products)[0]
    sqlite_harness.source.remove(sku)
    run_id = sqlite_harness.full()
    assert {s for (c, s), r in sqlite_harness.rows().items() if r.status == "orphan"} == {sku}


def test_full_sync_reads_each_product_once_for_all_channels(harness, monkeypatch):
    """One message per page group carries every channel's batch: the mirror is decoded once."""
    import app.pim.repository as pim_repo
    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "20")
    reset_settings_cache()
    harness.reload_settings()
    loaded = Counter()
    real = pim_repo.load_products

    def counting(session, identifiers):
        loaded.update(identifiers)
        return real(session, identifiers)

    monkeypatch.setattr(pim_repo, "load_products", counting)
    harness.full()
    publishes = [args[0] for name, args in harness.dispatcher.sent if name == "publish"]
    assert publishes and all(len(ids) == 4 for ids in publishes)  # 4 channels per message
    assert set(loaded) == set(harness.source.products)
    assert max(loaded.values()) == 1  # decoded once, whatever the number of channels


def test_unchanged_products_are_only_marked_seen(harness, monkeypatch):
    """A second read parses (and rewrites) only what changed, was removed or is new."""
    import copy

    import app.sync.ingest as ingest

    harness.full()
    with session_scope() as s:
        before = {
            p.identifier: (p.change_seq, p.ingested_at) for p in s.scalars(select(PimProduct))
        }
    skus = sorted(harness.source.products)
    changed, removed, fresh = skus[0], skus[1], "NEW-SKU-1"
    product = harness.source.products[changed]
    product["values"]["name"][0]["data"] = "A new name"
    with session_scope() as s:  # e.g. a `removed` webhook that the PIM has since undone
        s.get(PimProduct, removed).removed_at = before[removed][1]
    new = copy.deepcopy(harness.source.products[skus[2]])
    new["identifier"] = fresh
    new["uuid"] = "00000000-0000-4000-8000-00000000beef"
    for entry in new["values"].get("sku", []):
        entry["data"] = fresh
    harness.source.products[fresh] = new

    parsed: list[str] = []
    real = ingest.parse_product

    def counting(raw, *args):
        product = real(raw, *args)
        parsed.append(product.identifier)
        return product

    monkeypatch.setattr(ingest, "parse_product", counting)
    run_id = harness.full()

    assert sorted(parsed) == sorted([changed, removed, fresh])
    runs = harness.runs(run_id)
    assert runs[None].read == 61
    with session_scope() as s:
        after = {p.identifier: p for p in s.scalars(select(PimProduct))}
    assert all(p.last_seen_run == run_id for p in after.values())
    assert after[removed].removed_at is None
    for ident, (seq, ingested) in before.items():
        moved = (after[ident].change_seq, after[ident].ingested_at) != (seq, ingested)
        assert moved == (ident in (changed, removed)), ident
    for channel in CHANNELS:
        run = runs[channel]
        assert run.orphans_disabled == 0 and run.failed == 0
        outcomes = run.unchanged + run.synced + run.skipped_incomplete + run.filtered
        assert outcomes + run.disabled == 61
    assert harness.rows("de_storefront")[("de_storefront", fresh)] is not None
    with session_scope() as s:  # ownership is still checked on every product read
        price = s.execute(
            select(OwnershipViolation.count).where(
                OwnershipViolation.domain == "pricing", OwnershipViolation.attribute == "price"
            )
        ).scalar_one()
    assert price == 60 + 61


def test_overlapping_full_syncs_of_different_channels_never_orphan_each_other(harness):
    """Two full syncs of different channels, each with its own read of the PIM, interleaved:
    the second read marks every product seen after the first one. A product counts as in the
    PIM when *any* read saw it since this run began, not only this run's own read."""
    harness.full()
    gone = sorted(harness.source.products)[0]
    harness.source.remove(gone)  # one real orphan, so the watermark is not vacuous
    with session_scope() as s:
        first = ingest.start_full(s, harness.ctx, ["de_storefront"])
        assert first is not None
        first_id = first.id
    with session_scope() as s:
        second = ingest.start_full(s, harness.ctx, ["uk_marketplace"])
        assert second is not None
        second_id = second.id
    # Both reads are queued before any publish: the second read marks every product seen
    # (by its own run id) before the first sync's channel finalises.
    assert [m[0] for m in harness.dispatcher.queue] == ["ingest", "ingest"]
    harness.drain()
    for run_id, channel in ((first_id, "de_storefront"), (second_id, "uk_marketplace")):
        run = harness.runs(run_id)[channel]
        assert run.status == "completed", run.error
        assert run.orphans_disabled == 1
        orphans = {s for (_c, s), r in harness.rows(channel).items() if r.status == "orphan"}
        assert orphans == {gone}
    # the channels no run covered keep what they had
    for channel in ("at_storefront", "b2b_portal"):
        assert not [r for r in harness.rows(channel).values() if r.status == "orphan"]


def test_failed_delta_keeps_the_cursor_and_the_next_delta_reads_the_changes(harness):
    """The ingest cursor moves only when a delta's last read commits: a delta whose read
    fails leaves it where it was, so the changes it missed are read by the next one."""
    from app.pim.source import SourceError

    harness.full()
    with session_scope() as s:
        before = repo.get_cursor(s, "ingest")
    assert before is not None
    edited = sorted(harness.source.products)[-3:]
    for sku in edited:
        harness.source.rename(sku, "(edited)", when=later(5))

    def broken(page_no: int) -> None:
        raise SourceError("PIM answered 404 on page 1 (test)")

    harness.source.on_page = broken
    with session_scope() as s:
        run_id = ingest.start_delta(s, harness.ctx, trigger="test").id
    _name, args = harness.dispatcher.queue.popleft()
    with pytest.raises(SourceError):
        ingest.ingest_slice(harness.ctx, args[0])
    runs.fail_ingest(harness.ctx, run_id, "PIM answered 404")  # what the task does
    with session_scope() as s:
        assert repo.get_run(s, run_id).status == "failed"
        assert repo.get_cursor(s, "ingest") == before  # not moved by the failed cycle
    harness.source.on_page = None
    harness.delta()
    with session_scope() as s:
        assert repo.get_cursor(s, "ingest") > before
        names = {
            sku: next(e["data"] for e in s.get(PimProduct, sku).raw["values"]["name"])
            for sku in edited
        }
    assert all(name.endswith("(edited)") for name in names.values()), names
    published = {s for (_c, s), r in harness.rows("de_storefront").items() if r.enabled}
    for sku in set(edited) & published:
        doc = harness.rows("de_storefront")[("de_storefront", sku)].doc
        assert "(edited)" in str(doc)


def test_a_value_postgresql_refuses_fails_its_unit_alone(harness):
    """A NUL character in a text value (legal JSON, refused by PostgreSQL's jsonb and text):
    the unit is dead-lettered in each channel that would publish it, with the attribute and
    the locale, and its neighbours publish; the run completes with its failure counted."""
    published_before = {
        ch: {s for (_c, s), r in harness.rows(ch).items() if r.status == "published"}
        for ch in CHANNELS
    }
    assert published_before == {ch: set() for ch in CHANNELS}
    victim = sorted(
        k for k, p in harness.source.products.items() if p["enabled"] and p["family"] == "laptops"
    )[0]
    for entry in harness.source.products[victim]["values"]["name"]:
        entry["data"] = "Laptop\u0000 Pro"
    run_id = harness.full()
    runs = harness.runs(run_id)
    with session_scope() as s:
        letters = s.execute(select(DeadLetter).order_by(DeadLetter.channel)).scalars().all()
    failed_in = {d.channel for d in letters}
    assert letters and all(d.sku == victim and d.permanent for d in letters)
    assert all(d.error_type == "UnstorableText" for d in letters)
    assert all(
        re.fullmatch(r"value of `name` in [a-z]{2}_[A-Z]{2} contains a NUL character", d.error)
        for d in letters
    ), [d.error for d in letters]
    for channel in CHANNELS:
        run = runs[channel]
        assert run.status == "completed", run.error
        rows = harness.rows(channel)
        expected = EXPECTED_STATUSES[channel]
        if channel in failed_in:
            assert run.failed == 1 and (channel, victim) not in rows
            assert run.synced == expected["published"] - 1
        else:  # the channel does not publish it (filtered, incomplete): nothing to refuse
            assert run.failed == 0
        assert run.synced == sum(1 for r in rows.values() if r.status == "published")
        assert run.synced + run.skipped_incomplete + run.filtered + run.failed == 60


def test_a_nul_in_an_identifier_refuses_that_product_alone(harness):
    """A product whose identifier PostgreSQL cannot store is refused at ingest and recorded by
    its uuid with the reason; every other product syncs (the hash look-up of the page used to
    fail whole on it, reading 0 products)."""
    import copy

    template = harness.source.products[sorted(harness.source.products)[5]]
    bad = copy.deepcopy(template)
    bad["identifier"] = "BAD\x00SKU"
    bad["uuid"] = "0b0e5a9e-1111-4222-8333-444455556666"
    harness.source.products[bad["identifier"]] = bad
    run_id = harness.full()
    runs = harness.runs(run_id)
    assert runs[None].status == "completed" and runs[None].read == 61
    assert runs[None].rejected == 1
    with session_scope() as s:
        letters = s.execute(select(DeadLetter)).scalars().all()
    assert [(d.channel, d.sku, d.kind) for d in letters] == [
        ("*", "0b0e5a9e-1111-4222-8333-444455556666", "ingest")
    ]
    assert "identifier" in letters[0].error and "NUL character" in letters[0].error
    assert "BAD\\x00SKU" in letters[0].error  # shown escaped, so a person can find it
    for channel in CHANNELS:
        assert runs[channel].status == "completed", runs[channel].error
        # the refused product is a unit of every channel, planned and failed
        assert runs[channel].planned_units == runs[channel].processed == 61
        assert len(harness.rows(channel)) == 60
        assert (
            Counter(r.status for r in harness.rows(channel).values())
            == (EXPECTED_STATUSES[channel])
        )


def test_one_reader_per_run_when_its_read_is_delivered_twice(harness):
    """The read message of a run arrives twice while the first copy reads (a redelivery, the
    sweeper's resend): the second copy reads nothing, and every counter stays exact."""
    with session_scope() as s:
        run_id = ingest.start_full(s, harness.ctx).id
    _name, args = harness.dispatcher.queue.popleft()
    second: list[bool] = []
    delivered: list[int] = []

    def redelivered(page_no: int) -> None:
        if not delivered:
            delivered.append(page_no)
            second.append(ingest.ingest_slice(harness.ctx, args[0]))

    harness.source.on_page = redelivered
    assert ingest.ingest_slice(harness.ctx, args[0]) is True
    harness.source.on_page = None
    assert second == [True] and harness.source.reads == 1  # the copy never asked the PIM
    harness.drain()
    runs_ = harness.runs(run_id)
    assert runs_[None].status == "completed" and runs_[None].read == 60
    for channel in CHANNELS:
        assert runs_[channel].processed == 60 and runs_[channel].planned_units == 60


def test_a_reader_whose_lease_was_taken_over_writes_nothing(harness, monkeypatch):
    """Reader A stalls past its lease; reader B (another copy of the run's read) takes it over,
    commits a page and hands its slice on. When A wakes up with the page it had read, its
    fencing token no longer renews the lease, so it writes nothing: each product is read into
    the run once."""
    from datetime import UTC, datetime

    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_AKENEO_PAGE_SIZE", "10")
    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "10")  # a group is one page
    reset_settings_cache()
    harness.reload_settings()
    clock = {"now": datetime.now(UTC)}
    harness.ctx.clock = lambda: clock["now"]
    with session_scope() as s:
        run_id = ingest.start_full(s, harness.ctx).id
    _name, args = harness.dispatcher.queue.popleft()
    pages_served: list[int] = []

    def stall_then_take_over(page_no: int) -> None:
        pages_served.append(page_no)
        if len(pages_served) == 1:  # A has read its first page: A stalls, B takes over
            clock["now"] += timedelta(minutes=30)  # far past A's lease
            assert ingest.ingest_slice(harness.ctx, args[0]) is False  # B hands its slice on
        elif len(pages_served) == 2:  # B's first page: B's slice ends after it
            clock["now"] += timedelta(seconds=harness.ctx.settings.ingest_slice_seconds + 1)

    harness.source.on_page = stall_then_take_over
    assert ingest.ingest_slice(harness.ctx, args[0]) is True  # A stops, writing nothing
    harness.source.on_page = None
    with session_scope() as s:
        assert repo.get_run(s, run_id).read == 10  # B's page only
    harness.drain()  # B's next slice reads on from B's resume token
    runs_ = harness.runs(run_id)
    assert runs_[None].status == "completed" and runs_[None].read == 60
    for channel in CHANNELS:
        assert runs_[channel].status == "completed", runs_[channel].error
        assert runs_[channel].processed == 60 and runs_[channel].planned_units == 60


def test_a_dead_workers_run_resumes_from_its_checkpoint_then_is_abandoned_at_the_limit(
    harness, monkeypatch
):
    """The worker dies mid full sync (its queued messages lost with it). When the run's
    leases expire, the sweeper resumes it: leases taken again, enqueued batches sent again,
    and the run completes with exact counts. A run that keeps dying is abandoned after
    PIMSYNC_MAX_RESUMPTIONS resumptions, saying so."""
    from datetime import UTC, datetime

    from app.config import reset_settings_cache

    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "10")  # several batches per channel
    monkeypatch.setenv("PIMSYNC_MAX_RESUMPTIONS", "1")
    reset_settings_cache()
    harness.reload_settings()
    clock = {"now": datetime.now(UTC)}
    harness.ctx.clock = lambda: clock["now"]

    def die_after(messages: int) -> None:
        for _ in range(messages):
            name, args = harness.dispatcher.queue.popleft()
            step = {"ingest": ingest.ingest_slice, "publish": publish.publish_batches}[name]
            step(harness.ctx, args[0])
        harness.dispatcher.queue.clear()  # the rest of the queue dies with the worker

    with session_scope() as s:
        run_id = ingest.start_full(s, harness.ctx, ["de_storefront"]).id
    die_after(3)  # the read and two batches
    clock["now"] += timedelta(seconds=harness.ctx.settings.lock_ttl_seconds + 1)
    out = sweep.sweep(harness.ctx)
    assert out["resumed"] == 1 and out["abandoned"] == 0
    run = harness.runs(run_id)["de_storefront"]
    assert run.status == "running" and run.details["resumptions"] == 1
    harness.drain()  # a healthy worker takes what the sweeper sent again
    run = harness.runs(run_id)["de_storefront"]
    assert run.status == "completed", run.error
    assert run.processed == 60 and run.planned_units == 60
    assert run.synced == EXPECTED_STATUSES["de_storefront"]["published"]

    # a run whose worker dies again after its one resumption is abandoned, with why
    for sku in harness.source.products:  # every unit has work again: several batches
        harness.source.rename(sku, "(again)", when=later(5))
    with session_scope() as s:
        run_id = ingest.start_full(s, harness.ctx, ["de_storefront"]).id
    die_after(2)
    for expected in ("resumed", "abandoned"):
        clock["now"] += timedelta(seconds=harness.ctx.settings.lock_ttl_seconds + 1)
        out = sweep.sweep(harness.ctx)
        assert out[expected] == 1, out
        harness.dispatcher.queue.clear()  # it died again
    run = harness.runs(run_id)["de_storefront"]
    assert run.status == "abandoned"
    assert "after 1 resumption(s)" in run.error and "PIMSYNC_MAX_RESUMPTIONS=1" in run.error
