"""A reference PIM: any dataset served over Akeneo's REST API, for tests, demos and benchmarks.

It speaks the part of the API pimsync reads (OAuth password/refresh grants, ``products-uuid``
with ``search_after`` and ``page`` pagination and the ``updated``/``enabled`` filters, single
products and product models, attributes, families, channels, categories, options) with
Akeneo's shapes and error messages, plus ``/_admin`` endpoints that are not Akeneo: inject
faults (latency, 429 with short or long ``Retry-After`` in seconds or HTTP-date form, 408,
bursts of 5xx, any status with Akeneo's error body, malformed pages), read request statistics
(peak concurrency) and the time of every API request (with those that came before a
``Retry-After`` allowed them: ``/_admin/requests``), and edit products so a delta read has
something to find.

Products are kept as pre-serialized JSON bytes (a 200k-product catalog must fit in memory) and
sorted by uuid, which is the ``search_after`` cursor. The admin endpoints have no
authentication: bind the server to localhost.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hmac
import random
import secrets
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode
from zoneinfo import ZoneInfo

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.dev.akeneo_shapes import documented_model, documented_product, documented_records
from app.dev.bad_data import BadData, degrade
from app.pim.catalog import CatalogDefinitions
from app.pim.product import parse_datetime
from app.pim.source import PimSource
from app.pim.sources import open_source

API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
# Akeneo refuses `page` pagination past this many items and asks for search_after.
MAX_PAGE_WINDOW = 10_000
REFRESH_TOKEN_TTL = 14 * 24 * 3600
# uuid5 namespace for products that come without a uuid: the same identifier always gets the
# same uuid, so cursors stay valid across server restarts on the same dataset.
UUID_NAMESPACE = uuidlib.UUID("6b5f4a52-3c1e-4d8e-9a57-0f1f3f2b9c11")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# The body served for a "malformed page" fault: a transfer cut short.
MALFORMED_BODY = b'{"_links":{"self":{"href":"'

# A search predicate on a product's metadata (no decoding of the stored JSON).
SearchFilter = Callable[["_Meta"], bool]


class ApiError(Exception):
    """An Akeneo-style error answer: ``{"code": status, "message": ...}``."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        errors: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.errors = errors


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _error_response(error: ApiError) -> Response:
    body: dict[str, Any] = {"code": error.status, "message": error.message}
    if error.errors is not None:
        body["errors"] = error.errors
    return _json(body, error.status, error.headers)


# What Akeneo answers with each status an injected failure may take (its error format:
# `code`, `message` and, for validation failures, `errors[]` naming each property).
INJECTED_BODIES: dict[int, dict[str, Any]] = {
    400: {"message": "Invalid json message received"},
    401: {"message": "The access token provided is invalid."},
    403: {"message": "You are not allowed to access the web API."},
    404: {"message": "Resource not found."},
    408: {"message": "Request timeout."},
    422: {
        "message": "Validation failed.",
        "errors": [
            {"property": "values", "message": 'The "sku" attribute is not an identifier.'},
            {"property": "search", "message": 'Filter on property "updated" is invalid.'},
        ],
    },
    429: {"message": "Too many requests"},
}


# --- the catalog ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Meta:
    identifier: str | None  # None: a product without an identifier (Akeneo allows it)
    updated: int  # epoch seconds: Akeneo filters at second precision
    enabled: bool
    uuid: str = ""  # lower case
    parent: str | None = None  # the parent model's code, casefolded


def _identifier_of(product: dict[str, Any], identifier_attribute: str) -> str | None:
    identifier = product.get("identifier")
    if isinstance(identifier, str) and identifier:
        return identifier
    values = product.get("values")
    if isinstance(values, dict):
        for entry in values.get(identifier_attribute) or ():
            if isinstance(entry, dict) and isinstance(entry.get("data"), str) and entry["data"]:
                return entry["data"]
    return None


def _epoch(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(parse_datetime(value).timestamp())
    except ValueError:
        return None


def _compact(record: dict[str, Any]) -> bytes:
    """``record`` as JSON bytes in an allocation of exactly their size.

    orjson leaves its output in an over-allocated buffer (a third more for 15 KB products);
    copying once is what keeps a 200k-product catalog near the size of its JSON.
    """
    return bytes(memoryview(orjson.dumps(record)))


def _now_iso(tz: ZoneInfo | None = None) -> str:
    return datetime.now(tz or UTC).replace(microsecond=0).isoformat()


class ReferenceCatalog:
    """The products, product models and definitions a reference server serves.

    Products are stored as orjson bytes keyed by lower-case uuid, with just enough beside them
    (identifier, ``updated``, ``enabled``) to filter without decoding. Thread-safe: the server
    thread and a test may both touch it.
    """

    def __init__(
        self,
        definitions: CatalogDefinitions | None = None,
        *,
        identifier_attribute: str = "sku",
    ) -> None:
        self.definitions = definitions or CatalogDefinitions()
        self.identifier_attribute = identifier_attribute
        self.skipped = 0  # products without identifier (nothing to serve them under)
        self._blobs: dict[str, bytes] = {}
        self._meta: dict[str, _Meta] = {}
        self._uuid_by_identifier: dict[str, str] = {}
        self._order: list[str] = []
        # while loading, the order is sorted once at the end instead of on every insert
        self._loading = False
        self._models: dict[str, bytes] = {}  # by lower-case code: Akeneo codes ignore case
        self._model_codes: dict[str, str] = {}
        self._model_order: list[str] = []
        self._lock = threading.Lock()

    # --- building -----------------------------------------------------------------------

    @classmethod
    def from_products(
        cls,
        products: Iterable[dict[str, Any]],
        definitions: CatalogDefinitions | None = None,
        models: Iterable[dict[str, Any]] = (),
        *,
        identifier_attribute: str = "sku",
    ) -> ReferenceCatalog:
        catalog = cls(definitions, identifier_attribute=identifier_attribute)
        catalog._loading = True
        now = _now_iso()
        for product in products:
            catalog._store(product, now)
        for model in models:
            catalog._store_model(model, now)
        catalog._reindex()
        return catalog

    @classmethod
    def from_source(cls, source: PimSource, page_size: int = 100) -> ReferenceCatalog:
        """Everything ``source`` has: products page by page, definitions, product models."""
        definitions = source.definitions()
        catalog = cls(definitions, identifier_attribute=definitions.identifier_attribute() or "sku")
        catalog._loading = True
        now = _now_iso()
        for page in source.iter_pages(None, page_size=page_size):
            for product in page.items:
                catalog._store(product, now)
        iter_models = getattr(source, "iter_models", None)
        if callable(iter_models):
            for model in iter_models():
                catalog._store_model(model, now)
        catalog._reindex()
        return catalog

    @classmethod
    def load(cls, spec: str, bad: BadData | None = None) -> ReferenceCatalog:
        """A catalog from any source spec ``open_source`` understands, spoiled as ``bad``
        says (a renamed identifier attribute, products without identifier or family)."""
        source = open_source(spec)
        try:
            if bad is None or not bad.any:
                return cls.from_source(source)
            products = [p for page in source.iter_pages(None, page_size=100) for p in page.items]
            iter_models = getattr(source, "iter_models", None)
            models = list(iter_models()) if callable(iter_models) else []
            products, defs, attribute = degrade(products, source.definitions(), bad)
            return cls.from_products(products, defs, models, identifier_attribute=attribute)
        finally:
            source.close()

    def replace_with(self, other: ReferenceCatalog) -> None:
        """Serve ``other``'s data from now on (tests reset a running server this way)."""
        with self._lock:
            self.definitions = other.definitions
            # a spoiled catalog may call its identifier attribute otherwise (``item_code``)
            self.identifier_attribute = other.identifier_attribute
            self.skipped = other.skipped
            self._blobs, self._meta = dict(other._blobs), dict(other._meta)
            self._uuid_by_identifier = dict(other._uuid_by_identifier)
            self._order = list(other._order)
            self._models, self._model_codes = dict(other._models), dict(other._model_codes)
            self._model_order = list(other._model_order)

    def _normalise(self, raw: dict[str, Any], now_iso: str) -> tuple[str, str, _Meta, bytes] | None:
        product = dict(raw)
        product.pop("_links", None)
        identifier = _identifier_of(product, self.identifier_attribute)
        given_uuid = product.get("uuid")
        if identifier is None and not (isinstance(given_uuid, str) and given_uuid):
            return None  # neither key: nothing to serve it under
        values = product.get("values")
        if values is None:
            values = product["values"] = {}
        if (
            identifier is not None
            and isinstance(values, dict)
            and not values.get(self.identifier_attribute)
        ):
            # products-uuid items carry the SKU only in values: make sure it is there
            product["values"] = {
                self.identifier_attribute: [{"locale": None, "scope": None, "data": identifier}],
                **values,
            }
        # products-uuid items carry the identifier in values only (Akeneo 7 and SaaS)
        product.pop("identifier", None)
        uid = product.get("uuid")
        if not isinstance(uid, str) or not uid:
            assert identifier is not None
            uid = str(uuidlib.uuid5(UUID_NAMESPACE, identifier))
            product = {"uuid": uid, **product}
        updated = _epoch(product.get("updated"))
        if updated is None:
            product["updated"] = now_iso
            updated = _epoch(now_iso)
            assert updated is not None
        documented_product(product)
        enabled = product.get("enabled", True) is not False
        parent = product.get("parent")
        meta = _Meta(
            identifier,
            updated,
            enabled,
            uid.lower(),
            parent.casefold() if isinstance(parent, str) and parent else None,
        )
        return uid.lower(), identifier or "", meta, _compact(product)

    def _store(self, raw: dict[str, Any], now_iso: str) -> str | None:
        """Insert or replace one product without maintaining the order (call _reindex)."""
        normalised = self._normalise(raw, now_iso) if isinstance(raw, dict) else None
        if normalised is None:
            self.skipped += 1
            return None
        key, identifier, meta, blob = normalised
        previous_uuid = self._uuid_by_identifier.get(identifier) if identifier else None
        if previous_uuid is not None and previous_uuid != key:
            self._drop(previous_uuid)
        previous = self._meta.get(key)
        if previous is not None and previous.identifier and previous.identifier != identifier:
            self._uuid_by_identifier.pop(previous.identifier, None)
        if previous is None and not self._loading:
            bisect.insort(self._order, key)
        self._blobs[key] = blob
        self._meta[key] = meta
        if identifier:
            self._uuid_by_identifier[identifier] = key
        return key

    def _drop(self, key: str) -> None:
        meta = self._meta.pop(key, None)
        self._blobs.pop(key, None)
        if (
            meta is not None
            and meta.identifier
            and self._uuid_by_identifier.get(meta.identifier) == key
        ):
            del self._uuid_by_identifier[meta.identifier]
        if meta is not None and not self._loading:
            index = bisect.bisect_left(self._order, key)
            if index < len(self._order) and self._order[index] == key:
                del self._order[index]

    def _store_model(self, raw: dict[str, Any], now_iso: str | None = None) -> None:
        code = raw.get("code") if isinstance(raw, dict) else None
        if not isinstance(code, str) or not code:
            self.skipped += 1
            return
        model = dict(raw)
        model.setdefault("updated", now_iso or _now_iso())
        documented_model(model)
        model.pop("_links", None)
        self._models[code.lower()] = _compact(model)
        self._model_codes[code.lower()] = code

    def _reindex(self) -> None:
        self._order = sorted(self._blobs)
        self._model_order = sorted(self._models)
        self._loading = False

    # --- editing (admin) ----------------------------------------------------------------

    def put(self, identifier: str, product: dict[str, Any], now_iso: str) -> dict[str, Any]:
        """Create or replace ``identifier``; ``updated`` is ``now_iso`` unless given."""
        body = dict(product)
        given = body.get("identifier")
        if given is not None and given != identifier:
            raise ApiError(422, f'The identifier "{given}" does not match "{identifier}".')
        values = body.get("values") or {}
        if not isinstance(values, dict):
            raise ApiError(422, 'Property "values" expects an object.')
        # the path names the product: its SKU value follows (top-level identifier only if given)
        body["values"] = {
            **values,
            self.identifier_attribute: [{"locale": None, "scope": None, "data": identifier}],
        }
        body.setdefault("updated", now_iso)
        with self._lock:
            existing = self._uuid_by_identifier.get(identifier)
            if "uuid" not in body and existing is not None:
                body["uuid"] = self._decode(existing).get("uuid", existing)
            uid = body.get("uuid")
            if isinstance(uid, str):
                owner = self._meta.get(uid.lower())
                if owner is not None and owner.identifier != identifier:
                    raise ApiError(422, f'The uuid "{uid}" is already used by another product.')
            key = self._store(body, now_iso)
            if key is None:
                raise ApiError(422, "The product cannot be stored.")
            return self._decode(key)

    def patch(self, identifier: str, changes: dict[str, Any], now_iso: str) -> dict[str, Any]:
        """Merge ``changes`` like Akeneo's PATCH: top-level keys replaced, values merged per
        (attribute, locale, scope)."""
        with self._lock:
            key = self._uuid_by_identifier.get(identifier)
            if key is None:
                raise ApiError(404, f'Product "{identifier}" does not exist.')
            product = self._decode(key)
        for name, value in changes.items():
            if name == "values" and isinstance(value, dict):
                product["values"] = _merge_values(product.get("values") or {}, value)
            elif name not in ("identifier", "uuid"):
                product[name] = value
        if "updated" not in changes:
            product["updated"] = now_iso
        return self.put(identifier, product, now_iso)

    def patch_uuid(self, uid: str, changes: dict[str, Any], now_iso: str) -> dict[str, Any]:
        """``patch`` for any product by its uuid (one without an identifier too)."""
        with self._lock:
            key = uid.lower()
            if key not in self._blobs:
                raise ApiError(404, f'Product "{uid}" does not exist.')
            product = self._decode(key)
        for name, value in changes.items():
            if name == "values" and isinstance(value, dict):
                product["values"] = _merge_values(product.get("values") or {}, value)
            elif name not in ("identifier", "uuid"):
                product[name] = value
        product["updated"] = changes.get("updated", now_iso)
        with self._lock:
            stored = self._store(product, now_iso)
            if stored is None:
                raise ApiError(422, "The product cannot be stored.")
            return self._decode(stored)

    def delete(self, identifier: str) -> bool:
        with self._lock:
            key = self._uuid_by_identifier.get(identifier)
            if key is None:
                return False
            self._drop(key)
            return True

    # --- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._blobs)

    def _decode(self, key: str) -> dict[str, Any]:
        return orjson.loads(self._blobs[key])

    def product_blob(self, uid: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(uid.lower())

    def identifier_blob(self, identifier: str) -> bytes | None:
        with self._lock:
            key = self._uuid_by_identifier.get(identifier)
            return None if key is None else self._blobs[key]

    def model_blob(self, code: str) -> bytes | None:
        with self._lock:
            return self._models.get(code.lower())

    def products_after(
        self, cursor: str | None, limit: int, accept: SearchFilter | None
    ) -> tuple[list[tuple[str, bytes]], bool]:
        """Up to ``limit`` products with uuid > ``cursor``, and whether more follow."""
        with self._lock:
            order = self._order
            start = 0 if cursor is None else bisect.bisect_right(order, cursor.lower())
            return self._collect(order, start, 0, limit, accept)

    def products_page(
        self, offset: int, limit: int, accept: SearchFilter | None
    ) -> tuple[list[tuple[str, bytes]], bool]:
        with self._lock:
            return self._collect(self._order, 0, offset, limit, accept)

    def count(self, accept: SearchFilter | None) -> int:
        with self._lock:
            if accept is None:
                return len(self._blobs)
            return sum(1 for m in self._meta.values() if accept(m))

    def _collect(
        self,
        order: list[str],
        start: int,
        skip: int,
        limit: int,
        accept: SearchFilter | None,
    ) -> tuple[list[tuple[str, bytes]], bool]:
        if accept is None:
            begin = start + skip
            keys = order[begin : begin + limit]
            return [(k, self._blobs[k]) for k in keys], begin + limit < len(order)
        found: list[tuple[str, bytes]] = []
        for index in range(start, len(order)):
            key = order[index]
            meta = self._meta[key]
            if not accept(meta):
                continue
            if skip:
                skip -= 1
                continue
            if len(found) == limit:
                return found, True  # one more match exists
            found.append((key, self._blobs[key]))
        return found, False

    def models_under(self, code: str) -> set[str]:
        """``code`` and every model below it (Akeneo keeps two levels), casefolded."""
        root = code.casefold()
        with self._lock:
            found = {root}
            for key, blob in self._models.items():
                parent = orjson.loads(blob).get("parent")
                if isinstance(parent, str) and parent.casefold() == root:
                    found.add(key.casefold())
            return found

    def models_after(self, cursor: str | None, limit: int) -> tuple[list[tuple[str, bytes]], bool]:
        with self._lock:
            order = self._model_order
            start = 0 if cursor is None else bisect.bisect_right(order, cursor.lower())
            keys = order[start : start + limit]
            found = [(self._model_codes[k], self._models[k]) for k in keys]
            return found, start + limit < len(order)

    def models_page(self, offset: int, limit: int) -> tuple[list[tuple[str, bytes]], bool]:
        with self._lock:
            keys = self._model_order[offset : offset + limit]
            more = offset + limit < len(self._model_order)
            return [(self._model_codes[k], self._models[k]) for k in keys], more


def _merge_values(
    current: dict[str, list[dict[str, Any]]], changes: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    merged = {k: list(v) if isinstance(v, list) else v for k, v in current.items()}
    for attribute, entries in changes.items():
        existing = merged.get(attribute)
        if not isinstance(entries, list) or not isinstance(existing, list):
            merged[attribute] = entries
            continue
        slots = {(e.get("locale"), e.get("scope")): e for e in existing if isinstance(e, dict)}
        for entry in entries:
            if isinstance(entry, dict):
                slots[(entry.get("locale"), entry.get("scope"))] = entry
        merged[attribute] = list(slots.values())
    return merged


# --- faults and statistics -----------------------------------------------------------------


@dataclass(slots=True)
class Faults:
    """Misbehaviour injected into the product endpoints (and the token one if asked)."""

    latency_ms: float = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_408: float = 0.0
    retry_after: float | None = 1  # seconds sent with 429s (None: no Retry-After header)
    # Retry-After as an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`) instead of seconds
    retry_after_date: bool = False
    # the raw Retry-After header instead (junk a client must survive, e.g. "soon")
    retry_after_raw: str | None = None
    malformed_pages: int = 0  # the next N product list answers are truncated JSON (200)
    fail_next: list[int] = field(default_factory=list)  # statuses of the next N answers
    # 5xx bursts: every `burst_every` API calls, `burst_length` consecutive `burst_status`es
    burst_length: int = 0
    burst_every: int = 0
    burst_status: int = 503
    # the body of injected failures (Akeneo's format); None: INJECTED_BODIES per status
    error_body: dict[str, Any] | None = None
    seed: int | None = None
    apply_to_token: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ApiError(422, f"Unknown fault settings: {', '.join(unknown)}.")
        faults = cls(**data)
        if not all(0 <= r <= 1 for r in (faults.rate_429, faults.rate_500, faults.rate_408)):
            raise ApiError(422, "rate_429, rate_500 and rate_408 must be between 0 and 1.")
        if faults.burst_length < 0 or faults.burst_every < 0:
            raise ApiError(422, "burst_length and burst_every must not be negative.")
        if not 500 <= faults.burst_status <= 599:
            raise ApiError(422, "burst_status must be a 5xx status.")
        if faults.retry_after is not None and not 0 <= faults.retry_after <= 86_400 * 7:
            raise ApiError(422, "retry_after must be from 0 to a week (in seconds).")
        if faults.latency_ms < 0 or faults.malformed_pages < 0:
            raise ApiError(422, "latency_ms and malformed_pages must not be negative.")
        if not all(isinstance(s, int) and 400 <= s <= 599 for s in faults.fail_next):
            raise ApiError(422, "fail_next must list HTTP error statuses (400-599).")
        return faults


class _FaultInjector:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.calls = 0

    def configure(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.calls = 0

    async def apply(self) -> None:
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        status = None
        self.calls += 1
        in_burst = (
            faults.burst_length > 0
            and faults.burst_every > 0
            and (self.calls - 1) % faults.burst_every < faults.burst_length
        )
        if faults.fail_next:
            status = faults.fail_next.pop(0)
        elif in_burst:
            status = faults.burst_status
        elif faults.rate_429 and self.rng.random() < faults.rate_429:
            status = 429
        elif faults.rate_500 and self.rng.random() < faults.rate_500:
            status = 500
        elif faults.rate_408 and self.rng.random() < faults.rate_408:
            status = 408
        if status is None:
            return
        headers: dict[str, str] = {}
        if status == 429:
            if faults.retry_after_raw is not None:
                headers["Retry-After"] = faults.retry_after_raw
            elif faults.retry_after is not None and faults.retry_after_date:
                # an HTTP date has whole seconds: rounded up, never earlier than asked
                when = datetime.now(UTC) + timedelta(seconds=faults.retry_after + 1)
                headers["Retry-After"] = format_datetime(when.replace(microsecond=0), usegmt=True)
            elif faults.retry_after is not None:
                headers["Retry-After"] = f"{faults.retry_after:g}"
        body = faults.error_body or INJECTED_BODIES.get(status) or {"message": "Injected failure"}
        raise ApiError(status, str(body.get("message", "")), headers, body.get("errors"))

    def take_malformed(self) -> bool:
        if self.faults.malformed_pages > 0:
            self.faults.malformed_pages -= 1
            return True
        return False


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    current: int = 0
    max_concurrent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        # in-flight requests are still running: keep counting them
        self.requests = 0
        self.max_concurrent = self.current
        self.by_status = {}


# The request log keeps this many entries (the newest); enough for any test's sync.
REQUEST_LOG_MAX = 100_000


@dataclass(slots=True)
class _RequestLog:
    """When each API request came, and the quiet window any ``Retry-After`` opened: a
    request that arrives before the PIM allowed it is listed in ``early``."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    early: list[dict[str, Any]] = field(default_factory=list)
    quiet_until: float = 0.0  # epoch seconds

    def reset(self) -> None:
        self.entries, self.early, self.quiet_until = [], [], 0.0

    def arrived(self, at: float, method: str, path: str) -> None:
        if at < self.quiet_until:
            self.early.append(
                {"at": at, "method": method, "path": path, "allowed_at": self.quiet_until}
            )

    def answered(self, at: float, method: str, path: str, status: int, retry_after: str | None):
        self.entries.append({"at": at, "method": method, "path": path, "status": status})
        if len(self.entries) > REQUEST_LOG_MAX:
            del self.entries[: len(self.entries) - REQUEST_LOG_MAX]
        if retry_after is not None:
            wait = _retry_after_wait(retry_after, time.time())
            if wait is not None:
                self.quiet_until = max(self.quiet_until, time.time() + wait)


def _retry_after_wait(value: str, now: float) -> float | None:
    """The wait a Retry-After value asks for, as a client must read it (None: junk)."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


class _StatsMiddleware:
    """Counts API requests and the peak of simultaneous ones (the event loop is one thread),
    and logs when each came (``_RequestLog``)."""

    def __init__(self, app: ASGIApp, stats: _Stats, log: _RequestLog | None = None) -> None:
        self.app = app
        self.stats = stats
        self.log = log or _RequestLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        stats = self.stats
        stats.requests += 1
        stats.current += 1
        stats.max_concurrent = max(stats.max_concurrent, stats.current)
        status = 500
        retry_after: str | None = None
        arrived = time.time()
        method, path = scope["method"], scope["path"]
        self.log.arrived(arrived, method, path)

        async def record(message: Message) -> None:
            nonlocal status, retry_after
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers") or ():
                    if name.lower() == b"retry-after":
                        retry_after = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            stats.current -= 1
            key = str(status)
            stats.by_status[key] = stats.by_status.get(key, 0) + 1
            self.log.answered(arrived, method, path, status, retry_after)


# --- OAuth ----------------------------------------------------------------------------------


class _Tokens:
    def __init__(self, client_id: str, secret: str, username: str, password: str, ttl: float):
        self.client = (client_id, secret)
        self.user = (username, password)
        self.ttl = ttl
        self.access: dict[str, float] = {}
        self.refresh: dict[str, float] = {}

    def issue(self) -> dict[str, Any]:
        now = time.monotonic()
        # forget expired tokens so a long benchmark does not grow the tables forever
        self.access = {t: exp for t, exp in self.access.items() if exp > now}
        self.refresh = {t: exp for t, exp in self.refresh.items() if exp > now}
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = now + self.ttl
        self.refresh[refresh] = now + REFRESH_TOKEN_TTL
        return {
            "access_token": access,
            "expires_in": self.ttl,
            "token_type": "bearer",
            "scope": None,
            "refresh_token": refresh,
        }

    def check_client(self, header: str | None) -> None:
        client = None
        if header and header.lower().startswith("basic "):
            try:
                client = tuple(base64.b64decode(header[6:].strip()).decode().split(":", 1))
            except (ValueError, UnicodeDecodeError):
                client = None
        if client != self.client:
            raise ApiError(
                422,
                'Parameter "client_id" is missing or does not match any client, '
                "or secret is invalid",
            )

    def grant(self, body: dict[str, Any]) -> dict[str, Any]:
        grant_type = body.get("grant_type")
        if grant_type == "password":
            if (body.get("username"), body.get("password")) != self.user:
                raise ApiError(422, "No user found for the given username and password")
            return self.issue()
        if grant_type == "refresh_token":
            expiry = self.refresh.pop(str(body.get("refresh_token")), None)
            if expiry is None or expiry <= time.monotonic():
                raise ApiError(422, "Refresh token is invalid or has expired")
            return self.issue()
        raise ApiError(422, 'Parameter "grant_type" is missing or the grant type is unsupported')

    def check_bearer(self, header: str | None) -> None:
        if not header or not header.lower().startswith("bearer "):
            raise ApiError(401, "Authentication is required")
        expiry = self.access.get(header[7:].strip())
        if expiry is None:
            raise ApiError(401, "The access token provided is invalid.")
        if expiry <= time.monotonic():
            raise ApiError(401, "The access token provided has expired.")

    def revoke(self, keep_refresh: bool = False) -> None:
        self.access.clear()
        if not keep_refresh:
            self.refresh.clear()


# --- request parsing ------------------------------------------------------------------------


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ApiError(422, f'"{raw}" is not a valid limit number.')
    if limit > MAX_LIMIT:
        raise ApiError(422, f"You cannot request more than {MAX_LIMIT} items.")
    return limit


def _page_number(request: Request, limit: int) -> int:
    raw = request.query_params.get("page", "1")
    try:
        page = int(raw)
    except ValueError:
        page = 0
    if page < 1:
        raise ApiError(422, f'"{raw}" is not a valid page number.')
    if page * limit > MAX_PAGE_WINDOW:
        raise ApiError(
            422,
            'You have reached the maximum number of pages you can retrieve with the "page" '
            "pagination type. Please use the search after pagination type instead",
        )
    return page


def _pagination_type(request: Request, search_after_allowed: bool) -> str:
    kind = request.query_params.get("pagination_type", "page")
    if kind not in ("page", "search_after") or (
        kind == "search_after" and not search_after_allowed
    ):
        raise ApiError(422, "Pagination type does not exist.")
    return kind


def _search_structure_error() -> ApiError:
    return ApiError(
        422,
        'Structure of filter "search" should respect this structure: '
        '{"property_code":[{"operator": "my_operator", "value": "my_value"}]}',
    )


def _pim_epoch(value: Any, tz: ZoneInfo) -> int:
    """A filter date ("yyyy-mm-dd hh:mm:ss", the server's local time) as epoch seconds."""
    try:
        moment = datetime.strptime(value, DATE_FORMAT)
    except (TypeError, ValueError):
        raise ApiError(
            422,
            'Property "updated" expects a string with the format "yyyy-mm-dd H:i:s" as data, '
            f'"{value}" given.',
        ) from None
    return int(moment.replace(tzinfo=tz).timestamp())


def _updated_filter(operator: str, value: Any, tz: ZoneInfo) -> SearchFilter:
    if operator in ("BETWEEN", "NOT BETWEEN"):
        if not isinstance(value, list) or len(value) != 2:
            raise ApiError(
                422, f'Property "updated" expects an array with 2 dates for "{operator}".'
            )
        low, high = _pim_epoch(value[0], tz), _pim_epoch(value[1], tz)
        if operator == "BETWEEN":
            return lambda m: low <= m.updated <= high
        return lambda m: not low <= m.updated <= high
    if operator == "SINCE LAST N DAYS":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ApiError(422, 'Property "updated" expects a positive integer as data.')
        cutoff = int((datetime.now(UTC) - timedelta(days=value)).timestamp())
        return lambda m: m.updated > cutoff
    moment = _pim_epoch(value, tz)
    comparisons: dict[str, SearchFilter] = {
        ">": lambda m: m.updated > moment,
        "<": lambda m: m.updated < moment,
        "=": lambda m: m.updated == moment,
        "!=": lambda m: m.updated != moment,
    }
    if operator not in comparisons:
        raise ApiError(
            422,
            'Filter on property "updated" is not supported or does not support operator '
            f'"{operator}"',
        )
    return comparisons[operator]


def _enabled_filter(operator: str, value: Any) -> SearchFilter:
    if operator not in ("=", "!=") or not isinstance(value, bool):
        raise ApiError(
            422,
            f'Filter on property "enabled" is not supported or does not support operator '
            f'"{operator}" with value {orjson.dumps(value).decode()}',
        )
    if operator == "=":
        return lambda m: m.enabled is value
    return lambda m: m.enabled is not value


def _string_list(prop: str, operator: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(
            422, f'Property "{prop}" expects an array of strings as data for "{operator}".'
        )
    return value


def _uuid_filter(operator: str, value: Any) -> SearchFilter:
    if operator not in ("IN", "NOT IN"):
        raise ApiError(
            422,
            f'Filter on property "uuid" is not supported or does not support operator "{operator}"',
        )
    wanted = {v.lower() for v in _string_list("uuid", operator, value)}
    if operator == "IN":
        return lambda m: m.uuid in wanted
    return lambda m: m.uuid not in wanted


def _parent_filter(operator: str, value: Any, catalog: ReferenceCatalog | None) -> SearchFilter:
    if operator == "=":
        if not isinstance(value, str) or not value:
            raise ApiError(422, 'Property "parent" expects a product model code as data.')
        under = catalog.models_under(value) if catalog is not None else {value.casefold()}
        return lambda m: m.parent is not None and m.parent in under
    if operator == "IN":
        direct = {v.casefold() for v in _string_list("parent", operator, value)}
        return lambda m: m.parent is not None and m.parent in direct
    if operator == "EMPTY":
        return lambda m: m.parent is None
    if operator == "NOT EMPTY":
        return lambda m: m.parent is not None
    raise ApiError(
        422,
        f'Filter on property "parent" is not supported or does not support operator "{operator}"',
    )


def _identifier_filter(prop: str, operator: str, value: Any) -> SearchFilter:
    if operator == "=":
        if not isinstance(value, str):
            raise ApiError(422, f'Property "{prop}" expects a string as data.')
        return lambda m: m.identifier == value
    if operator == "IN":
        wanted = set(_string_list(prop, operator, value))
        return lambda m: m.identifier in wanted
    if operator == "EMPTY":
        return lambda m: m.identifier is None
    raise ApiError(
        422,
        f'Filter on property "{prop}" is not supported or does not support operator "{operator}"',
    )


def parse_search(
    raw: str | None, tz: ZoneInfo, catalog: ReferenceCatalog | None = None
) -> SearchFilter | None:
    """The ``search`` query parameter as a predicate on a product's metadata: ``updated``,
    ``enabled``, ``uuid``, ``parent`` and the identifier attribute (``catalog``'s)."""
    if not raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Search query parameter should be valid JSON.") from None
    if not isinstance(data, dict):
        raise _search_structure_error()
    checks: list[SearchFilter] = []
    for prop, conditions in data.items():
        if not isinstance(conditions, list):
            raise _search_structure_error()
        for condition in conditions:
            if not isinstance(condition, dict) or not isinstance(condition.get("operator"), str):
                raise _search_structure_error()
            operator, value = condition["operator"], condition.get("value")
            if prop == "updated":
                checks.append(_updated_filter(operator, value, tz))
            elif prop == "enabled":
                checks.append(_enabled_filter(operator, value))
            elif prop == "uuid":
                checks.append(_uuid_filter(operator, value))
            elif prop == "parent":
                checks.append(_parent_filter(operator, value, catalog))
            elif catalog is not None and prop == catalog.identifier_attribute:
                checks.append(_identifier_filter(prop, operator, value))
            else:
                raise ApiError(
                    422,
                    f'Filter on property "{prop}" is not supported or does not support '
                    f'operator "{operator}"',
                )
    if not checks:
        return None
    return lambda m: all(check(m) for check in checks)


def _search_attributes(records: list[dict[str, Any]], raw: str | None) -> list[dict[str, Any]]:
    """``/attributes?search=``: by ``type`` (``IN``) and ``is_main_identifier`` (``=``), as
    Akeneo filters them."""
    if not raw:
        return records
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Search query parameter should be valid JSON.") from None
    if not isinstance(data, dict):
        raise _search_structure_error()
    for prop, conditions in data.items():
        if not isinstance(conditions, list):
            raise _search_structure_error()
        for condition in conditions:
            if not isinstance(condition, dict) or not isinstance(condition.get("operator"), str):
                raise _search_structure_error()
            operator, value = condition["operator"], condition.get("value")
            if prop == "type" and operator == "IN":
                types = set(_string_list(prop, operator, value))
                records = [r for r in records if r.get("type") in types]
            elif prop == "is_main_identifier" and operator == "=" and isinstance(value, bool):
                records = [r for r in records if (r.get("is_main_identifier") is True) is value]
            else:
                raise ApiError(
                    422,
                    f'Filter on property "{prop}" is not supported or does not support '
                    f'operator "{operator}"',
                )
    return records


async def _form_or_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if "json" in request.headers.get("content-type", ""):
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "Invalid json message received") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid json message received")
        return body
    return dict(parse_qsl(raw.decode("utf-8", "replace")))


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ApiError(400, "Invalid json message received") from None
    if not isinstance(body, dict):
        raise ApiError(422, "The body must be a JSON object.")
    return body


# --- responses ------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _href(request: Request, **overrides: str | None) -> str:
    """This request's URL with some query parameters replaced (None removes one)."""
    params = dict(request.query_params)
    for name, value in overrides.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    query = urlencode(params)
    return f"{_base(request)}{request.url.path}" + (f"?{query}" if query else "")


def _item(self_href: str, blob: bytes) -> bytes:
    # Splice the links into the stored bytes: no decode/encode per item per request.
    return b'{"_links":{"self":{"href":' + orjson.dumps(self_href) + b"}}," + blob[1:]


def _list_body(
    links: dict[str, str], items: list[bytes], extra: dict[str, Any] | None = None
) -> Response:
    head = {"_links": {name: {"href": href} for name, href in links.items()}, **(extra or {})}
    body = orjson.dumps(head)[:-1] + b',"_embedded":{"items":[' + b",".join(items) + b"]}}"
    return Response(body, media_type="application/json")


def _page_links(request: Request, page: int, more: bool) -> dict[str, str]:
    links = {"self": _href(request, page=str(page)), "first": _href(request, page="1")}
    if page > 1:
        links["previous"] = _href(request, page=str(page - 1))
    if more:
        links["next"] = _href(request, page=str(page + 1))
    return links


def _after_links(request: Request, last: str | None, more: bool) -> dict[str, str]:
    links = {"self": _href(request), "first": _href(request, search_after=None)}
    if more and last is not None:
        links["next"] = _href(request, search_after=last)
    return links


def _records_page(request: Request, records: list[dict[str, Any]], path: str) -> Response:
    """A page-paginated list of small records (definitions)."""
    _pagination_type(request, search_after_allowed=False)
    limit = _limit(request)
    page = _page_number(request, limit)
    chunk = records[(page - 1) * limit : page * limit]
    base = _base(request)
    items = [
        orjson.dumps({"_links": {"self": {"href": f"{base}{path}/{r['code']}"}}, **r})
        for r in chunk
    ]
    extra: dict[str, Any] = {"current_page": page}
    if request.query_params.get("with_count") == "true":
        extra["items_count"] = len(records)
    return _list_body(_page_links(request, page, page * limit < len(records)), items, extra)


# --- the application ------------------------------------------------------------------------


@dataclass(slots=True)
class _ServerState:
    catalog: ReferenceCatalog
    tokens: _Tokens
    faults: _FaultInjector
    stats: _Stats
    tz: ZoneInfo
    # False: the identifier endpoints (/products/{code}) answer 403, as they would to a
    # connection without their permission (a test proves pimsync never calls them)
    identifier_endpoints: bool = True
    log: _RequestLog = field(default_factory=_RequestLog)


def create_app(
    catalog: ReferenceCatalog,
    *,
    client_id: str = "pimsync",
    secret: str = "pimsync-secret",
    username: str = "pimsync",
    password: str = "pimsync",
    timezone: str = "UTC",
    token_ttl: float = 3600,
    faults: Faults | dict[str, Any] | None = None,
    admin_token: str | None = None,
    identifier_endpoints: bool = True,
) -> FastAPI:
    """An ASGI app serving ``catalog`` like an Akeneo PIM (see the module docstring). With
    ``admin_token``, the ``/_admin`` endpoints (faults, catalog edits) need it as a bearer
    token; ``/_health`` answers anyone."""
    if isinstance(faults, dict):
        try:
            faults = Faults.from_dict(faults)
        except ApiError as exc:
            raise ValueError(exc.message) from None
    state = _ServerState(
        catalog=catalog,
        tokens=_Tokens(client_id, secret, username, password, token_ttl),
        faults=_FaultInjector(faults or Faults()),
        stats=_Stats(),
        tz=ZoneInfo(timezone),
        identifier_endpoints=identifier_endpoints,
    )
    app = FastAPI(title="pimsync reference PIM", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pim = state
    app.add_middleware(_StatsMiddleware, stats=state.stats, log=state.log)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> Response:
        return _error_response(error)

    _add_oauth_routes(app, state)
    _add_product_routes(app, state)
    _add_definition_routes(app, state)
    _add_admin_routes(app, state)

    @app.get("/_health")
    async def health() -> Response:
        return _json({"status": "ok"})

    if admin_token:

        @app.middleware("http")
        async def admin_only(request: Request, call_next: Any) -> Any:
            if request.url.path.startswith("/_admin"):
                presented = request.headers.get("authorization", "")
                expected = f"Bearer {admin_token}"
                if not hmac.compare_digest(presented.encode(), expected.encode()):
                    return _error_response(ApiError(401, "The admin endpoints need a token"))
            return await call_next(request)

    return app


def _add_oauth_routes(app: FastAPI, state: _ServerState) -> None:
    @app.post(TOKEN_PATH)
    async def token(request: Request) -> Response:
        if state.faults.faults.apply_to_token:
            await state.faults.apply()
        state.tokens.check_client(request.headers.get("authorization"))
        return _json(state.tokens.grant(await _form_or_json(request)))


def _add_product_routes(app: FastAPI, state: _ServerState) -> None:
    catalog = state.catalog

    async def guarded(request: Request) -> None:
        state.tokens.check_bearer(request.headers.get("authorization"))
        await state.faults.apply()

    def malformed() -> Response | None:
        if state.faults.take_malformed():
            return Response(MALFORMED_BODY, media_type="application/json")
        return None

    @app.get(f"{API}/products-uuid")
    async def list_products(request: Request) -> Response:
        await guarded(request)
        kind = _pagination_type(request, search_after_allowed=True)
        limit = _limit(request)
        accept = parse_search(request.query_params.get("search"), state.tz, catalog)
        if (broken := malformed()) is not None:
            return broken
        base = _base(request)
        extra: dict[str, Any] = {}
        if kind == "search_after":
            cursor = request.query_params.get("search_after")
            found, more = catalog.products_after(cursor, limit, accept)
            links = _after_links(request, found[-1][0] if found else None, more)
            # as Akeneo: every page asked with_count=true carries the count of the whole
            # search, and the next link repeats the parameters it was given
            if request.query_params.get("with_count") == "true":
                extra["items_count"] = catalog.count(accept)
        else:
            page = _page_number(request, limit)
            found, more = catalog.products_page((page - 1) * limit, limit, accept)
            links = _page_links(request, page, more)
            extra["current_page"] = page
            if request.query_params.get("with_count") == "true":
                extra["items_count"] = catalog.count(accept)
        items = [_item(f"{base}{API}/products-uuid/{key}", blob) for key, blob in found]
        return _list_body(links, items, extra)

    @app.get(f"{API}/products-uuid/{{uid}}")
    async def get_product_by_uuid(request: Request, uid: str) -> Response:
        await guarded(request)
        blob = catalog.product_blob(uid)
        if blob is None:
            raise ApiError(404, f'Product "{uid}" does not exist or you do not have permission.')
        href = f"{_base(request)}{API}/products-uuid/{uid.lower()}"
        return Response(_item(href, blob), media_type="application/json")

    @app.get(f"{API}/products/{{identifier:path}}")
    async def get_product(request: Request, identifier: str) -> Response:
        await guarded(request)
        if not state.identifier_endpoints:
            raise ApiError(403, "You are not allowed to access the identifier endpoints.")
        blob = catalog.identifier_blob(identifier)
        if blob is None:
            raise ApiError(
                404, f'Product "{identifier}" does not exist or you do not have permission.'
            )
        # /products answers carry the identifier at the top level, /products-uuid ones do not
        product = orjson.loads(blob)
        href = f"{_base(request)}{API}/products/{quote(identifier, safe='')}"
        return _json({"_links": {"self": {"href": href}}, "identifier": identifier, **product})

    @app.get(f"{API}/product-models")
    async def list_models(request: Request) -> Response:
        await guarded(request)
        kind = _pagination_type(request, search_after_allowed=True)
        limit = _limit(request)
        if request.query_params.get("search"):
            raise ApiError(422, "The reference PIM does not filter product models.")
        if (broken := malformed()) is not None:
            return broken
        extra: dict[str, Any] = {}
        if kind == "search_after":
            found, more = catalog.models_after(request.query_params.get("search_after"), limit)
            links = _after_links(request, found[-1][0] if found else None, more)
        else:
            page = _page_number(request, limit)
            found, more = catalog.models_page((page - 1) * limit, limit)
            links = _page_links(request, page, more)
            extra["current_page"] = page
        base = _base(request)
        items = [
            _item(f"{base}{API}/product-models/{quote(code, safe='')}", blob)
            for code, blob in found
        ]
        return _list_body(links, items, extra)

    @app.get(f"{API}/product-models/{{code}}")
    async def get_model(request: Request, code: str) -> Response:
        await guarded(request)
        blob = catalog.model_blob(code)
        if blob is None:
            raise ApiError(404, f'Product model "{code}" does not exist.')
        href = f"{_base(request)}{API}/product-models/{quote(code, safe='')}"
        return Response(_item(href, blob), media_type="application/json")


def _add_definition_routes(app: FastAPI, state: _ServerState) -> None:
    exported: dict[str, Any] = {}
    exported_from: list[CatalogDefinitions | None] = [None]

    def records(kind: str) -> list[dict[str, Any]]:
        # exported once per set of definitions: they change only when the catalog is replaced
        # (``replace_with``: a test serving a spoiled catalog with a renamed identifier)
        definitions = state.catalog.definitions
        if exported_from[0] is not definitions:
            exported.clear()
            exported.update(documented_records(definitions))
            exported_from[0] = definitions
        return exported[kind]

    def lister(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def list_records(request: Request) -> Response:
            state.tokens.check_bearer(request.headers.get("authorization"))
            found = records(kind)
            if kind == "attributes":
                found = _search_attributes(found, request.query_params.get("search"))
            return _records_page(request, found, f"{API}/{kind}")

        return list_records

    for kind in ("attributes", "families", "channels", "categories", "locales", "currencies"):
        app.add_api_route(f"{API}/{kind}", lister(kind), methods=["GET"])

    @app.get(f"{API}/measurement-families")
    async def list_measurement_families(request: Request) -> Response:
        # not paginated in Akeneo: the whole list at once
        state.tokens.check_bearer(request.headers.get("authorization"))
        return _json(records("measurement-families"))

    @app.get(f"{API}/attributes/{{code}}/options")
    async def list_options(request: Request, code: str) -> Response:
        state.tokens.check_bearer(request.headers.get("authorization"))
        definitions = state.catalog.definitions
        if code not in definitions.attributes:
            raise ApiError(404, f'Attribute "{code}" does not exist.')
        options = [
            {"code": option, "attribute": code, "sort_order": i, "labels": labels}
            for i, (option, labels) in enumerate(definitions.options.get(code, {}).items())
        ]
        return _records_page(request, options, f"{API}/attributes/{code}/options")


def _add_admin_routes(app: FastAPI, state: _ServerState) -> None:
    @app.get("/_admin/faults")
    async def get_faults() -> Response:
        return _json(asdict(state.faults.faults))

    @app.post("/_admin/faults")
    async def set_faults(request: Request) -> Response:
        try:
            faults = Faults.from_dict(await _json_object(request))
        except TypeError as exc:
            raise ApiError(422, f"Bad fault settings: {exc}") from None
        state.faults.configure(faults)
        return _json(asdict(faults))

    @app.get("/_admin/stats")
    async def get_stats() -> Response:
        return _json(asdict(state.stats))

    @app.post("/_admin/stats/reset")
    async def reset_stats() -> Response:
        state.stats.reset()
        state.log.reset()
        return _json(asdict(state.stats))

    @app.get("/_admin/requests")
    async def get_requests() -> Response:
        # every API request's arrival (epoch seconds), and those that came before the PIM
        # allowed them (a Retry-After it had sent was still running)
        return _json(asdict(state.log))

    @app.post("/_admin/tokens/revoke")
    async def revoke_tokens(request: Request) -> Response:
        # ?keep_refresh=true: access tokens die but refresh grants still work
        state.tokens.revoke(keep_refresh=request.query_params.get("keep_refresh") == "true")
        return Response(status_code=204)

    @app.put("/_admin/products/{identifier:path}")
    async def put_product(request: Request, identifier: str) -> Response:
        body = await _json_object(request)
        return _json(state.catalog.put(identifier, body, _now_iso(state.tz)))

    @app.patch("/_admin/products/{identifier:path}")
    async def patch_product(request: Request, identifier: str) -> Response:
        body = await _json_object(request)
        return _json(state.catalog.patch(identifier, body, _now_iso(state.tz)))

    @app.patch("/_admin/products-uuid/{uid}")
    async def patch_product_by_uuid(request: Request, uid: str) -> Response:
        body = await _json_object(request)
        return _json(state.catalog.patch_uuid(uid, body, _now_iso(state.tz)))

    @app.delete("/_admin/products/{identifier:path}")
    async def delete_product(identifier: str) -> Response:
        if not state.catalog.delete(identifier):
            raise ApiError(404, f'Product "{identifier}" does not exist.')
        return Response(status_code=204)


# --- running it -----------------------------------------------------------------------------


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every answer waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="reference-pim", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the reference PIM did not start on {host}:{bound_port}")
            time.sleep(0.01)
        shown_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{shown_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run(
    data_spec: str,
    host: str = "127.0.0.1",
    port: int = 8081,
    bad: BadData | None = None,
    **options: Any,
) -> None:
    """Serve the dataset ``data_spec`` (any ``open_source`` spec) until interrupted."""
    catalog = ReferenceCatalog.load(data_spec, bad)
    app = create_app(catalog, **options)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
