"""Two test runs at once on the same PostgreSQL and Redis keep to their own databases."""

from __future__ import annotations

import uuid

import redis

from tests.conftest import (
    CLAIM_DB,
    LEGACY_CLAIM_KEY,
    REDIS_BASE_URL,
    claim_key,
    claim_redis_db,
    flush_redis_db,
    release_redis_db,
)


def test_a_flushed_database_stays_this_runs(redis_url: str) -> None:
    db = int(redis_url.rsplit("/", 1)[1])
    claims = redis.Redis.from_url(f"{REDIS_BASE_URL}/{CLAIM_DB}")
    ours = claims.get(claim_key(db))
    assert ours is not None
    client = redis.Redis.from_url(redis_url)
    client.set("some-test-key", "1")
    assert client.get(LEGACY_CLAIM_KEY) == ours, "someone else flushed this run's database"
    flush_redis_db(client)  # empties it, but puts the marker for earlier versions back
    assert client.keys() == [LEGACY_CLAIM_KEY.encode()] and client.get(LEGACY_CLAIM_KEY) == ours
    client.flushdb()  # what any test may do
    assert claims.get(claim_key(db)) == ours, "the claim lives outside the claimed database"
    client.set(LEGACY_CLAIM_KEY, ours)

    # another run, looking for a database now, passes this one by, and gives its own back
    other = uuid.uuid4().hex
    theirs = claim_redis_db(claims, other)
    try:
        assert theirs is not None and theirs != db
        assert claims.get(claim_key(db)) == ours
    finally:
        if theirs is not None:
            release_redis_db(claims, theirs, other)
    assert theirs is not None and claims.get(claim_key(theirs)) is None


def test_releasing_an_expired_claim_leaves_the_new_owner_alone(redis_url: str) -> None:
    claims = redis.Redis.from_url(f"{REDIS_BASE_URL}/{CLAIM_DB}")
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    db = claim_redis_db(claims, first)
    assert db is not None
    try:
        claims.delete(claim_key(db))  # the first run's claim expired...
        assert claims.set(claim_key(db), second, nx=True)  # ...and a second run took it
        redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}").set("theirs", "1")
        release_redis_db(claims, db, first)  # the first run ends late
        assert claims.get(claim_key(db)) == second.encode()
        assert redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}").get("theirs") == b"1"
    finally:
        release_redis_db(claims, db, second)


def test_a_database_holding_someone_elses_keys_is_passed_by_untouched(redis_url: str) -> None:
    claims = redis.Redis.from_url(f"{REDIS_BASE_URL}/{CLAIM_DB}")
    owner, newcomer = uuid.uuid4().hex, uuid.uuid4().hex
    db = claim_redis_db(claims, owner)  # the highest free database: the next scan meets it
    assert db is not None
    theirs = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
    theirs.set("their-key", "1")
    claims.delete(claim_key(db))  # unclaimed in db 0, but holding data (another tool's, say)
    other = None
    try:
        other = claim_redis_db(claims, newcomer)
        assert other != db
        assert theirs.get("their-key") == b"1", "passed by, not flushed"
        assert claims.get(claim_key(db)) is None
    finally:
        if other is not None:
            release_redis_db(claims, other, newcomer)
        assert claims.set(claim_key(db), owner, nx=True)
        release_redis_db(claims, db, owner)
