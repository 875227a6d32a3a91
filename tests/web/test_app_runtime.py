"""The HTTP app's process set-up: its threadpool size comes from the settings."""

from __future__ import annotations

from anyio import to_thread
from fastapi.testclient import TestClient

from app.config import reset_settings_cache


def tokens(client: TestClient) -> float:
    async def read() -> float:
        return to_thread.current_default_thread_limiter().total_tokens

    assert client.portal is not None
    return client.portal.call(read)


def test_the_threadpool_is_the_configured_size(pg_db, monkeypatch):
    from app.web.app import create_app

    for size in (4, 7):
        monkeypatch.setenv("PIMSYNC_WEB_THREADS", str(size))
        reset_settings_cache()
        with TestClient(create_app(dispatcher=object(), events_sender=lambda *a: None)) as client:
            assert tokens(client) == size
            assert client.get("/healthz").status_code == 200
    reset_settings_cache()
