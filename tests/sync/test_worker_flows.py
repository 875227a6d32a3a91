"""The sync service's failure flows on real parts: a Celery worker process (prefork), Redis as
broker, PostgreSQL, and a reference PIM serving a generated catalog over Akeneo's REST API.

(The same flows driven message by message in-process are in test_service.py.) Failures are
made the way production meets them: bad data served by the PIM, a contract or channel file
edited on disk. Nothing in the worker is patched.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml

from app.config import SAMPLE_DIR
from app.db import session_scope
from app.pim.models import PimProduct
from app.sync import ingest, operations, publish
from app.sync import repository as repo
from app.sync.models import SyncRun
from tests.conftest import create_pg_database, drop_pg_database, flush_redis_db, truncate_all
from tests.e2e_support import (
    Worker,
    admin,
    apply_env,
    reference_pim,
    restore_env,
    run_finished,
    stack_env,
    wait_until,
)
from tests.sync.flow_support import assert_counters_are_the_rows, batches, letters, rows, runs

pytestmark = [pytest.mark.slow, pytest.mark.worker]

CATALOG = "generated:60"
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]
DE = "de_storefront"
BATCH = 10
# A category whose parent the PIM serves as an object instead of a code: malformed data that
# the definitions reader lets through and that breaks the category walk of any product in it.
BAD_CATEGORY = "clearance_2026"


class Stack:
    def __init__(self, env: dict[str, str], base: str, catalog: Any, pristine: Any, tmp: Path):
        self.env, self.base, self.catalog, self.pristine = env, base, catalog, pristine
        self.config = tmp / "config"
        self.logs = tmp / "logs"
        self.admin = admin(base)

    # --- configuration on disk --------------------------------------------------------------

    def reset_config(self) -> None:
        shutil.rmtree(self.config, ignore_errors=True)
        self.config.mkdir(parents=True)
        shutil.copy(SAMPLE_DIR / "channels.yaml", self.config / "channels.yaml")
        shutil.copytree(SAMPLE_DIR / "contracts", self.config / "contracts")

    def contract_file(self, contract: str, version: int = 1) -> Path:
        return self.config / "contracts" / contract / f"v{version}.yaml"

    def write(self, path: Path, text: str) -> None:
        """Edit a file the way an operator does; its mtime moves forward so every process's
        configuration cache sees the change even within the same second."""
        path.write_text(text)
        later = time.time() + 5 + _bump()
        os.utime(path, (later, later))

    def edit_channels(self, edit: Any) -> None:
        path = self.config / "channels.yaml"
        data = yaml.safe_load(path.read_text())
        edit(data["channels"])
        self.write(path, yaml.safe_dump(data))

    # --- driving ----------------------------------------------------------------------------

    def ctx(self) -> Any:
        from tasks.dispatch import process_context

        return process_context()

    def worker(self, name: str, **env: str) -> Worker:
        return Worker({**self.env, **env}, self.logs / f"{name}.log", name=name)

    def full(self, channels: list[str] | None = None) -> Any:
        with session_scope() as s:
            run = ingest.start_full(s, self.ctx(), channels, trigger="test")
            assert run is not None
            return run.id

    def wait(self, run_id: Any, children: int, timeout: float = 120) -> dict[Any, SyncRun]:
        try:
            wait_until(lambda: run_finished(run_id, children), timeout, what=f"run {run_id}")
        except AssertionError as exc:
            logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs.glob("*"))
            raise AssertionError(f"{exc}; runs: {runs(run_id)}\nworker logs:\n{logs}") from None
        return runs(run_id)

    # --- the PIM ----------------------------------------------------------------------------

    def pim_product(self, sku: str) -> dict[str, Any]:
        uid = self.catalog._uuid_by_identifier[sku]
        return dict(orjson.loads(self.catalog._blobs[uid]))

    def pim_skus(self) -> list[str]:
        return sorted(self.catalog._uuid_by_identifier)

    def patch(self, sku: str, **changes: Any) -> None:
        self.admin.patch(f"/_admin/products/{sku}", json=changes).raise_for_status()

    def pim_requests(self) -> int:
        return int(self.admin.get("/_admin/stats").json()["requests"])


_bumps = iter(range(1, 1_000_000))


def _bump() -> int:
    return next(_bumps)


@pytest.fixture(scope="module")
def stack(redis_url: str, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from app.dev.reference_server import ReferenceCatalog

    db = create_pg_database("pimsync_flows")
    tmp = tmp_path_factory.mktemp("flows")
    pristine = ReferenceCatalog.load(CATALOG)
    with reference_pim(CATALOG) as (base, catalog):
        # before the first request: the server exports its definitions once
        for defs in (catalog.definitions, pristine.definitions):
            defs.categories[BAD_CATEGORY] = {"code": "master"}  # type: ignore[assignment]
        env = stack_env(
            db,
            redis_url,
            base,
            PIMSYNC_AKENEO_BACKOFF_BASE_SECONDS="0.05",
            PIMSYNC_AKENEO_BACKOFF_MAX_SECONDS="1",
            PIMSYNC_RETRY_BACKOFF_BASE_SECONDS="0.5",
            PIMSYNC_PUBLISH_BATCH_SIZE=str(BATCH),
            PIMSYNC_CHANNELS_FILE=str(tmp / "config" / "channels.yaml"),
            PIMSYNC_CONTRACTS_DIR=str(tmp / "config" / "contracts"),
        )
        old = apply_env(env)
        try:
            yield Stack(env, base, catalog, pristine, tmp)
        finally:
            restore_env(old)
            drop_pg_database(db)


@pytest.fixture
def fresh(stack: Stack, redis_url: str) -> Stack:
    """Empty database and queues, pristine PIM, the sample channels and contracts."""
    truncate_all(stack.env["PIMSYNC_DATABASE_URL"])
    flush_redis_db(redis.Redis.from_url(redis_url))
    stack.catalog.replace_with(stack.pristine)
    stack.reset_config()
    return stack


def test_error_budget_aborts_the_full_sync_and_disables_nothing(fresh: Stack):
    budget = {"PIMSYNC_ERROR_BUDGET_MAX_FAILED": "3", "PIMSYNC_CHANNEL_INFLIGHT_BATCHES": "1"}
    with fresh.worker("budget", **budget):
        first = fresh.wait(fresh.full([DE]), 1)[DE]
        assert first.status == "completed" and first.failed == 0
        with session_scope() as s:  # past what the first run read (the mirror's positions)
            marker = repo.get_cursor(s, "channel:de_storefront")
        assert marker is not None and int(marker) > int(first.cursor_to)
        before = rows(DE)
        published = sorted(s for s, r in before.items() if r.status == "published")
        gone = published[0]  # deleted in the PIM: an orphan, if the run were to finish
        fresh.admin.delete(f"/_admin/products/{gone}").raise_for_status()
        # the PIM now serves a colour the contract's lookup table does not know
        broken = set(published[1::2])
        for sku in broken:
            fresh.patch(sku, values={"color": [{"locale": None, "scope": None, "data": "uv"}]})
        run_id = fresh.full([DE])
        by = fresh.wait(run_id, 1)
    run = by[DE]

    # Independent route: the plan (sync_batch rows) and which SKUs the test broke. The
    # products the run read that did not change are up to date: counted unchanged when the
    # read planned them, no batch. Only the broken ones (their content changed) are in
    # batches; one in flight at a time: the budget stops the run after the first batch that
    # exceeds it.
    plan = [b for b in batches(run.id) if b.attempt == 1]
    assert plan and all(set(b.skus) <= broken for b in plan)
    failed, processed = 0, []
    for b in plan:
        processed += b.skus
        failed += len(broken & set(b.skus))
        if failed > 3:
            break
    assert failed > 3 and run.processed < 59, "the catalog must abort the run midway"

    assert run.status == "aborted"
    assert run.error == (
        f"error budget exceeded: {failed} failed of {run.processed} units (limit 3 or 5%)"
    )
    assert run.failed == failed
    assert run.unchanged == run.processed - failed and run.synced == 0
    assert run.orphans_disabled == 0
    assert all(b.status == "done" for b in batches(run.id))  # nothing left to run
    dead = letters(run_id=run.id)
    assert [d.sku for d in dead] == sorted(broken & set(processed))
    for d in dead:
        assert (d.channel, d.permanent, d.attempts, d.status) == (DE, True, 1, "open")
        assert d.error == (
            f"SKU {d.sku!r}: attribute 'color' value 'uv' (contract storefront_de@1): "
            "no option mapping for 'uv' in lookup table 'colors'"
        )
    assert_counters_are_the_rows(run)
    # Nothing disabled, nothing rewritten: the deleted product is still online.
    after = rows(DE)
    assert after[gone].status == "published" and after[gone].enabled
    assert not [r for r in after.values() if r.status == "orphan" or r.sync_run_id == run.id]
    assert {s: r.version for s, r in after.items()} == {s: r.version for s, r in before.items()}
    with session_scope() as s:  # the channel's delta marker stays where the last good run put it
        assert repo.get_cursor(s, "channel:de_storefront") == marker


def test_dead_letters_replayed_after_the_contract_is_fixed(fresh: Stack):
    contract = fresh.contract_file("storefront_de")
    good = contract.read_text()
    assert "black: 1, " in good
    # an edit on disk drops black from the colour table
    fresh.write(contract, good.replace("black: 1, ", ""))
    black = {s for s in fresh.pim_skus() if _color(fresh.pim_product(s)) == "black"}
    with fresh.worker("replay"):
        full = fresh.wait(fresh.full([DE]), 1)[DE]
        assert full.status == "completed"
        dead = letters(status="open")
        failed = {d.sku for d in dead}
        assert failed and failed <= black
        for d in dead:
            assert (d.channel, d.run_id, d.permanent, d.kind) == (DE, full.id, True, "publish")
            assert d.error == (
                f"SKU {d.sku!r}: attribute 'color' value 'black' (contract storefront_de@1): "
                "no option mapping for 'black' in lookup table 'colors'"
            )
        # the black products that did not fail never reached the contract
        before = rows(DE)
        assert not failed & set(before)
        assert {before[s].status for s in black - failed} <= {
            "incomplete",
            "filtered",
            "disabled_in_pim",
        }
        assert_counters_are_the_rows(full)

        fresh.write(contract, good)  # the cause fixed
        with session_scope() as s:
            result = operations.replay_dead_letters(s, fresh.ctx(), ids=[d.id for d in dead])
            assert result["replayed"] == len(dead)
            (replay_id,) = [r.id for r in result["runs"]]
        replay = fresh.wait(replay_id, 0)[DE]
    assert (replay.kind, replay.status, replay.error) == ("replay", "completed", None)
    assert (replay.synced, replay.failed, replay.planned_units) == (len(failed), 0, len(failed))
    assert_counters_are_the_rows(replay)
    after = rows(DE)
    for sku in failed:
        row = after[sku]
        assert (row.status, row.enabled, row.sync_run_id) == ("published", True, replay.id)
        assert row.doc["color_id"] == 1 and row.contract_version == "storefront_de@1"
    # the others were not touched by the replay
    assert {s: r.version for s, r in after.items() if s not in failed} == {
        s: r.version for s, r in before.items()
    }
    # replayed, then resolved by the replay's success
    assert {(d.sku, d.status) for d in letters()} == {(s, "resolved") for s in failed}


def test_a_rejected_product_is_fetched_again_on_replay_then_published(fresh: Stack):
    victim = next(s for s in fresh.pim_skus() if fresh.pim_product(s)["values"].get("weight"))
    weight = fresh.pim_product(victim)["values"]["weight"]
    bad = {"amount": [1, 2], "unit": "KILOGRAM"}
    fresh.patch(victim, values={"weight": [{"locale": None, "scope": None, "data": bad}]})
    with fresh.worker("refetch"):
        full = fresh.wait(fresh.full([DE]), 1)
        assert (full[None].status, full[None].read, full[None].rejected) == ("completed", 60, 1)
        (dl,) = letters()
        assert (dl.kind, dl.channel, dl.sku, dl.run_id) == ("ingest", "*", victim, full[None].id)
        assert dl.error == (
            f"product {victim!r}: field 'values.weight[0].data': "
            "metric amount must be a number, got [1, 2]"
        )
        assert victim not in rows(DE) and len(rows(DE)) == 59
        assert (full[DE].processed, full[DE].failed) == (60, 1)  # the rejected one counts
        assert_counters_are_the_rows(full[DE])

        fresh.patch(victim, values={"weight": weight})  # the catalog team fixes it
        with session_scope() as s:
            result = operations.replay_dead_letters(s, fresh.ctx(), ids=[dl.id])
        assert (result["replayed"], result["refetched"], result["runs"]) == (1, 1, [])
        with session_scope() as s:  # fetched again into the mirror, by the replay itself
            mirrored = s.get(PimProduct, victim)
            assert mirrored is not None and mirrored.raw["values"]["weight"] == weight
        delta = fresh.wait(_delta(fresh), 4)
    assert delta[DE].status == "completed" and delta[DE].failed == 0
    row = rows(DE)[victim]
    assert (row.status, row.enabled, row.sync_run_id) == ("published", True, delta[DE].id)
    # the fixed weight, as the PIM serves it (amount and unit symbol)
    assert weight == [
        {"locale": None, "scope": None, "data": {"amount": "10.0595", "unit": "KILOGRAM"}}
    ]
    assert row.doc["dimensions"]["weight"] == "10.0595 kg"
    assert [(d.sku, d.status) for d in letters()] == [(victim, "replayed")]


def _delta(stack: Stack) -> Any:
    with session_scope() as s:
        return ingest.start_delta(s, stack.ctx(), trigger="test").id


def _color(product: dict[str, Any]) -> Any:
    entries = product["values"].get("color") or [{}]
    return entries[0].get("data")


def test_republish_reads_the_mirror_not_the_pim(fresh: Stack):
    with fresh.worker("republish"):
        first = fresh.wait(fresh.full([DE]), 1)[DE]
        assert first.status == "completed"
        before = rows(DE)
        published = sorted(s for s, r in before.items() if r.status == "published")
        renamed = published[0]
        old_title = before[renamed].doc["title"]["de_DE"]
        # the PIM changes meanwhile: a republish must not see it (only a sync reads the PIM)
        fresh.patch(
            renamed,
            values={"name": [{"locale": "de_DE", "scope": None, "data": "Neu im PIM"}]},
        )
        fresh.admin.post("/_admin/stats/reset").raise_for_status()
        fresh.edit_channels(lambda chs: chs[DE].update(contract="storefront_de@2"))
        with session_scope() as s:
            run_id = publish.republish(s, fresh.ctx(), DE, trigger="test").id
        run = fresh.wait(run_id, 0)[DE]
        assert fresh.pim_requests() == 0
    assert (run.kind, run.status, run.error) == ("republish", "completed", None)
    assert run.planned_units == 60 and run.processed == 60 and run.unchanged == 0
    assert_counters_are_the_rows(run)
    after = rows(DE)
    assert set(after) == set(before)
    for sku, row in after.items():
        assert row.sync_run_id == run.id and row.status == before[sku].status
        if row.status != "published":
            continue
        assert row.contract_version == "storefront_de@2"
        score = fresh.pim_product(sku)["values"].get("sustainability_score")
        if score:  # storefront_de@2 maps it as a whole number
            assert row.doc["sustainability_score"] == round(float(score[0]["data"]))
        else:
            assert "sustainability_score" not in row.doc
    assert any("sustainability_score" in r.doc for r in after.values() if r.doc)
    assert after[renamed].doc["title"]["de_DE"] == old_title  # from the mirror


def test_a_broken_contract_fails_its_channel_alone(fresh: Stack):
    uk = fresh.contract_file("marketplace_uk")
    # an edit on disk with a typo in a transform name
    fresh.write(uk, uk.read_text().replace("metric_to_string", "metric_to_strng", 1))
    with fresh.worker("broken"):
        by = fresh.wait(fresh.full(), 4)
    assert by[None].status == "completed" and by[None].read == 60
    assert by["uk_marketplace"].status == "failed"
    assert by["uk_marketplace"].error == (
        f"channel unavailable: {uk}: mapping #12 (weight): unknown transform 'metric_to_strng' "
        "(known: auto, boolean, computed, direct, localized, lookup, metric_to_string, "
        "multi_to_csv, number, price)"
    )
    assert by["uk_marketplace"].processed == 0 and not rows("uk_marketplace")
    for channel in ("at_storefront", "b2b_portal", "de_storefront"):
        run = by[channel]
        assert (run.status, run.error, run.processed) == ("completed", None, 60), channel
        assert len(rows(channel)) == 60
        assert_counters_are_the_rows(run)
    assert letters() == []


def test_a_unit_failing_unexpectedly_is_retried_alone_then_dead_lettered(fresh: Stack):
    attempts = 3
    base = 0.5
    skus = fresh.pim_skus()
    victim = next(s for s in skus[20:] if fresh.pim_product(s)["enabled"])
    fresh.patch(victim, categories=[BAD_CATEGORY])
    with fresh.worker("retry", PIMSYNC_PUBLISH_MAX_ATTEMPTS=str(attempts)):
        by = fresh.wait(fresh.full(), 4)
    assert by[None].status == "completed"
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.failed, run.processed) == ("completed", 1, 60), channel
        assert_counters_are_the_rows(run)
        plan = batches(run.id)
        (home,) = [b for b in plan if b.attempt == 1 and victim in b.skus]
        retries = [b for b in plan if b.attempt > 1]
        # retried alone, once per remaining attempt, each no sooner than its backoff allows
        assert [(b.skus, b.attempt, b.status) for b in retries] == [
            ([victim], n, "done") for n in range(2, attempts + 1)
        ]
        previous = home
        for b in retries:
            assert b.not_before is not None and previous.done_at is not None
            assert previous.done_at <= b.not_before <= b.done_at
            # full jitter: at most base * 2^(attempt-2) after the failure (plus the batch's work)
            limit = timedelta(seconds=base * 2 ** (b.attempt - 2) + 2)
            assert b.not_before - previous.done_at <= limit
            previous = b
        # its neighbours committed with the first attempt
        got = rows(channel)
        assert victim not in got and len(got) == 59
        assert all(got[s].sync_run_id == run.id for s in home.skus if s != victim)
    dead = letters()
    assert [(d.channel, d.sku) for d in dead] == [(c, victim) for c in CHANNELS]
    for d in dead:
        assert (d.kind, d.permanent, d.attempts, d.status) == ("publish", False, attempts, "open")
        assert (d.error_type, d.error) == ("TypeError", "unhashable type: 'dict'")
        assert d.run_id == by[d.channel].id
    with session_scope() as s:  # a failed unit holds the channel's delta marker back
        assert all(repo.get_cursor(s, f"channel:{c}") is None for c in CHANNELS)


def test_a_catch_up_message_of_an_earlier_release_naming_one_channel_is_planned(fresh: Stack):
    """Earlier releases sent one `sync.catch_up` per channel, its name as the first argument:
    a worker of this release plans such a message left in the queue across an upgrade."""
    from sqlalchemy import delete, select

    from app.sync.models import SyncCursor
    from tasks import celery_app

    with fresh.worker("old-catch-up"):
        fresh.wait(fresh.full([DE]), 1)
        with session_scope() as s:  # every product is a change again for this channel
            s.execute(delete(SyncCursor).where(SyncCursor.name == f"channel:{DE}"))
        celery_app.send_task(
            "sync.catch_up", args=[DE], kwargs={"parent_id": None, "kind": "delta"}, queue="sync"
        )

        def delta_run() -> SyncRun | None:
            with session_scope() as s:
                q = select(SyncRun).where(SyncRun.kind == "delta", SyncRun.channel == DE)
                run = s.execute(q).scalar_one_or_none()
                return run if run is not None and run.status != "running" else None

        wait_until(delta_run, 60, what="the catch-up of the old message")
    run = delta_run()
    assert run is not None and (run.status, run.trigger) == ("completed", "beat")
    assert (run.planned_units, run.unchanged, run.processed) == (60, 60, 60)
    assert_counters_are_the_rows(run)
