"""A PIM on a bad day, through a real worker, Redis and PostgreSQL: it asks for quiet with a
long ``Retry-After`` (seconds or an HTTP date), answers 408, fails in 5xx bursts, or refuses
for good (400, 403, 404, 422 with Akeneo's error body). Reads wait exactly as long as the PIM
asked and not a millisecond less (the reference PIM logs every request's arrival), the run
says that it waits and until when (``pimsync runs show``, metrics), ``--wait`` answers with
the run's real end, and each scenario ends with the invariant of the fault suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.dev.bad_data import BadData
from app.pim.models import PimProduct
from app.web.metrics import exposition
from tests.e2e_support import ROOT, Worker, apply_env, restore_env, wait_until
from tests.faults import invariant
from tests.faults.stack import CHANNELS, FaultStack, open_stack
from tests.sync.test_akeneo_bad_data import expected_statuses, identifier_of, pim_products_of

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.worker]

# A Retry-After up to this is slept in the worker; longer ones defer the read (the stack's
# setting, short so the deferral tests are quick; the default is 30 s).
SLEEP_MAX = 5


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    tmp = tmp_path_factory.mktemp("throttle")
    with open_stack(
        "throttle",
        redis_url,
        tmp,
        PIMSYNC_AKENEO_MAX_RETRIES="10",
        PIMSYNC_AKENEO_RETRY_AFTER_SLEEP_MAX_SECONDS=str(SLEEP_MAX),
    ) as s:
        s.reset(redis_url)
        yield s


@pytest.fixture(scope="module")
def worker(stack: FaultStack) -> Iterator[Worker]:
    with stack.worker("throttle") as w:
        yield w


@pytest.fixture
def fresh(stack: FaultStack, worker: Worker, redis_url: str) -> FaultStack:
    stack.reset()  # the worker keeps running: the queues stay
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("pimsync:pim:*"):  # the last test's PIM health and quiet
        client.delete(key)
    client.close()
    stack.admin.post("/_admin/stats/reset").raise_for_status()
    return stack


def requests_log(stack: FaultStack) -> dict[str, Any]:
    return dict(stack.admin.get("/_admin/requests").json())


def assert_quiet_kept(stack: FaultStack, asked: float) -> None:
    """After each answer that asked for ``asked`` seconds of quiet, the next request came
    no sooner (computed from the arrival log, not from the server's own bookkeeping)."""
    log = requests_log(stack)
    entries = sorted(log["entries"], key=lambda e: e["at"])
    throttled = [e for e in entries if e["status"] == 429]
    assert throttled, "the PIM never throttled"
    for answer in throttled:
        later = [e["at"] for e in entries if e["at"] > answer["at"]]
        assert later, "nothing was read after the PIM allowed it"
        assert min(later) >= answer["at"] + asked, (answer, min(later))
    assert log["early"] == []


def cli(stack: FaultStack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env, "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def metric(name: str, **labels: str) -> float | None:
    text = exposition(get_settings()).decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def dashboard() -> str:
    """The dashboard's HTML, as an operator gets it (the web process never calls the PIM)."""
    from app.web.app import create_app

    saved = apply_env({"PIMSYNC_API_TOKEN": "dash-t0ken"})
    try:
        with TestClient(create_app()) as client:
            page = client.get("/dashboard", headers={"Authorization": "Bearer dash-t0ken"})
            assert page.status_code == 200, page.text
            return page.text
    finally:
        restore_env(saved)


# The done-when: the 120 s Retry-After against a PIM that also has every bad day in
# its data (as `pimsync reference-pim --data generated:60 --identifier-attribute item_code
# --without-identifier 2 --without-family 3` serves it).
RENAMED = "item_code"
BAD = BadData(identifier_attribute=RENAMED, without_identifier=2, without_family=3)


def mirror_count() -> int:
    with session_scope() as s:
        return int(s.execute(select(func.count()).select_from(PimProduct)).scalar_one())


def outcome_counts(
    statuses: dict[tuple[str, str], str], identifierless: set[str], familyless_skus: set[str]
) -> dict[str, Counter[str]]:
    """Per channel: published, skipped `no identifier` (an identifier-less product that is
    filtered), incomplete `no family` (a family-less product that is incomplete)."""
    counts: dict[str, Counter[str]] = {c: Counter() for c in CHANNELS}
    for (channel, key), status in statuses.items():
        if status == "published":
            counts[channel]["published"] += 1
        if key in identifierless and status == "filtered":
            counts[channel]["no identifier"] += 1
        if key in familyless_skus and status == "incomplete":
            counts[channel]["no family"] += 1
    return counts


def found_counts() -> tuple[dict[tuple[str, str], str], dict[str, Counter[str]]]:
    """The rows' statuses and, per channel, the rows that say published, filtered by `no
    identifier` and incomplete for `no family` (read from each row's own why)."""
    rows = invariant.Snapshot.read().rows
    counts: dict[str, Counter[str]] = {c: Counter() for c in CHANNELS}
    for (channel, _key), row in rows.items():
        detail = row.detail or {}
        if row.status == "published":
            counts[channel]["published"] += 1
        if row.status == "filtered" and detail == {"filter": "no identifier"}:
            counts[channel]["no identifier"] += 1
        if row.status == "incomplete" and detail.get("reason") == "no family":
            counts[channel]["no family"] += 1
    return {key: row.status for key, row in rows.items()}, counts


def test_full_sync_and_delta_wait_out_a_120_s_retry_after(fresh: FaultStack) -> None:
    """The issue's done-when: 120 s literally, for a full sync and for a delta, against a
    reference PIM with a renamed identifier, identifier-less and family-less products; exact
    counts and no request before the PIM allowed it."""
    # what the unspoiled catalog gives (a clean full sync on the second database), changed by
    # the rules, as tests/sync/test_akeneo_bad_data.py computes it
    plain_table, _ = invariant.clean_sync(fresh.base, fresh.ref_db)
    plain = {key: status for key, (status, _doc, _enabled) in plain_table.items()}
    fresh.serve(BAD)
    served = pim_products_of(fresh.catalog)
    sku_of = {p["uuid"]: identifier_of(p, "sku") for p in pim_products_of(fresh.pristine)}
    identifierless = {p["uuid"] for p in served if identifier_of(p, RENAMED) is None}
    familyless = {p["uuid"] for p in served if p.get("family") is None}
    assert (len(served), len(identifierless), len(familyless)) == (60, 2, 3)
    assert not identifierless & familyless
    assert all(identifier_of(p, "sku") is None for p in served)  # renamed for every product
    expected = expected_statuses(plain, sku_of, identifierless, familyless)
    assert len(expected) == 60 * len(CHANNELS)
    familyless_skus = {sku_of[uid] for uid in familyless}
    want = outcome_counts(expected, identifierless, familyless_skus)
    # the rules bite in this catalog: they are not compared with zero everywhere
    assert sum(c["no identifier"] for c in want.values()) > 0
    assert sum(c["no family"] for c in want.values()) > 0
    want_status = {c: Counter(s for (ch, _k), s in expected.items() if ch == c) for c in CHANNELS}

    fresh.admin.post("/_admin/stats/reset").raise_for_status()
    fresh.faults(fail_next=[429], retry_after=120)
    started = time.time()
    run_id = fresh.full()

    # while it waits: the run says so, with until when; the metrics say the PIM is not up
    def waiting() -> str | None:
        shown = cli(fresh, "runs", "show", str(run_id))
        return shown.stdout if "waiting for PIM: 429 since" in shown.stdout else None

    shown = wait_until(waiting, 60, interval=1, what="`runs show` saying the run waits")
    assert re.search(r"next try \d\d:\d\d:\d\d", shown), shown
    assert "running" in shown
    listed = cli(fresh, "runs").stdout
    assert "waiting for PIM: 429" in listed, listed
    assert metric("pimsync_pim_up", pim=fresh.base) == 0.0
    backoff = metric("pimsync_pim_backoff_seconds", pim=fresh.base)
    assert backoff is not None and 60 < backoff <= 121
    assert metric("pimsync_pim_requests_total", pim=fresh.base, status="429") == 1.0
    page = dashboard()
    assert '<span data-pim="failing">PIM <span class="badge failing">throttling</span>' in page
    assert page.count('data-badge="pim-throttling">PIM throttling<') == len(CHANNELS)
    assert "waiting for PIM: 429 since" in page

    by = fresh.wait(run_id, timeout=300)
    assert time.time() - started >= 120
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 60, 0)
    assert "waiting" not in (by[None].details or {})  # cleared once the PIM answered
    assert mirror_count() == 60  # every product mirrored, the two without identifier by uuid
    for channel in CHANNELS:
        run = by[channel]
        assert (run.status, run.failed, run.processed) == ("completed", 0, 60), run.error
        assert (run.synced, run.filtered, run.skipped_incomplete) == (
            want_status[channel]["published"],
            want_status[channel]["filtered"],
            want_status[channel]["incomplete"],
        ), channel
    statuses, counts = found_counts()
    assert statuses == expected
    assert counts == want
    assert_quiet_kept(fresh, 120)
    assert metric("pimsync_pim_up", pim=fresh.base) == 1.0
    assert metric("pimsync_pim_backoff_seconds", pim=fresh.base) == 0.0
    page = dashboard()
    assert 'data-pim="ok"' in page and "waiting for PIM" not in page
    assert "PIM throttling<" not in page
    shown_after = cli(fresh, "runs", "show", str(run_id)).stdout
    assert "completed" in shown_after and "waiting for PIM" not in shown_after

    # the delta: one identifier-less and two family-less products edited in the PIM (by uuid:
    # two of them have no identifier to name them by); it throttles the first call for 120 s
    edited = sorted(identifierless)[:1] + sorted(familyless)[:2]
    for uid in edited:
        fresh.admin.patch(
            f"/_admin/products-uuid/{uid}",
            json={"values": {"name": [{"locale": "de_DE", "scope": None, "data": "Neu"}]}},
        ).raise_for_status()
    fresh.admin.post("/_admin/stats/reset").raise_for_status()
    fresh.faults(fail_next=[429], retry_after=120)
    started = time.time()
    delta = fresh.delta()
    wait_until(lambda: fresh.runs(delta)[None].status != "running", 300, what="the delta read")
    assert time.time() - started >= 120
    by = fresh.wait(delta, timeout=120)
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 3, 0)
    assert mirror_count() == 60
    for channel in CHANNELS:
        # the channels catch up from the mirror on their own markers (the first delta after
        # a full sync re-evaluates more than the changed products: not this test's topic)
        run = by[channel]
        assert (run.status, run.failed) == ("completed", 0), run.error
        assert run.processed == run.planned_units >= len(edited)
    statuses, counts = found_counts()
    assert statuses == expected  # a name edit changes no outcome
    assert counts == want
    assert_quiet_kept(fresh, 120)
    # the invariant, against a clean full sync of the spoiled catalog
    outcome = fresh.check()
    for channel in CHANNELS:
        assert "failed" not in outcome.count(channel)
        assert outcome.count(channel) == want_status[channel]


def test_http_date_retry_after_is_honoured(fresh: FaultStack) -> None:
    # 12 s asked as a date (whole seconds, sent one second late at most): past the 5 s the
    # worker would sleep, so the read is deferred to that instant
    fresh.faults(fail_next=[429, 429], retry_after=12, retry_after_date=True)
    by = fresh.wait(fresh.full(), timeout=120)
    assert (by[None].status, by[None].read) == ("completed", 60)
    assert by[None].details and by[None].details.get("deferrals") == 2
    assert_quiet_kept(fresh, 12)
    for channel in CHANNELS:
        assert (by[channel].status, by[channel].processed) == ("completed", 60)
    fresh.check()


def test_408_and_5xx_bursts_are_retried(fresh: FaultStack) -> None:
    # two timeouts, then a burst of three 503s every 4 calls: every page read comes after one
    fresh.faults(fail_next=[408, 408], burst_length=3, burst_every=4, burst_status=503)
    by = fresh.wait(fresh.full(), timeout=120)
    stats = fresh.stats()["by_status"]
    assert stats["408"] == 2 and stats["503"] >= 3
    assert (by[None].status, by[None].read, by[None].rejected) == ("completed", 60, 0)
    outcome = fresh.check()
    for channel in CHANNELS:
        assert (by[channel].status, by[channel].processed) == ("completed", 60)
        assert "failed" not in outcome.count(channel)


@pytest.mark.parametrize(
    ("status", "recorded"),
    [
        (400, "HTTP 400: Invalid json message received"),
        (403, "HTTP 403: You are not allowed to access the web API."),
        (404, "HTTP 404: Resource not found."),
        (
            422,
            'HTTP 422: Validation failed. errors: [{"property":"values","message":"The \\"sku\\" '
            'attribute is not an identifier."},{"property":"search","message":"Filter on '
            'property \\"updated\\" is invalid."}]',
        ),
    ],
)
def test_permanent_answers_fail_the_read_at_once_with_akeneo_words(
    fresh: FaultStack, status: int, recorded: str
) -> None:
    fresh.faults(fail_next=[status])
    started = time.monotonic()
    result = cli(fresh, "sync", "delta", "--wait", "--timeout", "60")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert time.monotonic() - started < 45  # not "still running" at the timeout
    assert "PIM read failed" in result.stderr and recorded in result.stderr.replace("\n", "")
    assert fresh.stats()["by_status"][str(status)] == 1  # asked once: never retried
    run_id = re.search(r"delta sync (\S+) enqueued", result.stdout)
    assert run_id is not None
    by = fresh.runs(uuid.UUID(run_id.group(1)))
    assert by[None].status == "failed" and recorded in (by[None].error or "")


def test_wait_exits_0_when_done_and_2_while_the_pim_keeps_it_waiting(fresh: FaultStack) -> None:
    done = cli(fresh, "sync", "full", "--wait", "--timeout", "120")
    assert done.returncode == 0, (done.stdout, done.stderr)

    fresh.faults(fail_next=[429], retry_after=30)
    waiting = cli(fresh, "sync", "delta", "--wait", "--timeout", "6")
    assert waiting.returncode == 2, (waiting.stdout, waiting.stderr)
    assert "still running after 6 s" in waiting.stderr
    run_id = re.search(r"delta sync (\S+) enqueued", waiting.stdout)
    assert run_id is not None
    # it goes on, and ends when the PIM allows it
    by = fresh.wait(uuid.UUID(run_id.group(1)), timeout=120)
    assert by[None].status == "completed"
    assert_quiet_kept(fresh, 30)
