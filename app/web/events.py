"""``POST /events/{domain}``: pricing, inventory and media events from their systems of record.

Each source authenticates with its own bearer token; a source may only send the domains it
owns (the ownership table). Bodies are one event or ``{"events": [...]}`` (up to 1,000).
Accepted events go to their domain's queue: a backlog in one domain never delays another.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.config import get_settings
from app.db import session_scope, utcnow
from app.logging import get_logger
from app.mapping import repository as mapping_repo
from app.mapping.repository import Tally
from app.ownership import OwnershipError
from app.pages.schemas import EventBatch
from app.sync.runtime import REGISTRY
from app.web.security import Refused, bearer, parse_json, read_body, token_owner

router = APIRouter(tags=["events"])
log = get_logger("pimsync.web.events")
EXTERNAL_DOMAINS = ("pricing", "inventory", "media")


def record_refusal(source: str, domain: str, count: int) -> None:
    with session_scope() as session:
        mapping_repo.record_violations(
            session, {(source, domain, "<domain events>"): Tally(count, None)}, utcnow()
        )


@router.post("/events/{domain}", status_code=202)
async def post_events(domain: str, request: Request) -> dict[str, Any]:
    settings = get_settings()
    tokens = {k: v.get_secret_value() for k, v in settings.event_source_tokens.items()}
    source = token_owner(bearer(request), tokens)
    if source is None:
        raise Refused(401, "bad_token", "unknown or missing bearer token for event sources")
    if domain == "catalog":
        raise Refused(403, "not_owner", "catalog events come from publishing the PIM's products")
    if domain not in EXTERNAL_DOMAINS:
        raise Refused(404, "unknown_domain", f"unknown domain {domain!r}")
    try:
        REGISTRY.ownership(settings).check(source, domain)
    except OwnershipError as exc:
        await run_in_threadpool(record_refusal, source, domain, 1)
        log.warning("event_refused", source=source, domain=domain, reason=str(exc))
        raise Refused(403, "not_owner", str(exc)) from None
    body = await read_body(request, settings.webhook_max_body_bytes)
    data = parse_json(body)
    items = data.get("events") if isinstance(data, dict) and "events" in data else [data]
    if isinstance(items, list):
        items = [dict(e, type=e.get("type", domain)) if isinstance(e, dict) else e for e in items]
    try:
        batch = EventBatch(events=items)
    except ValidationError as exc:
        raise Refused(422, "invalid_event", _errors(exc), field=_field(exc)) from None
    wrong = sorted({e.type for e in batch.events} - {domain})
    if wrong:
        raise Refused(422, "invalid_event", f"events of {', '.join(wrong)} sent to /{domain}")
    channels = REGISTRY.channels(settings)
    for i, e in enumerate(batch.events):
        if e.source_version > settings.event_max_source_version:
            raise Refused(
                422,
                "invalid_event",
                f"events[{i}].source_version {e.source_version} is past the highest version "
                f"accepted ({settings.event_max_source_version}, PIMSYNC_EVENT_MAX_SOURCE_VERSION)",
                field=f"events[{i}].source_version",
            )
        if e.channel is not None and e.channel not in channels:
            raise Refused(
                422,
                "invalid_event",
                f"events[{i}].channel: unknown channel {e.channel!r}; configured: "
                + ", ".join(sorted(channels)),
                field=f"events[{i}].channel",
            )
    await run_in_threadpool(request.app.state.events_sender, domain, source, batch.events)
    return {"accepted": len(batch.events), "domain": domain, "source": source}


def _field(exc: ValidationError) -> str | None:
    """The first failing field, as ``events[i].name`` (a model-level rule names the event)."""
    errors = exc.errors()
    if not errors:
        return None
    loc = [p for p in errors[0]["loc"]]
    if len(loc) >= 2 and loc[0] == "events" and isinstance(loc[1], int):
        rest = ".".join(str(p) for p in loc[2:])
        return f"events[{loc[1]}]" + (f".{rest}" if rest else "")
    return ".".join(str(p) for p in loc) or None


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
