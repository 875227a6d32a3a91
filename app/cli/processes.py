"""The long-running processes: Celery workers and beat, the web app, Flower."""

from __future__ import annotations

import os
import shutil
import tempfile

import typer
import uvicorn

from app.cli.terminal import CliError, friendly
from app.config import get_settings


@friendly
def worker(
    queues: str = typer.Option(
        "",
        help="Comma-separated queues to consume (default: every queue pimsync uses: sync, "
        "publish, events.pim, events.catalog, events.pricing, events.inventory, events.media; "
        "split them across worker groups to scale).",
        show_default=False,
    ),
    concurrency: int = typer.Option(2, min=1, help="Worker processes."),
    loglevel: str = typer.Option("info", help="Log level: debug, info, warning or error."),
    metrics_port: int = typer.Option(
        0, help="Serve this worker's Prometheus metrics on this port (0: off)."
    ),
    metrics_address: str = typer.Option(
        "127.0.0.1",
        help="Interface the metrics listen on (0.0.0.0 only inside a private network).",
    ),
    hostname: str = typer.Option("", help="Worker name (default: celery@<host>)."),
) -> None:
    """Start a Celery worker with the project's settings (every queue unless --queues)."""
    temporary = _multiprocess_metrics_dir() if metrics_port else None
    try:
        _run_worker(queues, concurrency, loglevel, metrics_port, metrics_address, hostname)
    finally:
        if temporary:  # the folder this worker made for itself: gone with it
            shutil.rmtree(temporary, ignore_errors=True)


def _run_worker(
    queues: str,
    concurrency: int,
    loglevel: str,
    metrics_port: int,
    metrics_address: str,
    hostname: str,
) -> None:
    # Imported only now: prometheus-client picks its multiprocess mode when it is imported,
    # so the folder above must be set first (and tasks reads the settings when imported).
    from celeryconfig import ALL_QUEUES
    from tasks import celery_app

    wanted = [q.strip() for q in queues.split(",") if q.strip()] or list(ALL_QUEUES)
    unknown = [q for q in wanted if q not in ALL_QUEUES]
    if unknown:
        raise CliError(
            f"unknown queue(s) {', '.join(unknown)}; pimsync's queues: {', '.join(ALL_QUEUES)}",
            2,
        )

    if metrics_port:
        from prometheus_client import start_http_server

        from app.metrics import process_registry

        start_http_server(metrics_port, addr=metrics_address, registry=process_registry())
    extra = [f"--hostname={hostname}"] if hostname else []

    celery_app.worker_main(
        [
            "worker",
            f"--queues={','.join(wanted)}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            *extra,
        ]
    )


@friendly
def beat(
    loglevel: str = typer.Option("info", help="Log level: debug, info, warning or error."),
    schedule: str = typer.Option("celerybeat-schedule", help="Beat's state file."),
) -> None:
    """Start Celery beat (run exactly one): delta every interval, full weekly, sweep."""
    from tasks import celery_app  # reads the settings when imported: a bad one is one line

    celery_app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"])


@friendly
def web(
    host: str = typer.Option(
        "127.0.0.1", help="Interface to listen on (0.0.0.0: every interface, behind a proxy)."
    ),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes."),
) -> None:
    """Serve the HTTP app: webhooks, event intake, product page reads, health, metrics."""
    uvicorn.run(
        "app.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _multiprocess_metrics_dir() -> str | None:
    """Worker processes share samples through a folder (prometheus-client multiprocess mode);
    it must be set before prometheus-client is imported, and emptied at start-up. Returns the
    folder when it is a temporary one of this worker's own (removed when the worker exits),
    None when PROMETHEUS_MULTIPROC_DIR names one (shared with others: left in place)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = given or os.path.join(tempfile.gettempdir(), f"pimsync-metrics-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return None if given else path


@friendly
def flower(
    port: int = typer.Option(0, help="Port (default PIMSYNC_FLOWER_PORT, 5555)."),
    address: str = typer.Option("127.0.0.1", help="Interface to listen on."),
) -> None:
    """Start Flower on the project's broker, behind basic auth (PIMSYNC_FLOWER_USER/PASSWORD)."""
    settings = get_settings()
    password = settings.flower_password.get_secret_value()
    if not password:
        raise CliError(
            "set PIMSYNC_FLOWER_PASSWORD: Flower shows task arguments and can stop "
            "workers, it never runs without authentication",
            2,
        )
    from tasks import celery_app  # reads the settings when imported: a bad one is one line

    celery_app.start(
        [
            "flower",
            f"--port={port or settings.flower_port}",
            f"--address={address}",
            f"--basic-auth={settings.flower_user}:{password}",
            "--persistent=False",
            "--purge_offline_workers=300",
        ]
    )
