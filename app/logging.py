"""Structured logs (structlog): JSON lines in production, readable lines at a terminal.

Sync engine event names: delta_sync_complete, delta_sync_empty, delta_sync_skipped,
full_sync_complete, full_sync_aborted, run_failed, ingest_page, dead_lettered, ...
Every line of a run carries its run_id and channel.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


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
