from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.channels.models import ChannelProduct
from app.config import get_settings
from app.db import session_scope
from app.dev.local import LocalDispatcher, drain
from app.sync.context import SyncContext
from tests.sync.memory_source import MemorySource


class Harness:
    """A sync context on a real database with an in-memory PIM and an in-process queue."""

    def __init__(self, source: MemorySource) -> None:
        self.source = source
        self.ctx = SyncContext(get_settings(), LocalDispatcher(), lambda: self.source)

    def reload_settings(self) -> None:
        self.ctx.settings = get_settings()

    @property
    def dispatcher(self) -> LocalDispatcher:
        assert isinstance(self.ctx.dispatcher, LocalDispatcher)
        return self.ctx.dispatcher

    def drain(self) -> int:
        return drain(self.ctx)

    def full(self, channels: list[str] | None = None) -> Any:
        from app.sync import ingest

        with session_scope() as s:
            run = ingest.start_full(s, self.ctx, channels)
            run_id = run.id if run else None
        self.drain()
        return run_id

    def delta(self) -> Any:
        from app.sync import ingest

        with session_scope() as s:
            run_id = ingest.start_delta(s, self.ctx, trigger="test").id
        self.drain()
        return run_id

    def runs(self, parent_id: Any) -> dict[str | None, Any]:
        from app.sync import repository as repo

        with session_scope() as s:
            parent = repo.get_run(s, parent_id)
            children = repo.child_runs(s, parent_id)
            return {None: parent, **{c.channel: c for c in children}}

    def rows(self, channel: str | None = None) -> dict[tuple[str, str], ChannelProduct]:
        with session_scope() as s:
            q = select(ChannelProduct)
            if channel:
                q = q.where(ChannelProduct.channel == channel)
            return {(r.channel, r.sku): r for r in s.execute(q).scalars()}


@pytest.fixture
def harness(pg_db: str) -> Iterator[Harness]:
    yield Harness(MemorySource.generated(60))


@pytest.fixture
def sqlite_harness(sqlite_db: str) -> Iterator[Harness]:
    yield Harness(MemorySource.generated(40))


@pytest.fixture
def channels_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write a channels file derived from the sample one, edited by the test."""
    import yaml

    from app.config import SAMPLE_DIR, reset_settings_cache

    def write(edit: Any) -> Path:
        data = yaml.safe_load((SAMPLE_DIR / "channels.yaml").read_text())
        edit(data["channels"])
        path = tmp_path / "channels.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("PIMSYNC_CHANNELS_FILE", str(path))
        reset_settings_cache()
        return path

    return write
