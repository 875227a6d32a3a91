"""Small doors closed: deep JSON, framing and sniffing, public API docs, old event ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.db import session_scope
from app.sync.pim_events import repository as events_repo
from app.sync.pim_events.models import WebhookEvent
from tests.web.support import Web, problem, recorded
from tests.web.test_webhooks import post_legacy


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def delivery(event_id: str, data: str) -> bytes:
    head = '{"events":[{"action":"product.updated","event_id":"' + event_id + '","data":'
    resource = '{"resource":{"identifier":"' + event_id + '-1","values":{"n":[{"data":'
    return (head + resource + data + "}]}}}}]}").encode()


def test_json_nested_past_the_limit_is_a_400(web: Web) -> None:
    resp = post_legacy(web, delivery("deep", nested(300)))
    assert problem(resp, 400)["reason"] == "too_deep"
    assert recorded() == (0, 0)


def test_json_within_the_limit_is_taken(web: Web) -> None:
    assert post_legacy(web, delivery("ok", nested(20))).status_code == 200


def test_every_answer_forbids_framing_and_sniffing(web: Web) -> None:
    for resp in (web.client.get("/healthz"), web.client.get("/no/such/page")):
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


def test_the_api_docs_are_off_unless_asked_for(web: Web) -> None:
    assert web.client.get("/docs").status_code == 404
    assert web.client.get("/openapi.json").status_code == 200  # the schema itself stays


def test_accepted_event_ids_are_purged_after_their_retention(web: Web) -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with session_scope() as s:
        for i, age in enumerate((1, 6, 8, 30)):
            s.add(
                WebhookEvent(
                    event_id=f"e{i}", kind="product.upsert", received_at=now - timedelta(days=age)
                )
            )
    with session_scope() as s:
        assert events_repo.purge_events(s, now - timedelta(days=7)) == 2
    with session_scope() as s:
        left = sorted(s.execute(select(WebhookEvent.event_id)).scalars())
        assert left == ["e0", "e1"]
        assert s.execute(select(func.count()).select_from(WebhookEvent)).scalar_one() == 2
