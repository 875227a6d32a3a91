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
# an existing, migrated database to use as it is, neither created nor dropped: mutation testing
# (scripts/mutation.py) runs the tests once per mutant, and a fresh database each time would
# cost more than the tests
PG_GIVEN_URL = os.environ.get("PIMSYNC_TEST_PG_DB_URL")
REDIS_BASE_URL = os.environ.get("PIMSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("PIMSYNC_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutation testing (scripts/mutation.py), the fastest tests first: a mutant is
    killed by its first failing test (mutmut runs with -x), and the direct tests of a
    module are the fast ones. Durations are those mutmut measured in its stats run."""
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from mutants/, where it is
    if not os.environ.get("MUTANT_UNDER_TEST") or not stats.exists():
        return
    import json

    seconds = json.loads(stats.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: seconds.get(item.nodeid, 0.0))


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (PIMSYNC_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def icecat_dir() -> Path:
    path = Path(os.environ.get("PIMSYNC_ICECAT_DIR", str(DEFAULT_ICECAT_DIR)))
    if not (path / "products.csv").exists():
        if os.environ.get("PIMSYNC_REQUIRE_ICECAT") == "1":
            pytest.fail(
                f"Akeneo icecat demo catalog not found at {path} (PIMSYNC_REQUIRE_ICECAT=1)"
            )
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


def _pg_admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_pg_database(prefix: str = "pimsync_test") -> str:
    """A fresh, migrated PostgreSQL database; returns its URL."""
    from sqlalchemy import text

    from app.migrations import upgrade

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = _pg_admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url


def drop_pg_database(url: str) -> None:
    from sqlalchemy import text

    from app.db import dispose_engines

    dispose_engines()
    name = url.rsplit("/", 1)[1]
    engine = _pg_admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of our own for the whole run, migrated, dropped at the end."""
    if PG_GIVEN_URL:
        yield PG_GIVEN_URL
        return
    try:
        engine = _pg_admin_engine()
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # pragma: no cover - depends on the machine
        _unavailable(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


APP_TABLES = (
    "channel_product",
    "pim_product",
    "pim_product_model",
    "pim_definitions",
    "sync_run",
    "sync_cursor",
    "sync_lock",
    "sync_batch",
    "dead_letter",
    "drift_event",
    "ownership_violation",
    "mirror_clock",
    "product_page",
    "webhook_event",
    "pending_sku",
)


def truncate_all(url: str) -> None:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            tables = [t for t in existing if t != "alembic_version"]
            if not tables:
                return
            if url.startswith("sqlite"):
                for t in tables:
                    conn.execute(text(f'DELETE FROM "{t}"'))
            else:
                conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture
def pg_db(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The run's PostgreSQL database, emptied, and made the configured database."""
    from app.config import reset_settings_cache
    from app.db import dispose_engines

    truncate_all(pg_url)
    monkeypatch.setenv("PIMSYNC_DATABASE_URL", pg_url)
    reset_settings_cache()
    dispose_engines()
    yield pg_url
    dispose_engines()
    reset_settings_cache()


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated SQLite file database made the configured database."""
    from app.config import reset_settings_cache
    from app.db import dispose_engines
    from app.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'pimsync.db'}"
    upgrade(url)
    monkeypatch.setenv("PIMSYNC_DATABASE_URL", url)
    reset_settings_cache()
    dispose_engines()
    yield url
    dispose_engines()
    reset_settings_cache()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> str:
    """Each store test once on SQLite (the embedded default) and once on PostgreSQL."""
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))
