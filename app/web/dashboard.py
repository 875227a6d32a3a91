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
from pathlib import Path

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST

from app.config import get_settings
from app.db import session_scope, utcnow
from app.pim.sources import open_source
from app.sync.context import SyncContext
from app.sync.operations import replay_dead_letters
from app.sync.runtime import REGISTRY
from app.web import charts, health
from app.web.metrics import exposition
from app.web.security import Refused, bearer

router = APIRouter(tags=["operations"])
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _credentials() -> tuple[str, str, str]:
    s = get_settings()
    return s.dashboard_user, s.dashboard_password.get_secret_value(), s.api_token.get_secret_value()


def require_operator(request: Request) -> str:
    """The operator's name, or a 401/503 (no credentials configured: nothing is served)."""
    user, password, token = _credentials()
    if not password and not token:
        raise Refused(
            503,
            "not_configured",
            "set PIMSYNC_DASHBOARD_PASSWORD or PIMSYNC_API_TOKEN to use this page",
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
    with session_scope() as session:
        dash = health.gather(session, channels, now)
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
            duration_chart=Markup(charts.line_chart(durations, "seconds", "Run durations")),
            outcome_charts=[Markup(c) for c in outcomes],
            humanize=health.humanize,
            age=lambda t: None if t is None else (now - t).total_seconds(),
            csrf=_csrf(operator),
            flash=f"Replayed {replayed} dead letter(s)." if replayed is not None else None,
        )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


# dead_letter.id is a bigint: a larger id is no letter (and a DataError, a 500, if queried)
MAX_LETTER_ID = 2**63 - 1


@router.post("/dashboard/dead-letters/{letter_id}/replay")
def replay(
    request: Request,
    letter_id: int = PathParam(ge=1, le=MAX_LETTER_ID),
    csrf: str = Form(""),
) -> Response:
    operator = require_operator(request)
    if not hmac.compare_digest(csrf.encode(), _csrf(operator).encode()):
        raise Refused(403, "bad_csrf", "stale or missing form token: reload the dashboard")
    with session_scope() as session:
        result = replay_dead_letters(session, _sync_context(request), ids=[letter_id])
    return RedirectResponse(
        f"{request.url_for('dashboard').path}?replayed={result['replayed']}#dead-letters",
        status_code=303,
    )


def _sync_context(request: Request) -> SyncContext:
    settings = get_settings()
    return SyncContext(
        settings, request.app.state.dispatcher, lambda: open_source(settings.pim_source)
    )


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition: this process's (or all worker processes') samples, plus the
    state read from the database and the broker."""
    _user, _password, token = _credentials()
    if not token:
        raise Refused(503, "not_configured", "set PIMSYNC_API_TOKEN to expose metrics")
    presented = bearer(request)
    if not presented or not hmac.compare_digest(presented.encode(), token.encode()):
        raise Refused(401, "unauthenticated", "metrics need Authorization: Bearer <token>")
    return Response(exposition(get_settings()), media_type=CONTENT_TYPE_LATEST)
