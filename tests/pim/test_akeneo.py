"""AkeneoRestSource against the reference PIM over real HTTP (no mocked transport)."""

from __future__ import annotations

import multiprocessing
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.config import reset_settings_cache
from app.dev.reference_server import serve_in_thread
from app.pim.akeneo import AkeneoRestSource, format_pim_datetime, retry_after_seconds
from app.pim.ratelimit import LocalSemaphore, RedisSemaphore
from app.pim.source import PimThrottled, SourceError, TransientSourceError
from app.pim.sources import open_source
from app.pim.throttle import LocalGate
from tests.pim.reference_data import CLIENT, RunningPim, catalog, product, running_pim, value

SPAWN = multiprocessing.get_context("spawn")


class Sleeps(list[float]):
    """An injected ``sleep`` that records the delays instead of waiting; ``time`` is a wall
    clock that only those sleeps move forward (from the real time at creation)."""

    def __init__(self) -> None:
        super().__init__()
        self.start = time.time()

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    def time(self) -> float:
        return self.start + sum(self)


def make_source(url: str, **options: Any) -> AkeneoRestSource:
    sleeps = Sleeps()
    args: dict[str, Any] = {
        **CLIENT,
        "limiter": LocalSemaphore(4),
        "gate": LocalGate(),
        "sleep": sleeps,
        "wall": sleeps.time,
        "backoff_base": 0.5,
        "backoff_max": 10.0,
        "max_retries": 4,
        "timezone": "UTC",
        "timeout": 10.0,
    }
    args.update(options)
    return AkeneoRestSource(url, **args)


@pytest.fixture()
def sources() -> Iterator[Callable[..., AkeneoRestSource]]:
    made: list[AkeneoRestSource] = []

    def factory(url: str, **options: Any) -> AkeneoRestSource:
        made.append(make_source(url, **options))
        return made[-1]

    yield factory
    for source in made:
        source.close()


@pytest.fixture()
def pim() -> Iterator[RunningPim]:
    with running_pim(catalog(237)) as running:
        yield running


def skus(items: list[dict[str, Any]]) -> list[str]:
    return [item["values"]["sku"][0]["data"] for item in items]


# --- reading --------------------------------------------------------------------------------


def test_full_read_returns_every_product_exactly_once(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url)
    pages = list(source.iter_pages(page_size=10))

    assert [len(p.items) for p in pages] == [10] * 23 + [7]
    read = [sku for page in pages for sku in skus(page.items)]
    assert len(read) == len(set(read)) == 237
    assert set(read) == {f"SKU-{i:04d}" for i in range(237)}
    # cursors are the server's next links, followed verbatim; the last page has none
    assert all(p.next_cursor and "search_after=" in p.next_cursor for p in pages[:-1])
    assert pages[-1].next_cursor is None
    assert all(p.next_cursor.startswith(pim.url) for p in pages[:-1])  # type: ignore[union-attr]


def test_a_pages_response_is_freed_without_the_cyclic_collector(
    pim: RunningPim, sources: Any
) -> None:
    """The reader pauses the cyclic collector while it reads: a page's HTTP response (and its
    body, ~2.5 MB for 100 products) must go with its last reference, not wait in a cycle for
    the next collection."""
    import gc
    import weakref

    source = sources(pim.url)
    client = source._client
    responses: list[weakref.ref[Any]] = []
    real = client.request

    def request(*args: Any, **kwargs: Any) -> Any:
        response = real(*args, **kwargs)
        responses.append(weakref.ref(response))
        return response

    client.request = request  # type: ignore[method-assign]
    gc.collect()
    gc.disable()
    try:
        pages = 0
        for page in source.iter_pages(page_size=50):
            pages += 1
            del page
        assert pages == 5 and len(responses) >= 5
        assert [ref() for ref in responses] == [None] * len(responses)
    finally:
        gc.enable()


def test_resume_continues_after_the_given_page(pim: RunningPim, sources: Any) -> None:
    first = sources(pim.url)
    head = []
    for page in first.iter_pages(page_size=25):
        head.append(page)
        if len(head) == 3:
            break
    # a new worker picks up where the killed one stopped
    rest = list(sources(pim.url).iter_pages(page_size=25, resume=head[-1].next_cursor))

    before = [s for p in head for s in skus(p.items)]
    after = [s for p in rest for s in skus(p.items)]
    assert len(before) == 75 and len(after) == 237 - 75
    assert not set(before) & set(after)


def test_resume_cursor_on_another_host_is_refused(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url)
    with pytest.raises(SourceError, match="points outside the PIM"):
        list(source.iter_pages(resume="http://elsewhere.example/api/rest/v1/products-uuid"))


@pytest.mark.parametrize("page_size", [0, 101, -5, True, 2.5])
def test_page_size_out_of_range_is_rejected(pim: RunningPim, sources: Any, page_size: Any) -> None:
    source = sources(pim.url)
    with pytest.raises(ValueError, match="page_size must be"):
        list(source.iter_pages(page_size=page_size))
    assert pim.stats()["requests"] == 0


def test_get_by_identifier_uuid_and_model(sources: Any) -> None:
    odd = product("A/B 1+2", values={"name": [value("Odd", "en_US")]})
    with running_pim(catalog(3, products=[odd])) as pim:
        source = sources(pim.url)
        found = source.get("A/B 1+2")
        assert found is not None and skus([found]) == ["A/B 1+2"]
        assert found["values"]["name"] == [value("Odd", "en_US")]
        assert source.get("SKU-9999") is None

        by_uuid = source.get_by_uuid(found["uuid"])
        assert by_uuid is not None and skus([by_uuid]) == ["A/B 1+2"]
        assert source.get_by_uuid(str(uuid.uuid4())) is None

        model = source.get_model("model-boot")  # Akeneo codes ignore case
        assert model is not None and model["code"] == "Model-Boot"
        assert source.get_model("no-such-model") is None
        assert [m["code"] for m in source.iter_models()] == ["Model-Boot"]


def test_definitions_follow_pagination_and_read_options(sources: Any) -> None:
    with running_pim(catalog(1, extra_attributes=150, color_options=120)) as pim:
        source = sources(pim.url)
        defs = source.definitions()
        assert len(defs.attributes) == 153  # two pages of 100
        assert defs.attributes["name"].localizable
        assert len(defs.options["color"]) == 120
        assert defs.options["color"]["c007"] == {"en_US": "Colour 7"}
        assert set(defs.families) == {"shoes"}
        assert defs.channels["ecommerce"].currencies == ("EUR",)
        assert defs.category_root("shoes") == "master"
        requests = pim.stats()["requests"]
        assert source.definitions() is defs  # cached: no more requests
        assert pim.stats()["requests"] == requests


# --- delta reads and time zones -------------------------------------------------------------


def test_updated_since_is_sent_in_the_pim_time_zone(sources: Any) -> None:
    winter = datetime(2024, 1, 10, 12, 0, 0, tzinfo=UTC)  # Berlin is UTC+1
    summer = datetime(2024, 7, 10, 12, 0, 0, tzinfo=UTC)  # Berlin is UTC+2
    products = []
    for season, moment in (("W", winter), ("S", summer)):
        for label, offset in (("before", -1), ("at", 0), ("after", 1)):
            stamp = (moment + timedelta(seconds=offset)).isoformat()
            products.append(product(f"{season}-{label}", updated=stamp))
    with running_pim(catalog(products=products), timezone="Europe/Berlin") as pim:
        source = sources(pim.url, timezone="Europe/Berlin")

        def delta(since: datetime) -> set[str]:
            return {s for page in source.iter_pages(since) for s in skus(page.items)}

        # strictly after the boundary second: the product updated *at* it is excluded
        assert delta(winter) == {"W-after", "S-before", "S-at", "S-after"}
        assert delta(summer) == {"S-after"}
        # the same instant in another zone, and a naive datetime (= UTC), mean the same
        assert delta(summer.astimezone(ZoneInfo("America/New_York"))) == {"S-after"}
        assert delta(summer.replace(tzinfo=None)) == {"S-after"}
        # sub-second parts are dropped: re-reading the boundary second beats missing it
        assert delta(summer + timedelta(milliseconds=500)) == {"S-after"}

        # a client that ignored the PIM's zone would ask for the wrong second
        naive_client = sources(pim.url, timezone="UTC")
        wrong = {s for page in naive_client.iter_pages(summer) for s in skus(page.items)}
        assert wrong == {"S-before", "S-at", "S-after"}


def test_format_pim_datetime() -> None:
    moment = datetime(2024, 7, 10, 12, 0, 5, 999_000, tzinfo=UTC)
    assert format_pim_datetime(moment, ZoneInfo("Europe/Berlin")) == "2024-07-10 14:00:05"
    assert (
        format_pim_datetime(moment.replace(tzinfo=None), ZoneInfo("UTC")) == "2024-07-10 12:00:05"
    )


def test_admin_edits_and_deletes_show_in_the_next_delta_read(sources: Any) -> None:
    with running_pim(catalog(20), timezone="Europe/Berlin") as pim:
        source = sources(pim.url, timezone="Europe/Berlin")
        since = datetime.now(UTC) - timedelta(seconds=5)
        assert [p.items for p in source.iter_pages(since)] == [[]]

        new = product("ignored")
        del new["updated"]  # the server stamps it
        pim.admin.put("/_admin/products/NEW-1", json=new).raise_for_status()
        patched = {"values": {"name": [value("Renamed", "en_US")]}}
        pim.admin.patch("/_admin/products/SKU-0003", json=patched).raise_for_status()
        assert pim.admin.delete("/_admin/products/SKU-0004").status_code == 204

        changed = [item for page in source.iter_pages(since) for item in page.items]
        assert sorted(skus(changed)) == ["NEW-1", "SKU-0003"]
        renamed = next(i for i in changed if skus([i]) == ["SKU-0003"])
        assert value("Renamed", "en_US") in renamed["values"]["name"]
        assert value("Nom de SKU-0003", "fr_FR") in renamed["values"]["name"]
        assert source.get("SKU-0004") is None
        everything = [s for page in source.iter_pages() for s in skus(page.items)]
        assert len(everything) == 20 and "SKU-0004" not in everything and "NEW-1" in everything


# --- OAuth ----------------------------------------------------------------------------------


def test_token_refreshed_shortly_before_expiry(pim: RunningPim, sources: Any) -> None:
    now = [1000.0]
    source = sources(pim.url, clock=lambda: now[0])
    next(source.iter_pages(page_size=5))
    assert (source.stats["logins"], source.stats["refreshes"]) == (1, 0)

    now[0] += 3600 - 120  # still well inside the hour
    source.get("SKU-0001")
    assert source.stats["refreshes"] == 0

    now[0] += 70  # within the last minute of the token's life: refresh before it fails
    source.get("SKU-0001")
    assert (source.stats["logins"], source.stats["refreshes"]) == (1, 1)
    assert source.stats["unauthorized"] == 0
    assert pim.stats()["by_status"].get("401", 0) == 0


def test_short_lived_token_is_refreshed_in_real_time(sources: Any) -> None:
    with running_pim(catalog(30), token_ttl=1) as pim:
        source = sources(pim.url)
        pages = source.iter_pages(page_size=10)
        next(pages)
        time.sleep(1.05)
        assert len(list(pages)) == 2
        assert source.stats["refreshes"] == 1 and source.stats["unauthorized"] == 0


def test_revoked_token_is_refreshed_once_and_the_call_retried(
    pim: RunningPim, sources: Any
) -> None:
    source = sources(pim.url)
    assert source.get("SKU-0001") is not None
    pim.admin.post("/_admin/tokens/revoke?keep_refresh=true").raise_for_status()
    assert source.get("SKU-0002") is not None
    assert source.stats["unauthorized"] == 1
    assert (source.stats["logins"], source.stats["refreshes"]) == (1, 1)

    # refresh token gone as well: log in again
    pim.admin.post("/_admin/tokens/revoke").raise_for_status()
    assert source.get("SKU-0003") is not None
    assert (source.stats["logins"], source.stats["refreshes"]) == (2, 2)


def test_bad_credentials_are_a_clear_permanent_error(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url, password="wrong")
    with pytest.raises(SourceError) as info:
        list(source.iter_pages())
    assert not isinstance(info.value, TransientSourceError)
    message = str(info.value)
    assert pim.url in message and "rejected the API credentials" in message
    assert "No user found" in message and "wrong" not in message

    with pytest.raises(SourceError, match="does not match any client"):
        sources(pim.url, secret="nope").get("SKU-0001")
    with pytest.raises(SourceError, match="credentials are not configured"):
        sources(pim.url, client_id="").get("SKU-0001")


# --- retries --------------------------------------------------------------------------------


def test_429_and_500_are_retried_with_retry_after_and_growing_backoff(
    pim: RunningPim, sources: Any
) -> None:
    source = sources(pim.url, jitter=lambda: 1.0)  # the top of each jitter range
    source.get("SKU-0000")  # log in first: faults then hit the product calls only
    pim.faults(fail_next=[429, 500, 500], retry_after=2)

    page = next(source.iter_pages(page_size=10))

    assert len(page.items) == 10
    # Retry-After honoured (plus at most backoff_base of spread), then 0.5 * 2**attempt
    assert source._sleep == [2.5, 1.0, 2.0]
    assert source.stats["retries"] == 3
    by_status = pim.stats()["by_status"]
    assert (by_status["429"], by_status["500"]) == (1, 2)


def test_backoff_jitter_stays_within_its_bounds(pim: RunningPim, sources: Any) -> None:
    rng = random.Random(7)
    source = sources(pim.url, jitter=rng.random, max_retries=6, backoff_max=3.0)
    source.get("SKU-0000")
    pim.faults(fail_next=[503] * 6)

    assert source.get("SKU-0001") is not None

    delays = source._sleep
    ceilings = [min(3.0, 0.5 * 2**i) for i in range(6)]
    assert len(delays) == 6
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert delays != ceilings  # jittered, not the bare exponential


def test_retry_after_http_date_and_seconds() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Wed, 01 May 2024 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 01 May 2024 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_retry_after_junk_and_extremes() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 86400000 ", now) == 86_400.0  # a day at most, then ask again
    assert retry_after_seconds("-5", now) == 0.0
    for junk in ("inf", "nan", "", "Wed, 99 Foo 2024", "12 s"):
        assert retry_after_seconds(junk, now) is None, junk


def test_long_retry_after_defers_instead_of_sleeping_and_holds_every_worker(
    pim: RunningPim, sources: Any
) -> None:
    gate = LocalGate()
    source = sources(pim.url, gate=gate, max_sleep=30.0)
    other = sources(pim.url, gate=gate, max_sleep=30.0)  # another worker, same connection
    source.get("SKU-0000")
    other.get("SKU-0000")
    pim.faults(fail_next=[429], retry_after=120)
    pim.reset_stats()
    asked_at = source._sleep.time()  # the source's clock (only its sleeps move it)

    with pytest.raises(PimThrottled) as info:
        source.get("SKU-0001")

    assert source._sleep == []  # no worker held for two minutes
    not_before = info.value.not_before.timestamp()
    # 120 s, plus at most the spread (min(backoff_base, 1 s)) on top
    assert asked_at + 120 <= not_before <= asked_at + 120.5
    assert info.value.status == 429
    # the other worker does not even call: the PIM asked the connection for quiet
    with pytest.raises(PimThrottled) as second:
        other.get("SKU-0002")
    assert second.value.not_before.timestamp() == not_before
    assert pim.stats()["requests"] == 1
    # once its clock is past the instant, it calls again
    other._sleep.append(not_before - other._sleep.time() + 0.001)
    assert other.get("SKU-0002") is not None
    assert pim.stats()["by_status"] == {"429": 1, "200": 1}


def test_short_retry_after_is_slept_by_every_worker_of_the_connection(
    pim: RunningPim, sources: Any
) -> None:
    gate = LocalGate()
    source = sources(pim.url, gate=gate, jitter=lambda: 0.0)
    other = sources(pim.url, gate=gate, jitter=lambda: 0.0)
    source.get("SKU-0000")
    other.get("SKU-0000")
    pim.faults(fail_next=[429], retry_after=20)
    assert source.get("SKU-0001") is not None
    assert source._sleep == [20.0]
    # the other worker's clock has not moved: it sleeps until the instant before calling
    assert other.get("SKU-0001") is not None
    assert len(other._sleep) == 1 and 19.0 < other._sleep[0] <= 20.0


def test_retry_after_as_an_http_date_is_honoured(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url, max_sleep=30.0)
    source.get("SKU-0000")
    pim.faults(fail_next=[429], retry_after=90, retry_after_date=True)
    with pytest.raises(PimThrottled) as info:
        source.get("SKU-0001")
    # the date names a whole second 90-91 s ahead of the server's clock; the wait is read
    # against the real clock and applied to the source's (which only its sleeps move)
    wait = info.value.not_before.timestamp() - source._sleep.time()
    assert 88 <= wait <= 92.5, wait


def test_junk_retry_after_falls_back_to_backoff(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url, jitter=lambda: 1.0)
    source.get("SKU-0000")
    pim.faults(fail_next=[429, 429], retry_after_raw="soon")
    assert source.get("SKU-0001") is not None
    assert source._sleep == [0.5, 1.0]


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504])
def test_transient_statuses_are_retried(pim: RunningPim, sources: Any, status: int) -> None:
    source = sources(pim.url, jitter=lambda: 1.0)
    source.get("SKU-0000")
    pim.faults(fail_next=[status, status])
    assert source.get("SKU-0001") is not None
    assert source._sleep == [0.5, 1.0]
    assert source.stats["retries"] == 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "HTTP 400: Invalid json message received"),
        (403, "HTTP 403: You are not allowed to access the web API. (check the API user's"),
        (404, "HTTP 404: Resource not found."),
        (
            422,
            'HTTP 422: Validation failed. errors: [{"property":"values","message":"The \\"sku\\" '
            'attribute is not an identifier."},{"property":"search","message":"Filter on '
            'property \\"updated\\" is invalid."}]',
        ),
        (501, "HTTP 501: Injected failure"),
    ],
)
def test_other_statuses_are_permanent_with_akeneo_body_verbatim(
    pim: RunningPim, sources: Any, status: int, expected: str
) -> None:
    source = sources(pim.url)
    source.get("SKU-0000")
    pim.reset_stats()
    pim.faults(fail_next=[status])
    with pytest.raises(SourceError) as info:
        list(source.iter_pages(page_size=10))
    assert not isinstance(info.value, TransientSourceError)
    assert expected in str(info.value)
    assert source._sleep == [] and pim.stats()["requests"] == 1


def test_exhausted_retries_raise_a_transient_error(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url, max_retries=3)
    source.get("SKU-0000")
    pim.reset_stats()
    pim.faults(rate_500=1.0)
    with pytest.raises(TransientSourceError, match=r"still failing after 4 attempts: HTTP 500"):
        list(source.iter_pages())
    assert len(source._sleep) == 3
    assert pim.stats()["by_status"] == {"500": 4}


def test_unreachable_pim_is_transient(sources: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = sources(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(TransientSourceError, match=r"after 3 attempts: ConnectError"):
        source.get("SKU-1")
    assert len(source._sleep) == 2


def test_malformed_json_page_is_retried_then_a_source_error(pim: RunningPim, sources: Any) -> None:
    source = sources(pim.url)
    source.get("SKU-0000")
    pim.faults(malformed_pages=1)
    assert len(next(source.iter_pages(page_size=10)).items) == 10  # a truncated body, retried

    pim.faults(malformed_pages=3)
    with pytest.raises(SourceError) as info:
        list(source.iter_pages(page_size=10))
    assert not isinstance(info.value, TransientSourceError)
    assert f"malformed page at {pim.url}/api/rest/v1/products-uuid?" in str(info.value)
    assert "not valid JSON" in str(info.value)


def odd_pim() -> FastAPI:
    """A server that answers the token call properly and then sends odd product pages."""
    app = FastAPI()

    @app.post("/api/oauth/v1/token")
    async def token() -> dict[str, Any]:
        return {"access_token": "t", "expires_in": 3600, "refresh_token": "r"}

    @app.get("/api/rest/v1/products-uuid")
    async def products(request: Request, kind: str = "") -> Response:
        bodies: dict[str, Any] = {
            "loop": {
                "_links": {"next": {"href": str(request.url)}},
                "_embedded": {"items": [{"uuid": "a"}]},
            },
            "no-items": {"_links": {}, "_embedded": {}},
            "list": [1, 2],
            "not-objects": {"_embedded": {"items": [{"uuid": "a"}, "b"]}},
            "foreign-next": {
                "_links": {"next": {"href": "http://elsewhere.example/next"}},
                "_embedded": {"items": []},
            },
        }
        return JSONResponse(bodies[kind])

    @app.get("/api/rest/v1/products-uuid/{uid}")
    async def forbidden(uid: str) -> Response:
        return JSONResponse({"code": 403, "message": "You are not allowed"}, 403)

    return app


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("no-items", "no `_embedded.items` list"),
        ("list", "expected an object, got list"),
        ("not-objects", "item 1 is str, not an object"),
        ("foreign-next", "points outside the PIM"),
        ("loop", "links to itself as next page"),
    ],
)
def test_malformed_page_names_the_url_and_the_problem(
    sources: Any, kind: str, problem: str
) -> None:
    with serve_in_thread(odd_pim()) as url:
        source = sources(url)
        resume = f"{url}/api/rest/v1/products-uuid?kind={kind}"
        with pytest.raises(SourceError, match=problem) as info:
            list(source.iter_pages(resume=resume))
        assert resume in str(info.value)


def test_other_client_errors_carry_status_and_akeneo_message(sources: Any) -> None:
    with serve_in_thread(odd_pim()) as url:
        with pytest.raises(SourceError, match=r"HTTP 403: You are not allowed") as info:
            sources(url).get_by_uuid("0b5d7a8e-0000-4000-8000-000000000001")
        assert not isinstance(info.value, TransientSourceError)


# --- construction ---------------------------------------------------------------------------


def test_from_settings_and_open_source(pim: RunningPim, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, setting in CLIENT.items():
        key = "PIMSYNC_AKENEO_" + ("CLIENT_ID" if name == "client_id" else name.upper())
        monkeypatch.setenv(key, setting)
    monkeypatch.setenv("PIMSYNC_AKENEO_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("PIMSYNC_REDIS_URL", "none")  # no Redis: an in-process limiter
    reset_settings_cache()
    try:
        source = open_source(pim.url + "/", max_retries=1)
        assert isinstance(source, AkeneoRestSource)
        assert source.name == pim.url and source.max_retries == 1
        assert str(source.timezone) == "Europe/Paris"
        assert isinstance(source.limiter, LocalSemaphore) and source.limiter.limit == 4
        assert source.get("SKU-0001") is not None
        source.close()
    finally:
        monkeypatch.undo()
        reset_settings_cache()


# --- shared concurrency limit ---------------------------------------------------------------


def _read_everything(url: str, redis_url: str, name: str) -> None:
    limiter = RedisSemaphore(redis_url, name, 2, lease_seconds=30)
    source = make_source(url, limiter=limiter)
    try:
        count = sum(len(p.items) for p in source.iter_pages(page_size=10))
    finally:
        source.close()
    if count != 60:
        raise SystemExit(f"read {count} products, expected 60")


@pytest.mark.redis
def test_shared_redis_limit_caps_concurrent_calls_across_processes(redis_url: str) -> None:
    name = f"test-akeneo-{uuid.uuid4().hex}"
    with running_pim(catalog(60), faults={"latency_ms": 40}) as pim:
        processes = [
            SPAWN.Process(target=_read_everything, args=(pim.url, redis_url, name))
            for _ in range(2)
        ]
        for p in processes:
            p.start()
        errors: list[BaseException] = []

        def thread_reader() -> None:
            try:
                _read_everything(pim.url, redis_url, name)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=thread_reader) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for p in processes:
            p.join(timeout=60)
            assert p.exitcode == 0
        assert not errors

        stats = pim.stats()
        # 5 readers x (token + 6 pages): all served, never more than 2 at once
        assert stats["by_status"] == {"200": 35}
        assert stats["max_concurrent"] == 2

        # the same readers without the shared limit do overlap (the measure can fail)
        pim.reset_stats()
        sources = [make_source(pim.url, limiter=LocalSemaphore(10)) for _ in range(4)]
        unlimited = [
            threading.Thread(target=lambda s=s: list(s.iter_pages(page_size=10))) for s in sources
        ]
        for t in unlimited:
            t.start()
        for t in unlimited:
            t.join(timeout=60)
        for s in sources:
            s.close()
        assert pim.stats()["max_concurrent"] > 2
