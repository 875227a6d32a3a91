"""Akeneo's two webhook formats, parsed into one kind of event (no I/O).

- the Events API: ``{"events": [{action, event_id, event_datetime, data: {resource}}]}``,
  carrying the product itself;
- the Event Platform: CloudEvents (one, or a list) carrying the product's uuid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.errors import InputError
from app.pim.product import parse_datetime
from app.textcheck import first_problem, printable, text_problem

UPSERT, REMOVE = "upsert", "remove"


class EventFormatError(InputError):
    """A webhook body that is JSON but not an Akeneo event payload."""


@dataclass(slots=True)
class PimEvent:
    event_id: str
    kind: str  # product.upsert | product.remove | model.upsert | model.remove
    key: str  # SKU, "uuid:<uuid>" or a product model code
    product: dict[str, Any] | None = None
    event_time: datetime | None = None


def _time(value: Any) -> datetime | None:
    """An event's time in UTC; None (no order) when it is unreadable or, in UTC, outside
    what a datetime holds (``0001-01-01T00:00:00+01:00``: an OverflowError wherever it is
    compared or stored, a 500 at the intake)."""
    if isinstance(value, str) and value:
        try:
            return parse_datetime(value).astimezone(UTC)
        except (ValueError, OverflowError):
            return None
    return None


def parse_events_api(body: Any) -> list[PimEvent]:
    """The Events API: ``{"events": [{action, event_id, event_datetime, data: {resource}}]}``."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise EventFormatError('expected {"events": [...]}')
    out = []
    for i, e in enumerate(body["events"]):
        if not isinstance(e, dict):
            raise EventFormatError(f"events[{i}] is not an object")
        action, event_id = e.get("action"), e.get("event_id")
        resource = (
            (e.get("data") or {}).get("resource") if isinstance(e.get("data"), dict) else None
        )
        if not isinstance(action, str) or not isinstance(event_id, str) or not event_id:
            raise EventFormatError(f"events[{i}] needs `action` and `event_id`")
        if not isinstance(resource, dict):
            raise EventFormatError(f"events[{i}] has no data.resource")
        subject, _, verb = action.partition(".")
        when = _time(resource.get("updated")) or _time(e.get("event_datetime"))
        if subject == "product":
            ident = resource.get("identifier")
            key = ident if isinstance(ident, str) and ident else _uuid_key(resource.get("uuid"), i)
            if verb == "removed":
                out.append(PimEvent(event_id, "product.remove", key, None, when))
            elif verb in ("created", "updated"):
                out.append(PimEvent(event_id, "product.upsert", key, resource, when))
            else:
                raise EventFormatError(f"events[{i}]: unknown action {action!r}")
        elif subject == "product_model":
            code = resource.get("code")
            if not isinstance(code, str) or not code:
                raise EventFormatError(
                    f"events[{i}]: a product model event needs data.resource.code"
                )
            out.append(
                PimEvent(
                    event_id,
                    "model.remove" if verb == "removed" else "model.upsert",
                    code,
                    None,
                    when,
                )
            )
        else:
            raise EventFormatError(f"events[{i}]: unknown action {action!r}")
    return out


def _uuid_key(value: Any, i: int) -> str:
    if not isinstance(value, str) or not value:
        raise EventFormatError(f"events[{i}]: the product has neither identifier nor uuid")
    return f"uuid:{value}"


def parse_cloudevents(body: Any) -> list[PimEvent]:
    """The Event Platform: one CloudEvent (structured mode) or a list of them."""
    items = body if isinstance(body, list) else [body]
    out = []
    for i, e in enumerate(items):
        if not isinstance(e, dict):
            raise EventFormatError(f"event {i} is not an object")
        event_id, kind = e.get("id"), e.get("type")
        if not isinstance(event_id, str) or not event_id or not isinstance(kind, str):
            raise EventFormatError(f"event {i} needs `id` and `type` (CloudEvents)")
        data = e.get("data")
        if not isinstance(data, dict):
            data = {}
        when = _time(e.get("time"))
        name = kind.removeprefix("com.akeneo.pim.v1.")
        if name.endswith(".delta"):
            name = name.removesuffix(".delta")
        subject, _, verb = name.partition(".")
        if subject == "product":
            product = data.get("product")
            if not isinstance(product, dict):
                product = {}
            ident = product.get("identifier")
            key = ident if isinstance(ident, str) and ident else _uuid_key(product.get("uuid"), i)
            remove = verb in ("deleted", "removed")
            out.append(
                PimEvent(
                    event_id, "product.remove" if remove else "product.upsert", key, None, when
                )
            )
        elif subject in ("product-model", "product_model"):
            model = data.get("product_model") or data.get("product-model") or {}
            code = model.get("code") if isinstance(model, dict) else None
            if not isinstance(code, str) or not code:
                raise EventFormatError(f"event {i}: a product model event needs its code")
            remove = verb in ("deleted", "removed")
            out.append(
                PimEvent(event_id, "model.remove" if remove else "model.upsert", code, None, when)
            )
        # other types (completeness notifications...): acknowledged, nothing to do
    return out


# The widest key each kind of event may carry (the mirror's and the pending work's columns).
MAX_IDENTIFIER = 255
MAX_UUID = 64
MAX_MODEL_CODE = 255


def _key_problem(e: PimEvent) -> str | None:
    if problem := text_problem(e.event_id):
        return f"its event id {problem}"
    if e.key.startswith("uuid:"):
        what, value, limit = "product uuid", e.key[5:], MAX_UUID
    elif e.kind.startswith("model."):
        what, value, limit = "product model code", e.key, MAX_MODEL_CODE
    else:
        what, value, limit = "product identifier", e.key, MAX_IDENTIFIER
    if problem := text_problem(value):
        return f"its {what} `{printable(value)}` {problem}"
    if len(value) > limit:
        return f"its {what} is {len(value):,} characters long (at most {limit})"
    return None


def storable(events: list[PimEvent]) -> tuple[list[PimEvent], list[str]]:
    """The events pimsync can record, and why each other one is refused: a key no row can hold
    (too long, a NUL character) refuses that event alone. A product payload PostgreSQL cannot
    store is not kept: the product is fetched from the PIM when its work is applied, and a bad
    value there fails its unit alone, named."""
    good: list[PimEvent] = []
    refused: list[str] = []
    for e in events:
        if problem := _key_problem(e):
            refused.append(f"event `{printable(e.event_id, 100)}`: {problem}")
            continue
        if e.product is not None and first_problem(e.product) is not None:
            e.product = None
        good.append(e)
    return good, refused
