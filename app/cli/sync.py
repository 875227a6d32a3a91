"""Starting syncs: a delta or full sync, a channel's republish."""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli.runs import ended_badly, runs_table, sync_context, wait_for
from app.cli.terminal import CliError, check_channels, console, friendly
from app.db import session_scope
from app.sync import ingest, publish
from app.sync.runtime import configured_channels

# --wait and its timeout, as every command that starts a run takes them
WAIT = typer.Option(
    False,
    "--wait",
    help="Follow the run to its end; exit 0 done, 1 failed (with why), 2 still running "
    "at the timeout.",
)
TIMEOUT = typer.Option(3600, help="With --wait: give up waiting after this many seconds.")


@friendly
def sync(
    kind: str = typer.Argument(..., help="delta or full"),
    channel: list[str] = typer.Option(
        None, "--channel", "-c", help="Only these channels (full sync)."
    ),
    source: str = typer.Option(
        None,
        "--source",
        help="The PIM to read for this run (default: PIMSYNC_PIM_SOURCE). The run records it "
        "and the worker reads it; an Akeneo URL other than the workers' own "
        "PIMSYNC_PIM_SOURCE fails the run (their credentials go to their own PIM only).",
        show_default=False,
    ),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
) -> None:
    """Enqueue a delta or full sync (workers run it); --wait shows progress and a summary."""
    if kind not in ("delta", "full"):
        raise CliError("sync takes `delta` or `full`", 2)
    check_channels(channel)
    if source is not None and (not source.strip() or len(source) > 1000 or "\x00" in source):
        raise CliError("--source takes a URL, a path or `sample` (at most 1,000 characters)", 2)
    if source and "://" not in source and Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())  # workers run elsewhere
    ctx = sync_context()
    with session_scope() as session:
        if kind == "full":
            run = ingest.start_full(session, ctx, channel or None, trigger="cli", source=source)
            if run is None:
                raise CliError("every requested channel already has a full sync running")
            expected = len(configured_channels(ctx.settings, channel or None))
        else:
            if channel:
                raise CliError("a delta cycle covers every channel; use --channel with full", 2)
            run = ingest.start_delta(session, ctx, trigger="cli", source=source)
            expected = len(configured_channels(ctx.settings))
        run_id, status, error = run.id, run.status, run.error
        where = f"{run.source_kind} {run.source}"
    if status == "skipped":
        raise CliError(f"skipped: {error}")
    enqueued = f"{kind} sync {run_id} enqueued, reading {where}"
    console.print(enqueued, highlight=False, soft_wrap=True)
    if wait:
        ended = wait_for(run_id, expected, timeout)
        console.print(runs_table(ended, f"{kind} sync {run_id}"))
        ended_badly(ended)


@friendly
def republish(
    channel: str = typer.Option(..., "--channel", "-c", help="The channel to re-publish."),
    wait: bool = WAIT,
    timeout: float = TIMEOUT,
) -> None:
    """Re-publish a channel from the mirror without reading the PIM (after a contract change)."""
    check_channels(channel)
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
