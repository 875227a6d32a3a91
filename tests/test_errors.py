"""One classification of failures and one retry policy for every task."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DataError, OperationalError

from app.errors import (
    MAX_RETRIES,
    TRANSIENT,
    InputError,
    PermanentError,
    TransientError,
    classify,
    is_transient_status,
)
from app.pim.product import ProductParseError
from app.pim.source import SourceError, TransientSourceError


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TransientSourceError("PIM answered 503"), "transient"),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), "transient"),
        (SourceError("PIM answered 404"), "permanent"),
        (DataError("INSERT", {}, Exception("invalid byte sequence")), "permanent"),
        (InputError("price is negative"), "input"),
        (KeyError("x"), "permanent"),
    ],
)
def test_every_failure_has_one_class(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


def test_the_pim_errors_are_classified_by_their_base() -> None:
    assert issubclass(TransientSourceError, TransientError)
    assert issubclass(SourceError, PermanentError) and not issubclass(SourceError, TransientError)
    assert classify(ProductParseError("sku-1", "values", "not an object")) == "input"
    assert (TransientError, OperationalError) == TRANSIENT


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (501, False),
        (404, False),
        (401, False),
        (200, False),
        (422, False),
    ],
)
def test_http_statuses(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


def test_every_task_retries_transient_errors_alone_with_one_policy() -> None:
    from tasks import celery_app

    celery_app.loader.import_default_modules()  # the task modules register themselves
    ours = {n: t for n, t in celery_app.tasks.items() if not n.startswith("celery.")}
    assert len(ours) >= 10
    retrying = {n for n, t in ours.items() if getattr(t, "autoretry_for", ())}
    # the sweeper and the nightly reconciliation run again on their own schedule
    assert set(ours) - retrying == {"sync.sweep", "pages.reconcile"}
    for name in retrying:
        task = ours[name]
        assert tuple(task.autoretry_for) == TRANSIENT, name
        assert task.max_retries == MAX_RETRIES and task.retry_jitter, name
        assert task.acks_late, name
