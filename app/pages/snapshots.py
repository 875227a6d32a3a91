"""Snapshot readers: each external domain's full state, for reconciliation.

A snapshot is a stream of records ``{sku, channel?, source_version, payload}``, from a JSON
lines file or from an HTTP endpoint answering JSON lines or pages ``{"items": [...],
"next": URL}``. The catalog's snapshot is the channel catalog itself (``channel_product``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from app.pages.schemas import MAX_VERSION


class SnapshotError(RuntimeError):
    pass


class SnapshotRecord(dict[str, Any]):
    """sku, channel (None: every channel), source_version, payload."""


class SnapshotReader(Protocol):
    name: str

    def records(self) -> Iterator[SnapshotRecord]: ...


def _record(raw: Any, where: str) -> SnapshotRecord:
    if not isinstance(raw, dict):
        raise SnapshotError(f"{where}: expected an object")
    sku, version = raw.get("sku"), raw.get("source_version")
    if not isinstance(sku, str) or not sku:
        raise SnapshotError(f"{where}: `sku` is required")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise SnapshotError(f"{where}: `source_version` must be a positive integer")
    payload = raw.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise SnapshotError(f"{where}: `payload` must be an object")
    channel = raw.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise SnapshotError(f"{where}: `channel` must be a channel code or null")
    return SnapshotRecord(sku=sku, channel=channel, source_version=version, payload=payload or {})


class FileSnapshotReader:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = str(self.path)

    def records(self) -> Iterator[SnapshotRecord]:
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise SnapshotError(f"cannot read snapshot {self.path}: {exc.strerror}") from None
        with fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    raw = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise SnapshotError(f"{self.path}: line {n}: not JSON ({exc})") from None
                yield _record(raw, f"{self.path}: line {n}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class HttpSnapshotReader:
    """Pages of a snapshot over HTTP. The token goes to the snapshot's own origin only: a
    ``next`` link to another scheme, host or port is refused, never followed with it."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url, self.name = url, url
        self.origin = _origin(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # no redirects: a redirect to another host would carry the token there too
        self.client = httpx.Client(timeout=timeout, headers=headers, follow_redirects=False)

    def records(self) -> Iterator[SnapshotRecord]:
        url: str | None = self.url
        try:
            while url:
                if _origin(url) != self.origin:
                    raise SnapshotError(
                        f"snapshot {self.url}: its next page {url} is on another origin; "
                        "not followed (the snapshot's credential is for its own origin only)"
                    )
                try:
                    response = self.client.get(url)
                except httpx.HTTPError as exc:
                    raise SnapshotError(f"snapshot {url} unreachable: {exc}") from None
                if response.status_code != 200:
                    raise SnapshotError(f"snapshot {url} answered {response.status_code}")
                kind = response.headers.get("content-type", "")
                if "ndjson" in kind or "jsonl" in kind:
                    for n, line in enumerate(response.content.splitlines(), start=1):
                        if line.strip():
                            yield _record(orjson.loads(line), f"{url}: line {n}")
                    return
                try:
                    body = response.json()
                except ValueError:
                    raise SnapshotError(f"snapshot {url}: not JSON") from None
                items = body.get("items") if isinstance(body, dict) else None
                if not isinstance(items, list):
                    raise SnapshotError(f"snapshot {url}: expected {{'items': [...]}}")
                for i, raw in enumerate(items):
                    yield _record(raw, f"{url}: item {i}")
                link = body.get("next")
                url = urljoin(url, link) if isinstance(link, str) and link else None
        finally:
            self.client.close()


def open_snapshot(spec: str, token: str | None = None) -> SnapshotReader:
    if spec.startswith(("http://", "https://")):
        return HttpSnapshotReader(spec, token)
    return FileSnapshotReader(spec)
