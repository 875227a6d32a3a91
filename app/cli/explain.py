"""``pimsync explain SKU``: why a product is or is not online, per channel (the read model is
``app.explain``; this only renders it)."""

from __future__ import annotations

import json
from datetime import datetime

import typer

from app.cli.terminal import CliError, console, friendly
from app.config import get_settings
from app.db import session_scope
from app.explain import ONLINE, ChannelExplanation, Explanation, explain
from app.textcheck import text_problem


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def render(ex: Explanation) -> list[str]:
    """The explanation as plain lines (no markup: SKUs and errors are printed as they are)."""
    lines = [ex.sku]
    if ex.pim is not None:
        p = ex.pim
        state = "enabled" if p.enabled else "disabled"
        if p.removed_at:
            state = f"removed from the PIM {_when(p.removed_at)}"
        lines.append(
            f"  PIM: family {p.family or '-'}, {state}; updated in the PIM {_when(p.pim_updated)}"
        )
        run = f" (run {p.last_read_run[:8]})" if p.last_read_run else ""
        lines.append(
            f"  last read {_when(p.last_read_at)}{run}; content changed "
            f"{_when(p.content_changed_at)}; hash {p.content_hash}"
        )
    else:
        lines.append("  PIM: not in pimsync's copy of the PIM (never read, or never readable)")
    for dl in ex.read_errors:
        lines.append(f"  unreadable in the PIM (dead letter {dl.id}): {dl.error}")
    for ch in ex.channels:
        lines.extend(_channel_lines(ch))
    return lines


def _channel_lines(ch: ChannelExplanation) -> list[str]:
    mark = "ONLINE" if ch.verdict == ONLINE else ch.verdict.upper()
    out = [f"  {ch.channel}: {mark}: {ch.reason}"]
    contract = f"contract pinned {ch.contract_pinned or '-'}"
    if ch.contract_applied:
        contract += f", applied {ch.contract_applied}"
    if ch.completeness is not None:
        contract += f"; completeness {ch.completeness} %"
    out.append(f"    {contract}")
    for loc, attrs in sorted(ch.missing_by_locale.items()):
        out.append(f"    missing in {loc}: {', '.join(attrs)}")
    if ch.failing_filter:
        out.append(f"    filter that excludes it now: {ch.failing_filter}")
    if ch.last_publish is not None:
        lp = ch.last_publish
        run = f"run {lp.run_id[:8]} ({lp.run_kind}, {lp.run_status})" if lp.run_id else "an event"
        out.append(f"    last publish: {_when(lp.at)} by {run}, outcome {lp.outcome}")
    for dl in ch.dead_letters:
        out.append(
            f"    dead letter {dl.id} ({dl.kind}, {dl.attempts} attempt(s), "
            f"{_when(dl.last_failed_at)}): {dl.error_type}: {dl.error}"
        )
    if ch.page is not None:
        pg = ch.page
        versions = ", ".join(f"{d} v{v}" for d, v in pg.versions.items())
        missing = [d for d, ready in pg.readiness.items() if not ready]
        ready = "all domains ready" if not missing else f"waiting for {', '.join(missing)}"
        out.append(
            f"    product page: {versions}; {ready}; "
            f"{'purchasable' if pg.purchasable else 'not purchasable'}"
        )
    else:
        out.append("    product page: none")
    if ch.problem:
        out.append(f"    cannot evaluate: {ch.problem}")
    return out


@friendly
def explain_command(
    sku: str = typer.Argument(..., help="The product's identifier (SKU)."),
    channel: str = typer.Option(
        None, "--channel", "-c", help="Only this channel (default: every configured one)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
) -> None:
    """Why a product is or is not online in each channel: what the PIM gave, completeness and
    filters, the contract, the last publish, dead letters and its product page."""
    for name, value in (("SKU", sku), ("channel", channel)):
        problem = text_problem(value) if value else None
        if value is not None and len(value) > 255:
            problem = f"is {len(value):,} characters long (at most 255)"
        if problem is not None:
            raise CliError(f"the {name} {problem}", 2)
    with session_scope() as session:
        ex = explain(session, get_settings(), sku, channel)
    if not ex.known:
        raise CliError(
            f"SKU {sku!r} is unknown: not in the PIM mirror, in no channel, no dead letter "
            "(check its spelling; a product created in the PIM since the last sync is read by "
            "the next delta)"
        )
    if as_json:
        print(json.dumps(ex.as_dict(), indent=2, sort_keys=True))
        return
    for line in render(ex):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
