"""Listing a channel's pages: on PostgreSQL the answer is written by the database (no document
composed in Python), so it must say what ``document.compose`` says of the same rows; a few
listings run at once, the others queue, then are told to come back (503 busy)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.config import reset_settings_cache
from app.db import read_connection, session_scope
from app.pages import document
from app.pages.repository import Projection, apply_projections, list_pages
from app.web.admission import Gate
from app.web.security import Refused
from tests.web.support import READ, READ_TOKEN, Web, problem

CH = "de_storefront"
ON = f"/channels/{CH}/products"


def put(domain: str, sku: str, version: int, payload: Any, **catalog: Any) -> None:
    row = Projection(CH, sku, version, payload, **catalog)
    with session_scope() as s:
        apply_projections(s, domain, [row], datetime.now(UTC))


def listed(web: Web, **params: Any) -> dict[str, Any]:
    resp = web.client.get(ON, params={"limit": 200, **params}, headers=READ)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(resp.content)
    return body


def composed() -> list[dict[str, Any]]:
    """What Python's document.compose says of the channel's listed rows (via the ORM's
    engine and JSON decoding, the path listings took before)."""
    with read_connection() as conn:
        rows = list_pages(conn, CH, None, 200)
    return [json.loads(orjson.dumps(document.compose(r))) for r in rows]


AWKWARD = {
    "title": {"de_DE": 'Größe "XL" \\ </script> \u2028 ☃ 🎉', "en_US": "ctl \u0001\t\n"},
    "numbers": [0, -1, 0.1, 999.0, 1e-7, 12345678901234567, -0.0],
    "nested": {"a": [{"b": None, "c": True, "d": False}], "": "empty key"},
    "empty": {},
    "list": [],
}


def test_the_listing_says_what_compose_says_of_the_same_rows(web: Web) -> None:
    put("catalog", "A-awkward", 3, AWKWARD, enabled=True, status="published")
    put("pricing", "A-awkward", 7, {"amount": "999.00", "currency": "EUR"})
    put("inventory", "A-awkward", 2, {"quantity": 5})
    put("media", "A-awkward", 1, {"images": ["a.jpg"]})
    put("catalog", "B-disabled", 1, {"sku": "B"}, enabled=False, status="disabled")
    put("catalog", "C-no-status", 4, {"sku": "C"}, enabled=True, status=None)
    put("inventory", "C-no-status", 1, {"quantity": 0})
    put("catalog", 'D-ünicode-sku "q"', 1, {"sku": "D"}, enabled=True, status="published")
    put("catalog", "E-empty-doc", 1, {}, enabled=True, status="published")
    put("pricing", "Z-no-catalog", 1, {"amount": "1.00"})  # not listed: no catalog
    with session_scope() as s:  # a write on a whole second: isoformat has no fraction then
        s.execute(
            text("UPDATE product_page SET updated_at = '2026-01-02 03:04:05+00' WHERE sku = :s"),
            {"s": "E-empty-doc"},
        )
    expected = composed()
    assert [d["sku"] for d in expected] == [
        "A-awkward",
        "B-disabled",
        "C-no-status",
        'D-ünicode-sku "q"',
        "E-empty-doc",
    ]
    assert expected[-1]["updated_at"] == "2026-01-02T03:04:05+00:00"
    body = listed(web)
    assert body == {"items": expected, "next": None}
    # and key for key in compose's order, the timestamps spelled the same
    for got, want in zip(body["items"], expected, strict=True):
        assert list(got) == list(want)
        assert got["updated_at"] == want["updated_at"]


@pytest.mark.parametrize(
    ("inventory", "purchasable"),
    [
        ({"quantity": 5}, True),
        ({"quantity": 0.5}, True),
        ({"quantity": 0}, False),
        ({"quantity": -2}, False),
        ({"quantity": 0.0}, False),
        ({"quantity": False}, False),
        ({"quantity": True}, True),
        ({"quantity": "0"}, True),  # not a number: the quantity says nothing
        ({"quantity": None}, True),
        ({"note": "plenty"}, True),
        ({}, False),
        ({"quantity": 9, "in_stock": False}, False),
        ({"quantity": 9, "available": False}, False),
        ({"quantity": 9, "in_stock": True, "available": True}, True),
    ],
)
def test_purchasable_in_the_listing(web: Web, inventory: Any, purchasable: bool) -> None:
    put("catalog", "SKU-1", 1, {"sku": "SKU-1"}, enabled=True, status="published")
    put("pricing", "SKU-1", 1, {"amount": "1.00", "currency": "EUR"})
    put("inventory", "SKU-1", 1, inventory)
    [item] = listed(web)["items"]
    assert item["purchasable"] is purchasable
    assert item["inventory"] == inventory


def test_purchasable_needs_enabled_priced_and_stocked(web: Web) -> None:
    put("catalog", "NO-PRICE", 1, {}, enabled=True, status="published")
    put("inventory", "NO-PRICE", 1, {"quantity": 5})
    put("catalog", "NO-STOCK", 1, {}, enabled=True, status="published")
    put("pricing", "NO-STOCK", 1, {"amount": "1.00"})
    put("catalog", "OFF", 1, {}, enabled=False, status="disabled")
    put("pricing", "OFF", 1, {"amount": "1.00"})
    put("inventory", "OFF", 1, {"quantity": 5})
    items = listed(web)["items"]
    assert [(i["sku"], i["purchasable"]) for i in items] == [
        ("NO-PRICE", False),
        ("NO-STOCK", False),
        ("OFF", False),
    ]
    assert [i["readiness"] for i in items] == [
        {"catalog": True, "pricing": False, "inventory": True, "media": False},
        {"catalog": True, "pricing": True, "inventory": False, "media": False},
        {"catalog": True, "pricing": True, "inventory": True, "media": False},
    ]


def test_the_cursor_of_a_full_page_is_its_last_sku_and_pages_do_not_overlap(web: Web) -> None:
    skus = [f"p-{i:03d}" for i in range(7)]
    for sku in reversed(skus):
        put("catalog", sku, 1, {"sku": sku}, enabled=True, status="published")
    first = listed(web, limit=3)
    assert ([i["sku"] for i in first["items"]], first["next"]) == (skus[:3], "p-002")
    second = listed(web, limit=3, after=first["next"])
    assert ([i["sku"] for i in second["items"]], second["next"]) == (skus[3:6], "p-005")
    third = listed(web, limit=3, after=second["next"])
    assert third == {"items": [json.loads(orjson.dumps(composed()[6]))], "next": None}
    assert listed(web, after="p-006") == {"items": [], "next": None}
    assert listed(web, after="p-0025")["items"][0]["sku"] == "p-003"  # any text is a cursor


def test_a_busy_listing_is_a_503_problem_with_retry_after(web: Web) -> None:
    put("catalog", "SKU-1", 1, {}, enabled=True, status="published")
    gate: Gate = web.client.app.state.list_gate
    gate.queue, gate.wait = 0, 0.2
    taken = [web.client.portal.call(gate.slots.acquire) for _ in range(gate.slots.value)]
    try:
        resp = web.client.get(ON, headers=READ)
        body = problem(resp, 503)
        assert body["reason"] == "busy" and "queue full" in body["detail"]
        assert resp.headers["Retry-After"] == "1"
        gate.queue = 5  # room to wait, but no slot comes free in time
        body = problem(web.client.get(ON, headers=READ), 503)
        assert "waited too long" in body["detail"]
        assert gate.waiting == 0
    finally:
        for _ in taken:
            gate.slots.release()
    assert listed(web)["items"][0]["sku"] == "SKU-1"


def test_the_gate_admits_its_slots_queues_then_refuses() -> None:
    async def main() -> list[str]:
        gate = Gate("listings", slots=2, queue=1, wait=5)
        order: list[str] = []
        release = anyio.Event()

        async def hold(name: str) -> None:
            try:
                async with gate.admit():
                    order.append(f"in {name}")
                    await release.wait()
            except Refused as exc:
                order.append(f"refused {name} {exc.status_code}")

        async with anyio.create_task_group() as tg:
            for name in ("a", "b", "c", "d"):  # two hold, one waits, one is refused
                tg.start_soon(hold, name)
                await anyio.sleep(0.01)
            assert gate.waiting == 1
            release.set()
        assert gate.slots.value == 2 and gate.waiting == 0
        return order

    assert anyio.run(main) == ["in a", "in b", "refused d 503", "in c"]


def test_on_sqlite_the_listing_is_composed_in_python(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.web.app import create_app
    from tests.web.support import RecordingDispatcher, RecordingSender

    monkeypatch.setenv("PIMSYNC_READ_TOKEN", READ_TOKEN)
    reset_settings_cache()
    put("catalog", "S-1", 1, {"title": "Ö"}, enabled=True, status="published")
    put("catalog", "S-2", 1, {"title": "two"}, enabled=False, status="disabled")
    with TestClient(create_app(RecordingDispatcher(), RecordingSender())) as client:
        assert client.app.state.page_reader is None
        body = client.get(ON, params={"limit": 1}, headers=READ).json()
        assert [i["sku"] for i in body["items"]] == ["S-1"] and body["next"] == "S-1"
        assert body["items"][0]["catalog"] == {"title": "Ö"}
        rest = client.get(ON, params={"limit": 1, "after": "S-1"}, headers=READ).json()
        assert [i["sku"] for i in rest["items"]] == ["S-2"] and rest["items"][0]["enabled"] is False
