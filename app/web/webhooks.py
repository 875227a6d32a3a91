"""PIM webhooks: Akeneo's Events API and Event Platform.

Authenticated (constant time) before the body is parsed; refused requests enqueue nothing.
An accepted request records its events and adds per-product work in one transaction, and
the tasks go out after it commits. Nothing is published in the request: Akeneo gives the
Events API 0.5 s and the Event Platform 5 s to answer.
"""

from __future__ import annotations

from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Request

from app.config import get_settings
from app.db import after_commit, session_scope, utcnow
from app.logging import get_logger
from app.metrics import WEBHOOK_ACCEPTED
from app.sync.context import DispatchError
from app.sync.pim_events import repository as events_repo
from app.sync.pim_events.apply import accept
from app.sync.pim_events.formats import (
    EventFormatError,
    PimEvent,
    parse_cloudevents,
    parse_events_api,
    storable,
)
from app.web.security import Refused, check_timestamp, matches, parse_json, read_body

router = APIRouter(tags=["webhooks"])
log = get_logger("pimsync.web.webhooks")


def _secrets() -> list[str]:
    s = get_settings()
    return [s.webhook_secret.get_secret_value(), s.webhook_secret_secondary.get_secret_value()]


def _require_secret() -> None:
    if not any(_secrets()):
        raise Refused(
            503, "not_configured", "webhook secret not configured (PIMSYNC_WEBHOOK_SECRET)"
        )


def _limiter(request: Request) -> CapacityLimiter | None:
    """The intake's threads (None before the app's start-up: anyio's default ones)."""
    limiter: CapacityLimiter | None = getattr(request.app.state, "intake_limiter", None)
    return limiter


def _backlog() -> int:
    with session_scope() as session:
        return events_repo.backlog(session)


# Up to this many new products, one task each (they run in parallel on the workers); a
# larger delivery gets one task per event_batch_max products, since each task takes that
# many due products along (one signed 1 MiB delivery used to become ~9,700 tasks).
SMALL_DELIVERY = 20


def tasks_for(keys: list[str], batch_max: int, waits: dict[str, float]) -> list[tuple[str, float]]:
    """The tasks a delivery sends, (key, countdown): one per key, or one per ``batch_max``
    keys. A task waits as long as the key it stands for (``waits``; absent: due now), or, for
    several keys, as long as the first of them to be due."""
    if len(keys) <= SMALL_DELIVERY:
        return [(k, waits.get(k, 0.0)) for k in keys]
    step = max(1, batch_max)
    return [
        (keys[i], min(waits.get(k, 0.0) for k in keys[i : i + step]))
        for i in range(0, len(keys), step)
    ]


def _intake(events: list[PimEvent], dispatcher: Any) -> dict[str, int]:
    settings = get_settings()
    try:
        with session_scope() as session:
            window = settings.event_coalesce_seconds
            result = accept(session, events, utcnow(), window)
            keys = result.new_keys or []
            sent = tasks_for(keys, settings.event_batch_max, result.waits)
            after_commit(session, lambda: [dispatcher.pim_product(k, wait) for k, wait in sent])
    except DispatchError as exc:
        # the work is recorded (committed): the sweeper sends it once the broker is back, so
        # the delivery is accepted, not lost by a refusal Akeneo's Events API never retries
        log.warning("pim_event_dispatch_deferred", products=len(keys), error=str(exc))
    WEBHOOK_ACCEPTED.labels("new").inc(result.accepted)
    WEBHOOK_ACCEPTED.labels("duplicate").inc(result.duplicates)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "products": len(keys)}


async def _take(events: list[PimEvent], request: Request) -> dict[str, Any]:
    """Record a delivery's events; an event no row can hold is refused alone (its neighbours
    are recorded, the answer lists why), a delivery of nothing else is a 422."""
    events, refused = storable(events)
    for reason in refused:
        log.warning("pim_event_refused", reason=reason)
    if refused and not events:
        raise Refused(422, "invalid_event", "; ".join(refused[:5]))
    # database and broker calls leave the event loop free for the next delivery, on the
    # intake's own threads (app/web/app.py)
    result: dict[str, Any] = await to_thread.run_sync(
        _intake, events, request.app.state.dispatcher, limiter=_limiter(request)
    )
    if refused:
        result["refused"] = refused[:20]
    return result


@router.post("/webhooks/akeneo")
async def events_api(request: Request) -> dict[str, Any]:
    """Akeneo Events API: HMAC-SHA256 over ``timestamp + "." + body``, hex."""
    settings = get_settings()
    _require_secret()
    body = await read_body(request, settings.webhook_max_body_bytes)
    raw_ts = request.headers.get("x-akeneo-request-timestamp")
    signature = request.headers.get("x-akeneo-request-signature")
    if not signature:
        raise Refused(401, "missing_signature", "missing X-Akeneo-Request-Signature")
    ts = check_timestamp(raw_ts, settings.webhook_max_age_seconds)
    if not matches([signature], _secrets(), f"{ts}.".encode() + body):
        raise Refused(401, "bad_signature", "signature does not match")
    if not body.strip():
        return {"accepted": 0, "duplicates": 0, "products": 0}  # Akeneo's connection test
    # No 429 here, unlike the Event Platform: the Events API never retries, so refusing a
    # delivery would lose it; the delta sync is its safety net anyway.
    try:
        events = parse_events_api(parse_json(body))
    except EventFormatError as exc:
        raise Refused(400, "bad_payload", f"not an Akeneo Events API payload: {exc}") from None
    return await _take(events, request)


@router.post("/webhooks/akeneo/event-platform")
async def event_platform(request: Request) -> dict[str, Any]:
    """Akeneo Event Platform: HMAC-SHA256 over the body with the primary and, during a
    rotation, the secondary secret; either signature with either of our secrets passes."""
    settings = get_settings()
    _require_secret()
    body = await read_body(request, settings.webhook_max_body_bytes)
    signatures = [
        request.headers.get("x-akeneo-signature-primary"),
        request.headers.get("x-akeneo-signature-secondary"),
    ]
    if not any(signatures):
        raise Refused(401, "missing_signature", "missing X-AKENEO-SIGNATURE-PRIMARY")
    algorithm = request.headers.get("x-akeneo-signature-algorithm", "HmacSHA256")
    if algorithm.lower() != "hmacsha256":
        raise Refused(401, "bad_signature", f"unsupported signature algorithm {algorithm}")
    if not matches(signatures, _secrets(), body):
        raise Refused(401, "bad_signature", "signature does not match")
    backlog = await to_thread.run_sync(_backlog, limiter=_limiter(request))
    if backlog > settings.event_backlog_limit:
        # The Event Platform slows down on 429: better than queueing without end.
        raise Refused(
            429, "backlog", f"{backlog} products waiting; slow down", headers={"Retry-After": "30"}
        )
    try:
        events = parse_cloudevents(parse_json(body))
    except EventFormatError as exc:
        raise Refused(400, "bad_payload", f"not a CloudEvents payload: {exc}") from None
    return await _take(events, request)
