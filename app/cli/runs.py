"""Sync runs: following one to its end, listing recent ones, cancelling one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich import box
from rich.console import Group
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.terminal import (
    CliError,
    check_broker_url,
    check_channels,
    console,
    err,
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


def wait_for(run_id: uuid.UUID, expected_children: int, timeout: float) -> list[Any]:
    """Follow a run and its channel runs with a progress bar until every one has ended."""
    deadline = time.monotonic() + timeout
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
    ("published", "synced"),
    ("unchanged", "unchanged"),
    ("incomplete", "skipped_incomplete"),
    ("filtered", "filtered"),
    ("disabled", "disabled"),
    ("failed", "failed"),
    ("orphans", "orphans_disabled"),
)
# Below this width the tables keep the columns an operator reads first, and errors go below
# the table instead of into a column: 15 columns squeezed into 80 would garble every cell.
WIDE = 150


def _secs(r: Any) -> str:
    return f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "-"


def runs_table(runs: list[Any], title: str = "runs", compact: bool = False) -> Group:
    """Runs as a table that fits the terminal: every counter when it is wide, the main ones
    (published, failed) when it is narrow, with each run's error printed under the table."""
    wide = console.width >= WIDE
    counters: tuple[tuple[str, str], ...]
    if wide:
        counters = COUNTERS
    elif compact:  # no run, kind and start columns: room for why units were not published
        counters = (COUNTERS[0], COUNTERS[2], COUNTERS[3], COUNTERS[5])
    else:
        counters = (COUNTERS[0], COUNTERS[5])
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    if not compact:
        t.add_column("run", no_wrap=True)
        t.add_column("kind", no_wrap=True)
    t.add_column("channel", overflow="fold")
    t.add_column("status", no_wrap=True)
    if not compact:
        t.add_column("started", no_wrap=True)
    t.add_column("secs", justify="right", no_wrap=True)
    t.add_column("read", justify="right", no_wrap=True)
    for head, _ in counters:
        t.add_column(head, justify="right", no_wrap=True)
    if wide:
        t.add_column("note", overflow="fold", max_width=60)
    notes = []
    for r in runs:
        counts = [str(getattr(r, field)) if r.channel else "" for _, field in counters]
        started = r.started_at.strftime("%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M")
        cells = [
            *([] if compact else [str(r.id)[:8], r.kind]),
            r.channel or "(PIM read)",
            r.status,
            *([] if compact else [started]),
            _secs(r),
            str(r.read) if r.channel is None else "",
            *counts,
        ]
        if wide:
            cells.append((r.error or "")[:200])
        elif r.error:
            notes.append(f"{str(r.id)[:8]} {r.channel or 'PIM read'}: {r.error[:300]}")
        t.add_row(*cells)
    return Group(t, *notes)


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
