"""Product page reads: the storefront's one read, and paging through a channel."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import psycopg
from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from app.config import get_settings
from app.db import read_connection
from app.logging import get_logger
from app.pages import document
from app.pages import repository as pages_repo
from app.sync.runtime import REGISTRY
from app.textcheck import text_problem
from app.web import problems
from app.web.security import Refused, bearer

router = APIRouter(tags=["product pages"])
log = get_logger("pimsync.web.pages")


# The keys' column widths (channel_product, product_page).
MAX_CHANNEL = 64
MAX_SKU = 255


def checked(field: str, value: str | None, limit: int) -> None:
    """Refuse (400, naming the field) a key no row can hold: too long, or text PostgreSQL
    cannot take (a NUL, an invalid surrogate). Such a key would otherwise reach the database
    as an error, not as "no such product"."""
    if value is None:
        return
    if len(value) > limit:
        raise Refused(400, "invalid", f"{field} is longer than {limit} characters", field=field)
    if problem := text_problem(value):
        raise Refused(400, "invalid", f"{field} {problem}", field=field)


def _read_sync(channel: str, sku: str) -> Any:
    with read_connection() as conn:
        return pages_repo.get_page(conn, channel, sku)


@router.get("/channels/{channel}/products/{sku}")
async def read_page(channel: str, sku: str, request: Request) -> Response:
    """One primary-key lookup of one row; 304 when the client's ETag is current.

    On PostgreSQL the row comes from the async page reader (no thread, no ORM); on SQLite
    (the embedded demo) from the engine, in the threadpool."""
    checked("channel", channel, MAX_CHANNEL)
    checked("sku", sku, MAX_SKU)
    reader = request.app.state.page_reader
    try:
        if reader is not None:
            page = await reader.get(channel, sku)
        else:
            page = await to_thread.run_sync(
                _read_sync, channel, sku, limiter=getattr(request.app.state, "read_limiter", None)
            )
    except psycopg.OperationalError as exc:
        log.warning("page_read_failed", channel=channel, sku=sku, error=str(exc)[:200])
        return problems.unavailable("database")
    if (
        page is None
        or page.catalog_version == 0
        or not (page.catalog_enabled or _tombstones(channel))
    ):
        # a product the channel does not sell (disabled, removed, orphaned) is not there for a
        # storefront, unless the channel asks for its last document (tombstones)
        return problems.problem(
            404, f"no product {sku!r} in channel {channel!r}", reason="not_found"
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


def _tombstones(channel: str) -> bool:
    configured = REGISTRY.channels(get_settings()).get(channel)
    return bool(configured is not None and configured.tombstones)


# A listing page holds this many documents at most (a page of 1,000 was ~19 MiB of memory).
MAX_LIST = 200
# A listing waits this long at most for its turn (app/web/admission.py), then 503 busy: a
# turn takes milliseconds, so only a flood of listings waits that long.
LIST_WAIT_SECONDS = 5.0


def _require_reader(request: Request) -> None:
    """Listing a channel's pages is for integrations, not storefronts: a bearer token (the
    read token, or the operator's API token)."""
    settings = get_settings()
    tokens = [
        t
        for t in (settings.read_token.get_secret_value(), settings.api_token.get_secret_value())
        if t
    ]
    if not tokens:
        raise Refused(503, "not_configured", "set PIMSYNC_READ_TOKEN to list product pages")
    presented = (bearer(request) or "").encode()
    ok = False
    for token in tokens:  # every one compared: timing says nothing about which matched
        ok |= bool(presented) and hmac.compare_digest(presented, token.encode())
    if not ok:
        raise Refused(401, "unauthenticated", "listing needs Authorization: Bearer <token>")


def _list_sync(channel: str, after: str | None, limit: int) -> dict[str, Any]:
    """A listing page on SQLite (the embedded demo): composed in Python, in a thread."""
    with read_connection() as conn:
        pages = pages_repo.list_pages(conn, channel, after, limit)
        items = [document.compose(p) for p in pages]
    next_cursor = items[-1]["sku"] if len(items) == limit else None
    return {"items": items, "next": next_cursor}


class ListingPage(BaseModel):
    """What a listing answers (documented; the body is written by the database)."""

    items: list[dict[str, Any]] = Field(description="The pages' documents, in SKU order.")
    next: str | None = Field(description="The cursor of the next page (null: no more).")


@router.get(
    "/channels/{channel}/products",
    response_model=None,
    responses={200: {"model": ListingPage}},
)
async def list_pages(
    request: Request,
    channel: str,
    after: str | None = Query(None, description="Cursor: the last SKU seen."),
    limit: int = Query(100, ge=1, le=MAX_LIST),
) -> Response:
    """A channel's product pages in SKU order, ``limit`` at a time; follow ``next``. Needs a
    bearer token (PIMSYNC_READ_TOKEN or the API token).

    On PostgreSQL the whole answer is one statement's text, passed on as bytes: no document
    is built in this process, so a crowd of listings leaves the interpreter (and its lock)
    to the webhook intake. A few listings run at once (PIMSYNC_WEB_LIST_CONCURRENCY); the
    rest queue briefly, then get 503 busy with Retry-After."""
    _require_reader(request)
    checked("channel", channel, MAX_CHANNEL)
    checked("after", after, MAX_SKU)
    reader = request.app.state.page_reader
    if reader is None:
        result = await to_thread.run_sync(
            _list_sync,
            channel,
            after,
            limit,
            limiter=getattr(request.app.state, "read_limiter", None),
        )
        return Response(orjson.dumps(result), media_type="application/json")
    async with request.app.state.list_gate.admit():
        try:
            body = await reader.list_page(channel, after, limit)
        except psycopg.OperationalError as exc:
            log.warning("page_list_failed", channel=channel, error=str(exc)[:200])
            return problems.unavailable("database")
    return Response(body, media_type="application/json")
