"""The FastAPI application (``pimsync web``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.config import get_settings
from app.db import session_scope
from app.gcpause import freeze_inherited
from app.logging import get_logger
from app.pages.reader import PageReader
from app.web import dashboard, events, pages, problems, webhooks
from app.web.admission import Gate

log = get_logger("pimsync.web")


# No page of this app is meant to be framed (the dashboard's Replay could be clickjacked),
# sniffed into another type, or to load anything from elsewhere.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (plain ASGI: nothing on the read path's way)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    dispatcher: Any | None = None,
    events_sender: Callable[[str, str, list[Any]], None] | None = None,
) -> FastAPI:
    """The app; ``dispatcher``/``events_sender`` default to Celery (tests may pass their own)."""
    settings = get_settings()
    reader = (
        PageReader(settings.database_url, settings.db_pool_size)
        if settings.database_url.startswith("postgresql")
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far lives as long as the process: frozen, a full collection no
        # longer walks it, so a request never waits tens of milliseconds behind one (the
        # read API's p99).
        freeze_inherited()
        # The threadpool that runs the intakes' blocking calls: measured on the events bench,
        # 4 threads instead of anyio's 40 halved the webhook acknowledgement's p99 (requests
        # served in turn instead of 16 interleaving under the GIL).
        to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        # The webhook intake has threads of its own: neither a crowd of domain events, nor
        # the dashboard, nor reads on SQLite can take the ones it needs (Akeneo's Events API
        # waits 0.5 s, then drops a delivery for good).
        api.state.intake_limiter = CapacityLimiter(settings.web_threads)
        # Reads that need a thread (SQLite, the embedded demo) have theirs, too.
        api.state.read_limiter = CapacityLimiter(settings.web_threads)
        yield
        if reader is not None:
            await reader.close()

    api = FastAPI(
        title="pimsync",
        version=__version__,
        docs_url="/docs" if settings.web_docs else None,
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.page_reader = reader
    # Listings are built by the database, a few at once (app/web/admission.py); fewer than
    # the reader's connections, so single reads always find one.
    api.state.list_gate = Gate(
        "listings",
        min(settings.web_list_concurrency, max(1, settings.db_pool_size - 1)),
        settings.web_list_queue,
        pages.LIST_WAIT_SECONDS,
    )
    api.state.failed_logins = dashboard.FailedLogins(
        settings.dashboard_max_failed_logins, settings.dashboard_failed_login_window_seconds
    )
    if dispatcher is None:
        # The Celery side only when asked for (tests pass their own): importing tasks reads
        # the settings and configures the Celery app.
        from tasks.dispatch import CeleryDispatcher

        dispatcher = CeleryDispatcher()
    if events_sender is None:
        from tasks.dispatch import send_domain_events  # (the same reason)

        events_sender = send_domain_events
    api.state.dispatcher = dispatcher
    api.state.events_sender = events_sender

    problems.install(api)

    api.add_middleware(SecurityHeaders)

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:  # on the event loop: no thread to wait for
        """Liveness: the process answers."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """Readiness: the database answers."""
        try:
            with session_scope() as session:
                session.execute(text("SELECT 1"))
        except DBAPIError as exc:
            # the error names the host, port and role: logged for operators, not shown to all
            log.warning("readiness_failed", error=str(exc.orig)[:200])
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"},
                503,
                headers={"Retry-After": str(problems.RETRY_AFTER_SECONDS)},
            )
        return JSONResponse({"status": "ok"})

    api.include_router(webhooks.router)
    api.include_router(events.router)
    api.include_router(pages.router)
    api.include_router(dashboard.router)
    return api
