"""Snapshot readers over HTTP, on real local servers: the token goes to the snapshot's own
origin only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.pages.snapshots import HttpSnapshotReader, SnapshotError


@contextmanager
def snapshot_server(pages: dict[str, Any]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Serves ``pages`` ({path: body}); yields its base URL and the (path, Authorization)
    of every request it received."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            body = pages.get(self.path)
            data = json.dumps(body).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def record(sku: str) -> dict[str, Any]:
    return {"sku": sku, "source_version": 3, "payload": {"amount": "1.00"}}


def test_pages_on_the_same_origin_are_followed_with_the_token() -> None:
    pages = {"/p1": {"items": [record("A")], "next": "/p2"}, "/p2": {"items": [record("B")]}}
    with snapshot_server(pages) as (base, seen):
        got = [r["sku"] for r in HttpSnapshotReader(f"{base}/p1", "erp-token").records()]
    assert got == ["A", "B"]
    assert seen == [("/p1", "Bearer erp-token"), ("/p2", "Bearer erp-token")]


def test_a_next_link_to_another_origin_is_refused_and_never_sent_the_token() -> None:
    with snapshot_server({"/p2": {"items": [record("X")]}}) as (other, other_seen):
        pages = {"/p1": {"items": [record("A")], "next": f"{other}/p2"}}
        with snapshot_server(pages) as (base, seen):
            reader = HttpSnapshotReader(f"{base}/p1", "erp-token")
            got = []
            with pytest.raises(SnapshotError, match="another origin"):
                for r in reader.records():
                    got.append(r["sku"])
    assert got == ["A"]
    assert seen == [("/p1", "Bearer erp-token")]
    assert other_seen == []  # the other host never heard from us, let alone our token


def test_the_single_shared_token_of_earlier_releases_is_refused(monkeypatch) -> None:
    from app.config import get_settings, reset_settings_cache
    from app.pages.reconcile import reconcile

    monkeypatch.setenv("PIMSYNC_SNAPSHOT_TOKEN", "one-for-all")
    reset_settings_cache()
    try:
        with pytest.raises(ValueError, match="PIMSYNC_SNAPSHOT_TOKENS"):
            reconcile(get_settings(), ["catalog"])
    finally:
        monkeypatch.delenv("PIMSYNC_SNAPSHOT_TOKEN")
        reset_settings_cache()
