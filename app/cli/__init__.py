"""The ``pimsync`` command (typer + rich): one module per command group, each registered here.
Errors are printed as one clear line, never as a traceback; the exit status is 1 for a failed
operation and 2 for bad input."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import typer

from app.cli import (
    catalog,
    dead_letters,
    dev,
    explain,
    pages,
    processes,
    runs,
    setup,
    status,
    sync,
)
from app.cli.terminal import readable_help

readable_help()

app = typer.Typer(
    name="pimsync",
    help="Keep product catalogs in step between a PIM and every sales channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version() -> str:
    try:
        return package_version("pimsync")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pimsync {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print pimsync's version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """Keep product catalogs in step between a PIM and every sales channel."""


# is it healthy?
app.command()(status.status)
app.command("doctor", help="The same as `pimsync status`.")(status.status)
# set-up
app.command()(setup.migrate)
app.command()(setup.check)
app.command()(setup.ownership)
# the catalog as pimsync sees it
app.command()(catalog.completeness)
app.command()(catalog.drift)
app.command("explain")(explain.explain_command)
# syncs and their runs
app.command()(sync.sync)
app.command()(sync.republish)
app.add_typer(runs.app, name="runs")
app.add_typer(dead_letters.app, name="dead-letters")
app.command()(pages.reconcile)
app.command("reset-version")(pages.reset_version)
# processes
app.command()(processes.worker)
app.command()(processes.beat)
app.command()(processes.web)
app.command()(processes.flower)
# development
app.command()(dev.demo)
app.command()(dev.generate)
app.command("reference-pim")(dev.reference_pim)


def main() -> None:
    app()
