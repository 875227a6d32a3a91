"""Sync runs: following one to its end, listing recent ones, cancelling one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.terminal import CliError, console, friendly, parse_run_id
from app.db import session_scope, utcnow
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import TERMINAL
from app.sync.progress import family_progress, run_progress

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


# Without a terminal (a CI log, a pipe), --wait prints one plain line this often.
PLAIN_PROGRESS_EVERY_SECONDS = 10.0


def wait_for(run_id: uuid.UUID, expected_children: int, timeout: float) -> list[Any]:
    """Follow a run and its channel runs until every one has ended: a live bar with done /
    total and the time left on a terminal, a plain line every few seconds elsewhere."""
    deadline = time.monotonic() + timeout
    live = console.is_terminal
    last_line = 0.0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[units]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not live,
    ) as bar_display:
        bar = bar_display.add_task("sync", total=None, units="")
        while True:
            with session_scope() as session:
                run, children = _family(session, run_id)
                done = (
                    run.status in TERMINAL
                    and len(children) >= expected_children
                    and all(c.status in TERMINAL for c in children)
                )
                now = utcnow()
                progress = family_progress(run, children, now)
                phase = _phase(run, children)
            if live:
                bar_display.update(
                    bar,
                    total=progress.total,
                    completed=progress.done,
                    description=phase,
                    units=progress.text(),
                )
            elif done or time.monotonic() - last_line >= PLAIN_PROGRESS_EVERY_SECONDS:
                last_line = time.monotonic()
                console.print(f"{str(run_id)[:8]} {phase}: {progress.text()}", highlight=False)
            if done:
                return [run, *children]
            if time.monotonic() > deadline:
                raise CliError(
                    f"run {run_id} still running after {timeout:.0f} s "
                    "(it goes on; follow it with `pimsync runs`)"
                )
            time.sleep(0.5)


def _phase(run: Any, children: list[Any]) -> str:
    """What a sync is doing: reading the PIM (a delta before its channels catch up),
    publishing, or how it ended."""
    if run.channel is not None:
        return f"{run.kind} {run.channel}: {run.status}"
    if run.status == "running" and not children:
        return f"{run.kind}: reading the PIM"
    if run.status == "running":
        return f"{run.kind}: reading the PIM and publishing"
    if any(c.status == "running" for c in children):
        return f"{run.kind}: publishing"
    return f"{run.kind}: {run.status}"


def progress_text(run: Any, parent: Any = None) -> str:
    """A run's progress for tables: done / total and the ETA while it runs."""
    return run_progress(run, utcnow(), parent).text()


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
            "progress",
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
                progress_text(r) if r.status == "running" else "",
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


@app.command("show")
@friendly
def runs_show(run_id: str) -> None:
    """One run and its channel runs: state, progress (done / total, ETA), counts, errors."""
    with session_scope() as session:
        run, children = _family(session, parse_run_id(run_id))
        parent = repo.get_run(session, run.parent_id) if run.parent_id else None
        now = utcnow()
        console.print(f"run {run.id}  {run.kind} {run.channel or '(PIM read)'}  {run.status}")
        console.print(f"  started {run.started_at:%Y-%m-%d %H:%M:%S} UTC, trigger {run.trigger}")
        console.print(f"  progress: {run_progress(run, now, parent).text()}", highlight=False)
        if children:
            total = family_progress(run, children, now)
            console.print(f"  all channels: {total.text()}", highlight=False)
            for child in children:
                line = run_progress(child, now, run).text()
                console.print(f"    {child.channel}: {child.status}, {line}", highlight=False)
        if run.error:
            console.print(f"  error: {run.error}", highlight=False)
        console.print(runs_table([run, *children], f"run {str(run.id)[:8]}"))


@app.command("cancel")
@friendly
def runs_cancel(run_id: str) -> None:
    """Cancel a running run and its channel runs (nothing more published, nothing disabled)."""
    with session_scope() as session:
        stopped = runs.cancel(session, sync_context(), parse_run_id(run_id))
    console.print(f"cancelled {len(stopped)} run(s)")
