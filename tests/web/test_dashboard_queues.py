"""The dashboard says when messages wait on a queue no worker consumes (real Redis broker)."""

from __future__ import annotations

import pytest

from tests.conftest import flush_redis_db
from tests.web.support import Web

pytestmark = [pytest.mark.redis]


def test_a_queue_nobody_consumes_is_a_red_line(web: Web, redis_url: str) -> None:
    import redis

    from app.web import metrics
    from tests.e2e_support import apply_env, restore_env

    flush_redis_db(redis.Redis.from_url(redis_url))
    old = apply_env({"PIMSYNC_BROKER_URL": redis_url, "PIMSYNC_DASHBOARD_PASSWORD": "pw-dash"})
    try:
        metrics._consumers_cache = None
        quiet = web.client.get("/dashboard", auth=("operator", "pw-dash"))
        from tasks.dispatch import process_context

        process_context().dispatcher.catalog_changed({"de_storefront": ["SKU-1", "SKU-2"]})
        metrics._consumers_cache = None
        page = web.client.get("/dashboard", auth=("operator", "pw-dash"))
    finally:
        restore_env(old)
    assert quiet.status_code == 200 and 'class="alarm"' not in quiet.text
    assert page.status_code == 200, page.text
    assert 'data-queue="events.catalog"' in page.text
    assert "1 message(s) waiting and no worker consumes it" in page.text
    assert 'data-queue="publish"' not in page.text  # empty: nothing waits there
