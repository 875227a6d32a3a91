"""Sync runs: following one to its end, listing recent ones, cancelling one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich.console import Group
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.terminal import (
    CliError,
    Column,
    check_broker_url,
    check_channels,
    console,
    err,
    fit_table,
    friendly,
    resolve_run_id,
)
from app.db import session_scope
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import TERMINAL

app = typer.Typer(
    help="Sync runs: list recent ones, show or cancel one.", invoke_without_command=True
)


def sync_context() -> SyncContext:
    """The process's sync context, with the Celery dispatcher: enqueued work goes to workers."""
    # tasks reads the settings when it is imported: imported here, a bad setting is reported
    # by the command as one line instead of breaking every command at start-up
    from tasks.dispatch import process_context

    check_broker_url()
    return process_context()


def _family(session: Any, run_id: uuid.UUID) -> tuple[Any, list[Any]]:
    run = repo.get_run(session, run_id)
    if run is None:
        raise CliError(f"no run {run_id}")
    return run, repo.child_runs(session, run_id)


def warn_if_unconsumed(queues: tuple[str, ...]) -> None:
    """Say at once when no worker consumes a queue the run needs: it would wait for ever."""
    try:
        from tasks.workers import consumers_by_queue, worker_queues

        consumers = consumers_by_queue(worker_queues())
    except Exception as exc:  # the broker's own errors: --wait goes on, the run may too
        err.print(f"[yellow]warning:[/yellow] cannot ask the workers ({exc})")
        return
    idle = [q for q in queues if not consumers.get(q)]
    if idle:
        err.print(
            f"[yellow]warning:[/yellow] no worker consumes the queue(s) {', '.join(idle)}: "
            "the run waits until one does (start `pimsync worker`; `pimsync status` shows "
            "the workers and their queues)"
        )


# The queues a sync's work passes through until its product pages are built.
SYNC_QUEUES = ("sync", "publish", "events.catalog")


def wait_for(
    run_id: uuid.UUID, expected_children: int, timeout: float, workers: bool = True
) -> list[Any]:
    """Follow a run and its channel runs with a progress bar until every one has ended.
    ``workers``: Celery workers run it (False: an in-process dispatcher, as in the demo)."""
    deadline = time.monotonic() + timeout
    if workers:
        warn_if_unconsumed(SYNC_QUEUES)
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


COUNTERS = (
    ("published", "synced", 0),
    ("unchanged", "unchanged", 6),
    ("incomplete", "skipped_incomplete", 5),
    ("filtered", "filtered", 5),
    ("disabled", "disabled", 6),
    ("failed", "failed", 0),
    ("orphans", "orphans_disabled", 6),
)


def _secs(r: Any) -> str:
    return f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-"


def runs_table(runs: list[Any], title: str = "runs", compact: bool = False) -> Group:
    """Runs as a table that fits the terminal: the columns an operator reads first always
    (run, kind, channel, status, published, failed), the others while there is room; a run's
    error goes under the table when its column does not fit."""
    columns = [
        *([] if compact else [Column("run"), Column("kind")]),
        Column("channel"),
        Column("status"),
        *([] if compact else [Column("started", drop=3)]),
        Column("secs", drop=4, right=True),
        Column("read", drop=2, right=True),
        *(Column(head, drop=drop, right=True) for head, _, drop in COUNTERS),
        Column("note", drop=7, wrap=True),
    ]
    rows = []
    for r in runs:
        rows.append(
            [
                *([] if compact else [str(r.id)[:8], r.kind]),
                r.channel or "(PIM read)",
                r.status,
                *([] if compact else [r.started_at.strftime("%m-%d %H:%M:%S")]),
                _secs(r),
                str(r.read) if r.channel is None else "",
                *(str(getattr(r, field)) if r.channel else "" for _, field, _ in COUNTERS),
                (r.error or "")[:300],
            ]
        )
    table, kept = fit_table(columns, rows, title)
    notes = []
    if "note" not in kept:
        notes = [
            f"{str(r.id)[:8]} {r.channel or 'PIM read'}: {r.error[:300]}" for r in runs if r.error
        ]
    return Group(table, *notes)


@app.callback(invoke_without_command=True)
@friendly
def runs_list(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=1000, help="How many runs to list."),
    channel: str = typer.Option(None, "--channel", "-c", help="Only this channel's runs."),
) -> None:
    """Recent sync runs, newest first (the short ids work wherever a run id is asked)."""
    if ctx.invoked_subcommand is not None:
        return
    check_channels(channel)
    with session_scope() as session:
        console.print(runs_table(repo.recent_runs(session, limit, channel=channel)))


RUN_ID_HELP = "A run id, or a unique prefix of one (the 8 digits `pimsync runs` shows)."


@app.command("show")
@friendly
def runs_show(run_id: str = typer.Argument(..., help=RUN_ID_HELP)) -> None:
    """One run and its channel runs: status, source, counts, error."""
    with session_scope() as session:
        run, children = _family(session, resolve_run_id(session, run_id))
        lines = [
            f"run      {run.id}",
            f"kind     {run.kind}" + (f" of {run.channel}" if run.channel else ""),
            f"status   {run.status}" + (f": {run.error}" if run.error else ""),
            f"trigger  {run.trigger}",
            f"started  {run.started_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f", took {run.duration_seconds:.1f} s" if run.duration_seconds is not None else ""),
        ]
        if run.source_kind:
            lines.append(f"source   {run.source_kind} {run.source}")
        if run.parent_id:
            lines.append(f"part of  {run.parent_id}")
        if run.channel is None and run.kind in ("delta", "full"):
            lines.append(f"read     {run.read:,} products, {run.rejected:,} rejected")
        if run.channel is not None:
            lines.append(f"units    {run.processed:,} of {run.planned_units:,} decided")
        for line in lines:
            console.print(line, highlight=False, soft_wrap=False)
        shown = [run] if run.channel else []
        console.print(runs_table([*shown, *children], "channel runs", compact=True))


@app.command("cancel")
@friendly
def runs_cancel(run_id: str = typer.Argument(..., help=RUN_ID_HELP)) -> None:
    """Cancel a running run and its channel runs (nothing more published, nothing disabled)."""
    with session_scope() as session:
        stopped = runs.cancel(session, sync_context(), resolve_run_id(session, run_id))
    console.print(f"cancelled {len(stopped)} run(s)")
