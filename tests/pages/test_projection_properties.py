"""Property: any shuffling and duplication of an event history, applied by concurrent
workers, yields the same product pages as in-order delivery (real PostgreSQL)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from app.db import session_scope
from app.pages.models import DOMAINS, ProductPage
from app.pages.repository import Projection, apply_projections

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def payload(domain: str, sku: str, channel: str, version: int) -> dict:
    """What a source sends for this version: the same version always carries the same data."""
    return {
        "domain": domain,
        "sku": sku,
        "channel": channel,
        "version": version,
        "amount": f"{version * 1.25:.2f}",
    }


event = st.tuples(
    st.sampled_from(DOMAINS),
    st.sampled_from(["SKU-1", "SKU-2", "SKU-3"]),
    st.sampled_from(["web", "app"]),
    st.integers(min_value=1, max_value=40),
)


def project(e: tuple[str, str, str, int]) -> Projection:
    domain, sku, channel, version = e
    enabled = version % 3 != 0  # catalog: some versions disable the row
    return Projection(
        channel,
        sku,
        version,
        payload(*e),
        enabled if domain == "catalog" else None,
        ("published" if enabled else "incomplete") if domain == "catalog" else None,
    )


def apply_one(e: tuple[str, str, str, int]) -> None:
    with session_scope() as session:
        apply_projections(session, e[0], [project(e)], NOW)


def snapshot() -> dict:
    with session_scope() as session:
        pages = session.execute(select(ProductPage)).scalars().all()
        return {
            (p.channel, p.sku): (
                tuple((getattr(p, d), getattr(p, f"{d}_version")) for d in DOMAINS),
                p.catalog_enabled,
                p.catalog_status,
            )
            for p in pages
        }


def reset() -> None:
    with session_scope() as session:
        session.execute(delete(ProductPage))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=st.lists(event, min_size=1, max_size=40),
    seed=st.integers(0, 10_000),
    workers=st.integers(2, 4),
)
def test_shuffled_duplicated_concurrent_delivery_equals_in_order(pg_db, history, seed, workers):
    reset()
    for e in sorted(history, key=lambda e: e[3]):  # in order, once each
        apply_one(e)
    expected = snapshot()

    reset()
    rng = random.Random(seed)
    deliveries = history + rng.sample(history, k=len(history) // 2)  # at-least-once
    rng.shuffle(deliveries)  # any order
    slices = [deliveries[i::workers] for i in range(workers)]
    errors: list[BaseException] = []

    def worker(items: list) -> None:
        try:
            for e in items:
                apply_one(e)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert snapshot() == expected


def test_batches_applied_concurrently_lose_nothing(pg_db):
    """Two workers applying different domains to the same rows at once: both land."""
    reset()
    skus = [f"SKU-{i:03d}" for i in range(200)]
    pricing = [Projection("web", s, 5, {"amount": "9.99"}) for s in skus]
    stock = [Projection("web", s, 7, {"quantity": 3}) for s in skus]

    def run(domain: str, rows: list[Projection]) -> None:
        for i in range(0, len(rows), 25):
            with session_scope() as session:
                apply_projections(session, domain, rows[i : i + 25], NOW)

    threads = [
        threading.Thread(target=run, args=a) for a in (("pricing", pricing), ("inventory", stock))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope() as session:
        pages = session.execute(select(ProductPage)).scalars().all()
        assert len(pages) == 200
        assert all(p.pricing_version == 5 and p.inventory_version == 7 for p in pages)
        assert all(
            p.pricing == {"amount": "9.99"} and p.inventory == {"quantity": 3} for p in pages
        )
