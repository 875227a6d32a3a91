"""The event appliers (app/pages/projection.py) called directly on real PostgreSQL: what each
event writes, what it counts, what it refuses and the dead letter it leaves.

The worker tests reach the same code through Celery, where a mutation test cannot see it; these
hold every decision of the module in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app.channels import repository as channel_repo
from app.channels.repository import ChannelRow
from app.db import session_scope
from app.ownership import OwnershipError, OwnershipTable
from app.pages.projection import apply_catalog, apply_events, check_ownership, validate_events
from app.pages.repository import get_page
from app.pages.schemas import DomainEvent

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CHANNELS = ["at_storefront", "de_storefront"]


def event(
    domain: str = "pricing",
    sku: str = "A",
    version: int = 1,
    channel: str | None = None,
    payload: dict[str, Any] | None = None,
    occurred_at: datetime = NOW - timedelta(seconds=3),
) -> DomainEvent:
    if payload is None:
        payload = {"amount": f"{version}.50", "currency": "EUR"}
    return DomainEvent(
        type=domain,
        sku=sku,
        channel=channel,
        source_version=version,
        occurred_at=occurred_at,
        payload=payload,
    )


def body(domain: str = "pricing", **fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "type": domain,
        "sku": "A",
        "source_version": 1,
        "occurred_at": "2026-11-27T11:59:00Z",
        "payload": {"amount": "9.99", "currency": "EUR"},
    }
    raw.update(fields)
    return raw


def applied(domain: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "pimsync_projection_events_total", {"domain": domain, "result": result}
    )
    return value or 0.0


def lag_sum(domain: str) -> float:
    value = REGISTRY.get_sample_value("pimsync_projection_lag_seconds_sum", {"domain": domain})
    return value or 0.0


def lag_count(domain: str) -> float:
    value = REGISTRY.get_sample_value("pimsync_projection_lag_seconds_count", {"domain": domain})
    return value or 0.0


def page_domain(channel: str, sku: str, domain: str) -> tuple[Any, int] | None:
    with session_scope() as s:
        found = get_page(s, channel, sku)
        if found is None:
            return None
        return getattr(found, domain), getattr(found, f"{domain}_version")


def apply(events: list[DomainEvent], channels: list[str] = CHANNELS) -> dict[str, int]:
    with session_scope() as s:
        return apply_events(s, events, channels, NOW)


# --- apply_events -------------------------------------------------------------------------


def test_an_event_for_every_channel_is_projected_onto_each_configured_channel(pg_db: str) -> None:
    before = applied("pricing", "applied"), applied("pricing", "stale")
    assert apply([event(version=4)]) == {"applied": 2, "stale": 0}
    for ch in CHANNELS:
        assert page_domain(ch, "A", "pricing") == ({"amount": "4.50", "currency": "EUR"}, 4)
    assert page_domain("uk_marketplace", "A", "pricing") is None
    assert applied("pricing", "applied") - before[0] == 2
    assert applied("pricing", "stale") - before[1] == 0


def test_an_event_for_one_channel_touches_that_channel_only(pg_db: str) -> None:
    assert apply([event(channel="de_storefront", version=2)]) == {"applied": 1, "stale": 0}
    assert page_domain("de_storefront", "A", "pricing") == (
        {"amount": "2.50", "currency": "EUR"},
        2,
    )
    assert page_domain("at_storefront", "A", "pricing") is None


def test_a_replayed_or_older_event_counts_stale_and_changes_nothing(pg_db: str) -> None:
    apply([event(version=5)])
    stale_before = applied("pricing", "stale")
    applied_before = applied("pricing", "applied")
    assert apply([event(version=5), event(version=3)]) == {"applied": 0, "stale": 4}
    assert applied("pricing", "stale") - stale_before == 4
    assert applied("pricing", "applied") - applied_before == 0
    assert page_domain("at_storefront", "A", "pricing") == (
        {"amount": "5.50", "currency": "EUR"},
        5,
    )


def test_each_domain_lands_in_its_own_part_of_the_page_and_counts_add_up(pg_db: str) -> None:
    stock = {"quantity": 7, "in_stock": True}
    media = {"images": ["https://cdn.example/a.jpg"]}
    inv_before = applied("inventory", "applied")
    counts = apply(
        [
            event("inventory", version=3, channel="at_storefront", payload=stock),
            event("media", version=9, payload=media),
            event("pricing", version=1, channel="de_storefront"),
            event("inventory", version=2, channel="at_storefront", payload={"quantity": 1}),
        ]
    )
    # inventory 3 and 2 in one batch: the newer wins, the older is stale
    assert counts == {"applied": 4, "stale": 1}
    assert applied("inventory", "applied") - inv_before == 1
    assert page_domain("at_storefront", "A", "inventory") == (stock, 3)
    assert page_domain("at_storefront", "A", "media") == (media, 9)
    assert page_domain("de_storefront", "A", "media") == (media, 9)
    assert page_domain("de_storefront", "A", "pricing") == (
        {"amount": "1.50", "currency": "EUR"},
        1,
    )
    assert page_domain("de_storefront", "A", "inventory") == (None, 0)


def test_a_catalog_event_from_outside_is_refused_as_not_its_owner(pg_db: str) -> None:
    with pytest.raises(OwnershipError) as refused:
        apply([event("pricing", sku="B"), event("catalog", payload={"title": "x"})])
    assert (refused.value.source, refused.value.domain, refused.value.owner) == (
        "external",
        "catalog",
        "pimsync (from the PIM)",
    )
    assert page_domain("at_storefront", "B", "pricing") is None


def test_the_projection_lag_is_observed_per_event_and_never_negative(pg_db: str) -> None:
    s0, c0 = lag_sum("media"), lag_count("media")
    apply(
        [
            event("media", sku="A", payload={}, occurred_at=NOW - timedelta(seconds=5)),
            event("media", sku="B", payload={}, occurred_at=NOW + timedelta(seconds=30)),
        ],
        channels=["at_storefront"],
    )
    assert lag_count("media") - c0 == 2
    assert lag_sum("media") - s0 == pytest.approx(5.0)


# --- apply_catalog -------------------------------------------------------------------------


def catalog_row(sku: str, title: str, seq: int = 1) -> ChannelRow:
    return ChannelRow(
        channel="at_storefront",
        sku=sku,
        doc={"sku": sku, "title": title},
        contract_version="at@1",
        input_hash=f"h-{sku}-{title}",
        status="published",
        enabled=True,
        disabled_reason=None,
        detail=None,
        completeness=100,
        sync_run_id=None,
        synced_at=NOW,
        source_seq=seq,
    )


def test_committed_catalog_rows_become_page_catalogs_once(pg_db: str) -> None:
    with session_scope() as s:
        channel_repo.upsert_rows(s, [catalog_row("A", "Alpha"), catalog_row("B", "Beta")])
    before = applied("catalog", "applied"), applied("catalog", "stale")
    changes = {"at_storefront": ["A", "B", "MISSING"]}
    with session_scope() as s:
        assert apply_catalog(s, changes, NOW) == 2
    assert applied("catalog", "applied") - before[0] == 2
    assert applied("catalog", "stale") - before[1] == 1
    with session_scope() as s:
        page = get_page(s, "at_storefront", "A")
        assert page is not None
        assert page.catalog == {"sku": "A", "title": "Alpha"}
        assert (page.catalog_enabled, page.catalog_status) == (True, "published")
    with session_scope() as s:  # the same rows again: nothing newer to write
        assert apply_catalog(s, changes, NOW) == 0
    assert applied("catalog", "stale") - before[1] == 1 + 3


def test_no_changes_write_nothing(pg_db: str) -> None:
    with session_scope() as s:
        assert apply_catalog(s, {}, NOW) == 0


# --- check_ownership -----------------------------------------------------------------------


def test_ownership_is_checked_for_every_domain_in_the_batch() -> None:
    table = OwnershipTable()
    check_ownership(table, "erp", [event("pricing"), event("pricing", sku="B")])
    with pytest.raises(OwnershipError) as refused:
        check_ownership(table, "erp", [event("pricing"), event("media", payload={})])
    assert (refused.value.source, refused.value.domain, refused.value.owner) == (
        "erp",
        "media",
        "dam",
    )
    check_ownership(table, "erp", [])


# --- validate_events -----------------------------------------------------------------------


def validate(
    domain: str, bodies: Any, source: str = "erp", max_version: int | None = None
) -> tuple[list[DomainEvent], list[dict[str, Any]]]:
    kwargs = {} if max_version is None else {"max_version": max_version}
    return validate_events(domain, bodies, source, OwnershipTable(), CHANNELS, **kwargs)


def test_good_events_pass_each_bad_one_is_refused_alone_with_its_reason() -> None:
    bodies = [
        body(sku="GOOD-1"),
        body(sku="WRONG-QUEUE", type="inventory", payload={"quantity": 1}),
        body(sku="UNKNOWN-CHANNEL", channel="fr_storefront"),
        body(sku="GOOD-2", channel="de_storefront"),
        body(sku="NEGATIVE", payload={"amount": "-1", "currency": "EUR"}),
    ]
    good, refused = validate("pricing", bodies, source="erp")
    assert [e.sku for e in good] == ["GOOD-1", "GOOD-2"]
    assert good[1].channel == "de_storefront"
    assert [r["sku"] for r in refused] == ["WRONG-QUEUE", "UNKNOWN-CHANNEL", "NEGATIVE"]
    errors = [r["error"] for r in refused]
    # inventory is the WMS's: the ownership check comes before the queue check
    assert errors[0].startswith("event 1 from erp: ")
    assert "inventory" in errors[0] and "wms" in errors[0]
    assert errors[1] == "event 2 from erp: channel 'fr_storefront' is not configured"
    assert errors[2].startswith("event 4 from erp: ") and "negative" in errors[2]


def test_an_event_of_another_domain_on_a_queue_is_refused_naming_both() -> None:
    good, refused = validate("pricing", [body(type="inventory", payload={"quantity": 2})], "wms")
    assert good == []
    assert refused[0]["error"] == "event 0 from wms: a inventory event on the pricing queue"


def test_a_single_body_is_one_event() -> None:
    good, refused = validate("pricing", body(sku="ONE"))
    assert [e.sku for e in good] == ["ONE"] and refused == []


def test_versions_past_the_highest_accepted_are_refused_at_the_limit_exactly() -> None:
    limit = 2**53
    good, refused = validate(
        "pricing",
        [body(sku="AT", source_version=limit), body(sku="PAST", source_version=limit + 1)],
    )
    assert [e.sku for e in good] == ["AT"]
    assert refused[0]["error"] == (
        f"event 1 from erp: source_version {limit + 1} is past the highest accepted "
        f"({limit}, PIMSYNC_EVENT_MAX_SOURCE_VERSION)"
    )
    good, refused = validate("pricing", [body(source_version=11)], max_version=10)
    assert good == [] and "past the highest accepted (10," in refused[0]["error"]
    good, refused = validate("pricing", [body(source_version=10)], max_version=10)
    assert len(good) == 1 and refused == []


def test_a_dead_letter_carries_everything_a_person_needs_and_nothing_unstorable() -> None:
    before = datetime.now(UTC)
    _, refused = validate("pricing", [body(sku="S1", channel="nowhere")])
    after = datetime.now(UTC)
    letter = refused[0]
    assert {k: v for k, v in letter.items() if not k.endswith("failed_at")} == {
        "channel": "events.pricing",
        "sku": "S1",
        "run_id": None,
        "kind": "event",
        "error_type": "InvalidEvent",
        "error": "event 0 from erp: channel 'nowhere' is not configured",
        "permanent": True,
        "attempts": 1,
        "status": "open",
    }
    assert before <= letter["first_failed_at"] == letter["last_failed_at"] <= after


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("not an object", "<no sku>"),
        ({"type": "pricing"}, "<no sku>"),
        ({"type": "pricing", "sku": ""}, "<no sku>"),
        ({"type": "pricing", "sku": 42}, "<no sku>"),
        ({"type": "pricing", "sku": "X" * 300}, "X" * 252 + "..."),
    ],
)
def test_a_refused_event_names_its_sku_when_it_has_a_usable_one(raw: Any, shown: str) -> None:
    good, refused = validate("pricing", [raw])
    assert good == []
    assert refused[0]["sku"] == shown
    assert refused[0]["error"].startswith("event 0 from erp: ")


def test_a_long_error_is_cut_to_what_the_dead_letter_table_holds() -> None:
    queue = "q" * 5000  # a queue name is not bounded by the event schema
    _, refused = validate_events(queue, [body()], "erp", OwnershipTable(), CHANNELS)
    assert len(refused[0]["error"]) == 4000
    assert refused[0]["error"].startswith("event 0 from erp: a pricing event on the qqq")


def test_a_batch_written_whole_counts_nothing_stale(pg_db: str) -> None:
    with session_scope() as s:
        channel_repo.upsert_rows(s, [catalog_row("C", "Gamma")])
    stale = applied("catalog", "stale")
    with session_scope() as s:
        assert apply_catalog(s, {"at_storefront": ["C"]}, NOW) == 1
    assert applied("catalog", "stale") - stale == 0
