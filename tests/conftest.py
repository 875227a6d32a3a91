"""Shared fixtures: isolated services per test run, and the icecat demo catalog.

- PostgreSQL: every run creates its own database and drops it at the end.
- Redis: every run claims a free database number (2..15) and flushes it at the end.
- Icecat: found through ``PIMSYNC_ICECAT_DIR`` (default ``../shared/data/akeneo-icecat``);
  tests that need it skip with a clear reason when it is absent (a user's clone).

Set ``PIMSYNC_REQUIRE_SERVICES=1`` (CI does) to turn "service unreachable" skips into failures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import DEFAULT_ICECAT_DIR

PG_ADMIN_URL = os.environ.get(
    "PIMSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("PIMSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("PIMSYNC_REQUIRE_SERVICES") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (PIMSYNC_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def icecat_dir() -> Path:
    path = Path(os.environ.get("PIMSYNC_ICECAT_DIR", str(DEFAULT_ICECAT_DIR)))
    if not (path / "products.csv").exists():
        pytest.skip(
            f"Akeneo icecat demo catalog not found at {path}; set PIMSYNC_ICECAT_DIR to a copy "
            "of shared/data/akeneo-icecat to run these tests"
        )
    return path


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of our own for the whole run (claimed with SET NX, flushed after)."""
    import redis

    claim_key = "pimsync:test-run-claim"
    token = uuid.uuid4().hex
    try:
        redis.Redis.from_url(f"{REDIS_BASE_URL}/0").ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        _unavailable(f"Redis unreachable at {REDIS_BASE_URL}: {exc}")
    for db in range(2, 16):
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
        if client.set(claim_key, token, nx=True, ex=3 * 3600):
            # a db used by someone else (not a test run) holds other keys: leave it alone
            if client.dbsize() > 1:
                client.delete(claim_key)
                continue
            try:
                yield f"{REDIS_BASE_URL}/{db}"
            finally:
                client.flushdb()
            return
    _unavailable("no free Redis database (2..15) for this test run")
