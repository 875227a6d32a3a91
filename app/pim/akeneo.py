"""``AkeneoRestSource``: the PimSource protocol over Akeneo's REST API (sync httpx).

- OAuth password grant, refreshed shortly before expiry and once more on a 401.
- Products through ``/products-uuid`` with ``search_after`` pagination; the ``next`` link is
  followed verbatim and is the resume cursor, so a killed export continues where it stopped.
- 408, 425, 429, 500, 502, 503, 504 (``app.errors``), timeouts and connection errors are
  retried with exponential backoff and full jitter; after the last attempt
  ``TransientSourceError`` lets the Celery task retry later. Other failures are ``SourceError``
  naming the PIM, with Akeneo's ``message`` and ``errors[]`` verbatim.
- ``Retry-After`` (seconds or an HTTP date) is honoured whatever its length: the instant it
  names is shared with every worker of the connection (``app.pim.throttle``) and checked before
  any request; a wait up to PIMSYNC_AKENEO_RETRY_AFTER_SLEEP_MAX_SECONDS is slept, a longer one
  raises ``PimThrottled`` so the task is deferred to that instant instead of holding a worker.
- Every HTTP call holds a slot of a concurrency limiter shared by all workers (Akeneo allows a
  few concurrent calls per connection).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import orjson

from app.config import get_settings
from app.errors import is_transient_status
from app.logging import get_logger
from app.pim.catalog import (
    IDENTIFIER_TYPE,
    SELECT_TYPES,
    CatalogDefinitions,
    DefinitionError,
    build_definitions,
)
from app.pim.ratelimit import (
    Limiter,
    LocalSemaphore,
    RedisSemaphore,
    SemaphoreTimeout,
    SemaphoreUnavailable,
)
from app.pim.source import Page, PimThrottled, SourceError, TransientSourceError
from app.pim.throttle import Gate, LocalGate, RedisGate, connection_key

log = get_logger("pimsync.akeneo")

API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"
MAX_PAGE_SIZE = 100
# uuids per `search={"uuid":[{"operator":"IN",...}]}` request: one page of the largest size
# holds the answer, and the URL stays far below what servers accept (100 x 36 characters).
UUID_BATCH = 100
# Refresh this long before the token expires (capped at a tenth of its lifetime so a short
# lived token is not refreshed on every call).
REFRESH_MARGIN_SECONDS = 60.0
# A 200 whose body is not JSON is usually a truncated transfer: worth a couple more tries.
MALFORMED_BODY_RETRIES = 2
# At most this much spread is added to a Retry-After wait, so the workers told the same
# instant do not all come back in the same millisecond (never less than the PIM asked).
RETRY_AFTER_SPREAD_SECONDS = 1.0
# A Retry-After past a day is junk (or a PIM that is gone): waited a day, then asked again.
MAX_RETRY_AFTER_SECONDS = 86_400.0
# Instants are sums of floats: a wait this much short of one is rounding, not a wait.
CLOCK_EPSILON_SECONDS = 1e-6


# Limiters used when none is given, shared by every source of the process with the same name
# (so two sources on one connection do not each get the full limit).
_local_limiters: dict[str, LocalSemaphore] = {}
_local_limiters_lock = threading.Lock()
_local_gates: dict[str, LocalGate] = {}
# Parallel readers of attribute options; the concurrency limiter still caps the calls.
OPTION_READERS = 4


def _message(response: httpx.Response) -> str:
    """Akeneo's ``message`` field, or the start of whatever the server sent instead."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        text = response.text.strip().replace("\n", " ")
        return text[:200] or "(empty body)"
    if isinstance(body, dict) and body.get("message"):
        # verbatim: the operator reads Akeneo's own words (its 422 format lists every
        # invalid property in `errors`), as the PIM sent them
        message = str(body["message"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            message = f"{message} errors: {orjson.dumps(errors).decode()}"
        return message
    return response.text[:200]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (it is either a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf", "nan" and the like are junk: backoff instead
        return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, wait), MAX_RETRY_AFTER_SECONDS)


def format_pim_datetime(moment: datetime, timezone: ZoneInfo) -> str:
    """``moment`` as Akeneo's search filters expect it: local time of the PIM server.

    A naive datetime means UTC (as in ``parse_datetime``). Sub-second parts are dropped, which
    makes ``>`` include the second ``moment`` falls in: re-reading a product is harmless,
    missing one is not.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(timezone).strftime("%Y-%m-%d %H:%M:%S")


def _default_limiter(base_url: str, client_id: str, lease_seconds: float) -> Limiter:
    settings = get_settings()
    name = f"akeneo:{base_url}|{client_id}"
    if settings.redis_url and settings.redis_url.lower() not in ("none", "local"):
        return RedisSemaphore(
            settings.redis_url, name, settings.akeneo_max_concurrency, lease_seconds=lease_seconds
        )
    with _local_limiters_lock:
        limiter = _local_limiters.get(name)
        if limiter is None:
            limiter = LocalSemaphore(settings.akeneo_max_concurrency, name=name)
            _local_limiters[name] = limiter
        return limiter


def _default_gate(base_url: str, client_id: str) -> Gate:
    settings = get_settings()
    key = connection_key(base_url, client_id)
    if settings.redis_url and settings.redis_url.lower() not in ("none", "local"):
        return RedisGate(settings.redis_url, key, base_url)
    with _local_limiters_lock:
        return _local_gates.setdefault(key, LocalGate(key, base_url))


class AkeneoRestSource:
    """Products and catalog definitions read from an Akeneo PIM over its REST API.

    Unset tuning arguments come from settings. ``sleep``, ``clock`` (monotonic), ``wall``
    (epoch seconds, the shared "not before" instants) and ``jitter`` are injectable so tests
    can run fast and check the delays; ``max_retries`` counts retries after
    the first attempt. A single instance may be shared by threads.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        secret: str,
        username: str,
        password: str,
        timezone: str | None = None,
        limiter: Limiter | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        slot_timeout: float | None = None,
        max_sleep: float | None = None,
        gate: Gate | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = get_settings()
        self.base_url = base_url.rstrip("/")
        self.name = self.base_url
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError(f"Akeneo URL {base_url!r} is not an http(s) URL")
        self._origin = _origin(self.base_url)
        self._client_id = client_id
        self._secret = secret
        self._username = username
        self._password = password
        tz_name = timezone or settings.akeneo_timezone
        try:
            self.timezone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise SourceError(f"Akeneo at {self.base_url}: unknown time zone {tz_name!r}") from None
        self.timeout = timeout if timeout is not None else settings.akeneo_timeout_seconds
        self.max_retries = max_retries if max_retries is not None else settings.akeneo_max_retries
        self.backoff_base = (
            backoff_base if backoff_base is not None else settings.akeneo_backoff_base_seconds
        )
        self.backoff_max = (
            backoff_max if backoff_max is not None else settings.akeneo_backoff_max_seconds
        )
        # Retry-After waits up to this long are slept; longer ones defer the task.
        self.max_sleep = (
            max_sleep if max_sleep is not None else settings.akeneo_retry_after_sleep_max_seconds
        )
        self._owns_gate = gate is None
        self.gate = gate or _default_gate(self.base_url, client_id)
        # httpx applies the timeout to each phase (connect, write, each read), so one call may
        # take a few timeouts: the lease must outlast that or the slot would be handed on early.
        self._owns_limiter = limiter is None
        self.limiter = limiter or _default_limiter(
            self.base_url, client_id, lease_seconds=max(60.0, 4 * self.timeout)
        )
        # Waiting for a slot longer than a few calls' worth means the PIM is saturated by
        # others: give up and let the task retry later.
        self.slot_timeout = slot_timeout if slot_timeout is not None else 5 * self.timeout
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._wall = wall
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            headers={"Accept": "application/json", "User-Agent": "pimsync"},
            transport=transport,
        )
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._renew_at = 0.0
        self._definitions: CatalogDefinitions | None = None
        self._identifier_attribute: str | None = None
        self.stats: dict[str, int | float] = {
            "requests": 0,
            "retries": 0,
            "logins": 0,
            "refreshes": 0,
            "unauthorized": 0,
            "slept_seconds": 0.0,
            "deferred": 0,
        }

    @classmethod
    def from_settings(cls, base_url: str, **options: Any) -> AkeneoRestSource:
        """A source on ``base_url`` with credentials from settings; ``options`` override any."""
        settings = get_settings()
        args: dict[str, Any] = {
            "client_id": settings.akeneo_client_id,
            "secret": settings.akeneo_secret.get_secret_value(),
            "username": settings.akeneo_username,
            "password": settings.akeneo_password.get_secret_value(),
        }
        args.update(options)
        return cls(base_url, **args)

    def __repr__(self) -> str:
        return f"AkeneoRestSource({self.base_url!r})"

    def close(self) -> None:
        self._client.close()
        if self._owns_limiter and isinstance(self.limiter, RedisSemaphore):
            self.limiter.close()
        if self._owns_gate:
            self.gate.close()

    def __enter__(self) -> AkeneoRestSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- products ------------------------------------------------------------------------

    def iter_pages(
        self,
        updated_since: datetime | None = None,
        page_size: int = 100,
        resume: str | None = None,
    ) -> Iterator[Page]:
        """Products updated strictly after ``updated_since`` (all when None), page by page.

        ``resume`` is a ``next_cursor`` of an earlier page: the export continues with the page
        after it (the filter is part of the cursor, so ``updated_since`` is then ignored).
        """
        _check_page_size(page_size)
        if resume is not None:
            url, params = self._checked_link(resume, "resume cursor"), None
        else:
            url = f"{self.base_url}{API}/products-uuid"
            # with_count: the first page says how many products the read will return (the
            # run's progress total); the next links do not ask again
            params = {
                "pagination_type": "search_after",
                "limit": str(page_size),
                "with_count": "true",
            }
            if updated_since is not None:
                since = format_pim_datetime(updated_since, self.timezone)
                params["search"] = orjson.dumps(
                    {"updated": [{"operator": ">", "value": since}]}
                ).decode()
        return self._iter_list(url, params)

    def iter_models(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every product model, in standard format."""
        _check_page_size(page_size)
        url = f"{self.base_url}{API}/product-models"
        params = {"pagination_type": "search_after", "limit": str(page_size)}
        for page in self._iter_list(url, params):
            yield from page.items

    def get(self, identifier: str) -> dict[str, Any] | None:
        """One product by its identifier (SKU), searched through ``products-uuid`` on the
        identifier attribute: the identifier endpoints (``/products/{code}``) are not used."""
        found = self.get_many_by_identifier([identifier])
        return found.get(identifier)

    def get_by_uuid(self, uuid: str) -> dict[str, Any] | None:
        return self._get_one(f"{API}/products-uuid/{quote(uuid, safe='')}")

    def get_many_by_uuid(self, uuids: list[str]) -> dict[str, dict[str, Any]]:
        """The products of ``uuids`` the PIM has, by (lower-case) uuid: one search request
        per ``UUID_BATCH`` uuids (``search={"uuid":[{"operator":"IN",...}]}``)."""
        wanted = list(dict.fromkeys(u.lower() for u in uuids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), UUID_BATCH):
            chunk = wanted[start : start + UUID_BATCH]
            for item in self._search({"uuid": [{"operator": "IN", "value": chunk}]}):
                uid = item.get("uuid")
                if isinstance(uid, str):
                    found[uid.lower()] = item
        return found

    def get_many_by_identifier(self, identifiers: list[str]) -> dict[str, dict[str, Any]]:
        """The products of ``identifiers`` the PIM has, by identifier: one search request on
        the identifier attribute per ``UUID_BATCH`` identifiers."""
        attribute = self.identifier_attribute()
        wanted = list(dict.fromkeys(identifiers))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), UUID_BATCH):
            chunk = wanted[start : start + UUID_BATCH]
            for item in self._search({attribute: [{"operator": "IN", "value": chunk}]}):
                for entry in (item.get("values") or {}).get(attribute) or ():
                    data = entry.get("data") if isinstance(entry, dict) else None
                    if isinstance(data, str) and data in chunk:
                        found[data] = item
        return found

    def iter_variants(self, model_code: str) -> Iterator[dict[str, Any]]:
        """Every variant product under a product model (root or sub-model), through
        ``products-uuid`` with ``search={"parent":[{"operator":"=","value":CODE}]}``."""
        return self._search({"parent": [{"operator": "=", "value": model_code}]})

    def identifier_attribute(self) -> str:
        """The attribute holding the SKU: ``PIMSYNC_IDENTIFIER_ATTRIBUTE`` when set, else the
        PIM's attribute of type ``pim_catalog_identifier`` (the main identifier where several
        exist), read once per source (a run's) with the attributes' type filter."""
        if self._identifier_attribute is None:
            override = get_settings().identifier_attribute
            if override:
                self._identifier_attribute = override
            else:
                url = f"{self.base_url}{API}/attributes"
                search = {"type": [{"operator": "IN", "value": [IDENTIFIER_TYPE]}]}
                params = {"limit": str(MAX_PAGE_SIZE), "search": _json_param(search)}
                found = [a for page in self._iter_list(url, params) for a in page.items]
                defs = build_definitions(attributes=[a for a in found if "code" in a])
                chosen = defs.identifier_attribute()
                if chosen is None:
                    raise SourceError(
                        f"Akeneo at {self.base_url}: cannot tell the identifier attribute "
                        f"(attributes of type {IDENTIFIER_TYPE}: "
                        f"{', '.join(sorted(defs.attributes)) or 'none'}); set "
                        "PIMSYNC_IDENTIFIER_ATTRIBUTE"
                    )
                self._identifier_attribute = chosen
        return self._identifier_attribute

    def _search(self, search: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url = f"{self.base_url}{API}/products-uuid"
        params = {
            "pagination_type": "search_after",
            "limit": str(MAX_PAGE_SIZE),
            "search": _json_param(search),
        }
        for page in self._iter_list(url, params):
            yield from page.items

    def get_model(self, code: str) -> dict[str, Any] | None:
        return self._get_one(f"{API}/product-models/{quote(code, safe='')}")

    # --- catalog definitions ------------------------------------------------------------

    def definitions(self) -> CatalogDefinitions:
        """Attributes, families, channels, categories and select options (read once)."""
        if self._definitions is None:
            attributes = self._read_all("attributes")
            selects = [
                a["code"]
                for a in attributes
                if a.get("type") in SELECT_TYPES and isinstance(a.get("code"), str)
            ]

            def options_of(code: str) -> list[dict[str, Any]]:
                path = f"attributes/{quote(code, safe='')}/options"
                return [{**option, "attribute": code} for option in self._read_all(path)]

            # One list call per select attribute (hundreds in a large catalog): read them in
            # parallel, as many at once as the PIM allows this connection (the limiter).
            with ThreadPoolExecutor(max_workers=OPTION_READERS) as pool:
                options = [o for chunk in pool.map(options_of, selects) for o in chunk]
            families = self._read_all("families")
            channels = self._read_all("channels")
            categories = self._read_all("categories")
            try:
                self._definitions = build_definitions(
                    attributes=attributes,
                    families=families,
                    channels=channels,
                    categories=categories,
                    options=options,
                    unit_symbols=self._unit_symbols(),
                )
            except DefinitionError as exc:
                raise SourceError(
                    f"Akeneo at {self.base_url}: unusable definition: {exc}"
                ) from None
        return self._definitions

    def _unit_symbols(self) -> dict[str, str]:
        """Unit code -> symbol from ``/measurement-families`` (one unpaginated list). Without
        the "List measurement families" permission (403) or on an older PIM (404) the common
        symbols pimsync knows apply."""
        try:
            response = self._call("GET", f"{self.base_url}{API}/measurement-families")
        except TransientSourceError:
            raise
        except SourceError as exc:
            log.warning("measurement_families_unreadable", pim=self.base_url, error=str(exc))
            return {}
        if response.status_code == 404:
            return {}
        try:
            families = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            families = None
        symbols: dict[str, str] = {}
        for family in families if isinstance(families, list) else ():
            units = family.get("units") if isinstance(family, dict) else None
            for code, unit in (units or {}).items() if isinstance(units, dict) else ():
                symbol = unit.get("symbol") if isinstance(unit, dict) else None
                if isinstance(code, str) and isinstance(symbol, str) and symbol:
                    symbols[code] = symbol
        return symbols

    def invalidate_definitions(self) -> None:
        """Read the definitions again on next use (they change: new attributes, options)."""
        self._definitions = None
        self._identifier_attribute = None

    # --- pagination ---------------------------------------------------------------------

    def _iter_list(self, url: str, params: dict[str, str] | None) -> Iterator[Page]:
        next_url: str | None = url
        while next_url is not None:
            body, shown = self._get_page(next_url, params)
            items = self._embedded_items(body, shown)
            href = _next_href(body)
            if href is not None:
                href = self._checked_link(href, f"next link of {shown}")
                if href == shown:  # a server bug that would loop forever
                    raise SourceError(
                        f"Akeneo at {self.base_url}: page {shown} links to itself as next page"
                    )
            # the next link carries every parameter, with_count too: counting costs the PIM
            # a search per page, and the first page's count is all the read needs
            next_url = _without_count(href) if href is not None else None
            params = None
            # Handed over, not kept: while suspended, this frame must hold no decoded page,
            # so the caller frees it before the cyclic collector resumes (app.gcpause).
            count = body.get("items_count")
            total = count if type(count) is int and count >= 0 else None
            out = [Page(items=items, next_cursor=next_url, total=total)]
            del body, items
            yield out.pop()

    def _embedded_items(self, body: Any, url: str) -> list[dict[str, Any]]:
        where = f"Akeneo at {self.base_url}: malformed page at {url}"
        if not isinstance(body, dict):
            raise SourceError(f"{where}: expected an object, got {type(body).__name__}")
        embedded = body.get("_embedded")
        items = embedded.get("items") if isinstance(embedded, dict) else None
        if not isinstance(items, list):
            raise SourceError(f"{where}: no `_embedded.items` list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise SourceError(f"{where}: item {i} is {type(item).__name__}, not an object")
        return items

    def _read_all(self, resource: str) -> list[dict[str, Any]]:
        """Every record of a page-paginated list endpoint (definitions)."""
        records: list[dict[str, Any]] = []
        url = f"{self.base_url}{API}/{resource}"
        for page in self._iter_list(url, {"limit": str(MAX_PAGE_SIZE)}):
            records.extend(page.items)
        return records

    def _get_page(self, url: str, params: dict[str, str] | None) -> tuple[Any, str]:
        """A list page's decoded body and full URL; a 200 that is not JSON is retried."""
        for attempt in range(MALFORMED_BODY_RETRIES + 1):
            response = self._call("GET", url, params=params)
            if response.status_code == 404:
                raise SourceError(
                    f"Akeneo at {self.base_url}: GET {_shown(response)} failed with HTTP 404: "
                    f"{_message(response)}"
                )
            try:
                return orjson.loads(response.content), _shown(response)
            except orjson.JSONDecodeError as exc:
                if attempt == MALFORMED_BODY_RETRIES:
                    raise SourceError(
                        f"Akeneo at {self.base_url}: malformed page at {_shown(response)}: "
                        f"body is not valid JSON ({exc})"
                    ) from None
                self.stats["retries"] += 1
                self._pause(self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_one(self, path: str) -> dict[str, Any] | None:
        response = self._call("GET", f"{self.base_url}{path}")
        if response.status_code == 404:
            return None
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise SourceError(
                f"Akeneo at {self.base_url}: malformed answer at {_shown(response)}: "
                f"body is not valid JSON ({exc})"
            ) from None
        if not isinstance(body, dict):
            raise SourceError(
                f"Akeneo at {self.base_url}: malformed answer at {_shown(response)}: "
                f"expected an object, got {type(body).__name__}"
            )
        return body

    def _checked_link(self, href: str, what: str) -> str:
        # The bearer token goes with every request: never send it to another host.
        if _origin(href) != self._origin:
            raise SourceError(
                f"Akeneo at {self.base_url}: {what} {href!r} points outside the PIM "
                "(check the PIM's configured public URL)"
            )
        return href

    # --- HTTP ---------------------------------------------------------------------------

    def _call(
        self, method: str, url: str, *, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """An authenticated API call: 2xx or 404, anything else raises."""
        token = self._access_token()
        response = self._send(method, url, params=params, headers=_bearer(token))
        if response.status_code == 401:
            # The token may have been revoked or expired early (server restart, clock skew):
            # renew once and retry before calling it a credentials problem.
            self.stats["unauthorized"] += 1
            token = self._renew_after_401(token)
            response = self._send(method, url, params=params, headers=_bearer(token))
        if response.is_success or response.status_code == 404:
            return response
        hint = ""
        if response.status_code in (401, 403):
            hint = " (check the API user's permissions)"
        raise SourceError(
            f"Akeneo at {self.base_url}: {method} {_shown(response)} failed with HTTP "
            f"{response.status_code}: {_message(response)}{hint}"
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
    ) -> httpx.Response:
        """One request with retries on transient answers and transport errors; other answers
        returned. Never sent before the connection's shared "not before" instant."""
        attempt = 0
        while True:
            what = f"{method} {_path(url)}"
            self._await_gate(what)
            try:
                with self.limiter.slot(timeout=self.slot_timeout):
                    self.stats["requests"] += 1
                    response = self._client.request(
                        method, url, params=params, headers=headers, json=json, auth=auth
                    )
                # The body is read and the stream closed. httpx keeps a response in a cycle
                # with its stream (the stream refers back to it): the reader pauses the cyclic
                # collector, so every page's body (~2.5 MB for 100 products) stayed in memory
                # until the next collection. Without the stream, reference counts free it.
                response.stream = httpx.ByteStream(b"")
            except (SemaphoreTimeout, SemaphoreUnavailable) as exc:
                raise TransientSourceError(f"Akeneo at {self.base_url}: {what}: {exc}") from None
            except httpx.TransportError as exc:
                status = type(exc).__name__
                self.gate.record(status, ok=False)
                failure = f"{status}: {exc or 'no detail'}"
                asked = None
            else:
                status = str(response.status_code)
                transient = is_transient_status(response.status_code)
                self.gate.record(status, ok=not transient)
                if not transient:
                    return response
                failure = f"HTTP {status}: {_message(response)}"
                asked = retry_after_seconds(response.headers.get("Retry-After"))
            if asked is None:  # no (usable) Retry-After: our own backoff
                delay = self._backoff(attempt)
            else:  # never earlier than asked; a little later so workers do not stampede
                delay = asked + self._jitter() * min(self.backoff_base, RETRY_AFTER_SPREAD_SECONDS)
            # every worker of the connection waits as long (the later instant wins)
            until = self.gate.hold(self._wall() + delay, status)
            if asked is not None and until - self._wall() > self.max_sleep:
                self.stats["deferred"] += 1
                raise PimThrottled(
                    f"Akeneo at {self.base_url}: {what} answered HTTP {status} asking to retry "
                    f"after {asked:g} s: deferred to {_utc(until)}",
                    not_before=datetime.fromtimestamp(until, UTC),
                    status=int(status),
                )
            if attempt >= self.max_retries:
                raise TransientSourceError(
                    f"Akeneo at {self.base_url}: {what} still failing after "
                    f"{attempt + 1} attempts: {failure}"
                )
            attempt += 1
            self.stats["retries"] += 1
            self._pause(delay)

    def _await_gate(self, what: str) -> None:
        """Wait for the connection's "not before" instant (set by any worker): slept when it
        is near, else ``PimThrottled`` (the task is deferred to it)."""
        until = self.gate.not_before()
        if until is None:
            return
        remaining = until - self._wall()
        if remaining <= CLOCK_EPSILON_SECONDS:
            return
        if remaining > self.max_sleep:
            self.stats["deferred"] += 1
            raise PimThrottled(
                f"Akeneo at {self.base_url}: {what} waits until {_utc(until)}, when the PIM "
                "allows calls again",
                not_before=datetime.fromtimestamp(until, UTC),
            )
        self._pause(remaining + self._jitter() * min(self.backoff_base, RETRY_AFTER_SPREAD_SECONDS))

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return self._jitter() * ceiling

    def _pause(self, seconds: float) -> None:
        self.stats["slept_seconds"] += seconds
        self._sleep(seconds)

    def ping(self) -> None:
        """Log in once (one token request): proves the PIM answers and takes the credentials.
        Raises SourceError (TransientSourceError when it does not answer) saying why."""
        with self._token_lock:
            self._login()

    # --- OAuth --------------------------------------------------------------------------

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is None or (self._clock() >= self._renew_at and not self._refresh()):
                self._login()
            assert self._token is not None
            return self._token

    def _renew_after_401(self, rejected: str) -> str:
        with self._token_lock:
            if self._token == rejected and not self._refresh():
                self._login()
            assert self._token is not None
            return self._token

    def _login(self) -> None:
        if not (self._client_id and self._secret and self._username and self._password):
            raise SourceError(
                f"Akeneo at {self.base_url}: API credentials are not configured (set "
                "PIMSYNC_AKENEO_CLIENT_ID, PIMSYNC_AKENEO_SECRET, PIMSYNC_AKENEO_USERNAME and "
                "PIMSYNC_AKENEO_PASSWORD)"
            )
        self.stats["logins"] += 1
        response = self._token_request(
            {"grant_type": "password", "username": self._username, "password": self._password}
        )
        if response.status_code in (400, 401, 403, 422):
            raise SourceError(
                f"Akeneo at {self.base_url} rejected the API credentials (client id "
                f"{self._client_id!r}, user {self._username!r}): HTTP {response.status_code}: "
                f"{_message(response)}"
            )
        if not response.is_success:
            raise SourceError(
                f"Akeneo at {self.base_url}: token request failed with HTTP "
                f"{response.status_code}: {_message(response)} (is this the PIM's base URL?)"
            )
        self._store_token(response)

    def _refresh(self) -> bool:
        """Renew with the refresh token; False when that is not possible (then log in)."""
        if self._refresh_token is None:
            return False
        self.stats["refreshes"] += 1
        response = self._token_request(
            {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        )
        if not response.is_success:
            self._token = self._refresh_token = None
            return False
        self._store_token(response)
        return True

    def _token_request(self, body: dict[str, str]) -> httpx.Response:
        return self._send(
            "POST",
            f"{self.base_url}{TOKEN_PATH}",
            json=body,
            auth=(self._client_id, self._secret),
        )

    def _store_token(self, response: httpx.Response) -> None:
        try:
            body = orjson.loads(response.content)
            token = body["access_token"]
            lifetime = float(body.get("expires_in") or 3600)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise SourceError(
                f"Akeneo at {self.base_url}: token endpoint answered without an access token "
                f"(HTTP {response.status_code}: {response.text[:120]!r})"
            ) from None
        if not isinstance(token, str) or not token:
            raise SourceError(f"Akeneo at {self.base_url}: token endpoint sent an empty token")
        self._token = token
        refresh = body.get("refresh_token")
        self._refresh_token = refresh if isinstance(refresh, str) and refresh else None
        margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        self._renew_at = self._clock() + lifetime - margin


def _json_param(value: Any) -> str:
    return orjson.dumps(value).decode()


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise ValueError(
            f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {page_size!r}"
        )
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"page_size must be from 1 to {MAX_PAGE_SIZE} (Akeneo's limit), got {page_size}"
        )


def _without_count(href: str) -> str:
    """``href`` without its ``with_count`` parameter (the rest of the query as it was)."""
    parts = urlsplit(href)
    if "with_count" not in parts.query:
        return href
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "with_count"]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def _next_href(body: dict[str, Any]) -> str | None:
    links = body.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    return href if isinstance(href, str) and href else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return (parts.scheme, parts.netloc, None)
    return (parts.scheme, (parts.hostname or "").lower(), port)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(response: httpx.Response) -> str:
    return str(response.request.url)
