"""Units that failed: listing them, replaying them."""

from __future__ import annotations

import typer
from rich.console import Group
from rich.table import Table

from app.channels import repository as channel_repo
from app.cli.runs import sync_context, wait_for
from app.cli.terminal import CliError, Column, check_channels, console, fit_table, friendly
from app.db import session_scope
from app.pim.source import SourceError
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
    from_mirror: bool = typer.Option(
        False,
        "--from-mirror",
        help="Publish pimsync's copy of the products as it is, without asking the PIM again.",
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the replay and print each outcome."),
    timeout: float = typer.Option(600, help="With --wait: give up waiting after this long."),
) -> None:
    """Send dead-lettered units through publishing again (workers run them). The products are
    fetched from the PIM first (the usual fix is made there); --from-mirror skips that."""
    if not (ids or channel or all_):
        raise CliError("say what to replay: --id N, --channel C or --all", 2)
    check_channels(channel)
    try:
        with session_scope() as session:
            result = operations.replay_dead_letters(
                session, sync_context(), ids=ids or None, channel=channel, from_pim=not from_mirror
            )
    except SourceError as exc:
        raise CliError(
            f"the PIM could not be read, nothing was replayed: {exc} "
            "(fix the PIM, or replay pimsync's copy with --from-mirror)"
        ) from None
    source = "pimsync's copy" if from_mirror else "the PIM's current copy"
    console.print(
        f"replayed {result['replayed']} dead letter(s) in {len(result['runs'])} run(s) "
        f"from {source}"
    )
    for sku, why in sorted(result.get("still_malformed", {}).items()):
        console.print(f"  {sku}: still unreadable in the PIM, left open: {why}", highlight=False)
    if wait and result["runs"]:
        for run in result["runs"]:
            wait_for(run.id, 0, timeout)
        _print_outcomes(result["units"])


def _print_outcomes(units: list[tuple[str, str]]) -> None:
    """Each replayed unit's outcome: the channel row's status and reason, or its dead letter."""
    t = Table("channel", "sku", "outcome", "detail")
    failed = 0
    with session_scope() as session:
        for code, sku in units:
            letters = [dl for dl in repo.open_dead_letters_of(session, sku) if dl.channel == code]
            row = channel_repo.get_row(session, code, sku)
            if letters:
                failed += 1
                t.add_row(code, sku, "failed", f"{letters[0].error_type}: {letters[0].error}")
            elif row is not None:
                detail = ", ".join(f"{k}: {v}" for k, v in (row.detail or {}).items())
                t.add_row(code, sku, row.status, detail)
            else:
                t.add_row(code, sku, "not published", "")
    console.print(t)
    if failed:
        raise CliError(f"{failed} unit(s) failed again (see their dead letters)")
