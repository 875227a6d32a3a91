"""Input no row can hold (a NUL character, a key longer than its column) is refused with a 4xx
problem naming the field, alone: never a 500, never its neighbours' loss."""

from __future__ import annotations

from typing import Any

import pytest

from app.web import dashboard
from tests.web.support import READ, Web, dumps, pending, problem, recorded
from tests.web.test_webhooks import cloudevent, post_legacy, post_platform

CH = "de_storefront"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/channels/{CH}/products/SKU%00X", "sku"),
        ("/channels/de%00shop/products/SKU-1", "channel"),
        (f"/channels/{CH}/products/{'s' * 256}", "sku"),
        (f"/channels/{'c' * 65}/products/SKU-1", "channel"),
        ("/channels/de%00shop/products", "channel"),
        (f"/channels/{CH}/products?after=A%00B", "after"),
    ],
)
def test_a_page_read_with_an_impossible_key_is_a_400_naming_it(
    web: Web, path: str, field: str
) -> None:
    body = problem(web.client.get(path, headers=READ), 400)
    assert body["field"] == field and body["reason"] == "invalid"
    assert field in body["detail"]


def test_an_unknown_product_is_a_404_problem(web: Web) -> None:
    body = problem(web.client.get(f"/channels/{CH}/products/NOPE-1"), 404)
    assert body == {
        "detail": "no product 'NOPE-1' in channel 'de_storefront'",
        "reason": "not_found",
    }


def test_an_unknown_route_is_a_404_problem(web: Web) -> None:
    assert problem(web.client.get("/no/such/route"), 404)["detail"] == "Not Found"


def events_body(*resources: dict[str, Any]) -> bytes:
    return dumps(
        {
            "events": [
                {
                    "action": "product.updated",
                    "event_id": f"evt-bad-{i}",
                    "event_datetime": "2026-11-27T10:00:00+00:00",
                    "data": {"resource": r},
                }
                for i, r in enumerate(resources)
            ]
        }
    )


GOOD = {"uuid": "7d1b1d8e-0000-4000-8000-0000000000aa", "identifier": "GOOD-1", "values": {}}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"identifier": "BAD\x00ID", "values": {}}, "identifier `BAD\\x00ID` contains a NUL"),
        ({"uuid": "u\x00u"}, "product uuid `u\\x00u` contains a NUL"),
        ({"identifier": "x" * 256}, "identifier is 256 characters long (at most 255)"),
        ({"uuid": "u" * 65}, "uuid is 65 characters long (at most 64)"),
    ],
    ids=["nul_identifier", "nul_uuid", "long_identifier", "long_uuid"],
)
def test_an_event_with_an_impossible_key_is_refused_alone(
    web: Web, bad: dict[str, Any], says: str
) -> None:
    resp = post_legacy(web, events_body(bad, GOOD))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 1 and body["products"] == 1
    assert len(body["refused"]) == 1 and says in body["refused"][0]
    assert "evt-bad-0" in body["refused"][0]
    assert set(pending()) == {"GOOD-1"}
    assert recorded() == (1, 1)


def test_a_delivery_of_nothing_but_impossible_events_is_a_422(web: Web) -> None:
    body = problem(post_legacy(web, events_body({"identifier": "A\x00"})), 422)
    assert body["reason"] == "invalid_event" and "NUL" in body["detail"]
    assert recorded() == (0, 0)
    assert web.dispatcher.calls == []


def test_a_payload_with_a_nul_value_is_not_kept_the_product_is_fetched(web: Web) -> None:
    resource = {"identifier": "NUL-VALUE-1", "values": {"name": [{"data": "a\x00b"}]}}
    resp = post_legacy(web, events_body(resource))
    assert resp.status_code == 200 and resp.json()["accepted"] == 1, resp.text
    work = pending()["NUL-VALUE-1"]
    assert work.action == "upsert" and work.product is None  # fetched from the PIM instead


def test_an_event_platform_delivery_with_a_nul_uuid_is_a_422(web: Web) -> None:
    event = cloudevent("ce-nul", uuid="a\x00b")
    body = problem(post_platform(web, event), 422)
    assert "product uuid `a\\x00b` contains a NUL" in body["detail"]
    assert recorded() == (0, 0)


# --- found by the HTTP fuzzing (tests/web/test_fuzz.py) ---------------------------------------


@pytest.mark.parametrize("currency", [["EUR"], {"code": "EUR"}, 978, True])
def test_a_price_whose_currency_is_not_a_string_is_a_422(web: Web, currency: Any) -> None:
    """A list or an object as ``payload.currency`` was a 500 (TypeError: unhashable type,
    looking it up among the ISO 4217 codes): now it is a 422 that names the event and says
    it is no currency."""
    web.setenv(event_source_tokens='{"erp": "t-erp"}')
    event = {
        "sku": "SKU-1",
        "source_version": 1,
        "occurred_at": "2026-11-27T10:00:00Z",
        "payload": {"currency": currency},
    }
    resp = web.client.post("/events/pricing", json=event, headers={"Authorization": "Bearer t-erp"})
    body = problem(resp, 422)
    assert body["reason"] == "invalid_event" and body["field"] == "events[0]"
    assert "is not an ISO 4217 currency code" in body["detail"]
    assert web.sender.calls == []


EDGE_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("when", EDGE_TIMES)
@pytest.mark.parametrize("where", ["event_datetime", "updated"])
def test_an_event_time_outside_the_range_in_utc_is_no_time(web: Web, when: str, where: str) -> None:
    """A time a datetime holds as written but not in UTC (year 1 at +01:00, 9999-12-31 at
    -01:00) was a 500 (OverflowError storing the pending row): it now orders nothing, like
    an unreadable time, and the event is recorded."""
    event: dict[str, Any] = {
        "action": "product.updated",
        "event_id": "evt-edge-time",
        "data": {"resource": {"identifier": "EDGE-TIME-1", "values": {}}},
    }
    if where == "updated":
        event["data"]["resource"]["updated"] = when
    else:
        event["event_datetime"] = when
    resp = post_legacy(web, dumps({"events": [event]}))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 1}
    assert pending()["EDGE-TIME-1"].event_time is None


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_a_cloudevent_time_outside_the_range_in_utc_is_no_time(web: Web, when: str) -> None:
    event = cloudevent("ce-edge-time")
    event["time"] = when
    resp = post_platform(web, event)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1
    assert [p.event_time for p in pending().values()] == [None]


@pytest.mark.parametrize("letter_id", [2**63, 2**64, 10**30, 0, -1])
def test_a_replay_of_a_dead_letter_id_no_row_can_hold_is_a_422(web: Web, letter_id: int) -> None:
    """An id past bigint was a 500 (DataError: bigint out of range) once the form token was
    right: now the path parameter is refused, named, before anything is read."""
    web.setenv(dashboard_password="s3cret-dash", api_token="api-t0ken")
    resp = web.client.post(
        f"/dashboard/dead-letters/{letter_id}/replay",
        data={"csrf": dashboard._csrf("api")},  # a good form token: past it, the id
        headers={"Authorization": "Bearer api-t0ken"},
        follow_redirects=False,
    )
    body = problem(resp, 422)
    assert body["reason"] == "invalid" and body["field"] == "letter_id"


def test_a_replay_of_the_largest_possible_id_is_an_ordinary_request(web: Web) -> None:
    web.setenv(dashboard_password="s3cret-dash", api_token="api-t0ken")
    resp = web.client.post(
        f"/dashboard/dead-letters/{2**63 - 1}/replay",
        data={"csrf": dashboard._csrf("api")},
        headers={"Authorization": "Bearer api-t0ken"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text  # no such letter: nothing replayed
    assert resp.headers["location"].endswith("?replayed=0#dead-letters")
