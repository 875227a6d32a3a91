"""Alembic: upgrade on an empty database and from the previous revision, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import app.models  # noqa: F401
from app.db import Base
from app.migrations import current_revision, downgrade, upgrade
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    request.getfixturevalue("pg_url")  # skips cleanly when PostgreSQL is unreachable
    url = create_pg_database("pimsync_migr")
    downgrade(url, "base")
    try:
        yield url
    finally:
        drop_pg_database(url)


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_empty_database_matches_the_models(empty_db):
    upgrade(empty_db)
    assert current_revision(empty_db) is not None
    engine = create_engine(empty_db)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert _diff(empty_db) == []


def test_upgrade_from_the_previous_revision_keeps_data(empty_db):
    upgrade(empty_db, "0001")
    engine = create_engine(empty_db)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO channel_product (channel, sku, input_hash, status, enabled, "
                    "synced_at, source_seq, version) VALUES ('web', 'SKU-1', 'h', 'published', "
                    "true, CURRENT_TIMESTAMP, 1, 1)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO sync_run (id, kind, status, trigger, started_at, read, rejected, "
                    "synced, unchanged, skipped_incomplete, filtered, disabled, failed, "
                    "orphans_disabled, planned_units, planned_batches, pending_batches, "
                    "planning_done) VALUES (:id, 'full', 'completed', 'cli', CURRENT_TIMESTAMP, "
                    "0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, true)"
                ),
                {"id": uuid.uuid4().hex if empty_db.startswith("sqlite") else str(uuid.uuid4())},
            )
        upgrade(empty_db)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT sku FROM channel_product")).scalar() == "SKU-1"
            assert conn.execute(text("SELECT count(*) FROM sync_run")).scalar() == 1
            assert conn.execute(text("SELECT count(*) FROM sync_batch")).scalar() == 0
    finally:
        engine.dispose()
    assert _diff(empty_db) == []
    downgrade(empty_db, "base")
    engine = create_engine(empty_db)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_migrating_without_a_database_url_says_so():
    """env.py run with neither ``sqlalchemy.url`` nor a connection (e.g. a bare ``alembic``
    config) fails with a message naming what is missing, not deep inside create_engine."""
    from alembic import command
    from alembic.config import Config

    from app.migrations import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with pytest.raises(RuntimeError, match="no database to migrate"):
        command.upgrade(cfg, "head")


def test_pending_sku_index_covers_only_unclaimed_rows_and_goes_on_downgrade(empty_db):
    """The partial index's predicate (alembic's model comparison does not look at it): the
    migration and the model both index unclaimed rows only, and 0003 has no such index."""
    from app.sync.pim_events.models import PendingSku

    name = "ix_pending_sku_unclaimed_first_event_at"
    (model_index,) = [i for i in PendingSku.__table__.indexes if i.name == name]
    dialect = "sqlite" if empty_db.startswith("sqlite") else "postgresql"
    assert str(model_index.dialect_options[dialect]["where"]) == "claimed_at IS NULL"

    def definition() -> str | None:
        engine = create_engine(empty_db)
        try:
            with engine.connect() as conn:
                if dialect == "sqlite":
                    sql = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"
                else:
                    sql = "SELECT indexdef FROM pg_indexes WHERE indexname = :n"
                return conn.execute(text(sql), {"n": name}).scalar()
        finally:
            engine.dispose()

    upgrade(empty_db)
    made = definition()
    assert made is not None and "first_event_at" in made
    assert "claimed_at IS NULL" in made.replace("(", "").replace(")", "")
    downgrade(empty_db, "0003")
    assert definition() is None
    upgrade(empty_db)
    assert definition() is not None
