"""The Celery app. Tasks are thin: one session scope, one service call, errors mapped to
retry or dead letter. Run a worker with ``pimsync worker`` (or ``celery -A tasks worker``)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown

from app.config import get_settings
from app.db import dispose_engines
from app.gcpause import freeze_inherited
from app.logging import configure_logging

celery_app = Celery("pimsync", include=["tasks.sync", "tasks.publish", "tasks.events"])
celery_app.config_from_object("celeryconfig")
celery = celery_app  # `celery -A tasks` looks for this name


class PimsyncTask(Task):  # type: ignore[misc]
    """Project-wide task defaults (celeryconfig holds the rest)."""

    acks_late = True
    ignore_result = True
    typing = True


@worker_process_init.connect
def _child_init(**_: Any) -> None:
    # A forked pool child must not share its parent's database connections.
    dispose_engines()
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json, force=True, stdlib=False)
    freeze_inherited()  # what the child inherited lives as long as it does


@worker_process_shutdown.connect
def _child_shutdown(**_: Any) -> None:
    dispose_engines()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # not at the top: prometheus-client picks its multiprocess mode when it is imported,
        # and `pimsync worker` sets the folder after importing this package
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
