"""The ``pimsync`` command (typer + rich). Errors are printed as one clear line, never as a
traceback; the exit status is 1 for a failed operation and 2 for bad input."""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from app.config import get_settings

app = typer.Typer(
    name="pimsync",
    help="Keep product catalogs in step between a PIM and every sales channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dead_letters_app = typer.Typer(
    help="Units that failed: list them, replay them.", no_args_is_help=True
)
runs_app = typer.Typer(help="Sync runs: list recent ones, cancel one.", invoke_without_command=True)
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(runs_app, name="runs")

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _known_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from app.channels.config import ChannelConfigError
    from app.mapping.errors import ContractError
    from app.ownership import OwnershipConfigError
    from app.pim.source import SourceError

    return (
        ChannelConfigError,
        ContractError,
        OwnershipConfigError,
        SourceError,
        ValueError,
        LookupError,
        OperationalError,
        ProgrammingError,
        OSError,
    )


def friendly(fn: F) -> F:
    """Turn known failures into one line on stderr and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(exc.code) from None
        except _known_errors() as exc:
            err.print(f"[red]error:[/red] {_describe(exc)}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    text = str(getattr(exc, "orig", exc))
    if "no such table" in text or "UndefinedTable" in type(getattr(exc, "orig", exc)).__name__:
        return "the database has no pimsync schema yet; run `pimsync migrate` first"
    if isinstance(exc, OperationalError):
        url = get_settings().database_url
        safe = url.split("@")[-1] if "@" in url else url
        return f"cannot use the database at {safe}: {str(exc.orig).strip().splitlines()[0]}"
    if isinstance(exc, ProgrammingError):
        return (
            f"the database schema is not ready ({str(exc.orig).strip().splitlines()[0]}); "
            "run `pimsync migrate`"
        )
    return str(exc)


def _setup_logging() -> None:
    from app.logging import configure_logging

    s = get_settings()
    configure_logging(s.log_level, s.log_json)


# --- set-up ---------------------------------------------------------------------------------


@app.command()
@friendly
def migrate() -> None:
    """Create or upgrade the database schema (Alembic, to the newest revision)."""
    from app.migrations import current_revision, upgrade

    url = get_settings().database_url
    upgrade(url)
    console.print(f"database at revision {current_revision(url)}")


@app.command()
@friendly
def check() -> None:
    """Validate the channel configuration, the mapping contracts and the ownership table."""
    from app.channels.config import load_channels
    from app.mapping.contract import ContractStore
    from app.ownership import load_ownership

    s = get_settings()
    channels = load_channels(s.channels_file)
    store = ContractStore.load(s.contracts_dir)
    table = load_ownership(s.ownership_file)
    problems = []
    for code, ch in channels.items():
        if ch.contract is None:
            problems.append(f"channel {code!r} pins no contract")
            continue
        try:
            store.get(ch.contract.id, ch.contract.version)
        except Exception as exc:
            problems.append(f"channel {code!r}: {exc}")
    out = Table("channel", "PIM scope", "locales", "currency", "contract")
    for code, ch in channels.items():
        locs = ", ".join(
            loc.code + (f" (-> {', '.join(loc.fallback)})" if loc.fallback else "")
            for loc in ch.locales
        )
        out.add_row(code, ch.pim_scope, locs, ch.currency, ch.contract.key if ch.contract else "-")
    console.print(out)
    console.print(f"contracts: {', '.join(store.versions())}")
    console.print("ownership: " + ", ".join(f"{d}={o}" for d, o in table.as_rows()))
    if problems:
        raise CliError("; ".join(problems), code=2)


@app.command()
@friendly
def ownership() -> None:
    """Show the ownership table: which system is the system of record for which domain."""
    from app.ownership import load_ownership

    table = load_ownership(get_settings().ownership_file)
    out = Table("domain", "system of record", "attributes (by code)")
    for domain, owner in table.as_rows():
        out.add_row(domain, owner, ", ".join(table.attribute_domains.get(domain, ())) or "-")
    console.print(out)


# --- completeness ---------------------------------------------------------------------------


@app.command()
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
    from app.channels.config import channels_from_pim, load_channels
    from app.channels.report import completeness_report
    from app.pim.product import ProductParseError, parse_product
    from app.pim.sources import open_source

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

    def products() -> Any:
        for page in src.iter_pages(page_size=100):
            rejected.extend(page.errors)
            for item in page.items:
                try:
                    yield parse_product(item, s.identifier_attribute)
                except ProductParseError as exc:
                    rejected.append(str(exc))

    report = completeness_report(products(), chans, defs)
    src.close()
    for msg in rejected[:20]:
        err.print(f"[yellow]rejected:[/yellow] {msg}")
    if len(rejected) > 20:
        err.print(f"[yellow]... and {len(rejected) - 20} more rejected products[/yellow]")
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


# --- the PIM side -----------------------------------------------------------------------------


@app.command()
@friendly
def generate(
    out: Path = typer.Option(..., help="Folder to write the catalog to."),
    count: int = typer.Option(1000, min=1, help="How many products."),
    seed: int = typer.Option(42, help="Random seed (same seed, same catalog)."),
) -> None:
    """Write a generated catalog (products.jsonl, product_models.jsonl, catalog.json)."""
    from app.dev.generator import write_generated_catalog

    path = write_generated_catalog(out, count, seed)
    console.print(f"wrote {count} products to {path}")


@app.command("reference-pim")
@friendly
def reference_pim(
    data: str = typer.Option(..., help="Dataset: a folder, a .jsonl file or generated:N[:SEED]."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8081),
    latency_ms: float = typer.Option(0.0, help="Added latency per API call."),
    rate_429: float = typer.Option(0.0, help="Share of API calls answered 429."),
    rate_500: float = typer.Option(0.0, help="Share of API calls answered 500."),
    malformed_pages: int = typer.Option(0, help="The next N product pages are malformed."),
    timezone: str = typer.Option("UTC", help="The server's time zone for `updated` searches."),
) -> None:
    """Serve a dataset over the Akeneo REST API (with switchable faults) for tests and demos."""
    from app.dev.reference_server import run

    s = get_settings()
    faults = {
        "latency_ms": latency_ms,
        "rate_429": rate_429,
        "rate_500": rate_500,
        "malformed_pages": malformed_pages,
    }
    console.print(f"reference PIM on http://{host}:{port} serving {data}")
    run(
        data,
        host=host,
        port=port,
        timezone=timezone,
        faults=faults,
        client_id=s.akeneo_client_id or "pimsync",
        secret=s.akeneo_secret.get_secret_value() or "pimsync-secret",
        username=s.akeneo_username or "pimsync",
        password=s.akeneo_password.get_secret_value() or "pimsync",
    )


def main() -> None:
    from app import cli_ops  # noqa: F401  (registers the operations commands)

    app()


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"{value!r} is not a run id", 2) from None


def _sleep(seconds: float) -> None:
    time.sleep(seconds)
