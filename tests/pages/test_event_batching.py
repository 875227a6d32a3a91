"""Domain-event consumers take the messages already waiting in one transaction, on real Redis
and PostgreSQL: everything applied once, acknowledged after the commit, put back when the
transaction fails, and nothing taken that is not theirs (another task, a delayed retry)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.db import session_scope
from app.pages.models import ProductPage
from app.pages.schemas import DomainEvent
from tests.conftest import flush_redis_db
from tests.e2e_support import apply_env, restore_env

CHANNELS = 4  # the sample channels: an event for every channel lands on each


@pytest.fixture
def broker(pg_db: str, redis_url: str) -> Iterator[redis.Redis]:
    old = apply_env({"PIMSYNC_DATABASE_URL": pg_db, "PIMSYNC_BROKER_URL": redis_url})
    client = redis.Redis.from_url(redis_url)
    flush_redis_db(client)
    try:
        yield client
    finally:
        flush_redis_db(client)
        restore_env(old)


def event(sku: str, version: int, domain: str = "pricing") -> dict[str, Any]:
    return DomainEvent.model_validate(
        {
            "type": domain,
            "sku": sku,
            "source_version": version,
            "occurred_at": datetime.now(UTC).isoformat(),
            "payload": {"amount": f"{version}.00"} if domain == "pricing" else {"quantity": 1},
        }
    ).model_dump(mode="json")


def send(domain: str, *events: dict[str, Any], countdown: float | None = None) -> None:
    from tasks import celery_app

    source = {"pricing": "erp", "inventory": "wms"}[domain]
    celery_app.send_task(
        f"events.{domain}.apply",
        args=[list(events), source],
        queue=f"events.{domain}",
        countdown=countdown,
    )


def waiting(client: redis.Redis, queue: str) -> int:
    return int(client.llen(queue))


def unacked(client: redis.Redis) -> int:
    return int(client.hlen("unacked"))


def versions(domain: str = "pricing") -> dict[str, int]:
    with session_scope() as s:
        rows = s.execute(
            select(ProductPage.sku, getattr(ProductPage, f"{domain}_version")).where(
                ProductPage.channel == "de_storefront"
            )
        ).all()
    return {sku: int(v) for sku, v in rows if v}


def batch_count() -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("pimsync_event_batch_messages_count", {"domain": "pricing"}) or 0
    )


def test_waiting_messages_are_applied_with_the_first_and_acknowledged(broker):
    from tasks.events import _apply

    for i in range(30):
        send("pricing", event(f"SKU-{i}", 1), event(f"SKU-{i}", 2))
    send("inventory", event("SKU-0", 5, "inventory"))
    assert waiting(broker, "events.pricing") == 30
    before = batch_count()
    _apply("pricing", [event("FIRST", 7)], "erp")  # the message the worker handed over
    assert versions() == {"FIRST": 7, **{f"SKU-{i}": 2 for i in range(30)}}
    assert waiting(broker, "events.pricing") == 0
    assert unacked(broker) == 0, "taken messages must be acknowledged after the commit"
    assert batch_count() == before + 1  # one transaction for 31 messages
    assert waiting(broker, "events.inventory") == 1, "another domain's queue is not touched"
    assert versions("inventory") == {}


def test_a_failed_transaction_puts_every_taken_message_back(broker, monkeypatch):
    from app.pages import service
    from tasks.events import _apply

    for i in range(10):
        send("pricing", event(f"SKU-{i}", 3))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

    monkeypatch.setattr(service, "apply_events", broken)
    with pytest.raises(OperationalError):
        _apply("pricing", [event("FIRST", 1)], "erp")
    assert waiting(broker, "events.pricing") == 10, "taken messages go back on the queue"
    assert unacked(broker) == 0
    assert versions() == {}
    monkeypatch.undo()
    _apply("pricing", [event("FIRST", 1)], "erp")  # the retry
    assert versions() == {"FIRST": 1, **{f"SKU-{i}": 3 for i in range(10)}}
    assert waiting(broker, "events.pricing") == 0 and unacked(broker) == 0


def test_at_most_the_batch_limit_and_never_a_delayed_retry(broker, monkeypatch):
    from app.config import reset_settings_cache
    from tasks.dispatch import reset_process_context
    from tasks.events import _apply

    monkeypatch.setenv("PIMSYNC_EVENT_BATCH_MAX", "5")
    reset_settings_cache()
    reset_process_context()
    for i in range(8):
        send("pricing", event(f"SKU-{i}", 1))
    _apply("pricing", [event("FIRST", 1)], "erp")
    assert len(versions()) == 5  # this message and 4 waiting ones
    assert waiting(broker, "events.pricing") == 4
    # a retry waits for its countdown: the consumer leaves it (and what is behind it)
    broker.delete("events.pricing")
    send("pricing", event("RETRY", 9), countdown=60)
    send("pricing", event("LATER", 1))
    _apply("pricing", [event("FIRST", 2)], "erp")
    assert "RETRY" not in versions()
    assert waiting(broker, "events.pricing") >= 1 and unacked(broker) == 0
