"""Product page reads: the storefront's one read, and paging through a channel."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.db import read_connection
from app.logging import get_logger
from app.pages import document
from app.pages import repository as pages_repo
from app.web.security import Refused

router = APIRouter(tags=["product pages"])
log = get_logger("pimsync.web.pages")


def _read_sync(channel: str, sku: str) -> Any:
    with read_connection() as conn:
        return pages_repo.get_page(conn, channel, sku)


@router.get("/channels/{channel}/products/{sku}")
async def read_page(channel: str, sku: str, request: Request) -> Response:
    """One primary-key lookup of one row; 304 when the client's ETag is current.

    On PostgreSQL the row comes from the async page reader (no thread, no ORM); on SQLite
    (the embedded demo) from the engine, in the threadpool."""
    reader = request.app.state.page_reader
    try:
        if reader is not None:
            page = await reader.get(channel, sku)
        else:
            page = await run_in_threadpool(_read_sync, channel, sku)
    except psycopg.OperationalError as exc:
        log.warning("page_read_failed", channel=channel, sku=sku, error=str(exc)[:200])
        return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)
    if page is None or page.catalog_version == 0:
        return JSONResponse(
            {"detail": f"no product {sku!r} in channel {channel!r}"}, status_code=404
        )
    tag = document.etag(page)
    presented = {
        t.strip().removeprefix("W/")
        for t in request.headers.get("if-none-match", "").split(",")
        if t.strip()
    }
    if tag in presented or "*" in presented:
        return Response(status_code=304, headers={"ETag": tag})
    return Response(
        orjson.dumps(document.compose(page)),
        media_type="application/json",
        headers={"ETag": tag, "Cache-Control": "no-cache"},
    )


@router.get("/channels/{channel}/products")
def list_pages(
    channel: str,
    after: str | None = Query(None, max_length=255, description="Cursor: the last SKU seen."),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """A channel's product pages in SKU order, ``limit`` at a time; follow ``next``."""
    if len(channel) > 64:
        raise Refused(400, "bad_request", "channel codes are at most 64 characters")
    with read_connection() as conn:
        pages = pages_repo.list_pages(conn, channel, after, limit)
        items = [document.compose(p) for p in pages]
    next_cursor = items[-1]["sku"] if len(items) == limit else None
    return {"items": items, "next": next_cursor}
