"""What the catalog looks like from pimsync: completeness per channel and locale, drift."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.table import Table

from app.channels.config import channels_from_pim, load_channels
from app.channels.report import completeness_report
from app.cli.terminal import CliError, Column, console, err, fit_table, friendly
from app.config import get_settings
from app.db import session_scope
from app.mapping import repository as mapping_repo
from app.pim.catalog import identifier_attribute_problem, resolve_identifier_attribute
from app.pim.product import ProductParseError, parse_product
from app.pim.sources import open_source


@friendly
def completeness(
    source: str = typer.Option(
        None,
        help="PIM source: a folder, a .jsonl file, a URL, 'sample' (default: PIMSYNC_PIM_SOURCE).",
    ),
    channel: list[str] = typer.Option(None, "--channel", "-c", help="Only these channels."),
    channels_file: str = typer.Option(
        None,
        "--channels",
        help="A channels file, or 'pim' for the PIM's own channels. Default: the configured "
        "channels for the configured source, the PIM's own channels for any other --source.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    top: int = typer.Option(5, help="How many missing attributes to list per locale."),
) -> None:
    """Per channel and locale: products, how many are complete, what is most often missing."""
    s = get_settings()
    spec = source or s.pim_source
    src = open_source(spec)
    defs = src.definitions()
    mode = channels_file or ("pim" if source and source != s.pim_source else "config")
    if mode == "pim":
        chans = channels_from_pim(defs)
        if not chans:
            raise CliError(f"{spec} defines no channels of its own; pass --channels FILE", 2)
    else:
        chans = load_channels(s.channels_file if mode == "config" else mode)
    if channel:
        unknown = [c for c in channel if c not in chans]
        if unknown:
            raise CliError(
                f"unknown channel(s) {', '.join(unknown)}; known: {', '.join(sorted(chans))}", 2
            )
        chans = {c: chans[c] for c in channel}
    rejected: list[str] = []
    read = 0
    identifier_attribute = resolve_identifier_attribute(s.identifier_attribute, defs)
    if problem := identifier_attribute_problem(identifier_attribute, defs):
        raise CliError(f"{spec}: {problem}", 1)

    def products() -> Any:
        nonlocal read
        for page in src.iter_pages(page_size=100):
            rejected.extend(page.errors)
            read += len(page.items) + len(page.errors)
            for item in page.items:
                try:
                    yield parse_product(item, identifier_attribute)
                except ProductParseError as exc:
                    rejected.append(str(exc))

    report = completeness_report(products(), chans, defs)
    src.close()
    for msg in rejected[:20]:
        err.print(f"[yellow]rejected:[/yellow] {msg}")
    if len(rejected) > 20:
        err.print(f"[yellow]... and {len(rejected) - 20} more rejected products[/yellow]")
    if read and len(rejected) >= read:
        raise CliError(
            f"every product of {spec} ({read:,}) was rejected, so there is nothing to report "
            f"(identifier attribute: {identifier_attribute!r}; set PIMSYNC_IDENTIFIER_ATTRIBUTE "
            f"if that is not where the SKU is). First reason: {rejected[0]}",
            1,
        )
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(top), indent=2, ensure_ascii=False) + "\n")
        return
    out = Table(
        "channel",
        "locale",
        "products",
        "complete",
        "%",
        f"most missing (top {top})",
        title=f"Completeness of {spec}",
    )
    for code, locales in report.channels.items():
        for loc, st in locales.items():
            pct = f"{100 * st.complete / st.products:.0f}" if st.products else "-"
            missing = ", ".join(f"{a} ({n})" for a, n in st.missing.most_common(top))
            out.add_row(code, loc, str(st.products), str(st.complete), pct, missing or "-")
    console.print(out)
    for code, counts in report.filtered.items():
        if counts:
            console.print(
                f"{code}: filtered out " + ", ".join(f"{n} by {f}" for f, n in counts.most_common())
            )


@friendly
def drift(limit: int = typer.Option(50, min=1, help="How many attributes to list.")) -> None:
    """PIM attributes no contract maps: one line per (contract version, attribute)."""
    with session_scope() as session:
        rows = mapping_repo.list_drift(session)[:limit]
        columns = [
            Column("contract"),
            Column("attribute", wrap=True),
            Column("channel", drop=3),
            Column("strategy", drop=2),
            Column("products", right=True),
            Column("first seen", drop=4),
            Column("last seen", drop=1),
            Column("e.g. SKU", drop=5),
        ]
        t, _kept = fit_table(
            columns,
            [
                [
                    f"{d.contract_id}@{d.contract_version}",
                    d.attribute,
                    d.channel or "",
                    d.strategy,
                    str(d.count),
                    d.first_seen.strftime("%Y-%m-%d %H:%M"),
                    d.last_seen.strftime("%Y-%m-%d %H:%M"),
                    d.sample_sku or "",
                ]
                for d in rows
            ],
        )
        console.print(t)
