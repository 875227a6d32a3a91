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

    async def close(self) -> None:
        await self.pool.close()  # nothing to do if it never opened
