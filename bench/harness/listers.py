"""A crowd of listing clients in a process of its own, so their work never delays the clock
of whoever measures beside them: ``python -m bench.harness.listers URL TOKEN CHANNEL N``.

Each client keeps one HTTP/1.1 connection and lists the channel's pages 200 at a time as
fast as the server answers, following ``next`` (and starting again at the end); a 503 is
honoured (Retry-After). Plain sockets and no JSON decoding: the clients cost the machine
little, so the load is the server's. Prints ``ready`` once every client has had a page,
runs until stdin closes, then prints one JSON line of what they did after ``ready``: pages,
answers by status, bytes, pages per client.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, urlsplit

LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
RETRY_AFTER = re.compile(rb"\r\nretry-after: *(\d+)", re.IGNORECASE)
LIMIT = 200


async def client(
    host: str, port: int, path: str, token: str, stats: dict[str, Any], first: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    after: str | None = None
    try:
        while True:
            query = f"?limit={LIMIT}" + (f"&after={quote(after, safe='')}" if after else "")
            writer.write(
                f"GET {path}{query} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            found = LENGTH.search(head)
            if found is None:
                raise RuntimeError(f"no content-length: {head[:500]!r}")
            body = await reader.readexactly(int(found.group(1)))
            stats["statuses"][status] += 1
            stats["bytes"] += len(body)
            if status == 200:
                stats["pages"] += 1
                first.set()
                # the envelope ends with "next":<cursor>} (json.loads of the tail only)
                after = json.loads(body[body.rindex(b'"next":') + 7 : -1])
            elif status == 503 and (retry := RETRY_AFTER.search(head)):
                await asyncio.sleep(int(retry.group(1)))
            else:
                raise RuntimeError(f"listing answered {status}: {body[:500]!r}")
    finally:
        writer.close()


async def main(url: str, token: str, channel: str, clients: int) -> dict[str, Any]:
    parts = urlsplit(url)
    path = f"/channels/{quote(channel, safe='')}/products"
    stats = [{"pages": 0, "bytes": 0, "statuses": Counter()} for _ in range(clients)]
    firsts = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(client(parts.hostname or "", parts.port or 80, path, token, s, f))
        for s, f in zip(stats, firsts, strict=True)
    ]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 60)
    for s in stats:  # from here on: what the clients did while the test measured
        s.update(pages=0, bytes=0, statuses=Counter())
    print("ready", flush=True)
    ready = time.monotonic()
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.read)
    done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task in done:
            task.result()  # a client that failed: its error, not a report
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    statuses: Counter[int] = Counter()
    for s in stats:
        statuses.update(s["statuses"])
    return {
        "clients": clients,
        "seconds_to_ready": round(ready - started, 2),
        "seconds": round(time.monotonic() - ready, 2),
        "pages": sum(s["pages"] for s in stats),
        "bytes": sum(s["bytes"] for s in stats),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "pages_per_client": [s["pages"] for s in stats],
    }


if __name__ == "__main__":
    base, bearer, chan, n = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(base, bearer, chan, int(n)))), flush=True)
