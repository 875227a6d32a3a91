"""Operator commands: syncs, runs, dead letters, drift, workers, beat."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli import CliError, _uuid, app, console, dead_letters_app, friendly, runs_app
from app.db import session_scope
from app.sync.models import TERMINAL


def _context() -> Any:
    from tasks.dispatch import process_context

    return process_context()


def _family(session: Any, run_id: uuid.UUID) -> tuple[Any, list[Any]]:
    from app.sync import repository as repo

    run = repo.get_run(session, run_id)
    if run is None:
        raise CliError(f"no run {run_id}")
    return run, repo.child_runs(session, run_id)


def wait_for(run_id: uuid.UUID, expected_children: int, timeout: float) -> list[Any]:
    """Follow a run and its channel runs with a progress bar until every one has ended."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[units]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("sync", total=None, units="")
        while True:
            with session_scope() as session:
                run, children = _family(session, run_id)
                done = (
                    run.status in TERMINAL
                    and len(children) >= expected_children
                    and all(c.status in TERMINAL for c in children)
                )
                total = sum(c.planned_units for c in children) or None
                completed = sum(c.processed for c in children)
                read = run.read
            desc = f"read {read:,} products" if run.channel is None else run.kind
            units = f"{completed:,}/{total:,} units" if total else f"{completed:,} units"
            progress.update(bar, total=total, completed=completed, description=desc, units=units)
            if done:
                return [run, *children]
            if time.monotonic() > deadline:
                raise CliError(
                    f"run {run_id} still running after {timeout:.0f} s "
                    "(it goes on; follow it with `pimsync runs`)"
                )
            time.sleep(0.5)


def runs_table(runs: list[Any], title: str = "runs", compact: bool = False) -> Table:
    counters = (
        "synced",
        "unchanged",
        "skipped_incomplete",
        "filtered",
        "disabled",
        "failed",
        "orphans_disabled",
    )
    heads = ("published", "unchanged", "incomplete", "filtered", "disabled", "failed", "orphans")
    if compact:
        t = Table("channel", "status", "secs", *heads, title=title)
    else:
        t = Table(
            "run",
            "kind",
            "channel",
            "status",
            "started",
            "secs",
            "read",
            *heads,
            "note",
            title=title,
        )
    for r in runs:
        secs = f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-"
        counts = [str(getattr(r, f)) if r.channel else "" for f in counters]
        channel = r.channel or f"PIM ({r.read} read)"
        if compact:
            t.add_row(channel, r.status, secs, *counts)
        else:
            t.add_row(
                str(r.id)[:8],
                r.kind,
                r.channel or "(PIM read)",
                r.status,
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                secs,
                str(r.read) if r.channel is None else "",
                *counts,
                (r.error or "")[:80],
            )
    return t


@app.command()
@friendly
def sync(
    kind: str = typer.Argument(..., help="delta or full"),
    channel: list[str] = typer.Option(
        None, "--channel", "-c", help="Only these channels (full sync)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the run to its end."),
    timeout: float = typer.Option(3600, help="With --wait: give up waiting after this long."),
) -> None:
    """Enqueue a delta or full sync (workers run it); --wait shows progress and a summary."""
    from app.sync import ingest
    from app.sync.runtime import configured_channels

    ctx = _context()
    if kind not in ("delta", "full"):
        raise CliError("sync takes `delta` or `full`", 2)
    with session_scope() as session:
        if kind == "full":
            run = ingest.start_full(session, ctx, channel or None, trigger="cli")
            if run is None:
                raise CliError("every requested channel already has a full sync running")
            expected = len(configured_channels(ctx.settings, channel or None))
        else:
            if channel:
                raise CliError("a delta cycle covers every channel; use --channel with full", 2)
            run = ingest.start_delta(session, ctx, trigger="cli")
            expected = len(configured_channels(ctx.settings))
        run_id, status, error = run.id, run.status, run.error
    if status == "skipped":
        raise CliError(f"skipped: {error}")
    console.print(f"{kind} sync {run_id} enqueued")
    if wait:
        runs = wait_for(run_id, expected, timeout)
        console.print(runs_table(runs, f"{kind} sync {run_id}"))
        bad = [r for r in runs if r.status not in ("completed", "skipped")]
        if bad:
            raise CliError(
                f"{len(bad)} run(s) did not complete: "
                + "; ".join(f"{r.channel or 'PIM read'} {r.status}: {r.error}" for r in bad)
            )


@app.command()
@friendly
def republish(
    channel: str = typer.Option(..., "--channel", "-c"),
    wait: bool = typer.Option(False, "--wait"),
    timeout: float = typer.Option(3600),
) -> None:
    """Re-publish a channel from the mirror without reading the PIM (after a contract change)."""
    from app.sync import publish

    with session_scope() as session:
        run = publish.republish(session, _context(), channel)
        run_id, status, error = run.id, run.status, run.error
    if status == "skipped":
        raise CliError(f"skipped: {error}")
    console.print(f"republish {run_id} of {channel} enqueued")
    if wait:
        runs = wait_for(run_id, 0, timeout)
        console.print(runs_table(runs[:1]))


@runs_app.callback(invoke_without_command=True)
@friendly
def runs_list(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=1000),
    channel: str = typer.Option(None, "--channel", "-c"),
) -> None:
    """Recent sync runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from app.sync import repository as repo

    with session_scope() as session:
        runs = repo.recent_runs(session, limit, channel=channel)
        console.print(runs_table(runs))


@runs_app.command("cancel")
@friendly
def runs_cancel(run_id: str) -> None:
    """Cancel a running run and its channel runs (nothing more published, nothing disabled)."""
    from app.sync import runs

    with session_scope() as session:
        stopped = runs.cancel(session, _context(), _uuid(run_id))
    console.print(f"cancelled {len(stopped)} run(s)")


@dead_letters_app.command("list")
@friendly
def dead_letters_list(
    channel: str = typer.Option(None, "--channel", "-c"),
    status: str = typer.Option("open", help="open, replayed, resolved or all"),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """Units that failed, with their error and attempts."""
    from app.sync import repository as repo

    if status not in ("open", "replayed", "resolved", "all"):
        raise CliError("status is one of open, replayed, resolved, all", 2)
    with session_scope() as session:
        letters = repo.list_dead_letters(
            session, None if status == "all" else status, channel, limit=limit
        )
        t = Table("id", "channel", "sku", "kind", "attempts", "last failed", "status", "error")
        for dl in letters:
            t.add_row(
                str(dl.id),
                dl.channel,
                dl.sku,
                dl.kind,
                str(dl.attempts),
                dl.last_failed_at.strftime("%Y-%m-%d %H:%M:%S"),
                dl.status,
                dl.error[:120],
            )
        console.print(t)


@dead_letters_app.command("replay")
@friendly
def dead_letters_replay(
    ids: list[int] = typer.Option(None, "--id", help="Replay these dead letters."),
    channel: str = typer.Option(
        None, "--channel", "-c", help="Replay every open one of a channel."
    ),
    all_: bool = typer.Option(False, "--all", help="Replay every open dead letter."),
) -> None:
    """Send dead-lettered units through publishing again (workers run them)."""
    from app.sync import operations

    if not (ids or channel or all_):
        raise CliError("say what to replay: --id N, --channel C or --all", 2)
    with session_scope() as session:
        result = operations.replay_dead_letters(
            session, _context(), ids=ids or None, channel=channel
        )
    console.print(f"replayed {result['replayed']} dead letter(s) in {len(result['runs'])} run(s)")


@app.command()
@friendly
def drift(limit: int = typer.Option(50, min=1)) -> None:
    """PIM attributes no contract maps: one line per (contract version, attribute)."""
    from app.mapping import repository as mapping_repo

    with session_scope() as session:
        rows = mapping_repo.list_drift(session)[:limit]
        t = Table(
            "contract",
            "attribute",
            "channel",
            "strategy",
            "products",
            "first seen",
            "last seen",
            "e.g. SKU",
        )
        for d in rows:
            t.add_row(
                f"{d.contract_id}@{d.contract_version}",
                d.attribute,
                d.channel or "",
                d.strategy,
                str(d.count),
                d.first_seen.strftime("%Y-%m-%d %H:%M"),
                d.last_seen.strftime("%Y-%m-%d %H:%M"),
                d.sample_sku or "",
            )
        console.print(t)


@app.command()
@friendly
def worker(
    queues: str = typer.Option(
        "sync,publish,events.pim,events.catalog,events.pricing,events.inventory,events.media",
        help="Comma-separated queues to consume (split them across worker groups to scale).",
    ),
    concurrency: int = typer.Option(2, min=1, help="Worker processes."),
    loglevel: str = typer.Option("info"),
    metrics_port: int = typer.Option(
        0, help="Serve this worker's Prometheus metrics on this port (0: off)."
    ),
    hostname: str = typer.Option("", help="Worker name (default: celery@<host>)."),
) -> None:
    """Start a Celery worker with the project's settings."""
    if metrics_port:
        _multiprocess_metrics_dir()
    from tasks import celery_app

    if metrics_port:
        from prometheus_client import start_http_server

        from app.metrics import process_registry

        start_http_server(metrics_port, registry=process_registry())
    extra = [f"--hostname={hostname}"] if hostname else []

    celery_app.worker_main(
        [
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            *extra,
        ]
    )


@app.command()
@friendly
def beat(
    loglevel: str = typer.Option("info"),
    schedule: str = typer.Option("celerybeat-schedule", help="Beat's state file."),
) -> None:
    """Start Celery beat (run exactly one): delta every interval, full weekly, sweep."""
    from tasks import celery_app

    celery_app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"])


@app.command()
@friendly
def demo() -> None:
    """Run a full and a delta sync of the bundled sample catalog, with no servers at all."""
    from app.cli_demo import run_demo

    run_demo(console)


@app.command()
@friendly
def web(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes."),
) -> None:
    """Serve the HTTP app: webhooks, event intake, product page reads, health, metrics."""
    import uvicorn

    uvicorn.run(
        "app.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


@app.command()
@friendly
def reconcile(
    domain: list[str] = typer.Option(
        None,
        "--domain",
        "-d",
        help="catalog, pricing, inventory or media (default: all with a snapshot, and catalog).",
    ),
) -> None:
    """Rebuild product pages from each domain's snapshot; print what was corrected."""
    from app.pages.reconcile import reconcile as run_reconcile
    from app.sync.runtime import REGISTRY

    settings = _context().settings
    REGISTRY.channels(settings)
    run = run_reconcile(settings, domain or None)
    corrected = (run.details or {}).get("corrected", {})
    t = Table("domain", "documents corrected", title=f"reconcile {run.id}")
    for d, n in corrected.items():
        t.add_row(d, str(n))
    console.print(t)


def _multiprocess_metrics_dir() -> str:
    """Worker processes share samples through a folder (prometheus-client multiprocess mode);
    it must be set before prometheus-client is imported, and emptied at start-up."""
    import os
    import shutil
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
        tempfile.gettempdir(), f"pimsync-metrics-{os.getpid()}"
    )
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


@app.command()
@friendly
def flower(
    port: int = typer.Option(0, help="Port (default PIMSYNC_FLOWER_PORT, 5555)."),
    address: str = typer.Option("127.0.0.1", help="Interface to listen on."),
) -> None:
    """Start Flower on the project's broker, behind basic auth (PIMSYNC_FLOWER_USER/PASSWORD)."""
    from app.config import get_settings

    settings = get_settings()
    password = settings.flower_password.get_secret_value()
    if not password:
        raise CliError(
            "set PIMSYNC_FLOWER_PASSWORD: Flower shows task arguments and can stop "
            "workers, it never runs without authentication",
            2,
        )
    from tasks import celery_app

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
