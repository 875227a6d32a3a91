"""``POST /events/{domain}`` on real PostgreSQL: bearer tokens per source, the ownership
table decides who may send what, events are validated, and accepted ones are handed over."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.mapping.models import OwnershipViolation
from app.pages.schemas import DomainEvent
from tests.web.support import Web, count, problem, refusals

TOKENS = '{"erp": "t-erp", "wms": "t-wms"}'
ERP = {"Authorization": "Bearer t-erp"}
WMS = {"Authorization": "Bearer t-wms"}


@pytest.fixture
def api(web: Web) -> Web:
    web.setenv(event_source_tokens=TOKENS)
    return web


def price(sku: str = "SKU-1", version: int = 7, **extra: Any) -> dict[str, Any]:
    event = {
        "sku": sku,
        "source_version": version,
        "occurred_at": "2026-11-27T10:00:00Z",
        "payload": {"amount": "19.99", "currency": "EUR"},
    }
    event.update(extra)
    return event


def violations() -> list[tuple[str, str, str, int]]:
    with session_scope() as s:
        rows = s.execute(select(OwnershipViolation)).scalars()
        return [(v.source, v.domain, v.attribute, v.count) for v in rows]


def assert_nothing_sent(api: Web) -> None:
    assert api.sender.calls == []


def test_single_event_from_the_owner_is_accepted_and_sent(api: Web) -> None:
    resp = api.client.post("/events/pricing", json=price(), headers=ERP)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 1, "domain": "pricing", "source": "erp"}
    assert len(api.sender.calls) == 1
    domain, source, events = api.sender.calls[0]
    assert (domain, source) == ("pricing", "erp")
    assert events == [
        DomainEvent(
            type="pricing",
            sku="SKU-1",
            channel=None,
            source_version=7,
            occurred_at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
            payload={"amount": "19.99", "currency": "EUR"},
        )
    ]
    assert violations() == []


def test_a_batch_is_accepted_and_sent_at_once(api: Web) -> None:
    body = {
        "events": [
            {"type": "inventory", **price("A", 1), "payload": {"quantity": 3}},
            {**price("B", 2), "channel": "de_storefront", "payload": {"quantity": 0}},
        ]
    }
    resp = api.client.post("/events/inventory", json=body, headers=WMS)
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 2, "domain": "inventory", "source": "wms"}
    [(domain, source, events)] = api.sender.calls
    assert (domain, source) == ("inventory", "wms")
    assert all(isinstance(e, DomainEvent) for e in events)
    assert [(e.type, e.sku, e.channel, e.source_version, e.payload) for e in events] == [
        ("inventory", "A", None, 1, {"quantity": 3}),
        ("inventory", "B", "de_storefront", 2, {"quantity": 0}),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic t-erp"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "unknown", "not_bearer", "empty"],
)
def test_missing_or_unknown_token_is_401(api: Web, headers: dict[str, str]) -> None:
    before = refusals("bad_token")
    resp = api.client.post("/events/pricing", json=price(), headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["reason"] == "bad_token"
    assert refusals("bad_token") == before + 1
    assert_nothing_sent(api)
    assert violations() == []


def test_no_tokens_configured_refuses_everyone(web: Web) -> None:
    resp = web.client.post("/events/pricing", json=price(), headers=ERP)
    assert resp.status_code == 401
    assert web.sender.calls == []


def test_a_source_sending_a_domain_it_does_not_own_is_403_and_recorded(api: Web) -> None:
    before = refusals("not_owner")
    resp = api.client.post("/events/pricing", json=price(), headers=WMS)
    assert resp.status_code == 403, resp.text
    assert resp.json()["reason"] == "not_owner"
    assert "'wms' does not own domain 'pricing'" in resp.json()["detail"]
    assert refusals("not_owner") == before + 1
    assert_nothing_sent(api)
    assert violations() == [("wms", "pricing", "<domain events>", 1)]
    again = api.client.post("/events/pricing", json=price(), headers=WMS)
    assert again.status_code == 403
    assert violations() == [("wms", "pricing", "<domain events>", 2)]


def test_catalog_events_are_never_taken_from_outside(api: Web) -> None:
    body = {**price(), "payload": {"title": "x"}}
    for headers in (ERP, WMS):
        resp = api.client.post("/events/catalog", json=body, headers=headers)
        assert resp.status_code == 403, resp.text
        assert resp.json()["reason"] == "not_owner"
    assert_nothing_sent(api)


def test_unknown_domain_is_404(api: Web) -> None:
    resp = api.client.post("/events/unknown", json=price(), headers=ERP)
    assert resp.status_code == 404, resp.text
    assert resp.json()["reason"] == "unknown_domain"
    assert "'unknown'" in resp.json()["detail"]
    assert_nothing_sent(api)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({k: v for k, v in price().items() if k != "sku"}, "events.0.sku"),
        (price(sku=""), "events.0.sku"),
        (price(version=0), "events.0.source_version"),
        (price(version=2**63), "events.0.source_version"),
        (price(occurred_at="2026-11-27T10:00:00"), "events.0.occurred_at"),
        (price(occurred_at="yesterday"), "events.0.occurred_at"),
        (price(payload={"blob": "x" * 70_000}), "events.0.payload"),
        (price(payload=[1, 2]), "events.0.payload"),
        (price(channel="c" * 65), "events.0.channel"),
        (price(colour="red"), "events.0.colour"),
        (price(type="media"), "events.0.type"),  # a valid domain, but not this endpoint's
    ],
    ids=[
        "no_sku",
        "empty_sku",
        "version_0",
        "version_too_big",
        "naive_occurred_at",
        "not_a_date",
        "payload_too_big",
        "payload_not_an_object",
        "channel_too_long",
        "unknown_field",
        "other_type",
    ],
)
def test_an_invalid_event_is_422_naming_the_field(
    api: Web, event: dict[str, Any], field: str
) -> None:
    before = refusals("invalid_event")
    resp = api.client.post("/events/pricing", json=event, headers=ERP)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert resp.json()["reason"] == "invalid_event"
    if field == "events.0.type":
        assert detail == "events of media sent to /pricing"
    else:
        assert detail.startswith(f"{field}: "), detail
    assert refusals("invalid_event") == before + 1
    assert_nothing_sent(api)


def test_the_naive_date_and_the_payload_limit_say_why(api: Web) -> None:
    naive = api.client.post(
        "/events/pricing", json=price(occurred_at="2026-11-27T10:00:00"), headers=ERP
    )
    assert "needs a time zone" in naive.json()["detail"]
    big = api.client.post("/events/pricing", json=price(payload={"b": "x" * 70_000}), headers=ERP)
    assert "exceeds 65,536" in big.json()["detail"]


def test_a_batch_with_an_event_of_another_type_is_refused_whole(api: Web) -> None:
    body = {"events": [price("A", 1), {**price("B", 1), "type": "inventory"}]}
    resp = api.client.post("/events/pricing", json=body, headers=ERP)
    assert problem(resp, 422) == {
        "detail": "events of inventory sent to /pricing",
        "reason": "invalid_event",
    }
    assert_nothing_sent(api)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"events": []}, "events: List should have at least 1 item"),
        (
            {"events": [price(str(i), i + 1) for i in range(1001)]},
            "events: List should have at most",
        ),
        ({"events": "nope"}, "events: Input should be a valid list"),
        ([price()], "events.0: Input should be a valid dictionary"),
    ],
    ids=["empty_batch", "batch_too_big", "events_not_a_list", "bare_list"],
)
def test_malformed_batches_are_422(api: Web, body: Any, says: str) -> None:
    resp = api.client.post("/events/pricing", json=body, headers=ERP)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith(says), resp.json()["detail"]
    assert_nothing_sent(api)


def test_body_over_the_limit_is_413(api: Web) -> None:
    api.setenv(webhook_max_body_bytes="2048")
    body = json.dumps({"events": [price(str(i), i + 1) for i in range(40)]}).encode()
    assert len(body) > 2048
    before = refusals("too_large")
    resp = api.client.post(
        "/events/pricing", content=body, headers={**ERP, "Content-Type": "application/json"}
    )
    assert resp.status_code == 413, resp.text
    assert resp.json()["reason"] == "too_large"
    assert refusals("too_large") == before + 1
    assert_nothing_sent(api)


def test_malformed_json_is_400(api: Web) -> None:
    resp = api.client.post("/events/pricing", content=b"{nope", headers=ERP)
    assert resp.status_code == 400, resp.text
    assert resp.json()["reason"] == "malformed_json"
    assert_nothing_sent(api)


def test_a_refused_token_never_records_a_violation(api: Web) -> None:
    """Only an authenticated source's overreach is a violation; strangers are just 401."""
    api.client.post("/events/pricing", json=price(), headers={"Authorization": "Bearer x"})
    assert count(OwnershipViolation) == 0


@pytest.mark.parametrize(
    ("event", "field", "says"),
    [
        (price(payload={"amount": "-1.00", "currency": "EUR"}), "events[0]", "amount is negative"),
        (price(payload={"amount": "9.99", "currency": "EURO"}), "events[0]", "not an ISO 4217"),
        (price(payload={"purchasable": True}), "events[0]", "purchasable is true but"),
        (price(payload={"amount": "abc"}), "events[0]", "must be a decimal number"),
        (price(sku="A\x00B"), "events[0].sku", "NUL character"),
        (price(payload={"amount": "1", "note": "x\x00"}), "events[0].payload", "note contains"),
        (price(channel="nowhere"), "events[0].channel", "unknown channel 'nowhere'"),
    ],
    ids=["negative", "currency", "purchasable", "amount", "nul_sku", "nul_value", "channel"],
)
def test_a_domain_event_that_makes_no_sense_is_a_422_naming_the_field(
    api: Web, event: dict[str, Any], field: str, says: str
) -> None:
    resp = api.client.post("/events/pricing", json={"events": [price("OK-1"), event]}, headers=ERP)
    body = problem(resp, 422)
    assert body["reason"] == "invalid_event" and says in body["detail"], body
    assert body["field"] == field.replace("events[0]", "events[1]"), body
    assert api.sender.calls == []  # nothing of the batch is sent


def test_a_sensible_price_and_stock_pass(api: Web) -> None:
    ok = price(payload={"amount": 0, "currency": "JPY", "purchasable": True})
    assert api.client.post("/events/pricing", json=ok, headers=ERP).status_code == 202
    stock = {**price(), "payload": {"quantity": -2, "in_stock": False}}
    assert api.client.post("/events/inventory", json=stock, headers=WMS).status_code == 202


def test_a_version_past_the_ceiling_is_refused(api: Web) -> None:
    resp = api.client.post("/events/pricing", json=price(version=2**63 - 1), headers=ERP)
    body = problem(resp, 422)
    assert (
        body["field"] == "events[0].source_version"
        and "PIMSYNC_EVENT_MAX_SOURCE_VERSION" in body["detail"]
    )
    assert (
        api.client.post("/events/pricing", json=price(version=2**53), headers=ERP).status_code
        == 202
    )
