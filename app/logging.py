"""Structured logs (structlog): JSON lines in production, readable lines at a terminal.

Sync engine event names: one line per run phase at INFO (``phase``: start, read, publish):
full_sync_started, delta_sync_started, full_ingest_complete, delta_ingest_complete,
full_sync_complete, delta_sync_complete, delta_sync_empty, *_sync_skipped, full_sync_aborted,
run_failed; per page (ingest_page) and per request at DEBUG. Every line of a run carries its
run_id and channel.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False
# Third-party loggers that log each HTTP request at INFO.
NOISY_LOGGERS = ("httpx", "httpcore")


def configure_logging(
    level: str = "INFO", json: bool = False, force: bool = False, stdlib: bool = True
) -> None:
    """Configure structlog (and, unless ``stdlib`` is False, the standard library's logging).

    In Celery workers ``stdlib`` is False: Celery owns the logging handlers there and
    redirects ``sys.stderr`` into them, so structlog writes to the process's real stderr.
    """
    global _configured
    if _configured and not force:
        return
    if stdlib:
        logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    # httpx logs every request at INFO ("HTTP Request: GET ..."): a full sync's thousands of
    # PIM pages would drown the run's own lines. They show at DEBUG only (stdlib or Celery's
    # handlers alike: the level is the logger's own).
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.__stderr__ or sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str = "pimsync") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
