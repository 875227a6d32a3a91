"""Product pages: rebuilding them from the snapshots of their systems of record."""

from __future__ import annotations

import typer
from rich.table import Table

from app.cli.runs import sync_context
from app.cli.terminal import console, friendly
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
