"""The dashboard's progress feed and explain page over HTTP (no browser): authenticated as the
dashboard is, bad input refused with a problem document, the answers read from the database."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime

import pytest

from app.db import session_scope
from app.pim.throttle import RedisGate, connection_key
from app.sync import repository as repo
from app.sync.models import FULL
from app.web.charts import bar_chart, line_chart, nice_top, tick_label
from tests.web.support import Web, problem

OPERATOR = ("operator", "s3cret-dash")


def _login(web: Web) -> None:
    web.setenv(dashboard_password=OPERATOR[1])


def test_progress_and_explain_need_the_dashboard_credentials(web: Web) -> None:
    _login(web)
    for path in ("/dashboard/progress.json", "/dashboard/explain?sku=X"):
        problem(web.client.get(path), 401)
        problem(web.client.get(path, auth=("operator", "wrong")), 401)


def test_progress_feed_reports_running_runs_with_done_total_and_eta(web: Web) -> None:
    _login(web)
    started = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with session_scope() as s:
        read = repo.create_run(s, FULL, None, started)
        read.read, read.details = 300, {"total": 1200}
        child = repo.create_run(s, FULL, "de_storefront", started, parent_id=read.id)
        child.synced, child.planned_units = 150, 300
        done = repo.create_run(s, FULL, "uk_marketplace", started, status="completed")
        done_id = done.id
    body = web.client.get("/dashboard/progress.json", auth=OPERATOR).json()
    runs = {r["channel"]: r for r in body["runs"]}
    assert set(runs) == {"PIM read", "de_storefront"}  # the completed one is not running
    assert str(done_id) not in {r["id"] for r in body["runs"]}
    pim = runs["PIM read"]["progress"]
    assert (pim["done"], pim["total"], pim["percent"]) == (300, 1200, 25.0)
    assert pim["eta_seconds"] is not None and pim["eta_seconds"] > 0
    # the channel run measures against the read's total while its plan is incomplete
    de = runs["de_storefront"]["progress"]
    assert (de["done"], de["total"]) == (150, 1200)
    assert runs["de_storefront"]["text"].startswith("150/1,200 units (12 %)")
    page = web.client.get("/dashboard", auth=OPERATOR).text
    assert 'id="progress"' in page and "300/1,200 products read (25 %)" in page
    assert 'src="dashboard/dashboard.js"' in page
    script = web.client.get("/dashboard/dashboard.js")
    assert script.status_code == 200 and "fetch(url" in script.text
    assert script.headers["content-type"].startswith("text/javascript")


def test_explain_page_refuses_bad_input_with_a_problem(web: Web) -> None:
    _login(web)
    assert "sku" in str(problem(web.client.get("/dashboard/explain", auth=OPERATOR), 422))
    bad = web.client.get("/dashboard/explain", params={"sku": "A\x00B"}, auth=OPERATOR)
    assert "NUL" in problem(bad, 400)["detail"]
    too_long = web.client.get("/dashboard/explain", params={"sku": "x" * 256}, auth=OPERATOR)
    problem(too_long, 422)
    unknown = web.client.get(
        "/dashboard/explain", params={"sku": "X", "channel": "nope"}, auth=OPERATOR
    )
    assert "de_storefront" in problem(unknown, 400)["detail"]  # the configured ones listed


def test_explain_page_says_an_unknown_sku_is_unknown(web: Web) -> None:
    _login(web)
    page = web.client.get("/dashboard/explain", params={"sku": "NO-SUCH"}, auth=OPERATOR)
    assert page.status_code == 200
    assert 'id="unknown"' in page.text and "NO-SUCH" in page.text


# The channels of the bundled configuration (app/sample/channels.yaml), written out.
CHANNELS = ("at_storefront", "b2b_portal", "de_storefront", "uk_marketplace")
PIM_URL = "http://pim.dash.test:8081"


def _cards(page: str) -> dict[str, str]:
    """Each channel card's HTML, by channel code."""
    parts = page.split('<section class="card" data-channel="')[1:]
    return {part.split('"', 1)[0]: part.split("</section>", 1)[0] for part in parts}


def _pim_badges(card: str) -> list[tuple[str, str]]:
    """(css classes, text) of the PIM badges in a channel card."""
    badge = r'<span class="badge (pim-[\w-]+)" data-badge="pim-[\w-]+">([^<]*)</span>'
    return re.findall(badge, card)


@pytest.mark.redis
def test_channel_badges_say_whether_the_pim_is_down_or_throttling(web: Web, redis_url: str) -> None:
    """Every channel card carries the PIM's state as the workers recorded it in Redis: none
    while it answers, `PIM down` when it does not answer, `PIM throttling` while it asks for
    quiet; the same word as the header's badge, each with its own colour class."""
    _login(web)
    client_id = f"dash-{uuid.uuid4().hex[:8]}"  # a connection of this test's own
    web.setenv(pim_source=PIM_URL, redis_url=redis_url, akeneo_client_id=client_id)
    gate = RedisGate(redis_url, connection_key(PIM_URL, client_id), PIM_URL)
    try:
        # no worker has called the PIM yet: no PIM badge at all
        page = web.client.get("/dashboard", auth=OPERATOR).text
        assert "data-pim=" not in page
        assert set(_cards(page)) == set(CHANNELS)
        assert all(_pim_badges(card) == [] for card in _cards(page).values())

        gate.record("200", ok=True)  # it answers
        page = web.client.get("/dashboard", auth=OPERATOR).text
        assert '<span data-pim="ok">PIM <span class="badge ok">ok</span>' in page
        assert all(_pim_badges(card) == [] for card in _cards(page).values())
        assert "PIM down" not in page and "PIM throttling" not in page

        gate.record("ConnectError", ok=False)  # it stops answering
        page = web.client.get("/dashboard", auth=OPERATOR).text
        assert '<span data-pim="failing">PIM <span class="badge failing">down</span>' in page
        cards = _cards(page)
        assert set(cards) == set(CHANNELS)
        for code in CHANNELS:
            assert _pim_badges(cards[code]) == [("pim-down", "PIM down")], code
        assert "PIM throttling" not in page and "unreachable" not in page

        gate.record("429", ok=False)  # it answers again, asking for quiet for 120 s
        gate.hold(time.time() + 120, "429")
        page = web.client.get("/dashboard", auth=OPERATOR).text
        assert '<span data-pim="failing">PIM <span class="badge failing">throttling</span>' in page
        assert "waiting for PIM: 429 since" in page
        cards = _cards(page)
        for code in CHANNELS:
            assert _pim_badges(cards[code]) == [("pim-throttling", "PIM throttling")], code
        assert "PIM down" not in page
        # the two states are told apart by colour too
        css = page.split("<style>", 1)[1].split("</style>", 1)[0]
        down = re.search(r"\.pim-down \{ background: ([^;]+);", css)
        throttling = re.search(r"\.pim-throttling \{ background: ([^;]+);", css)
        assert down and throttling and down.group(1) != throttling.group(1)
    finally:
        gate.close()


# --- the charts, as drawn ------------------------------------------------------------------


def test_axis_tops_are_round_and_ticks_never_scientific() -> None:
    assert nice_top(1234) == (2000, 500)
    assert nice_top(0.7) == (0.8, 0.2)
    assert nice_top(0) == (1.0, 0.25)
    assert [tick_label(v) for v in (0, 2.5, 750, 1500, 12500, 3_500_000)] == [
        "0",
        "2.5",
        "750",
        "1,500",
        "12.5k",
        "3.5M",
    ]
    svg = bar_chart([("full 12-04 10:00", 48213.0, 12.0)], "de: units per run")
    # 48,213 at most: the axis goes to 80k in steps of 20k, written out
    assert not re.search(r"\de[+-]?\d", svg)
    assert [t for t in re.findall(r'class="tick">([^<]*)<', svg)] == [
        "0",
        "20k",
        "40k",
        "60k",
        "80k",
    ]
    assert 'class="axis-label y-label"' in svg and ">units<" in svg
    assert ">runs, oldest to newest<" in svg
    assert '<ul class="legend"><li>' in svg and "published</li>" in svg


def test_line_chart_legend_names_every_series() -> None:
    html = line_chart({"de_storefront": [1.0, 2.0], "uk_marketplace": [3.0]}, "seconds", "d")
    assert html.count("<li>") == 2 and "uk_marketplace</li>" in html
    assert ">seconds<" in html
