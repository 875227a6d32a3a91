"""Alembic migrations, runnable from code (``upgrade``) and from the ``pimsync migrate`` command."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be escaped for configparser interpolation (passwords in URLs).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The revision this release's migrations end at (what `pimsync migrate` upgrades to)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def create_database_if_missing(url: str) -> bool:
    """PostgreSQL: create the URL's database when the server does not have it yet (through
    the server's ``postgres`` database, with the same credentials); True when it did. Other
    databases (SQLite creates its file itself) are left alone."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    target = make_url(url)
    if not target.drivername.startswith("postgresql") or not target.database:
        return False
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).scalar()
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(target.database)
            try:
                conn.execute(text(f"CREATE DATABASE {quoted}"))
            except DBAPIError as exc:  # no CREATEDB privilege, most often
                first = str(exc.orig).strip().splitlines()[0]
                raise ValueError(
                    f"database {target.database!r} does not exist and cannot be created "
                    f"({first}); create it (createdb) or fix PIMSYNC_DATABASE_URL"
                ) from None
            return True
    finally:
        admin.dispose()
