"""Request authentication helpers, called directly: the edges the HTTP tests do not reach.

The HTTP client of the webhook tests hands the app a body in one piece, and the clock there
is the real one; here the body comes in several chunks and the clock is given.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from app.web.security import (
    MAX_JSON_DEPTH,
    Refused,
    bearer,
    check_timestamp,
    json_depth_exceeds,
    parse_json,
    read_body,
)

NOW = 1_700_000_000.0  # a fixed "now", far from the real clock
MAX_AGE = 300


def _request(headers: dict[str, str], chunks: list[bytes] | None = None) -> Request:
    chunks = chunks or [b""]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope, receive)


def _refusal(raw: str | None, now: float = NOW) -> tuple[str, str]:
    with pytest.raises(Refused) as caught:
        check_timestamp(raw, MAX_AGE, now=now)
    return caught.value.reason, caught.value.detail


# --- check_timestamp -------------------------------------------------------------------------


def test_timestamp_is_judged_against_the_given_clock_not_the_real_one() -> None:
    assert check_timestamp("1700000000", MAX_AGE, now=NOW) == 1_700_000_000


def test_timestamps_exactly_at_either_edge_of_the_window_are_accepted() -> None:
    assert check_timestamp("1699999700", MAX_AGE, now=NOW) == 1_699_999_700
    assert check_timestamp("1700000300", MAX_AGE, now=NOW) == 1_700_000_300


def test_timestamps_one_second_past_either_edge_are_refused() -> None:
    assert _refusal("1699999699") == (
        "stale_timestamp",
        "timestamp 1699999699 is older than 300 s: replayed or delayed request",
    )
    assert _refusal("1700000301") == ("future_timestamp", "timestamp 1700000301 is in the future")


def test_missing_timestamp_says_which_header() -> None:
    assert _refusal(None) == (
        "missing_timestamp",
        "missing or malformed X-Akeneo-Request-Timestamp",
    )


def test_twenty_digits_are_parsed_and_twenty_one_are_refused_unparsed() -> None:
    # 20 digits: a number, judged (far in the future); 21: malformed before int() is called
    assert _refusal("9" * 20)[0] == "future_timestamp"
    assert _refusal("9" * 21)[0] == "missing_timestamp"


# --- read_body -------------------------------------------------------------------------------


def test_chunked_body_is_counted_across_chunks() -> None:
    # no Content-Length, every chunk under the limit, the sum over it
    request = _request({}, [b"a" * 60, b"b" * 60])
    with pytest.raises(Refused) as caught:
        asyncio.run(read_body(request, 100))
    assert (caught.value.status_code, caught.value.detail) == (413, "body exceeds 100 bytes")


def test_chunked_body_within_the_limit_is_joined() -> None:
    request = _request({}, [b"ab", b"cd", b"e"])
    assert asyncio.run(read_body(request, 5)) == b"abcde"


# --- bearer ----------------------------------------------------------------------------------


def test_bearer_token_after_extra_spaces_is_read() -> None:
    assert bearer(_request({"Authorization": "Bearer  tok-1 "})) == "tok-1"
    assert bearer(_request({"Authorization": "bearer tok-2"})) == "tok-2"


def test_bearer_is_none_for_another_scheme_or_no_token() -> None:
    assert bearer(_request({"Authorization": "Basic dXNlcjpwdw=="})) is None
    assert bearer(_request({"Authorization": "Bearer "})) is None
    assert bearer(_request({})) is None


# --- JSON depth --------------------------------------------------------------------------


def nested(levels: int) -> object:
    """``levels`` containers, one inside the other, alternating lists and objects."""
    value: object = 1
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        (7, 0, False),  # a scalar nests nothing
        ({}, 1, False),  # one container: depth 1
        ({}, 0, True),
        (nested(3), 3, False),  # exactly at the limit
        (nested(3), 2, True),  # one past it
        (nested(64), 64, False),
        (nested(65), 64, True),
        # the deepest branch counts, wherever it is among its siblings
        ({"a": 1, "b": [], "c": [[[]]], "d": {}}, 3, True),
        ({"a": 1, "b": [], "c": [[[]]], "d": {}}, 4, False),
        ([[[[]]], "x", {"y": {}}], 3, True),
        ([[[[]]], "x", {"y": {}}], 4, False),
    ],
)
def test_json_depth_counts_the_deepest_nesting_of_containers(
    value: object, limit: int, exceeds: bool
) -> None:
    assert json_depth_exceeds(value, limit) is exceeds


def test_a_body_nested_up_to_the_limit_parses_one_level_more_is_refused() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert MAX_JSON_DEPTH == 64
    value = parse_json(at_limit.encode())
    for _ in range(MAX_JSON_DEPTH - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []
    with pytest.raises(Refused) as refused:
        parse_json(("[" * 65 + "]" * 65).encode())
    assert (refused.value.status_code, refused.value.reason, refused.value.detail) == (
        400,
        "too_deep",
        "body nests JSON more than 64 levels deep",
    )


def test_a_malformed_body_is_refused_saying_why() -> None:
    with pytest.raises(Refused) as refused:
        parse_json(b'{"a": ')
    assert (refused.value.status_code, refused.value.reason) == (400, "malformed_json")
    assert refused.value.detail.startswith("body is not JSON: ")
    assert parse_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
