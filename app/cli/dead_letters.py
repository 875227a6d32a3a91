"""Units that failed: listing them, replaying them."""

from __future__ import annotations

import typer
from rich.console import Group

from app.cli.runs import sync_context
from app.cli.terminal import CliError, Column, check_channels, console, fit_table, friendly
from app.db import session_scope
from app.sync import operations
from app.sync import repository as repo

app = typer.Typer(help="Units that failed: list them, replay them.", no_args_is_help=True)


@app.command("list")
@friendly
def dead_letters_list(
    channel: str = typer.Option(None, "--channel", "-c", help="Only this channel's."),
    status: str = typer.Option("open", help="open, replayed, resolved or all"),
    limit: int = typer.Option(50, min=1, max=10_000, help="How many to list."),
) -> None:
    """Units that failed, with their error and attempts."""
    if status not in ("open", "replayed", "resolved", "all"):
        raise CliError("status is one of open, replayed, resolved, all", 2)
    check_channels(channel)
    with session_scope() as session:
        letters = repo.list_dead_letters(
            session, None if status == "all" else status, channel, limit=limit
        )
        columns = [
            Column("id", right=True),
            Column("channel"),
            Column("sku"),
            Column("kind", drop=3),
            Column("attempts", drop=2, right=True),
            Column("last failed", drop=1),
            Column("status", drop=4),
            Column("error", drop=5, wrap=True),
        ]
        rows = [
            [
                str(dl.id),
                dl.channel,
                dl.sku,
                dl.kind,
                str(dl.attempts),
                dl.last_failed_at.strftime("%Y-%m-%d %H:%M:%S"),
                dl.status,
                dl.error[:120],
            ]
            for dl in letters
        ]
        table, kept = fit_table(columns, rows)
        notes = []
        if "error" not in kept:  # too narrow for the column: each error under the table
            notes = [f"{dl.id} {dl.sku}: {dl.error[:300]}" for dl in letters]
        t = Group(table, *notes)
        console.print(t)


@app.command("replay")
@friendly
def dead_letters_replay(
    ids: list[int] = typer.Option(None, "--id", help="Replay these dead letters."),
    channel: str = typer.Option(
        None, "--channel", "-c", help="Replay every open one of a channel."
    ),
    all_: bool = typer.Option(False, "--all", help="Replay every open dead letter."),
) -> None:
    """Send dead-lettered units through publishing again (workers run them)."""
    if not (ids or channel or all_):
        raise CliError("say what to replay: --id N, --channel C or --all", 2)
    check_channels(channel)
    with session_scope() as session:
        result = operations.replay_dead_letters(
            session, sync_context(), ids=ids or None, channel=channel
        )
    console.print(f"replayed {result['replayed']} dead letter(s) in {len(result['runs'])} run(s)")
