"""PIM webhooks over HTTP on real PostgreSQL: Akeneo's Events API and Event Platform.

Authenticated before anything is parsed; refused requests record and enqueue nothing;
accepted ones record their events and per-product work, and dispatch after the commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.db import session_scope, utcnow
from app.pim import repository as pim_repo
from app.pim.product import content_hash, parse_product
from app.sync.pim_events.models import PendingSku, WebhookEvent
from tests.web.support import (
    SECRET,
    Web,
    count,
    dumps,
    events_api_headers,
    example,
    hmac_hex,
    pending,
    problem,
    raw_post,
    recorded,
    refusals,
)

LEGACY = "/webhooks/akeneo"
PLATFORM = "/webhooks/akeneo/event-platform"
EXAMPLE_SKU = "1111111304"  # the identifier in Akeneo's product examples
EXAMPLE_EVENT_ID = "c306e088-fb76-479c-bbc0-18fef19da75d"


def post_legacy(web: Web, body: bytes, **sign: Any) -> Any:
    return web.client.post(LEGACY, content=body, headers=events_api_headers(body, **sign))


def assert_nothing_happened(web: Web) -> None:
    assert recorded() == (0, 0)
    assert web.dispatcher.calls == []


# --- Events API: accepted --------------------------------------------------------------------


def test_signed_product_updated_is_recorded_and_dispatched_after_commit(web: Web) -> None:
    web.setenv(event_coalesce_seconds="2.5")
    body = dumps(example("product-updated"))
    before = utcnow()
    resp = post_legacy(web, body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 1}
    with session_scope() as s:
        events = list(s.execute(select(WebhookEvent)).scalars())
    assert [(e.event_id, e.kind, e.subject) for e in events] == [
        (EXAMPLE_EVENT_ID, "product.upsert", EXAMPLE_SKU)
    ]
    rows = pending()
    assert list(rows) == [EXAMPLE_SKU]
    row = rows[EXAMPLE_SKU]
    assert (row.action, row.events, row.claimed_at) == ("upsert", 1, None)
    assert row.product is not None and row.product["identifier"] == EXAMPLE_SKU
    assert row.event_time == datetime(2020, 10, 20, 9, 13, 59, tzinfo=UTC)
    # A product the mirror has not written within the window is due at once: its row dated
    # one window back (any task takes it along), its task sent at once, after the commit.
    assert (
        before - timedelta(seconds=2.5) <= row.first_event_at <= utcnow() - timedelta(seconds=2.5)
    )
    assert web.dispatcher.calls == [("pim_product", EXAMPLE_SKU, 0.0, True)]


def test_the_recording_dispatcher_would_notice_a_dispatch_before_commit(web: Web) -> None:
    """Control for the visibility flag the tests above assert."""
    with session_scope() as s:
        s.add(PendingSku(key="early", action="upsert", events=1, first_event_at=utcnow()))
        s.flush()
        web.dispatcher.pim_product("early", 1.0)  # inside the transaction
    web.dispatcher.pim_product("early", 1.0)  # after it
    assert web.dispatcher.products() == [("early", 1.0, False), ("early", 1.0, True)]


def test_a_product_written_within_the_window_waits_for_it(web: Web) -> None:
    """Coalescing trails once the product was just applied: its next events wait until the
    window (the configured default, 1 s) since that write is over, and are applied as one."""
    _mirror([example("product-created")["events"][0]["data"]["resource"]])
    written = _written_at(EXAMPLE_SKU)
    before = utcnow()
    resp = post_legacy(web, dumps(example("product-updated")))
    assert resp.status_code == 200, resp.text
    [(key, countdown, visible)] = web.dispatcher.products()
    assert key == EXAMPLE_SKU and visible
    # the row is dated by the write: due, and its task sent, one window after the write
    assert pending()[EXAMPLE_SKU].first_event_at == written
    assert 1.0 - (utcnow() - written).total_seconds() <= countdown
    assert countdown <= 1.0 - (before - written).total_seconds()


def test_a_trailing_event_waits_only_what_is_left_of_the_window(web: Web) -> None:
    """Written 0.7 s ago, window 1 s: the event waits about 0.3 s, not a whole window."""
    from sqlalchemy import update

    from app.pim.models import PimProduct

    _mirror([example("product-created")["events"][0]["data"]["resource"]])
    written = utcnow() - timedelta(seconds=0.7)
    with session_scope() as s:
        s.execute(
            update(PimProduct)
            .where(PimProduct.identifier == EXAMPLE_SKU)
            .values(ingested_at=written)
        )
    resp = post_legacy(web, dumps(example("product-updated")))
    assert resp.status_code == 200, resp.text
    [(key, countdown, _visible)] = web.dispatcher.products()
    assert key == EXAMPLE_SKU and 0.0 < countdown <= 0.3
    assert pending()[EXAMPLE_SKU].first_event_at == written


def _written_at(sku: str) -> datetime:
    from app.pim.models import PimProduct

    with session_scope() as s:
        return s.execute(
            select(PimProduct.ingested_at).where(PimProduct.identifier == sku)
        ).scalar_one()


def test_a_product_written_before_the_window_is_due_at_once(web: Web) -> None:
    _mirror([example("product-created")["events"][0]["data"]["resource"]])
    web.setenv(event_coalesce_seconds="0.2")
    time.sleep(0.25)
    resp = post_legacy(web, dumps(example("product-updated")))
    assert resp.status_code == 200, resp.text
    assert web.dispatcher.products() == [(EXAMPLE_SKU, 0.0, True)]


def test_empty_body_correctly_signed_is_akeneos_connection_test(web: Web) -> None:
    resp = post_legacy(web, b"")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 0, "duplicates": 0, "products": 0}
    assert_nothing_happened(web)


def test_redelivered_event_is_acknowledged_and_ignored(web: Web) -> None:
    body = dumps(example("product-updated"))
    assert post_legacy(web, body).status_code == 200
    again = post_legacy(web, body)  # Akeneo retries with a fresh timestamp, same event id
    assert again.status_code == 200, again.text
    assert again.json() == {"accepted": 0, "duplicates": 1, "products": 0}
    assert recorded() == (1, 1)
    assert pending()[EXAMPLE_SKU].events == 1
    assert web.dispatcher.products() == [(EXAMPLE_SKU, 0.0, True)]


def test_ten_events_for_one_product_coalesce_into_one_row_and_one_task(web: Web) -> None:
    answers = []
    for i in range(10):
        body = dumps(example("product-updated", event_id=f"burst-{i}"))
        resp = post_legacy(web, body)
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
    assert answers[0] == {"accepted": 1, "duplicates": 0, "products": 1}
    assert all(a == {"accepted": 1, "duplicates": 0, "products": 0} for a in answers[1:])
    assert count(WebhookEvent) == 10
    rows = pending()
    assert list(rows) == [EXAMPLE_SKU] and rows[EXAMPLE_SKU].events == 10
    assert web.dispatcher.products() == [(EXAMPLE_SKU, 0.0, True)]


def test_one_request_with_several_products(web: Web) -> None:
    body = example("product-updated", event_id="multi-1")
    second = example("product-removed", event_id="multi-2")["events"][0]
    second["data"]["resource"]["identifier"] = "other-sku"
    body["events"].append(second)
    resp = post_legacy(web, dumps(body))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 2, "duplicates": 0, "products": 2}
    rows = pending()
    assert {k: r.action for k, r in rows.items()} == {EXAMPLE_SKU: "upsert", "other-sku": "remove"}
    # neither written by the mirror lately: both due at once
    assert sorted(web.dispatcher.products()) == [(EXAMPLE_SKU, 0.0, True), ("other-sku", 0.0, True)]


def test_product_removed_example(web: Web) -> None:
    resp = post_legacy(web, dumps(example("product-removed")))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 1}
    row = pending()[EXAMPLE_SKU]
    assert (row.action, row.product) == ("remove", None)
    assert web.dispatcher.products() == [(EXAMPLE_SKU, 0.0, True)]


def _mirror(products: list[dict[str, Any]], removed: tuple[str, ...] = ()) -> None:
    now = utcnow()
    with session_scope() as s:
        parsed = [parse_product(raw) for raw in products]
        pim_repo.upsert_products(s, [(p, content_hash(p.raw)) for p in parsed], None, now)
        if removed:
            pim_repo.mark_removed(s, list(removed), now)


@pytest.fixture
def sunglasses_variants(web: Web) -> list[str]:
    """The mirror knows three live variants of model `sunglasses` (one under a sub-model)."""

    def product(sku: str, parent: str | None, root: str | None = None) -> dict[str, Any]:
        return {
            "identifier": sku,
            "family": "accessories",
            "parent": parent,
            "root_parent": root,
            "categories": [],
            "enabled": True,
            "values": {},
            "updated": "2020-10-20T09:00:00+00:00",
        }

    _mirror(
        [
            product("sunglasses-black", "sunglasses"),
            product("sunglasses-brown", "Sunglasses"),  # model codes ignore case
            product("sunglasses-gold-m", "sunglasses_gold", "sunglasses"),
            product("sunglasses-gone", "sunglasses"),
            product("hat-red", "hat"),
            product("standalone", None),
        ],
        removed=("sunglasses-gone",),
    )
    return ["sunglasses-black", "sunglasses-brown", "sunglasses-gold-m"]


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("product-model-created", "upsert"),
        ("product-model-updated", "upsert"),
        ("product-model-removed", "remove"),
    ],
)
def test_product_model_event_expands_to_the_variants_the_mirror_knows(
    web: Web, sunglasses_variants: list[str], name: str, action: str
) -> None:
    resp = post_legacy(web, dumps(example(name)))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 3}
    with session_scope() as s:
        kinds = list(s.execute(select(WebhookEvent.kind, WebhookEvent.subject)).all())
    assert [tuple(k) for k in kinds] == [(f"model.{action}", "sunglasses")]
    rows = pending()
    assert sorted(rows) == sunglasses_variants
    assert {r.action for r in rows.values()} == {action}
    assert all(r.product is None for r in rows.values())  # fetched from the PIM later
    sent = sorted(web.dispatcher.products())
    assert [(k, visible) for k, _countdown, visible in sent] == [
        (k, True) for k in sunglasses_variants
    ]
    # just mirrored: each waits what is left of the window (1 s) since its write
    assert all(0.5 < countdown <= 1.0 for _k, countdown, _v in sent)


def test_product_model_event_for_an_unknown_model_is_recorded_without_work(web: Web) -> None:
    resp = post_legacy(web, dumps(example("product-model-updated")))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 0}
    assert recorded() == (1, 0)
    assert web.dispatcher.calls == []


def test_secondary_secret_signs_events_api_requests_during_a_rotation(web: Web) -> None:
    web.setenv(webhook_secret="new-secret", webhook_secret_secondary="old-secret")
    body = dumps(example("product-updated"))
    resp = post_legacy(web, body, secret="old-secret")
    assert resp.status_code == 200, resp.text
    assert recorded() == (1, 1)


# An unset secret is "" in the settings: the HMAC under the empty key is public knowledge, so
# it must never authenticate a request, whichever of the two secrets is the unset one.
UNSET_SECRETS = pytest.mark.parametrize(
    "configured",
    [
        {"webhook_secret": SECRET, "webhook_secret_secondary": None},
        {"webhook_secret": None, "webhook_secret_secondary": SECRET},
        {"webhook_secret": SECRET, "webhook_secret_secondary": ""},
    ],
    ids=["secondary_unset", "primary_unset", "secondary_empty"],
)


@UNSET_SECRETS
def test_an_unset_secret_never_signs_an_events_api_request(
    web: Web, configured: dict[str, str | None]
) -> None:
    web.setenv(**configured)
    resource = {"uuid": "7d1b1d8e-0000-4000-8000-000000000001", "identifier": "sku-empty-key"}
    body = dumps(
        {
            "events": [
                {
                    "action": "product.updated",
                    "event_id": "evt-empty-key",
                    "event_datetime": "2026-11-27T10:00:00+00:00",
                    "data": {"resource": resource},
                }
            ]
        }
    )
    resp = post_legacy(web, body, secret="")
    assert resp.status_code == 401, resp.text
    assert_nothing_happened(web)
    assert post_legacy(web, body, secret=SECRET).status_code == 200  # the real one passes


@UNSET_SECRETS
def test_an_unset_secret_never_signs_an_event_platform_request(
    web: Web, configured: dict[str, str | None]
) -> None:
    web.setenv(**configured)
    for primary, secondary in (("", None), (None, ""), ("", "")):
        resp = post_platform(web, cloudevent("ce-empty-key"), primary=primary, secondary=secondary)
        assert resp.status_code == 401, (primary, secondary, resp.text)
    assert_nothing_happened(web)
    assert post_platform(web, cloudevent("ce-empty-key")).status_code == 200


# --- Events API: refused ---------------------------------------------------------------------


def _bad_signature(body: bytes) -> dict[str, str]:
    headers = events_api_headers(body)
    headers["X-Akeneo-Request-Signature"] = "0" * 64
    return headers


def _without(header: str) -> Callable[[bytes], dict[str, str]]:
    def build(body: bytes) -> dict[str, str]:
        headers = events_api_headers(body)
        del headers[header]
        return headers

    return build


REFUSALS: list[tuple[str, Callable[[bytes], dict[str, str]], int, str, str]] = [
    ("bad_signature", _bad_signature, 401, "bad_signature", "does not match"),
    (
        "another_secret",
        lambda body: events_api_headers(body, secret="someone-else"),
        401,
        "bad_signature",
        "does not match",
    ),
    (
        "signature_of_another_timestamp",
        lambda body: events_api_headers(body, sign_ts=int(time.time()) - 1),
        401,
        "bad_signature",
        "does not match",
    ),
    (
        "missing_signature",
        _without("X-Akeneo-Request-Signature"),
        401,
        "missing_signature",
        "X-Akeneo-Request-Signature",
    ),
    (
        "missing_timestamp",
        _without("X-Akeneo-Request-Timestamp"),
        401,
        "missing_timestamp",
        "X-Akeneo-Request-Timestamp",
    ),
    (
        "stale_timestamp",
        lambda body: events_api_headers(body, ts=int(time.time()) - 3600),
        401,
        "stale_timestamp",
        "older than 300 s",
    ),
    (
        "future_timestamp",
        lambda body: events_api_headers(body, ts=int(time.time()) + 3600),
        401,
        "future_timestamp",
        "in the future",
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "reason", "says"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refused_requests_record_and_dispatch_nothing(
    web: Web, build: Callable[[bytes], dict[str, str]], status: int, reason: str, says: str
) -> None:
    body = dumps(example("product-updated"))
    before = refusals(reason)
    resp = web.client.post(LEGACY, content=body, headers=build(body))
    assert resp.status_code == status, resp.text
    assert resp.json()["reason"] == reason
    assert says in resp.json()["detail"]
    assert refusals(reason) == before + 1
    assert_nothing_happened(web)


def test_timestamp_window_is_configurable(web: Web) -> None:
    web.setenv(webhook_max_age_seconds="3600")
    body = dumps(example("product-updated"))
    ok = post_legacy(web, body, ts=int(time.time()) - 1800)
    assert ok.status_code == 200, ok.text
    stale = post_legacy(web, dumps(example("product-updated", "e2")), ts=int(time.time()) - 7200)
    assert stale.status_code == 401 and stale.json()["reason"] == "stale_timestamp"
    assert recorded() == (1, 1)


def test_no_secret_configured_is_503(web: Web) -> None:
    web.setenv(webhook_secret=None, webhook_secret_secondary=None)
    before = refusals("not_configured")
    body = dumps(example("product-updated"))
    resp = post_legacy(web, body, secret="anything")
    assert resp.status_code == 503, resp.text
    assert resp.json()["reason"] == "not_configured"
    assert "PIMSYNC_WEBHOOK_SECRET" in resp.json()["detail"]
    assert refusals("not_configured") == before + 1
    assert_nothing_happened(web)


def _big_body() -> bytes:
    body = example("product-updated")
    body["events"][0]["data"]["resource"]["values"]["name"][0]["data"] = "x" * 3000
    return dumps(body)


def test_oversized_body_with_honest_content_length_is_413(web: Web) -> None:
    web.setenv(webhook_max_body_bytes="2048")
    body = _big_body()
    before = refusals("too_large")
    resp = post_legacy(web, body)
    assert resp.status_code == 413, resp.text
    assert resp.json()["reason"] == "too_large"
    assert f"body of {len(body)} bytes exceeds 2048" in resp.json()["detail"]
    assert refusals("too_large") == before + 1
    assert_nothing_happened(web)


def test_oversized_body_with_lying_content_length_is_413(web: Web) -> None:
    web.setenv(webhook_max_body_bytes="2048")
    body = _big_body()
    headers = events_api_headers(body)
    headers["Content-Length"] = "100"
    before = refusals("too_large")
    resp = web.client.post(LEGACY, content=body, headers=headers)
    assert problem(resp, 413) == {"detail": "body exceeds 2048 bytes", "reason": "too_large"}
    assert refusals("too_large") == before + 1
    assert_nothing_happened(web)


def test_oversized_chunked_body_without_content_length_is_413(web: Web) -> None:
    web.setenv(webhook_max_body_bytes="2048")
    body = _big_body()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    before = refusals("too_large")
    resp = web.client.post(LEGACY, content=chunks(), headers=events_api_headers(body))
    assert resp.status_code == 413, resp.text
    assert resp.json()["reason"] == "too_large"
    assert refusals("too_large") == before + 1
    assert_nothing_happened(web)


def test_body_at_the_limit_is_read(web: Web) -> None:
    web.setenv(webhook_max_body_bytes="2048")
    body = dumps(example("product-removed"))
    body = body + b" " * (2048 - len(body))
    assert len(body) == 2048
    resp = post_legacy(web, body)
    assert resp.status_code == 200, resp.text
    assert recorded() == (1, 1)


def test_malformed_json_with_a_valid_signature_is_400(web: Web) -> None:
    before = refusals("malformed_json")
    resp = post_legacy(web, b'{"events": [')
    assert resp.status_code == 400, resp.text
    assert resp.json()["reason"] == "malformed_json"
    assert "not JSON" in resp.json()["detail"]
    assert refusals("malformed_json") == before + 1
    assert_nothing_happened(web)


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"hello": "world"}, 'expected {"events": [...]}'),
        ([1, 2, 3], 'expected {"events": [...]}'),
        ({"events": ["x"]}, "events[0] is not an object"),
        ({"events": [{"action": "product.updated", "data": {}}]}, "needs `action` and `event_id`"),
        ({"events": [{"action": "product.updated", "event_id": "e"}]}, "no data.resource"),
        (
            {"events": [{"action": "category.updated", "event_id": "e", "data": {"resource": {}}}]},
            "unknown action 'category.updated'",
        ),
        (
            {"events": [{"action": "product.updated", "event_id": "e", "data": {"resource": {}}}]},
            "neither identifier nor uuid",
        ),
    ],
)
def test_json_that_is_not_an_akeneo_payload_is_400(web: Web, payload: Any, says: str) -> None:
    before = refusals("bad_payload")
    resp = post_legacy(web, dumps(payload))
    assert resp.status_code == 400, resp.text
    assert resp.json()["reason"] == "bad_payload"
    assert says in resp.json()["detail"]
    assert refusals("bad_payload") == before + 1
    assert_nothing_happened(web)


def test_signature_is_checked_before_the_body_is_parsed(web: Web) -> None:
    body = b'{"events": ['
    headers = _bad_signature(body)
    before_sig, before_json = refusals("bad_signature"), refusals("malformed_json")
    resp = web.client.post(LEGACY, content=body, headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["reason"] == "bad_signature"
    assert refusals("bad_signature") == before_sig + 1
    assert refusals("malformed_json") == before_json
    assert_nothing_happened(web)


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        (b"x-akeneo-request-signature", b"\xe9" * 64, "bad_signature"),
        (b"x-akeneo-request-timestamp", b"\xb2", "missing_timestamp"),  # latin-1 "²"
        (b"x-akeneo-request-timestamp", b"9" * 5000, "missing_timestamp"),
    ],
    ids=["non_ascii_signature", "superscript_digit_timestamp", "huge_timestamp"],
)
def test_garbage_auth_headers_are_refused_not_crashing(
    web: Web, header: bytes, value: bytes, reason: str
) -> None:
    """Anyone can send these: they are a 401 like any bad credential, never a 500."""
    body = dumps(example("product-updated"))
    signed = {k.lower().encode(): v.encode() for k, v in events_api_headers(body).items()}
    signed[header] = value
    status, answer, error = raw_post(web.client.app, LEGACY, list(signed.items()), body)
    assert (status, error) == (401, None)
    assert answer["reason"] == reason
    assert_nothing_happened(web)


# --- Event Platform (CloudEvents) ------------------------------------------------------------

UUID = "1fd20ad8-ef95-49d7-a581-fb9f8ac0c5ad"


def cloudevent(
    event_id: str, uuid: str = UUID, kind: str = "com.akeneo.pim.v1.product.updated"
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "https://demo.akeneo.com",
        "type": kind,
        "subject": uuid,
        "time": "2026-11-27T10:00:00.123Z",
        "datacontenttype": "application/json",
        "data": {"product": {"uuid": uuid}},
    }


def platform_headers(
    body: bytes, primary: str | None = SECRET, secondary: str | None = None
) -> dict[str, str]:
    headers = {"Content-Type": "application/cloudevents+json"}
    if primary is not None:
        headers["X-AKENEO-SIGNATURE-PRIMARY"] = hmac_hex(primary, body)
    if secondary is not None:
        headers["X-AKENEO-SIGNATURE-SECONDARY"] = hmac_hex(secondary, body)
    return headers


def post_platform(web: Web, payload: Any, **secrets: Any) -> Any:
    body = dumps(payload)
    return web.client.post(PLATFORM, content=body, headers=platform_headers(body, **secrets))


def test_cloudevent_with_a_product_uuid_is_keyed_by_uuid(web: Web) -> None:
    resp = post_platform(web, cloudevent("ce-1"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 1}
    key = f"uuid:{UUID}"
    row = pending()[key]
    assert (row.action, row.product, row.events) == ("upsert", None, 1)
    assert row.event_time == datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC)
    with session_scope() as s:
        ev = s.execute(select(WebhookEvent)).scalar_one()
    assert (ev.event_id, ev.kind, ev.subject) == ("ce-1", "product.upsert", key)
    assert web.dispatcher.calls == [("pim_product", key, 0.0, True)]


def test_cloudevent_deleted_and_redelivered(web: Web) -> None:
    deleted = cloudevent("ce-del", kind="com.akeneo.pim.v1.product.deleted")
    assert post_platform(web, deleted).status_code == 200
    again = post_platform(web, deleted)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert pending()[f"uuid:{UUID}"].action == "remove"
    assert len(web.dispatcher.calls) == 1


def test_cloudevent_with_a_long_id_still_creates_work(web: Web) -> None:
    """Ids are stored cut to 100 characters: the cut id must still count as fresh."""
    long_id = "ce-" + "x" * 150
    resp = post_platform(web, cloudevent(long_id))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 1, "duplicates": 0, "products": 1}
    assert list(pending()) == [f"uuid:{UUID}"]
    assert web.dispatcher.products() == [(f"uuid:{UUID}", 0.0, True)]
    again = post_platform(web, cloudevent(long_id))
    assert again.json() == {"accepted": 0, "duplicates": 1, "products": 0}
    assert pending()[f"uuid:{UUID}"].events == 1


@pytest.mark.parametrize(
    ("primary", "secondary"),
    [
        ("old-secret", None),
        ("akeneo-next", "old-secret"),
        (None, "old-secret"),
        ("new-secret", None),
    ],
    ids=["old_in_primary", "old_in_secondary", "only_secondary_header", "new_in_primary"],
)
def test_rotation_accepts_either_of_our_secrets_in_either_header(
    web: Web, primary: str | None, secondary: str | None
) -> None:
    web.setenv(webhook_secret="new-secret", webhook_secret_secondary="old-secret")
    resp = post_platform(web, cloudevent("ce-rot"), primary=primary, secondary=secondary)
    assert resp.status_code == 200, resp.text
    assert recorded() == (1, 1)


def test_rotation_refuses_a_request_signed_with_neither_secret(web: Web) -> None:
    web.setenv(webhook_secret="new-secret", webhook_secret_secondary="old-secret")
    before = refusals("bad_signature")
    resp = post_platform(web, cloudevent("ce-x"), primary="older-secret", secondary="akeneo-next")
    assert resp.status_code == 401, resp.text
    assert resp.json()["reason"] == "bad_signature"
    assert refusals("bad_signature") == before + 1
    assert_nothing_happened(web)


def test_event_platform_refusals(web: Web) -> None:
    body = dumps(cloudevent("ce-r"))
    cases = [
        ({}, 401, "missing_signature"),
        ({"X-AKENEO-SIGNATURE-PRIMARY": "ab" * 32}, 401, "bad_signature"),
        (
            {
                "X-AKENEO-SIGNATURE-PRIMARY": hmac_hex(SECRET, body),
                "X-AKENEO-SIGNATURE-ALGORITHM": "HmacSHA1",
            },
            401,
            "bad_signature",
        ),
        (
            # the Events API signature scheme does not pass here
            {"X-AKENEO-SIGNATURE-PRIMARY": hmac_hex(SECRET, b"1700000000." + body)},
            401,
            "bad_signature",
        ),
    ]
    for headers, status, reason in cases:
        before = refusals(reason)
        resp = web.client.post(PLATFORM, content=body, headers=headers)
        assert resp.status_code == status, (headers, resp.text)
        assert resp.json()["reason"] == reason
        assert refusals(reason) == before + 1
    assert_nothing_happened(web)


def test_event_platform_body_errors(web: Web) -> None:
    resp = web.client.post(PLATFORM, content=b"{nope", headers=platform_headers(b"{nope"))
    assert resp.status_code == 400 and resp.json()["reason"] == "malformed_json"
    resp = post_platform(web, {"specversion": "1.0", "type": "com.akeneo.pim.v1.product.updated"})
    assert resp.status_code == 400 and resp.json()["reason"] == "bad_payload"
    assert "needs `id` and `type`" in resp.json()["detail"]
    resp = post_platform(web, {"id": "x", "type": "com.akeneo.pim.v1.product.updated", "data": {}})
    assert resp.status_code == 400 and resp.json()["reason"] == "bad_payload"
    assert_nothing_happened(web)


def _backlog(n: int) -> None:
    now = utcnow()
    with session_scope() as s:
        s.add_all(
            PendingSku(key=f"waiting-{i}", action="upsert", events=1, first_event_at=now)
            for i in range(n)
        )


def test_backlog_over_the_limit_is_429_with_retry_after(web: Web) -> None:
    web.setenv(event_backlog_limit="3")
    _backlog(4)
    before = refusals("backlog")
    resp = post_platform(web, cloudevent("ce-busy"))
    assert resp.status_code == 429, resp.text
    assert resp.json()["reason"] == "backlog"
    assert int(resp.headers["Retry-After"]) > 0
    assert refusals("backlog") == before + 1
    assert recorded() == (0, 4)
    assert web.dispatcher.calls == []


def test_backlog_at_the_limit_is_still_accepted(web: Web) -> None:
    web.setenv(event_backlog_limit="3")
    _backlog(3)
    resp = post_platform(web, cloudevent("ce-ok"))
    assert resp.status_code == 200, resp.text
    assert recorded() == (1, 4)
    assert web.dispatcher.products() == [(f"uuid:{UUID}", 0.0, True)]


def test_a_list_of_cloudevents_and_ignored_types(web: Web) -> None:
    other = "2c0b8f7e-0000-4000-8000-000000000001"
    batch = [
        cloudevent("ce-a"),
        cloudevent("ce-b", other, "com.akeneo.pim.v1.product.created"),
        {
            "specversion": "1.0",
            "id": "ce-c",
            "type": "com.akeneo.pim.v1.completeness.updated",
            "data": {"product": {"uuid": other}},
        },
        {
            "specversion": "1.0",
            "id": "ce-d",
            "type": "com.akeneo.pim.v1.product-model.updated",
            "data": {"product_model": {"code": "nothing_known"}},
        },
    ]
    resp = post_platform(web, batch)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 3, "duplicates": 0, "products": 2}
    assert sorted(pending()) == sorted([f"uuid:{UUID}", f"uuid:{other}"])
    assert len(web.dispatcher.calls) == 2


def test_no_secret_configured_is_503_on_the_event_platform(web: Web) -> None:
    web.setenv(webhook_secret=None)
    resp = post_platform(web, cloudevent("ce-n"), primary="")
    assert resp.status_code == 503 and resp.json()["reason"] == "not_configured"
    assert_nothing_happened(web)


def test_a_large_delivery_sends_one_task_per_batch_of_products(web: Web) -> None:
    """Each task takes up to PIMSYNC_EVENT_BATCH_MAX due products along: 450 products in one
    delivery are 3 tasks (batch 200), not 450; a small delivery keeps one task per product."""
    events = [cloudevent(f"big-{i}", uuid=f"00000000-0000-4000-8000-{i:012d}") for i in range(450)]
    resp = post_platform(web, events)
    assert resp.status_code == 200, resp.text
    assert resp.json()["products"] == 450
    assert len(pending()) == 450
    sent = web.dispatcher.products()
    assert len(sent) == 3 and all(visible for _k, _c, visible in sent)
    assert [k for k, _c, _v in sent] == sorted(pending())[::200]
    assert [c for _k, c, _v in sent] == [0.0, 0.0, 0.0]  # none of them mirrored lately


def test_a_large_deliverys_task_waits_only_if_none_of_its_products_is_due() -> None:
    from app.web.webhooks import tasks_for

    keys = [f"k{i:03d}" for i in range(450)]
    # k200 and the last 50 are due now; the others wait what is left of their window
    waits = {k: 2.0 - i / 1000 for i, k in enumerate(keys) if i < 200 or 200 < i < 400}
    assert tasks_for(keys, 200, waits) == [("k000", 2.0 - 0.199), ("k200", 0.0), ("k400", 0.0)]
    assert tasks_for(keys[:3], 200, {"k000": 2.0, "k002": 0.5}) == [
        ("k000", 2.0),
        ("k001", 0.0),
        ("k002", 0.5),
    ]


def test_event_platform_products_are_known_lately_by_their_uuid(web: Web) -> None:
    """The mirror wrote the product (by SKU, holding this uuid) just now: its event waits."""
    _mirror([{"identifier": "ce-sku", "uuid": UUID, "enabled": True, "values": {}}])
    resp = post_platform(web, cloudevent("ce-recent"))
    assert resp.status_code == 200, resp.text
    other = "00000000-0000-4000-8000-000000000777"
    assert post_platform(web, cloudevent("ce-new", uuid=other)).status_code == 200
    [(recent, countdown, _), due] = web.dispatcher.products()
    assert (recent, due) == (f"uuid:{UUID}", (f"uuid:{other}", 0.0, True))
    assert 0.5 < countdown <= 1.0  # what is left of the window since the mirror's write
