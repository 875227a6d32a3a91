"""Domain-event consumers take the messages already waiting in one transaction, on real Redis
and PostgreSQL: everything applied once, acknowledged after the commit, put back when the
transaction fails, and nothing taken that is not theirs (another task, a delayed retry)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from app.db import session_scope
from app.pages.models import ProductPage
from app.pages.schemas import DomainEvent
from tests.conftest import flush_redis_db
from tests.e2e_support import apply_env, restore_env, wait_until

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


def test_a_failed_transaction_puts_every_taken_message_back(broker, pg_db):
    """The database connection dies mid-transaction (its backend terminated while the upsert
    waits for a lock): every message taken goes back on the queue, and the retry applies
    them all once."""
    from tasks.events import _apply

    for i in range(10):
        send("pricing", event(f"SKU-{i}", 3))
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            _apply("pricing", [event("FIRST", 1)], "erp")
        except BaseException as exc:
            failure.append(exc)

    with blocked_writes(pg_db) as blocked:
        consumer = threading.Thread(target=consume)
        consumer.start()
        pid = wait_until(blocked, 30, interval=0.05, what="the upsert to wait for the lock")
        assert waiting(broker, "events.pricing") == 0  # all ten taken, unacknowledged
        assert unacked(broker) == 10
        terminate(pg_db, pid)
        consumer.join(30)
    (exc,) = failure
    assert isinstance(exc, OperationalError) and "terminating connection" in str(exc)
    assert waiting(broker, "events.pricing") == 10, "taken messages go back on the queue"
    assert unacked(broker) == 0
    assert versions() == {}
    _apply("pricing", [event("FIRST", 1)], "erp")  # the retry
    assert versions() == {"FIRST": 1, **{f"SKU-{i}": 3 for i in range(10)}}
    assert waiting(broker, "events.pricing") == 0 and unacked(broker) == 0


@contextmanager
def blocked_writes(url: str) -> Iterator[Callable[[], int | None]]:
    """Hold a lock on product_page that blocks writers; yields a probe returning the pid of a
    backend of this database waiting for it (None while there is none)."""
    engine = create_engine(url)
    name = url.rsplit("/", 1)[1]
    try:
        with engine.connect() as holder:
            holder.execute(text("LOCK TABLE product_page IN SHARE MODE"))

            def probe() -> int | None:
                with engine.connect() as conn:
                    return conn.execute(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = :db "
                            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                        ),
                        {"db": name},
                    ).scalar()

            yield probe
            holder.rollback()
    finally:
        engine.dispose()


def terminate(url: str, pid: int) -> None:
    """pg_terminate_backend on a backend of this test's own database, and no other."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid = :pid AND datname = :db"
                ),
                {"pid": pid, "db": url.rsplit("/", 1)[1]},
            ).scalar()
    finally:
        engine.dispose()


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


def test_one_bad_event_among_twenty_is_dead_lettered_alone(broker):
    """Events that skipped the intake's checks (another producer, older rules): the bad one is
    dead-lettered with its reason, the nineteen good ones apply, nothing is lost."""
    from app.sync.models import DeadLetter
    from tasks.events import _apply

    good = [event(f"SKU-{i}", 3) for i in range(19)]
    bad = dict(event("SKU-X", 3), sku="BAD\x00SKU")
    _apply("pricing", [*good[:10], bad, *good[10:]], "erp")
    assert versions() == {f"SKU-{i}": 3 for i in range(19)}
    with session_scope() as s:
        letters = s.execute(select(DeadLetter)).scalars().all()
    assert [(d.channel, d.sku, d.kind, d.status) for d in letters] == [
        ("events.pricing", "BAD\\x00SKU", "event", "open")
    ]
    assert "event 10 from erp" in letters[0].error and "NUL character" in letters[0].error


def test_a_batch_is_measured_and_logged_whole_with_each_refusal_named(broker):
    """Channel-scoped events are checked against the configured channels; the batch's size,
    its outcome and each refused event reach the metric and the log."""
    from prometheus_client import REGISTRY
    from structlog.testing import capture_logs

    from tasks.events import _apply

    def batch_sum() -> float:
        value = REGISTRY.get_sample_value("pimsync_event_batch_messages_sum", {"domain": "pricing"})
        return value or 0.0

    send("pricing", dict(event("ONE-CHANNEL", 4), channel="de_storefront"))
    send("pricing", dict(event("NOWHERE", 4), channel="xx_unknown"))
    send("pricing", event("EVERYWHERE", 2))
    before = batch_sum()
    with capture_logs() as logs:
        _apply("pricing", [event("FIRST", 1)], "erp")
    assert batch_sum() - before == 4  # this message and the three waiting
    assert versions() == {"ONE-CHANNEL": 4, "EVERYWHERE": 2, "FIRST": 1}
    refused = [e for e in logs if e["event"] == "event_dead_lettered"]
    assert refused == [
        {
            "event": "event_dead_lettered",
            "log_level": "warning",
            "domain": "pricing",
            "sku": "NOWHERE",
            "error": "event 0 from erp: channel 'xx_unknown' is not configured",
        }
    ]
    (summary,) = [e for e in logs if e["event"] == "events_applied"]
    # FIRST and EVERYWHERE on each of the 4 channels, ONE-CHANNEL on one
    assert summary == {
        "event": "events_applied",
        "log_level": "debug",
        "domain": "pricing",
        "messages": 4,
        "applied": 2 * CHANNELS + 1,
        "stale": 0,
    }


def test_the_configured_highest_source_version_is_the_one_applied(broker, monkeypatch):
    from app.config import reset_settings_cache
    from app.sync.models import DeadLetter
    from tasks.dispatch import reset_process_context
    from tasks.events import _apply

    monkeypatch.setenv("PIMSYNC_EVENT_MAX_SOURCE_VERSION", "100")
    reset_settings_cache()
    reset_process_context()
    try:
        _apply("pricing", [event("AT-LIMIT", 100), event("PAST", 101)], "erp")
    finally:
        monkeypatch.delenv("PIMSYNC_EVENT_MAX_SOURCE_VERSION")
        reset_settings_cache()
        reset_process_context()
    assert versions() == {"AT-LIMIT": 100}
    with session_scope() as s:
        (letter,) = s.execute(select(DeadLetter)).scalars().all()
    assert letter.sku == "PAST" and "past the highest accepted (100," in letter.error
