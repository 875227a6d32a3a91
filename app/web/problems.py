"""Every error the HTTP app answers is an RFC 9457 problem document (``application/problem+json``):
``type``, ``title``, ``status``, ``detail``, plus pimsync's own members ``reason`` (a stable
word a client or a metric can branch on) and, when one field is at fault, ``field``.

Input is refused with a 4xx that says what is wrong and where; a database or broker that is
down answers 503 with ``Retry-After``; nothing a client sends is ever a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.logging import get_logger
from app.sync.context import DispatchError
from app.web.security import Refused

log = get_logger("pimsync.web")
PROBLEM_JSON = "application/problem+json"
# A client told "try again" waits this long first: a restarting database or broker is back
# within seconds, and Akeneo's Event Platform honours it.
RETRY_AFTER_SECONDS = 5


def problem(
    status: int,
    detail: str,
    *,
    reason: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem document answer."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if reason is not None:
        body["reason"] = reason
    if field is not None:
        body["field"] = field
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers) if headers else None,
    )


def unavailable(what: str) -> Response:
    return problem(
        503,
        f"{what} unavailable, try again",
        reason=f"{what}_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install(api: FastAPI) -> None:
    """Answer every error of ``api`` as a problem document."""

    @api.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> Response:
        return problem(
            exc.status_code,
            str(exc.detail),
            reason=exc.reason,
            field=exc.field,
            headers=exc.headers,
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        location = [str(p) for p in first.get("loc", ())]
        field = ".".join(location[1:] if len(location) > 1 else location) or None
        message = first.get("msg", "invalid request")
        return problem(
            422,
            f"{'.'.join(location)}: {message}" if location else message,
            reason="invalid",
            field=field,
        )

    @api.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> Response:
        # The database is down or restarting: 503 says "try again"; a 500 would say the
        # request itself broke something.
        log.warning("database_unavailable", path=request.url.path, error=str(exc.orig)[:200])
        return unavailable("database")

    @api.exception_handler(DispatchError)
    @api.exception_handler(BrokerError)
    @api.exception_handler(RedisConnectionError)
    @api.exception_handler(RedisTimeoutError)
    async def _broker(request: Request, exc: Exception) -> Response:
        log.warning("broker_unavailable", path=request.url.path, error=str(exc)[:200])
        return unavailable("broker")

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # A bug, never the client's input: logged with its traceback, answered as a problem.
        log.exception("unexpected_error", path=request.url.path)
        return problem(500, "internal error (logged)", reason="internal")
