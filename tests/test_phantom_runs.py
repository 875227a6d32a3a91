"""A sync started while the broker cannot be reached never leaves a run that says `running`:
the run fails with why, its leases are released, and the command says so in one line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import app
from app.db import session_scope
from app.sync.models import SyncLock, SyncRun
from tests.e2e_support import apply_env, free_port, restore_env

pytestmark = pytest.mark.redis


@pytest.fixture
def no_broker(pg_db: str) -> Iterator[str]:
    """The configured broker is a port nothing listens on."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    old = apply_env({"PIMSYNC_DATABASE_URL": pg_db, "PIMSYNC_BROKER_URL": url})
    try:
        yield url
    finally:
        restore_env(old)


@pytest.mark.parametrize("kind", ["delta", "full"])
def test_a_sync_the_broker_cannot_take_fails_and_releases_its_leases(
    no_broker: str, kind: str
) -> None:
    result = CliRunner().invoke(app, ["sync", kind])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert any("broker unreachable" in line for line in lines), result.output
    assert "Traceback" not in result.output
    with session_scope() as s:
        runs = s.execute(select(SyncRun)).scalars().all()
        assert runs and all(r.status == "failed" for r in runs), [(r.status, r.error) for r in runs]
        assert all("broker unreachable" in (r.error or "") for r in runs)
        assert s.execute(select(func.count()).select_from(SyncLock)).scalar_one() == 0
    # and the next attempt is not refused by a phantom holding the lease
    again = CliRunner().invoke(app, ["sync", kind])
    assert "still in progress" not in again.output
