"""Units that failed: listing them, replaying them."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from app.cli.runs import ended_badly, runs_table, sync_context, wait_for
from app.cli.terminal import CliError, console, friendly
from app.db import session_scope
from app.sync import operations
from app.sync import repository as repo

app = typer.Typer(help="Units that failed: list them, replay them.", no_args_is_help=True)


@app.command("list")
@friendly
def dead_letters_list(
    channel: str = typer.Option(None, "--channel", "-c"),
    status: str = typer.Option("open", help="open, replayed, resolved or all"),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """Units that failed, with their error and attempts."""
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


@app.command("replay")
@friendly
def dead_letters_replay(
    ids: list[int] = typer.Option(None, "--id", help="Replay these dead letters."),
    channel: str = typer.Option(
        None, "--channel", "-c", help="Replay every open one of a channel."
    ),
    all_: bool = typer.Option(False, "--all", help="Replay every open dead letter."),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="Follow the replay runs to their end; exit 0 done, 1 failed (with why), 2 still "
        "running at the timeout.",
    ),
    timeout: float = typer.Option(3600, help="With --wait: give up waiting after this long."),
) -> None:
    """Send dead-lettered units through publishing again (workers run them)."""
    if not (ids or channel or all_):
        raise CliError("say what to replay: --id N, --channel C or --all", 2)
    with session_scope() as session:
        result = operations.replay_dead_letters(
            session, sync_context(), ids=ids or None, channel=channel
        )
        run_ids = [run.id for run in result["runs"]]
    console.print(f"replayed {result['replayed']} dead letter(s) in {len(run_ids)} run(s)")
    if wait:
        deadline = time.monotonic() + timeout
        ended = []
        for run_id in run_ids:
            ended.extend(wait_for(run_id, 0, max(0.0, deadline - time.monotonic()))[:1])
        console.print(runs_table(ended, "replay runs"))
        ended_badly(ended)
