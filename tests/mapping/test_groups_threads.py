"""A plan is shared by every thread of a process (a thread pool, the web app's workers): one
thread filing a newly met attribute into a group must not change what another thread maps
at that moment (issue 18's groups are copied, never changed in place)."""

from __future__ import annotations

import sys
import threading
from typing import Any

from app.dev import generator
from app.mapping.mapper import MappingPlan
from app.pim.product import parse_product
from tests.mapping.test_groups import _in_order, _result
from tests.mapping.test_shared_resolution import _sample_plans


def _map_in_threads(plans: list[MappingPlan], raws: list[dict[str, Any]], threads: int) -> Any:
    """Each thread maps every ``threads``-th product with the shared plans, all at once."""
    got: dict[int, Any] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(offset: int) -> None:
        try:
            start.wait()
            for i in range(offset, len(raws), threads):
                product = parse_product(raws[i])
                got[i] = [_result(plan, product) for plan in plans]
        except BaseException as exc:  # reported by the test, with the thread's error
            failures.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not failures, failures
    return [got[i] for i in range(len(raws))]


def test_threads_mapping_with_a_fresh_plan_get_what_one_thread_gets() -> None:
    defs = generator.generated_definitions()
    raws = list(generator.iter_products(96, seed=44))
    oracles = [_in_order(plan) for plan in _sample_plans(defs)]
    expected = [[_result(o, parse_product(raw)) for o in oracles] for raw in raws]
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for _round in range(3):
            # fresh plans: every attribute is new, filed while the other threads map
            assert _map_in_threads(_sample_plans(defs), raws, 4) == expected
    finally:
        sys.setswitchinterval(before)
