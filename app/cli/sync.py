"""Starting syncs: a delta or full sync, a channel's republish."""

from __future__ import annotations

import typer

from app.cli.runs import ended_badly, runs_table, sync_context, wait_for
from app.cli.terminal import CliError, console, friendly
from app.db import session_scope
from app.sync import ingest, publish
from app.sync.runtime import configured_channels


@friendly
def sync(
    kind: str = typer.Argument(..., help="delta or full"),
    channel: list[str] = typer.Option(
        None, "--channel", "-c", help="Only these channels (full sync)."
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="Follow the run to its end; exit 0 done, 1 failed (with why), 2 still running "
        "at the timeout.",
    ),
    timeout: float = typer.Option(3600, help="With --wait: give up waiting after this long."),
) -> None:
    """Enqueue a delta or full sync (workers run it); --wait shows progress and a summary."""
    ctx = sync_context()
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
        ended = wait_for(run_id, expected, timeout)
        console.print(runs_table(ended, f"{kind} sync {run_id}"))
        ended_badly(ended)


@friendly
def republish(
    channel: str = typer.Option(..., "--channel", "-c"),
    wait: bool = typer.Option(False, "--wait"),
    timeout: float = typer.Option(3600),
) -> None:
    """Re-publish a channel from the mirror without reading the PIM (after a contract change)."""
    with session_scope() as session:
        run = publish.republish(session, sync_context(), channel)
        run_id, status, error = run.id, run.status, run.error
    if status == "skipped":
        raise CliError(f"skipped: {error}")
    console.print(f"republish {run_id} of {channel} enqueued")
    if wait:
        ended = wait_for(run_id, 0, timeout)
        console.print(runs_table(ended[:1]))
        ended_badly(ended[:1])
