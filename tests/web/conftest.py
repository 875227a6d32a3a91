"""The web app on a real PostgreSQL, with a recording dispatcher and events sender."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import reset_settings_cache
from tests.web.support import (
    READ_TOKEN,
    SECRET,
    WEB_ENV,
    RecordingDispatcher,
    RecordingSender,
    Web,
)


@pytest.fixture
def web(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Web]:
    from app.web.app import create_app

    for var in WEB_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIMSYNC_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PIMSYNC_READ_TOKEN", READ_TOKEN)
    reset_settings_cache()
    dispatcher, sender = RecordingDispatcher(), RecordingSender()
    app = create_app(dispatcher=dispatcher, events_sender=sender)
    with TestClient(app) as client:
        yield Web(client, dispatcher, sender, monkeypatch)
    reset_settings_cache()
