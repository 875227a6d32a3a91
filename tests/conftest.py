"""Shared fixtures: isolated services per test run, and the icecat demo catalog.

- PostgreSQL: every run creates its own database and drops it at the end.
- Redis: every run claims a free database number (15..2) and flushes it at the end. The
  claim is a key in database 0 (``pimsync:test-run-claim:db<N>``), outside the claimed
  database, so a test that flushes its database cannot give it away to another run.
- Icecat: found through ``PIMSYNC_ICECAT_DIR`` (default ``../shared/data/akeneo-icecat``).

A service, tool or data set that is missing skips the tests that need it, with the reason
(tests/prereq.py); ``PIMSYNC_REQUIRE_ALL=1`` (CI sets it) makes every skip a failure instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import DEFAULT_ICECAT_DIR
from tests.prereq import CHECKED, REQUIRE_ALL, SWITCH, found, missing

pytest_plugins = ["pytester"]  # tests/test_prereq.py runs pytest on pytest

PG_ADMIN_URL = os.environ.get(
    "PIMSYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# an existing, migrated database to use as it is, neither created nor dropped: mutation testing
# (scripts/mutation.py) runs the tests once per mutant, and a fresh database each time would
# cost more than the tests
PG_GIVEN_URL = os.environ.get("PIMSYNC_TEST_PG_DB_URL")
REDIS_BASE_URL = os.environ.get("PIMSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
CLAIM_DB = 0
CLAIM_SECONDS = 3 * 3600
# The key earlier versions of this file kept inside the claimed database itself; still set
# there so that a run of such a version (another branch) leaves that database alone.
LEGACY_CLAIM_KEY = "pimsync:test-run-claim"
# Delete a key only if it still holds this run's token (an expired claim may be another's).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def claim_key(db: int) -> str:
    return f"pimsync:test-run-claim:db{db}"


def flush_redis_db(client: Any) -> None:
    """Empty the run's Redis database (``redis_url``) for a test. The claim is not in it; the
    legacy marker is put back for runs of earlier versions (they would take an empty db)."""
    token = client.get(LEGACY_CLAIM_KEY)
    client.flushdb()
    if token is not None:
        client.set(LEGACY_CLAIM_KEY, token, ex=CLAIM_SECONDS)


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


@pytest.fixture(scope="session")
def icecat_dir() -> Path:
    path = Path(os.environ.get("PIMSYNC_ICECAT_DIR", str(DEFAULT_ICECAT_DIR)))
    found(
        "icecat catalog",
        path if (path / "products.csv").exists() else None,
        f"no products.csv in {path}; set PIMSYNC_ICECAT_DIR to a copy of shared/data/akeneo-icecat",
    )
    return path


def claim_redis_db(claims: Any, token: str) -> int | None:
    """Claim a free database (2..15) for ``token``: SET NX of its key in ``claims`` (db 0).

    From 15 down: runs of earlier versions of this file take the lowest free database and,
    having lost their in-db claim to a flush, may still flush it at their end; seen on a
    shared machine. Starting at the other end keeps the two kinds of run apart."""
    import redis

    for db in range(15, 1, -1):
        key = claim_key(db)
        if not claims.set(key, token, nx=True, ex=CLAIM_SECONDS):
            continue  # another run's
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
        # someone else's data, or a run of an earlier version (its claim is in there, set
        # with NX too): leave it alone
        if client.dbsize() or not client.set(LEGACY_CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
            claims.eval(_RELEASE, 1, key, token)  # unclaimed, not flushed: not ours
            continue
        return db
    return None


def release_redis_db(claims: Any, db: int, token: str) -> None:
    """Give the database up (only if the claim is still ``token``'s): flushed, unclaimed."""
    import redis

    if claims.get(claim_key(db)) == token.encode():
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
        client.flushdb()
    claims.eval(_RELEASE, 1, claim_key(db), token)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of our own for the whole run, flushed after it.

    Claimed with SET NX of a key per database number in database 0, never in the claimed
    database: the run's tests may flush theirs (tests/pages/test_event_batching.py does)."""
    import redis

    claims = redis.Redis.from_url(f"{REDIS_BASE_URL}/{CLAIM_DB}")
    try:
        claims.ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        missing("Redis", f"unreachable at {REDIS_BASE_URL}: {_first_line(exc)}")
    token = uuid.uuid4().hex
    db = claim_redis_db(claims, token)
    if db is None:
        missing("Redis", f"no free database (2..15) at {REDIS_BASE_URL} for this test run")
    try:
        yield found("Redis", f"{REDIS_BASE_URL}/{db}", "")
    finally:
        release_redis_db(claims, db, token)


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
        missing("PostgreSQL", f"unreachable at {PG_ADMIN_URL}: {_first_line(exc)}")
    found("PostgreSQL", PG_ADMIN_URL, "")
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


# --- skips that cannot hide ---------------------------------------------------------------


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return f"{longrepr[2].removeprefix('Skipped: ')} ({longrepr[0]}:{longrepr[1]})"
    return str(longrepr)


def _no_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under PIMSYNC_REQUIRE_ALL=1 a skip from anywhere (a mark, importorskip, a bare
    pytest.skip) fails like a missing prerequisite; an expected failure (xfail) stays one."""
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {SWITCH}=1 lets nothing skip: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _no_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _no_skip(report)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every prerequisite the run asked for, found or missing, and what the switch did."""
    if not CHECKED:
        return
    tr = terminalreporter
    tr.section("prerequisites (tests/prereq.py)")
    for what in sorted(CHECKED):
        ok, detail = CHECKED[what]
        tr.line(f"{'found  ' if ok else 'MISSING'} {what}: {detail}")
    if REQUIRE_ALL:
        tr.line(f"{SWITCH}=1: a missing prerequisite or any skip fails the run")
    elif not all(ok for ok, _ in CHECKED.values()):
        tr.line(f"{SWITCH} unset: the tests needing a MISSING one were skipped (see above)")
