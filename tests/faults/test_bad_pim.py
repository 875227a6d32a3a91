"""A PIM that misbehaves during a full sync, through a real worker, Redis and PostgreSQL: it
answers bursts of 429 and 500 and cuts pages short (truncated JSON), or it serves values
PostgreSQL cannot store (a NUL in a text value, a NUL in an identifier). Each scenario ends
with the invariant: the catalog is what a clean full sync of the same data produces, every
(sku, channel) accounted for once, every counter its rows."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from tests.e2e_support import Worker
from tests.faults.stack import CHANNELS, FaultStack, open_stack

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.worker]

# In the generated catalog (generated:60): published in three channels, filtered out of
# b2b_portal (checked below, on the clean sync of the pristine data).
VICTIM = "GEN-0000001"
BAD_SKU = "BAD\x00SKU"
BAD_UUID = "0b0e5a9e-1111-4222-8333-444455556666"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    tmp = tmp_path_factory.mktemp("badpim")
    with open_stack("badpim", redis_url, tmp, PIMSYNC_AKENEO_MAX_RETRIES="10") as s:
        s.reset(redis_url)
        yield s


@pytest.fixture(scope="module")
def worker(stack: FaultStack) -> Iterator[Worker]:
    with stack.worker("badpim") as w:
        yield w


@pytest.fixture
def fresh(stack: FaultStack, worker: Worker) -> FaultStack:
    stack.reset()  # the worker keeps running: the queues stay
    return stack


def test_429_500_bursts_and_truncated_pages_change_nothing(fresh: FaultStack):
    fresh.admin.post("/_admin/stats/reset").raise_for_status()
    # the PIM's next five answers are errors, then two list pages come truncated (a 200 whose
    # JSON is cut short): each retried, with backoff, by the reader
    fresh.faults(fail_next=[429, 500, 429, 500, 500], retry_after=0, malformed_pages=2)
    by = fresh.wait(fresh.full())
    faults = fresh.admin.get("/_admin/faults").json()
    stats = fresh.stats()
    assert (faults["fail_next"], faults["malformed_pages"]) == ([], 0)  # all of them served
    assert (stats["by_status"]["429"], stats["by_status"]["500"]) == (2, 3)
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 60, 0)
    outcome = fresh.check()
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.failed, run.processed) == ("completed", 0, 60), run.error
        assert "failed" not in outcome.count(channel)


def test_a_nul_in_a_value_and_in_an_identifier_fail_those_products_alone(fresh: FaultStack):
    pristine = fresh.product(VICTIM)
    names = [{**e, "data": "Laptop\u0000 Pro"} for e in pristine["values"]["name"]]
    fresh.patch(VICTIM, values={"name": names})
    bad = copy.deepcopy(fresh.product(fresh.pim_skus()[5]))
    bad.update(uuid=BAD_UUID, identifier=BAD_SKU)
    fresh.catalog.put(BAD_SKU, bad, bad["updated"])
    assert len(fresh.pim_skus()) == 61

    by = fresh.wait(fresh.full())
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 61, 1)
    outcome = fresh.check()
    letters = {(d.channel, d.sku): d for d in outcome.snapshot.open_letters()}
    refused = letters.pop(("*", BAD_UUID))
    assert (refused.kind, refused.permanent, refused.run_id) == ("ingest", True, by[None].id)
    assert refused.error == (
        f"product '{BAD_UUID}': field 'identifier': `BAD\\x00SKU` contains a NUL character"
    )
    published_in = {"at_storefront", "de_storefront", "uk_marketplace"}
    assert set(letters) == {(c, VICTIM) for c in published_in}
    for (channel, _sku), d in letters.items():
        assert (d.kind, d.error_type, d.permanent) == ("publish", "UnstorableText", True)
        assert d.run_id == by[channel].id
        # the first locale the channel maps (the sample's contracts all read de_DE's name)
        assert d.error == "value of `name` in de_DE contains a NUL character"
    for channel in CHANNELS:
        run = by[channel]
        assert run.status == "completed", run.error
        assert run.processed == run.planned_units == 61
        count = outcome.count(channel)
        assert run.failed == count["failed"] == (2 if channel in published_in else 1)
        assert outcome.by_unit[(channel, BAD_SKU)] == "failed"
        assert sum(count.values()) == 61
    assert outcome.by_unit[("b2b_portal", VICTIM)] == "filtered"
