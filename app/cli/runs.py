"""Sync runs: following one to its end, listing recent ones, cancelling one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.terminal import CliError, console, friendly, parse_run_id
from app.db import session_scope
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import TERMINAL

app = typer.Typer(help="Sync runs: list recent ones, cancel one.", invoke_without_command=True)


def sync_context() -> SyncContext:
    """The process's sync context, with the Celery dispatcher: enqueued work goes to workers."""
    # tasks reads the settings when it is imported: imported here, a bad setting is reported
    # by the command as one line instead of breaking every command at start-up
    from tasks.dispatch import process_context

    return process_context()


def _family(session: Any, run_id: uuid.UUID) -> tuple[Any, list[Any]]:
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


@app.callback(invoke_without_command=True)
@friendly
def runs_list(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=1000),
    channel: str = typer.Option(None, "--channel", "-c"),
) -> None:
    """Recent sync runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with session_scope() as session:
        console.print(runs_table(repo.recent_runs(session, limit, channel=channel)))


@app.command("cancel")
@friendly
def runs_cancel(run_id: str) -> None:
    """Cancel a running run and its channel runs (nothing more published, nothing disabled)."""
    with session_scope() as session:
        stopped = runs.cancel(session, sync_context(), parse_run_id(run_id))
    console.print(f"cancelled {len(stopped)} run(s)")
