"""The HTTP app's process set-up: its threadpool size comes from the settings, and the
webhook intake has threads of its own."""

from __future__ import annotations

import threading

from anyio import to_thread
from fastapi.testclient import TestClient

from app.config import reset_settings_cache
from tests.web.support import Web, dumps, events_api_headers, example


def tokens(client: TestClient) -> float:
    async def read() -> float:
        return to_thread.current_default_thread_limiter().total_tokens

    assert client.portal is not None
    return client.portal.call(read)


def test_the_threadpool_is_the_configured_size(pg_db, monkeypatch):
    from app.web.app import create_app

    for size in (4, 7):
        monkeypatch.setenv("PIMSYNC_WEB_THREADS", str(size))
        reset_settings_cache()
        with TestClient(create_app(dispatcher=object(), events_sender=lambda *a: None)) as client:
            assert tokens(client) == size
            assert client.get("/healthz").status_code == 200
    reset_settings_cache()


def test_the_webhook_intake_and_healthz_answer_while_every_shared_thread_is_taken(
    web: Web,
) -> None:
    """The intake runs on threads of its own (and /healthz on none): the other blocking work
    of the app (domain events, the dashboard, /readyz) holding every thread of anyio's shared
    pool delays neither."""
    from anyio import CapacityLimiter

    async def take_all() -> list[object]:
        limiter = to_thread.current_default_thread_limiter()
        owners = [object() for _ in range(int(limiter.total_tokens))]
        for owner in owners:
            await limiter.acquire_on_behalf_of(owner)
        return owners

    async def give_back(owners: list[object]) -> None:
        limiter = to_thread.current_default_thread_limiter()
        for owner in owners:
            limiter.release_on_behalf_of(owner)

    async def free_shared() -> float:
        return to_thread.current_default_thread_limiter().available_tokens

    assert isinstance(web.client.app.state.intake_limiter, CapacityLimiter)
    body = dumps(example("product-updated", event_id="threads-taken-1"))
    owners = web.client.portal.call(take_all)
    answers: dict[str, int] = {}
    try:
        assert web.client.portal.call(free_shared) == 0

        def deliver() -> None:
            try:
                answers["webhook"] = web.client.post(
                    "/webhooks/akeneo", content=body, headers=events_api_headers(body)
                ).status_code
                answers["healthz"] = web.client.get("/healthz").status_code
            except BaseException as exc:  # shown by the assertion below
                answers[repr(exc)] = 0

        sender = threading.Thread(target=deliver, daemon=True)
        sender.start()
        sender.join(30)  # (waiting for a shared thread, it would never answer)
        assert answers == {"webhook": 200, "healthz": 200}
    finally:
        web.client.portal.call(give_back, owners)
    assert len(web.dispatcher.products()) == 1
