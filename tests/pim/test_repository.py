"""The PIM mirror on real PostgreSQL: content-hash dedupe, age guard, and a change log that
readers can follow without ever skipping a change committed late."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.db import get_engine, session_scope
from app.pim import repository as repo
from app.pim.models import PimProduct
from app.pim.product import content_hash, parse_product

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def product(sku: str, name: str = "n", updated: datetime = NOW):
    p = parse_product(
        {
            "identifier": sku,
            "updated": updated.isoformat(),
            "values": {"name": [{"locale": None, "scope": None, "data": name}]},
        }
    )
    return p, content_hash(p.raw)


def test_same_content_is_not_a_change_and_older_payloads_lose(pg_db):
    run = uuid.uuid4()
    with session_scope() as s:
        assert repo.upsert_products(s, [product("A"), product("B")], run, NOW) == {"A", "B"}
    with session_scope() as s:  # a re-read of the same content: only seen again
        assert repo.upsert_products(s, [product("A")], run, NOW + timedelta(minutes=1)) == set()
    with session_scope() as s:  # an older payload (late event) changes nothing
        old = product("A", "stale", NOW - timedelta(days=1))
        assert repo.upsert_products(s, [old], run, NOW + timedelta(minutes=2)) == set()
    with session_scope() as s:
        row = s.get(PimProduct, "A")
        assert row.raw["values"]["name"][0]["data"] == "n"
        assert row.last_seen_at == NOW + timedelta(minutes=2)
        newer = product("A", "fresh", NOW + timedelta(hours=1))
        assert repo.upsert_products(s, [newer], run, NOW + timedelta(minutes=3)) == {"A"}


def test_readers_never_skip_a_change_that_commits_late(pg_db):
    with session_scope() as s:
        repo.upsert_products(s, [product("SEED")], None, NOW)
    engine = get_engine()
    from sqlalchemy.orm import Session

    slow = Session(engine)
    repo.upsert_products(slow, [product("SLOW", "x")], None, NOW)  # holds its position
    slow_token = slow.info["mirror_change_token"]
    with session_scope() as s:
        hw = repo.high_watermark(s)
        assert hw <= slow_token  # the uncommitted change is beyond what readers may read
    done = threading.Event()
    fast_token: list[int] = []

    def fast_writer() -> None:
        with session_scope() as s:
            repo.upsert_products(s, [product("FAST", "y")], None, NOW)
            fast_token.append(s.info["mirror_change_token"])
        done.set()

    t = threading.Thread(target=fast_writer)
    t.start()
    time.sleep(0.5)
    assert not done.is_set()  # queued behind the slow writer: positions follow commit order
    slow.commit()
    slow.close()
    t.join(10)
    assert done.is_set() and fast_token[0] > slow_token
    with session_scope() as s:
        hw = repo.high_watermark(s)
        changed = {ident for _, ident in repo.changed_identifiers(s, 0, hw, None, 100)}
    assert {"SLOW", "FAST", "SEED"} <= changed
    with session_scope() as s:
        assert (
            s.execute(
                select(PimProduct.change_seq).where(PimProduct.identifier == "FAST")
            ).scalar_one()
            == fast_token[0]
        )
