"""Issue 16: full syncs, deltas and webhook bursts against a reference PIM having a bad day in
its data (a renamed identifier attribute, products without identifier, products without
family), read by the real Akeneo client over HTTP into real PostgreSQL.

The reference PIM refuses the identifier endpoints (``/products/{code}``) throughout: every
flow here reads through ``products-uuid`` only. The sync services run in-process (the queue
is the in-process dispatcher); what is under test is the PIM's data, not the worker.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from app.config import get_settings, reset_settings_cache
from app.db import session_scope, utcnow
from app.dev.bad_data import BadData
from app.dev.reference_server import ReferenceCatalog
from app.pim.models import PimProduct
from app.sync import repository as repo
from app.sync.pim_events.apply import accept
from app.sync.pim_events.formats import parse_cloudevents, parse_events_api
from tests.conftest import truncate_all
from tests.pim.reference_data import RunningPim, running_pim
from tests.pim.test_akeneo import make_source
from tests.sync.conftest import Harness

CATALOG = "generated:60"
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]
RENAMED = "item_code"  # `ean` is taken in the generated catalog: a free code


def next_second() -> None:
    """Wait for the next whole second. The PIM's `updated` has whole seconds and the delta asks
    for `updated >` the second its cursor falls in; with no overlap (these tests) an edit in
    the very second the full sync began would not be read again, in these tests or in real
    life (which is why PIMSYNC_DELTA_OVERLAP_SECONDS defaults to 120)."""
    time.sleep(1.0 - time.time() % 1.0 + 0.02)


@pytest.fixture
def settings(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A delta reads exactly what changed (the generated products were updated long ago).
    monkeypatch.setenv("PIMSYNC_DELTA_OVERLAP_SECONDS", "0")
    monkeypatch.setenv("PIMSYNC_EVENT_COALESCE_SECONDS", "0")
    monkeypatch.delenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", raising=False)
    reset_settings_cache()
    yield pg_db
    reset_settings_cache()


def plain_statuses(db: str) -> dict[tuple[str, str], str]:
    """What a full sync of the unspoiled catalog publishes; the database is emptied after."""
    with stack() as (plain, _):
        plain.full()
        found = statuses(plain)
    truncate_all(db)
    return found


@contextmanager
def stack(bad: BadData | None = None) -> Iterator[tuple[Harness, RunningPim]]:
    pim_catalog = ReferenceCatalog.load(CATALOG, bad)
    with running_pim(pim_catalog, identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        harness = Harness(source)  # type: ignore[arg-type]
        harness.ctx.settings = get_settings()
        try:
            yield harness, pim
        finally:
            source.close()
        assert pim.stats()["by_status"].get("403", 0) == 0  # no identifier endpoint, ever


def statuses(harness: Harness) -> dict[tuple[str, str], str]:
    return {key: row.status for key, row in harness.rows().items()}


def mirror_count() -> int:
    with session_scope() as s:
        return int(s.execute(select(func.count()).select_from(PimProduct)).scalar_one())


def pim_products(pim: RunningPim) -> list[dict[str, Any]]:
    return pim_products_of(pim.catalog)


def pim_products_of(catalog: ReferenceCatalog) -> list[dict[str, Any]]:
    return [orjson.loads(blob) for blob in catalog._blobs.values()]


def identifier_of(product: dict[str, Any], attribute: str) -> str | None:
    entries = product.get("values", {}).get(attribute) or []
    return entries[0]["data"] if entries else None


def later() -> str:
    return (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0).isoformat()


@pytest.fixture(scope="module")
def pristine() -> dict[str, Any]:
    """What the unspoiled catalog holds, for comparison (read from the dataset itself)."""
    catalog = ReferenceCatalog.load(CATALOG)
    products = [orjson.loads(b) for b in catalog._blobs.values()]
    return {
        "skus": sorted(identifier_of(p, "sku") for p in products),
        "sku_of": {p["uuid"]: identifier_of(p, "sku") for p in products},
    }


# --- a renamed identifier attribute (deviation 3) ---------------------------------------------


def test_renamed_identifier_full_delta_and_webhooks(settings: str, pristine: Any) -> None:
    expected = plain_statuses(settings)
    with stack(BadData(identifier_attribute=RENAMED)) as (harness, pim):
        run_id = harness.full()
        parent = harness.runs(run_id)[None]
        assert (parent.status, parent.read, parent.rejected) == ("completed", 60, 0)
        assert mirror_count() == 60
        # the same catalog under another identifier attribute name: the same outcome
        assert statuses(harness) == expected
        assert sorted({sku for _, sku in expected}) == pristine["skus"]

        next_second()  # the edits fall in a later second than the full sync began
        # a delta: three products edited in the PIM, read again and nothing else
        skus = pristine["skus"][:3]
        for sku in skus:
            pim.admin.patch(
                f"/_admin/products/{sku}",
                json={"values": {"name": [{"locale": "de_DE", "scope": None, "data": "Neu"}]}},
            ).raise_for_status()
        delta = harness.runs(harness.delta())[None]
        assert (delta.status, delta.read, delta.rejected) == ("completed", 3, 0)

        # a webhook burst: the Event Platform names products by uuid only
        by_sku = {identifier_of(p, RENAMED): p for p in pim_products(pim)}
        burst = [
            {
                "specversion": "1.0",
                "id": f"ce-{i}",
                "source": "pim",
                "type": "com.akeneo.pim.v1.product.updated",
                "time": later(),
                "data": {"product": {"uuid": by_sku[sku]["uuid"]}},
            }
            for i, sku in enumerate(pristine["skus"][10:20])
        ]
        with session_scope() as s:
            keys = accept(s, parse_cloudevents(burst), utcnow()).new_keys or []
        assert len(keys) == 10
        for key in keys:
            harness.dispatcher.pim_product(key)
        harness.drain()
        with session_scope() as s:
            assert repo.list_dead_letters(s) == []
        assert mirror_count() == 60


def test_renamed_identifier_with_a_wrong_setting_fails_the_run_and_says_why(
    settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", "sku")  # the catalog calls it item_code
    reset_settings_cache()
    with stack(BadData(identifier_attribute=RENAMED)) as (harness, _):
        run_id = harness.full()
        runs = harness.runs(run_id)
        parent = runs[None]
        assert parent.status == "failed"
        assert parent.read == parent.rejected == 0  # refused before reading a product
        assert "'sku' is not one of the PIM's identifier attributes" in (parent.error or "")
        assert "'item_code' is" in (parent.error or "")
        assert "PIMSYNC_IDENTIFIER_ATTRIBUTE" in (parent.error or "")
        for channel in CHANNELS:
            assert runs[channel].status == "failed"
        assert harness.rows() == {}  # nothing published, nothing disabled
        assert mirror_count() == 0


def test_a_run_whose_every_product_is_rejected_fails_and_says_why(settings: str) -> None:
    broken = ReferenceCatalog.load(CATALOG)
    for p in pim_products_of(broken):
        p["values"]["name"] = "broken"  # a value that is not a list of values
        broken.put(identifier_of(p, "sku"), p, p["updated"])
    with running_pim(broken, identifier_endpoints=False) as pim:
        source = make_source(pim.url)
        harness = Harness(source)  # type: ignore[arg-type]
        harness.ctx.settings = get_settings()
        try:
            runs = harness.runs(harness.full())
        finally:
            source.close()
    parent = runs[None]
    assert parent.status == "failed"
    assert parent.read == parent.rejected == 60
    assert "every product read (60) was rejected" in (parent.error or "")
    assert "values.name" in (parent.error or "")  # the first reason, verbatim
    for channel in CHANNELS:
        assert runs[channel].status == "failed"
    assert harness.rows() == {}


def test_completeness_command_finds_the_renamed_identifier_or_exits_non_zero(
    settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from tests.pim.reference_data import CLIENT

    for name, value in CLIENT.items():
        key = "PIMSYNC_AKENEO_" + ("CLIENT_ID" if name == "client_id" else name.upper())
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIMSYNC_REDIS_URL", "none")
    reset_settings_cache()
    with stack(BadData(identifier_attribute=RENAMED)) as (_, pim):
        command = ["completeness", "--source", pim.url, "--channels", "pim", "--json"]
        found = CliRunner().invoke(app, command)
        assert found.exit_code == 0, found.output
        report = orjson.loads(found.stdout)["channels"]
        assert report and all(
            st["products"] == 60 for locales in report.values() for st in locales.values()
        )
        monkeypatch.setenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", "sku")
        reset_settings_cache()
        wrong = CliRunner().invoke(app, command)
        assert wrong.exit_code == 1
        said = " ".join(wrong.output.split())  # the console wraps long lines
        assert "'sku' is not one of the PIM's identifier attributes ('item_code' is" in said
        assert "PIMSYNC_IDENTIFIER_ATTRIBUTE" in said


# --- products without identifier, products without family (deviations 4 and 7) ---------------


def cloud_event(i: int, uid: str, kind: str = "product.updated") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ce-{kind}-{i}",
        "source": "pim",
        "type": f"com.akeneo.pim.v1.{kind}",
        "time": later(),
        "data": {"product": {"uuid": uid}},
    }


def expected_statuses(
    plain: dict[tuple[str, str], str],
    sku_of: dict[str, str],
    identifierless: set[str],
    familyless: set[str],
    publish_uuid: frozenset[str] = frozenset(),
    publish_familyless: frozenset[str] = frozenset(),
) -> dict[tuple[str, str], str]:
    """The unspoiled outcome, changed by the rules (independently of the code under test):
    a product without identifier is keyed by its uuid and skipped (filtered) unless it is
    disabled in the PIM or the channel publishes it under its uuid; a product without family
    that would be published or incomplete is incomplete unless the channel opts in."""
    uuid_of = {sku: uid for uid, sku in sku_of.items()}
    out: dict[tuple[str, str], str] = {}
    for (channel, sku), status in plain.items():
        uid = uuid_of[sku]
        if uid in identifierless:
            key = (channel, uid)
            if status != "disabled_in_pim" and channel not in publish_uuid:
                status = "filtered"
            out[key] = status
            continue
        if (
            uid in familyless
            and status in ("published", "incomplete")
            and channel not in publish_familyless
        ):
            status = "incomplete"
        out[(channel, sku)] = status
    return out


def test_products_without_identifier_or_family_full_delta_and_webhooks(
    settings: str, pristine: Any
) -> None:
    plain = plain_statuses(settings)
    bad = BadData(without_identifier=2, without_family=3)
    with stack(bad) as (harness, pim):
        products = pim_products(pim)
        sku_of = pristine["sku_of"]
        uuid_of = {sku: uid for uid, sku in sku_of.items()}
        identifierless = {p["uuid"] for p in products if identifier_of(p, "sku") is None}
        familyless = {p["uuid"] for p in products if p.get("family") is None}
        assert (len(identifierless), len(familyless)) == (2, 3)
        expected = expected_statuses(plain, sku_of, identifierless, familyless)

        run_id = harness.full()
        parent = harness.runs(run_id)[None]
        assert (parent.status, parent.read, parent.rejected) == ("completed", 60, 0)
        assert mirror_count() == 60  # every product mirrored, the two without SKU by uuid
        got = {key: row for key, row in harness.rows().items()}
        assert {key: row.status for key, row in got.items()} == expected
        for uid in identifierless:
            for channel in CHANNELS:
                row = got[(channel, uid)]
                if row.status == "filtered":
                    assert row.detail == {"filter": "no identifier"}
        incomplete_no_family = [
            key for key, row in got.items() if (row.detail or {}).get("reason") == "no family"
        ]
        assert len(incomplete_no_family) == sum(
            1
            for (_, sku), status in plain.items()
            if uuid_of[sku] in familyless and status in ("published", "incomplete")
        )
        assert incomplete_no_family  # the rule did bite

        next_second()  # the edits fall in a later second than the full sync began
        # a delta: one product of each kind edited in the PIM
        untouched = set(sku_of) - identifierless - familyless
        edited = [min(identifierless), min(familyless), min(untouched)]
        for uid in edited:
            pim.admin.patch(
                f"/_admin/products-uuid/{uid}",
                json={"values": {"name": [{"locale": "de_DE", "scope": None, "data": "Neu"}]}},
            ).raise_for_status()
        delta = harness.runs(harness.delta())[None]
        assert (delta.status, delta.read, delta.rejected) == ("completed", 3, 0)
        assert {k: r.status for k, r in harness.rows().items()} == expected

        # a webhook burst: the Event Platform names every spoiled product by uuid
        burst = [cloud_event(i, uid) for i, uid in enumerate(sorted(identifierless | familyless))]
        pim.reset_stats()
        with session_scope() as s:
            keys = accept(s, parse_cloudevents(burst), utcnow()).new_keys or []
        assert len(keys) == 5
        harness.dispatcher.pim_product(keys[0])  # one task takes the due others along
        harness.drain()
        assert pim.stats()["requests"] == 1  # five products: one uuid IN search
        assert {k: r.status for k, r in harness.rows().items()} == expected
        with session_scope() as s:
            assert repo.list_dead_letters(s) == []
        assert mirror_count() == 60


def test_channels_that_opt_in_publish_them(
    settings: str, pristine: Any, channels_file: Any
) -> None:
    plain = plain_statuses(settings)

    def opt_in(channels: dict[str, Any]) -> None:
        channels["de_storefront"]["without_identifier"] = "uuid"
        channels["at_storefront"].setdefault("completeness", {})["publish_without_family"] = True

    channels_file(opt_in)
    with stack(BadData(without_identifier=2, without_family=3)) as (harness, pim):
        products = pim_products(pim)
        identifierless = {p["uuid"] for p in products if identifier_of(p, "sku") is None}
        familyless = {p["uuid"] for p in products if p.get("family") is None}
        expected = expected_statuses(
            plain,
            pristine["sku_of"],
            identifierless,
            familyless,
            publish_uuid=frozenset({"de_storefront"}),
            publish_familyless=frozenset({"at_storefront"}),
        )
        harness.full()
        rows = harness.rows()
        assert {key: row.status for key, row in rows.items()} == expected
        published_by_uuid = [
            uid for uid in identifierless if rows[("de_storefront", uid)].status == "published"
        ]
        assert published_by_uuid  # (the two are complete in de_storefront)
        for uid in published_by_uuid:
            assert rows[("de_storefront", uid)].doc["sku"] == uid
        assert any(
            rows[("at_storefront", pristine["sku_of"][uid])].status == "published"
            for uid in familyless
        )


# --- model events fetch each variant once (deviation 6) ------------------------------------


def test_a_mix_of_model_and_product_events_fetches_each_product_once(
    settings: str, pristine: Any
) -> None:
    with stack() as (harness, pim):
        harness.full()
        products = pim_products(pim)
        roots = Counter(p["root_parent"] for p in products if p.get("root_parent"))
        root, count = roots.most_common(1)[0]
        variants = [p for p in products if p.get("root_parent") == root]
        sub_model = variants[0]["parent"]
        assert count == len(variants) >= 3 and sub_model != root
        for p in variants:  # the catalog team edits the model's variants
            pim.admin.patch(
                f"/_admin/products-uuid/{p['uuid']}",
                json={"values": {"name": [{"locale": "de_DE", "scope": None, "data": "Neu"}]}},
            ).raise_for_status()
        legacy = {
            "events": [
                {
                    "action": "product_model.updated",
                    "event_id": f"model-{code}",
                    "event_datetime": later(),
                    "author": "peter",
                    "data": {"resource": {"code": code}},
                }
                for code in (root, sub_model)
            ]
        }
        # the same variants named by the model events (by SKU, through the mirror) and by
        # the Event Platform (by uuid), in one burst
        platform = [cloud_event(i, p["uuid"]) for i, p in enumerate(variants)]
        pim.reset_stats()
        with session_scope() as s:
            keys = accept(s, parse_events_api(legacy), utcnow()).new_keys or []
            keys += accept(s, parse_cloudevents(platform), utcnow()).new_keys or []
        assert len(keys) == 2 * len(variants)  # both names of each variant are pending
        harness.dispatcher.pim_product(keys[0])
        harness.drain()
        # one uuid IN search for every variant, however many events named it and how
        served = pim.stats()
        assert served["requests"] == 1, served
        with session_scope() as s:
            names = {
                row.identifier: row.raw["values"]["name"]
                for row in s.execute(select(PimProduct)).scalars()
                if row.uuid in {p["uuid"] for p in variants}
            }
        assert len(names) == len(variants)
        for entries in names.values():
            assert {"locale": "de_DE", "scope": None, "data": "Neu"} in entries


def test_a_refused_product_without_identifier_is_replayed_by_its_uuid(settings: str) -> None:
    from app.sync import operations

    with stack(BadData(without_identifier=1)) as (harness, pim):
        uid = next(p["uuid"] for p in pim_products(pim) if identifier_of(p, "sku") is None)
        # its data broken in the PIM: a value that is not a list of values
        pim.admin.patch(
            f"/_admin/products-uuid/{uid}", json={"values": {"name": "broken"}}
        ).raise_for_status()
        parent = harness.runs(harness.full())[None]
        assert (parent.read, parent.rejected) == (60, 1)
        with session_scope() as s:
            [letter] = repo.list_dead_letters(s)
            assert (letter.kind, letter.sku) == ("ingest", uid)  # named by its uuid
        # repaired in the PIM, then replayed: fetched by uuid and mirrored
        fixed = {"name": [{"locale": "de_DE", "scope": None, "data": "Repariert"}]}
        pim.admin.patch(f"/_admin/products-uuid/{uid}", json={"values": fixed}).raise_for_status()
        with session_scope() as s:
            result = operations.replay_dead_letters(s, harness.ctx)
        assert result["refetched"] == 1
        with session_scope() as s:
            row = s.get(PimProduct, uid)
            assert row is not None and row.raw["identifier"] is None


def test_every_bad_day_at_once_full_and_delta(settings: str, pristine: Any) -> None:
    """The issue's 'done when': renamed identifier, identifier-less and family-less products in
    one catalog; a full sync and a delta complete with exact counts."""
    plain = plain_statuses(settings)
    bad = BadData(identifier_attribute=RENAMED, without_identifier=2, without_family=3)
    with stack(bad) as (harness, pim):
        products = pim_products(pim)
        identifierless = {p["uuid"] for p in products if identifier_of(p, RENAMED) is None}
        familyless = {p["uuid"] for p in products if p.get("family") is None}
        assert (len(products), len(identifierless), len(familyless)) == (60, 2, 3)
        expected = expected_statuses(plain, pristine["sku_of"], identifierless, familyless)
        parent = harness.runs(harness.full())[None]
        assert (parent.status, parent.read, parent.rejected) == ("completed", 60, 0)
        assert mirror_count() == 60
        assert statuses(harness) == expected
        next_second()  # the edits fall in a later second than the full sync began
        edited = sorted(identifierless)[:1] + sorted(familyless)[:2]
        for uid in edited:
            pim.admin.patch(
                f"/_admin/products-uuid/{uid}",
                json={"values": {"name": [{"locale": "de_DE", "scope": None, "data": "Neu"}]}},
            ).raise_for_status()
        delta = harness.runs(harness.delta())[None]
        assert (delta.status, delta.read, delta.rejected) == ("completed", 3, 0)
        assert mirror_count() == 60
        assert statuses(harness) == expected


def test_unchanged_products_uuid_items_are_only_marked_seen(
    settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """products-uuid items carry the SKU in values only: the ingest still recognises the
    products the mirror holds unchanged and does not parse them again (a warm full sync)."""
    from app.sync import ingest

    with stack(BadData(identifier_attribute=RENAMED)) as (harness, _):
        harness.full()
        parsed: list[Any] = []
        real = ingest._parse_page

        def spy(page: Any, *args: Any, **kwargs: Any) -> Any:
            parsed.extend(page.items)
            return real(page, *args, **kwargs)

        monkeypatch.setattr(ingest, "_parse_page", spy)
        second = harness.runs(harness.full())[None]
        assert (second.status, second.read, second.rejected) == ("completed", 60, 0)
        assert parsed == []


# --- a product's identifier renamed in the PIM (products are keyed by uuid) ----------------


def test_a_renamed_sku_is_published_under_its_new_name_and_the_old_one_disabled(
    settings: str, pristine: Any
) -> None:
    """Akeneo keys a product by its uuid and lets its SKU be renamed: the next delta (or the
    product's webhook) publishes it under the new SKU and disables the old one in every
    channel at once, instead of leaving both online until a full sync."""
    uuid_of = {sku: uid for uid, sku in pristine["sku_of"].items()}
    with stack() as (harness, pim):
        harness.full()
        before = harness.rows()
        published = sorted({sku for (_, sku), row in before.items() if row.status == "published"})
        by_delta, by_webhook = published[0], published[1]

        def rename(old: str, new: str) -> None:
            pim.admin.patch(
                f"/_admin/products-uuid/{uuid_of[old]}",
                json={
                    "values": {"sku": [{"locale": None, "scope": None, "data": new}]},
                    "updated": later(),
                },
            ).raise_for_status()

        def check(old: str, new: str) -> None:
            rows = harness.rows()
            for channel in CHANNELS:
                was = before[(channel, old)]
                assert rows[(channel, new)].status == was.status, (channel, new)
                if was.status == "published":
                    assert rows[(channel, new)].doc["sku"] == new
                    assert (rows[(channel, old)].status, rows[(channel, old)].enabled) == (
                        "removed",
                        False,
                    ), (channel, old)
            with session_scope() as s:
                held = s.execute(
                    select(PimProduct.identifier, PimProduct.removed_at).where(
                        PimProduct.uuid == uuid_of[old]
                    )
                ).all()
            # the old name kept as history, marked removed; the new one current
            assert {ident: at is None for ident, at in held} == {new: True, old: False}

        rename(by_delta, "RENAMED-BY-DELTA")
        delta = harness.runs(harness.delta())[None]
        assert (delta.status, delta.read, delta.rejected) == ("completed", 1, 0)
        check(by_delta, "RENAMED-BY-DELTA")

        rename(by_webhook, "RENAMED-BY-WEBHOOK")
        with session_scope() as s:
            keys = accept(s, parse_cloudevents([cloud_event(0, uuid_of[by_webhook])]), utcnow())
        assert keys.new_keys
        harness.dispatcher.pim_product(keys.new_keys[0])
        harness.drain()
        check(by_webhook, "RENAMED-BY-WEBHOOK")
        assert mirror_count() == 62  # two retired rows kept as history


def test_a_product_given_an_identifier_retires_its_uuid_row(settings: str) -> None:
    with stack(BadData(without_identifier=1)) as (harness, pim):
        uid = next(p["uuid"] for p in pim_products(pim) if identifier_of(p, "sku") is None)
        harness.full()
        pim.admin.patch(
            f"/_admin/products-uuid/{uid}",
            json={
                "values": {"sku": [{"locale": None, "scope": None, "data": "NOW-NAMED"}]},
                "updated": later(),
            },
        ).raise_for_status()
        delta = harness.runs(harness.delta())[None]
        assert (delta.status, delta.read, delta.rejected) == ("completed", 1, 0)
        with session_scope() as s:
            held = s.execute(
                select(PimProduct.identifier, PimProduct.removed_at).where(PimProduct.uuid == uid)
            ).all()
        assert {ident: at is None for ident, at in held} == {"NOW-NAMED": True, uid: False}
        rows = harness.rows()
        assert {rows[(ch, uid)].enabled for ch in CHANNELS} == {False}
        assert any(rows[(ch, "NOW-NAMED")].status == "published" for ch in CHANNELS)
