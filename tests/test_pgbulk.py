"""The pipelined bulk writer raises what SQLAlchemy raises for every other statement, so a
refused value reaches the row-by-row fallback and a lost connection reaches the retry."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DataError, OperationalError

from app.db import session_scope
from app.pgbulk import execute_many

STATEMENT = (
    "INSERT INTO sync_cursor (name, value, updated_at) VALUES (%s, %s, now()) RETURNING name"
)


def test_a_refused_value_is_a_sqlalchemy_data_error(pg_db: str) -> None:
    with pytest.raises(DataError) as caught, session_scope() as session:
        execute_many(session, STATEMENT, [("ok", "1"), ("bad", "nul\x00here")])
    assert "NUL" in str(caught.value.orig) or "0x00" in str(caught.value.orig)
    with session_scope() as session:  # the transaction rolled back whole
        assert session.execute(text("SELECT count(*) FROM sync_cursor")).scalar_one() == 0


def test_a_lost_connection_is_a_sqlalchemy_operational_error(pg_db: str) -> None:
    admin = create_engine(pg_db, isolation_level="AUTOCOMMIT")
    try:
        with pytest.raises(OperationalError) as caught, session_scope() as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as conn:  # the server ends this session's backend for real
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            execute_many(session, STATEMENT, [("a", "1"), ("b", "2")])
        assert caught.value.connection_invalidated
    finally:
        admin.dispose()
    with session_scope() as session:  # the pool hands out a working connection again
        assert execute_many(session, STATEMENT, [("c", "3")]) == [("c",)]
