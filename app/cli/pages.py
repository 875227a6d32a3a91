"""Product pages: rebuilding them from the snapshots of their systems of record."""

from __future__ import annotations

import typer
from rich.table import Table

from app.cli.runs import sync_context
from app.cli.terminal import CliError, check_channels, console, friendly
from app.db import session_scope, utcnow
from app.pages import repository as pages_repo
from app.pages.reconcile import reconcile as run_reconcile
from app.sync.runtime import REGISTRY


@friendly
def reconcile(
    domain: list[str] = typer.Option(
        None,
        "--domain",
        "-d",
        help="catalog, pricing, inventory or media (default: all with a snapshot, and catalog).",
    ),
) -> None:
    """Rebuild product pages from each domain's snapshot; print what was corrected."""
    settings = sync_context().settings
    REGISTRY.channels(settings)
    run = run_reconcile(settings, domain or None)
    corrected = (run.details or {}).get("corrected", {})
    t = Table("domain", "documents corrected", title=f"reconcile {run.id}")
    for d, n in corrected.items():
        t.add_row(d, str(n))
    console.print(t)


@friendly
def reset_version(
    sku: str = typer.Argument(..., help="The SKU whose pages to reset."),
    domain: str = typer.Option(..., "--domain", "-d", help="pricing, inventory or media."),
    channel: str = typer.Option(None, "--channel", "-c", help="One channel (default: all)."),
) -> None:
    """Forget a domain's version that ran ahead of its source on a SKU's pages.

    The system of record's next event, or `pimsync reconcile --domain D`, then writes it again.
    """
    check_channels(channel)
    with session_scope() as session:
        count = pages_repo.reset_version(session, domain, sku, channel, utcnow())
    if count == 0:
        raise CliError(f"no product page of {sku!r}" + (f" in {channel!r}" if channel else ""))
    console.print(f"{domain} reset on {count} page(s) of {sku}; reconcile or resend to restore it")
