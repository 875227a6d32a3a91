"""Pausing Python's cyclic garbage collector around bulk work.

A PIM page decodes into ~700 containers per product (dicts and lists of values), all alive
until the group they belong to is written. With the collector on, every 700 allocations start
a collection that walks the young ones, and older generations are walked again and again as
they fill: decoding a product took about 3x as long (bench/full_sync.py). JSON payloads hold no
reference cycles; the few cycles a unit of work makes (sessions, transactions) are collected
as soon as the pause ends, because the collector's counters kept running while it was off.

The pause is scoped to one unit of work (a publish message; an ingest slice, bounded in time,
whose reader collects the young generation every few groups it writes), never to a whole
task, so the garbage a long task makes cannot pile up.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0


def freeze_inherited() -> None:
    """Put everything alive now (modules, metadata, settings: what a worker child or the web
    app starts with, and keeps) out of the collector's sight: a full collection no longer
    walks it. Collects first, so no garbage is frozen with it."""
    gc.collect()
    gc.freeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off, unless it was off already.

    Nested and concurrent (threads) pauses are counted: the collector resumes when the last
    one ends, and only if the pauses turned it off.
    """
    global _depth
    with _lock:
        if _depth == 0 and not gc.isenabled():
            owned = False  # someone else turned it off: leave it as it is
        else:
            owned = True
            _depth += 1
            gc.disable()
    try:
        yield
    finally:
        if owned:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    gc.enable()
