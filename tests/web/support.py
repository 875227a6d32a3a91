"""Helpers for the web tests: signing, Akeneo's examples, a recording dispatcher and sender."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from app.config import DEFAULT_ICECAT_DIR, reset_settings_cache
from app.db import session_scope
from app.sync.pim_events.models import PendingSku, WebhookEvent
from tests.prereq import found

SECRET = "s3cret-primary"
READ_TOKEN = "read-t0ken"
# listing a channel's pages needs a bearer token (single-product reads do not)
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
WEB_ENV = (
    "PIMSYNC_WEBHOOK_SECRET",
    "PIMSYNC_WEBHOOK_SECRET_SECONDARY",
    "PIMSYNC_WEBHOOK_MAX_AGE_SECONDS",
    "PIMSYNC_WEBHOOK_MAX_BODY_BYTES",
    "PIMSYNC_EVENT_SOURCE_TOKENS",
    "PIMSYNC_EVENT_BACKLOG_LIMIT",
    "PIMSYNC_EVENT_COALESCE_SECONDS",
    "PIMSYNC_OWNERSHIP_FILE",
    "PIMSYNC_READ_TOKEN",
)
EXAMPLES_DIR = (
    Path(os.environ.get("PIMSYNC_ICECAT_DIR", str(DEFAULT_ICECAT_DIR)))
    / "api-docs"
    / "events-reference"
    / "events-reference-7.0"
    / "examples"
)


class RecordingDispatcher:
    """Records every message; a ``pim_product`` call also notes whether its pending row is
    visible from a fresh session at that moment (it is only once the intake committed)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def pim_product(self, key: str, countdown: float = 0.0) -> None:
        with session_scope() as session:
            visible = session.get(PendingSku, key) is not None
        self.calls.append(("pim_product", key, countdown, visible))

    def publish(
        self, batch_ids: list[int], countdown: float = 0.0, summary: dict[str, Any] | None = None
    ) -> None:
        self.calls.append(("publish", list(batch_ids), countdown))

    def ingest(self, run_id: Any, countdown: float = 0.0) -> None:
        self.calls.append(("ingest", run_id))

    def catch_up(self, channels: list[str], parent_id: Any, kind: str) -> None:
        self.calls.append(("catch_up", channels, parent_id, kind))

    def catalog_changed(self, changes: dict[str, list[str]]) -> None:
        self.calls.append(("catalog_changed", changes))

    def products(self) -> list[tuple[str, float, bool]]:
        return [c[1:] for c in self.calls if c[0] == "pim_product"]


@dataclass
class RecordingSender:
    calls: list[tuple[str, str, list[Any]]] = field(default_factory=list)

    def __call__(self, domain: str, source: str, events: list[Any]) -> None:
        self.calls.append((domain, source, list(events)))


@dataclass
class Web:
    client: TestClient
    dispatcher: RecordingDispatcher
    sender: RecordingSender
    monkeypatch: pytest.MonkeyPatch

    def setenv(self, **values: str | None) -> None:
        """Set (or, with None, unset) PIMSYNC_<NAME> settings for the next requests."""
        for name, value in values.items():
            var = f"PIMSYNC_{name.upper()}"
            if value is None:
                self.monkeypatch.delenv(var, raising=False)
            else:
                self.monkeypatch.setenv(var, value)
        reset_settings_cache()


# --- helpers ---------------------------------------------------------------------------------


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def events_api_headers(
    body: bytes, secret: str = SECRET, ts: int | None = None, sign_ts: int | None = None
) -> dict[str, str]:
    """Akeneo Events API headers: hex HMAC-SHA256 of ``f"{timestamp}." + body``."""
    ts = int(time.time()) if ts is None else ts
    signed = ts if sign_ts is None else sign_ts
    return {
        "Content-Type": "application/json",
        "X-Akeneo-Request-Timestamp": str(ts),
        "X-Akeneo-Request-Signature": hmac_hex(secret, f"{signed}.".encode() + body),
    }


def example(name: str, event_id: str | None = None) -> dict[str, Any]:
    """One of Akeneo's example Events API payloads (read-only: a copy is returned)."""
    __tracebackhide__ = True  # a missing example is reported at the test's line
    path = EXAMPLES_DIR / f"{name}.example.json"
    found(
        "Akeneo Events API examples",
        EXAMPLES_DIR if path.exists() else None,
        f"no {path.name} in {EXAMPLES_DIR} (they come with shared/data/akeneo-icecat; "
        "set PIMSYNC_ICECAT_DIR to a copy)",
    )
    data = copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
    if event_id is not None:
        for e in data["events"]:
            e["event_id"] = event_id
    return data


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def count(model: Any) -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def recorded() -> tuple[int, int]:
    """(webhook_event rows, pending_sku rows)."""
    return count(WebhookEvent), count(PendingSku)


def pending() -> dict[str, PendingSku]:
    with session_scope() as session:
        return {p.key: p for p in session.execute(select(PendingSku)).scalars()}


def refusals(reason: str) -> float:
    value = REGISTRY.get_sample_value("pimsync_webhook_refusals_total", {"reason": reason})
    return value or 0.0


def raw_post(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, dict[str, Any], BaseException | None]:
    """POST to the ASGI app with header bytes exactly as an HTTP server hands them over.

    (TestClient re-encodes header values as UTF-8, so a byte like 0xB2 never arrives as is.)
    Returns the status, the JSON body and the exception the app raised, if any.
    """
    import anyio

    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    error: BaseException | None = None
    try:
        anyio.run(app, scope, receive, send)
    except Exception as exc:  # the app's own 500s re-raise after answering
        error = exc
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], (json.loads(content) if content else {}), error


def problem(resp: Any, status: int) -> dict[str, Any]:
    """An RFC 9457 problem answer of ``status``: its members beyond the standard ones."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json", resp.headers
    body = resp.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    return {k: v for k, v in body.items() if k not in ("type", "title", "status")}
