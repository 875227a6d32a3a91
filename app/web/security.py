"""Request authentication: HMAC signatures for webhooks, bearer tokens for APIs.

Comparisons are constant-time (``hmac.compare_digest``) and happen before a body is parsed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import HTTPException, Request

from app.metrics import WEBHOOK_REFUSED


class Refused(HTTPException):
    """A refused request: counted by reason, answered with a clear one-line reason."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        headers: dict[str, str] | None = None,
        field: str | None = None,
    ):
        WEBHOOK_REFUSED.labels(reason).inc()
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.reason = reason
        self.field = field


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def matches(candidates: Iterable[str | None], secrets: Iterable[str], message: bytes) -> bool:
    """True when any presented signature is the HMAC of ``message`` under any secret.

    Every pair is compared (no early exit), so timing says nothing about which matched.
    """
    ok = False
    expected = [hmac_hex(s, message) for s in secrets if s]
    for presented in candidates:
        if not presented:
            continue
        value = presented.strip().lower()
        for exp in expected:
            # bytes: compare_digest raises TypeError on non-ASCII str (any header byte >= 0x80)
            ok |= hmac.compare_digest(value.encode(), exp.encode())
    return ok


def check_timestamp(raw: str | None, max_age: int, now: float | None = None) -> int:
    # ASCII digits only, and few of them: str.isdigit() accepts "²" (int() does not) and
    # int() refuses more than 4300 digits; either would be a 500 instead of a 401.
    if raw is None or not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw) > 20:
        raise Refused(401, "missing_timestamp", "missing or malformed X-Akeneo-Request-Timestamp")
    ts = int(raw.strip())
    now = time.time() if now is None else now
    if ts < now - max_age:
        raise Refused(
            401,
            "stale_timestamp",
            f"timestamp {ts} is older than {max_age} s: replayed or delayed request",
        )
    if ts > now + max_age:
        raise Refused(401, "future_timestamp", f"timestamp {ts} is in the future")
    return ts


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "too_large", f"body of {declared} bytes exceeds {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_owner(presented: str | None, tokens: dict[str, str]) -> str | None:
    """Which source a bearer token belongs to (every token compared, constant time each)."""
    owner = None
    if not presented:
        return None
    for source, token in tokens.items():
        if token and hmac.compare_digest(presented.encode(), token.encode()):
            owner = source
    return owner


# Deeper than any payload pimsync takes (an Akeneo product with table attributes nests about
# a dozen levels): deeper documents are refused at parse time, before anything recurses into
# them or asks PostgreSQL to store them.
MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests containers more than ``limit`` deep (iterative: no stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(body: bytes) -> Any:
    """A request body as JSON, or a 400 that says why (malformed, or nested too deep)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "malformed_json", f"body is not JSON: {exc}") from None
    if json_depth_exceeds(value, MAX_JSON_DEPTH):
        raise Refused(400, "too_deep", f"body nests JSON more than {MAX_JSON_DEPTH} levels deep")
    return value
