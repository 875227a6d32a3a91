"""Dead-letter replay fetches the products from the PIM again by default (the usual fix is
made in the PIM); ``--from-mirror`` publishes pimsync's copy as it is. Against the reference
PIM over HTTP (its admin endpoints edit a product, as the catalog team would in Akeneo)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import app
from app.db import session_scope
from app.pim.models import PimProduct
from app.sync import operations
from app.sync import repository as repo
from app.sync.models import DeadLetter
from tests.e2e_support import admin, reference_pim
from tests.pim.test_akeneo import make_source
from tests.sync.conftest import Harness

UV = [{"locale": None, "scope": None, "data": "ultraviolet"}]


@pytest.fixture
def pim(pg_db: str) -> Iterator[dict[str, Any]]:
    with reference_pim("generated:60") as (base, _catalog), admin(base) as client:
        source = make_source(base)
        harness = Harness(source)  # type: ignore[arg-type]  (an Akeneo source, over HTTP)
        harness.full()
        rows = harness.rows("de_storefront")
        products = {sku: source.get(sku) for _, sku in rows}
        victim = sorted(
            sku
            for (_, sku), row in rows.items()
            if row.status == "published" and (products[sku] or {}).get("family") == "laptops"
        )[0]
        before = products[victim]["values"]["color"][0]["data"]  # type: ignore[index]
        # the fix: a colour the contracts map (navy is 9, pink 11 in storefront_de@1's table),
        # other than the one published before, so the replay has something to write
        fixed, color_id = ("pink", 11) if before == "navy" else ("navy", 9)
        good = [{"locale": None, "scope": None, "data": fixed}]
        # the catalog team sets a colour no contract maps; the next delta dead-letters it
        client.patch(f"/_admin/products/{victim}", json={"values": {"color": UV}})
        harness.delta()
        yield {
            "harness": harness,
            "client": client,
            "victim": victim,
            "good": good,
            "color_id": color_id,
        }
        source.close()


def _open_letters(sku: str) -> dict[str, str]:
    with session_scope() as s:
        return {dl.channel: dl.error for dl in repo.open_dead_letters_of(s, sku)}


def _mirror_color(sku: str) -> Any:
    with session_scope() as s:
        return s.get(PimProduct, sku).raw["values"]["color"]  # type: ignore[union-attr]


def test_replay_refetches_the_fixed_product_from_the_pim(pim: dict[str, Any]) -> None:
    harness, victim = pim["harness"], pim["victim"]
    letters = _open_letters(victim)
    assert set(letters) == {"de_storefront", "at_storefront"}
    assert "ultraviolet" in letters["de_storefront"]
    # fixed in the PIM, no delta since: the mirror still holds the broken copy
    pim["client"].patch(f"/_admin/products/{victim}", json={"values": {"color": pim["good"]}})
    assert _mirror_color(victim) == UV

    # from the mirror: the same broken copy is published again, and fails again
    with session_scope() as s:
        result = operations.replay_dead_letters(s, harness.ctx, channel="de_storefront")
    assert result["replayed"] == 1
    harness.drain()
    assert "ultraviolet" in _open_letters(victim)["de_storefront"]

    # by default (the CLI's): fetched from the PIM, then published
    with session_scope() as s:
        result = operations.replay_dead_letters(
            s, harness.ctx, channel="de_storefront", from_pim=True
        )
    assert (result["replayed"], result["units"]) == (1, [("de_storefront", victim)])
    assert _mirror_color(victim) == pim["good"]
    harness.drain()
    row = harness.rows("de_storefront")[("de_storefront", victim)]
    assert (row.status, row.enabled) == ("published", True)
    assert row.sync_run_id == result["runs"][0].id
    assert row.doc is not None and row.doc["color_id"] == pim["color_id"]
    assert set(_open_letters(victim)) == {"at_storefront"}  # only what was replayed


def test_a_product_gone_from_the_pim_is_disabled_by_the_replay(pim: dict[str, Any]) -> None:
    harness, victim = pim["harness"], pim["victim"]
    assert pim["client"].delete(f"/_admin/products/{victim}").status_code == 204
    with session_scope() as s:
        operations.replay_dead_letters(s, harness.ctx, channel="de_storefront", from_pim=True)
    harness.drain()
    row = harness.rows("de_storefront")[("de_storefront", victim)]
    assert (row.status, row.enabled) == ("removed", False)
    assert "de_storefront" not in _open_letters(victim)


def test_the_command_replays_from_the_pim_and_waits_for_each_outcome(
    pim: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.cli.dead_letters as command

    harness, victim = pim["harness"], pim["victim"]
    monkeypatch.setattr(command, "sync_context", lambda: harness.ctx)
    real_wait = command.wait_for

    def worker_then_wait(run_id: Any, expected: int, timeout: float) -> Any:
        harness.drain()  # the in-process worker runs what the command enqueued
        return real_wait(run_id, expected, timeout)

    monkeypatch.setattr(command, "wait_for", worker_then_wait)
    runner = CliRunner()
    # still broken in the PIM: it fails again, and says so (exit 1)
    broken = runner.invoke(app, ["dead-letters", "replay", "--channel", "at_storefront", "--wait"])
    assert broken.exit_code == 1, broken.output
    assert "from the PIM's current copy" in broken.output
    assert "failed" in broken.output and "ultraviolet" in broken.output
    pim["client"].patch(f"/_admin/products/{victim}", json={"values": {"color": pim["good"]}})
    fixed = runner.invoke(app, ["dead-letters", "replay", "--all", "--wait"])
    assert fixed.exit_code == 0, fixed.output
    lines = [line for line in fixed.output.splitlines() if victim in line]
    assert len(lines) == 2 and all("published" in line for line in lines), fixed.output
    with session_scope() as s:
        still_open = s.execute(select(DeadLetter).where(DeadLetter.status == "open")).all()
    assert still_open == []


def test_a_pim_that_cannot_be_read_replays_nothing(
    pim: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.cli.dead_letters as command

    harness = pim["harness"]
    # every call of the PIM answers 500, past the client's retries
    pim["client"].post("/_admin/faults", json={"rate_500": 1.0}).raise_for_status()
    monkeypatch.setattr(command, "sync_context", lambda: harness.ctx)
    result = CliRunner().invoke(app, ["dead-letters", "replay", "--all"])
    assert result.exit_code == 1
    assert "nothing was replayed" in result.stderr and "--from-mirror" in result.stderr
    with session_scope() as s:
        assert {dl.status for dl in s.execute(select(DeadLetter)).scalars()} == {"open"}
