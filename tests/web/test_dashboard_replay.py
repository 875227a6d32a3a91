"""The dashboard's Replay form over HTTP, without a browser: credentials first, then the form
token; a refused request changes nothing and enqueues nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.sync import repository as repo
from app.sync.models import DeadLetter, SyncBatch, SyncRun
from tests.web.support import Web, problem

OPERATOR = ("operator", "s3cret-dash")


@pytest.fixture
def letter(web: Web) -> int:
    """An open dead letter of a configured channel, and dashboard credentials."""
    web.setenv(dashboard_password=OPERATOR[1], api_token="api-t0ken")
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with session_scope() as session:
        repo.upsert_dead_letters(
            session,
            [
                {
                    "channel": "de_storefront",
                    "sku": "SKU-REPLAY-1",
                    "run_id": None,
                    "kind": "publish",
                    "error_type": "MappingError",
                    "error": "color 'ultraviolet' has no entry in lookup colors",
                    "permanent": True,
                    "attempts": 1,
                    "status": "open",
                    "first_failed_at": now,
                    "last_failed_at": now,
                }
            ],
        )
        return int(session.execute(select(DeadLetter.id)).scalar_one())


def form_token(web: Web, auth: tuple[str, str] | None = OPERATOR, **kw: str) -> str:
    page = web.client.get("/dashboard", auth=auth, **kw)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found, "the dashboard's Replay form carries no token"
    return found.group(1)


def state(letter_id: int) -> tuple[str, int, int]:
    """(the dead letter's status, replay runs, batches)."""
    with session_scope() as session:
        status = session.get(DeadLetter, letter_id).status
        runs = len(session.execute(select(SyncRun).where(SyncRun.kind == "replay")).all())
        batches = len(session.execute(select(SyncBatch)).all())
    return status, runs, batches


def test_replay_with_the_pages_token_replays_and_enqueues(web: Web, letter: int) -> None:
    token = form_token(web)
    resp = web.client.post(
        f"/dashboard/dead-letters/{letter}/replay",
        data={"csrf": token},
        auth=OPERATOR,
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/dashboard?replayed=1#dead-letters"
    assert state(letter) == ("replayed", 1, 1)
    published = [c for c in web.dispatcher.calls if c[0] == "publish"]
    assert len(published) == 1 and len(published[0][1]) == 1  # one batch, sent after commit
    flash = web.client.get("/dashboard?replayed=1", auth=OPERATOR)
    assert "Replayed 1 dead letter(s)." in flash.text


@pytest.mark.parametrize(
    "token",
    ["", "0" * 64, "not-a-token", "é" * 8],
    ids=["missing", "wrong", "malformed", "non_ascii"],
)
def test_replay_with_a_bad_form_token_is_403_and_changes_nothing(
    web: Web, letter: int, token: str
) -> None:
    form_token(web)  # the operator has the page open; the forged post carries another token
    resp = web.client.post(
        f"/dashboard/dead-letters/{letter}/replay", data={"csrf": token}, auth=OPERATOR
    )
    assert resp.status_code == 403, resp.text
    assert "form token" in resp.json()["detail"]
    assert state(letter) == ("open", 0, 0)
    assert web.dispatcher.calls == []


def test_a_token_is_bound_to_its_operator(web: Web, letter: int) -> None:
    """The page served to the API token's holder carries a token the Basic user cannot use."""
    other = form_token(web, auth=None, headers={"Authorization": "Bearer api-t0ken"})
    assert other != form_token(web)
    resp = web.client.post(
        f"/dashboard/dead-letters/{letter}/replay", data={"csrf": other}, auth=OPERATOR
    )
    assert resp.status_code == 403
    assert state(letter) == ("open", 0, 0)


@pytest.mark.parametrize(
    "auth", [None, ("operator", "wrong"), ("someone", OPERATOR[1])], ids=["none", "bad", "user"]
)
def test_replay_without_valid_credentials_is_401_and_changes_nothing(
    web: Web, letter: int, auth: tuple[str, str] | None
) -> None:
    token = form_token(web)
    resp = web.client.post(
        f"/dashboard/dead-letters/{letter}/replay", data={"csrf": token}, auth=auth
    )
    assert resp.status_code == 401
    assert "Basic" in resp.headers["www-authenticate"]
    assert state(letter) == ("open", 0, 0)
    assert web.dispatcher.calls == []


def test_an_anonymous_upload_is_refused_before_its_body_is_read(web: Web, letter: int) -> None:
    """Credentials come before the body: a large anonymous multipart upload is a 401 after
    the first chunk, never read on (let alone spooled to a temporary file)."""
    sent: list[int] = []

    def upload() -> Any:
        for _ in range(1024):  # up to 64 MiB, if anyone read it all
            sent.append(1)
            yield (
                b"--x\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\n" + b"0" * 65536
            )

    resp = web.client.post(
        f"/dashboard/dead-letters/{letter}/replay",
        content=upload(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert resp.status_code == 401
    assert len(sent) <= 2, f"{len(sent)} chunks were read before the refusal"
    assert state(letter) == ("open", 0, 0)


def test_forms_are_small_and_url_encoded_only(web: Web, letter: int) -> None:
    token = form_token(web)
    url = f"/dashboard/dead-letters/{letter}/replay"
    multipart = web.client.post(url, files={"csrf": ("t.txt", token.encode())}, auth=OPERATOR)
    assert problem(multipart, 415)["reason"] == "bad_form"
    big = web.client.post(url, data={"csrf": token, "pad": "x" * 5000}, auth=OPERATOR)
    assert problem(big, 413)["reason"] == "too_large"
    assert state(letter) == ("open", 0, 0)


def test_the_metrics_token_reads_metrics_and_nothing_else(web: Web, letter: int) -> None:
    web.setenv(metrics_token="m3trics-only")
    scrape = {"Authorization": "Bearer m3trics-only"}
    assert web.client.get("/metrics", headers=scrape).status_code == 200
    assert web.client.get("/dashboard", headers=scrape).status_code == 401
    token = form_token(web)
    resp = web.client.post(
        f"/dashboard/dead-letters/{letter}/replay", data={"csrf": token}, headers=scrape
    )
    assert resp.status_code == 401
    assert state(letter) == ("open", 0, 0)
    # the operator's API token still reads metrics too; a wrong token reads nothing
    assert (
        web.client.get("/metrics", headers={"Authorization": "Bearer api-t0ken"}).status_code == 200
    )
    assert web.client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_failed_sign_ins_are_throttled_per_address(web: Web, letter: int) -> None:
    for _ in range(10):
        assert web.client.get("/dashboard", auth=("operator", "guess")).status_code == 401
    refused = web.client.get("/dashboard", auth=OPERATOR)  # even the right password waits
    assert problem(refused, 429)["reason"] == "too_many_failures"
    assert 1 <= int(refused.headers["retry-after"]) <= 301
    assert web.client.get("/healthz").status_code == 200  # nothing else is affected
