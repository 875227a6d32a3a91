"""Issue 16: full syncs, deltas and webhook bursts against a reference PIM having a bad day in
its data (a renamed identifier attribute, products without identifier, products without
family), read by the real Akeneo client over HTTP into real PostgreSQL.

The reference PIM refuses the identifier endpoints (``/products/{code}``) throughout: every
flow here reads through ``products-uuid`` only. The sync services run in-process (the queue
is the in-process dispatcher); what is under test is the PIM's data, not the worker.
"""

from __future__ import annotations

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
from app.sync.pim_events.formats import parse_cloudevents
from tests.pim.reference_data import RunningPim, running_pim
from tests.pim.test_akeneo import make_source
from tests.sync.conftest import Harness

CATALOG = "generated:60"
CHANNELS = ["at_storefront", "b2b_portal", "de_storefront", "uk_marketplace"]
RENAMED = "item_code"  # `ean` is taken in the generated catalog: a free code


@pytest.fixture
def settings(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A delta reads exactly what changed (the generated products were updated long ago).
    monkeypatch.setenv("PIMSYNC_DELTA_OVERLAP_SECONDS", "0")
    monkeypatch.setenv("PIMSYNC_EVENT_COALESCE_SECONDS", "0")
    monkeypatch.delenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", raising=False)
    reset_settings_cache()
    yield
    reset_settings_cache()


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
    return [orjson.loads(blob) for blob in pim.catalog._blobs.values()]


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
    return {"skus": sorted(identifier_of(p, "sku") for p in products)}


# --- a renamed identifier attribute (deviation 3) ---------------------------------------------


def test_renamed_identifier_full_delta_and_webhooks(settings: None, pristine: Any) -> None:
    with stack() as (plain, _):
        plain.full()
        expected = statuses(plain)
    with session_scope() as s:  # start again from an empty database
        s.execute(PimProduct.__table__.delete())
        from app.channels.models import ChannelProduct

        s.execute(ChannelProduct.__table__.delete())
    with stack(BadData(identifier_attribute=RENAMED)) as (harness, pim):
        run_id = harness.full()
        parent = harness.runs(run_id)[None]
        assert (parent.status, parent.read, parent.rejected) == ("completed", 60, 0)
        assert mirror_count() == 60
        # the same catalog under another identifier attribute name: the same outcome
        assert statuses(harness) == expected
        assert sorted({sku for _, sku in expected}) == pristine["skus"]

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
    settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIMSYNC_IDENTIFIER_ATTRIBUTE", "sku")  # the catalog calls it item_code
    reset_settings_cache()
    with stack(BadData(identifier_attribute=RENAMED)) as (harness, _):
        run_id = harness.full()
        runs = harness.runs(run_id)
        parent = runs[None]
        assert parent.status == "failed"
        assert parent.read == parent.rejected == 60
        assert "every product read (60) was rejected" in (parent.error or "")
        assert "PIMSYNC_IDENTIFIER_ATTRIBUTE" in (parent.error or "")
        for channel in CHANNELS:
            assert runs[channel].status == "failed"
        assert harness.rows() == {}  # nothing published, nothing disabled


def test_completeness_command_finds_the_renamed_identifier_or_exits_non_zero(
    settings: None, monkeypatch: pytest.MonkeyPatch
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
        assert "every product" in wrong.output and "(60) was rejected" in wrong.output
        assert "PIMSYNC_IDENTIFIER_ATTRIBUTE" in wrong.output
