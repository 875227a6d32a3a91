"""The storefront's read, on its own small async connection pool (PostgreSQL).

A page read is the hottest path pimsync serves, and one primary-key lookup in the database
(~0.1 ms). Through the ORM's engine, a threadpool hop and a liveness ping per checkout, it
cost about 2 ms of CPU; here it is one statement on a psycopg ``AsyncConnectionPool``
(autocommit, no ping), awaited on the event loop. A connection the server dropped (restart,
failover) fails its statement, is discarded by the pool, and the read is tried once more on
another connection: no ping needed to stay correct.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

COLUMNS = (
    "channel",
    "sku",
    "catalog",
    "pricing",
    "inventory",
    "media",
    "catalog_version",
    "pricing_version",
    "inventory_version",
    "media_version",
    "catalog_enabled",
    "catalog_status",
    "updated_at",
)
READ_ONE = f"SELECT {', '.join(COLUMNS)} FROM product_page WHERE channel = %s AND sku = %s"

# The document of ``document.compose`` as JSON text, written by PostgreSQL from one row. The
# domains' jsonb goes out as the server prints it (the same values; spacing and number
# spelling as stored, e.g. 999.00), ``updated_at`` as Python's isoformat of the UTC time.
# ``purchasable`` is ``document.purchasable``: enabled, priced, stocked and in stock (no
# inventory, an empty one, in_stock or available false, a quantity <= 0 or false are not).
_UTC = "(updated_at AT TIME ZONE 'UTC')"
DOCUMENT = f"""'{{"sku":' || to_json(sku)::text
  || ',"channel":' || to_json(channel)::text
  || ',"catalog":' || coalesce(catalog::text, 'null')
  || ',"pricing":' || coalesce(pricing::text, 'null')
  || ',"inventory":' || coalesce(inventory::text, 'null')
  || ',"media":' || coalesce(media::text, 'null')
  || ',"readiness":{{"catalog":' || (catalog_version > 0)::text
  || ',"pricing":' || (pricing_version > 0)::text
  || ',"inventory":' || (inventory_version > 0)::text
  || ',"media":' || (media_version > 0)::text
  || '}},"purchasable":' || ((
      catalog_enabled AND pricing_version > 0 AND inventory_version > 0
      AND jsonb_typeof(inventory) = 'object' AND inventory <> '{{}}'::jsonb
      AND inventory -> 'in_stock' IS DISTINCT FROM 'false'::jsonb
      AND inventory -> 'available' IS DISTINCT FROM 'false'::jsonb
      AND CASE jsonb_typeof(inventory -> 'quantity')
          WHEN 'number' THEN (inventory ->> 'quantity')::numeric > 0
          WHEN 'boolean' THEN inventory -> 'quantity' = 'true'::jsonb
          ELSE true END
    ) IS TRUE)::text
  || ',"enabled":' || catalog_enabled::text
  || ',"status":' || coalesce(to_json(catalog_status)::text, 'null')
  || ',"versions":{{"catalog":' || catalog_version::text
  || ',"pricing":' || pricing_version::text
  || ',"inventory":' || inventory_version::text
  || ',"media":' || media_version::text
  || '}},"updated_at":"' || to_char({_UTC}, 'YYYY-MM-DD"T"HH24:MI:SS')
  || CASE to_char({_UTC}, 'US') WHEN '000000' THEN '' ELSE to_char({_UTC}, '.US') END
  || '+00:00"}}'"""


def _listing(after: bool) -> str:
    """A listing page as the bytes of its JSON answer, ``{"items": [...], "next": ...}``, in
    one statement: the page's rows (the primary key's order), each one's document, and the
    envelope. ``next`` is the last SKU of a full page (there may be more), else null."""
    since = "AND sku > %(after)s " if after else ""
    return (
        f"WITH page AS (SELECT sku, {DOCUMENT} AS doc FROM product_page "
        f"WHERE channel = %(channel)s AND catalog_version > 0 {since}"
        "ORDER BY sku LIMIT %(limit)s) "
        """SELECT convert_to('{"items":[' || coalesce(string_agg(doc, ',' ORDER BY sku), '')"""
        """ || '],"next":' || CASE WHEN count(*) = %(limit)s THEN to_json(max(sku))::text"""
        """ ELSE 'null' END || '}', 'UTF8') FROM page"""
    )


LIST_FIRST = _listing(after=False)
LIST_AFTER = _listing(after=True)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) as libpq reads it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class PageReader:
    """One pool per process, opened on first use (inside the server's event loop)."""

    def __init__(
        self,
        url: str,
        max_size: int,
        configure: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None = None,
    ) -> None:
        async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
            set_json_loads(orjson.loads, conn)  # documents decode in C
            if configure is not None:
                await configure(conn)

        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            libpq_url(url),
            min_size=max_size,  # opened up front: no connect() in the way of a read
            max_size=max_size,
            open=False,
            configure=_configure,
            kwargs={"autocommit": True, "row_factory": namedtuple_row},
            name="page-reader",
            timeout=5.0,  # a storefront read waits for a connection this long at most
        )

    async def get(self, channel: str, sku: str) -> Any | None:
        """The page row (attributes named like ``ProductPage``'s columns), or None."""
        if self.pool.closed:
            await self.pool.open()  # the first read; the pool serialises concurrent opens
        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(READ_ONE, (channel, sku), prepare=True)
                    return await cur.fetchone()
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                # The server closed this connection (a restart, a failover): it closed the
                # idle ones beside it too. Test those now (only on this path: no ping on a
                # read), so the retry gets a live connection, not the next dead one.
                await self.pool.check()
        return None  # not reached

    async def list_page(self, channel: str, after: str | None, limit: int) -> bytes:
        """A channel's listing page, the JSON answer as PostgreSQL wrote it: the handler
        passes the bytes on, with no Python work per document (a page of 200 composed in
        Python held the GIL long enough to delay the webhook intake by hundreds of ms)."""
        if self.pool.closed:
            await self.pool.open()
        query, params = LIST_FIRST, {"channel": channel, "limit": limit}
        if after is not None:
            query, params = LIST_AFTER, {**params, "after": after}
        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(query, params, prepare=True, binary=True)
                    row = await cur.fetchone()
                    return bytes(row[0])
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                await self.pool.check()  # (as in get: the dropped connection's neighbours)
        raise AssertionError("not reached")

    async def close(self) -> None:
        await self.pool.close()  # nothing to do if it never opened
