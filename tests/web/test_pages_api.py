"""Product page reads on real PostgreSQL: the composed document, ETags, one query per read,
and paging through a channel."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import pq
from sqlalchemy import text

from app.config import get_settings
from app.db import session_scope, utcnow
from app.pages.reader import PageReader
from app.pages.repository import Projection, apply_projections
from tests.web.support import READ, Web, problem

CH = "de_storefront"
CATALOG = {"title": {"de_DE": "Laptop 14"}, "brand": "Acme"}
PRICE = {"amount": "999.00", "currency": "EUR"}
STOCK = {"quantity": 5}


def project(domain: str, *rows: Projection) -> list[tuple[str, str]]:
    with session_scope() as s:
        return apply_projections(s, domain, list(rows), utcnow())


def catalog(sku: str, version: int = 3, enabled: bool = True, channel: str = CH) -> Projection:
    status = "published" if enabled else "disabled"
    return Projection(channel, sku, version, {**CATALOG, "sku": sku}, enabled, status)


def full_page(sku: str = "SKU-1") -> None:
    project("catalog", catalog(sku))
    project("pricing", Projection(CH, sku, 7, PRICE))
    project("inventory", Projection(CH, sku, 2, STOCK))


def test_a_page_is_the_composed_document_with_an_etag(web: Web) -> None:
    full_page()
    resp = web.client.get(f"/channels/{CH}/products/SKU-1")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    updated_at = datetime.fromisoformat(doc.pop("updated_at"))
    assert updated_at.tzinfo is not None
    assert doc == {
        "sku": "SKU-1",
        "channel": CH,
        "catalog": {**CATALOG, "sku": "SKU-1"},
        "pricing": PRICE,
        "inventory": STOCK,
        "media": None,
        "readiness": {"catalog": True, "pricing": True, "inventory": True, "media": False},
        "purchasable": True,
        "enabled": True,
        "status": "published",
        "versions": {"catalog": 3, "pricing": 7, "inventory": 2, "media": 0},
    }
    tag = resp.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"') and len(tag) > 2
    assert resp.headers["Cache-Control"] == "no-cache"


def test_a_current_etag_is_304_without_a_body(web: Web) -> None:
    full_page()
    tag = web.client.get(f"/channels/{CH}/products/SKU-1").headers["ETag"]
    for presented in (tag, f"W/{tag}"):
        resp = web.client.get(
            f"/channels/{CH}/products/SKU-1", headers={"If-None-Match": presented}
        )
        assert resp.status_code == 304, resp.text
        assert resp.content == b""
        assert resp.headers["ETag"] == tag
    stale = web.client.get(f"/channels/{CH}/products/SKU-1", headers={"If-None-Match": '"0.0.0.0"'})
    assert stale.status_code == 200 and stale.json()["sku"] == "SKU-1"


def test_a_newer_projection_changes_the_etag_an_older_one_does_not(web: Web) -> None:
    full_page()
    url = f"/channels/{CH}/products/SKU-1"
    first = web.client.get(url).headers["ETag"]
    assert project("pricing", Projection(CH, "SKU-1", 6, {"amount": "1.00"})) == []  # older
    assert web.client.get(url, headers={"If-None-Match": first}).status_code == 304
    assert project("pricing", Projection(CH, "SKU-1", 8, {"amount": "899.00"})) == [(CH, "SKU-1")]
    resp = web.client.get(url, headers={"If-None-Match": first})
    assert resp.status_code == 200, resp.text
    assert resp.headers["ETag"] != first
    assert resp.json()["pricing"] == {"amount": "899.00"}
    assert resp.json()["versions"]["pricing"] == 8
    second = resp.headers["ETag"]
    assert web.client.get(url, headers={"If-None-Match": second}).status_code == 304


def test_a_repaired_document_changes_the_etag(web: Web) -> None:
    """Reconciliation rewrites a corrupted document at the *same* version: a client holding
    the corrupted copy must not be told (304) that it is current."""
    full_page()
    url = f"/channels/{CH}/products/SKU-1"
    with session_scope() as s:  # a corrupted pricing document, same version
        s.execute(
            text("UPDATE product_page SET pricing = '{\"amount\": \"0.01\"}' WHERE sku = 'SKU-1'")
        )
    corrupted = web.client.get(url)
    assert corrupted.json()["pricing"] == {"amount": "0.01"}
    with session_scope() as s:
        written = apply_projections(
            s, "pricing", [Projection(CH, "SKU-1", 7, PRICE)], utcnow(), repair=True
        )
    assert written == [(CH, "SKU-1")]
    resp = web.client.get(url, headers={"If-None-Match": corrupted.headers["ETag"]})
    assert resp.status_code == 200, "the repaired document was answered 304"
    assert resp.json()["pricing"] == PRICE
    assert resp.headers["ETag"] != corrupted.headers["ETag"]


def test_unknown_sku_channel_or_a_page_without_catalog_is_404(web: Web) -> None:
    full_page()
    project("pricing", Projection(CH, "PRICE-ONLY", 1, PRICE))
    project("inventory", Projection(CH, "PRICE-ONLY", 1, STOCK))
    for url in (
        f"/channels/{CH}/products/NOPE",
        f"/channels/{CH}/products/PRICE-ONLY",
        "/channels/at_storefront/products/SKU-1",
    ):
        resp = web.client.get(url)
        assert resp.status_code == 404, (url, resp.text)
        assert "no product" in resp.json()["detail"]
        assert "ETag" not in resp.headers
    assert web.client.get(f"/channels/{CH}/products/SKU-1").status_code == 200


def test_a_disabled_product_is_not_there_for_a_storefront(web: Web) -> None:
    full_page()
    project("catalog", catalog("SKU-1", version=4, enabled=False))
    body = problem(web.client.get(f"/channels/{CH}/products/SKU-1"), 404)
    assert body["reason"] == "not_found"


def test_a_channel_with_tombstones_serves_a_disabled_products_last_document(
    web: Web, tmp_path: Any
) -> None:
    import yaml

    from app.config import SAMPLE_DIR

    data = yaml.safe_load((SAMPLE_DIR / "channels.yaml").read_text())
    data["channels"][CH]["tombstones"] = True
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump(data))
    web.setenv(channels_file=str(path))
    full_page()
    project("catalog", catalog("SKU-1", version=4, enabled=False))
    resp = web.client.get(f"/channels/{CH}/products/SKU-1")
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert (doc["enabled"], doc["status"], doc["purchasable"]) == (False, "disabled", False)
    assert doc["readiness"] == {"catalog": True, "pricing": True, "inventory": True, "media": False}


def test_listing_needs_a_token_and_a_single_read_does_not(web: Web) -> None:
    project("catalog", catalog("SKU-1"))
    assert problem(web.client.get(f"/channels/{CH}/products"), 401)["reason"] == "unauthenticated"
    wrong = {"Authorization": "Bearer nope"}
    assert web.client.get(f"/channels/{CH}/products", headers=wrong).status_code == 401
    assert web.client.get(f"/channels/{CH}/products", headers=READ).status_code == 200
    assert web.client.get(f"/channels/{CH}/products/SKU-1").status_code == 200


def test_before_a_price_the_page_says_so_and_is_not_purchasable(web: Web) -> None:
    project("catalog", catalog("NEW"))
    project("inventory", Projection(CH, "NEW", 1, STOCK))
    doc = web.client.get(f"/channels/{CH}/products/NEW").json()
    assert doc["readiness"] == {
        "catalog": True,
        "pricing": False,
        "inventory": True,
        "media": False,
    }
    assert doc["pricing"] is None and doc["purchasable"] is False
    assert doc["versions"] == {"catalog": 3, "pricing": 0, "inventory": 1, "media": 0}
    project("pricing", Projection(CH, "NEW", 1, PRICE))
    doc = web.client.get(f"/channels/{CH}/products/NEW").json()
    assert doc["readiness"]["pricing"] is True and doc["purchasable"] is True


def test_out_of_stock_is_not_purchasable(web: Web) -> None:
    full_page()
    project("inventory", Projection(CH, "SKU-1", 3, {"quantity": 0}))
    assert web.client.get(f"/channels/{CH}/products/SKU-1").json()["purchasable"] is False
    project("inventory", Projection(CH, "SKU-1", 4, {"quantity": 9, "in_stock": False}))
    assert web.client.get(f"/channels/{CH}/products/SKU-1").json()["purchasable"] is False
    project("inventory", Projection(CH, "SKU-1", 5, {"quantity": 9}))
    assert web.client.get(f"/channels/{CH}/products/SKU-1").json()["purchasable"] is True


class WireCounter:
    """Statements the page reader sends, counted on the wire: libpq's trace of the protocol
    messages of every connection of a fresh reader (one Query or Execute per statement)."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.files: list[Path] = []
        self.conns: list[Any] = []
        self.reader = PageReader(get_settings().database_url, 2, configure=self._trace)

    async def _trace(self, conn: Any) -> None:
        path = Path(tempfile.mkstemp(prefix="pimsync-trace-")[1])
        self.files.append(path)
        self.conns.append(conn)
        with path.open("wb") as f:  # libpq keeps its own stream on a duplicate of the fd
            conn.pgconn.trace(os.dup(f.fileno()))
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def __enter__(self) -> WireCounter:
        self.previous = self.web.client.app.state.page_reader
        self.web.client.app.state.page_reader = self.reader
        return self

    def __exit__(self, *exc: Any) -> None:
        self.web.client.app.state.page_reader = self.previous
        self.web.client.portal.call(self.reader.close)
        for path in self.files:
            path.unlink(missing_ok=True)

    def messages(self) -> list[str]:
        """The frontend's messages so far (flushes every connection's trace)."""
        lines = []
        for conn in self.conns:
            conn.pgconn.untrace()  # flushes; tracing restarts below
        for path, conn in zip(self.files, self.conns, strict=True):
            lines += [x for x in path.read_text().splitlines() if x.startswith("F\t")]
            path.write_text("")
            conn.pgconn.trace(os.open(path, os.O_WRONLY | os.O_APPEND))
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        return lines

    def statements(self) -> int:
        return sum(1 for x in self.messages() if x.split("\t")[2] in ("Query", "Execute"))


def test_a_read_is_exactly_one_statement(web: Web) -> None:
    full_page()
    url = f"/channels/{CH}/products/SKU-1"
    with WireCounter(web) as wire:
        tag = web.client.get(url).headers["ETag"]  # warm: the pool's connection made
        first = wire.messages()
        assert any("product_page" in x for x in first), first
        for _ in range(6):  # past psycopg's prepare threshold, too
            assert web.client.get(url).status_code == 200
            assert wire.statements() == 1
        assert web.client.get(url, headers={"If-None-Match": tag}).status_code == 304
        assert wire.statements() == 1
        assert web.client.get(f"/channels/{CH}/products/NOPE").status_code == 404
        assert wire.statements() == 1


def test_the_wire_counter_sees_every_statement(web: Web) -> None:
    """Control for the test above: statements sent on a traced connection all count."""
    full_page()
    with WireCounter(web) as wire:

        async def three() -> None:
            async with wire.reader.pool.connection() as conn:
                for _ in range(3):
                    await conn.execute("SELECT 1")

        assert web.client.get(f"/channels/{CH}/products/SKU-1").status_code == 200
        wire.statements()
        web.client.portal.call(three)
        assert wire.statements() == 3


def test_a_read_survives_a_dropped_connection(web: Web) -> None:
    """A connection the server closed (restart, failover) costs no failed read: the pool
    drops it and the read goes again on a new one; no ping on the way."""
    full_page()
    url = f"/channels/{CH}/products/SKU-1"
    assert web.client.get(url).status_code == 200
    with session_scope() as s:
        killed = s.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = '' "
                "AND pid <> pg_backend_pid() AND query LIKE '%FROM product_page%'"
            )
        ).scalar_one()
    assert killed >= 1
    resp = web.client.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.json()["sku"] == "SKU-1"


def test_listing_pages_through_a_channel_in_sku_order(web: Web) -> None:
    skus = [f"sku-{i:02d}" for i in (1, 2, 3, 4, 5)]
    project("catalog", *(catalog(s) for s in reversed(skus)))
    project("pricing", Projection(CH, "sku-03a", 1, PRICE), Projection(CH, "sku-99", 1, PRICE))
    project("catalog", catalog("sku-00", channel="at_storefront"))
    seen: list[str] = []
    cursors: list[str | None] = []
    after: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if after is not None:
            params["after"] = after
        resp = web.client.get(f"/channels/{CH}/products", params=params, headers=READ)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        page = [item["sku"] for item in body["items"]]
        assert all(item["channel"] == CH for item in body["items"])
        assert all(item["readiness"]["catalog"] for item in body["items"])
        seen += page
        cursors.append(body["next"])
        if body["next"] is None:
            break
        assert body["next"] == page[-1]
        after = body["next"]
    assert seen == skus  # SKU order, none twice, pricing-only and other channels left out
    assert cursors == ["sku-02", "sku-04", None]


def test_listing_an_exact_multiple_ends_with_an_empty_page(web: Web) -> None:
    project("catalog", *(catalog(f"sku-{i}") for i in range(4)))
    first = web.client.get(f"/channels/{CH}/products", params={"limit": 2}, headers=READ).json()
    second = web.client.get(
        f"/channels/{CH}/products", params={"limit": 2, "after": first["next"]}, headers=READ
    ).json()
    assert [i["sku"] for i in second["items"]] == ["sku-2", "sku-3"]
    last = web.client.get(
        f"/channels/{CH}/products", params={"limit": 2, "after": second["next"]}, headers=READ
    ).json()
    assert last == {"items": [], "next": None}


def test_listing_refuses_bad_parameters(web: Web) -> None:
    for params, field in (({"limit": 0}, "limit"), ({"limit": 201}, "limit")):
        resp = web.client.get(f"/channels/{CH}/products", params=params, headers=READ)
        assert problem(resp, 422)["field"] == field, (params, resp.text)
    resp = web.client.get(f"/channels/{CH}/products", params={"after": "x" * 256}, headers=READ)
    assert problem(resp, 400) == {
        "detail": "after is longer than 255 characters",
        "reason": "invalid",
        "field": "after",
    }
    resp = web.client.get(f"/channels/{'c' * 65}/products", headers=READ)
    assert problem(resp, 400)["field"] == "channel"
    empty = web.client.get("/channels/nowhere/products", headers=READ).json()
    assert empty == {"items": [], "next": None}
