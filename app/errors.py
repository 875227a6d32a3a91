"""One classification of every failure, and the one retry policy that follows from it.

- **input**: a bad value, event or product. Refused at the edge (a 4xx naming the field) or
  dead-lettered alone with its reason; retrying changes nothing, so it is never retried.
- **transient**: the database, the broker or the PIM failed in a way worth asking again
  (a lost connection, a deadlock, a timeout, HTTP 408, 425, 429, 500, 502, 503 or 504).
  Retried with exponential backoff and full jitter, a bounded number of times.
- **permanent**: anything else that will fail the same way again (bad credentials, a missing
  contract, a 404 on a page). The unit is dead-lettered at once, or the run fails with it.

Every task and client imports its classification and its retry numbers from here; the domain
errors subclass ``InputError``, ``TransientError`` or ``PermanentError`` so a handler catches the
class, not a list of names.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.exc import OperationalError

Kind = Literal["input", "transient", "permanent"]


class InputError(ValueError):
    """A bad value, event or product: refuse it or dead-letter it alone, never retry it."""


class TransientError(RuntimeError):
    """Worth trying again later: retry with backoff and jitter."""


class PermanentError(RuntimeError):
    """Will fail the same way again: dead-letter at once or fail the run."""


# What a task retries: our transient errors and the database's (SQLAlchemy raises a lost
# connection, a deadlock or a serialisation failure as OperationalError).
TRANSIENT: tuple[type[BaseException], ...] = (TransientError, OperationalError)


# HTTP answers worth asking again: 408 Request Timeout, 425 Too Early, 429 Too Many Requests
# and the server errors that say "not now" (500, 502, 503, 504). Every other 4xx (and 501 Not
# Implemented, 505...) fails the same way however often it is asked: permanent.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES


def classify(exc: BaseException) -> Kind:
    """The class of ``exc``: ``input``, ``transient`` or ``permanent``."""
    if isinstance(exc, InputError):
        return "input"
    if isinstance(exc, TRANSIENT):
        return "transient"
    return "permanent"


# The retry policy of every task (Celery's autoretry): the n-th retry waits a random time
# up to min(RETRY_BACKOFF_MAX, RETRY_BACKOFF * 2**n) seconds; after MAX_RETRIES the task's
# own failure path runs (the run fails, the unit is dead-lettered, the sweeper re-sends).
# 2 s doubling to 5 min over 10 retries rides out a database failover or a PIM maintenance
# window of about half an hour.
RETRY_BACKOFF = 2
RETRY_BACKOFF_MAX = 300
MAX_RETRIES = 10


def task_retry_policy() -> dict[str, object]:
    """Celery task options for the policy above (``@celery_app.task(**task_retry_policy())``)."""
    return {
        "autoretry_for": TRANSIENT,
        "retry_backoff": RETRY_BACKOFF,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
        "retry_jitter": True,
        "max_retries": MAX_RETRIES,
    }
