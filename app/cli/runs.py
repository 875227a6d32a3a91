"""Sync runs: following one to its end, listing recent ones, cancelling one."""

from __future__ import annotations

import time
import uuid
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.terminal import CliError, console, friendly, parse_run_id
from app.config import get_settings
from app.db import session_scope
from app.pim.throttle import PimHealth, connection_health
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import COMPLETED, SKIPPED, TERMINAL

# `--wait` exit statuses: 0 done, 1 failed (with why), 2 still running at the timeout.
STILL_RUNNING = 2
# While following a read, the PIM's health (Redis) is read again at most this often.
HEALTH_EVERY = 2.0

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


def _ended(run: Any, children: list[Any], expected_children: int) -> bool:
    """Whether a run and its channel runs are over. A read that did not complete (failed,
    abandoned, cancelled) ends its run there: a delta's channel runs start only after its
    read completed, so none will ever come."""
    if run.status not in TERMINAL:
        return False
    if run.status != COMPLETED and run.channel is None:
        return all(c.status in TERMINAL for c in children)
    return len(children) >= expected_children and all(c.status in TERMINAL for c in children)


def wait_for(run_id: uuid.UUID, expected_children: int, timeout: float) -> list[Any]:
    """Follow a run and its channel runs with a progress bar until every one has ended;
    still running at the timeout: exit status 2 (the run goes on)."""
    deadline = time.monotonic() + timeout
    settings = get_settings()
    health_checked, health = 0.0, None
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
                done = _ended(run, children, expected_children)
                total = sum(c.planned_units for c in children) or None
                completed = sum(c.processed for c in children)
                read = run.read
            if run.channel is None and time.monotonic() - health_checked > HEALTH_EVERY:
                health, health_checked = connection_health(settings), time.monotonic()
            note = None if done else runs.waiting_note(run, health)
            desc = f"read {read:,} products" if run.channel is None else run.kind
            if note:
                desc = f"{desc}; {note}"
            units = f"{completed:,}/{total:,} units" if total else f"{completed:,} units"
            progress.update(bar, total=total, completed=completed, description=desc, units=units)
            if done:
                return [run, *children]
            if time.monotonic() > deadline:
                raise CliError(
                    f"run {run_id} still running after {timeout:.0f} s "
                    "(it goes on; follow it with `pimsync runs`)",
                    STILL_RUNNING,
                )
            time.sleep(0.5)


def ended_badly(ended: list[Any]) -> None:
    """Exit status 1 naming every run of the family that did not complete, with why."""
    bad = [r for r in ended if r.status not in (COMPLETED, SKIPPED)]
    if bad:
        raise CliError(
            f"{len(bad)} run(s) did not complete: "
            + "; ".join(f"{r.channel or 'PIM read'} {r.status}: {r.error}" for r in bad)
        )


def _note(run: Any, health: PimHealth | None) -> str:
    return runs.waiting_note(run, health) or run.error or ""


def runs_table(
    runs: list[Any], title: str = "runs", compact: bool = False, health: PimHealth | None = None
) -> Table:
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
                _note(r, health)[:80],
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
    health = connection_health(get_settings())
    with session_scope() as session:
        console.print(runs_table(repo.recent_runs(session, limit, channel=channel), health=health))


@app.command("show")
@friendly
def runs_show(run_id: str) -> None:
    """One run: its state, counters, error or what it waits for, and its channel runs."""
    health = connection_health(get_settings())
    with session_scope() as session:
        run, children = _family(session, parse_run_id(run_id))
        note = runs.waiting_note(run, health)
        lines = [
            f"run       {run.id}",
            f"kind      {run.kind}" + (f" (channel {run.channel})" if run.channel else ""),
            f"status    {run.status}",
            f"trigger   {run.trigger}",
            f"started   {run.started_at:%Y-%m-%d %H:%M:%S}",
            f"finished  {run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "",
            f"read      {run.read} ({run.rejected} rejected)" if run.channel is None else "",
            f"waiting   {note}" if note else "",
            f"error     {run.error}" if run.error else "",
        ]
        console.print("\n".join(line for line in lines if line), markup=False, highlight=False)
        if children:
            console.print(runs_table(children, "channel runs", compact=True))


@app.command("cancel")
@friendly
def runs_cancel(run_id: str) -> None:
    """Cancel a running run and its channel runs (nothing more published, nothing disabled)."""
    with session_scope() as session:
        stopped = runs.cancel(session, sync_context(), parse_run_id(run_id))
    console.print(f"cancelled {len(stopped)} run(s)")
