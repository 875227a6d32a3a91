"""Run progress: the PIM's announced total (``with_count``), done / total on the runs as pages
are read and published, the ETA, the metrics and the CLI's plain lines."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.sync.models import COMPLETED, FULL, RUNNING, SyncRun
from app.sync.progress import duration_text, family_progress, run_progress
from tests.pim.reference_data import catalog, product, running_pim
from tests.pim.test_akeneo import make_source

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _run(**fields: Any) -> SyncRun:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "kind": FULL,
        "channel": None,
        "status": RUNNING,
        "started_at": T0,
        "read": 0,
        "synced": 0,
        "unchanged": 0,
        "skipped_incomplete": 0,
        "filtered": 0,
        "disabled": 0,
        "failed": 0,
        "planned_units": 0,
        "planning_done": False,
        "details": None,
    }
    base.update(fields)
    return SyncRun(**base)


def test_a_read_counts_against_the_announced_total_with_an_eta() -> None:
    read = _run(read=250, details={"total": 1000, "progress_at": T0.isoformat()})
    p = run_progress(read, T0 + timedelta(seconds=50))
    # 250 in 50 s: 5 per second, 750 left: 150 s
    assert (p.done, p.total, p.eta_seconds) == (250, 1000, 150.0)
    assert p.text() == "250/1,000 products read (25 %), ETA 2m 30s"


def test_a_channel_run_uses_the_read_total_until_its_plan_is_complete() -> None:
    read = _run(read=400, details={"total": 1000})
    child = _run(channel="de", synced=100, unchanged=100, planned_units=400, parent_id=read.id)
    p = run_progress(child, T0 + timedelta(seconds=20), read)
    assert (p.done, p.total) == (200, 1000)
    assert p.eta_seconds == pytest.approx(80.0)  # 10 units/s, 800 left
    child.planning_done, child.planned_units = True, 990
    assert run_progress(child, T0 + timedelta(seconds=20), read).total == 990


def test_without_a_total_progress_is_a_count_and_no_eta() -> None:
    p = run_progress(_run(read=42), T0 + timedelta(seconds=5))
    assert (p.total, p.eta_seconds, p.text()) == (None, None, "42 products read")


def test_a_finished_run_has_no_eta() -> None:
    done = _run(status=COMPLETED, read=10, details={"total": 12})
    p = run_progress(done, T0 + timedelta(seconds=5))
    assert (p.done, p.total, p.eta_seconds) == (10, 10, None)


def test_family_progress_sums_the_channels() -> None:
    read = _run(read=100, details={"total": 100})
    kids = [
        _run(channel=c, synced=n, planned_units=100, planning_done=True, parent_id=read.id)
        for c, n in (("a", 30), ("b", 50))
    ]
    p = family_progress(read, kids, T0 + timedelta(seconds=8))
    assert (p.done, p.total) == (80, 200)
    assert p.eta_seconds == pytest.approx(12.0)  # 10 units/s, 120 left


def test_duration_text() -> None:
    assert [duration_text(s) for s in (0, 59.4, 61, 3599, 7260)] == [
        "0s",
        "59s",
        "1m 01s",
        "59m 59s",
        "2h 01m",
    ]


# --- the PIM announces its count -----------------------------------------------------------


def test_akeneo_reads_items_count_on_the_first_page_only() -> None:
    items = [product(f"OLD-{i:03d}") for i in range(30)] + [
        product(f"NEW-{i:03d}", updated="2025-06-01T10:00:00+00:00") for i in range(7)
    ]
    with running_pim(catalog(0, items)) as pim:
        source = make_source(pim.url)
        try:
            pages = list(source.iter_pages(page_size=10))
            assert [p.total for p in pages] == [37, None, None, None]
            since = datetime(2025, 1, 1, tzinfo=UTC)
            newer = list(source.iter_pages(since, page_size=5))
            assert [p.total for p in newer] == [7, None]
            # a resumed read does not ask again
            resumed = list(source.iter_pages(page_size=10, resume=pages[0].next_cursor))
            assert [p.total for p in resumed] == [None, None, None]
        finally:
            source.close()


def test_reference_server_counts_like_akeneo_when_asked() -> None:
    with running_pim(catalog(12)) as pim:
        headers = {"Authorization": f"Bearer {_token(pim)}"}
        query = {"pagination_type": "search_after", "limit": "5", "with_count": "true"}
        first = pim.admin.get("/api/rest/v1/products-uuid", params=query, headers=headers).json()
        assert first["items_count"] == 12
        # as Akeneo, the next link repeats the parameters (with_count too): the client drops it
        nxt = first["_links"]["next"]["href"]
        assert "with_count=true" in nxt
        second = pim.admin.get(nxt, headers=headers).json()
        assert second["items_count"] == 12
        plain = pim.admin.get(
            "/api/rest/v1/products-uuid",
            params={"pagination_type": "search_after", "limit": "5"},
            headers=headers,
        ).json()
        assert "items_count" not in plain


def test_akeneo_client_asks_for_the_count_once_per_read() -> None:
    from app.pim.akeneo import _without_count

    href = "http://pim/api/rest/v1/products-uuid?pagination_type=search_after&limit=5&with_count=true&search_after=abc"
    assert _without_count(href) == (
        "http://pim/api/rest/v1/products-uuid?pagination_type=search_after&limit=5&search_after=abc"
    )
    assert _without_count("http://pim/x?limit=5") == "http://pim/x?limit=5"


def _token(pim: Any) -> str:
    from tests.pim.reference_data import CLIENT

    response = pim.admin.post(
        "/api/oauth/v1/token",
        json={
            "grant_type": "password",
            "username": CLIENT["username"],
            "password": CLIENT["password"],
        },
        auth=(CLIENT["client_id"], CLIENT["secret"]),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


# --- on the runs, while they run ------------------------------------------------------------


def test_a_full_sync_records_total_and_done_as_it_reads(harness: Any, monkeypatch: Any) -> None:
    from app.config import reset_settings_cache
    from app.db import session_scope
    from app.sync import repository as repo
    from app.web.metrics import StateCollector

    monkeypatch.setenv("PIMSYNC_AKENEO_PAGE_SIZE", "20")
    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "20")
    reset_settings_cache()
    harness.reload_settings()
    seen: list[dict[str, Any]] = []

    def look(n: int) -> None:
        if n != 3:  # the third page is read: two groups of 20 are committed, or being so
            return
        # the reader writes group N while the next page is fetched (app.sync.ingest's read
        # ahead): wait for the second group's commit, which nothing here holds up
        deadline = time.monotonic() + 10
        while True:
            with session_scope() as s:
                (read,) = [r for r in repo.running_runs(s) if r.channel is None]
                if read.read >= 40 or time.monotonic() > deadline:
                    break
            time.sleep(0.02)
        with session_scope() as s:
            (read,) = [r for r in repo.running_runs(s) if r.channel is None]
            p = run_progress(read, datetime.now(UTC))
            seen.append({"done": p.done, "total": p.total})
        samples = {
            (m.name, sample.labels["channel"]): sample.value
            for m in StateCollector().collect()
            if m.name.startswith("pimsync_run_progress")
            for sample in m.samples
        }
        seen.append(samples)

    harness.source.on_page = look
    run_id = harness.full()
    assert seen[0] == {"done": 40, "total": 60}
    assert seen[1][("pimsync_run_progress_done", "pim")] == 40
    assert seen[1][("pimsync_run_progress_total", "pim")] == 60
    # the channel runs, planned for 40 so far, measure against the 60 announced
    assert seen[1][("pimsync_run_progress_total", "de_storefront")] == 60
    assert seen[1][("pimsync_run_progress_updated_timestamp_seconds", "pim")] > 0
    runs = harness.runs(run_id)
    assert runs[None].details["total"] == 60
    with session_scope() as s:
        read = repo.get_run(s, run_id)
        children = repo.child_runs(s, run_id)
        p = family_progress(read, children, datetime.now(UTC))
    assert (p.done, p.total, p.eta_seconds) == (240, 240, None)


def test_wait_without_a_terminal_prints_plain_progress_lines(harness: Any, capsys: Any) -> None:
    from app.cli.runs import wait_for

    run_id = harness.full()
    capsys.readouterr()
    ended = wait_for(run_id, 4, timeout=30)
    assert len(ended) == 5
    out = capsys.readouterr().out
    assert f"{str(run_id)[:8]} full: completed: 240/240 units (100 %)" in out
