"""The ``pimsync`` command (typer + rich): one module per command group, each registered here.
Errors are printed as one clear line, never as a traceback; the exit status is 1 for a failed
operation and 2 for bad input."""

from __future__ import annotations

import typer

from app.cli import catalog, dead_letters, dev, explain, pages, processes, runs, setup, sync

app = typer.Typer(
    name="pimsync",
    help="Keep product catalogs in step between a PIM and every sales channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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
