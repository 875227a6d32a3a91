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
from app.config import get_settings
from app.db import session_scope, utcnow
from app.pim.throttle import PimHealth, connection_health
from app.sync import repository as repo
from app.sync import runs
from app.sync.context import SyncContext
from app.sync.models import COMPLETED, SKIPPED, TERMINAL
from app.sync.progress import family_progress, run_progress

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


# Without a terminal (a CI log, a pipe), --wait prints one plain line this often.
PLAIN_PROGRESS_EVERY_SECONDS = 10.0
# `--wait` exit statuses: 0 done, 1 failed (with why), 2 still running at the timeout.
STILL_RUNNING = 2
# While following a read, the PIM's health (Redis) is read again at most this often.
HEALTH_EVERY = 2.0


def _ended(run: Any, children: list[Any], expected_children: int) -> bool:
    """Whether a run and its channel runs are over. A read that did not complete (failed,
    abandoned, cancelled) ends its run there: a delta's channel runs start only after its
    read completed, so none will ever come."""
    if run.status not in TERMINAL:
        return False
    if run.status != COMPLETED and run.channel is None:
        return all(c.status in TERMINAL for c in children)
    return len(children) >= expected_children and all(c.status in TERMINAL for c in children)


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
    """Follow a run and its channel runs until every one has ended: a live bar with done /
    total and the time left on a terminal, a plain line every few seconds elsewhere.
    ``workers``: Celery workers run it (False: an in-process dispatcher, as in the demo); no
    worker consuming its queues is said at once. What the read waits for, when the PIM makes
    it wait, is said too. Still running at the timeout: exit status 2 (the run goes on)."""
    deadline = time.monotonic() + timeout
    if workers:
        warn_if_unconsumed(SYNC_QUEUES)
    live = console.is_terminal
    last_line = 0.0
    settings = get_settings()
    health_checked, health = 0.0, None
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
                done = _ended(run, children, expected_children)
                now = utcnow()
                progress = family_progress(run, children, now)
                phase = _phase(run, children)
            if run.channel is None and time.monotonic() - health_checked > HEALTH_EVERY:
                health, health_checked = connection_health(settings), time.monotonic()
            note = None if done else runs.waiting_note(run, health)
            if note:
                phase = f"{phase}; {note}"
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
                    "(it goes on; follow it with `pimsync runs`)",
                    STILL_RUNNING,
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


def ended_badly(ended: list[Any]) -> None:
    """Exit status 1 naming every run of the family that did not complete, with why."""
    bad = [r for r in ended if r.status not in (COMPLETED, SKIPPED)]
    if bad:
        raise CliError(
            f"{len(bad)} run(s) did not complete: "
            + "; ".join(f"{r.channel or 'PIM read'} {r.status}: {r.error}" for r in bad)
        )


def _note(run: Any, health: PimHealth | None) -> str:
    """A run's error, or what its read waits for when the PIM makes it wait."""
    return runs.waiting_note(run, health) or run.error or ""


def runs_table(
    runs: list[Any], title: str = "runs", compact: bool = False, health: PimHealth | None = None
) -> Group:
    """Runs as a table that fits the terminal: the columns an operator reads first always
    (run, kind, channel, status, progress, published, failed), the others while there is
    room; a run's error goes under the table when its column does not fit."""
    columns = [
        *([] if compact else [Column("run"), Column("kind")]),
        Column("channel"),
        Column("status"),
        *([] if compact else [Column("started", drop=3)]),
        Column("secs", drop=4, right=True),
        *([] if compact else [Column("progress", drop=1)]),
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
                *([] if compact else [progress_text(r) if r.status == "running" else ""]),
                str(r.read) if r.channel is None else "",
                *(str(getattr(r, field)) if r.channel else "" for _, field, _ in COUNTERS),
                _note(r, health)[:300],
            ]
        )
    table, kept = fit_table(columns, rows, title)
    notes = []
    if "note" not in kept:
        notes = [
            f"{str(r.id)[:8]} {r.channel or 'PIM read'}: {_note(r, health)[:300]}"
            for r in runs
            if _note(r, health)
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
    health = connection_health(get_settings())
    with session_scope() as session:
        console.print(runs_table(repo.recent_runs(session, limit, channel=channel), health=health))


RUN_ID_HELP = "A run id, or a unique prefix of one (the 8 digits `pimsync runs` shows)."


@app.command("show")
@friendly
def runs_show(run_id: str = typer.Argument(..., help=RUN_ID_HELP)) -> None:
    """One run and its channel runs: state, PIM source, progress (done / total, ETA), counts,
    errors, and what its read waits for when the PIM makes it wait."""
    health = connection_health(get_settings())
    with session_scope() as session:
        run, children = _family(session, resolve_run_id(session, run_id))
        parent = repo.get_run(session, run.parent_id) if run.parent_id else None
        now = utcnow()
        console.print(f"run {run.id}  {run.kind} {run.channel or '(PIM read)'}  {run.status}")
        console.print(f"  started {run.started_at:%Y-%m-%d %H:%M:%S} UTC, trigger {run.trigger}")
        if run.source_kind:
            console.print(f"  source: {run.source_kind} {run.source}", highlight=False)
        console.print(f"  progress: {run_progress(run, now, parent).text()}", highlight=False)
        if children:
            total = family_progress(run, children, now)
            console.print(f"  all channels: {total.text()}", highlight=False)
            for child in children:
                line = run_progress(child, now, run).text()
                console.print(f"    {child.channel}: {child.status}, {line}", highlight=False)
        note = runs.waiting_note(run, health)
        if note:
            console.print(f"  {note}", highlight=False)
        if run.error:
            console.print(f"  error: {run.error}", highlight=False)
        console.print(runs_table([run, *children], f"run {str(run.id)[:8]}", health=health))


@app.command("cancel")
@friendly
def runs_cancel(run_id: str = typer.Argument(..., help=RUN_ID_HELP)) -> None:
    """Cancel a running run and its channel runs (nothing more published, nothing disabled)."""
    with session_scope() as session:
        stopped = runs.cancel(session, sync_context(), resolve_run_id(session, run_id))
    console.print(f"cancelled {len(stopped)} run(s)")
