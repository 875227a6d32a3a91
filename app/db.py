"""Engine per process, ``session_scope()``, and the declarative base.

Repositories and services only flush; the caller's ``session_scope`` commits. Work that must
happen after a commit (enqueueing Celery messages) is registered with ``after_commit``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    CursorResult,
    DateTime,
    Engine,
    MetaData,
    String,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeDecorator

from app.config import Settings, get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores naive strings)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Documents: jsonb on PostgreSQL (queryable, indexable), JSON text on SQLite. Python None is
# SQL NULL (not a JSON null), so COALESCE and IS NULL mean what they say.
JSONDoc = JSONB(none_as_null=True).with_variant(JSON(none_as_null=True), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # pysqlite's own transaction handling is broken for SAVEPOINT and locking: let SQLAlchemy
    # emit BEGIN itself (IMMEDIATE, so two writers queue on the lock instead of deadlocking).
    @event.listens_for(engine, "connect")
    def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    kwargs: dict[str, Any] = {
        "echo": settings.db_echo,
        "json_serializer": json_dumps,
        "json_deserializer": orjson.loads,
        "future": True,
    }
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.update(pool_size=settings.db_pool_size, pool_pre_ping=True, max_overflow=5)
    return create_engine(url, **kwargs)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for ``url`` (default: the configured database).

    Engines are per process: a forked Celery child must not reuse its parent's connections,
    so the cache is keyed by pid as well.
    """
    url = url or get_settings().database_url
    key = f"{os.getpid()}:{url}"
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = make_engine(url)
            _engines[key] = engine
            _sessionmakers[key] = sessionmaker(engine, expire_on_commit=False)
        return engine


def dispose_engines() -> None:
    with _lock:
        for key, engine in list(_engines.items()):
            if key.startswith(f"{os.getpid()}:"):
                engine.dispose()
            else:
                engine.dispose(close=False)
        _engines.clear()
        _sessionmakers.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, run after-commit hooks."""
    get_engine(url)
    url = url or get_settings().database_url
    factory = _sessionmakers[f"{os.getpid()}:{url}"]
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop("after_commit", None)
        raise
    finally:
        session.close()
    for hook in session.info.pop("after_commit", []):
        hook()


@contextmanager
def read_connection(url: str | None = None) -> Iterator[Connection]:
    """A connection for hot read paths (the storefront's page read): plain rows, no ORM.

    On PostgreSQL it runs in autocommit: a lone SELECT is one round trip, with no BEGIN and
    COMMIT around it (psycopg switches autocommit on the client, for free).
    """
    engine = get_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def after_commit(session: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` once the session's transaction has committed (never if it rolls back);
    what it returns is ignored."""
    session.info.setdefault("after_commit", []).append(hook)


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"


def among(
    session: Session, column: ColumnElement[Any] | Any, values: Iterable[Any]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL as one array parameter, ``column = ANY(:values)``.

    SQLAlchemy renders an IN list afresh on every execution, one parameter per value: for the
    500 SKUs of a publish batch that took 4.4 ms of client CPU per statement, the array 0.7 ms
    (this project's 2-core machine). The statement's text also stays the same whatever the
    number of values, so the server can reuse its plan.
    """
    values = list(values)
    if is_postgres(session):
        element = column.type
        if isinstance(element, String):
            # no length: a cast to VARCHAR(n)[] would silently cut a longer value, which
            # would then match the row holding its first n characters
            element = String()
        array = bindparam(None, values, type_=ARRAY(element), unique=True)
        return column == any_(array)
    return column.in_(values)


def affected(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE; how many rows it touched."""
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount or 0)


def dialect_insert(session: Session) -> Any:
    """``insert`` of the session's dialect (both have ``on_conflict_do_update``)."""
    return pg_insert if is_postgres(session) else sqlite_insert
