"""Setting up: the schema, the configuration check, the ownership table."""

from __future__ import annotations

from rich.table import Table

from app.channels.config import load_channels
from app.cli.terminal import CliError, console, friendly
from app.config import get_settings
from app.mapping.contract import ContractStore
from app.migrations import create_database_if_missing, current_revision, upgrade
from app.ownership import load_ownership


@friendly
def migrate() -> None:
    """Create or upgrade the database schema (Alembic, to the newest revision); on
    PostgreSQL the database itself is created first when the server does not have it."""
    url = get_settings().database_url
    if create_database_if_missing(url):
        console.print(f"created database {url.rsplit('/', 1)[-1].split('?')[0]}")
    upgrade(url)
    console.print(f"database at revision {current_revision(url)}")


@friendly
def check() -> None:
    """Validate the channel configuration, the mapping contracts and the ownership table."""
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


@friendly
def ownership() -> None:
    """Show the ownership table: which system is the system of record for which domain."""
    table = load_ownership(get_settings().ownership_file)
    out = Table("domain", "system of record", "attributes (by code)")
    for domain, owner in table.as_rows():
        out.add_row(domain, owner, ", ".join(table.attribute_domains.get(domain, ())) or "-")
    console.print(out)
