"""``GET /dashboard``: the sync-health page operators look at, and ``GET /metrics``.

Authenticated: HTTP Basic (PIMSYNC_DASHBOARD_USER / PIMSYNC_DASHBOARD_PASSWORD) or
``Authorization: Bearer <PIMSYNC_API_TOKEN>``. Without either configured, both refuse to
serve rather than expose operations data. Everything ships with the package: the page is
server-rendered HTML with inline CSS and SVG charts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from app.config import get_settings
from app.db import session_scope, utcnow
from app.explain import explain
from app.pim.sources import open_source
from app.pim.throttle import PimHealth, connection_health, health_note
from app.sync import repository as sync_repo
from app.sync.context import SyncContext
from app.sync.operations import replay_dead_letters
from app.sync.progress import run_progress
from app.sync.runs import waiting_note
from app.sync.runtime import REGISTRY
from app.textcheck import text_problem
from app.web import charts, health
from app.web.metrics import exposition, queues_without_consumer
from app.web.security import Refused, bearer, read_body

router = APIRouter(tags=["operations"])
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _credentials() -> tuple[str, str, str]:
    s = get_settings()
    return s.dashboard_user, s.dashboard_password.get_secret_value(), s.api_token.get_secret_value()


class FailedLogins:
    """Failed sign-ins per client address over a sliding window (this process's): past the
    limit, the address is refused (429) until its oldest failure leaves the window, so a
    password cannot be guessed at the speed of the network."""

    def __init__(self, limit: int = 10, window_seconds: float = 300.0) -> None:
        self.limit, self.window = limit, window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures.setdefault(client, deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        return seen

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        now = time.monotonic()
        with self._lock:
            seen = self._recent(client, now)
            if len(seen) < self.limit:
                if not seen:
                    self._failures.pop(client, None)
                return None
            return max(1, int(seen[0] + self.window - now) + 1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.pop(next(iter(self._failures)))


def require_operator(request: Request) -> str:
    """The operator's name, or a 401/503 (no credentials configured: nothing is served), or
    a 429 for an address that failed too often lately."""
    user, password, token = _credentials()
    if not password and not token:
        raise Refused(
            503,
            "not_configured",
            "set PIMSYNC_DASHBOARD_PASSWORD or PIMSYNC_API_TOKEN to use this page",
        )
    client = request.client.host if request.client else "?"
    failures: FailedLogins = request.app.state.failed_logins
    wait = failures.retry_after(client)
    if wait is not None:
        raise Refused(
            429,
            "too_many_failures",
            "too many failed sign-ins from this address; try again later",
            headers={"Retry-After": str(wait)},
        )
    presented = bearer(request)
    if presented and token and hmac.compare_digest(presented.encode(), token.encode()):
        return "api"
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic ") and password:
        try:
            name, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            name, pw = "", ""
        ok_user = hmac.compare_digest(name.encode(), user.encode())
        ok_pw = hmac.compare_digest(pw.encode(), password.encode())
        if ok_user and ok_pw:
            return name
    if request.headers.get("authorization"):  # credentials given, and wrong
        failures.failed(client)
    raise Refused(
        401,
        "unauthenticated",
        "authentication required",
        headers={"WWW-Authenticate": 'Basic realm="pimsync"'},
    )


def _csrf(operator: str) -> str:
    """A per-operator, per-day token for the page's forms (cross-site posts cannot forge it)."""
    _user, password, token = _credentials()
    key = (password or token).encode()
    day = utcnow().strftime("%Y-%m-%d")
    return hmac.new(key, f"csrf:{operator}:{day}".encode(), hashlib.sha256).hexdigest()


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, replayed: int | None = None) -> HTMLResponse:
    operator = require_operator(request)
    now = utcnow()
    channels = REGISTRY.channels(get_settings())
    # the PIM as the workers see it (Redis): the page is not green while it fails
    pim = connection_health(get_settings())
    pim_note = health_note(pim) if pim is not None else None
    # one word for the header badge and every channel's: the PIM answers, asks for quiet
    # (429/503 with its not-before instant) or does not answer
    pim_label = (
        "ok" if pim is None or pim_note is None else ("throttling" if pim.throttling else "down")
    )
    with session_scope() as session:
        dash = health.gather(session, channels, now)
        running = _running(session, now, pim)
        durations = {ch.code: [r.duration_seconds or 0.0 for r in ch.runs] for ch in dash.channels}
        outcomes = [
            charts.bar_chart(
                [
                    (f"{r.kind} {r.started_at:%m-%d %H:%M}", float(r.synced), float(r.failed))
                    for r in ch.runs
                ],
                f"{ch.code}: published and failed units per run",
            )
            for ch in dash.channels
        ]
        html = _templates.get_template("dashboard.html").render(
            dash=dash,
            pim=pim,
            pim_state="ok" if pim_label == "ok" else "failing",
            pim_label=pim_label,
            pim_note=pim_note,
            duration_chart=Markup(charts.line_chart(durations, "seconds", "Run durations")),
            outcome_charts=[Markup(c) for c in outcomes],
            humanize=health.humanize,
            age=lambda t: None if t is None else (now - t).total_seconds(),
            csrf=_csrf(operator),
            unconsumed=queues_without_consumer(get_settings().broker_url),
            flash=f"Replayed {replayed} dead letter(s)." if replayed is not None else None,
            progress=running,
            progress_every_ms=PROGRESS_POLL_SECONDS * 1000,
        )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


# How often the dashboard asks for the running runs' progress (the issue asks for 5 s at most).
PROGRESS_POLL_SECONDS = 3


def _running(session: Any, now: datetime, pim: PimHealth | None = None) -> list[dict[str, Any]]:
    """The running runs with their progress, as the page and its poll show them (a read the
    PIM makes wait says so: ``waiting for PIM: 429 since ..., next try ...``)."""
    runs = sync_repo.running_runs(session)
    by_id = {r.id: r for r in runs}
    out = []
    for run in sorted(runs, key=lambda r: (r.started_at, r.channel or "")):
        p = run_progress(run, now, by_id.get(run.parent_id) if run.parent_id else None)
        out.append(
            {
                "id": str(run.id),
                "kind": run.kind,
                "channel": run.channel or "PIM read",
                "started_at": run.started_at.isoformat(),
                "progress": p.as_dict(),
                "text": "; ".join(t for t in (p.text(), waiting_note(run, pim)) if t),
            }
        )
    return out


@router.get("/dashboard/progress.json")
def progress(request: Request) -> JSONResponse:
    """The running runs' progress (done / total, ETA): what the dashboard polls."""
    require_operator(request)
    now = utcnow()
    pim = connection_health(get_settings())
    with session_scope() as session:
        running = _running(session, now, pim)
    return JSONResponse(
        {"now": now.isoformat(), "runs": running}, headers={"Cache-Control": "no-store"}
    )


STATIC = Path(__file__).parent / "static"


@router.get("/dashboard/dashboard.js", include_in_schema=False)
def dashboard_script() -> Response:
    """The dashboard's one script (served from here: the page's CSP allows no inline code)."""
    return Response(
        (STATIC / "dashboard.js").read_bytes(),
        media_type="text/javascript",
        headers={"Cache-Control": "max-age=300"},
    )


@router.get("/dashboard/explain", response_class=HTMLResponse)
def explain_page(
    request: Request,
    sku: str = Query(..., min_length=1, max_length=255, description="The product's SKU."),
    channel: str | None = Query(None, max_length=64, description="Only this channel."),
) -> HTMLResponse:
    """Why a product is or is not online, per channel (the dashboard's search box)."""
    require_operator(request)
    for name, value in (("sku", sku), ("channel", channel)):
        problem = text_problem(value) if value is not None else None
        if problem is not None:
            raise Refused(400, "bad_query", f"{name}: {problem}")
    settings = get_settings()
    try:
        with session_scope() as session:
            ex = explain(session, settings, sku.strip(), channel or None)
    except LookupError as exc:
        raise Refused(400, "unknown_channel", str(exc)) from None
    html = _templates.get_template("explain.html").render(ex=ex, sku=sku, channel=channel or "")
    # an unknown SKU is an answer the page gives (a search without a result), not an error
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


# The dashboard's forms carry a token and nothing else: a few hundred bytes.
MAX_FORM_BYTES = 4096


async def _form(request: Request) -> dict[str, str]:
    """The posted form, read only now (after authentication), capped, URL-encoded only: no
    multipart, so no file part is ever spooled to disk."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise Refused(415, "bad_form", f"forms are application/x-www-form-urlencoded, not {kind}")
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "bad_form", "the form is not URL-encoded ASCII") from None
    return dict(pairs)


# dead_letter.id is a bigint: a larger id is no letter (and a DataError, a 500, if queried)
MAX_LETTER_ID = 2**63 - 1


# The form, described for the OpenAPI schema only: the handler reads it itself, after
# authentication (FastAPI would parse a declared form before any dependency runs).
REPLAY_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"csrf": {"type": "string", "maxLength": 128}},
                    "required": ["csrf"],
                }
            }
        },
    }
}


@router.post("/dashboard/dead-letters/{letter_id}/replay", openapi_extra=REPLAY_FORM)
async def replay(request: Request, letter_id: int = PathParam(ge=1, le=MAX_LETTER_ID)) -> Response:
    # credentials first: nothing of the body is read for an anonymous client
    operator = require_operator(request)
    csrf = (await _form(request)).get("csrf", "")
    if not hmac.compare_digest(csrf.encode(), _csrf(operator).encode()):
        raise Refused(403, "bad_csrf", "stale or missing form token: reload the dashboard")
    result = await run_in_threadpool(_replay, request, letter_id)
    return RedirectResponse(
        f"{request.url_for('dashboard').path}?replayed={result['replayed']}#dead-letters",
        status_code=303,
    )


def _replay(request: Request, letter_id: int) -> dict[str, Any]:
    with session_scope() as session:
        return replay_dead_letters(session, _sync_context(request), ids=[letter_id])


def _sync_context(request: Request) -> SyncContext:
    settings = get_settings()
    return SyncContext(
        settings, request.app.state.dispatcher, lambda: open_source(settings.pim_source)
    )


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition: this process's (or all worker processes') samples, plus the
    state read from the database and the broker."""
    _user, _password, api_token = _credentials()
    # the metrics scope: the metrics token, or the operator's API token (which can do more)
    tokens = [t for t in (get_settings().metrics_token.get_secret_value(), api_token) if t]
    if not tokens:
        raise Refused(
            503,
            "not_configured",
            "set PIMSYNC_METRICS_TOKEN (or PIMSYNC_API_TOKEN) to expose metrics",
        )
    presented = bearer(request)
    ok = False
    for token in tokens:  # every one compared: timing says nothing about which matched
        ok |= bool(presented) and hmac.compare_digest((presented or "").encode(), token.encode())
    if not ok:
        raise Refused(401, "unauthenticated", "metrics need Authorization: Bearer <token>")
    return Response(exposition(get_settings()), media_type=CONTENT_TYPE_LATEST)
